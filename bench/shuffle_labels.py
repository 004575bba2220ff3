"""Shuffles a synthetic dataset's labels across its images, so that nothing can be learned.

Usage: python3 shuffle_labels.py DATA_DIR SEED

SIIM-ACR (train-rle.csv): each image gets another image's mask column. ISIC 2019 (the
ground-truth CSV): each image gets another image's class row. YOLO (labels/, image_labels.csv):
each image gets another image's box file and image-level label together. Image ids,
patients, attributes (drains) and the split stay where they were.
"""

import csv
import os
import random
import sys


def shuffled(values, seed):
    values = list(values)
    random.Random(seed).shuffle(values)
    return values


def siim(root, seed):
    path = os.path.join(root, "train-rle.csv")
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    header, body = rows[0], rows[1:]
    masks = shuffled([r[1] for r in body], seed)
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        for r, m in zip(body, masks):
            w.writerow([r[0], m])


def isic(root, seed):
    path = os.path.join(root, "ISIC_2019_Training_GroundTruth.csv")
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    header, body = rows[0], rows[1:]
    labels = shuffled([r[1:] for r in body], seed)
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        for r, l in zip(body, labels):
            w.writerow([r[0]] + l)


def yolo(root, seed):
    path = os.path.join(root, "image_labels.csv")
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    header, body = rows[0], rows[1:]
    labels_dir = os.path.join(root, "labels")

    def boxes(image):
        p = os.path.join(labels_dir, image + ".txt")
        return open(p).read() if os.path.exists(p) else None

    pairs = shuffled([(r[1], boxes(r[0])) for r in body], seed)
    for r, (label, text) in zip(body, pairs):
        r[1] = label
        p = os.path.join(labels_dir, r[0] + ".txt")
        if text is None:
            if os.path.exists(p):
                os.remove(p)
        else:
            with open(p, "w") as f:
                f.write(text)
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(body)


def main():
    root, seed = sys.argv[1], int(sys.argv[2])
    if os.path.exists(os.path.join(root, "train-rle.csv")):
        siim(root, seed)
    elif os.path.exists(os.path.join(root, "ISIC_2019_Training_GroundTruth.csv")):
        isic(root, seed)
    elif os.path.exists(os.path.join(root, "image_labels.csv")):
        yolo(root, seed)
    else:
        sys.exit(f"{root}: no layout this script knows")


main()
