#!/usr/bin/env bash
# train-speed.sh: training images per second of a network in the engine (`engine-worker
# bench-train`, tch over libtorch 2.11.0) against the same torchvision network and loop in
# PyTorch (bench/train_speed.py, torch 2.11.0 in the benchmark's own virtual environment),
# on the same device with the same thread count, alternating runs in one script. Both sides
# train on one batch of random images (no data loading: the image path has its own
# benchmark, image-pipeline.sh) with cross-entropy and AdamW, untimed warm-up steps first,
# and wait for the device after each step. Target: a ratio of medians of at least 0.95.
#
# Usage: bench/train-speed.sh               (from anywhere; no arguments)
#
# Environment (all optional):
#   BACKBONE=resnet18    resnet18, resnet50, efficientnet_b0, convnext_tiny
#   SIZE=128  BATCH=32  STEPS=20  WARMUP=3  THREADS=2  DEVICE=cpu
#   RUNS=5               runs of each side; the medians of images/s are compared
#   ENGINE_ENV=THP_MEM_ALLOC_ENABLE=1   environment of engine-worker (what `engine` gives
#                        its worker: libtorch's huge-page allocations)
#   PEER_ENV=$ENGINE_ENV environment of the peer; the same by default, since PyTorch reads
#                        the same libtorch variable
#   BENCH_VENV=bench/work/venv-image-pipeline   the peer's venv (torch, torchvision)
#   TORCH_SPEC=torch==2.11.0
#   RESULTS_DIR=bench/results   where train-speed.md and train-speed.json are written
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/.." && pwd)"
BACKBONE="${BACKBONE:-resnet18}"
SIZE="${SIZE:-128}"
BATCH="${BATCH:-32}"
STEPS="${STEPS:-20}"
WARMUP="${WARMUP:-3}"
THREADS="${THREADS:-2}"
DEVICE="${DEVICE:-cpu}"
RUNS="${RUNS:-5}"
ENGINE_ENV="${ENGINE_ENV-THP_MEM_ALLOC_ENABLE=1}"
PEER_ENV="${PEER_ENV-$ENGINE_ENV}"
BENCH_VENV="${BENCH_VENV:-$here/work/venv-image-pipeline}"
TORCH_SPEC="${TORCH_SPEC:-torch==2.11.0}"
RESULTS_DIR="${RESULTS_DIR:-$here/results}"
work="$here/work/train-speed"
mkdir -p "$work" "$RESULTS_DIR"

say() { printf '\n== %s\n' "$*"; }

py="$BENCH_VENV/bin/python"
if ! "$py" -c 'import torch, torchvision' >/dev/null 2>&1; then
    say "peer virtual environment: $BENCH_VENV"
    python3 -m venv "$BENCH_VENV"
    "$py" -m pip install --quiet --upgrade pip
    "$py" -m pip install --quiet "$TORCH_SPEC" torchvision
fi

say "engine-worker (release build)"
(cd "$repo" && cargo build --release --locked -p engine-torch) 2>&1 | tail -n 2
worker="$repo/target/release/engine-worker"
args=(--backbone "$BACKBONE" --size "$SIZE" --batch "$BATCH" --steps "$STEPS" --warmup "$WARMUP"
    --threads "$THREADS" --device "$DEVICE")
: >"$work/runs.jsonl"
for run in $(seq 1 "$RUNS"); do
    say "run $run of $RUNS"
    # shellcheck disable=SC2086 # ENGINE_ENV is a list of NAME=value words
    env $ENGINE_ENV "$worker" bench-train "${args[@]}" | tee -a "$work/runs.jsonl"
    # shellcheck disable=SC2086 # PEER_ENV is a list of NAME=value words
    env $PEER_ENV "$py" "$here/train_speed.py" "${args[@]}" | tee -a "$work/runs.jsonl"
done

commit="$(cd "$repo" && git rev-parse --short HEAD 2>/dev/null || echo unknown)"
"$py" - "$work/runs.jsonl" "$RESULTS_DIR" "$commit" "$ENGINE_ENV" "$PEER_ENV" <<'PY'
import json, statistics, sys, os
runs = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
out, commit, env, peer_env = sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5]
side = lambda s: [r["images_per_second"] for r in runs if r["side"] == s]
ours, peer = side("engine"), side("pytorch")
first = runs[0]
result = {
    "backbone": first["backbone"], "size": first["size"], "batch": first["batch"],
    "steps": first["steps"], "threads": first["threads"], "runs": len(ours),
    "commit": commit, "engine_env": env, "peer_env": peer_env, "torch": next(r["torch"] for r in runs if r["side"] == "pytorch"),
    "engine_images_per_second": ours, "pytorch_images_per_second": peer,
    "engine_median": statistics.median(ours), "pytorch_median": statistics.median(peer),
}
result["ratio"] = result["engine_median"] / result["pytorch_median"]
result["target"] = 0.95
json.dump(result, open(os.path.join(out, "train-speed.json"), "w"), indent=2)
md = f"""# Training speed: engine against PyTorch

{result['backbone']} at {result['size']} px, batch {result['batch']}, {result['steps']} timed steps after warm-up,
{result['threads']} CPU threads, random images, cross-entropy and AdamW; {result['runs']} alternating runs of each
side (commit {commit}; engine-worker with `{env or 'nothing set'}`; peer torch {result['torch']} with
`{peer_env or 'nothing set'}`).

| side | images/s per run | median |
|---|---|---|
| engine (tch) | {', '.join(f'{v:.1f}' for v in ours)} | {result['engine_median']:.1f} |
| PyTorch | {', '.join(f'{v:.1f}' for v in peer)} | {result['pytorch_median']:.1f} |

Ratio of medians: **{result['ratio']:.3f}** (target at least 0.95).
"""
open(os.path.join(out, "train-speed.md"), "w").write(md)
print(md)
PY
