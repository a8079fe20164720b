"""`python -m serving serve|query`: run the model server, or ask it for a prediction.

`serve` takes TF Serving's own flag names (`--port`, `--rest_api_port`,
`--model_name`, `--model_base_path`, `--model_config_file`, ...) so commands
carry over to `tensorflow_model_server` unchanged.
"""
from __future__ import annotations

import argparse
import functools
import json
import logging
import os
import re
import sys
from typing import NoReturn


def _flag(text: str) -> bool:
    """TF Serving style booleans: --enable_batching, --enable_batching=true/false."""
    value = text.lower()
    if value in ("true", "1", "yes"):
        return True
    if value in ("false", "0", "no"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def _flag_value_error(serve: argparse.ArgumentParser, message: str) -> NoReturn:
    """A flag value that does not parse: TF Serving's flag parser wording, usage, exit code 255 (-1)."""
    match = re.match(r"argument --(\w+): (?:invalid \S+ value|expected true or false, got): '?(.*?)'?$", message)
    if match is None:
        serve.exit(2, f"{serve.format_usage()}{serve.prog}: error: {message}\n")
    print(f"Couldn't interpret value {match[2]} for flag {match[1]}.", file=sys.stderr)
    print(serve.format_help(), flush=True)
    sys.exit(255)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m serving", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser(
        "serve", help="run a TF Serving-compatible model server (REST + gRPC)",
        description="Serve SavedModels from <base_path>/<version>/ over TF Serving's REST and gRPC APIs.")
    serve.add_argument("--port", type=int, default=8500, help="gRPC port (default 8500)")
    serve.add_argument("--rest_api_port", type=int, default=8501, help="REST port; 0 disables REST (default 8501)")
    serve.add_argument("--host", default="127.0.0.1",
                       help="address to bind (default 127.0.0.1; use 0.0.0.0 to accept remote clients)")
    serve.add_argument("--model_name", default="default", help="name of the model (with --model_base_path)")
    serve.add_argument("--model_base_path", help="directory holding <version>/saved_model.pb")
    serve.add_argument("--model_config_file",
                       help="ModelServerConfig text proto: several models, version policies, version labels")
    serve.add_argument("--model_config_file_poll_wait_seconds", type=float, default=0,
                       help="re-read --model_config_file this often; 0 reads it once (default 0)")
    serve.add_argument("--file_system_poll_wait_seconds", type=float, default=1.0,
                       help="look for new versions this often; 0 looks only at startup (default 1)")
    serve.add_argument("--enable_batching", type=_flag, nargs="?", const=True, default=False,
                       help="merge concurrent predict requests into one model call")
    serve.add_argument("--batching_parameters_file",
                       help="TF Serving BatchingParameters text (max_batch_size, batch_timeout_micros, "
                            "num_batch_threads)")
    serve.add_argument("--rest_api_max_body_bytes", type=int, default=10 * 1024 * 1024,
                       help="larger REST bodies get HTTP 413 (default 10 MiB)")
    serve.add_argument("--grpc_max_threads", type=int, default=16, help="gRPC worker threads (default 16)")
    serve.add_argument("--web_console", type=_flag, nargs="?", const=True, default=True,
                       help="serve the web console at / on the REST port; --web_console=false turns it off "
                            "(default on; not a TF Serving flag)")
    serve.add_argument("--log_level", default="INFO", help="logging level (default INFO)")
    serve.add_argument("--enable_signature_method_name_check", type=_flag, nargs="?", const=True, default=False,
                       help="classify/regress/predict only on signatures with the matching method_name "
                            "(TF Serving's default is off)")
    serve.add_argument("--allow_version_labels_for_unavailable_models", type=_flag, nargs="?", const=True,
                       default=False, help="a new version label may name a version that is not loaded yet")
    serve.add_argument("--monitoring_config_file",
                       help="MonitoringConfig text proto; prometheus_config { enable: true } serves metrics "
                            "on the REST port")
    serve.add_argument("--grpc_channel_arguments", default="",
                       help="gRPC server channel arguments, e.g. grpc.max_connection_age_ms=2000,...")
    serve.add_argument("--tensorflow_session_parallelism", type=int, default=0,
                       help="threads per TensorFlow session pool (0 = TensorFlow's default)")
    serve.add_argument("--tensorflow_intra_op_parallelism", type=int, default=0,
                       help="threads within one op (0 = TensorFlow's default)")
    serve.add_argument("--tensorflow_inter_op_parallelism", type=int, default=0,
                       help="ops run in parallel (0 = TensorFlow's default)")
    serve.add_argument("--enable_model_warmup", type=_flag, nargs="?", const=True, default=True,
                       help="replay assets.extra/tf_serving_warmup_requests on load (default true)")
    serve.add_argument("--num_request_iterations_for_warmup", type=int, default=1,
                       help="times each warm-up record is replayed (default 1)")

    serve.error = functools.partial(_flag_value_error, serve)
    parser.serve_parser = serve

    query = commands.add_parser(
        "query", help="send a predict request over REST and print the answer",
        description="POST /v1/models/<model>:predict with the given instances and print the JSON answer.")
    query.add_argument("--model", required=True, help="model name")
    query.add_argument("--instance", action="append", required=True,
                       help='one instance as JSON, e.g. \'{"CreditScore": 615, "Geography": "France"}\'; '
                            "repeat for several")
    query.add_argument("--signature_name", help="signature to call (default serving_default)")
    version = query.add_mutually_exclusive_group()
    version.add_argument("--version", type=int, help="model version (default: latest)")
    version.add_argument("--label", help="model version label")
    query.add_argument("--host", default="127.0.0.1", help="server address (default 127.0.0.1)")
    query.add_argument("--rest_api_port", type=int, default=8501, help="server REST port (default 8501)")
    query.add_argument("--timeout", type=float, default=30.0, help="seconds to wait for the answer")
    return parser


def _query(args: argparse.Namespace) -> int:
    from serving.client import RestClient, ServingHTTPError

    try:
        instances = [json.loads(text) for text in args.instance]
    except json.JSONDecodeError as error:
        print(f"--instance is not valid JSON: {error}", file=sys.stderr)
        return 2
    with RestClient(args.host, args.rest_api_port, timeout=args.timeout) as client:
        try:
            answer = client.predict(args.model, instances=instances, signature_name=args.signature_name,
                                    version=args.version, label=args.label)
        except ServingHTTPError as error:
            print(f"server answered HTTP {error.status}: {error.message}", file=sys.stderr)
            return 1
        except OSError as error:
            print(f"cannot reach {args.host}:{args.rest_api_port}: {error}", file=sys.stderr)
            return 1
    print(json.dumps(answer, indent=2))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, unknown = parser.parse_known_args(argv)
    if args.command == "query":
        if unknown:
            parser.error(f"unrecognized arguments: {' '.join(unknown)}")
        return _query(args)
    if unknown:  # TF Serving prints this and the usage, then serves anyway
        print(f"unknown argument: {unknown[0]}\n{parser.serve_parser.format_help()}", flush=True)
    if bool(args.model_config_file) == bool(args.model_base_path):
        parser.error("serve needs exactly one of --model_base_path or --model_config_file")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # keep TF's C++ start-up chatter out of the log
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from serving.server import run

    return run(args)


if __name__ == "__main__":
    sys.exit(main())
