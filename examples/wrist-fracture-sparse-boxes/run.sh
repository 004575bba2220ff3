#!/usr/bin/env bash
# The same request as wrist-fracture, on data where only 5% of the training images have
# boxes and the rest image-level labels (the test patients, fixed in split.csv, keep every
# box, as a benchmark's test set does): the audit finds it, and `engine init` answers with a
# teacher detector on the boxed images, a `pseudo_label` stage that boxes the unboxed
# positives, and a student trained on both (the checked-in pipeline.yaml is its output for
# these exact commands). Then it runs, develops for two rounds, tests the best round's
# detector against round 0's on the sealed test split, and writes the report.
# Needs `engine` and `engine-worker` on PATH (scripts/demo.sh builds them) or
# ENGINE=path/to/engine.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
engine="${ENGINE:-engine}"
rm -rf data .engine pipeline.lock pipeline.best.yaml pipeline.report.html
"$engine" synth wrist --out data --n 1200 --size 64 --seed 1 --box-fraction 0.05 --test-fraction 0.15
"$engine" init "$(cat request.txt)" --data data -o pipeline.yaml --force
"$engine" apply pipeline.yaml
# Two rounds of the developer loop, then the sealed test: best round against round 0.
"$engine" develop pipeline.yaml --rounds "${ROUNDS:-2}"
"$engine" test pipeline.yaml
# The report: one self-contained HTML file, pipeline.report.html.
"$engine" report pipeline.yaml
