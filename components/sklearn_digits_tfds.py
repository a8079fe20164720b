"""`sklearn_digits`: scikit-learn's bundled 8x8 digit images as a TFDS data set.

A real image data set that needs no download (the 1,797 images ship inside the
scikit-learn wheel), so the image pipeline (TfdsExampleGen -> image Transform ->
CNN) can be checked for real accuracy on a machine without internet. Ink
intensities 0..16 become 8-bit gray levels (x * 255 / 16), stored as PNG.
Source: UCI Optical Recognition of Handwritten Digits (test part), via
`sklearn.datasets.load_digits`.
"""
from __future__ import annotations

import numpy as np
import tensorflow_datasets as tfds

LABEL_NAMES = tuple(str(d) for d in range(10))


class SklearnDigits(tfds.core.GeneratorBasedBuilder):
    """8x8 grayscale handwritten digits, one `train` split (slice it for eval)."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "scikit-learn's load_digits as 8x8 PNG images."}

    def _info(self) -> tfds.core.DatasetInfo:
        return tfds.core.DatasetInfo(
            builder=self,
            description=__doc__,
            features=tfds.features.FeaturesDict({
                "image": tfds.features.Image(shape=(8, 8, 1), encoding_format="png"),
                "label": tfds.features.ClassLabel(names=LABEL_NAMES)}),
            supervised_keys=("image", "label"),
            homepage="https://scikit-learn.org/stable/datasets/toy_dataset.html#digits-dataset")

    def _split_generators(self, dl_manager: tfds.download.DownloadManager):
        del dl_manager  # nothing to download
        return {"train": self._generate_examples()}

    def _generate_examples(self):
        from sklearn.datasets import load_digits
        digits = load_digits()
        pixels = np.round(digits.images * (255.0 / 16.0)).astype(np.uint8)[..., np.newaxis]
        for index, (image, label) in enumerate(zip(pixels, digits.target)):
            yield index, {"image": image, "label": int(label)}
