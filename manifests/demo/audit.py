"""Audits the training split: counts, and how strongly the drain alone predicts the label.

Usage: audit.py CASES.csv SPLITS.csv OUT.json
"""
import json
import sys

from common import auc, load

cases, splits, out = sys.argv[1:4]
train = load(cases, splits, "train")
pos = [r for r in train if r["y"] == 1]
neg = [r for r in train if r["y"] == 0]
report = {
    "n_train": len(train),
    "n_patients": len({r["patient"] for r in train}),
    "p_drain_given_positive": round(sum(r["drain"] for r in pos) / len(pos), 3),
    "p_drain_given_negative": round(sum(r["drain"] for r in neg) / len(neg), 3),
    "drain_only_auc": round(auc([r["y"] for r in train], [r["drain"] for r in train]), 3),
}
json.dump(report, open(out, "w"), indent=2)
print(f"audit: drain in {report['p_drain_given_positive']:.0%} of positives vs "
      f"{report['p_drain_given_negative']:.0%} of negatives; drain alone has AUC {report['drain_only_auc']}")
