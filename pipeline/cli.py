"""`python -m pipeline`: run, draft schemas, predict, demo (and Kubeflow commands)."""
from __future__ import annotations

import argparse
import json
import logging
import pathlib
import re
import sys
from typing import Callable, Sequence

from pipeline import exit_codes, unchanged_run
from pipeline.config import PipelineConfig
from pipeline.process_gc import imports_without_collection
from pipeline.run_args import add_dataset_arg, add_run_args, config_from_args
from specs.dataset import load_spec
from specs.errors import SpecError, UsageError

log = logging.getLogger("pipeline")


BEAM_STEP_SUFFIX = re.compile(r" \[while running '[^']*'\]$")


def cmd_run(args: argparse.Namespace) -> int:
    spec, config = load_spec(args.dataset), config_from_args(args)
    key = None if args.no_shortcut else unchanged_run.run_key(spec, config)
    previous = unchanged_run.unchanged_run(spec, config, key)
    if previous is not None:
        print(unchanged_run.summary(spec, previous))
        if args.report:  # nothing ran: no components, no time; the outcome is the unchanged run's
            args.report.write_text(json.dumps({**previous["report"], "seconds": 0.0, "components": [],
                                               "evaluation_reused": True, "pipeline_started": False,
                                               "unchanged_since": previous["finished_at"]}, indent=2))
        return previous["exit_code"]
    with imports_without_collection():  # TF, TFX and Beam: heavy imports only when running
        from pipeline.local_runner import run_local
    from pipeline.report_cli import write_after_run
    try:
        report = run_local(spec, config)
    except Exception:
        if not args.no_report:  # failed runs get a report too: it says what stopped them
            write_after_run(spec, config)
        raise
    print(report.summary())
    html = None if args.no_report else write_after_run(spec, config)
    if args.report:
        args.report.write_text(json.dumps(report.to_dict(), indent=2))
    code = exit_codes.NOT_BLESSED if report.blessed is False else exit_codes.DONE
    unchanged_run.record(spec, config, key, {**report.to_dict(), "report_html": html}, code)
    return code


def cmd_schema(args: argparse.Namespace) -> int:
    with imports_without_collection():
        from pipeline.schema_draft import draft_schema
    spec = load_spec(args.dataset)
    output = args.output or spec.schema_path.with_name("schema.draft.pbtxt")
    path = draft_schema(spec, config_from_args(args), output)
    print(f"Draft schema written to {path}\nReview it (domains, presence, value ranges, environments), "
          f"then copy it over {spec.schema_path}.")
    return 0


def parse_instances(text: str) -> list[dict]:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as e:
        raise UsageError(f"--instance is not valid JSON ({e}); give e.g. '{{\"Age\": 22, ...}}'") from e
    rows = value if isinstance(value, list) else [value]
    if not rows or not all(isinstance(r, dict) for r in rows):
        raise UsageError("--instance must be a JSON object (one instance) or a non-empty list of objects")
    return rows


def cmd_predict(args: argparse.Namespace) -> int:
    from pipeline.predict import latest_version, predict
    spec = load_spec(args.dataset)
    instances = parse_instances(args.instance) if args.instance else [dict(spec.example_instance)]
    model_dir = latest_version(args.serving_dir.resolve() / spec.name)
    predictions = predict(model_dir, instances)
    print(json.dumps({"model": str(model_dir), "predictions": predictions}, indent=2))
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    """Run, report, then answer the spec's example instance with the pushed model."""
    with imports_without_collection():
        from pipeline.demo import demo
    return demo(load_spec(args.dataset), config_from_args(args))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m pipeline", description=__doc__.split("\n")[0] if __doc__ else None)
    parser.add_argument("-v", "--verbose", action="store_true", help="show TFX/Beam/TF logs in full")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = sub.add_parser("run", help="run the pipeline locally (LocalDagRunner, sqlite ML Metadata)",
                         description="Ingest, validate, transform, train, evaluate and push one data set.")
    add_run_args(run)
    run.add_argument("--report", type=pathlib.Path, help="also write the run summary as JSON here")
    run.add_argument("--no-report", action="store_true",
                     help="skip the HTML run report (default: written to HOME/NAME/reports/RUN_ID.html)")
    run.add_argument("--no-shortcut", action="store_true",
                     help="start the pipeline even when spec, schema, data, code and options equal the last "
                          "run's (each component then comes back CACHED); --no-cache implies it")
    run.set_defaults(func=cmd_run)

    schema = sub.add_parser("schema", help="draft a schema from the data for a human to curate",
                            description="Runs ExampleGen, StatisticsGen and SchemaGen and writes a draft schema "
                                        "(never the curated one unless --output says so).")
    add_run_args(schema)
    schema.add_argument("--output", type=pathlib.Path, help="default: schemas/NAME/schema.draft.pbtxt")
    schema.set_defaults(func=cmd_schema)

    predict = sub.add_parser("predict", help="predict with the latest pushed model, in process",
                             description="Loads SERVING_DIR/NAME/<latest version> and calls serving_default.")
    add_dataset_arg(predict)
    predict.add_argument("--instance", help="JSON object of raw feature values (or a list); default: the spec's "
                                            "example_instance")
    predict.add_argument("--serving-dir", type=pathlib.Path, default=PipelineConfig.serving_dir,
                         help="Pusher base dir (default: %(default)s)")
    predict.set_defaults(func=cmd_predict)

    demo = sub.add_parser("demo", help="run the pipeline, then serve the pushed model and query it over REST",
                          description="What `make demo` runs.")
    add_run_args(demo)
    demo.set_defaults(func=cmd_demo)

    for register in _extensions():
        register(sub)
    return parser


def _extensions() -> list[Callable]:
    """Sub-command groups living in their own modules (e.g. Kubeflow)."""
    from pipeline import compare_cli, kubeflow_cli, monitor_cli, report_cli, train_cluster_cli
    return [kubeflow_cli.register, monitor_cli.register, train_cluster_cli.register, report_cli.register,
            compare_cli.register]


def _drop_tf_shutdown_noise(unraisable) -> None:
    """TF 2.15 functions freed at interpreter exit print a harmless TypeError; keep all else."""
    if getattr(unraisable.object, "__qualname__", "") == "AtomicFunction.__del__":
        return
    sys.__unraisablehook__(unraisable)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    sys.unraisablehook = _drop_tf_shutdown_noise
    from pipeline.progress import configure_logging, quiet_native_logs
    quiet_native_logs(args.verbose)
    configure_logging(args.verbose)
    try:
        return args.func(args)
    except (SpecError, UsageError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return exit_codes.USAGE
    except Exception as e:  # noqa: BLE001 - a failed component: say what failed, not a stack trace
        if args.verbose:
            raise
        message = BEAM_STEP_SUFFIX.sub("", str(e))  # Beam appends the step a DoFn failed in
        print(f"error: {type(e).__name__}: {message}\n(run with --verbose for the full trace)", file=sys.stderr)
        return exit_codes.FAILED


if __name__ == "__main__":
    sys.exit(main())
