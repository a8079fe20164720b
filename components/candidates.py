"""Model selection over candidate Trainers: choose on `validation`, report on `test`.

`CandidateSelector` scores every candidate's served model (its
`serving_tf_example` signature, Transform graph included) on the raw
`validation` split and outputs a copy of the best one as its `model`, which the
Evaluator gates on `test` and the Pusher pushes: only the winner is pushed.
It never opens the test split. `CandidateComparison` then evaluates every
candidate on `test` in one TensorFlow Model Analysis run (one EvalConfig, one
model spec per candidate, TFMA's Poisson-bootstrap confidence intervals; the
eval result is kept in the artefact under `evaluation/`) and adds parameter
count, training time, served latency and model size: the comparison table,
written as `comparison.json` and `comparison.txt`. It reads the selection, so
the table cannot influence the choice.

Which Trainer produced a model is read from the artifact's URI, which TFX lays
out as `<pipeline_root>/<component id>/<output key>/<execution id>`; candidate
Trainers have the id `Trainer.<candidate>`.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import os
import pathlib
import time
from typing import Any, Callable, Iterable, Mapping

import apache_beam as beam
import numpy as np
import tensorflow as tf
import tensorflow_model_analysis as tfma
from tensorflow_model_analysis.metrics import metric_specs
from tfx import types
from tfx.dsl.components.base import base_component, base_executor, executor_spec
from tfx.types import artifact_utils, standard_artifacts
from tfx.types.component_spec import ChannelParameter, ExecutionParameter
from tfx.utils import io_utils, path_utils, proto_utils

from serving import custom_ops

progress = logging.getLogger("progress.compare")

TRAINER_PREFIX = "Trainer."
SELECTION_FILE = "selection.json"
TABLE_JSON, TABLE_TEXT = "comparison.json", "comparison.txt"
EVALUATION_DIR = "evaluation"  # the TFMA eval result inside the comparison artefact
CI_METHOD = tfma.ConfidenceIntervalOptions.POISSON_BOOTSTRAP  # TFMA: 20 replicates, 95% t-interval
LATENCY_CALLS = 50
LOWER_IS_BETTER = ("MeanSquaredError", "MeanAbsoluteError", "RootMeanSquaredError")


def _auc(labels: np.ndarray, scores: np.ndarray) -> float:
    from sklearn.metrics import roc_auc_score
    return float(roc_auc_score(labels, scores)) if len(np.unique(labels)) == 2 else float("nan")


# The selector's validation scoring: metric name (TFMA/Keras class name, as in a spec's evaluation block)
# -> f(labels, served outputs). The test figures come from TFMA (CandidateComparison).
METRICS: dict[str, Callable[[np.ndarray, Mapping[str, np.ndarray]], float]] = {
    "AUC": lambda y, out: _auc(y, out["probabilities"][:, 1]),
    "BinaryAccuracy": lambda y, out: float(np.mean((out["probabilities"][:, 1] >= 0.5) == y)),
    "SparseCategoricalAccuracy": lambda y, out: float(np.mean(np.argmax(out["probabilities"], axis=1) == y)),
    "MeanSquaredError": lambda y, out: float(np.mean((out["predictions"] - y) ** 2)),
    "MeanAbsoluteError": lambda y, out: float(np.mean(np.abs(out["predictions"] - y))),
    "RootMeanSquaredError": lambda y, out: float(np.sqrt(np.mean((out["predictions"] - y) ** 2))),
}


def better(metric: str, a: float, b: float) -> bool:
    """Is score `a` better than `b` for `metric`? (NaN is never better.)"""
    if np.isnan(a):
        return False
    if np.isnan(b):
        return True
    return a < b if metric in LOWER_IS_BETTER else a > b


def choose(metric: str, scores: Mapping[str, float]) -> str:
    """The candidate with the best score; ties go to the first listed."""
    winner = None
    for name, score in scores.items():
        if winner is None or better(metric, score, scores[winner]):
            winner = name
    if winner is None:
        raise ValueError("no candidate to choose from")
    return winner


class ModelSelection(types.Artifact):
    """Which candidate won on the validation split, with every candidate's validation score."""
    TYPE_NAME = "ModelSelection"


