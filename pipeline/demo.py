"""`make demo`: run the pipeline, show what it produced, and query the pushed model."""
from __future__ import annotations

import json

from pipeline.cli import print_report
from pipeline.config import PipelineConfig
from pipeline.local_runner import run_local
from pipeline.predict import latest_version, predict
from pipeline.specs import DatasetSpec


def demo(spec: DatasetSpec, config: PipelineConfig) -> int:
    report = run_local(spec, config)
    print_report(report)
    if not report.pushed_path and report.blessed is False:
        return 1
    model_dir = latest_version(config.serving_dir / spec.name)
    instance = dict(spec.example_instance)
    print(f"\nExample instance: {json.dumps(instance)}")
    print("In-process prediction (serving_default):", json.dumps(predict(model_dir, [instance])[0]))
    return 0
