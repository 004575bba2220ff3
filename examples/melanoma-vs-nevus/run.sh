#!/usr/bin/env bash
# From a clinician's request to a trained, evaluated model on synthetic data, on a CPU:
# write the data, let `engine init` make the manifest (the checked-in pipeline.yaml is its
# output for these exact commands), run it, develop it for three rounds, test it, and write the report.
# --difficulty 0.7 draws most melanomas like nevi but for a small dark patch: without it
# the synthetic lesions are told apart perfectly at round 0 and the loop has nothing to do.
# Needs `engine` and `engine-worker` on PATH (scripts/demo.sh builds them) or
# ENGINE=path/to/engine.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
engine="${ENGINE:-engine}"
rm -rf data .engine pipeline.lock pipeline.best.yaml pipeline.report.html
"$engine" synth derm --out data --n 1500 --size 48 --seed 1 --difficulty 0.7
"$engine" init "$(cat request.txt)" --data data -o pipeline.yaml --force
"$engine" apply pipeline.yaml
# Three rounds of the developer loop, then the sealed test: best round against round 0.
"$engine" develop pipeline.yaml --rounds "${ROUNDS:-3}"
"$engine" test pipeline.yaml
# The report: one self-contained HTML file, pipeline.report.html.
"$engine" report pipeline.yaml
