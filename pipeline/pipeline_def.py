"""The TFX pipeline, built from a data set spec and a run config.

One definition serves every data set and every runner: LocalDagRunner here,
KubeflowDagRunner / KubeflowV2DagRunner on a cluster.
"""
from __future__ import annotations

import pathlib
from typing import Any, Callable

from google.protobuf import text_format
from tensorflow_metadata.proto.v0 import schema_pb2
from tfx.components import Evaluator, ExampleValidator, StatisticsGen, Trainer
from tfx.components.schema_gen.import_schema_gen.component import ImportSchemaGen
from tfx.dsl.components.base.base_node import BaseNode
from tfx.dsl.components.common.resolver import Resolver
from tfx.dsl.input_resolution.strategies.latest_blessed_model_strategy import LatestBlessedModelStrategy
from tfx.orchestration import metadata
from tfx.orchestration.pipeline import Pipeline
from tfx.proto import example_gen_pb2, pusher_pb2, trainer_pb2, transform_pb2
from tfx.types import BaseChannel, Channel, standard_artifacts

from components import baseline_resolver
from components.pusher import Pusher
from components.csv_example_gen import CsvExampleGen
from components.tfds_example_gen import TfdsExampleGen
from components.transform import Transform
from components.validation_gate import ValidationGate
from models.trainer import check_mode_options
from pipeline import evaluation, spans, tuning
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
TRANSFORM_SPLITS = transform_pb2.SplitsConfig(analyze=["train"], transform=["train", "validation"])
TRAIN_ARGS = trainer_pb2.TrainArgs(splits=["train"])
VALIDATION_ARGS = trainer_pb2.EvalArgs(splits=["validation"])
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


def make_example_gen(spec: DatasetSpec, config: PipelineConfig) -> BaseNode:
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


# The spec fields our code reads inside Transform and inside the Trainer. The rest reaches them
# through artifacts (source, splits: ExampleGen's output) or not at all (evaluation: the
# Evaluator's config; tuning: the Tuner's search space; example_instance, description: docs),
# so editing it must not invalidate their cached outputs. models/preprocessing.py reads no
# model options: images reach the Trainer encoded.
TRANSFORM_READS = ("name", "task", "label", "numeric_features", "categorical_features", "image_feature")
TRAINER_READS = TRANSFORM_READS + ("label_names", "model")


def user_code_config(spec: DatasetSpec, entry_module: str, reads: tuple[str, ...] = TRAINER_READS
                     ) -> dict[str, Any]:
    """A component's custom_config, which is its cache key too: the spec fields its code reads
    (`source` goes empty: DatasetSpec requires the key, the code never reads it) and the
    fingerprint of that code (`entry_module` and every module of ours it imports)."""
    fields = {key: value for key, value in spec.to_dict().items() if key in reads}
    return {"spec": {**fields, "source": {}}, "code": code_fingerprint(entry_module)}


def baseline_model_resolver(trainer: Trainer, config: PipelineConfig) -> Resolver:
    """The Evaluator's baseline: the last blessed model other than this run's candidate, so a re-run
    with nothing changed resolves the same baseline and its Evaluator is cached (see
    components/baseline_resolver.py). KubeflowV2DagRunner compiles only TFX's built-in strategies,
    so pipelines for a cluster's ML Metadata use TFX's LatestBlessedModelStrategy."""
    if not config.local_metadata:
        return Resolver(strategy_class=LatestBlessedModelStrategy, model=Channel(type=standard_artifacts.Model),
                        model_blessing=Channel(type=standard_artifacts.ModelBlessing),
                        ).with_id("latest_blessed_model_resolver")
    return Resolver(strategy_class=baseline_resolver.LatestBlessedBaselineStrategy,
                    **{baseline_resolver.MODEL: Channel(type=standard_artifacts.Model),
                       baseline_resolver.BLESSING: Channel(type=standard_artifacts.ModelBlessing),
                       baseline_resolver.CANDIDATE: trainer.outputs["model"]},
                    ).with_id("latest_blessed_model_resolver")


