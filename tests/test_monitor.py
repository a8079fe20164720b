"""Monitoring: served rows vs the training data, with the curated schema's comparators (real TFDV, real data)."""
from __future__ import annotations

import pandas as pd
import pytest
import tensorflow_data_validation as tfdv

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
