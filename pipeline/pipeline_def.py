"""The TFX pipeline, built from a data set spec and a run config.

One definition serves every data set and every runner: LocalDagRunner here,
KubeflowDagRunner / KubeflowV2DagRunner on a cluster.
"""
from __future__ import annotations

import pathlib
from typing import Any

from google.protobuf import text_format
from tensorflow_metadata.proto.v0 import schema_pb2
from tfx import v1 as tfx
from tfx.dsl.components.base import executor_spec
from tfx.proto import example_gen_pb2

from components.pusher import Executor as SkipDuplicatePushExecutor
from components.csv_example_gen import CsvExampleGen
from components.tfds_example_gen import TfdsExampleGen
from components.validation_gate import ValidationGate
from models.images import TRANSFORM_HPARAMS
from models.trainer import check_mode_options
from pipeline import evaluation, tuning
from pipeline.config import PipelineConfig
from specs.dataset import SPLITS, DatasetSpec
from specs.fingerprint import code_fingerprint

HASH_BUCKETS = 100


def split_config(spec: DatasetSpec) -> example_gen_pb2.Output:
    """Deterministic train/validation/test split: each example's hash picks its bucket."""
    return example_gen_pb2.Output(split_config=example_gen_pb2.SplitConfig(splits=[
        example_gen_pb2.SplitConfig.Split(name=name, hash_buckets=round(spec.splits[name] * HASH_BUCKETS))
        for name in SPLITS]))


# Who reads which split: Transform analyses train and writes train and validation only,
# so the Trainer (and Tuner) cannot open a test file; the Evaluator reads test only.
TRANSFORM_SPLITS = tfx.proto.SplitsConfig(analyze=["train"], transform=["train", "validation"])
TRAIN_ARGS = tfx.proto.TrainArgs(splits=["train"])
VALIDATION_ARGS = tfx.proto.EvalArgs(splits=["validation"])
REPORTED_SPLIT = "test"


def declared_types(spec: DatasetSpec) -> dict[str, str]:
    """Feature types (INT, FLOAT, BYTES) of the curated schema; none before one is curated.

    Read from the repo's copy at build time, so a compiled (Kubeflow) pipeline
    carries them too.
    """
    if not spec.schema_path.exists():
        return {}
    schema = text_format.Parse(spec.schema_path.read_text(), schema_pb2.Schema())
    return {feature.name: schema_pb2.FeatureType.Name(feature.type) for feature in schema.feature}


def make_example_gen(spec: DatasetSpec, config: PipelineConfig) -> tfx.types.BaseNode:
    source = spec.source
    kind = source.get("kind")
    if kind == "csv":
        return CsvExampleGen(
            config.input_base_for(spec), pattern=source.get("pattern", "*"),
            delimiter=source.get("delimiter", ","), drop_columns=source.get("drop_columns", ()),
            file_feature=source.get("file_feature"), declared_types=declared_types(spec),
            output_config=split_config(spec))
    if kind == "tfds":
        return TfdsExampleGen(
            source["name"], source["splits"], {spec.image_feature: source.get("image_key", "image"),
                                               spec.label: source.get("label_key", "label")},
            spec.label, version=source.get("version"), data_dir=tfds_data_dir(spec, config),
            module=source.get("module"), label_names=spec.label_names)
    raise ValueError(f"{spec.name}: source.kind {kind!r} is not supported; use csv or tfds")


def tfds_data_dir(spec: DatasetSpec, config: PipelineConfig) -> str | None:
    """--data-dir, else the spec's source.data_dir, else TFDS's default (~/tensorflow_datasets)."""
    data_dir = config.input_base or spec.source.get("data_dir")
    return str(pathlib.Path(data_dir).expanduser()) if data_dir and "://" not in data_dir else data_dir


def describe_source(spec: DatasetSpec, config: PipelineConfig) -> str:
    """Where the data comes from, for messages and logs."""
    if spec.source.get("kind") == "tfds":
        return f"TFDS {spec.source['name']} (data_dir {tfds_data_dir(spec, config) or 'TFDS default'})"
    return f"{config.input_base_for(spec)}/{spec.source.get('pattern', '*')}"


