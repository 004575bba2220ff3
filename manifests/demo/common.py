"""Helpers shared by the demo's stages: loading a split, AUC, logistic regression."""
import csv
import math


def load(cases, splits, which):
    split_of = {r["image_id"]: r["split"] for r in csv.DictReader(open(splits))}
    rows = [r for r in csv.DictReader(open(cases)) if split_of[r["image_id"]] == which]
    for r in rows:
        r["y"] = int(r["pneumothorax"])
        r["drain"] = int(r["drain"])
        r["lung_signal"] = float(r["lung_signal"])
    return rows


def auc(labels, scores):
    """Area under the ROC curve by the rank-sum formula, ties counted half."""
    pairs = sorted(zip(scores, labels))
    ranks = [0.0] * len(pairs)
    i = 0
    while i < len(pairs):
        j = i
        while j + 1 < len(pairs) and pairs[j + 1][0] == pairs[i][0]:
            j += 1
        for k in range(i, j + 1):
            ranks[k] = (i + j) / 2 + 1
        i = j + 1
    pos = sum(1 for _, y in pairs if y == 1)
    neg = len(pairs) - pos
    rank_sum = sum(r for r, (_, y) in zip(ranks, pairs) if y == 1)
    return (rank_sum - pos * (pos + 1) / 2) / (pos * neg)


def fit(rows, features, epochs=300, lr=0.5):
    """Logistic regression by full-batch gradient descent."""
    w = [0.0] * (len(features) + 1)
    for _ in range(epochs):
        grad = [0.0] * len(w)
        for r in rows:
            x = [1.0] + [float(r[f]) for f in features]
            p = 1 / (1 + math.exp(-sum(a * b for a, b in zip(w, x))))
            for k in range(len(w)):
                grad[k] += (p - r["y"]) * x[k]
        w = [a - lr * g / len(rows) for a, g in zip(w, grad)]
    return {"features": features, "weights": w}


def predict(model, r):
    x = [1.0] + [float(r[f]) for f in model["features"]]
    return 1 / (1 + math.exp(-sum(a * b for a, b in zip(model["weights"], x))))
