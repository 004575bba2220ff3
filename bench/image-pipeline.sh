#!/usr/bin/env bash
# image-pipeline.sh: the engine's image path (`engine-worker bench-images`: decode, resize and
# cache on the first epoch, then augment with libtorch from the cache) against a PyTorch
# `DataLoader` with torchvision transforms and 2 workers, on the same 5,000 JPEGs and the same
# operations, in one run, on the CPU. Targets: at least 1.5 times the peer's images/s on the
# first epoch, at least 10 times on later epochs.
#
# Usage: bench/image-pipeline.sh            (from anywhere; no arguments)
#
# Environment (all optional):
#   N=5000               images (`engine synth derm --n N --seed 1`)
#   IMAGE_SIZE=256       size of the generated JPEGs (IMAGE_SIZE x IMAGE_SIZE)
#   SIZE=224             training resolution (shorter side, then centre crop)
#   EPOCHS=3             epochs per run
#   BATCH=64             batch size
#   THREADS=2            ours: decoding threads; peer: DataLoader workers and torch threads
#   RUNS=1               runs of each side (ours and the peer alternate); per epoch, the
#                        median of the runs' seconds is reported
#   PEER_TRANSFORMS=v2-tensor  `v2-tensor` (transforms.v2 on a uint8 tensor from the start:
#                        torch kernels), `v1` (torchvision.transforms on the PIL image), `v2`
#                        (transforms.v2 on the PIL image), or `auto`: try each on the first
#                        1,280 images and use the fastest. v2-tensor is the default because it
#                        was the fastest on this machine (5,000 images: 350-390 images/s
#                        against 260-290 for v1; v2 on PIL was the slowest); short trials are
#                        noisy, so `auto` can pick v1 by a few per cent
#   ENGINE_ENV="THP_MEM_ALLOC_ENABLE=1 MALLOC_MMAP_MAX_=0 MALLOC_TRIM_THRESHOLD_=1073741824"
#                        environment for engine-worker only; `engine` starts its worker with
#                        these (libtorch's huge-page allocations; glibc keeping freed batches
#                        for the next instead of unmapping them: WORKER_MALLOC in
#                        engine/cli/src/commands.rs), so the default measures what a stage
#                        gets; the results record it
#   BENCH_WORK=bench/work/image-pipeline        data and per-run output (git-ignored)
#   BENCH_VENV=bench/work/venv-image-pipeline   the peer's venv: torch, torchvision, pillow, numpy
#   TORCH_SPEC=torch==2.11.0                    what `pip install` gets for torch (the libtorch
#                                               the engine links is 2.11.0); torchvision is the
#                                               release pip pairs with it (0.26.0 for 2.11.0)
#   BENCH_STRICT=0       1: exit non-zero when a target is missed
#   RESULTS_DIR=bench/results   where image-pipeline.md and image-pipeline.json are written
#
# What it measures, per epoch, in images/s (both sides print one JSON line per epoch and sum
# every batch):
#   ours: `engine-worker bench-images DIR --cache CACHE --size 224 --epochs 3 --batch 64
#         --threads 2 --device cpu` (release build, fresh cache every run). Epoch 1: decode
#         every JPEG on 2 threads, resize the shorter side to 224 (triangle filter, SIMD
#         convolutions) and centre crop, write the uint8 NCHW cache, map it with libtorch and
#         augment every batch (engine/torch/src/images.rs, `Augment::default()`: flip p 0.5,
#         an affine warp with rotation ±10°, translation ±5 %, scale 0.9-1.1, bilinear,
#         border padding; brightness and contrast ±20 %; ImageNet normalisation; float32; on
#         the CPU one fused pass per image from the cache, engine/data/src/augment.rs, on
#         libtorch's intra-op threads, which computes what affine_grid + grid_sample and the
#         tensor operations of the GPU path compute). Later epochs: augment from the cache. Batches of 64 in a seeded shuffled
#         order.
#   peer: bench/image_pipeline.py: a Dataset over the sorted JPEG paths (PIL open, RGB,
#         Resize(224), CenterCrop(224), RandomHorizontalFlip, RandomAffine(10, (0.05, 0.05),
#         (0.9, 1.1)), ColorJitter(0.2, 0.2), to float, Normalize(ImageNet)) and
#         DataLoader(batch_size=64, shuffle=True, num_workers=2, persistent_workers=True),
#         torch.set_num_threads(2); every epoch decodes and transforms every image (worker
#         start-up counts in epoch 1). Same operations, not bit-equal output: RandomAffine
#         fills with 0 (no border padding in torchvision), ColorJitter randomises the order of
#         brightness and contrast, so the checksums differ.
# Each run also records how much CPU the rest of the machine used meanwhile: the figures are
# only meaningful on an otherwise idle machine (2 cores here, no GPU).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/.." && pwd)"
N="${N:-5000}"
IMAGE_SIZE="${IMAGE_SIZE:-256}"
SIZE="${SIZE:-224}"
EPOCHS="${EPOCHS:-3}"
BATCH="${BATCH:-64}"
THREADS="${THREADS:-2}"
RUNS="${RUNS:-1}"
PEER_TRANSFORMS="${PEER_TRANSFORMS:-v2-tensor}"
ENGINE_ENV="${ENGINE_ENV-THP_MEM_ALLOC_ENABLE=1 MALLOC_MMAP_MAX_=0 MALLOC_TRIM_THRESHOLD_=1073741824}"
BENCH_WORK="${BENCH_WORK:-$here/work/image-pipeline}"
BENCH_VENV="${BENCH_VENV:-$here/work/venv-image-pipeline}"
TORCH_SPEC="${TORCH_SPEC:-torch==2.11.0}"
BENCH_STRICT="${BENCH_STRICT:-0}"
RESULTS_DIR="${RESULTS_DIR:-$here/results}"
helper="$here/image_pipeline.py"
mkdir -p "$BENCH_WORK"

