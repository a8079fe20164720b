"""Cache keys are exact: a component re-executes when what it reads changes, and only then.

TFX's cache key for a node (`tfx.orchestration.portable.cache_utils.get_cache_context`) is a
hash of the pipeline info, the node's `node_info`, its executor spec, its input artifacts,
its output artifact skeleton and its parameters (exec properties: `custom_config`,
`eval_config`, `splits_config`, ...). The IR tests compile the pipeline before and after an
edit and compare, per node, `node_info`, `parameters` and the executor spec from the
deployment config: a node whose part is unchanged, and whose inputs come from cached
upstream nodes, gets the same key. A node whose upstream re-ran gets new input artifacts and
re-runs anyway (the Evaluator after a retrain); that part is shown by the real runs at the end,
which read each component's CACHED/COMPLETE state from ML Metadata: the unchanged, epochs and
threshold runs in tests/test_churn_pipeline.py.
"""
from __future__ import annotations

import dataclasses
import pathlib
import shutil

import pytest
from tfx.dsl.compiler import compiler
from tfx.proto.orchestration import pipeline_pb2
from tfx.types import standard_artifacts

from components.baseline_resolver import BLESSING, CANDIDATE, MODEL, LatestBlessedBaselineStrategy
from pipeline.config import PipelineConfig
from pipeline.pipeline_def import create_pipeline
from specs import fingerprint
from specs.dataset import PROJECT_ROOT, DatasetSpec
from tests.support import isolated_config

def cache_key_parts(spec: DatasetSpec, config: PipelineConfig) -> dict[str, bytes]:
    """Per node: the IR parts TFX's cache key hashes besides the input artifacts."""
    ir = compiler.Compiler().compile(create_pipeline(spec, config))
    deployment = pipeline_pb2.IntermediateDeploymentConfig()
    ir.deployment_config.Unpack(deployment)
    parts = {}
    for node in ir.nodes:
        node_id = node.pipeline_node.node_info.id
        executor = deployment.executor_specs.get(node_id)
        parts[node_id] = b"|".join([node.pipeline_node.node_info.SerializeToString(deterministic=True),
                                    node.pipeline_node.parameters.SerializeToString(deterministic=True),
                                    executor.SerializeToString(deterministic=True) if executor else b""])
    return parts


def changed_nodes(before: tuple[DatasetSpec, PipelineConfig], after: tuple[DatasetSpec, PipelineConfig]) -> set[str]:
    old, new = cache_key_parts(*before), cache_key_parts(*after)
    assert old.keys() == new.keys()
    return {node for node in old if old[node] != new[node]}


@pytest.fixture
def base(churn_spec, tmp_path) -> tuple[DatasetSpec, PipelineConfig]:
    return churn_spec, isolated_config(tmp_path)


def test_nothing_changed_means_no_key_changes(base):
    spec, config = base
    assert changed_nodes(base, (spec, dataclasses.replace(config))) == set()


@pytest.mark.parametrize("edit", ["spec", "command line"])
def test_epochs_retrain_without_re_running_transform(base, edit):
    spec, config = base
    epochs = int(spec.model.get("epochs", 10)) + 1
    after = (dataclasses.replace(spec, model={**spec.model, "epochs": epochs}), config) if edit == "spec" \
        else (spec, dataclasses.replace(config, hparams={"epochs": epochs}))
    assert changed_nodes(base, after) == {"Trainer"}


@pytest.mark.parametrize("edit", ["spec", "command line"])
def test_a_threshold_re_evaluates_without_retraining(base, edit):
    spec, config = base
    thresholds = {"AUC": {"lower_bound": 0.5}}
    after = (dataclasses.replace(spec, evaluation={**spec.evaluation, "thresholds": thresholds}), config) \
        if edit == "spec" else (spec, dataclasses.replace(config, thresholds=thresholds))
    assert changed_nodes(base, after) == {"Evaluator"}


def test_documentation_fields_change_nothing(base):
    spec, config = base
    after = dataclasses.replace(spec, description="edited", example_instance={**spec.example_instance, "Age": 99})
    assert changed_nodes(base, (after, config)) == set()


def test_a_feature_list_change_re_runs_transform_and_trainer(base):
    spec, config = base
    after = dataclasses.replace(spec, numeric_features=spec.numeric_features[:-1])
    assert {"Transform", "Trainer"} <= changed_nodes(base, (after, config))


@pytest.fixture
def project_copy(tmp_path, monkeypatch) -> pathlib.Path:
    """Our user code copied to a scratch root that the fingerprints read, so a test can edit it."""
    root = tmp_path / "project"
    for package in ("specs", "serving", "models", "components"):
        shutil.copytree(PROJECT_ROOT / package, root / package)
    monkeypatch.setattr(fingerprint, "PROJECT_ROOT", root)
    fingerprint.code_fingerprint.cache_clear()
    yield root
    fingerprint.code_fingerprint.cache_clear()


@pytest.mark.parametrize("module, expected", [
    ("models/trainer.py", {"Trainer"}),
    ("models/keras_trainer.py", {"Trainer"}),
    ("models/preprocessing.py", {"Transform"}),
])
def test_a_code_edit_re_runs_the_components_that_run_that_code(base, project_copy, module, expected):
    before = cache_key_parts(*base)
    with (project_copy / module).open("a") as f:
        f.write("\nEDITED_BY_TEST = True\n")
    fingerprint.code_fingerprint.cache_clear()
    after = cache_key_parts(*base)
    changed = {node for node in before if before[node] != after[node]}
    # The Trainer imports the preprocessing module too (vocabulary names) only if its code says so.
    trainer_reads_preprocessing = "models.preprocessing" in fingerprint.project_modules("models.trainer")
    assert changed == (expected | ({"Trainer"} if module == "models/preprocessing.py"
                                   and trainer_reads_preprocessing else set()))


# The baseline resolver, on real TFX artifacts.

def _model(artifact_id: int) -> standard_artifacts.Model:
    model = standard_artifacts.Model()
    model.id = artifact_id
    return model


def _blessing(artifact_id: int, model_id: int, blessed: bool = True) -> standard_artifacts.ModelBlessing:
    blessing = standard_artifacts.ModelBlessing()
    blessing.id = artifact_id
    blessing.set_int_custom_property("current_model_id", model_id)
    blessing.set_int_custom_property("blessed", int(blessed))
    return blessing


def resolve(models, blessings, candidate) -> tuple[list[int], list[int]]:
    result = LatestBlessedBaselineStrategy().resolve_artifacts(
        None, {MODEL: models, BLESSING: blessings, CANDIDATE: [candidate]})
    assert [a.id for a in result[CANDIDATE]] == [candidate.id]
    return [a.id for a in result[MODEL]], [a.id for a in result[BLESSING]]


def test_resolver_leaves_out_the_candidate_so_an_unchanged_rerun_resolves_no_baseline():
    a = _model(10)
    assert resolve([a], [_blessing(11, 10)], a) == ([], [])


def test_resolver_gives_a_new_candidate_the_model_blessed_last():
    a, b, c = _model(10), _model(20), _model(40)
    # A blessed, then B blessed, then A re-blessed (it beat B): A is what was pushed last.
    blessings = [_blessing(11, 10), _blessing(21, 20), _blessing(31, 10)]
    assert resolve([a, b, c], blessings, c) == ([10], [31])
    assert resolve([a, b, c], blessings, a) == ([20], [21])


def test_resolver_ignores_blessings_that_did_not_bless_or_name_no_known_model():
    a, b = _model(10), _model(20)
    assert resolve([a, b], [_blessing(11, 10, blessed=False), _blessing(12, 99)], b) == ([], [])
