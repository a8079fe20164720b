"""Where `monitor` keeps its checks, and which belong to a run: read by the run report without TFDV."""
from __future__ import annotations

import json
import pathlib

from pipeline.config import PipelineConfig
from specs.dataset import DatasetSpec


def monitoring_dir(config: PipelineConfig, spec: DatasetSpec) -> pathlib.Path:
    return config.home / spec.name / "monitoring"


def sections_for_run(config: PipelineConfig, spec: DatasetSpec, run_id: str) -> list[str]:
    """The HTML of every monitoring check of the model this run pushed, newest first."""
    sections = []
    for summary in sorted(monitoring_dir(config, spec).glob("*/monitor.json"), reverse=True):
        if json.loads(summary.read_text()).get("run_id") == run_id:
            sections.append(summary.with_name("monitor.html").read_text())
    return sections
