"""`python -m pipeline run` imports what running needs and nothing else.

`from tfx import v1` imports every TFX extension: `google.cloud.aiplatform` through
`tfx.v1.extensions` (about 10 s here) and the KFP SDK through the Kubeflow runners. The
modules the local run builds the pipeline with import TFX's component, DSL and
orchestration modules directly instead. Those imports run without garbage-collection
passes (pipeline/process_gc.py), which the tests below check in a fresh process. How long
the start takes is measured by `python -m bench.penguin_compare`
(bench/results/pipeline_vs_penguin.json), not here.
"""
from __future__ import annotations

import json
import subprocess
import sys

from specs.dataset import PROJECT_ROOT

RUN_PATH = ("pipeline.local_runner", "pipeline.pipeline_def", "pipeline.schema_draft", "components.validation_gate")
NOT_NEEDED = ("tfx.v1", "tfx.extensions", "google.cloud.aiplatform", "kfp")


def imported_after(modules: tuple[str, ...]) -> set[str]:
    probe = (f"import json, sys; import {', '.join(modules)}; "
             f"print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in {{'tfx', 'google', 'kfp'}})))")
    out = subprocess.run([sys.executable, "-c", probe], cwd=PROJECT_ROOT, capture_output=True, text=True,
                         check=True, timeout=600)
    return set(json.loads(out.stdout.strip().splitlines()[-1]))


def test_the_run_command_imports_no_tfx_v1_cloud_or_kubeflow_sdk():
    loaded = imported_after(RUN_PATH)
    assert "tfx.orchestration.local.local_dag_runner" in loaded  # the probe sees what was imported
    unexpected = sorted(m for m in loaded if any(m == name or m.startswith(name + ".") for name in NOT_NEEDED))
    assert not unexpected, f"the run command imports modules it does not need: {unexpected[:10]}"


COLLECTIONS_DURING_IMPORTS = """
import gc, json, sys
from pipeline.process_gc import imports_without_collection
passes = []
gc.callbacks.append(lambda phase, info: passes.append(info["generation"]) if phase == "start" else None)
if sys.argv[1] == "disabled":
    gc.disable()
def imports():
    import numpy, yaml, email.mime.multipart, xml.dom.minidom  # real imports, thousands of objects
if sys.argv[1] == "plain":
    imports()
else:
    with imports_without_collection():
        imports()
print(json.dumps({"passes": len(passes), "enabled": gc.isenabled(), "frozen": gc.get_freeze_count()}))
"""


def gc_after_imports(mode: str) -> dict:
    out = subprocess.run([sys.executable, "-c", COLLECTIONS_DURING_IMPORTS, mode], cwd=PROJECT_ROOT,
                         capture_output=True, text=True, check=True, timeout=120)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_heavy_imports_run_without_collection_passes_and_their_objects_are_frozen():
    plain = gc_after_imports("plain")
    assert plain["passes"] > 0 and plain["frozen"] == 0  # the same imports do trigger passes normally
    done = gc_after_imports("with")
    assert done["passes"] == 0, "the collector ran during the imports"
    assert done["enabled"] is True  # collection is back on for the run itself
    assert done["frozen"] > 10_000  # the imported objects now sit in the permanent generation


def test_a_collector_the_caller_disabled_stays_disabled():
    assert gc_after_imports("disabled")["enabled"] is False


def test_python_m_pipeline_still_exits_with_the_commands_code():
    """__main__ freezes the collector before exiting; the exit code is still the command's."""
    from pipeline import exit_codes
    done = subprocess.run([sys.executable, "-m", "pipeline", "run", "--dataset", "no_such_data_set"],
                          cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == exit_codes.USAGE, done.stdout + done.stderr
    assert done.stderr.startswith("error: ")


def test_a_local_run_lets_tfx_skip_packaging_itself_for_remote_beam_workers(churn_spec, tmp_path, monkeypatch):
    """TFX's own Beam executor (StatisticsGen's), given the pipeline's Beam args: no `--extra_package` sdist of TFX (built into the
    temp dir, ~3 s and 23 MB per Beam component) for a run whose Beam work stays in this process. With an
    explicit Beam arg, the same executor builds one: the check below can tell the two apart."""
    import tempfile

    from apache_beam.options.pipeline_options import DirectOptions, PipelineOptions
    from tfx.components.statistics_gen.executor import Executor as StatisticsGenExecutor

    from pipeline.pipeline_def import create_pipeline
    from tests.support import isolated_config

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # where TFX would build the sdist

    def executor_args(beam_args: list[str]) -> list[str]:
        context = StatisticsGenExecutor.Context(beam_pipeline_args=beam_args)
        return StatisticsGenExecutor(context)._beam_pipeline_args

    local = create_pipeline(churn_spec, isolated_config(tmp_path / "home")).beam_pipeline_args
    assert not [arg for arg in executor_args(local) if arg.startswith("--extra_package")]
    assert PipelineOptions(local).view_as(DirectOptions).direct_running_mode == "in_memory"
    assert not list(tmp_path.glob("*/build/tfx"))

    explicit = executor_args(["--direct_running_mode=in_memory"])
    assert [arg for arg in explicit if arg.startswith("--extra_package=") and arg.endswith(".tar.gz")]
    assert list(tmp_path.glob("*/build/tfx"))
