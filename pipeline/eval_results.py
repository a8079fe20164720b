"""Reading TFMA's result of an Evaluator run: whose metrics, and the candidate's on the whole split.

With a baseline, TFMA names the models `candidate` and `baseline`, and asked for no
name it warns once per slice that it cannot choose; without one, the single model
has no name. The result's own EvalConfig says which case it is.
"""
from __future__ import annotations

from typing import Any


def candidate_name(evaluation_uri: str) -> str | None:
    """The evaluated (not baseline) model's name in the result, None when it is the only model."""
    # TFMA's own reader of the result's eval_config.json (what tfma.load_eval_result reads it with).
    from tensorflow_model_analysis.writers.eval_config_writer import load_eval_run
    config = load_eval_run(evaluation_uri)[0]
    names = [spec.name for spec in config.model_specs if not spec.is_baseline] if config else []
    return names[0] if len(names) == 1 and names[0] and len(config.model_specs) > 1 else None


def load(evaluation_uri: str, model_name: str | None) -> Any:
    """TFMA's EvalResult for one model, or None when the result has none for that name."""
    import tensorflow_model_analysis as tfma  # TFX's component specs import it anyway; here only for reading
    try:
        return tfma.load_eval_result(evaluation_uri, model_name=model_name)
    except Exception:  # noqa: BLE001 - no results for this model name (e.g. no baseline)
        return None


def overall(result: Any, key: str) -> dict[str, Any]:
    """One output of the overall slice (`metrics` or `plots`), flattened over sub keys (`name/sub_key`)."""
    rows = result.slicing_metrics if key == "metrics" else result.plots
    for slice_key, outputs in rows:
        outputs = outputs or {}
        if slice_key == ():
            merged: dict[str, Any] = {}
            for sub_key, values in outputs.get("", {}).items():
                merged.update({f"{n}/{sub_key}" if sub_key else n: v for n, v in values.items()})
            return merged
    return {}


def value(metric: Any) -> float | None:
    """A metric's number; None for non-scalar ones (confusion matrices, plots). NaN comes as "NaN"."""
    if isinstance(metric, dict) and "doubleValue" in metric:
        return float(metric["doubleValue"])
    return None


def overall_metric_values(evaluation_uri: str, model_name: str | None = None) -> dict[str, float]:
    """Metric name -> value on the whole held-out split: the candidate's, unless `model_name` says otherwise.

    Per-class metrics come as e.g. `recall/classId:3`."""
    result = load(evaluation_uri, model_name or candidate_name(evaluation_uri))
    values = overall(result, "metrics") if result else {}
    return {name: value(v) for name, v in values.items() if value(v) is not None}
