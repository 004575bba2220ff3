#!/usr/bin/env bash
# From a clinician's request to a trained, evaluated model on synthetic data, on a CPU:
# write the data, let `engine init` make the manifest (the checked-in pipeline.yaml is its
# output for these exact commands), and run it. Needs `engine` and `engine-worker` on
# PATH (scripts/demo.sh builds them) or ENGINE=path/to/engine.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
engine="${ENGINE:-engine}"
rm -rf data .engine pipeline.lock
"$engine" synth derm --out data --n 1500 --size 48 --seed 1
"$engine" init "$(cat request.txt)" --data data -o pipeline.yaml --force
"$engine" apply pipeline.yaml
