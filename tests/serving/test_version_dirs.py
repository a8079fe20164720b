"""The one version-directory rule (TF Serving's absl::SimpleAtoi on the whole name), shared by
the server, the Pusher and `pipeline predict`."""
from __future__ import annotations

import logging
import os

import pytest

from components.pusher import latest_version_dir
from serving.manager import _scan
from serving.versions import local_version_dirs, parse_version, version_dirs


@pytest.mark.parametrize("name, version", [
    ("1", 1), ("00000123", 123), ("007", 7), ("9223372036854775807", 2**63 - 1),
    # absl::SimpleAtoi trims ASCII whitespace and takes a sign, so TF Serving takes these too.
    (" 5", 5), ("5\t", 5), ("+5", 5), ("-5", -5),
])
def test_names_that_are_versions(name, version):
    assert parse_version(name) == version


@pytest.mark.parametrize("name", [
    "", " ", "+", "²", "١٢", "1e3", "0x5", "1_000", "1.0", "5a", "v1", ".tmp-3",
    "9223372036854775808", "-9223372036854775809",
])
def test_names_that_are_not_versions(name):
    assert parse_version(name) is None


def test_duplicate_versions_are_reported_and_resolved_the_same_way_every_time(caplog):
    with caplog.at_level(logging.WARNING, logger="serving.versions"):
        assert version_dirs(["7", "007", "8"]) == {7: "7", 8: "8"}
        assert version_dirs(["007", "7", "8"]) == {7: "7", 8: "8"}
    assert "Duplicate version directories detected. Version 7 will be loaded from 7, 007 will be ignored." \
        in caplog.text


def _make(base, name, complete=True):
    path = base / name
    path.mkdir()
    if complete:
        (path / "saved_model.pb").write_bytes(b"x")
    return path


def test_server_scan_pusher_and_predict_agree(tmp_path):
    for name in ["00000123", "²", "1e3", "notes"]:
        _make(tmp_path, name)
    _make(tmp_path, "124", complete=False)  # still being copied
    (tmp_path / "200").write_text("a file, not a directory")
    assert local_version_dirs(str(tmp_path)) == {123: "00000123", 124: "124"}
    assert {v: name for v, (name, _) in _scan(str(tmp_path)).items()} == {123: "00000123"}
    assert latest_version_dir(str(tmp_path)) == os.path.join(str(tmp_path), "00000123")


def test_missing_base_path_is_empty_not_an_error(tmp_path):
    assert local_version_dirs(str(tmp_path / "absent")) == {}
    assert latest_version_dir(str(tmp_path / "absent")) is None
