"""The same data gives the same Transform output, value for value, on every run.

With Beam choosing batch sizes by the clock, the analysers' float32 sums came out in another
order on each run: z-scores one or two ulps apart, and from them a seeded Trainer that still
trained a different model (a lecture fault in a new form: a run nobody can repeat). Two
uncached runs of ExampleGen -> Transform over the full churn CSV (7,000 training rows, far
past the first adaptive batches of 1, 2, 4, ... 512 rows, which are the same on every run)
must write identical transformed examples and an identical transform graph's outputs.
"""
import pathlib

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_transform as tft
from tfx.components.schema_gen.import_schema_gen.component import ImportSchemaGen
from tfx.components.transform import executor as transform_executor
from tfx.orchestration.local.local_dag_runner import LocalDagRunner
from tfx.proto import example_gen_pb2

from components.transform import FIXED_BATCH_SIZE, FixedBatchTransformProcessor
from pipeline import metadata
from pipeline.pipeline_def import assemble, make_example_gen, make_transform
from specs.dataset import PROJECT_ROOT
from tests.support import isolated_config

pytestmark = pytest.mark.e2e


def transform_outputs(spec, config) -> dict[str, str]:
    """Runs ExampleGen -> ImportSchemaGen -> Transform once, uncached; the Transform's output URIs."""
    example_gen = make_example_gen(spec, config)
    schema = ImportSchemaGen(schema_file=config.schema_for(spec))
    transform = make_transform(spec, example_gen.outputs["examples"], schema.outputs["schema"])
    LocalDagRunner().run(assemble(spec, config, [example_gen, schema, transform]))
    run = {c.component: c for c in metadata.latest_run(metadata.open_store(config.metadata_for(spec)))}
    assert run["Transform"].state == "COMPLETE"
    return {name: artifacts[0].uri for name, artifacts in run["Transform"].outputs.items()
            if name in ("transformed_examples", "transform_graph")}


@pytest.fixture(scope="module")
def two_runs(churn_spec, tmp_path_factory):
    config = isolated_config(tmp_path_factory.mktemp("reproducible"), enable_cache=False,
                             input_base=str(PROJECT_ROOT / "data/churn"))
    config.metadata_for(churn_spec).parent.mkdir(parents=True, exist_ok=True)
    return [transform_outputs(churn_spec, config) for _ in range(2)]


def read_examples(uri: str, split: str) -> list[tf.train.Example]:
    paths = sorted(str(p) for p in pathlib.Path(uri, f"Split-{split}").glob("*.gz"))
    return [tf.train.Example.FromString(r.numpy()) for r in tf.data.TFRecordDataset(paths, compression_type="GZIP")]


@pytest.mark.parametrize("split", ["train", "validation"])
def test_two_runs_write_the_same_transformed_examples(two_runs, split):
    first, second = (read_examples(run["transformed_examples"], split) for run in two_runs)
    assert len(first) == len(second) > (7000 if split == "train" else 900)
    assert two_runs[0]["transformed_examples"] != two_runs[1]["transformed_examples"]  # two executions
    differing = {name for a, b in zip(first, second) for name in a.features.feature
                 if a.features.feature[name] != b.features.feature[name]}
    assert not differing, f"features that differ between two runs of the same data: {sorted(differing)}"


def test_two_runs_give_the_same_analyser_results(two_runs, churn_spec):
    """The served model's graph: the same raw row is scaled to the same floats by both runs' graphs."""
    graphs = [tft.TFTransformOutput(run["transform_graph"]) for run in two_runs]
    raw_spec = graphs[0].raw_feature_spec()
    raw_spec.pop(churn_spec.label)
    row = {name: tf.constant([[b"France"]] if spec.dtype == tf.string else [[600]], dtype=spec.dtype)
           for name, spec in raw_spec.items()}
    first, second = (graph.transform_features_layer()(row) for graph in graphs)
    for name in first:
        np.testing.assert_array_equal(first[name].numpy(), second[name].numpy(), err_msg=name)


def test_tfx_leaves_the_batch_size_to_beam_and_ours_fixes_it():
    """Why components/transform.py exists: TFX's own processor returns None (Beam's adaptive sizing)
    for tf.Examples. If a TFX release fixes a size itself, this says the override can go."""
    tf_example = example_gen_pb2.PayloadFormat.FORMAT_TF_EXAMPLE
    schema = tft.DatasetMetadata.from_feature_spec({"x": tf.io.FixedLenFeature([], tf.float32)}).schema
    assert transform_executor.TransformProcessor()._GetDesiredBatchSize(tf_example, schema) is None
    assert FixedBatchTransformProcessor()._GetDesiredBatchSize(tf_example, schema) == FIXED_BATCH_SIZE
