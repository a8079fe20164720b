"""`report` and `runs` commands, and the report `run` writes at its end."""
from __future__ import annotations

import argparse
import logging
import pathlib

from pipeline.config import PipelineConfig
from pipeline.run_args import add_dataset_arg
from specs.dataset import DatasetSpec, load_spec

log = logging.getLogger("progress.report")


def _config(args: argparse.Namespace) -> PipelineConfig:
    return PipelineConfig(home=args.home.resolve(), serving_dir=args.serving_dir.resolve())


def cmd_report(args: argparse.Namespace) -> int:
    from pipeline.report import write_report
    path = write_report(load_spec(args.dataset), _config(args), args.run, args.output)
    print(f"Run report: {path}")
    return 0


def cmd_runs(args: argparse.Namespace) -> int:
    from pipeline.runs import format_runs, list_runs
    print(format_runs(list_runs(load_spec(args.dataset), _config(args))))
    return 0


def write_after_run(spec: DatasetSpec, config: PipelineConfig) -> str | None:
    """The newest run's report, after `run` finished or failed; a report problem never hides the run's result."""
    from pipeline.report import write_report
    try:
        path = str(write_report(spec, config))
    except Exception as e:  # noqa: BLE001 - the run's own outcome and exit code come first
        log.warning("could not write the run report (%s: %s); try `python -m pipeline report --dataset %s -v`",
                    type(e).__name__, e, spec.name)
        return None
    print(f"Run report: {path}")
    return path


def _add_store_args(parser: argparse.ArgumentParser) -> None:
    add_dataset_arg(parser)
    parser.add_argument("--home", type=pathlib.Path, default=PipelineConfig.home,
                        help="where the runs' artifacts and ML Metadata are (default: %(default)s)")
    parser.add_argument("--serving-dir", type=pathlib.Path, default=PipelineConfig.serving_dir,
                        help="Pusher base dir (default: %(default)s)")


def register(sub: argparse._SubParsersAction) -> None:
    report = sub.add_parser("report", help="write a run's HTML report (plots inline, no network needed)",
                            description="Reads ML Metadata and the run's artefacts; works for any recorded run, "
                                        "failed ones too. A served version also gets a copy at "
                                        "SERVING_DIR/NAME/reports/VERSION.html.")
    _add_store_args(report)
    report.add_argument("--run", metavar="RUN_ID", help="run id from `runs` (default: the newest run)")
    report.add_argument("--output", type=pathlib.Path,
                        help="HTML file to write (default: HOME/NAME/reports/RUN_ID.html)")
    report.set_defaults(func=cmd_report)

    runs = sub.add_parser("runs", help="list past runs: id, time, state, key metric, blessed, served version",
                          description="Reads the data set's ML Metadata store.")
    _add_store_args(runs)
    runs.set_defaults(func=cmd_runs)