class ModelComparison(types.Artifact):
    """The comparison table: every candidate's test metric, size, speed and training time."""
    TYPE_NAME = "ModelComparison"


def candidate_name(model_uri: str) -> str:
    component_id = pathlib.PurePosixPath(model_uri.rstrip("/")).parent.parent.name
    if not component_id.startswith(TRAINER_PREFIX):
        raise ValueError(f"{model_uri}: not the output of a candidate Trainer ({TRAINER_PREFIX}<name>)")
    return component_id[len(TRAINER_PREFIX):]


def by_candidate(artifacts: Iterable[types.Artifact]) -> dict[str, types.Artifact]:
    return {candidate_name(a.uri): a for a in artifacts}


def load_examples(examples: types.Artifact, split: str, label: str) -> tuple[np.ndarray, np.ndarray]:
    """Serialized raw tf.Examples of one split and their labels."""
    uri = artifact_utils.get_split_uri([examples], split)
    files = tf.io.gfile.glob(os.path.join(uri, "*"))
    serialized = np.array([r.numpy() for r in tf.data.TFRecordDataset(files, compression_type="GZIP")], dtype=object)
    if not len(serialized):
        raise ValueError(f"split {split!r} has no examples ({uri})")
    labels = []
    for record in serialized:
        feature = tf.train.Example.FromString(record).features.feature[label]
        values = feature.int64_list.value or feature.float_list.value
        labels.append(values[0])
    return serialized, np.array(labels)


def load_served(model: types.Artifact) -> Callable:
    """The model's `serving_tf_example` signature, as the Evaluator and batch scoring call it."""
    saved_model_dir = path_utils.serving_model_path(model.uri)
    custom_ops.register_ops_for(saved_model_dir)
    return tf.saved_model.load(saved_model_dir).signatures["serving_tf_example"]


def predict(signature: Callable, serialized: np.ndarray, batch_size: int = 256) -> dict[str, np.ndarray]:
    parts: dict[str, list[np.ndarray]] = {}
    for start in range(0, len(serialized), batch_size):
        outputs = signature(examples=tf.constant(list(serialized[start:start + batch_size])))
        for key, value in outputs.items():
            if value.dtype != tf.string:
                parts.setdefault(key, []).append(value.numpy())
    return {key: np.concatenate(values) for key, values in parts.items()}



def served_latency_ms(signature: Callable, example: bytes) -> float:
    """Median wall time of one single-example call, after warm-up (in process, no network)."""
    batch = tf.constant([example])
    for _ in range(5):
        signature(examples=batch)
    times = []
    for _ in range(LATENCY_CALLS):
        started = time.perf_counter()
        signature(examples=batch)
        times.append(time.perf_counter() - started)
    return float(np.median(times) * 1000)


def parameter_count(saved_model_dir: str) -> int | None:
    """Weights in the SavedModel's checkpoint (no optimizer slots, metric state or scalars); None for trees."""
    if custom_ops.is_tfdf_model(saved_model_dir):
        return None  # the trees live in assets/, not in variables
    names = tf.train.list_variables(os.path.join(saved_model_dir, "variables", "variables"))
    return int(sum(np.prod(shape) for name, shape in names
                   if shape and "OPTIMIZER_SLOT" not in name and not name.startswith("optimizer/")
                   and "keras_api/metrics" not in name))


def directory_bytes(path: str) -> int:
    return sum(os.path.getsize(os.path.join(root, f)) for root, _, files in os.walk(path) for f in files)