say() { printf '\n== %s\n' "$*"; }
die() { printf 'image-pipeline: %s\n' "$*" >&2; exit 1; }

say "peer virtual environment: $BENCH_VENV"
py="$BENCH_VENV/bin/python"
if ! "$py" -c 'import torch, torchvision, PIL, numpy' >/dev/null 2>&1; then
    python3 -m venv "$BENCH_VENV"
    "$py" -m pip install --quiet --upgrade pip
    "$py" -m pip install --quiet "$TORCH_SPEC" torchvision pillow numpy
fi
"$py" -c 'import torch, torchvision, PIL; print("torch", torch.__version__, "torchvision", torchvision.__version__, "pillow", PIL.__version__)'

say "engine and engine-worker (release build)"
(cd "$repo" && cargo build --release --locked -p engine-cli -p engine-torch) 2>&1 | tail -n 2
engine="$repo/target/release/engine"
worker="$repo/target/release/engine-worker"
[[ -x "$engine" && -x "$worker" ]] || die "the release build failed (engine-torch needs libtorch: scripts/setup-libtorch.sh)"
worker_version="$("$worker" --version)"
libtorch="$("$worker" doctor --json | "$py" -c 'import json, sys; t = json.load(sys.stdin)["libtorch"]
print(t["libtorch_version"] + ",", t["cpu_threads"], "CPU threads (tch::get_num_threads)")')"
commit="$(cd "$repo" && git rev-parse --short HEAD 2>/dev/null || echo unknown)"
echo "$worker_version; libtorch $libtorch; commit $commit"

data="$BENCH_WORK/derm"
images="$data/ISIC_2019_Training_Input"
say "data: $N JPEGs of ${IMAGE_SIZE}x$IMAGE_SIZE in $images"
have=0
[[ -d "$images" ]] && have="$(find "$images" -name '*.jpg' | wc -l)"
if [[ "$have" != "$N" ]]; then
    rm -rf "$data"
    "$engine" synth derm --out "$data" --n "$N" --size "$IMAGE_SIZE" --seed 1
fi

trial="$BENCH_WORK/peer-transforms.json"
rm -f "$trial"
kind="$PEER_TRANSFORMS"
if [[ "$kind" == auto ]]; then
    say "peer: trying the transform kinds on the first 1280 images"
    "$py" "$helper" pick "$images" --size "$SIZE" --batch "$BATCH" --workers "$THREADS" \
        --threads "$THREADS" >"$trial"
    kind="$("$py" -c 'import json, sys; print(json.load(open(sys.argv[1]))["picked"])' "$trial")"
fi
echo "peer transforms: $kind"

load_before="$(cut -d' ' -f1-3 /proc/loadavg)"
ours_cmd=("$worker" bench-images "$images" --cache "$BENCH_WORK/cache" --size "$SIZE" --epochs "$EPOCHS"
    --batch "$BATCH" --threads "$THREADS" --device cpu)
ours_files=() peer_files=()
for run in $(seq 1 "$RUNS"); do
    say "run $run of $RUNS: ours${ENGINE_ENV:+ ($ENGINE_ENV)}"
    rm -rf "$BENCH_WORK/cache"
    out="$BENCH_WORK/ours-$run.jsonl"
    # shellcheck disable=SC2086 # ENGINE_ENV is a list of NAME=value words
    "$py" "$helper" run -- env $ENGINE_ENV "${ours_cmd[@]}" | tee "$out"
    ours_files+=("$out")
    say "run $run of $RUNS: peer (DataLoader, $kind)"
    out="$BENCH_WORK/peer-$run.jsonl"
    "$py" "$helper" run -- "$py" "$helper" peer "$images" --size "$SIZE" --epochs "$EPOCHS" --batch "$BATCH" \
        --workers "$THREADS" --threads "$THREADS" --transforms "$kind" | tee "$out"
    peer_files+=("$out")
done
rm -rf "$BENCH_WORK/cache"

say "results"
strict=()
[[ "$BENCH_STRICT" == 1 ]] && strict=(--strict)
"$py" "$helper" report --ours "${ours_files[@]}" --peer "${peer_files[@]}" --out-dir "$RESULTS_DIR" \
    --engine-version "$worker_version (commit $commit)" --libtorch "$libtorch" --load-before "$load_before" \
    --dataset "engine synth derm --n $N --size $IMAGE_SIZE --seed 1" \
    --ours-command "engine-worker bench-images DIR --cache CACHE --size $SIZE --epochs $EPOCHS --batch $BATCH --threads $THREADS --device cpu" \
    --images "$N" --image-size "$IMAGE_SIZE" --size "$SIZE" --batch "$BATCH" --runs "$RUNS" --threads "$THREADS" \
    --trial "$trial" --engine-env "$ENGINE_ENV" "${strict[@]}"
