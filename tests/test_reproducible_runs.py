"""The same data and seed give the same Transform output and the same model, on every run.

With Beam choosing batch sizes by the clock, the analysers' float32 sums came out in another
order on each run: z-scores one or two ulps apart, and from them a seeded Trainer that still
trained a different model (a lecture fault in a new form: a run nobody can repeat). Two
uncached runs of the whole pipeline over the full churn CSV (7,000 training rows, far past
the first adaptive batches of 1, 2, 4, ... 512 rows, which are the same on every run) must
write identical transformed examples, transform graphs and trained weights.
"""
import pathlib

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_transform as tft
from tfx.components.transform import executor as transform_executor
from tfx.proto import example_gen_pb2

from components.transform import FIXED_BATCH_SIZE, FixedBatchTransformProcessor
from pipeline.local_runner import RunReport, run_local
from specs.dataset import PROJECT_ROOT
from tests.support import isolated_config

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def two_runs(churn_spec, tmp_path_factory) -> list[RunReport]:
    """Two runs, nothing cached; two epochs are enough to see whether training repeats itself."""
    config = isolated_config(tmp_path_factory.mktemp("reproducible"), enable_cache=False, hparams={"epochs": 2},
                             input_base=str(PROJECT_ROOT / "data/churn"))
    runs = [run_local(churn_spec, config) for _ in range(2)]
    for run in runs:
        assert {c.component: c.state for c in run.components}["Trainer"] == "COMPLETE"
    return runs


def output_uri(run: RunReport, component: str, name: str) -> str:
    return run.component(component).outputs[name][0].uri


def read_examples(uri: str, split: str) -> list[tf.train.Example]:
    paths = sorted(str(p) for p in pathlib.Path(uri, f"Split-{split}").glob("*.gz"))
    return [tf.train.Example.FromString(r.numpy()) for r in tf.data.TFRecordDataset(paths, compression_type="GZIP")]


@pytest.mark.parametrize("split", ["train", "validation"])
def test_two_runs_write_the_same_transformed_examples(two_runs, split):
    uris = [output_uri(run, "Transform", "transformed_examples") for run in two_runs]
    assert uris[0] != uris[1]  # two executions
    first, second = (read_examples(uri, split) for uri in uris)
    assert len(first) == len(second) > (7000 if split == "train" else 900)
    differing = {name for a, b in zip(first, second) for name in a.features.feature
                 if a.features.feature[name] != b.features.feature[name]}
    assert not differing, f"features that differ between two runs of the same data: {sorted(differing)}"


def test_two_runs_give_the_same_analyser_results(two_runs, churn_spec):
    """The served model's graph: the same raw row is scaled to the same floats by both runs' graphs."""
    graphs = [tft.TFTransformOutput(output_uri(run, "Transform", "transform_graph")) for run in two_runs]
    raw_spec = graphs[0].raw_feature_spec()
    raw_spec.pop(churn_spec.label)
    row = {name: tf.constant([[b"France"]] if spec.dtype == tf.string else [[600]], dtype=spec.dtype)
           for name, spec in raw_spec.items()}
    first, second = (graph.transform_features_layer()(row) for graph in graphs)
    for name in first:
        np.testing.assert_array_equal(first[name].numpy(), second[name].numpy(), err_msg=name)


def test_two_runs_train_the_same_weights(two_runs):
    """Seeded initial weights, seeded shuffling and the same inputs: the same trained weights, byte for byte."""
    first, second = (pathlib.Path(output_uri(run, "Trainer", "model"), "Format-Serving", "variables")
                     for run in two_runs)
    names = sorted(p.name for p in first.iterdir())
    assert names == sorted(p.name for p in second.iterdir()) and any(n.startswith("variables.data") for n in names)
    for name in names:
        assert (first / name).read_bytes() == (second / name).read_bytes(), name


def test_tfx_leaves_the_batch_size_to_beam_and_ours_fixes_it():
    """Why components/transform.py exists: TFX's own processor returns None (Beam's adaptive sizing)
    for tf.Examples. If a TFX release fixes a size itself, this says the override can go."""
    tf_example = example_gen_pb2.PayloadFormat.FORMAT_TF_EXAMPLE
    schema = tft.DatasetMetadata.from_feature_spec({"x": tf.io.FixedLenFeature([], tf.float32)}).schema
    assert transform_executor.TransformProcessor()._GetDesiredBatchSize(tf_example, schema) is None
    assert FixedBatchTransformProcessor()._GetDesiredBatchSize(tf_example, schema) == FIXED_BATCH_SIZE
