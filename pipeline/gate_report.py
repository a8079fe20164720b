"""After an Evaluator run: metrics per slice, and why a model was not blessed, in words a user can act on."""
from __future__ import annotations

import tensorflow_model_analysis as tfma
from tensorflow_model_analysis.proto import config_pb2, metrics_for_slice_pb2

OVERALL = "overall"


def describe_slice(slice_key: metrics_for_slice_pb2.SliceKey) -> str:
    """`Geography=France`, `Geography=France, Gender=Male`, or `overall` for the whole split."""
    parts = []
    for single in slice_key.single_slice_keys:
        kind = single.WhichOneof("kind")
        value = getattr(single, kind) if kind else ""
        parts.append(f"{single.column}={value.decode() if isinstance(value, bytes) else value}")
    return ", ".join(parts) or OVERALL


def metric_values(evaluation_uri: str) -> dict[tuple[str, str, str, bool, str], float]:
    """(slice, metric, model name, is_diff, sub key) -> value, from the Evaluator's metrics output."""
    values = {}
    for per_slice in tfma.load_metrics(evaluation_uri):
        for kv in per_slice.metric_keys_and_values:
            if kv.value.HasField("double_value"):
                sub_key = str(kv.key.sub_key) if kv.key.HasField("sub_key") else ""
                values[(describe_slice(per_slice.slice_key), kv.key.name, kv.key.model_name, kv.key.is_diff,
                        sub_key)] = kv.value.double_value.value
    return values


def slice_metrics(evaluation_uri: str) -> dict[str, dict[str, float]]:
    """The candidate's metrics on each slice other than the whole split: {"Geography=France": {"auc": ...}}."""
    slices: dict[str, dict[str, float]] = {}
    for (where, name, model_name, is_diff, sub_key), value in metric_values(evaluation_uri).items():
        if where != OVERALL and not is_diff and model_name != tfma.BASELINE_KEY and not sub_key:
            slices.setdefault(where, {})[name] = value
    return dict(sorted(slices.items()))


def describe_bound(threshold: config_pb2.MetricThreshold) -> str:
    """`>= 0.85`, `<= 0.55`, or the no-regression rule."""
    if threshold.HasField("change_threshold"):
        return "no worse than the last blessed model (no-regression gate)"
    value = threshold.value_threshold
    bounds = ([f">= {value.lower_bound.value:g}"] if value.HasField("lower_bound") else []) + \
             ([f"<= {value.upper_bound.value:g}"] if value.HasField("upper_bound") else [])
    return " and ".join(bounds)


def explain_failures(evaluation_uri: str) -> list[str]:
    """One line per failed gate: metric, slice, the candidate's value, the bound, the last blessed model's value.

    Read from TFMA's validation result; empty when every gate passed.
    """
    result = tfma.load_validation_result(evaluation_uri)
    if result.validation_ok:
        return []
    values = metric_values(evaluation_uri)
    lines = []
    for per_slice in result.metric_validations_per_slice:
        where = describe_slice(per_slice.slice_key)
        for failure in per_slice.failures:
            key = failure.metric_key
            sub_key = str(key.sub_key) if key.HasField("sub_key") else ""
            candidate = values.get((where, key.name, key.model_name, False, sub_key))
            if candidate is None and not key.is_diff:
                candidate = failure.metric_value.double_value.value
            baseline = values.get((where, key.name, tfma.BASELINE_KEY, False, sub_key))
            lines.append(f"{key.name}{f' ({sub_key})' if sub_key else ''} on the test split ({where}) is "
                         f"{'?' if candidate is None else f'{candidate:.4f}'}, needs "
                         f"{describe_bound(failure.metric_threshold)}; last blessed model: "
                         f"{'none yet' if baseline is None else f'{baseline:.4f}'}")
    return lines
