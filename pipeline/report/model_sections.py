"""Report sections about the model: training curves, TFMA evaluation, blessing, push and lineage."""
from __future__ import annotations

import json
import os
import re
from typing import Any

import numpy as np
import tensorflow as tf

from models.history import read_history
from pipeline import eval_results
from pipeline.report import plots
from pipeline.report.data_sections import missing
from pipeline.report.html import breakable, esc, fmt, image, paragraph, table
from pipeline.report.run_data import RunData, property_value


def trainer_config(run: RunData) -> dict[str, Any]:
    """The Trainer's custom_config (spec fields, run hparams, code fingerprint) as recorded in ML Metadata."""
    trainer = run.producer("model_run")
    text = property_value(trainer.execution, "custom_config") if trainer and trainer.execution else None
    return json.loads(text) if text else {}


def training_section(run: RunData) -> str:
    model_run = run.output("model_run")
    if model_run is None:
        return missing("training", run, "Trainer")
    config = trainer_config(run)
    hparams = {**config.get("spec", {}).get("model", {}), **config.get("hparams", {})}
    parts = [table(["hyperparameter", "value"], [(k, json.dumps(v)) for k, v in sorted(hparams.items())])]
    history = read_history(model_run.uri)
    if not history or not history.get("epochs"):
        return "".join(parts) + paragraph("The trainer recorded no per-epoch history for this run "
                                          f"(no training_history.json in {model_run.uri}).", "muted")
    epochs, chosen = history["epochs"], history.get("chosen_epoch")
    parts.insert(0, paragraph(f"Trainer mode {history.get('trainer')}: {len(epochs)} epochs; exported the model of "
                              f"epoch {chosen} ({history.get('chosen_reason', 'no epoch chosen')}). Training "
                              "metrics are averages over each epoch; validation metrics are measured after it."))
    parts.insert(1, image(plots.training_curves(epochs, chosen), "training curves"))
    names = [k for k in epochs[0] if k != "epoch"]
    parts.insert(2, table(["epoch"] + names, [[e["epoch"]] + [e.get(n) for n in names] for e in epochs]))
    return "".join(parts)


def _threshold_text(threshold) -> str:
    parts = []
    if threshold.HasField("value_threshold"):
        bounds = threshold.value_threshold
        if bounds.HasField("lower_bound"):
            parts.append(f">= {bounds.lower_bound.value:g}")
        if bounds.HasField("upper_bound"):
            parts.append(f"<= {bounds.upper_bound.value:g}")
    if threshold.HasField("change_threshold"):
        import tensorflow_model_analysis as tfma
        higher = threshold.change_threshold.direction == tfma.MetricDirection.HIGHER_IS_BETTER
        direction = "higher" if higher else "lower"
        parts.append(f"no worse than the baseline ({direction} is better)")
    return "; ".join(parts)


def metric_key(class_name: str) -> str:
    """TFMA's result name of a metric class: `AUC` -> `auc`, `BinaryAccuracy` -> `binary_accuracy`."""
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", class_name).lower()


def _thresholds(config) -> dict[str, str]:
    """Metric class -> its gate in words, from the EvalConfig the Evaluator ran with."""
    gates = {}
    for spec in config.metrics_specs:
        for metric in spec.metrics:
            thresholds = [metric.threshold] if metric.HasField("threshold") else []
            thresholds += [t.threshold for t in metric.per_slice_thresholds]
            text = "; ".join(_threshold_text(t) for t in thresholds)
            if text:
                gates[metric.class_name] = text
    return gates


def _failures(validation) -> dict[str, str]:
    """Metric name -> why it failed its gate, from TFMA's validation result."""
    failures: dict[str, str] = {}
    for per_slice in validation.metric_validations_per_slice if validation else []:
        for failure in per_slice.failures:
            failures.setdefault(failure.metric_key.name, failure.message or "failed")
    return failures


