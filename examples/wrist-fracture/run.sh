#!/usr/bin/env bash
# From a clinician's request to a trained, evaluated fracture detector on synthetic data, on
# a CPU: write the data (every image boxed), let `engine init` make the manifest (the
# checked-in pipeline.yaml is its output for these exact commands), run it, and write the
# report. The developer loop and the sealed test do not take detectors yet.
# Needs `engine` and `engine-worker` on PATH (scripts/demo.sh builds them) or
# ENGINE=path/to/engine.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
engine="${ENGINE:-engine}"
rm -rf data .engine pipeline.lock pipeline.best.yaml pipeline.report.html
"$engine" synth wrist --out data --n 400 --size 64 --seed 1
"$engine" init "$(cat request.txt)" --data data -o pipeline.yaml --force
"$engine" apply pipeline.yaml
# The report: one self-contained HTML file, pipeline.report.html.
"$engine" report pipeline.yaml
