"""Trains a logistic regression on the training split with the named features.

Usage: train.py CASES.csv SPLITS.csv OUT.json FEATURE [FEATURE ...]
Environment: EPOCHS (default 300).
"""
import json
import os
import sys

from common import fit, load

cases, splits, out, features = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:]
train = load(cases, splits, "train")
epochs = int(os.environ.get("EPOCHS", "300"))
steps = 4
model = None
for step in range(1, steps + 1):
    model = fit(train, features, epochs=epochs * step // steps)
    message = f"{epochs * step // steps} epochs"
    print("::engine-progress::", json.dumps({"fraction": step / steps, "message": message}), flush=True)
json.dump(model, open(out, "w"), indent=2)
print("weights:", ", ".join(f"{n}={w:.3f}" for n, w in zip(["bias"] + features, model["weights"])))