def evaluation_section(run: RunData, label_names: list[str]) -> str:
    import tensorflow_model_analysis as tfma
    evaluation = run.output("evaluation")
    if evaluation is None:
        return missing("evaluation", run, "Evaluator")
    if not tf.io.gfile.exists(evaluation.uri):
        return paragraph(f"The evaluation artefact is gone from {evaluation.uri} (deleted after the run).", "bad")
    evaluator = run.producer("evaluation")
    candidate_name = eval_results.candidate_name(evaluation.uri)  # named only beside a baseline
    candidate = eval_results.load(evaluation.uri, candidate_name)
    if candidate is None:
        return paragraph(f"TFMA wrote no readable result to {evaluation.uri}.", "bad")
    baseline = eval_results.load(evaluation.uri, "baseline") if candidate_name else None
    splits = json.loads(property_value(evaluator.execution, "example_splits") or "null")
    parts = [paragraph(f"TFMA on the held-out split {', '.join(splits) if splits else 'eval (the Evaluator default)'}"
                       "; the gate uses the metrics below, nothing else.")]
    metrics = eval_results.overall(candidate, "metrics")
    baseline_metrics = eval_results.overall(baseline, "metrics") if baseline else {}
    gates = _thresholds(candidate.config)
    failures = _failures(tfma.load_validation_result(evaluation.uri))
    rows = []
    for name, metric in sorted(metrics.items()):
        if eval_results.value(metric) is None or name.endswith("_diff"):
            continue
        gate = next((g for metric, g in gates.items() if metric_key(metric) == name), "")
        status = ("<span class=\"bad\">failed</span>" if name in failures else
                  "<span class=\"ok\">passed</span>" if gate else "")
        rows.append([esc(name), fmt(eval_results.value(metric)), fmt(eval_results.value(baseline_metrics.get(name))),
                     esc(gate), status])
    parts.append(table(["metric", "candidate", "baseline", "gate", "result"], rows, raw=True))
    parts.append(_plots_html(eval_results.overall(candidate, "plots"), label_names))
    parts.append(_slices_html(candidate))
    return "".join(parts)


def _number(value: Any) -> float:
    """A number from TFMA's plot JSON: plain, `{"value": x}` (double-valued fields), or "NaN"; absent is 0."""
    if isinstance(value, dict):
        value = value.get("value", 0.0)
    return float(value) if value is not None else 0.0


def _calibration(buckets: list[dict], bins: int = 10) -> list[tuple[float, float]]:
    """TFMA's fine calibration buckets summed into `bins` equal prediction ranges: (mean prediction, positive rate)."""
    totals = np.zeros((bins, 3))  # examples, labels, predictions
    for bucket in buckets:
        low = _number(bucket.get("lowerThresholdInclusive"))
        index = min(max(int(low * bins), 0), bins - 1) if np.isfinite(low) else 0
        totals[index] += [_number(bucket.get("numWeightedExamples")), _number(bucket.get("totalWeightedLabel")),
                          _number(bucket.get("totalWeightedRefinedPrediction"))]
    return [(predictions / count, labels / count) for count, labels, predictions in totals if count > 0]


def _plots_html(plot_data: dict[str, Any], label_names: list[str]) -> str:
    figures = []
    matrices = plot_data.get("confusionMatrixAtThresholds", {}).get("matrices", [])
    if matrices:
        def get(m, key):
            return _number(m.get(key))
        fpr = [get(m, "falsePositives") / max(get(m, "falsePositives") + get(m, "trueNegatives"), 1e-12)
               for m in matrices]
        tpr = [get(m, "truePositives") / max(get(m, "truePositives") + get(m, "falseNegatives"), 1e-12)
               for m in matrices]
        figures.append(image(plots.curve(fpr, tpr, "false positive rate", "true positive rate", "ROC", True),
                             "ROC curve"))
        precision = [get(m, "precision") for m in matrices if get(m, "truePositives") + get(m, "falsePositives") > 0]
        recall = [get(m, "recall") for m in matrices if get(m, "truePositives") + get(m, "falsePositives") > 0]
        figures.append(image(plots.curve(recall, precision, "recall", "precision", "precision-recall"),
                             "precision-recall curve"))
        at_half = min(matrices, key=lambda m: abs(get(m, "threshold") - 0.5))
        matrix = np.array([[get(at_half, "trueNegatives"), get(at_half, "falsePositives")],
                           [get(at_half, "falseNegatives"), get(at_half, "truePositives")]])
        names = label_names[:2] if len(label_names) == 2 else ["negative", "positive"]
        figures.append(image(plots.confusion_matrix(matrix, names), "confusion matrix at threshold 0.5"))
    points = _calibration(plot_data.get("calibrationHistogramBuckets", {}).get("buckets", []))
    if points:
        figures.append(image(plots.curve([p[0] for p in points], [p[1] for p in points], "mean prediction",
                                         "observed positive rate", "calibration", True), "calibration plot"))
    entries = plot_data.get("multiClassConfusionMatrixAtThresholds", {}).get("matrices", [])
    if entries:
        count = len(label_names) or 1 + max(int(e.get("predictedClassId", 0)) for e in entries[0]["entries"])
        matrix = np.zeros((count, count))
        for entry in entries[0].get("entries", []):
            actual, predicted = int(entry.get("actualClassId", 0)), int(entry.get("predictedClassId", 0))
            if 0 <= actual < count and 0 <= predicted < count:
                matrix[actual, predicted] += _number(entry.get("numWeightedExamples"))
        figures.append(image(plots.confusion_matrix(matrix, label_names or [str(i) for i in range(count)]),
                             "confusion matrix"))
    return f'<div class="figures">{"".join(figures)}</div>' if figures else ""


