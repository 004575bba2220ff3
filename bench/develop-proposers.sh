#!/usr/bin/env bash
# develop-proposers.sh: the heuristic proposer against the random one (the baseline) on the
# synthetic chest family with a drain shortcut. For each seed: one dataset
# (`engine synth chest`), one initial manifest (`engine init` from the pneumothorax
# request), then `engine develop` for ROUNDS rounds with each proposer (two copies of the
# manifest in one workspace, so round 0 is computed once and both share the cache), then
# `engine test` of each loop's best round on the sealed test split (the second opening is
# a recorded `--reopen`). Reported per seed and proposer: the best validation objective,
# the round that reached it, and the final model's test AUC and partial correlation with
# the drain (label held fixed; lower means less reliance on the drain).
#
# Usage: bench/develop-proposers.sh        (from anywhere; builds nothing: run
#                                            `cargo build --bins` first)
# Environment (all optional):
#   ROUNDS=8  SEEDS="1 2 3"  N=300 (images)  SIZE=32 (px)  NEATX=150 (drain set)
#   ENGINE=target/debug/engine   RESULTS_DIR=bench/results   WORK=bench/work/develop
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/.." && pwd)"
ROUNDS="${ROUNDS:-8}"
SEEDS="${SEEDS:-1 2 3}"
N="${N:-300}"
SIZE="${SIZE:-32}"
NEATX="${NEATX:-150}"
engine="${ENGINE:-$repo/target/debug/engine}"
results="${RESULTS_DIR:-$repo/bench/results}"
work="${WORK:-$repo/bench/work/develop}"
request="$(cat "$repo/examples/pneumothorax-drains/request.txt")"
mkdir -p "$results"
rm -rf "$work"
mkdir -p "$work"
rows="$work/rows.jsonl"
started=$(date +%s)

for seed in $SEEDS; do
  ws="$work/seed-$seed"
  mkdir -p "$ws"
  (
    cd "$ws"
    "$engine" synth chest --out data --n "$N" --size "$SIZE" --neatx "$NEATX" --seed "$seed" >/dev/null
    "$engine" init "$request" --data data -o heuristic.yaml >/dev/null
    cp heuristic.yaml random.yaml
    for proposer in heuristic random; do
      t0=$(date +%s)
      "$engine" develop "$proposer.yaml" --rounds "$ROUNDS" --proposer "$proposer" --seed "$seed" --plain \
        >"develop-$proposer.out" 2>"develop-$proposer.err"
      secs=$(( $(date +%s) - t0 ))
      reopen=()
      if [ "$proposer" = random ]; then reopen=(--reopen "benchmark: the random proposer's best round, compared with the heuristic's"); fi
      "$engine" test "$proposer.yaml" --bootstrap 200 --json "${reopen[@]}" >"test-$proposer.json" 2>"test-$proposer.err"
      "$engine" history "$proposer.yaml" --json >"history-$proposer.json"
      python3 - "$seed" "$proposer" "$secs" "history-$proposer.json" "test-$proposer.json" >>"$rows" <<'PY'
import json, sys
seed, proposer, secs, hist, test = sys.argv[1:]
h = json.load(open(hist))
t = json.load(open(test))
best = h["best"]
row = next(r for r in h["rounds"] if r["round"] == best)
m = t["metrics"]
print(json.dumps({
    "seed": int(seed), "proposer": proposer, "seconds": int(secs),
    "rounds": len(h["rounds"]) - 1, "best_round": best,
    "val_metric": row["metric"], "val_best": row["value"],
    "val_initial": h["rounds"][0]["value"],
    "kept": sum(1 for r in h["rounds"][1:] if r["kept"]),
    "test_auc": m["auc"]["value"],
    "test_partial": m["confound/partial_correlation"]["value"],
}))
PY
    done
  )
done

python3 - "$rows" "$results" "$ROUNDS" "$N" "$SIZE" "$(( $(date +%s) - started ))" <<'PY'
import json, statistics, sys
rows_path, results, rounds, n, size, total = sys.argv[1:]
rows = [json.loads(l) for l in open(rows_path)]
lines = [
    "# Heuristic against random proposer (`bench/develop-proposers.sh`)",
    "",
    f"Synthetic chest family with drains ({n} images at {size} px per seed), manifest from `engine init`",
    f"on the pneumothorax request, {rounds} rounds per loop, CPU. Validation objective: AUC; test: the",
    "best round's model on the sealed test split; partial correlation with the drain, label held fixed.",
    f"Total run time {total} s.",
    "",
    "| seed | proposer | initial val AUC | best val AUC (round) | kept | test AUC | test partial corr. | seconds |",
    "|---:|---|---:|---:|---:|---:|---:|---:|",
]
for r in rows:
    lines.append(
        f"| {r['seed']} | {r['proposer']} | {r['val_initial']:.4f} | {r['val_best']:.4f} ({r['best_round']}) | {r['kept']} | "
        f"{r['test_auc']:.4f} | {r['test_partial']:.4f} | {r['seconds']} |"
    )
lines.append("")
for p in ("heuristic", "random"):
    sel = [r for r in rows if r["proposer"] == p]
    if sel:
        lines.append(
            f"- {p}: median best validation AUC {statistics.median(r['val_best'] for r in sel):.4f}, "
            f"median gain over round 0 {statistics.median(r['val_best'] - r['val_initial'] for r in sel):+.4f}, "
            f"median test partial correlation {statistics.median(r['test_partial'] for r in sel):.4f}"
        )
text = "\n".join(lines) + "\n"
open(f"{results}/develop-proposers.md", "w").write(text)
json.dump(rows, open(f"{results}/develop-proposers.json", "w"), indent=1)
print(text)
PY
