"""`python -m pipeline train-cluster` and `compile-cluster`: options and entry (work: pipeline/train_cluster.py)."""
from __future__ import annotations

import argparse
import json
import pathlib

from pipeline import exit_codes
from pipeline.kubeflow_cli import add_cluster_args, cluster_options, run_options
from pipeline.run_args import add_run_args, config_from_args
from specs.dataset import load_spec


def cmd_train_cluster(args: argparse.Namespace) -> int:
    from pipeline.train_cluster import train_cluster  # heavy imports only when running
    report = train_cluster(load_spec(args.dataset), config_from_args(args), args.workers)
    print(report.summary())
    if args.report:
        args.report.write_text(json.dumps(report.to_dict(), indent=2))
    return exit_codes.NOT_BLESSED if report.run.blessed is False else exit_codes.DONE


def cmd_compile_cluster(args: argparse.Namespace) -> int:
    from pipeline.train_cluster import compile_cluster
    path = compile_cluster(load_spec(args.dataset), run_options(args), cluster_options(args, "kfp-v1"),
                           args.workers, args.output)
    print(f"Compiled {args.dataset} for kfp-v1 with a {args.workers}-worker TFJob Trainer: {path}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "train-cluster", help="run the pipeline with the Trainer on N local worker processes (multi-worker)",
        description="Runs the same pipeline as `run` (cached upstream components are reused) with "
                    "--strategy multi_worker_mirrored: the Trainer starts --workers processes on this machine, "
                    "each with its TF_CONFIG on a free localhost port, and trains the spec's Keras model "
                    "together. Worker 0 (the chief) writes the Trainer's model; the Evaluator gates it and the "
                    "Pusher pushes it to SERVING_DIR/NAME/VERSION. Worker output is prefixed [worker i]; a "
                    "worker that fails stops the others (exit 1).")
    add_run_args(parser)
    parser.add_argument("--workers", type=int, default=2, help="worker processes, 2 to 8 (default: %(default)s)")
    parser.add_argument("--report", type=pathlib.Path, help="also write the run summary as JSON here")
    parser.set_defaults(func=cmd_train_cluster)

    compile_ = sub.add_parser(
        "compile-cluster", conflict_handler="resolve",
        help="compile the pipeline for KFP v1 with the Trainer's workers as a Kubeflow TFJob",
        description="Like `compile --target kfp-v1`, but the Trainer step writes its plan under the pipeline root "
                    "and creates a TFJob with --workers Worker replicas running the image (Kubeflow's training "
                    "operator sets each one's TF_CONFIG), waits for it and fails when it fails. The pipeline "
                    "root must be shared storage (gs://, s3:// or --volume). The Trainer pod's service account "
                    "needs create/get on tfjobs.kubeflow.org.")
    add_cluster_args(compile_)
    compile_.add_argument("--workers", type=int, default=2, help="TFJob Worker replicas (default: %(default)s)")
    compile_.add_argument("--output", required=True, type=pathlib.Path, help="the Argo Workflow, .yaml")
    compile_.set_defaults(func=cmd_compile_cluster)
