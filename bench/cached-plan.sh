#!/usr/bin/env bash
# cached-plan.sh: how long a fully cached `engine plan` and a no-op `engine apply` take on a
# 6-stage pipeline of `command` stages over a 25,000-file dataset, side by side with
# `dvc status` and a no-op `dvc repro` on the equivalent dvc.yaml (DESIGN.md section 12).
# Target: engine under 0.3 s, and at least 10 times faster than DVC.
#
# Usage: bench/cached-plan.sh            (from anywhere; no arguments)
#
# Environment (all optional):
#   RUNS=10              timed repetitions per command (median and min are reported)
#   WARMUP=1             untimed runs before timing
#   FILES=25000          dataset size
#   BENCH_WORK=bench/work    where the workspaces go (git-ignored); safe to delete
#   BENCH_VENV=bench/.venv   the virtual environment with DVC (git-ignored)
#   DVC_SPEC=dvc         what `pip install` gets (e.g. `dvc==3.59.1` to pin)
#   DVC_SCM=git          `git`: DVC in a git repository, its normal set-up (dvc.yaml, dvc.lock
#                        and .gitignore committed after the first repro);
#                        `none`: `dvc init --no-scm`
#   ENGINE=path          an engine binary to use instead of building one
#   TIMER=auto           `auto`: hyperfine if installed, else a Python loop; `python`
#   BENCH_STRICT=0       1: exit non-zero when a target (0.3 s, 10x) is missed
#   RESULTS_DIR=bench/results   where cached-plan.json and cached-plan.md are written
#
# What it does: makes the venv with DVC from PyPI (once), builds the engine (release),
# generates the dataset (deterministic: fixed contents and mtimes; kept between runs) and
# two workspaces under $BENCH_WORK: engine/ (pipeline.yaml) and dvc/ (dvc.yaml, the dataset
# hard-linked). Tool state (.engine/, .dvc/, .git, outputs) is rebuilt every run. Each tool
# runs once to fill its cache, the no-op commands are checked to run nothing, then timed,
# then checked again. Exits non-zero if a no-op command ran anything.
#
# Fairness: the dataset is a plain `deps:` directory in DVC (not `dvc add`ed), mirroring the
# engine, which fingerprints datasets in place; `dvc add` would make `dvc status` check the
# dataset twice. Both memoise file hashes by stat (engine: .engine/fingerprints.bin; DVC:
# its state db in the site cache dir), so the timed runs cost stat calls, not reads.
# DVC analytics are off (no network calls). Commands run without a shell (hyperfine -N).
set -euo pipefail

started=$SECONDS
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/.." && pwd)"

RUNS="${RUNS:-10}"
WARMUP="${WARMUP:-1}"
FILES="${FILES:-25000}"
BENCH_WORK="${BENCH_WORK:-$here/work}"
BENCH_VENV="${BENCH_VENV:-$here/.venv}"
DVC_SPEC="${DVC_SPEC:-dvc}"
DVC_SCM="${DVC_SCM:-git}"
TIMER="${TIMER:-auto}"
BENCH_STRICT="${BENCH_STRICT:-0}"
RESULTS_DIR="${RESULTS_DIR:-$here/results}"
helper="$here/cached_plan.py"
mkdir -p "$BENCH_WORK"
BENCH_WORK="$(cd "$BENCH_WORK" && pwd)"
logs="$BENCH_WORK/logs"
mkdir -p "$logs"

say() { printf '\n== %s\n' "$*"; }
die() { printf 'cached-plan: %s\n' "$*" >&2; exit 1; }

case "$DVC_SCM" in git | none) ;; *) die "DVC_SCM must be git or none, not '$DVC_SCM'" ;; esac

# ---------------------------------------------------------------- 1. DVC in its own venv
say "DVC virtual environment: $BENCH_VENV"
if ! "$BENCH_VENV/bin/dvc" version >/dev/null 2>&1; then
    python3 -m venv "$BENCH_VENV"
    "$BENCH_VENV/bin/python" -m pip install --quiet --upgrade pip
    "$BENCH_VENV/bin/python" -m pip install --quiet "$DVC_SPEC"
fi
dvc="$BENCH_VENV/bin/dvc"
export DVC_NO_ANALYTICS=1
dvc_version="$("$dvc" --version)"
echo "dvc $dvc_version"

# ---------------------------------------------------------------- 2. the engine, release build
say "engine binary"
if [[ -n "${ENGINE:-}" ]]; then
    engine="$(cd "$(dirname "$ENGINE")" && pwd)/$(basename "$ENGINE")"
    [[ -x "$engine" ]] || die "ENGINE=$ENGINE is not an executable"
    engine_build="given: $engine"
else
    engine="$repo/target/release/engine"
    (cd "$repo" && cargo build --release --locked -p engine-cli) 2>&1 | tail -n 3
    [[ "${PIPESTATUS[0]}" == 0 ]] || die "cargo build --release -p engine-cli failed"
    engine_build="cargo build --release -p engine-cli"
fi
engine_version="$("$engine" --version)"
# Whether the binary loads libtorch at start-up (it costs start-up time on every command).
if ldd "$engine" 2>/dev/null | grep -q 'libtorch'; then
    engine_libtorch="links libtorch dynamically"
else
    engine_libtorch="does not link libtorch"
fi
echo "$engine_version: $engine_build; $engine_libtorch"
load_before="$(cut -d' ' -f1-3 /proc/loadavg)"

# ---------------------------------------------------------------- 3. dataset and workspaces
say "workspaces under $BENCH_WORK ($FILES files)"
python3 "$helper" generate "$BENCH_WORK" --files "$FILES"
ews="$BENCH_WORK/engine"
dws="$BENCH_WORK/dvc"

