"""Beam runner choice for the pipeline's Beam components on a cluster.

ExampleGen, StatisticsGen, Transform and Evaluator are Beam pipelines. In a
Kubeflow step they run with DirectRunner inside the step's pod, or hand the work
to Dataflow, Flink or Spark. Remote Beam workers import our code (CsvExampleGen's
DoFns, `models.preprocessing`), so they must run the pipeline image too.
"""
from __future__ import annotations

from typing import Sequence

from specs.errors import UsageError

RUNNERS = ("DirectRunner", "DataflowRunner", "FlinkRunner", "SparkRunner")

# Options each runner cannot do without on a cluster, with an example to give.
REQUIRED_OPTIONS: dict[str, dict[str, str]] = {
    "DirectRunner": {},
    "DataflowRunner": {"project": "my-gcp-project", "region": "us-central1", "temp_location": "gs://BUCKET/tmp"},
    # Without a master, Flink/Spark would start an embedded cluster inside the pod: not distributed.
    "FlinkRunner": {"flink_master": "flink-jobmanager:8081"},
    "SparkRunner": {"spark_master_url": "spark://spark-master:7077"},
}


def option_names(args: Sequence[str]) -> set[str]:
    """`--project=x` and `--project x` both name `project`."""
    return {arg[2:].split("=", 1)[0] for arg in args if arg.startswith("--")}


def runner_defaults(runner: str, image: str) -> list[str]:
    """What each runner needs to run our code in a pod or on remote workers."""
    if runner == "DirectRunner":
        # A step's pod is a whole machine share: use all its cores (0 = one worker per core).
        return ["--direct_running_mode=multi_processing", "--direct_num_workers=0"]
    if runner == "DataflowRunner":
        return [f"--sdk_container_image={image}"]
    # Portable runners start the SDK harness from this image on each worker.
    return ["--environment_type=DOCKER", f"--environment_config={image}"]


def beam_args_for(runner: str, extra: Sequence[str], image: str) -> tuple[str, ...]:
    """`--runner=RUNNER`, its defaults (unless `extra` sets them), then `extra` as given."""
    if runner not in RUNNERS:
        raise UsageError(f"unknown Beam runner {runner!r}; choose one of {', '.join(RUNNERS)}")
    given = option_names(extra)
    if "runner" in given:
        raise UsageError("give the runner with --beam-runner, not as a Beam arg (--runner=...)")
    missing = [name for name in REQUIRED_OPTIONS[runner] if name not in given]
    if missing:
        examples = " ".join(f"--beam-arg=--{name}={REQUIRED_OPTIONS[runner][name]}" for name in missing)
        raise UsageError(f"{runner} needs {', '.join('--' + m for m in missing)}; add e.g. {examples}")
    defaults = [arg for arg in runner_defaults(runner, image) if not option_names([arg]) & given]
    if runner in ("FlinkRunner", "SparkRunner") and "environment_type" in given:
        defaults = [arg for arg in defaults if not arg.startswith("--environment_config")]
    return (f"--runner={runner}", *defaults, *extra)