def train_seconds(model_run: types.Artifact) -> float | None:
    path = os.path.join(model_run.uri, "train_seconds.json")
    if not tf.io.gfile.exists(path):
        return None
    return float(json.loads(io_utils.read_string_file(path))["seconds"])


class SelectorSpec(types.ComponentSpec):
    PARAMETERS = {"metric": ExecutionParameter(type=str), "label": ExecutionParameter(type=str),
                  "candidates": ExecutionParameter(type=str)}  # JSON: name -> model options
    INPUTS = {"examples": ChannelParameter(type=standard_artifacts.Examples),
              "models": ChannelParameter(type=standard_artifacts.Model)}
    OUTPUTS = {"model": ChannelParameter(type=standard_artifacts.Model),
               "selection": ChannelParameter(type=ModelSelection)}


class SelectorExecutor(base_executor.BaseExecutor):
    def Do(self, input_dict, output_dict, exec_properties) -> None:
        metric, candidates = exec_properties["metric"], json.loads(exec_properties["candidates"])
        serialized, labels = load_examples(input_dict["examples"][0], "validation", exec_properties["label"])
        models = by_candidate(input_dict["models"])
        scores = {}
        for name in candidates:
            scores[name] = METRICS[metric](labels, predict(load_served(models[name]), serialized))
            progress.info("candidate %s: validation %s %.4f", name, metric, scores[name])
        winner = choose(metric, scores)
        progress.info("winner on the validation split (%d rows): %s (%s %.4f)", len(labels), winner, metric,
                      scores[winner])
        io_utils.copy_dir(path_utils.serving_model_path(models[winner].uri),
                          path_utils.serving_model_path(output_dict["model"][0].uri))
        selection = {"metric": metric, "split": "validation", "rows": len(labels), "scores": scores,
                     "winner": winner, "winner_model_uri": models[winner].uri}
        io_utils.write_string_file(os.path.join(output_dict["selection"][0].uri, SELECTION_FILE),
                                   json.dumps(selection, indent=1))


class CandidateSelector(base_component.BaseComponent):
    """Chooses the best candidate on the validation split and outputs its model."""
    SPEC_CLASS = SelectorSpec
    EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(SelectorExecutor)

    def __init__(self, examples: types.BaseChannel, models: types.BaseChannel, metric: str, label: str,
                 candidates: Mapping[str, Mapping[str, Any]]):
        super().__init__(SelectorSpec(
            examples=examples, models=models, metric=metric, label=label, candidates=json.dumps(candidates),
            model=types.Channel(type=standard_artifacts.Model), selection=types.Channel(type=ModelSelection)))


class ComparisonSpec(types.ComponentSpec):
    PARAMETERS = {"metric": ExecutionParameter(type=str), "eval_config": ExecutionParameter(type=tfma.EvalConfig),
                  "candidates": ExecutionParameter(type=str), "seed": ExecutionParameter(type=int)}
    INPUTS = {"examples": ChannelParameter(type=standard_artifacts.Examples),
              "models": ChannelParameter(type=standard_artifacts.Model),
              "model_runs": ChannelParameter(type=standard_artifacts.ModelRun),
              "selection": ChannelParameter(type=ModelSelection)}
    OUTPUTS = {"comparison": ChannelParameter(type=ModelComparison)}


def candidates_eval_config(gate_config: tfma.EvalConfig, names: Iterable[str], metric: str) -> tfma.EvalConfig:
    """The Evaluator's EvalConfig made into one over every candidate.

    Its served-model spec (signature, label and prediction keys) once per
    candidate, named after it; the choosing metric as the spec configures it,
    for all candidates, without thresholds (they gate the winner in the
    Evaluator); the whole split; TFMA's own confidence intervals.
    """
    names = list(names)
    model_specs = []
    for name in names:
        model_spec = tfma.ModelSpec()
        model_spec.CopyFrom(gate_config.model_specs[0])
        model_spec.name, model_spec.is_baseline = name, False
        model_specs.append(model_spec)
    configured = next((m for spec in gate_config.metrics_specs if not spec.HasField("binarize")
                       for m in spec.metrics if m.class_name == metric), tfma.MetricConfig(class_name=metric))
    metric_config = tfma.MetricConfig(class_name=configured.class_name, module=configured.module,
                                      config=configured.config)
    options = tfma.Options()
    options.compute_confidence_intervals.value = True
    options.confidence_intervals.method = CI_METHOD
    return tfma.EvalConfig(model_specs=model_specs, slicing_specs=[tfma.SlicingSpec()], options=options,
                           metrics_specs=[tfma.MetricsSpec(metrics=[metric_config], model_names=names)])


