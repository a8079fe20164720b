"""Which sub-directories of a model base path are versions: TF Serving's rule, in one place.

TF Serving's file system source takes a child as a version when
`absl::SimpleAtoi` parses its name as an int64: optional ASCII whitespace around
it, an optional sign, decimal ASCII digits, no overflow. So `00000123` is version
123 (loaded from `00000123/`), while `²`, `1e3` or `0x5` are not versions. When two
names give one version (`7` and `007`), TF Serving logs a warning and loads one of
them; here the choice is deterministic: the name that sorts last.

Standard library only: the Pusher and `pipeline predict` use it as well.
"""
from __future__ import annotations

import logging
import os
import re
from typing import Iterable

log = logging.getLogger(__name__)

_INT64 = re.compile(r"[ \t\n\v\f\r]*([+-]?[0-9]+)[ \t\n\v\f\r]*")
_INT64_MIN, _INT64_MAX = -2**63, 2**63 - 1
SAVED_MODEL_FILES = ("saved_model.pb", "saved_model.pbtxt")


def parse_version(name: str) -> int | None:
    """The version a directory name stands for, or None when it is not one."""
    match = _INT64.fullmatch(name)
    if match is None:
        return None
    version = int(match.group(1))
    return version if _INT64_MIN <= version <= _INT64_MAX else None


def version_dirs(names: Iterable[str]) -> dict[int, str]:
    """Version -> directory name for the names that are versions; duplicates are logged."""
    chosen: dict[int, str] = {}
    for name in sorted(names):
        version = parse_version(name)
        if version is None:
            continue
        if version in chosen:
            log.warning("Duplicate version directories detected. Version %d will be loaded from %s, "
                        "%s will be ignored.", version, name, chosen[version])
        chosen[version] = name
    return chosen


def local_version_dirs(base_path: str) -> dict[int, str]:
    """Version -> directory name under a local base path ({} if it cannot be listed)."""
    try:
        entries = [entry.name for entry in os.scandir(base_path) if entry.is_dir()]
    except OSError:
        return {}
    return version_dirs(entries)


def is_complete(version_path: str) -> bool:
    """A version is complete once its saved_model.pb(txt) exists: writers copy it last."""
    return any(os.path.exists(os.path.join(version_path, name)) for name in SAVED_MODEL_FILES)
