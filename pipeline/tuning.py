"""The Tuner node: TFX's Tuner component over the Transform output, when the spec or `--tune` asks for it."""
from __future__ import annotations

from tfx.components import Transform, Tuner
from tfx.proto import trainer_pb2
from tfx.types import Channel

from models.tuning import check_tuning
from pipeline.config import PipelineConfig
from specs.dataset import DatasetSpec
from specs.errors import UsageError


def tuning_enabled(spec: DatasetSpec, config: PipelineConfig) -> bool:
    if config.tune and not spec.tuning:
        raise UsageError(f"--tune: the {spec.name} spec has no tuning block; add one (see README, Tuning)")
    return bool(spec.tuning) and (config.tune or bool(spec.tuning.get("enabled", False)))


def make_tuner(spec: DatasetSpec, config: PipelineConfig, transform: Transform, schema: Channel,
               train_args: trainer_pb2.TrainArgs, validation_args: trainer_pb2.EvalArgs,
               code_config: dict) -> list[Tuner]:
    """[Tuner] scoring trials on `validation_args`' split, or [] when tuning is off.

    Its custom_config (the cache key) is the code and spec the Trainer reads, the search
    space and the run options; not the run's seed (the search has its own, `tuning.seed`),
    so runs with other seeds train with the same tuned values and reuse the search.
    """
    if not tuning_enabled(spec, config):
        return []
    check_tuning(spec.name, spec.tuning)
    tuning = {k: v for k, v in spec.tuning.items() if k != "enabled"}
    return [Tuner(tuner_fn="models.tuning.tuner_fn", examples=transform.outputs["transformed_examples"],
                  transform_graph=transform.outputs["transform_graph"], schema=schema,
                  train_args=train_args, eval_args=validation_args,
                  custom_config={**code_config, "tuning": tuning,
                                 "hparams": {**config.trainer_hparams(spec), "seed": tuning.get("seed", 42)}})]
