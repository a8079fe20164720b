"""`python -m pipeline compile|schedule|submit`: the pipeline on Kubeflow Pipelines.

`compile` writes KFP v1 (Argo YAML) or KFP v2 (PipelineSpec JSON); `schedule` and
`submit` compile for KFP v1 (or take --package) and talk to the cluster through
the kfp 1.8 SDK, which speaks the KFP v1 API.
"""
from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import pathlib
import sys
import tempfile
from typing import Iterator

from pipeline.beam_runner import RUNNERS
from pipeline.run_args import add_run_args, config_from_args
from pipeline.config import PipelineConfig
from pipeline.cron import FORMAT_HELP, kfp_cron
from pipeline.kubeflow import (DEFAULT_PIPELINE_ROOT, DEFAULT_SERVING_DIR, OUTPUT_SUFFIXES, SHARED_MOUNT, TARGETS,
                               ClusterOptions, check_output, default_image)
from specs.dataset import load_spec

DEFAULT_TIMEOUT = 10.0


def add_cluster_args(parser: argparse.ArgumentParser) -> None:
    """`run`'s options, with locations as URIs a cluster's pods can reach."""
    add_run_args(parser)
    parser.add_argument("--home", type=pathlib.Path, default=PipelineConfig.home, help=argparse.SUPPRESS)
    parser.add_argument("--data-dir", metavar="URI",
                        help="the data set's files (default: the spec's source.base as copied into the image)")
    parser.add_argument("--serving-dir", metavar="URI", default=DEFAULT_SERVING_DIR,
                        help="Pusher base; models land in URI/NAME/VERSION (default: %(default)s)")
    parser.add_argument("--pipeline-root", metavar="URI", default=DEFAULT_PIPELINE_ROOT,
                        help="artifact root (gs://, s3:// or a shared volume path); the pipeline writes under "
                             "URI/NAME (default: %(default)s)")
    parser.add_argument("--schema-uri", metavar="URI",
                        help="curated schema file (default: schemas/NAME/schema.pbtxt as copied into the image)")
    parser.add_argument("--image", default=default_image(),
                        help="pipeline image every step runs, built from the Dockerfile and pushed to a registry "
                             "the cluster can pull from (default: %(default)s)")
    parser.add_argument("--volume", metavar="CLAIM",
                        help=f"kfp-v1: mount this PersistentVolumeClaim at {SHARED_MOUNT} in every step "
                             f"(shared pipeline root and serving dir)")
    parser.add_argument("--beam-runner", default="DirectRunner", choices=RUNNERS,
                        help="runner for the Beam components (default: %(default)s, inside each step's pod)")
    parser.add_argument("--beam-arg", action="append", default=[], metavar="ARG",
                        help="extra Beam pipeline arg, repeatable, written --beam-arg=--project=my-project")


def add_kfp_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", required=True, help="KFP API URL, e.g. http://localhost:8080")
    parser.add_argument("--experiment", help="experiment name, created when missing (default: the data set name)")
    parser.add_argument("--namespace", help="Kubernetes namespace of a multi-user KFP (default: single-user)")
    parser.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT,
                        help="seconds to wait for the KFP API on each call (default: %(default)s)")
    parser.add_argument("--package", type=pathlib.Path,
                        help="upload this compiled kfp-v1 file instead of compiling now (compile options ignored)")
    parser.add_argument("--dry-run", action="store_true", help="print what would be sent; no network")


def cluster_options(args: argparse.Namespace, target: str) -> ClusterOptions:
    return ClusterOptions(target=target, image=args.image, pipeline_root=args.pipeline_root,
                          serving_dir=args.serving_dir, data_uri=args.data_dir, schema_uri=args.schema_uri,
                          beam_runner=args.beam_runner, beam_args=tuple(args.beam_arg), volume=args.volume)


def run_options(args: argparse.Namespace) -> PipelineConfig:
    """The options shared with `run` (trainer, epochs, thresholds, seed, cache); locations are replaced later."""
    shared = vars(args) | {"data_dir": None, "serving_dir": PipelineConfig.serving_dir, "beam_arg": None}
    return config_from_args(argparse.Namespace(**shared))


def compile_from_args(args: argparse.Namespace, target: str, output: pathlib.Path) -> pathlib.Path:
    from pipeline.kubeflow import cluster_config, compile_pipeline, shared_path_notes
    spec = load_spec(args.dataset)
    options = cluster_options(args, target)
    check_output(target, output)
    config = cluster_config(spec, run_options(args), options)
    for note in shared_path_notes(config, options):
        print(f"note: {note}", file=sys.stderr)
    return compile_pipeline(spec, config, options, output)


def cmd_compile(args: argparse.Namespace) -> int:
    path = compile_from_args(args, args.target, args.output)
    print(f"Compiled {args.dataset} for {args.target}: {path}")
    return 0


