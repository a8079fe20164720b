"""Compile the pipeline for Kubeflow Pipelines: KFP v1 (Argo Workflow YAML) or KFP v2 (PipelineSpec JSON).

Both targets compile the very `create_pipeline(spec, config)` that LocalDagRunner
runs; only the config differs. On a cluster every step is a pod started from the
pipeline image (see the Dockerfile), so paths must be ones a pod can reach:
the pipeline root and the serving dir are URIs (gs://, s3://) or paths on a
volume shared by all steps; the curated schema and the bundled data default to
their copies inside the image; ML Metadata is the cluster's, not a local sqlite.
"""
from __future__ import annotations

import dataclasses
import importlib.metadata
import pathlib
import re

from typing import TYPE_CHECKING

from pipeline.beam_runner import beam_args_for
from specs.errors import UsageError
from pipeline.config import PipelineConfig
from specs.dataset import PROJECT_ROOT, DatasetSpec

if TYPE_CHECKING:
    from tfx.orchestration.tfx_runner import TfxRunner

TARGETS = ("kfp-v1", "kfp-v2")
OUTPUT_SUFFIXES = {"kfp-v1": (".yaml", ".yml", ".tar.gz", ".tgz", ".zip"), "kfp-v2": (".json",)}
IMAGE_PROJECT_ROOT = "/pipeline"          # the Dockerfile's WORKDIR: the project at its repo layout
SHARED_MOUNT = "/mnt/tfx"                 # where --volume mounts a PersistentVolumeClaim (kfp-v1)
DEFAULT_PIPELINE_ROOT = f"{SHARED_MOUNT}/pipeline_root"
DEFAULT_SERVING_DIR = f"{SHARED_MOUNT}/serving_models"


def default_image() -> str:
    return f"tfx-pipeline-kit:{importlib.metadata.version('tfx-pipeline-kit')}"


def is_uri(path: str) -> bool:
    return "://" in path


def image_path(path: pathlib.Path | str) -> str:
    """Where a project file (absolute, or relative to the project) is inside the pipeline image."""
    path = pathlib.Path(path)
    relative = path.relative_to(PROJECT_ROOT) if path.is_absolute() else path
    return f"{IMAGE_PROJECT_ROOT}/{relative.as_posix()}"


def kfp_name(spec: DatasetSpec) -> str:
    """The pipeline name on the cluster: KFP v2 accepts only [a-z0-9][a-z0-9-]*, so `cats_vs_dogs` -> `cats-vs-dogs`."""
    return re.sub(r"[^a-z0-9-]+", "-", spec.name.lower()).strip("-")


def data_in_image(spec: DatasetSpec) -> str | None:
    """The spec's data folder as the image holds it; None when the source has no folder (e.g. TFDS)."""
    base = spec.source.get("base")
    if base is None or is_uri(base) or base.startswith("/"):
        return base
    return image_path(base)


@dataclasses.dataclass(frozen=True)
class ClusterOptions:
    """Where things live on the cluster and how its steps run."""

    target: str = "kfp-v1"
    image: str = dataclasses.field(default_factory=default_image)
    pipeline_root: str = DEFAULT_PIPELINE_ROOT   # the pipeline writes under PIPELINE_ROOT/NAME
    serving_dir: str = DEFAULT_SERVING_DIR       # Pusher writes SERVING_DIR/NAME/VERSION
    data_uri: str | None = None                  # default: the data copied into the image
    schema_uri: str | None = None                # default: the curated schema copied into the image
    beam_runner: str = "DirectRunner"
    beam_args: tuple[str, ...] = ()              # passed through after the runner's defaults
    volume: str | None = None                    # kfp-v1: PVC mounted at SHARED_MOUNT on every step

    def __post_init__(self) -> None:
        if self.target not in TARGETS:
            raise UsageError(f"unknown target {self.target!r}; choose one of {', '.join(TARGETS)}")
        if self.volume and self.target != "kfp-v1":
            raise UsageError("--volume mounts a PVC through KFP v1 op transformers; for kfp-v2 use gs:// URIs")


