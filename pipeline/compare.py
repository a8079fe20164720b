"""`python -m pipeline compare`: candidate models side by side in one TFX pipeline.

One ExampleGen and Transform; a Trainer per candidate (`Trainer.<name>`);
`CandidateSelector` picks the best on `validation`; the Evaluator gates that
winner on `test` (thresholds, no regression) and the Pusher pushes it alone;
`CandidateComparison` writes the table of every candidate on `test`.
Candidates are data: the spec's `candidates:` list (partial `model:` blocks),
or `--builders a,b,c` (one candidate per builder, the rest from `model:`).
"""
from __future__ import annotations

import dataclasses
import logging
import pathlib
import re
import time
from typing import Any, Mapping

from specs.dataset import TRAINERS, DatasetSpec
from specs.errors import SpecError

log = logging.getLogger(__name__)
NAME = re.compile(r"^[A-Za-z0-9_]+$")


@dataclasses.dataclass(frozen=True)
class Candidate:
    name: str
    model: Mapping[str, Any]  # overrides of the spec's model block


def candidates_for(spec: DatasetSpec, builders: list[str] | None = None) -> list[Candidate]:
    """`--builders` if given, else the spec's `candidates:`; names unique and usable in component ids."""
    if builders:
        raw = [{"name": builder, "builder": builder} for builder in builders]
    elif spec.candidates:
        raw = [dict(c) for c in spec.candidates]
    else:
        raise SpecError(f"{spec.name}: nothing to compare; add a `candidates:` list to the spec "
                        "or pass --builders, e.g. --builders vgg16,resnet50,mobilenet_v2")
    candidates = []
    for entry in raw:
        options = dict(entry)
        trainer = options.get("trainer", spec.model.get("trainer", "keras"))
        name = str(options.pop("name", None) or f"{options.get('builder', spec.model.get('builder', 'mlp'))}_{trainer}")
        if not NAME.match(name):
            raise SpecError(f"{spec.name}: candidate name {name!r} may use letters, digits and _ only")
        if trainer not in TRAINERS:
            raise SpecError(f"{spec.name}: candidate {name}: trainer {trainer!r} is not one of {', '.join(TRAINERS)}")
        candidates.append(Candidate(name, options))
    names = [c.name for c in candidates]
    if len(set(names)) != len(names):
        raise SpecError(f"{spec.name}: candidate names must be unique, got {names}; give each a `name:`")
    if len(candidates) < 2:
        raise SpecError(f"{spec.name}: comparing needs at least two candidates, got {names}")
    return candidates


def selection_metric(spec: DatasetSpec, override: str | None = None) -> str:
    """The metric that chooses: --metric, else the spec's no-regression metric, else its first gated one."""
    from components.candidates import METRICS
    metric = override or spec.evaluation.get("no_regression_metric") or next(
        iter(spec.evaluation.get("thresholds", {})), None)
    if metric not in METRICS:
        raise SpecError(f"{spec.name}: cannot choose candidates by {metric!r}; use --metric with one of "
                        f"{', '.join(METRICS)}")
    return metric


def model_stage(spec: DatasetSpec, config, candidates: list[Candidate], metric: str):
    """The pipeline_def.ModelStage of a comparison: candidate Trainers, selector, Evaluator, Pusher, table."""
    from tfx.components import Evaluator, Trainer
    from tfx.proto import pusher_pb2
    from tfx.types.channel_utils import union

    from components.candidates import TRAINER_PREFIX, CandidateComparison, CandidateSelector
    from components.pusher import Pusher
    from pipeline import evaluation
    from pipeline.pipeline_def import (REPORTED_SPLIT, TRAIN_ARGS, TRAINER_READS, VALIDATION_ARGS,
                                       baseline_model_resolver, user_code_config)

    run_options = config.trainer_hparams(spec)
    options = {c.name: {**spec.model, **c.model, **run_options} for c in candidates}

    def stage(transform, schema, examples) -> list:
        trainers = [Trainer(
            run_fn="models.trainer.run_fn", examples=transform.outputs["transformed_examples"],
            transform_graph=transform.outputs["transform_graph"], schema=schema,
            train_args=TRAIN_ARGS, eval_args=VALIDATION_ARGS,
            custom_config={**user_code_config(spec, "models.trainer", TRAINER_READS),
                           "hparams": {**c.model, **run_options}},
        ).with_id(f"{TRAINER_PREFIX}{c.name}") for c in candidates]
        models = union([t.outputs["model"] for t in trainers])
        selector = CandidateSelector(examples=examples, models=models, metric=metric, label=spec.label,
                                     candidates=options)
        baseline = baseline_model_resolver(selector, config)
        eval_config = evaluation.make_eval_config(spec, config.thresholds)
        evaluator = Evaluator(examples=examples, model=selector.outputs["model"],
                              baseline_model=baseline.outputs["model"], example_splits=[REPORTED_SPLIT],
                              eval_config=eval_config)
        pusher = Pusher(
            model=selector.outputs["model"], model_blessing=evaluator.outputs["blessing"],
            push_destination=pusher_pb2.PushDestination(
                filesystem=pusher_pb2.PushDestination.Filesystem(base_directory=config.serving_dir_for(spec))))
        comparison = CandidateComparison(
            examples=examples, models=models, model_runs=union([t.outputs["model_run"] for t in trainers]),
            selection=selector.outputs["selection"], metric=metric, eval_config=eval_config, candidates=options,
            seed=config.seed)
        return [*trainers, selector, baseline, evaluator, pusher, comparison]

    return stage


def comparison_table(report) -> str | None:
    """The table the CandidateComparison of this run wrote."""
    from components.candidates import TABLE_TEXT
    component = report.component("CandidateComparison")
    if not component or not component.outputs.get("comparison"):
        return None
    path = pathlib.Path(component.outputs["comparison"][0].uri) / TABLE_TEXT
    return path.read_text() if path.exists() else None


def run_compare(spec: DatasetSpec, config, builders: list[str] | None = None, metric: str | None = None):
    """Runs the comparison pipeline locally; returns the run report and the table text."""
    from pipeline.in_process import run_in_process
    from pipeline.local_runner import summarize
    from pipeline.pipeline_def import create_pipeline

    candidates = candidates_for(spec, builders)
    chosen_by = selection_metric(spec, metric)
    if any({**spec.model, **c.model}.get("trainer") == "tfdf" for c in candidates):
        import tensorflow_decision_forests  # noqa: F401  (the Evaluator loads a TF-DF winner in this process)
    log.info("Comparing %d candidates on %s (chosen by validation %s, reported on test): %s", len(candidates),
             spec.name, chosen_by, ", ".join(c.name for c in candidates))
    config.metadata_for(spec).parent.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    run_in_process(create_pipeline(spec, config, model_stage=model_stage(spec, config, candidates, chosen_by)))
    report = summarize(spec, config, time.monotonic() - started)
    return report, comparison_table(report)