@contextlib.contextmanager
def kfp_package(args: argparse.Namespace) -> Iterator[pathlib.Path]:
    """--package as given, else the pipeline compiled for kfp-v1 into a temporary file."""
    if args.package:
        if not args.package.exists():
            raise FileNotFoundError(f"--package {args.package} does not exist; compile it with "
                                    f"`python -m pipeline compile --target kfp-v1 --output FILE`")
        check_output("kfp-v1", args.package)
        yield args.package
        return
    with tempfile.TemporaryDirectory(prefix="kfp-") as tmp:
        yield compile_from_args(args, "kfp-v1", pathlib.Path(tmp) / f"{args.dataset}.yaml")


def describe_package(args: argparse.Namespace, path: pathlib.Path) -> dict:
    data = path.read_bytes()
    where = str(path) if args.package else "compiled for this command, then deleted (compile --output keeps one)"
    return {"path": where, "bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}


def talk_to_kfp(args: argparse.Namespace, action) -> int:
    """Connects, runs `action(session)`, prints its ids; on failure reports what already exists."""
    from pipeline.kfp_client import KfpError, KfpSession
    session = None
    try:
        session = KfpSession(args.host, args.timeout, args.namespace)
        print(json.dumps(action(session), indent=2))
        return 0
    except KfpError as e:
        print(f"error: {e}", file=sys.stderr)
        print(session.created_report() if session else "Nothing was created on the cluster.", file=sys.stderr)
        return 1


def cmd_schedule(args: argparse.Namespace) -> int:
    from pipeline.kfp_client import check_host, recurring_run_request, version_name
    cron, note = kfp_cron(args.cron)
    if note:
        print(f"note: {note}", file=sys.stderr)
    host = check_host(args.host)
    pipeline_name = args.pipeline_name or args.dataset
    experiment = args.experiment or args.dataset
    job_name = args.job_name or f"{pipeline_name}-recurring"
    version = version_name(pipeline_name)
    with kfp_package(args) as package:
        if args.dry_run:
            print(json.dumps({
                "dry_run": True, "host": host, "package": describe_package(args, package),
                "upload": {"pipeline_name": pipeline_name, "version_name": version,
                           "how": f"a new pipeline {pipeline_name!r}, or a new version of it when it exists"},
                "experiment": {"name": experiment, "how": "reused, or created when missing"},
                "create_recurring_run": recurring_run_request("<experiment id>", "<pipeline id>", "<version id>",
                                                              job_name, cron)}, indent=2))
            return 0
        return talk_to_kfp(args, lambda s: s.schedule(package, pipeline_name, version, experiment, job_name, cron))


def cmd_submit(args: argparse.Namespace) -> int:
    from pipeline.kfp_client import check_host, run_request
    host = check_host(args.host)
    experiment = args.experiment or args.dataset
    run_name = args.run_name or f"{args.dataset}-run"
    with kfp_package(args) as package:
        if args.dry_run:
            print(json.dumps({"dry_run": True, "host": host, "package": describe_package(args, package),
                              "experiment": {"name": experiment, "how": "reused, or created when missing"},
                              "run_pipeline": run_request("<experiment id>", run_name, package)}, indent=2))
            return 0
        return talk_to_kfp(args, lambda s: s.submit(package, experiment, run_name))


def register(sub: argparse._SubParsersAction) -> None:
    compile_ = sub.add_parser(
        "compile", conflict_handler="resolve", help="compile the pipeline for Kubeflow (KFP v1 YAML or v2 JSON)",
        description="Compiles the same pipeline `run` runs, with KubeflowDagRunner (kfp-v1: Argo Workflow YAML) "
                    "or KubeflowV2DagRunner (kfp-v2: PipelineSpec JSON). Every step runs --image.")
    add_cluster_args(compile_)
    compile_.add_argument("--target", required=True, choices=TARGETS, help="kfp-v1 or kfp-v2")
    compile_.add_argument("--output", required=True, type=pathlib.Path,
                          help="kfp-v1: " + "/".join(OUTPUT_SUFFIXES["kfp-v1"]) + "; kfp-v2: .json")
    compile_.set_defaults(func=cmd_compile)

    schedule = sub.add_parser(
        "schedule", conflict_handler="resolve", help="upload the pipeline to KFP and create a recurring run",
        description="Compiles for kfp-v1, uploads it (a new pipeline, or a new version of an existing one), "
                    "gets or creates the experiment and creates a recurring run; prints the ids. "
                    + FORMAT_HELP + ".")
    add_cluster_args(schedule)
    add_kfp_args(schedule)
    schedule.add_argument("--cron", required=True, help="when to run; " + FORMAT_HELP)
    schedule.add_argument("--pipeline-name", help="KFP pipeline name (default: the data set name)")
    schedule.add_argument("--job-name", help="recurring run name (default: PIPELINE-recurring)")
    schedule.set_defaults(func=cmd_schedule)

    submit = sub.add_parser(
        "submit", conflict_handler="resolve", help="start one run of the pipeline on KFP",
        description="Compiles for kfp-v1 and starts a single run with the workflow inline (no pipeline object "
                    "is uploaded); prints the run id.")
    add_cluster_args(submit)
    add_kfp_args(submit)
    submit.add_argument("--run-name", help="run name (default: NAME-run)")
    submit.set_defaults(func=cmd_submit)