# ---------------------------------------------------------------- 4. fill both caches
say "engine apply (first run: fills the cache)"
t=$SECONDS
(cd "$ews" && "$engine" apply pipeline.yaml --plain) >"$logs/engine-first-apply.txt" 2>&1 \
    || { cat "$logs/engine-first-apply.txt"; die "the first engine apply failed"; }
grep -E 'ran, .* cached' "$logs/engine-first-apply.txt"
echo "($((SECONDS - t))s)"

say "dvc repro (first run: fills the cache; DVC_SCM=$DVC_SCM)"
t=$SECONDS
(
    cd "$dws"
    if [[ "$DVC_SCM" == git ]]; then
        git init -q
        git config user.email bench@example.invalid
        git config user.name bench
        printf '/data/\n' >.gitignore
        "$dvc" init -q
    else
        "$dvc" init -q --no-scm
    fi
    "$dvc" config core.analytics false
    "$dvc" repro
    if [[ "$DVC_SCM" == git ]]; then
        git add -A
        git commit -q -m "pipeline and its lock"
    fi
) >"$logs/dvc-first-repro.txt" 2>&1 || { cat "$logs/dvc-first-repro.txt"; die "the first dvc repro failed"; }
echo "$(grep -c 'Running stage' "$logs/dvc-first-repro.txt") stages ran ($((SECONDS - t))s)"

# The no-op commands must run nothing: check before and after timing.
check_noops() {
    local when="$1"
    (cd "$ews" && "$engine" plan pipeline.yaml) >"$logs/engine-plan-$when.txt" 2>&1
    python3 "$helper" check-engine-plan "$logs/engine-plan-$when.txt"
    (cd "$ews" && "$engine" apply pipeline.yaml --plain) >"$logs/engine-apply-$when.txt" 2>&1
    python3 "$helper" check-engine-apply "$logs/engine-apply-$when.txt"
    (cd "$dws" && "$dvc" status) >"$logs/dvc-status-$when.txt" 2>&1
    python3 "$helper" check-dvc-status "$logs/dvc-status-$when.txt"
    (cd "$dws" && "$dvc" repro) >"$logs/dvc-repro-$when.txt" 2>&1
    python3 "$helper" check-dvc-repro "$logs/dvc-repro-$when.txt"
}
say "checking that the no-op commands run nothing"
check_noops before

# ---------------------------------------------------------------- 5. timing
if [[ "$TIMER" == auto ]] && command -v hyperfine >/dev/null && hyperfine -N --runs 1 true >/dev/null 2>&1; then
    timer="hyperfine $(hyperfine --version | awk '{print $2}') (-N, no shell; --warmup $WARMUP --runs $RUNS)"
    time_in() { # time_in DIR OUT.json NAME CMD [NAME CMD ...]
        local dir="$1" out="$2"
        shift 2
        local args=()
        while (($#)); do args+=(-n "$1" "$2"); shift 2; done
        (cd "$dir" && hyperfine -N --style basic --warmup "$WARMUP" --runs "$RUNS" --export-json "$out" "${args[@]}")
    }
else
    timer="python loop (perf_counter around subprocess.run; --warmup $WARMUP --runs $RUNS)"
    time_in() {
        local dir="$1" out="$2"
        shift 2
        local i=0 parts=()
        while (($#)); do
            python3 "$helper" time "$out.$i" --runs "$RUNS" --warmup "$WARMUP" --cwd "$dir" --name "$1" --cmd "$2"
            parts+=("$out.$i")
            i=$((i + 1))
            shift 2
        done
        python3 -c 'import json,sys; json.dump({"results": [r for p in sys.argv[2:] for r in json.load(open(p))["results"]]}, open(sys.argv[1], "w"), indent=2)' "$out" "${parts[@]}"
    }
fi
say "timing with $timer"
time_in "$ews" "$BENCH_WORK/timings-engine.json" \
    "engine --version" "$engine --version" \
    "engine plan" "$engine plan pipeline.yaml" \
    "engine apply" "$engine apply pipeline.yaml --plain"
time_in "$dws" "$BENCH_WORK/timings-dvc.json" \
    "dvc status" "$dvc status" \
    "dvc repro" "$dvc repro"

say "checking again after timing"
check_noops after

# ---------------------------------------------------------------- 6. report
say "results"
python3 - "$BENCH_WORK/env.json" <<EOF
import json, os, platform, sys, datetime
cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), platform.processor())
json.dump({
    "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
    "engine_version": """$engine_version""",
    "engine_build": """$engine_build; $engine_libtorch""",
    "dvc_version": """$dvc_version""",
    "dvc_scm": "git repository" if "$DVC_SCM" == "git" else "dvc init --no-scm",
    "python_version": os.popen("$BENCH_VENV/bin/python -c 'import platform; print(platform.python_version())'").read().strip(),
    "timer": """$timer""",
    "runs": $RUNS,
    "warmup": $WARMUP,
    "files": $FILES,
    "stages": 6,
    "work": """$BENCH_WORK""",
    "cpu": cpu,
    "nproc": os.cpu_count(),
    "loadavg_before": "$load_before",
    "loadavg_after": " ".join(open("/proc/loadavg").read().split()[:3]),
    "kernel": platform.platform(),
}, open(sys.argv[1], "w"), indent=2)
EOF
strict=()
[[ "$BENCH_STRICT" == 1 ]] && strict=(--strict)
python3 "$helper" report --env "$BENCH_WORK/env.json" --out-dir "$RESULTS_DIR" "${strict[@]}" \
    "$BENCH_WORK/timings-engine.json" "$BENCH_WORK/timings-dvc.json"
echo "whole benchmark: $((SECONDS - started))s (logs in $logs)"
