"""Trains a logistic regression on the training split with the named features.

Usage: train.py CASES.csv SPLITS.csv OUT.json FEATURE [FEATURE ...]
"""
import json
import sys

from common import fit, load

cases, splits, out, features = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:]
train = load(cases, splits, "train")
steps = 4
model = None
for step in range(1, steps + 1):
    model = fit(train, features, epochs=75 * step)
    print("::engine-progress::", json.dumps({"fraction": step / steps, "message": f"{75 * step} epochs"}), flush=True)
json.dump(model, open(out, "w"), indent=2)
print("weights:", ", ".join(f"{n}={w:.3f}" for n, w in zip(["bias"] + features, model["weights"])))
