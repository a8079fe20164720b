"""The packages depend on each other one way only; this test keeps it so.

specs (data set specs, shared errors) <- serving <- models <- components <- pipeline <- bench.
TFX's taxi template keeps user code (`models/`) free of the pipeline, which refers to
it only by module path; `pipeline/cli.py` is an entry point, imported by nothing.
"""
from __future__ import annotations

import ast
import json
import os
import pathlib
import subprocess
import sys
import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
OURS = ("specs", "serving", "models", "components", "pipeline", "bench")
ALLOWED = {
    "specs": {"specs"},
    "serving": {"serving", "specs"},
    "models": {"models", "specs", "serving"},
    "components": {"components", "specs", "serving", "models"},
    "pipeline": {"pipeline", "specs", "serving", "models", "components"},
    "bench": set(OURS),
}


def imports_of(path: pathlib.Path) -> list[tuple[int, str]]:
    """(line, module) of every absolute import of one of our packages in `path`."""
    found = []
    for node in ast.walk(ast.parse(path.read_bytes(), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found.append((node.lineno, node.module))
            found += [(node.lineno, f"{node.module}.{alias.name}") for alias in node.names]
    return [(line, name) for line, name in found if name.split(".")[0] in OURS]


def sources(package: str) -> list[pathlib.Path]:
    return sorted((ROOT / package).rglob("*.py"))


@pytest.mark.parametrize("package", OURS)
def test_imports_point_one_way(package: str) -> None:
    wrong = [f"{path.relative_to(ROOT)}:{line} imports {name}"
             for path in sources(package) for line, name in imports_of(path)
             if name.split(".")[0] not in ALLOWED[package]]
    assert not wrong, f"{package}/ may import only {sorted(ALLOWED[package])}:\n" + "\n".join(wrong)


def test_the_cli_is_imported_by_nothing() -> None:
    importers = [f"{path.relative_to(ROOT)}:{line}" for package in OURS for path in sources(package)
                 if path != ROOT / "pipeline" / "__main__.py"
                 for line, name in imports_of(path) if name == "pipeline.cli" or name.startswith("pipeline.cli.")]
    assert not importers, "pipeline/cli.py is an entry point; move what these need out of it:\n" + "\n".join(importers)


def test_the_layering_check_sees_a_violation(tmp_path: pathlib.Path) -> None:
    """The checker itself: an upward import is found (so the tests above can fail)."""
    bad = tmp_path / "bad.py"
    bad.write_text("import os\nfrom pipeline.config import PipelineConfig\nimport models.heads\n")
    assert [name.split(".")[0] for _, name in imports_of(bad)] == ["pipeline", "pipeline", "models"]


def test_importing_the_transform_module_leaves_the_environment_alone() -> None:
    """Transform imports `models.preprocessing` by module path; it must not change env vars or warnings."""
    third_party = "tensorflow, tensorflow_transform, tensorflow_estimator, tfx.components.trainer.fn_args_utils"
    probe = (f"import json, os; import {third_party}; before = dict(os.environ); "
             "import models.preprocessing, models.trainer; "
             "print(json.dumps(sorted(set(os.environ.items()) ^ set(before.items()))))")
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    out = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, env=env, capture_output=True, text=True,
                         check=True, timeout=300)
    changes = json.loads(out.stdout.strip().splitlines()[-1])
    assert changes == [], f"importing our user code changed the environment: {changes}"
