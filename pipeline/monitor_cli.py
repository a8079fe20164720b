"""`python -m pipeline monitor`: compare logged serving requests with the training data (see pipeline/monitor.py)."""
from __future__ import annotations

import argparse
import datetime as dt
import pathlib
import re

from pipeline import exit_codes
from pipeline.config import PipelineConfig
from pipeline.run_args import add_dataset_arg
from specs.dataset import load_spec

_AGO = re.compile(r"(\d+)\s*([smhd])")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}


def parse_since(text: str) -> dt.datetime:
    """`2026-11-29`, `2026-11-29T10:00` (UTC unless an offset is given), or an age such as `30m`, `6h`, `2d`."""
    ago = _AGO.fullmatch(text.strip())
    if ago:
        return dt.datetime.now(dt.timezone.utc) - dt.timedelta(**{_UNITS[ago.group(2)]: int(ago.group(1))})
    try:
        moment = dt.datetime.fromisoformat(text.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected an ISO date/time (2026-11-29T10:00) "
                                         "or an age (30m, 6h, 2d)") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=dt.timezone.utc)


def cmd_monitor(args: argparse.Namespace) -> int:
    from pipeline.monitor import monitor  # TFDV and TF only when monitoring
    config = PipelineConfig(home=args.home.resolve(), serving_dir=args.serving_dir.resolve())
    result = monitor(load_spec(args.dataset), config, args.logs, args.since, args.output, args.model_name)
    for breach in result.breaches:
        print(breach.line())
    verdict = f"{len(result.breaches)} breach(es)" if result.breaches else "no breach"
    print(f"{result.rows} logged instances checked against the training data of {result.model_dir}: {verdict}. "
          f"Anomalies and statistics: {result.output_dir}")
    if result.report:
        print(f"Run report of the served model, with this check: {result.report}")
    return exit_codes.BREACH if result.breaches else exit_codes.DONE


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "monitor", help="check logged serving requests for skew and out-of-range values against the training data",
        description="Reads the model server's request logs (TFRecord files of PredictionLog), computes their "
                    "statistics with TFDV and compares them with the statistics of the data the served model was "
                    "trained on (found through ML Metadata). Prints one line per breach; exit code 4 when any.")
    add_dataset_arg(parser)
    parser.add_argument("--logs", type=pathlib.Path, required=True,
                        help="request log file or folder (the server's logging_config filename_prefix folder)")
    parser.add_argument("--model-name", metavar="NAME",
                        help="the name the model is served under (default: the data set's name)")
    parser.add_argument("--since", type=parse_since, metavar="WHEN",
                        help="only log files written since WHEN: an ISO date/time or an age such as 6h or 2d")
    parser.add_argument("--home", type=pathlib.Path, default=PipelineConfig.home,
                        help="where the pipeline's ML Metadata is (default: %(default)s)")
    parser.add_argument("--serving-dir", type=pathlib.Path, default=PipelineConfig.serving_dir,
                        help="Pusher base dir; the newest version of the data set's model is checked "
                             "(default: %(default)s)")
    parser.add_argument("--output", type=pathlib.Path,
                        help="folder for anomalies.pbtxt, serving statistics and monitor.html (default: "
                             "HOME/NAME/monitoring/<time>, which the served model's run report shows)")
    parser.set_defaults(func=cmd_monitor)