def make_transform(spec: DatasetSpec, examples: BaseChannel, schema: BaseChannel) -> Transform:
    """Transform (components/transform.py: the same analyser results on every run) of `examples`."""
    return Transform(
        examples=examples, schema=schema,
        preprocessing_fn="models.preprocessing.preprocessing_fn", splits_config=TRANSFORM_SPLITS,
        # Pre/post-transform statistics and anomalies would be most of Transform's Beam work on small data
        # (about half of its time on 1,500 churn rows here); nothing reads them: StatisticsGen's statistics
        # feed validation, monitoring and the report.
        disable_statistics=True,
        custom_config=user_code_config(spec, "models.preprocessing", TRANSFORM_READS))


# `pipeline compare` (pipeline/compare.py): (transform, schema, examples) -> the nodes that replace
# the one Trainer, its Evaluator and Pusher.
ModelStage = Callable[[Transform, BaseChannel, BaseChannel], list[BaseNode]]


def create_pipeline(spec: DatasetSpec, config: PipelineConfig, model_stage: ModelStage | None = None) -> Pipeline:
    check_mode_options({**spec.model, **config.trainer_hparams(spec)})
    example_gen = make_example_gen(spec, config)
    statistics_gen = StatisticsGen(examples=example_gen.outputs["examples"])
    schema_importer = ImportSchemaGen(schema_file=config.schema_for(spec))
    example_validator = ExampleValidator(
        statistics=statistics_gen.outputs["statistics"], schema=schema_importer.outputs["schema"])
    validation_gate = ValidationGate(anomalies=example_validator.outputs["anomalies"],
                                     source=describe_source(spec, config))
    window_examples, window_nodes = spans.training_window(spec, example_gen)
    drift_nodes = spans.drift_check(spec, statistics_gen, schema_importer.outputs["schema"])

    transform = make_transform(spec, window_examples, schema_importer.outputs["schema"])
    for gate in [validation_gate, *drift_nodes[-1:]]:
        transform.add_upstream_node(gate)
    data_nodes = [example_gen, *drift_nodes[:1], statistics_gen, schema_importer, example_validator,
                  validation_gate, *drift_nodes[1:], *window_nodes, transform]
    if model_stage is not None:
        return assemble(spec, config, data_nodes + model_stage(transform, schema_importer.outputs["schema"],
                                                                window_examples))

    tuner_nodes = tuning.make_tuner(spec, config, transform, schema_importer.outputs["schema"], TRAIN_ARGS,
                                    VALIDATION_ARGS, user_code_config(spec, "models.tuning", TRAINER_READS))
    trainer = Trainer(
        run_fn="models.trainer.run_fn",
        examples=transform.outputs["transformed_examples"],
        transform_graph=transform.outputs["transform_graph"],
        schema=schema_importer.outputs["schema"], train_args=TRAIN_ARGS, eval_args=VALIDATION_ARGS,
        hyperparameters=tuner_nodes[0].outputs["best_hyperparameters"] if tuner_nodes else None,
        custom_config={**user_code_config(spec, "models.trainer", TRAINER_READS),
                       "hparams": config.trainer_hparams(spec)})

    latest_blessed_model = baseline_model_resolver(trainer, config)
    evaluator = Evaluator(
        examples=window_examples,
        model=trainer.outputs["model"],
        baseline_model=latest_blessed_model.outputs["model"], example_splits=[REPORTED_SPLIT],
        eval_config=evaluation.make_eval_config(spec, config.thresholds))

    pusher = Pusher(
        model=trainer.outputs["model"],
        model_blessing=evaluator.outputs["blessing"],
        push_destination=pusher_pb2.PushDestination(
            filesystem=pusher_pb2.PushDestination.Filesystem(base_directory=config.serving_dir_for(spec))))

    return assemble(spec, config, [*data_nodes, *tuner_nodes, trainer, latest_blessed_model, evaluator, pusher])


def assemble(spec: DatasetSpec, config: PipelineConfig, nodes: list[BaseNode]) -> Pipeline:
    return Pipeline(
        pipeline_name=config.pipeline_name or spec.name,
        pipeline_root=config.root_for(spec),
        components=nodes,
        enable_cache=config.enable_cache,
        metadata_connection_config=metadata.sqlite_metadata_connection_config(
            str(config.metadata_for(spec))) if config.local_metadata else None,
        beam_pipeline_args=list(config.beam_args))
