"""Splits a cohort by patient (never by image) into train, val and test, seeded.

Usage: split.py CASES.csv OUT.csv SEED
"""
import csv
import random
import sys

cases, out, seed = sys.argv[1], sys.argv[2], int(sys.argv[3])
rows = list(csv.DictReader(open(cases)))
patients = sorted({r["patient"] for r in rows})
random.Random(seed).shuffle(patients)
n = len(patients)
split = {p: ("test" if i < 0.15 * n else "val" if i < 0.30 * n else "train") for i, p in enumerate(patients)}
with open(out, "w", newline="") as f:
    w = csv.writer(f)
    w.writerow(["image_id", "patient", "split"])
    for r in rows:
        w.writerow([r["image_id"], r["patient"], split[r["patient"]]])
