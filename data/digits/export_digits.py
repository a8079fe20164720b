"""Exports scikit-learn's bundled 8x8 digits (1,797 images) to `digits.csv` beside this script.

Run once: `python data/digits/export_digits.py`. The data ships inside the
scikit-learn wheel (no download); the CSV keeps the pipeline's input a plain
file like every other data set. Columns: pixel_0..pixel_63 (row-major, ink
intensity 0-16) and label (the digit 0-9).
"""
from __future__ import annotations

import csv
import pathlib

from sklearn.datasets import load_digits

TARGET = pathlib.Path(__file__).resolve().parent / "digits.csv"


def export(target: pathlib.Path = TARGET) -> pathlib.Path:
    digits = load_digits()
    with target.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow([f"pixel_{i}" for i in range(digits.data.shape[1])] + ["label"])
        for pixels, label in zip(digits.data.astype(int), digits.target):
            writer.writerow([*pixels.tolist(), int(label)])
    return target


if __name__ == "__main__":
    print(f"wrote {export()}")
