#!/usr/bin/env bash
# bootstrap-auc.sh: a 2,000-resample percentile bootstrap of the ROC AUC over 10,000
# predictions, the engine against a scikit-learn loop (`roc_auc_score` on each resample)
# in one run (DESIGN.md section 12). Target: well under a second, at least 50 times faster
# than scikit-learn, and the same AUC to 1e-9.
#
# Usage: bench/bootstrap-auc.sh            (from anywhere; no arguments)
#
# Environment (all optional):
#   N=10000              predictions
#   RESAMPLES=2000       bootstrap resamples
#   RUNS=5               timed repetitions of the engine (median reported)
#   BENCH_WORK=bench/work/bootstrap-auc   data and intermediate timings (git-ignored)
#   BENCH_VENV=bench/work/venv-bootstrap-auc  the benchmark's venv: numpy, scikit-learn
#   SKLEARN_SPEC=scikit-learn            what `pip install` gets (pin with scikit-learn==X)
#   BENCH_STRICT=0       1: exit non-zero when a target is missed
#   RESULTS_DIR=bench/results   where bootstrap-auc.md and bootstrap-auc.json are written
#
# What it measures: (1) the scikit-learn loop, once; (2) in-process, through the
# `bootstrap_auc` example of engine-core (release): the AUC bootstrap alone (sorting
# included) and the bootstrap of all eight binary metrics, median of RUNS; (3) the whole
# `engine metrics --task binary --json` process (CSV parsing, all metrics, JSON), median of
# RUNS after one warm-up. The ratio that meets the target compares like with like: (1)
# against the AUC bootstrap of (2).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/.." && pwd)"
N="${N:-10000}"
RESAMPLES="${RESAMPLES:-2000}"
RUNS="${RUNS:-5}"
BENCH_WORK="${BENCH_WORK:-$here/work/bootstrap-auc}"
BENCH_VENV="${BENCH_VENV:-$here/work/venv-bootstrap-auc}"
SKLEARN_SPEC="${SKLEARN_SPEC:-scikit-learn}"
BENCH_STRICT="${BENCH_STRICT:-0}"
RESULTS_DIR="${RESULTS_DIR:-$here/results}"
helper="$here/bootstrap_auc.py"
mkdir -p "$BENCH_WORK"

say() { printf '\n== %s\n' "$*"; }
die() { printf 'bootstrap-auc: %s\n' "$*" >&2; exit 1; }

say "scikit-learn virtual environment: $BENCH_VENV"
py="$BENCH_VENV/bin/python"
if ! "$py" -c 'import sklearn, numpy' >/dev/null 2>&1; then
    python3 -m venv "$BENCH_VENV"
    "$py" -m pip install --quiet --upgrade pip
    "$py" -m pip install --quiet numpy "$SKLEARN_SPEC"
fi
"$py" -c 'import sklearn, numpy; print("scikit-learn", sklearn.__version__, "numpy", numpy.__version__)'

say "engine (release build)"
(cd "$repo" && cargo build --release --locked -p engine-cli && cargo build --release --locked -p engine-core --example bootstrap_auc) 2>&1 | tail -n 2
engine="$repo/target/release/engine"
example="$repo/target/release/examples/bootstrap_auc"
[[ -x "$engine" && -x "$example" ]] || die "the release build failed"
engine_version="$("$engine" --version)"
load_before="$(cut -d' ' -f1-3 /proc/loadavg)"

say "data: $N predictions"
preds="$BENCH_WORK/preds.csv"
"$py" "$helper" generate "$preds" --n "$N"

say "scikit-learn: $RESAMPLES x roc_auc_score"
"$py" "$helper" sklearn "$preds" --resamples "$RESAMPLES" >"$BENCH_WORK/sklearn.json"

say "engine, in-process (median of $RUNS)"
"$example" "$preds" "$RESAMPLES" "$RUNS" >"$BENCH_WORK/example.json"
cat "$BENCH_WORK/example.json"

say "engine metrics command (median of $RUNS)"
"$py" "$helper" time --runs "$RUNS" --warmup 1 -- \
    "$engine" metrics --task binary --preds "$preds" --bootstrap "$RESAMPLES" --json >"$BENCH_WORK/command.json"

say "results"
strict=()
[[ "$BENCH_STRICT" == 1 ]] && strict=(--strict)
"$py" "$helper" report --sklearn "$BENCH_WORK/sklearn.json" --example "$BENCH_WORK/example.json" \
    --command "$BENCH_WORK/command.json" --out-dir "$RESULTS_DIR" --runs "$RUNS" \
    --engine-version "$engine_version" --load-before "$load_before" "${strict[@]}"
echo "written: $RESULTS_DIR/bootstrap-auc.md"
