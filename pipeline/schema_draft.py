"""Drafts a schema from the data (ExampleGen -> StatisticsGen -> SchemaGen) for a human to curate."""
from __future__ import annotations

import dataclasses
import pathlib
import shutil

from tfx.components import SchemaGen, StatisticsGen
from tfx.orchestration import metadata
from tfx.orchestration.pipeline import Pipeline

from pipeline.config import PipelineConfig
from pipeline.in_process import run_in_process
from pipeline.pipeline_def import make_example_gen
from specs.dataset import DatasetSpec


def draft_schema(spec: DatasetSpec, config: PipelineConfig, output: pathlib.Path) -> pathlib.Path:
    """Runs the same ExampleGen as the pipeline, so names and types match exactly."""
    example_gen = make_example_gen(spec, config)
    statistics_gen = StatisticsGen(examples=example_gen.outputs["examples"])
    schema_gen = SchemaGen(statistics=statistics_gen.outputs["statistics"], infer_feature_shape=True)
    name = f"{spec.name}_schema_draft"
    draft_config = dataclasses.replace(config, enable_cache=False)
    root = draft_config.home / name
    run_in_process(Pipeline(
        pipeline_name=name, pipeline_root=str(root / "pipeline_root"),
        components=[example_gen, statistics_gen, schema_gen], enable_cache=False,
        metadata_connection_config=metadata.sqlite_metadata_connection_config(
            str(root / "metadata.sqlite")),
        beam_pipeline_args=list(config.beam_args)))
    drafts = sorted((root / "pipeline_root" / "SchemaGen" / "schema").glob("*/schema.pbtxt"),
                    key=lambda p: int(p.parent.name))
    output.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(drafts[-1], output)
    return output
