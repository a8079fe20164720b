"""The run report: one self-contained HTML file (inline PNG figures, no network) for any recorded run.

Everything comes from the run's ML Metadata store and the artefacts it points
to, so the report can be written for any past run, failed ones included: a
section whose artefact the run never produced says why.
"""
from __future__ import annotations

import datetime
import logging
import os
import pathlib
import re
import shutil
from typing import Callable

from pipeline.config import PipelineConfig
from pipeline.monitor_results import sections_for_run
from pipeline.report import data_sections, html, image_grid, model_sections
from pipeline.report.run_data import RunData, load_run, open_run_store, property_value
from specs.dataset import DatasetSpec

log = logging.getLogger("progress.report")


def served_version(run: RunData) -> tuple[str, str] | None:
    """(version, model base path) when this run pushed a version or found it already served."""
    pushed = run.output("pushed_model")
    if pushed is None or not property_value(pushed, "pushed"):
        return None
    version = property_value(pushed, "pushed_version")
    destination = property_value(pushed, "pushed_destination")
    return (str(version), os.path.dirname(str(destination).rstrip("/"))) if version and destination else None


def _guarded(build: Callable[[], str], title: str) -> str:
    """A section that cannot be read (e.g. an artefact deleted by hand) says so; the rest of the report stays."""
    try:
        return build()
    except Exception as e:  # noqa: BLE001 - the report shows what it could not read
        log.warning("report section %r could not be written: %s: %s", title, type(e).__name__, e)
        return html.paragraph(f"This section could not be read: {type(e).__name__}: {e}", "bad")


def overview(run: RunData, version: tuple[str, str] | None) -> str:
    blessing = run.output("blessing")
    blessed = None if blessing is None else bool(property_value(blessing, "blessed"))
    started = datetime.datetime.fromtimestamp(run.run.started, datetime.timezone.utc)
    rows = [("data set", run.dataset), ("run id", run.run.run_id),
            ("started (UTC)", started.strftime("%Y-%m-%d %H:%M:%S")),
            ("state", run.state), ("blessed", "not evaluated" if blessed is None else blessed),
            ("served version", f"{version[0]} in {version[1]}" if version else "none from this run")]
    return html.table(["", ""], rows) + data_sections.stopped_by(run)


def render(run: RunData, spec: DatasetSpec, monitoring: list[str] | None = None) -> str:
    """The report's HTML for one run; `monitoring`: HTML of the served model's monitoring checks."""
    version = served_version(run)
    sections = [
        ("overview", "Overview", lambda: overview(run, version)),
        ("components", "Components", lambda: data_sections.components_section(run)),
        ("data", "Data", lambda: data_sections.data_section(run)),
        ("schema", "Schema and anomalies", lambda: data_sections.schema_section(run)),
        ("transform", "Transform", lambda: data_sections.transform_section(run, spec)),
        ("training", "Training", lambda: model_sections.training_section(run)),
        ("evaluation", "Evaluation", lambda: model_sections.evaluation_section(run, list(spec.label_names))),
        ("blessing", "Blessing", lambda: model_sections.blessing_section(run)),
        ("push", "Push", lambda: model_sections.push_section(run, version[0] if version else None)),
        ("lineage", "Lineage", lambda: model_sections.lineage_section(run)),
    ]
    if spec.image_feature:
        sections.insert(-3, ("images", "Held-out images", lambda: image_grid.image_section(run, spec)))
    if monitoring:
        sections.append(("monitoring", "Monitoring: served data vs training data", lambda: "".join(monitoring)))
    return html.page(f"Run report: {run.dataset}", f"run {run.run.run_id}",
                     [(anchor, title, _guarded(build, title)) for anchor, title, build in sections])


def report_path(config: PipelineConfig, spec: DatasetSpec, run_id: str) -> pathlib.Path:
    """`<home>/<dataset>/reports/<run id>.html`, the run id made file-name safe."""
    return config.home / spec.name / "reports" / (re.sub(r"[^A-Za-z0-9._-]", "_", run_id) + ".html")


def write_report(spec: DatasetSpec, config: PipelineConfig, run_id: str | None = None,
                 output: pathlib.Path | None = None) -> pathlib.Path:
    """Writes the report of run `run_id` (default: the newest); a served version also gets a copy beside it."""
    store = open_run_store(config.metadata_for(spec), spec.name, config.home)
    run = load_run(store, spec.name, run_id)
    path = output or report_path(config, spec, run.run.run_id)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render(run, spec, sections_for_run(config, spec, run.run.run_id)), encoding="utf-8")
    version = served_version(run)
    if version and "://" not in version[1] and os.path.isdir(version[1]):
        served_copy = pathlib.Path(version[1], "reports", f"{version[0]}.html")
        served_copy.parent.mkdir(exist_ok=True)
        shutil.copyfile(path, served_copy)
    return path
