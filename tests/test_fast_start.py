"""`python -m pipeline run` imports what running needs and nothing else.

`from tfx import v1` imports every TFX extension: `google.cloud.aiplatform` through
`tfx.v1.extensions` (about 10 s here) and the KFP SDK through the Kubeflow runners. The
modules the local run builds the pipeline with import TFX's component, DSL and
orchestration modules directly instead. How long the start takes is measured by
`python -m bench.penguin_compare` (bench/results/pipeline_vs_penguin.json), not here.
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
