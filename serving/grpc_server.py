"""TF Serving's gRPC PredictionService and ModelService on the tensorflow-serving-api stubs."""
from __future__ import annotations

import logging
import time
from concurrent import futures
from typing import Callable

import grpc
import tensorflow as tf
from tensorflow_serving.apis import (classification_pb2, get_model_metadata_pb2, get_model_status_pb2,
                                     inference_pb2, model_management_pb2, model_service_pb2_grpc, predict_pb2,
                                     prediction_service_pb2_grpc, regression_pb2)

from serving.config import entries_from_proto
from serving.errors import Code, ServingError, invalid_argument
from serving.inference import InferenceService
from serving.manager import ModelManager
from serving.monitoring import Metrics
from serving.request_log import RequestLogger
from serving.protos import model_spec, model_status_response, signature_def_map
from serving.versions import parse_version
from serving.servable import CLASSIFY_METHOD, DEFAULT_SIGNATURE, Servable

log = logging.getLogger(__name__)


def _answer(context: grpc.ServicerContext, method: Callable, request, metrics: Metrics | None = None,
            api: str = "", model_name: str = ""):
    """Run a handler; turn failures into the canonical status TF Serving would send.

    With `metrics`, the call is counted (and timed) under `api`, as TF Serving does for
    Predict, Classify and Regress.
    """
    started = time.perf_counter()
    try:
        response = method(request)
    except ServingError as error:
        failure = error
    except Exception as error:  # noqa: BLE001 - a bug must cost one call, not the server
        log.exception("gRPC %s failed", method.__name__)
        failure = ServingError(Code.INTERNAL, f"Internal error: {error}")
    else:
        if metrics is not None:
            metrics.record(model_name, api, "GRPC", None, time.perf_counter() - started)
        return response
    if metrics is not None:
        metrics.record(model_name, api, "GRPC", failure.code, time.perf_counter() - started)
    context.abort(grpc.StatusCode[failure.code.name], failure.message)


class PredictionServicer(prediction_service_pb2_grpc.PredictionServiceServicer):
    """Predict, Classify, Regress, MultiInference and GetModelMetadata."""

    def __init__(self, manager: ModelManager, service: InferenceService, metrics: Metrics | None = None,
                 request_logger: RequestLogger | None = None):
        self._manager = manager
        self._service = service
        self._metrics = metrics
        self._request_logger = request_logger  # sees every successful predict, classify and regress

    def Predict(self, request, context):  # noqa: N802 - gRPC naming
        return _answer(context, self._predict, request, self._metrics, "Predict", request.model_spec.name)

    def Classify(self, request, context):  # noqa: N802
        return _answer(context, self._classify, request, self._metrics, "Classify", request.model_spec.name)

    def Regress(self, request, context):  # noqa: N802
        return _answer(context, self._regress, request, self._metrics, "Regress", request.model_spec.name)

    def MultiInference(self, request, context):  # noqa: N802
        return _answer(context, self._multi_inference, request)

    def GetModelMetadata(self, request, context):  # noqa: N802
        return _answer(context, self._metadata, request)

    def _resolve(self, spec) -> Servable:
        version = spec.version.value if spec.HasField("version") else None
        return self._manager.resolve(spec.name, version, spec.version_label or None)

    def _predict(self, request: predict_pb2.PredictRequest) -> predict_pb2.PredictResponse:
        servable = self._resolve(request.model_spec)
        return self._logged("predict", servable, request, run_predict(self._service, servable, request))

    def _classify(self, request: classification_pb2.ClassificationRequest):
        servable = self._resolve(request.model_spec)
        return self._logged("classify", servable, request, run_classify(self._service, servable, request))

    def _regress(self, request: regression_pb2.RegressionRequest):
        servable = self._resolve(request.model_spec)
        return self._logged("regress", servable, request, run_regress(self._service, servable, request))

    def _logged(self, method: str, servable: Servable, request, response):
        if self._request_logger is not None:
            self._request_logger.grpc(method, servable, request.model_spec.signature_name, request, response)
        return response

    def _multi_inference(self, request: inference_pb2.MultiInferenceRequest):
        names = set()
        for task in request.tasks:
            if not task.model_spec.name:
                raise invalid_argument("Found ModelSpec with an empty model name.")
            names.add(task.model_spec.name)
        if len(names) > 1:
            raise invalid_argument("All ModelSpecs in a MultiInferenceRequest must access the same model name.")
        if not names:
            raise invalid_argument("Expected at least one task.")
        return run_multi_inference(self._service, self._resolve(request.tasks[0].model_spec), request)

    def _metadata(self, request: get_model_metadata_pb2.GetModelMetadataRequest):
        if not request.metadata_field:
            raise invalid_argument("GetModelMetadataRequest must specify at least one metadata_field")
        for field in request.metadata_field:
            if field != "signature_def":
                raise invalid_argument(f"Metadata field {field} is not supported")
        servable = self._resolve(request.model_spec)
        response = get_model_metadata_pb2.GetModelMetadataResponse()
        response.model_spec.CopyFrom(model_spec(servable))
        response.metadata["signature_def"].Pack(signature_def_map(servable))
        return response


