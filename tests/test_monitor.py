"""Monitoring: served rows vs the training data, with the curated schema's comparators (real TFDV, real data)."""
from __future__ import annotations

import pandas as pd
import pytest
import tensorflow_data_validation as tfdv
from tensorflow_metadata.proto.v0 import statistics_pb2

from pipeline.aligned_histograms import count_in_buckets
from pipeline.monitor import compare, load_schema
from specs.dataset import PROJECT_ROOT

CSV = PROJECT_ROOT / "data/churn/Churn_Modelling.csv"


@pytest.fixture(scope="module")
def churn_frames(churn_spec):
    """Training rows (the first 8,000) and a stream drawn from those rows, as the server would log them."""
    frame = pd.read_csv(CSV)[list(churn_spec.feature_names)]
    training = frame.iloc[:8000]
    return training, training.sample(300, random_state=7)


@pytest.fixture(scope="module")
def training_stats(churn_frames):
    return tfdv.generate_statistics_from_dataframe(churn_frames[0])


@pytest.fixture(scope="module")
def schema(churn_spec):
    return load_schema(str(churn_spec.schema_path))


def kinds_by_feature(breaches) -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for breach in breaches:
        found.setdefault(breach.feature, set()).add(breach.kind)
    return found


def test_an_unshifted_stream_is_not_flagged(churn_spec, schema, training_stats, churn_frames):
    breaches, _, _ = compare(churn_spec, schema, training_stats, churn_frames[1].to_dict("records"))
    assert breaches == []


def test_windows_of_held_out_rows_are_not_flagged(churn_spec, schema, training_stats):
    """Twenty 200-row windows of rows the statistics did not see, unshifted: none is flagged. TFDV's
    own re-bucketed divergence flagged NumOfProducts in 4 of these 20 (windows without its rare 4s);
    see pipeline/aligned_histograms.py."""
    held_out = pd.read_csv(CSV)[list(churn_spec.feature_names)].iloc[8000:]
    flagged = {}
    for seed in range(20):
        breaches, _, _ = compare(churn_spec, schema, training_stats,
                                 held_out.sample(200, random_state=seed).to_dict("records"))
        if breaches:
            flagged[seed] = [b.line() for b in breaches]
    assert not flagged


def test_served_values_are_counted_in_the_training_buckets_with_one_below_and_one_above():
    training = statistics_pb2.Histogram(buckets=[
        statistics_pb2.Histogram.Bucket(low_value=low, high_value=low + 1, sample_count=5) for low in (1, 2, 3)])
    aligned = count_in_buckets([0.5, 1, 1.5, 2, 3.999, 4, 4, 6], training)
    assert [(b.low_value, b.high_value, b.sample_count) for b in aligned] == [
        (0.5, 1, 1), (1, 2, 2), (2, 3, 1), (3, 4, 3), (4, 6, 1)]  # [low, high); the last training bucket closed


def test_a_shifted_stream_is_flagged_naming_the_features(churn_spec, schema, training_stats, churn_frames):
    shifted = churn_frames[1].copy()
    shifted["Age"] += 15
    shifted.loc[shifted.index[:60], "Geography"] = "Atlantis"
    breaches, _, anomalies = compare(churn_spec, schema, training_stats, shifted.to_dict("records"))
    found = kinds_by_feature(breaches)
    assert "skew" in found["Age"] and "outside_training_range" in found["Age"]
    assert {"skew", "out_of_domain"} <= found["Geography"]
    assert set(found) == {"Age", "Geography"}, breaches
    assert "Atlantis" in " ".join(b.detail for b in breaches if b.feature == "Geography")
    assert set(anomalies.anomaly_info) == {"Age", "Geography"}


def test_the_unseen_customer_is_flagged_for_num_of_products(churn_spec, schema, training_stats):
    breaches, _, _ = compare(churn_spec, schema, training_stats, [dict(churn_spec.example_instance)])
    out_of_range = [b for b in breaches if b.kind == "outside_training_range"]
    assert [b.feature for b in out_of_range] == ["NumOfProducts"]
    assert "5" in out_of_range[0].detail and "1 to 4" in out_of_range[0].detail


def test_a_missing_feature_is_flagged(churn_spec, schema, training_stats, churn_frames):
    rows = churn_frames[1].drop(columns=["Gender"]).to_dict("records")
    breaches, _, _ = compare(churn_spec, schema, training_stats, rows)
    assert ("Gender", "missing") in {(b.feature, b.kind) for b in breaches}
