"""Run configuration: where outputs go and how a run differs from the spec's defaults."""
from __future__ import annotations

import dataclasses
import pathlib
from typing import Any, Mapping

from specs.dataset import PROJECT_ROOT, DatasetSpec

# No Beam args: Beam's DirectRunner then runs each Beam component in the calling
# process (direct_running_mode in_memory, one worker: Beam's own defaults). On one
# 2-core machine, multi_processing starts worker processes that each import TF again
# (~25 s apiece), 2.5x slower end to end for data of this size. Empty on purpose:
# given any Beam arg, TFX copies its whole installation into an sdist for remote
# workers before every Beam component (tfx.utils.dependency_utils: ~3 s and 23 MB
# left in the temp dir each time), which an in-process run never reads.
# For a cluster, pass e.g. --runner=DataflowRunner/FlinkRunner/SparkRunner args.
DEFAULT_BEAM_ARGS: tuple[str, ...] = ()
DEFAULT_BEAM_DESCRIPTION = "none: Beam's DirectRunner in this process (in_memory, one worker)"
DEFAULT_SEED = 42


@dataclasses.dataclass
class PipelineConfig:
    """Everything about a run that is not a property of the data set."""

    home: pathlib.Path = PROJECT_ROOT / "runs"
    serving_dir: pathlib.Path | str = PROJECT_ROOT / "serving_models"  # str: a URI (gs://, s3://, volume path)
    input_base: str | None = None          # overrides the spec's data folder (e.g. a sample)
    trainer: str | None = None             # keras | estimator | premade; None = spec default
    hparams: dict[str, Any] = dataclasses.field(default_factory=dict)  # overrides spec.model
    thresholds: dict[str, Mapping[str, float]] = dataclasses.field(default_factory=dict)
    tune: bool = False                     # run the Tuner even if the spec's tuning block is not enabled
    strategy: str = "default"
    tpu: str | None = None
    beam_args: tuple[str, ...] = DEFAULT_BEAM_ARGS
    enable_cache: bool = True
    seed: int = DEFAULT_SEED
    pipeline_root: str | None = None       # a URI (gs://, s3://, volume path) for remote runners
    metadata_path: pathlib.Path | None = None
    local_metadata: bool = True            # False on Kubeflow: its runners bring the cluster's ML Metadata
    schema_file: str | None = None         # overrides spec.schema_path (e.g. the path inside a container image)
    pipeline_name: str | None = None       # overrides spec.name (KFP v2 allows only [a-z0-9-] names)

    def root_for(self, spec: DatasetSpec) -> str:
        return self.pipeline_root or str(self.home / spec.name / "pipeline_root")

    def metadata_for(self, spec: DatasetSpec) -> pathlib.Path:
        return self.metadata_path or self.home / spec.name / "metadata.sqlite"

    def schema_for(self, spec: DatasetSpec) -> str:
        return self.schema_file or str(spec.schema_path)

    def serving_dir_for(self, spec: DatasetSpec) -> str:
        return str(self.serving_dir / spec.name) if isinstance(self.serving_dir, pathlib.Path) \
            else f"{str(self.serving_dir).rstrip('/')}/{spec.name}"

    def input_base_for(self, spec: DatasetSpec) -> str:
        if self.input_base:
            return self.input_base
        base = spec.source["base"]
        return base if "://" in base or base.startswith("/") else str(PROJECT_ROOT / base)

    def trainer_hparams(self, spec: DatasetSpec) -> dict[str, Any]:
        """What Trainer's custom_config carries besides the spec."""
        hparams = dict(self.hparams)
        hparams.update(seed=self.seed, strategy=self.strategy)
        if self.trainer:
            hparams["trainer"] = self.trainer
        if self.tpu:
            hparams["tpu"] = self.tpu
        return hparams