class ModelServicer(model_service_pb2_grpc.ModelServiceServicer):
    """GetModelStatus, and HandleReloadConfigRequest to swap the model config at run time."""

    def __init__(self, manager: ModelManager):
        self._manager = manager

    def GetModelStatus(self, request, context):  # noqa: N802 - gRPC naming
        return _answer(context, self._status, request)

    def HandleReloadConfigRequest(self, request, context):  # noqa: N802
        return _answer(context, self._reload, request)

    def _status(self, request: get_model_status_pb2.GetModelStatusRequest):
        spec = request.model_spec
        version = spec.version.value if spec.HasField("version") else None
        return model_status_response(self._manager.statuses(spec.name, version, spec.version_label or None))

    def _reload(self, request: model_management_pb2.ReloadConfigRequest):
        try:
            entries = entries_from_proto(request.config)
        except ValueError as error:
            raise invalid_argument(str(error)) from error
        self._manager.update_entries(entries)
        return model_management_pb2.ReloadConfigResponse()


def run_predict(service: InferenceService, servable: Servable,
                request: predict_pb2.PredictRequest) -> predict_pb2.PredictResponse:
    """A PredictRequest on a resolved servable (also replayed by warm-up)."""
    signature = request.model_spec.signature_name
    try:
        inputs = {name: tf.make_ndarray(proto) for name, proto in request.inputs.items()}
    except (TypeError, ValueError) as error:
        raise invalid_argument(f"Malformed input tensor: {error}") from error
    outputs = service.predict(servable, signature, inputs, request.output_filter)
    response = predict_pb2.PredictResponse()
    response.model_spec.CopyFrom(model_spec(servable, signature or DEFAULT_SIGNATURE))
    for name, value in outputs.items():
        response.outputs[name].CopyFrom(tf.make_tensor_proto(value))
    return response


def run_classify(service: InferenceService, servable: Servable,
                 request: classification_pb2.ClassificationRequest) -> classification_pb2.ClassificationResponse:
    signature = request.model_spec.signature_name
    results = service.classify(servable, signature, serialized_examples(request.input))
    response = classification_pb2.ClassificationResponse()
    response.model_spec.CopyFrom(model_spec(servable, signature or DEFAULT_SIGNATURE))
    _fill_classifications(response.result, results)
    return response


def run_regress(service: InferenceService, servable: Servable,
                request: regression_pb2.RegressionRequest) -> regression_pb2.RegressionResponse:
    signature = request.model_spec.signature_name
    values = service.regress(servable, signature, serialized_examples(request.input))
    response = regression_pb2.RegressionResponse()
    response.model_spec.CopyFrom(model_spec(servable, signature or DEFAULT_SIGNATURE))
    for value in values:
        response.result.regressions.add(value=value)
    return response


def run_multi_inference(service: InferenceService, servable: Servable,
                        request: inference_pb2.MultiInferenceRequest) -> inference_pb2.MultiInferenceResponse:
    """Every task's classify/regress over the shared input; model specs echo each task's signature name."""
    tasks = [(task.model_spec.signature_name, task.method_name) for task in request.tasks]
    results = service.multi_inference(servable, tasks, serialized_examples(request.input))
    response = inference_pb2.MultiInferenceResponse()
    for task, result in zip(request.tasks, results):
        entry = response.results.add()
        entry.model_spec.CopyFrom(model_spec(servable, task.model_spec.signature_name))
        if task.method_name == CLASSIFY_METHOD:
            _fill_classifications(entry.classification_result, result)
        else:
            for value in result:
                entry.regression_result.regressions.add(value=value)
    return response


def _fill_classifications(result, classifications: list[list[tuple[str, float]]]) -> None:
    for classes in classifications:
        entry = result.classifications.add()
        for label, score in classes:
            entry.classes.add(label=label, score=score)


def serialized_examples(input_proto) -> list[bytes]:
    """Examples as the signature's string input; a context is merged into every example."""
    kind = input_proto.WhichOneof("kind")
    if kind == "example_list":
        return [example.SerializeToString() for example in input_proto.example_list.examples]
    if kind == "example_list_with_context":
        with_context = input_proto.example_list_with_context
        context = with_context.context.SerializeToString()
        return [context + example.SerializeToString() for example in with_context.examples]
    raise invalid_argument("Input is empty.")


def parse_channel_arguments(text: str) -> list[tuple[str, int | str]]:
    """TF Serving's --grpc_channel_arguments: "key=value,key=value"; int values where they parse."""
    arguments = []
    for item in filter(None, text.split(",")):
        key, separator, value = item.partition("=")
        if not separator:
            raise ValueError(f"--grpc_channel_arguments: {item!r} is not key=value")
        number = parse_version(value)  # absl::SimpleAtoi, as TF Serving parses the value
        arguments.append((key, number if number is not None and -2**31 <= number < 2**31 else value))
    return arguments


def start_grpc_server(host: str, port: int, manager: ModelManager, service: InferenceService,
                      max_workers: int, channel_arguments: list[tuple[str, int | str]] = (),
                      metrics: Metrics | None = None, request_logger: RequestLogger | None = None) -> grpc.Server:
    # Like TF Serving: no message size limit unless a channel argument sets one.
    options = [("grpc.max_receive_message_length", 2**31 - 1), ("grpc.max_send_message_length", 2**31 - 1)]
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="grpc"),
                         options=options + list(channel_arguments))
    servicer = PredictionServicer(manager, service, metrics, request_logger)
    prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(servicer, server)
    model_service_pb2_grpc.add_ModelServiceServicer_to_server(ModelServicer(manager), server)
    if server.add_insecure_port(f"{host}:{port}") == 0:
        raise OSError(f"cannot bind gRPC port {host}:{port}")
    server.start()
    return server