def _slices_html(result) -> str:
    rows = []
    for slice_key, outputs in result.slicing_metrics:
        name = " & ".join(f"{k} = {v}" for k, v in slice_key) or "overall"
        values = (outputs or {}).get("", {}).get("", {})
        rows.append((name, values))
    rows.sort(key=lambda row: row[0] != "overall")
    names = sorted({m for _, values in rows for m, v in values.items()
                    if eval_results.value(v) is not None and not m.endswith("_diff")})
    cells = [[name] + [eval_results.value(values.get(m)) for m in names] for name, values in rows]
    return "<h3>Metrics per slice</h3>" + table(["slice"] + names, cells)


def blessing_section(run: RunData) -> str:
    blessing = run.output("blessing")
    if blessing is None:
        return missing("blessing", run, "Evaluator")
    blessed = bool(property_value(blessing, "blessed"))
    evaluator = run.producer("blessing")
    baseline = evaluator.inputs.get("baseline_model") if evaluator else None
    verdict = "Blessed: every gate passed." if blessed else "Not blessed: the gates below failed, nothing is pushed."
    parts = [f'<p class="{"ok" if blessed else "bad"}">{esc(verdict)}</p>',
             paragraph(f"Baseline: the latest blessed model, {baseline[0].uri}." if baseline else
                       "No earlier blessed model: only the value thresholds applied.")]
    evaluation = run.output("evaluation")
    if evaluation is not None and not blessed:
        from pipeline.gate_report import explain_failures  # the run summary's own words, one implementation
        parts.append("<ul>" + "".join(f"<li>{esc(line)}</li>" for line in explain_failures(evaluation.uri)) + "</ul>")
    return "".join(parts)


def push_section(run: RunData, served_version: str | None) -> str:
    pushed = run.output("pushed_model")
    if pushed is None:
        return missing("push", run, "Pusher")
    if not property_value(pushed, "pushed"):
        return paragraph("Nothing was pushed: the model was not blessed; the previously served version, if any, "
                         "stays in place.")
    destination = property_value(pushed, "pushed_destination")
    text = f"Served version {served_version} at {destination}." if served_version else f"Pushed to {destination}."
    return paragraph(text, "ok")


def lineage_section(run: RunData) -> str:
    """Which data, schema and code produced the model: URIs, fingerprints and module paths from ML Metadata."""
    rows = []
    examples = run.output("examples")
    if examples is not None:
        producer = run.producer("examples")
        rows.append(("data", property_value(producer.execution, "input_base") if producer.execution else "",
                     f"fingerprint: {property_value(examples, 'input_fingerprint') or '?'}"))
        rows.append(("examples", examples.uri, f"span {property_value(examples, 'span')}"))
    schema = run.output("schema")
    if schema is not None:
        rows.append(("schema", os.path.join(schema.uri, "schema.pbtxt"), ""))
    for key, name in (("transform_graph", "preprocessing_fn"), ("model", "run_fn")):
        artifact, producer = run.output(key), run.producer(key)
        if artifact is None or producer is None or producer.execution is None:
            continue
        config = json.loads(property_value(producer.execution, "custom_config") or "{}")
        module = property_value(producer.execution, name) or ""
        rows.append((key, artifact.uri, f"code {module}, fingerprint {config.get('code', '?')}"))
    cells = [[breakable(cell) if cell else fmt(None) for cell in row] for row in rows]
    return table(["what", "where", "identity"], cells, raw=True)
