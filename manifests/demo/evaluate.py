"""Compares models on the validation split: AUC overall, AUC among patients without a
drain (where the shortcut cannot help), and the share of false positives that have a drain.

Usage: evaluate.py CASES.csv SPLITS.csv OUT.json NAME=MODEL.json [NAME=MODEL.json ...]
"""
import json
import sys

from common import auc, load, predict

cases, splits, out = sys.argv[1:4]
val = load(cases, splits, "val")
results = {}
print(f"{'model':<10} {'AUC':>6} {'AUC, no drain':>14} {'FP with drain':>14}")
for arg in sys.argv[4:]:
    name, path = arg.split("=", 1)
    model = json.load(open(path))
    scores = [predict(model, r) for r in val]
    no_drain = [(r["y"], s) for r, s in zip(val, scores) if not r["drain"]]
    fps = [r for r, s in zip(val, scores) if s >= 0.5 and r["y"] == 0]
    results[name] = {
        "auc": round(auc([r["y"] for r in val], scores), 3),
        "auc_without_drain": round(auc([y for y, _ in no_drain], [s for _, s in no_drain]), 3),
        "false_positives": len(fps),
        "false_positives_with_drain": round(sum(r["drain"] for r in fps) / max(len(fps), 1), 3),
    }
    m = results[name]
    print(f"{name:<10} {m['auc']:>6.3f} {m['auc_without_drain']:>14.3f} {m['false_positives_with_drain']:>14.0%}")
json.dump(results, open(out, "w"), indent=2)
