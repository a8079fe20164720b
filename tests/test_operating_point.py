"""Operating point: the threshold chosen on validation scores, and served class_ids that use it."""
import json

import numpy as np
import pytest
import tensorflow as tf

from models import heads, operating_point
from specs.dataset import DatasetSpec
from specs.errors import SpecError

LABELS = np.array([0, 0, 0, 0, 1, 0, 1, 1, 0, 1])
SCORES = np.array([0.05, 0.1, 0.2, 0.3, 0.35, 0.4, 0.45, 0.6, 0.7, 0.9])


def test_best_f1_threshold():
    threshold = operating_point.choose_threshold(LABELS, SCORES, {"target": "f1"})
    best = max(operating_point.rates(LABELS, SCORES, t)["f1"] for t in np.unique(SCORES))
    assert operating_point.rates(LABELS, SCORES, threshold)["f1"] == best
    assert threshold == 0.35  # all 4 positives with 2 false alarms: F1 0.8 (0.5 gives 0.571)


def test_target_recall_takes_the_highest_threshold_that_reaches_it():
    assert operating_point.choose_threshold(LABELS, SCORES, {"target": "recall", "value": 0.5}) == 0.6
    assert operating_point.choose_threshold(LABELS, SCORES, {"target": "recall", "value": 0.75}) == 0.45
    assert operating_point.choose_threshold(LABELS, SCORES, {"target": "recall", "value": 1.0}) == 0.35


def test_choice_is_recorded_for_the_run_summary(tmp_path):
    threshold = operating_point.choose_and_record(LABELS, SCORES, {"target": "f1"}, str(tmp_path))
    record = json.loads((tmp_path / operating_point.OPERATING_POINT_FILE).read_text())
    assert record["threshold"] == threshold and record["validation"]["recall"] == 1.0
    assert operating_point.choose_and_record(LABELS, SCORES, None, str(tmp_path / "none")) == 0.5


def test_served_class_ids_use_the_threshold(churn_spec):
    positive = tf.constant([[0.2], [0.4], [0.8]])
    assert heads.prediction_outputs(churn_spec, positive)["class_ids"].numpy().tolist() == [0, 0, 1]
    outputs = heads.prediction_outputs(churn_spec, positive, threshold=0.3)
    assert outputs["class_ids"].numpy().tolist() == [0, 1, 1]
    assert [c.decode() for c in outputs["classes"].numpy()] == ["stayed", "exited", "exited"]
    np.testing.assert_allclose(outputs["probability"].numpy(), [0.2, 0.4, 0.8])


@pytest.mark.parametrize("point, message", [
    ({"target": "precision"}, "must be {target: f1}"), ({"target": "recall", "value": 1.5}, "must be"),
])
def test_unusable_operating_points_are_refused(churn_spec, point, message):
    with pytest.raises(SpecError, match=message):
        DatasetSpec.from_dict({**churn_spec.to_dict(), "model": {**churn_spec.model, "operating_point": point}})


def test_operating_point_needs_a_binary_task():
    from specs.dataset import load_spec
    wine = load_spec("wine_white")
    with pytest.raises(SpecError, match="needs a binary_classification task"):
        DatasetSpec.from_dict({**wine.to_dict(), "model": {**wine.model, "operating_point": {"target": "f1"}}})
