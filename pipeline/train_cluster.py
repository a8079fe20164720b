"""`python -m pipeline train-cluster`: the pipeline with its Trainer on several local worker processes.

The same pipeline as `run` (same ML Metadata, so ExampleGen..Transform come from
the cache when unchanged), with `--strategy multi_worker_mirrored` and the
Trainer's executor swapped for components/multi_worker_trainer.py, which starts
one process per worker with its TF_CONFIG on free localhost ports. The chief's
model is the Trainer's `model` artifact; the Evaluator gates it and the Pusher
pushes it to SERVING_DIR/NAME/VERSION like any other run. `compile_cluster` writes
the same pipeline for Kubeflow, where the Trainer step runs its workers as a TFJob.
"""
from __future__ import annotations

import dataclasses
import logging
import os
import pathlib
import time

from tfx.dsl.components.base import executor_spec
from tfx.orchestration import pipeline as tfx_pipeline

from components import multi_worker_trainer
from components.tfjob import TfJobOptions
from models.step_count import read_steps
from pipeline import kubeflow
from pipeline.config import PipelineConfig
from pipeline.in_process import run_in_process
from pipeline.kubeflow import SHARED_MOUNT, ClusterOptions
from pipeline.local_runner import RunReport, summarize
from pipeline.pipeline_def import create_pipeline, describe_source
from specs.dataset import DatasetSpec
from specs.errors import UsageError

log = logging.getLogger(__name__)
STRATEGY = "multi_worker_mirrored"
MAX_LOCAL_WORKERS = 8


@dataclasses.dataclass
class ClusterReport:
    """A run's report plus what each worker did."""

    run: RunReport
    model_uri: str | None
    worker_steps: dict[str, dict | None]   # worker-0, worker-1, ... -> steps.json contents

    def summary(self) -> str:
        lines = [self.run.summary()]
        if self.model_uri:
            lines.append(f"Trainer model (chief's export): {self.model_uri}/Format-Serving")
        for worker, steps in self.worker_steps.items():
            lines.append(f"  {worker}: " + (f"{steps['steps']} steps over {len(steps['steps_per_epoch'])} epochs"
                                            if steps else "no step record"))
        return "\n".join(lines)

    def to_dict(self) -> dict:
        return {**self.run.to_dict(), "model_uri": self.model_uri, "worker_steps": self.worker_steps}


def cluster_config(config: PipelineConfig, workers: int) -> PipelineConfig:
    """The run's config with the multi-worker strategy and the worker count (part of the Trainer's cache key)."""
    return dataclasses.replace(config, strategy=STRATEGY,
                               hparams={**config.hparams, multi_worker_trainer.WORKERS_KEY: workers})


def cluster_pipeline(spec: DatasetSpec, config: PipelineConfig) -> tfx_pipeline.Pipeline:
    """`create_pipeline` with the Trainer's executor swapped for the multi-worker one."""
    pipeline = create_pipeline(spec, config)
    trainer = next(c for c in pipeline.components if c.id == "Trainer")
    trainer.executor_spec = executor_spec.ExecutorClassSpec(multi_worker_trainer.Executor)
    return pipeline


def compile_cluster(spec: DatasetSpec, base: PipelineConfig, options: ClusterOptions, workers: int,
                    output: pathlib.Path) -> pathlib.Path:
    """The pipeline for KFP v1 with a Trainer step that runs its workers as a TFJob (components/tfjob.py)."""
    if options.target != "kfp-v1":
        raise UsageError("compile-cluster writes kfp-v1 (a TFJob needs Kubeflow's training operator); on Vertex "
                         "AI use TFX's Vertex Trainer (tfx.extensions.google_cloud_ai_platform.Trainer, "
                         "worker_pool_specs)")
    check_request(spec, base, workers)
    jobs = TfJobOptions(image=options.image, volume=options.volume,
                        mount_path=SHARED_MOUNT if options.volume else None)
    config = cluster_config(base, workers)
    config = kubeflow.cluster_config(spec, dataclasses.replace(
        config, hparams={**config.hparams, multi_worker_trainer.TFJOB_KEY: jobs.to_dict()}), options)
    for note in kubeflow.shared_path_notes(config, options):
        log.warning("%s (the TFJob's workers read the Trainer's plan and write the model there too)", note)
    kubeflow.check_output(options.target, output)
    output.parent.mkdir(parents=True, exist_ok=True)
    kubeflow.make_runner(options, output).run(cluster_pipeline(spec, config))
    return output


def check_request(spec: DatasetSpec, config: PipelineConfig, workers: int) -> None:
    trainer = config.trainer or spec.default_trainer
    if trainer != "keras":
        raise UsageError(f"train-cluster trains Keras models; {spec.name} uses --trainer {trainer}. "
                         f"Pass --trainer keras, or use `run` for estimator modes")
    if workers < 2:
        raise UsageError(f"--workers {workers}: give 2 or more (one worker is `run`)")
    if config.strategy not in ("default", STRATEGY):
        raise UsageError(f"train-cluster always uses --strategy {STRATEGY}; drop --strategy {config.strategy}")


def train_cluster(spec: DatasetSpec, config: PipelineConfig, workers: int) -> ClusterReport:
    """Runs the pipeline with a `workers`-process Trainer; raises the failing component's error."""
    check_request(spec, config, workers)
    if workers > MAX_LOCAL_WORKERS:
        raise UsageError(f"--workers {workers}: at most {MAX_LOCAL_WORKERS} processes on one machine; "
                         f"for more, compile-cluster runs them as a Kubeflow TFJob")
    config = cluster_config(config, workers)
    config.metadata_for(spec).parent.mkdir(parents=True, exist_ok=True)
    pipeline = cluster_pipeline(spec, config)
    log.info("Running pipeline %r with the Trainer on %d workers, data from %s", spec.name, workers,
             describe_source(spec, config))
    started = time.monotonic()
    run_in_process(pipeline)
    report = summarize(spec, config, time.monotonic() - started)
    trained = report.component("Trainer")
    model = trained.outputs.get("model", [None])[0] if trained else None
    model_run = trained.outputs.get("model_run", [None])[0] if trained else None
    steps = {f"worker-{i}": read_steps(os.path.join(model_run.uri, f"worker-{i}")) if model_run else None
             for i in range(workers)}
    return ClusterReport(report, model.uri if model else None, steps)

