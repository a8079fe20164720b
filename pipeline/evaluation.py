"""TFMA EvalConfig from the spec: metrics, value thresholds, no-regression check."""
from __future__ import annotations

from typing import Mapping

import tensorflow_model_analysis as tfma
from google.protobuf import wrappers_pb2

from models.heads import eval_prediction_key
from specs.dataset import DatasetSpec

# Metrics where a smaller value is better; everything else gates upwards.
LOWER_IS_BETTER = {"MeanSquaredError", "MeanAbsoluteError", "RootMeanSquaredError",
                   "MeanAbsolutePercentageError", "BinaryCrossentropy", "SparseCategoricalCrossentropy"}
# A candidate may not score worse than the last blessed model by more than this.
NO_REGRESSION_TOLERANCE = 1e-10


def _threshold(metric: str, bounds: Mapping[str, float] | None, no_regression: bool) -> tfma.MetricThreshold | None:
    if not bounds and not no_regression:
        return None
    threshold = tfma.MetricThreshold()
    if bounds:
        value = tfma.GenericValueThreshold()
        if "lower_bound" in bounds:
            value.lower_bound.value = float(bounds["lower_bound"])
        if "upper_bound" in bounds:
            value.upper_bound.value = float(bounds["upper_bound"])
        threshold.value_threshold.CopyFrom(value)
    if no_regression:
        lower_is_better = metric in LOWER_IS_BETTER
        change = tfma.GenericChangeThreshold(
            direction=tfma.MetricDirection.LOWER_IS_BETTER if lower_is_better else tfma.MetricDirection.HIGHER_IS_BETTER)
        change.absolute.value = NO_REGRESSION_TOLERANCE if lower_is_better else -NO_REGRESSION_TOLERANCE
        threshold.change_threshold.CopyFrom(change)
    return threshold


def metric_thresholds(spec: DatasetSpec, overrides: Mapping[str, Mapping[str, float]] | None = None
                      ) -> dict[str, Mapping[str, float]]:
    thresholds = dict(spec.evaluation.get("thresholds", {}))
    thresholds.update(overrides or {})
    return thresholds


def make_eval_config(spec: DatasetSpec, overrides: Mapping[str, Mapping[str, float]] | None = None
                     ) -> tfma.EvalConfig:
    thresholds = metric_thresholds(spec, overrides)
    no_regression_metric = spec.evaluation.get("no_regression_metric")
    metric_names = list(spec.evaluation.get("metrics", ["ExampleCount"]))
    unknown = set(thresholds) - set(metric_names)
    if unknown:
        raise ValueError(f"{spec.name}: thresholds on {sorted(unknown)} need those metrics in evaluation.metrics")
    metrics = []
    for name in metric_names:
        config = tfma.MetricConfig(class_name=name)
        threshold = _threshold(name, thresholds.get(name), name == no_regression_metric)
        if threshold is not None:  # the whole split only: MetricConfig.threshold would gate every slice too
            config.per_slice_thresholds.append(
                tfma.PerSliceMetricThreshold(slicing_specs=[tfma.SlicingSpec()], threshold=threshold))
        metrics.append(config)
    return tfma.EvalConfig(
        # tf_generic: TFMA calls the signature of a plain SavedModel load. Left unset, it loads every model
        # as Keras once only to find its type and again to evaluate it (Keras's loader is the slower one).
        model_specs=[tfma.ModelSpec(signature_name="serving_tf_example", label_key=spec.label,
                                    prediction_key=eval_prediction_key(spec), model_type=tfma.TF_GENERIC)],
        slicing_specs=slicing_specs(spec),
        metrics_specs=[tfma.MetricsSpec(metrics=metrics + report_plots(spec))] + per_class_metrics_specs(spec),
        # The spec's metrics only. TFMA's default adds a Keras model's own compiled metrics (its loss, and
        # accuracy again), which it computes by loading the model as Keras once more inside the metrics
        # combiner: about a third of the Evaluator's time on churn, for figures nothing gates on.
        options=tfma.Options(include_default_metrics=wrappers_pb2.BoolValue(value=False)))


def report_plots(spec: DatasetSpec) -> list[tfma.MetricConfig]:
    """Plots for the run report (never gated): ROC/PR/confusion at thresholds and calibration, or the
    multi-class confusion matrix."""
    names = {"binary_classification": ["ConfusionMatrixPlot", "CalibrationPlot"],
             "multiclass_classification": ["MultiClassConfusionMatrixPlot"]}.get(spec.task, [])
    return [tfma.MetricConfig(class_name=name) for name in names]


def slicing_specs(spec: DatasetSpec) -> list[tfma.SlicingSpec]:
    """The whole split, then each `evaluation.slices` entry (a feature, or a list of features to cross).

    Slices are reported, not gated: a small slice's metric is noisy."""
    specs = [tfma.SlicingSpec()]
    for entry in spec.evaluation.get("slices", []):
        features = [entry] if isinstance(entry, str) else list(entry)
        unknown = [f for f in features if f not in spec.feature_names]
        if unknown:
            raise ValueError(f"{spec.name}: evaluation.slices names {unknown}, which are not features of the spec")
        specs.append(tfma.SlicingSpec(feature_keys=features))
    return specs


def per_class_metrics_specs(spec: DatasetSpec) -> list[tfma.MetricsSpec]:
    """`evaluation.per_class_metrics` (e.g. [Recall]): each metric once per class, one-vs-rest."""
    names = spec.evaluation.get("per_class_metrics", [])
    if not names:
        return []
    if spec.task != "multiclass_classification":
        raise ValueError(f"{spec.name}: evaluation.per_class_metrics needs a multiclass_classification task")
    return [tfma.MetricsSpec(metrics=[tfma.MetricConfig(class_name=name) for name in names],
                             binarize=tfma.BinarizationOptions(class_ids={"values": list(range(spec.num_classes))}))]
