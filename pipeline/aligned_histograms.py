"""Served numeric histograms on the training histogram's own buckets, so TFDV's divergence is exact.

TFDV's Jensen-Shannon divergence compares two standard histograms, each with 10 equal buckets
over its own data's [min, max], re-bucketed to common edges by assuming values spread evenly
within a bucket. For a feature with a few whole values that breaks down when the ranges differ:
churn's NumOfProducts is 1 to 4 in training, but 4 is rare (0.6%), and a window of 200 served
rows without one spans 1 to 3, so its mass sits at other edges. Such windows, drawn from the
very data the model was trained on, were flagged as skew in 4 of 20 (divergence up to 0.38,
threshold 0.1). Counting the served values in the training buckets (plus one bucket below and
one above for values outside the training range) leaves TFDV nothing to re-bucket inside that
range: the divergence it computes is then the divergence of the data.
"""
from __future__ import annotations

import bisect
import math
from typing import Iterable, Mapping

from tensorflow_metadata.proto.v0 import statistics_pb2

STANDARD = statistics_pb2.Histogram.HistogramType.STANDARD


def standard_histogram(feature: statistics_pb2.FeatureNameStatistics) -> statistics_pb2.Histogram | None:
    if not feature.HasField("num_stats"):
        return None
    return next((h for h in feature.num_stats.histograms if h.type == STANDARD and h.buckets), None)


def feature_name(feature: statistics_pb2.FeatureNameStatistics) -> str:
    """A top-level feature's name, from its path (TFDV's statistics) or its legacy name field."""
    return feature.path.step[0] if feature.path.step else feature.name


def count_in_buckets(values: Iterable[float], training: statistics_pb2.Histogram) -> list[statistics_pb2.Histogram.Bucket]:
    """The values counted in `training`'s buckets ([low, high), the last one closed), with a bucket
    below and one above for values outside them."""
    buckets = list(training.buckets)
    lows = [b.low_value for b in buckets]
    counts = [0] * len(buckets)
    below: list[float] = []
    above: list[float] = []
    for value in values:
        if value < buckets[0].low_value:
            below.append(value)
        elif value > buckets[-1].high_value:
            above.append(value)
        else:
            counts[min(bisect.bisect_right(lows, value) - 1, len(buckets) - 1)] += 1
    Bucket = statistics_pb2.Histogram.Bucket
    aligned = [Bucket(low_value=b.low_value, high_value=b.high_value, sample_count=n) for b, n in zip(buckets, counts)]
    if below:
        aligned.insert(0, Bucket(low_value=min(below), high_value=buckets[0].low_value, sample_count=len(below)))
    if above:
        aligned.append(Bucket(low_value=buckets[-1].high_value, high_value=max(above), sample_count=len(above)))
    return aligned


def align_to_training(serving: statistics_pb2.DatasetFeatureStatisticsList,
                      training: statistics_pb2.DatasetFeatureStatisticsList,
                      values: Mapping[str, Iterable[float]]) -> None:
    """Rewrites, in place, each served numeric feature's standard histogram on the training buckets."""
    trained = {feature_name(f): standard_histogram(f) for f in training.datasets[0].features}
    for feature in serving.datasets[0].features:
        served, reference = standard_histogram(feature), trained.get(feature_name(feature))
        if served is None or reference is None or feature_name(feature) not in values:
            continue
        finite = [float(v) for v in values[feature_name(feature)] if v is not None and math.isfinite(float(v))]
        del served.buckets[:]
        served.buckets.extend(count_in_buckets(finite, reference))