def evaluate_candidates(config: tfma.EvalConfig, models: Mapping[str, types.Artifact], examples: types.Artifact,
                        output_path: str, seed: int) -> None:
    """One TFMA run of every candidate's served model over the test split (Beam DirectRunner, in process)."""
    shared_models = []
    for model_spec in config.model_specs:
        model_dir = path_utils.serving_model_path(models[model_spec.name].uri)
        custom_ops.register_ops_for(model_dir)  # TF-DF candidates: TFMA loads them in this process
        # include_default_metrics=False: only the configured metric. A Keras model's own compiled metrics
        # would be recomputed by reloading the model in every bootstrap replicate (minutes per image model).
        shared_models.append(tfma.default_eval_shared_model(
            eval_saved_model_path=model_dir, model_name=model_spec.name, eval_config=config,
            include_default_metrics=False))
    tfma.run_model_analysis(
        eval_shared_model=shared_models, eval_config=config, output_path=output_path,
        data_location=os.path.join(artifact_utils.get_split_uri([examples], "test"), "*"),
        pipeline_options=beam.options.pipeline_options.PipelineOptions(
            ["--runner=DirectRunner", "--direct_running_mode=in_memory"]),
        random_seed_for_testing=seed)  # the bootstrap resamples reproducibly


def tfma_metric(output_path: str, model_name: str, metric_config: tfma.MetricConfig) -> tuple[float, tuple[float, float]]:
    """A candidate's metric on the whole split and its 95% interval, as the TFMA eval result holds them."""
    name = metric_specs.metric_instance(metric_config).name
    metrics = tfma.load_eval_result(output_path, model_name=model_name).get_metrics_for_slice()
    if not metrics or name not in metrics:
        raise ValueError(f"{output_path}: no {name} for {model_name} in the TFMA eval result")
    bounded = metrics[name]["boundedValue"]
    return float(bounded["value"]), (float(bounded["lowerBound"]), float(bounded["upperBound"]))


@dataclasses.dataclass
class Row:
    """One candidate in the comparison table."""

    candidate: str
    options: dict[str, Any]
    validation_metric: float
    test_metric: float
    test_interval: tuple[float, float]
    parameters: int | None
    train_seconds: float | None
    latency_ms: float
    size_bytes: int
    winner: bool


def format_table(metric: str, rows: list[Row], test_rows: int) -> str:
    header = (f"{'candidate':<18} {'trainer':<9} {'builder':<15} {'val ' + metric:>14} "
              f"{'test ' + metric + ' [95% CI]':>34} {'params':>11} {'train s':>8} {'ms/ex':>7} {'MB':>7}")
    lines = [header, "-" * len(header)]
    for r in rows:
        params = "trees" if r.parameters is None else f"{r.parameters:,}"
        train = "?" if r.train_seconds is None else f"{r.train_seconds:.0f}"
        test = f"{r.test_metric:.4f} [{r.test_interval[0]:.4f}, {r.test_interval[1]:.4f}]"
        trainer = r.options.get("trainer", "keras")
        builder = r.options.get("builder", "-") if trainer in ("keras", "estimator") else "-"  # others: no builder
        lines.append(f"{r.candidate + (' *' if r.winner else ''):<18} {trainer:<9} "
                     f"{str(builder):<15} {r.validation_metric:>14.4f} {test:>34} "
                     f"{params:>11} {train:>8} {r.latency_ms:>7.2f} {r.size_bytes / 1e6:>7.1f}")
    lines.append(f"* chosen on validation {metric}; test figures on {test_rows} rows from one TFMA run, 95% intervals "
                 f"by TFMA {tfma.ConfidenceIntervalOptions.ConfidenceIntervalMethod.Name(CI_METHOD)}; "
                 "ms/ex: one example per call, in process")
    return "\n".join(lines)


