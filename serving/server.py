"""Assembles and runs the model server: manager, batching, REST and gRPC, until a signal."""
from __future__ import annotations

import argparse
import logging
import os
import signal
import threading

from serving.batching import BatchingParameters, Batcher, parse_batching_parameters
from serving.config import ModelEntry, load_model_config_file, single_model
from serving.console import Console
from serving.errors import ServingError
from serving.grpc_server import parse_channel_arguments, start_grpc_server
from serving.http_server import RestServer
from serving.inference import InferenceService
from serving.manager import ModelManager
from serving.monitoring import Metrics, PrometheusConfig, PrometheusPage, load_monitoring_config
from serving.pages import PageHandler
from serving.request_log import RequestLogger
from serving.rest import RestApi
from serving.warmup import LoadOptions, VersionLoader, session_config

log = logging.getLogger("serving")


def run(args: argparse.Namespace) -> int:
    """Serve until SIGTERM/SIGINT; returns the process exit code."""
    try:
        entries = _entries(args)
        batching = _batching(args)
        load_options = LoadOptions(
            session_config(args.tensorflow_intra_op_parallelism, args.tensorflow_inter_op_parallelism,
                           args.tensorflow_session_parallelism),
            args.enable_model_warmup, args.num_request_iterations_for_warmup,
            args.enable_signature_method_name_check)
        channel_arguments = parse_channel_arguments(args.grpc_channel_arguments)
        prometheus = (load_monitoring_config(args.monitoring_config_file) if args.monitoring_config_file
                      else PrometheusConfig())
    except (OSError, ValueError) as error:
        log.error("invalid configuration: %s", error)
        return 2
    for entry in entries:
        log.info("Model %s: base path %s, version policy %s, labels %s",
                 entry.name, entry.base_path, entry.policy.describe(), dict(entry.labels) or "none")

    manager = ModelManager(entries, args.file_system_poll_wait_seconds, VersionLoader(load_options),
                           args.allow_version_labels_for_unavailable_models)
    try:
        manager.start()
    except ServingError as error:  # e.g. a version label naming a version that is not available
        log.error("Failed to start server. Error: %s: %s", error.code.name, error.message)
        manager.stop()
        return 1
    batcher = Batcher(batching) if batching else None
    request_logger = RequestLogger(manager.request_logging)  # each model's logging_config, as of the last (re)load
    service = InferenceService(batcher, args.enable_signature_method_name_check)
    metrics = Metrics()
    stopping = threading.Event()
    pages: list[PageHandler] = []  # non-/v1/ pages on the REST port (metrics, console), first match wins
    if prometheus.enable:
        pages.append(PrometheusPage(metrics, prometheus.path))
    if args.web_console:
        pages.append(Console(manager, args.rest_api_max_body_bytes))
    rest_server = None
    try:
        if args.rest_api_port:
            rest_api = RestApi(manager, service, metrics, request_logger)
            rest_server = RestServer(args.host, args.rest_api_port, rest_api, args.rest_api_max_body_bytes, pages)
        grpc_server = start_grpc_server(args.host, args.port, manager, service, args.grpc_max_threads,
                                        channel_arguments, metrics, request_logger)
    except OSError as error:
        log.error("cannot start the server: %s", error)
        if rest_server is not None:
            rest_server.stop()
        manager.stop()
        return 1
    log.info("Running gRPC ModelServer at %s:%d", args.host, args.port)
    if rest_server is not None:
        rest_server.start()
        log.info("Exporting HTTP/REST API at %s:%d", args.host, args.rest_api_port)
    if args.model_config_file and args.model_config_file_poll_wait_seconds > 0:
        threading.Thread(target=_reload_config, args=(args, manager, entries, stopping),
                         name="config-reloader", daemon=True).start()

    received = wait_for_stop_signal()
    stopping.set()
    log.info("Shutting down (%s)", signal.Signals(received).name)
    if rest_server is not None:
        rest_server.stop()
    grpc_server.stop(grace=2).wait()
    if batcher is not None:
        batcher.stop()
    request_logger.close()  # writes what is queued and closes the files
    manager.stop()  # closes the Sessions, after every caller is gone
    return 0


STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


def wait_for_stop_signal() -> int:
    """Blocks until SIGTERM or SIGINT reaches the process, on whichever thread; returns which.

    The kernel hands a signal sent to the process to any thread that does not block it: often a
    gRPC or REST thread here. Python runs its handler only once the main thread runs again, and a
    main thread blocked in Event.wait() never did: such a SIGTERM left the server running until
    the caller's SIGKILL, its request logs unwritten. CPython's C-level handler, on the thread
    that caught the signal, also writes the signal's number to the wakeup fd, so the main thread
    waits on that pipe instead. The handlers stay: a second signal during shutdown is ignored."""
    read_end, write_end = os.pipe()
    os.set_blocking(write_end, False)
    previous_fd = signal.set_wakeup_fd(write_end, warn_on_full_buffer=False)
    for signum in STOP_SIGNALS:
        signal.signal(signum, lambda *_: None)  # a Python handler: the wakeup fd is written for these
    try:
        while True:
            received = os.read(read_end, 1)[0]
            if received in STOP_SIGNALS:
                return received
    finally:
        signal.set_wakeup_fd(previous_fd)
        os.close(read_end)
        os.close(write_end)


def _entries(args: argparse.Namespace) -> list[ModelEntry]:
    if args.model_config_file:
        return load_model_config_file(args.model_config_file)
    return single_model(args.model_name, args.model_base_path)


def _batching(args: argparse.Namespace) -> BatchingParameters | None:
    if not args.enable_batching:
        return None
    if args.batching_parameters_file:
        with open(args.batching_parameters_file, encoding="utf-8") as handle:
            return parse_batching_parameters(handle.read())
    return BatchingParameters()


def _reload_config(args: argparse.Namespace, manager: ModelManager, current: list[ModelEntry],
                   stopping: threading.Event) -> None:
    """Re-read --model_config_file periodically and apply it when it changed."""
    while not stopping.wait(args.model_config_file_poll_wait_seconds):
        try:
            entries = load_model_config_file(args.model_config_file)
        except (OSError, ValueError) as error:
            log.error("keeping the previous model config: %s", error)
            continue
        if entries != current:
            log.info("model config changed: %s", [entry.name for entry in entries])
            try:
                manager.update_entries(entries)
            except ServingError as error:
                log.error("model config applied, but its version labels were refused: %s", error.message)
            current = entries
