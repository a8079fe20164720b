"""`make demo`: run the pipeline, show what it produced, then serve the pushed model and query it over REST."""
from __future__ import annotations

import json

from pipeline.config import PipelineConfig
from pipeline.local_runner import run_local
from specs.dataset import DatasetSpec
from serving.demo import serve_and_query


def demo(spec: DatasetSpec, config: PipelineConfig) -> int:
    report = run_local(spec, config)
    print(report.summary())
    if not report.pushed_path:
        return 1
    base_path = config.serving_dir_for(spec)
    instance = dict(spec.example_instance)
    print(f"\nStarting the model server on {base_path} and sending over REST "
          f"(POST /v1/models/{spec.name}:predict):\n  {json.dumps({'instances': [instance]})}")
    answer = serve_and_query(spec.name, base_path, instance)
    print(f"Answer:\n  {json.dumps(answer)}")
    return 0
