"""Writes a synthetic chest X-ray cohort as a table: one row per image, several images per
patient, a weak real signal of pneumothorax, and a chest drain that appears far more often
after a pneumothorax was found (the shortcut the real task must not learn).

Usage: synth.py OUT.csv N SEED
"""
import csv
import random
import sys

out, n, seed = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
rng = random.Random(seed)
with open(out, "w", newline="") as f:
    w = csv.writer(f)
    w.writerow(["image_id", "patient", "pneumothorax", "drain", "lung_signal"])
    image = 0
    patient = 0
    while image < n:
        patient += 1
        positive = rng.random() < 0.3
        for _ in range(rng.randint(1, 3)):
            if image >= n:
                break
            drain = rng.random() < (0.6 if positive else 0.1)
            signal = rng.gauss(1.0 if positive else 0.0, 1.0)
            w.writerow([f"img{image:05d}", f"p{patient:05d}", int(positive), int(drain), f"{signal:.5f}"])
            image += 1
