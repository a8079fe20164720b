"""Data set specs: loading, validation and the header-name rule."""
import pytest

from specs.dataset import DatasetSpec, available_datasets, clean_feature_name, load_spec
from specs.errors import SpecError


def test_churn_spec_describes_the_lecture_data(churn_spec):
    assert churn_spec.label == "Exited"
    assert churn_spec.task == "binary_classification"
    assert set(churn_spec.categorical_features) == {"Geography", "Gender"}
    assert "CreditScore" in churn_spec.numeric_features
    assert set(churn_spec.source["drop_columns"]) == {"RowNumber", "CustomerId", "Surname"}
    assert churn_spec.schema_path.exists()


def test_spec_round_trips_through_custom_config(churn_spec):
    assert DatasetSpec.from_dict(churn_spec.to_dict()) == churn_spec


@pytest.mark.parametrize("header, name", [
    ("fixed acidity", "fixed_acidity"), ("CreditScore", "CreditScore"),
    ("  free sulfur dioxide ", "free_sulfur_dioxide"), ("pH", "pH"), ("8x8 pixel-0", "f_8x8_pixel_0")])
def test_clean_feature_name(header, name):
    assert clean_feature_name(header) == name


def test_unknown_dataset_lists_the_known_ones():
    with pytest.raises(SpecError, match="known data sets: .*churn"):
        load_spec("no_such_data")
    assert "churn" in available_datasets()


@pytest.mark.parametrize("change, message", [
    ({"task": "ranking"}, "task 'ranking'"),
    ({"splits": {"train": 0.8, "eval": 0.2}}, "exactly train, validation, test"),
    ({"splits": {"train": 0.7, "validation": 0.2, "test": 0.2}}, "must sum to 1"),
    ({"splits": {"train": 0.695, "validation": 0.105, "test": 0.2}}, "in hundredths"),
    ({"numeric_features": ("Age", "Exited")}, "also listed as a feature"),
    ({"model": {"trainer": "xgboost"}}, "model.trainer"),
])
def test_inconsistent_specs_are_refused(churn_spec, change, message):
    raw = {**churn_spec.to_dict(), **change}
    with pytest.raises(SpecError, match=message):
        DatasetSpec.from_dict(raw)
