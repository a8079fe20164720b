"""Fingerprints of the code a component runs, so cached outputs go stale exactly when that code changes.

TFX caches on a component's configuration only. Transform and Trainer load our
code by module path and our ExampleGens run our executors, so each carries the
fingerprint of its entry module and every module of ours it imports, found by
reading import statements (nothing is imported here): editing the Trainer's code
re-runs the Trainer, not Transform.
"""
from __future__ import annotations

import ast
import functools
import hashlib
import pathlib

from specs.dataset import PROJECT_ROOT


def _module_path(module: str) -> pathlib.Path | None:
    base = PROJECT_ROOT.joinpath(*module.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _imported_modules(path: pathlib.Path) -> set[str]:
    """Every module named by an import in `path` (as written, absolute imports only)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_bytes(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def project_modules(entry: str) -> dict[str, pathlib.Path]:
    """`entry` and the modules of this project it imports, transitively: name -> source file."""
    found: dict[str, pathlib.Path] = {}
    pending = [entry]
    while pending:
        module = pending.pop()
        path = _module_path(module)
        if module in found or path is None:
            continue
        found[module] = path
        pending.extend(_imported_modules(path))
        parent = module.rpartition(".")[0]
        if parent:
            pending.append(parent)
    return found


@functools.lru_cache(maxsize=None)
def code_fingerprint(*entries: str) -> str:
    """Hash of the source of `entries` and everything of ours they import (16 hex digits)."""
    digest = hashlib.sha256()
    modules: dict[str, pathlib.Path] = {}
    for entry in entries:
        modules.update(project_modules(entry))
    if not modules:
        raise ValueError(f"no project module found for {entries}")
    for name in sorted(modules):
        digest.update(name.encode() + b"\0" + modules[name].read_bytes())
    return digest.hexdigest()[:16]