def transform_hparams(spec: DatasetSpec, hparams: dict[str, Any]) -> dict[str, Any]:
    """Run overrides the Transform must see too (image size/backbone), and only those (cache)."""
    if not spec.image_feature:
        return {}
    return {key: value for key, value in hparams.items() if key in TRANSFORM_HPARAMS}


def user_code_config(spec: DatasetSpec, entry_module: str) -> dict[str, Any]:
    """What Transform and Trainer read: the spec without its documentation-only fields
    (editing the example instance must not retrain), and the fingerprint of the code they run."""
    fields = {k: v for k, v in spec.to_dict().items() if k not in ("example_instance", "description", "tuning")}
    return {"spec": fields, "code": code_fingerprint(entry_module)}


def create_pipeline(spec: DatasetSpec, config: PipelineConfig) -> tfx.dsl.Pipeline:
    check_mode_options({**spec.model, **config.trainer_hparams(spec)})
    example_gen = make_example_gen(spec, config)
    statistics_gen = tfx.components.StatisticsGen(examples=example_gen.outputs["examples"])
    schema_importer = tfx.components.ImportSchemaGen(schema_file=config.schema_for(spec))
    example_validator = tfx.components.ExampleValidator(
        statistics=statistics_gen.outputs["statistics"], schema=schema_importer.outputs["schema"])
    validation_gate = ValidationGate(anomalies=example_validator.outputs["anomalies"],
                                     source=describe_source(spec, config))

    transform = tfx.components.Transform(
        examples=example_gen.outputs["examples"], schema=schema_importer.outputs["schema"],
        preprocessing_fn="models.preprocessing.preprocessing_fn", splits_config=TRANSFORM_SPLITS,
        custom_config={**user_code_config(spec, "models.preprocessing"), "hparams": transform_hparams(spec, config.trainer_hparams(spec))})
    transform.add_upstream_node(validation_gate)

    tuner_nodes = tuning.make_tuner(spec, config, transform, schema_importer.outputs["schema"], TRAIN_ARGS,
                                    VALIDATION_ARGS, user_code_config(spec, "models.tuning"))
    trainer = tfx.components.Trainer(
        run_fn="models.trainer.run_fn",
        examples=transform.outputs["transformed_examples"],
        transform_graph=transform.outputs["transform_graph"],
        schema=schema_importer.outputs["schema"], train_args=TRAIN_ARGS, eval_args=VALIDATION_ARGS,
        hyperparameters=tuner_nodes[0].outputs["best_hyperparameters"] if tuner_nodes else None,
        custom_config={**user_code_config(spec, "models.trainer"), "hparams": config.trainer_hparams(spec)})

    latest_blessed_model = tfx.dsl.Resolver(
        strategy_class=tfx.dsl.experimental.LatestBlessedModelStrategy,
        model=tfx.dsl.Channel(type=tfx.types.standard_artifacts.Model),
        model_blessing=tfx.dsl.Channel(type=tfx.types.standard_artifacts.ModelBlessing),
    ).with_id("latest_blessed_model_resolver")

    evaluator = tfx.components.Evaluator(
        examples=example_gen.outputs["examples"],
        model=trainer.outputs["model"],
        baseline_model=latest_blessed_model.outputs["model"], example_splits=[REPORTED_SPLIT],
        eval_config=evaluation.make_eval_config(spec, config.thresholds))

    pusher = tfx.components.Pusher(
        model=trainer.outputs["model"],
        model_blessing=evaluator.outputs["blessing"],
        push_destination=tfx.proto.PushDestination(
            filesystem=tfx.proto.PushDestination.Filesystem(base_directory=config.serving_dir_for(spec))),
        custom_executor_spec=executor_spec.ExecutorClassSpec(SkipDuplicatePushExecutor))

    return tfx.dsl.Pipeline(
        pipeline_name=config.pipeline_name or spec.name,
        pipeline_root=config.root_for(spec),
        components=[example_gen, statistics_gen, schema_importer, example_validator, validation_gate,
                    transform, *tuner_nodes, trainer, latest_blessed_model, evaluator, pusher],
        enable_cache=config.enable_cache,
        metadata_connection_config=tfx.orchestration.metadata.sqlite_metadata_connection_config(
            str(config.metadata_for(spec))) if config.local_metadata else None,
        beam_pipeline_args=list(config.beam_args))
