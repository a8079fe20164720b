"""`python -m pipeline runs`: past runs of a data set from its ML Metadata store, newest last."""
from __future__ import annotations

import dataclasses
import datetime

from pipeline import metadata
from pipeline.config import PipelineConfig
from pipeline.report import served_version
from pipeline.eval_results import overall_metric_values
from pipeline.report.model_sections import metric_key
from pipeline.report.run_data import RunData, open_run_store, property_value
from specs.dataset import DatasetSpec


@dataclasses.dataclass(frozen=True)
class RunSummary:
    run_id: str
    started: float
    state: str
    metric: str
    value: float | None
    blessed: bool | None
    version: str | None


def key_metric(spec: DatasetSpec) -> str:
    """The metric a run is judged by: the no-regression metric, else the first gated one, else the first."""
    evaluation = spec.evaluation
    name = (evaluation.get("no_regression_metric") or next(iter(evaluation.get("thresholds", {})), None)
            or next((m for m in evaluation.get("metrics", []) if m != "ExampleCount"), "ExampleCount"))
    return metric_key(name)


def summarize(run: RunData, metric: str) -> RunSummary:
    blessing, evaluation = run.output("blessing"), run.output("evaluation")
    value = overall_metric_values(evaluation.uri).get(metric) if evaluation is not None else None
    version = served_version(run)
    return RunSummary(run.run.run_id, run.run.started, run.state, metric, value,
                      None if blessing is None else bool(property_value(blessing, "blessed")),
                      version[0] if version else None)


def list_runs(spec: DatasetSpec, config: PipelineConfig) -> list[RunSummary]:
    store = open_run_store(config.metadata_for(spec), spec.name, config.home)
    metric = key_metric(spec)
    return [summarize(RunData(spec.name, run, metadata.run_components(store, run)), metric)
            for run in metadata.pipeline_runs(store)]


def format_runs(runs: list[RunSummary]) -> str:
    if not runs:
        return "No runs recorded."
    lines = [f"{'run id':<28} {'started (UTC)':<20} {'state':<9} {runs[0].metric:>12} {'blessed':<8} version"]
    for run in runs:
        started = datetime.datetime.fromtimestamp(run.started, datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%S")
        value = f"{run.value:.4f}" if run.value is not None else "-"
        blessed = "-" if run.blessed is None else ("yes" if run.blessed else "no")
        lines.append(f"{run.run_id:<28} {started:<20} {run.state:<9} {value:>12} {blessed:<8} {run.version or '-'}")
    return "\n".join(lines)
