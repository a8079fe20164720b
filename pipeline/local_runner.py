"""Runs a data set's pipeline with LocalDagRunner and reports what came out."""
from __future__ import annotations

import dataclasses
import logging
import time
from typing import Any

from pipeline import eval_results, gate_report, metadata
from pipeline.config import PipelineConfig
from pipeline.in_process import run_in_process
from pipeline.pipeline_def import create_pipeline, describe_source
from specs.dataset import DatasetSpec

log = logging.getLogger(__name__)


REUSED_EVALUATION = {
    True: "Not re-evaluated: this model is already the blessed one (evaluated in an earlier run against the same "
          "baseline, data and thresholds); the metrics below are from that evaluation.",
    False: "Not re-evaluated: this model was evaluated in an earlier run against the same baseline, data and "
           "thresholds; the metrics below are from that evaluation.",
}


@dataclasses.dataclass
class RunReport:
    """What a run did and produced: the basis of the CLI's summary and the benchmarks."""

    dataset: str
    seconds: float
    components: list[metadata.ComponentRun]
    blessed: bool | None = None
    pushed_path: str | None = None
    metrics: dict[str, float] = dataclasses.field(default_factory=dict)
    evaluation_reused: bool = False  # Evaluator cached: this model was evaluated against this baseline before
    slices: dict[str, dict[str, float]] = dataclasses.field(default_factory=dict)  # "Geography=France" -> metrics
    failures: list[str] = dataclasses.field(default_factory=list)  # the gates a not-blessed model failed

    def summary(self) -> str:
        """What the console shows after a run: components, metrics, and what happened to the model."""
        lines = [f"\nPipeline {self.dataset!r} finished in {self.seconds:.0f} s"]
        lines += [f"  {c.component:<32} {c.state:<9} {c.seconds:7.1f} s" for c in self.components]
        if self.evaluation_reused:
            lines.append(REUSED_EVALUATION[bool(self.blessed)])
        if self.metrics:
            lines.append("Test split metrics: " + ", ".join(f"{k}={v:.4f}" for k, v in sorted(self.metrics.items())))
        lines += [f"  {where}: " + ", ".join(f"{k}={v:.4f}" for k, v in sorted(values.items()))
                  for where, values in self.slices.items()]
        if self.blessed is False:
            lines.append("The model was NOT blessed; nothing was pushed. "
                         "The previously pushed model, if any, stays in place.")
            lines += [f"  failed: {failure}" for failure in self.failures]
        elif self.pushed_path:
            lines.append(f"Pushed model: {self.pushed_path}")
        return "\n".join(lines)

    def component(self, name: str) -> metadata.ComponentRun | None:
        return next((c for c in self.components if c.component == name), None)

    def to_dict(self) -> dict[str, Any]:
        return {"dataset": self.dataset, "seconds": round(self.seconds, 2), "blessed": self.blessed,
                "pushed_path": self.pushed_path, "metrics": self.metrics,
                "evaluation_reused": self.evaluation_reused, "slices": self.slices,
                "failures": self.failures,
                "components": [{"component": c.component, "state": c.state, "seconds": round(c.seconds, 2)}
                               for c in self.components]}


def summarize(spec: DatasetSpec, config: PipelineConfig, seconds: float) -> RunReport:
    store = metadata.open_store(config.metadata_for(spec))
    runs = metadata.latest_run(store)
    report = RunReport(spec.name, seconds, runs)
    evaluator = report.component("Evaluator")
    if evaluator:
        report.evaluation_reused = evaluator.state == "CACHED"
        blessing = evaluator.outputs.get("blessing", [])
        if blessing:
            report.blessed = bool(metadata.custom_property(blessing[0], "blessed"))
        evaluation = evaluator.outputs.get("evaluation", [])
        if evaluation:
            report.metrics = eval_results.overall_metric_values(evaluation[0].uri)
            report.slices = gate_report.slice_metrics(evaluation[0].uri)
            report.failures = gate_report.explain_failures(evaluation[0].uri) if report.blessed is False else []
    pusher = report.component("Pusher")
    if pusher and pusher.outputs.get("pushed_model"):
        pushed = pusher.outputs["pushed_model"][0]
        if metadata.custom_property(pushed, "pushed"):
            report.pushed_path = metadata.custom_property(pushed, "pushed_destination")
    return report


def run_local(spec: DatasetSpec, config: PipelineConfig) -> RunReport:
    """Runs the whole pipeline; raises the failing component's error (e.g. DataAnomalyError)."""
    config.metadata_for(spec).parent.mkdir(parents=True, exist_ok=True)
    log.info("Running pipeline %r (trainer %s) with data from %s", spec.name,
             config.trainer or spec.default_trainer, describe_source(spec, config))
    started = time.monotonic()
    run_in_process(create_pipeline(spec, config))
    return summarize(spec, config, time.monotonic() - started)
