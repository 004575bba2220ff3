#!/usr/bin/env bash
# From a clinician's request to a trained, evaluated fracture detector on synthetic data, on
# a CPU: write the data (every image boxed), let `engine init` make the manifest (the
# checked-in pipeline.yaml is its output for these exact commands), run it, develop it for
# two rounds, test the best round's detector against round 0's, and write the report.
# Needs `engine` and `engine-worker` on PATH (scripts/demo.sh builds them) or
# ENGINE=path/to/engine.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
engine="${ENGINE:-engine}"
rm -rf data .engine pipeline.lock pipeline.best.yaml pipeline.report.html
"$engine" synth wrist --out data --n 400 --size 64 --seed 1
"$engine" init "$(cat request.txt)" --data data -o pipeline.yaml --force
"$engine" apply pipeline.yaml
# Two rounds of the developer loop, then the sealed test: best round against round 0.
"$engine" develop pipeline.yaml --rounds "${ROUNDS:-2}"
"$engine" test pipeline.yaml
# The report: one self-contained HTML file, pipeline.report.html.
"$engine" report pipeline.yaml