class ComparisonExecutor(base_executor.BaseExecutor):
    def Do(self, input_dict, output_dict, exec_properties) -> None:
        metric, candidates = exec_properties["metric"], json.loads(exec_properties["candidates"])
        gate_config = proto_utils.json_to_proto(exec_properties["eval_config"], tfma.EvalConfig())
        selection = json.loads(io_utils.read_string_file(
            os.path.join(input_dict["selection"][0].uri, SELECTION_FILE)))
        examples = input_dict["examples"][0]
        models, runs = by_candidate(input_dict["models"]), by_candidate(input_dict["model_runs"])
        uri = output_dict["comparison"][0].uri
        config = candidates_eval_config(gate_config, candidates, metric)
        progress.info("evaluating %d candidates on the test split in one TFMA run", len(candidates))
        evaluate_candidates(config, models, examples, os.path.join(uri, EVALUATION_DIR), exec_properties["seed"])
        serialized, _ = load_examples(examples, "test", gate_config.model_specs[0].label_key)
        rows = []
        for name, options in candidates.items():
            test_metric, test_interval = tfma_metric(os.path.join(uri, EVALUATION_DIR), name,
                                                     config.metrics_specs[0].metrics[0])
            model_dir = path_utils.serving_model_path(models[name].uri)
            rows.append(Row(
                candidate=name, options=dict(options), validation_metric=selection["scores"][name],
                test_metric=test_metric, test_interval=test_interval, parameters=parameter_count(model_dir),
                train_seconds=train_seconds(runs[name]) if name in runs else None,
                latency_ms=served_latency_ms(load_served(models[name]), serialized[0]),
                size_bytes=directory_bytes(model_dir), winner=name == selection["winner"]))
        table = format_table(metric, rows, len(serialized))
        io_utils.write_string_file(os.path.join(uri, TABLE_TEXT), table + "\n")
        io_utils.write_string_file(os.path.join(uri, TABLE_JSON), json.dumps(
            {"metric": metric, "chosen_on": "validation", "reported_on": "test", "test_rows": len(serialized),
             "validation_rows": selection["rows"], "winner": selection["winner"],
             "test_metrics_from": f"TFMA eval result in {EVALUATION_DIR}/ (one run, every candidate)",
             "confidence_interval": f"TFMA {tfma.ConfidenceIntervalOptions.ConfidenceIntervalMethod.Name(CI_METHOD)}",
             "rows": [dataclasses.asdict(r) for r in rows]}, indent=1))


class CandidateComparison(base_component.BaseComponent):
    """The comparison table of every candidate on the test split, its metrics from one TFMA run."""
    SPEC_CLASS = ComparisonSpec
    EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(ComparisonExecutor)

    def __init__(self, examples: types.BaseChannel, models: types.BaseChannel, model_runs: types.BaseChannel,
                 selection: types.BaseChannel, metric: str, eval_config: tfma.EvalConfig,
                 candidates: Mapping[str, Mapping[str, Any]], seed: int):
        """`eval_config` is the Evaluator's (the spec's): its model spec and metric are reused per candidate."""
        super().__init__(ComparisonSpec(
            examples=examples, models=models, model_runs=model_runs, selection=selection, metric=metric,
            eval_config=eval_config, candidates=json.dumps(candidates), seed=seed,
            comparison=types.Channel(type=ModelComparison)))
