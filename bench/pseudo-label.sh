#!/usr/bin/env bash
# pseudo-label.sh: the learning check of mixed supervision. On the synthetic wrist family
# with only a few per cent of images boxed (`engine synth wrist --box-fraction`), a teacher
# `detector.train` learns from the boxed images (and the image-level negatives as
# background); a `pseudo_label` stage has it box the unboxed positive training images; a
# student `detector.train` trains on the union at a 2:1 negative:positive ratio with label
# smoothing 0.05 (the paper's recipe). Reported per seed: validation mAP@50, mAP@50:95,
# precision and recall (at the F1-optimal score) of the boxed-only teacher and of the
# student, with 95% bootstrap intervals, and how many images the teacher labelled.
# Validation counts the boxed validation images and the image-level negatives (unboxed
# positives have no boxes to score against), so the intervals are wide at small N.
#
# Usage: bench/pseudo-label.sh        (run `cargo build --bins` first)
# Environment (all optional):
#   SEEDS="1 2"  N=3000 (images)  SIZE=64 (px)  BOX_FRACTION=0.02  VAL=0.4 (share of
#   patients in validation, large so that its few boxes are enough to score)  CPUS=2
#   ENGINE=target/debug/engine   RESULTS_DIR=bench/results   WORK=bench/work/pseudo
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/.." && pwd)"
SEEDS="${SEEDS:-1 2}"
N="${N:-3000}"
SIZE="${SIZE:-64}"
BOX_FRACTION="${BOX_FRACTION:-0.02}"
VAL="${VAL:-0.4}"
CPUS="${CPUS:-2}"
engine="${ENGINE:-$repo/target/debug/engine}"
results="${RESULTS_DIR:-$repo/bench/results}"
work="${WORK:-$repo/bench/work/pseudo}"
mkdir -p "$results"
rows=()
for seed in $SEEDS; do
    dir="$work/seed-$seed"
    rm -rf "$dir"
    mkdir -p "$dir"
    cd "$dir"
    "$engine" synth wrist --out data --n "$N" --size "$SIZE" --seed "$seed" \
        --box-fraction "$BOX_FRACTION" >/dev/null
    cat >pipeline.yaml <<YAML
version: 1
name: pseudo-label-bench
seed: $seed
datasets:
  wrist:
    format: yolo
    root: data
    split: {by: patient, val: $VAL, test: 0.15, seed: 7}
stages:
  teacher:
    uses: detector.train
    with: {dataset: wrist, image_size: $SIZE, epochs: 30, early_stopping: 10, batch_size: 16, device: cpu}
    resources: {cpus: $CPUS}
  pseudo:
    uses: pseudo_label
    with: {teacher: teacher, dataset: wrist, confidence: 0.5, max_boxes: 3, device: cpu}
    resources: {cpus: $CPUS}
  student:
    uses: detector.train
    with: {dataset: wrist, image_size: $SIZE, epochs: 15, early_stopping: 5, batch_size: 16, neg_pos_ratio: 2, label_smoothing: 0.05, from: [pseudo], device: cpu}
    resources: {cpus: $CPUS}
  eval_teacher:
    uses: evaluate
    with: {model: teacher, bootstrap: 1000}
  eval_student:
    uses: evaluate
    with: {model: student, bootstrap: 1000}
YAML
    start=$(date +%s)
    "$engine" apply pipeline.yaml --plain --cpus "$CPUS" --json >summary.json
    secs=$(( $(date +%s) - start ))
    rows+=("$(python3 - "$dir" "$seed" "$secs" <<'PY'
import json, sys
d, seed, secs = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
s = json.load(open(f"{d}/summary.json"))
out = lambda st: s["stages"][st]["outputs"]
m = lambda st: json.load(open(out(st) + "/metrics.json"))
row = {"seed": seed, "seconds": secs, "pseudo": m("pseudo")}
for who, ev, tr in [("teacher", "eval_teacher", "teacher"), ("student", "eval_student", "student")]:
    e = m(ev)["metrics"]
    row[who] = {k: e[k] for k in ["map50", "map50_95", "precision", "recall"]}
    row[who]["train_images"] = m(tr)["train_images"]
row["val_boxes"] = m("teacher")["val_boxes"]
print(json.dumps(row))
PY
)")
done
cd "$repo"
python3 - "$results" "$N" "$SIZE" "$BOX_FRACTION" "${rows[@]}" <<'PY'
import json, sys
results, n, size, frac = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4]
rows = [json.loads(r) for r in sys.argv[5:]]
json.dump({"n": int(n), "size": int(size), "box_fraction": float(frac), "seeds": rows},
          open(f"{results}/pseudo-label.json", "w"), indent=2)
f = lambda v: f"{v['value']:.3f} [{v['ci'][0]:.3f}, {v['ci'][1]:.3f}]"
lines = [
    "# Pseudo-labelling: boxed-only teacher against pseudo-labelled student",
    "",
    f"Synthetic wrist set, {n} images at {size} px, {float(frac)*100:.0f}% boxed; validation mAP and",
    "recall at IoU 0.5 (F1-optimal score threshold) with 95% bootstrap intervals over images.",
    "",
    "| seed | model | train images | mAP@50 | mAP@50:95 | recall | precision |",
    "|---:|---|---:|---|---|---|---|",
]
for r in rows:
    for who in ["teacher", "student"]:
        x = r[who]
        lines.append(f"| {r['seed']} | {who} | {x['train_images']} | {f(x['map50'])} | {f(x['map50_95'])} | {f(x['recall'])} | {f(x['precision'])} |")
lines.append("")
for r in rows:
    p = r["pseudo"]
    lines.append(f"Seed {r['seed']}: the teacher labelled {p['labelled']} of {p['unboxed_positives']} unboxed positive training images ({p['boxes']} boxes, mean score {p['mean_score']:.2f}), dropped {p['dropped']}; {r['val_boxes']} validation boxes; {r['seconds']} s in all.")
open(f"{results}/pseudo-label.md", "w").write("\n".join(lines) + "\n")
print("\n".join(lines))
PY