def cluster_config(spec: DatasetSpec, base: PipelineConfig, options: ClusterOptions) -> PipelineConfig:
    """`base` (trainer, hparams, thresholds, seed, cache) with the cluster's locations and runner."""
    return dataclasses.replace(
        base,
        pipeline_name=kfp_name(spec),
        pipeline_root=f"{options.pipeline_root.rstrip('/')}/{spec.name}",
        serving_dir=options.serving_dir,
        input_base=options.data_uri or data_in_image(spec),
        schema_file=options.schema_uri or image_path(spec.schema_path),
        beam_args=beam_args_for(options.beam_runner, options.beam_args, options.image),
        local_metadata=False)


def shared_path_notes(config: PipelineConfig, options: ClusterOptions) -> list[str]:
    """Warnings for output paths that would be private to each step's pod."""
    notes = []
    for what, path in (("pipeline root", config.pipeline_root), ("serving dir", str(config.serving_dir))):
        if is_uri(path):
            continue
        if options.target == "kfp-v2":
            notes.append(f"{what} {path} is a container path; KFP v2 / Vertex steps share no volume: give gs:// URIs")
        elif not (options.volume and path.startswith(SHARED_MOUNT + "/")):
            notes.append(f"{what} {path} is a path inside each step's container: steps only share it when it is "
                         f"on a shared volume (--volume CLAIM mounts one at {SHARED_MOUNT}), else give gs:// or "
                         f"s3:// URIs")
    return notes


def check_output(target: str, output: pathlib.Path) -> None:
    if not output.name.endswith(OUTPUT_SUFFIXES[target]):
        raise UsageError(f"--output {output}: a {target} pipeline is written as "
                         f"{' or '.join(OUTPUT_SUFFIXES[target])}")


def make_runner(options: ClusterOptions, output: pathlib.Path) -> TfxRunner:
    from kfp import onprem  # TF/TFX/KFP load in seconds: only when compiling, not for --help
    from tfx import v1 as tfx
    from tfx.orchestration.kubeflow import kubeflow_dag_runner
    where = {"output_dir": str(output.parent), "output_filename": output.name}
    if options.target == "kfp-v2":
        return tfx.orchestration.experimental.KubeflowV2DagRunner(
            config=tfx.orchestration.experimental.KubeflowV2DagRunnerConfig(default_image=options.image), **where)
    # The defaults mount the cluster's metadata-grpc-configmap: steps record to the cluster's MLMD.
    operators = kubeflow_dag_runner.get_default_pipeline_operator_funcs()
    if options.volume:
        operators.append(onprem.mount_pvc(options.volume, "tfx-shared", SHARED_MOUNT))
    return tfx.orchestration.experimental.KubeflowDagRunner(
        config=tfx.orchestration.experimental.KubeflowDagRunnerConfig(
            kubeflow_metadata_config=tfx.orchestration.experimental.get_default_kubeflow_metadata_config(),
            tfx_image=options.image, pipeline_operator_funcs=operators),
        **where)


def compile_pipeline(spec: DatasetSpec, config: PipelineConfig, options: ClusterOptions,
                     output: pathlib.Path) -> pathlib.Path:
    """Writes the compiled pipeline for `options.target`; `config` comes from `cluster_config`."""
    from pipeline.pipeline_def import create_pipeline
    from pipeline.spans import span_window
    check_output(options.target, output)
    if options.target == "kfp-v2" and span_window(spec) > 1:
        raise UsageError(f"{spec.name}: source.span_window {span_window(spec)} reads a rolling window of spans "
                         "through TFX's SpanRangeStrategy, which KubeflowV2DagRunner (TFX 1.15) cannot compile; "
                         "use --target kfp-v1, or span_window: 1 (the newest span only)")
    output.parent.mkdir(parents=True, exist_ok=True)
    make_runner(options, output).run(create_pipeline(spec, config))
    return output
