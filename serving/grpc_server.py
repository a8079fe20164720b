"""TF Serving's gRPC PredictionService and ModelService on the tensorflow-serving-api stubs."""
from __future__ import annotations

import logging
from concurrent import futures
from typing import Callable

import grpc
import tensorflow as tf
from tensorflow_serving.apis import (classification_pb2, get_model_metadata_pb2, get_model_status_pb2,
                                     model_management_pb2, model_service_pb2_grpc, predict_pb2,
                                     prediction_service_pb2_grpc, regression_pb2)

from serving.config import entries_from_proto
from serving.errors import Code, ServingError, invalid_argument
from serving.inference import InferenceService
from serving.manager import ModelManager
from serving.protos import model_spec, model_status_response, signature_def_map
from serving.servable import DEFAULT_SIGNATURE, Servable

log = logging.getLogger(__name__)


def _answer(context: grpc.ServicerContext, method: Callable, request):
    """Run a handler; turn failures into the canonical status TF Serving would send."""
    try:
        return method(request)
    except ServingError as error:
        failure = error
    except Exception as error:  # noqa: BLE001 - a bug must cost one call, not the server
        log.exception("gRPC %s failed", method.__name__)
        failure = ServingError(Code.INTERNAL, f"Internal error: {error}")
    context.abort(grpc.StatusCode[failure.code.name], failure.message)


class PredictionServicer(prediction_service_pb2_grpc.PredictionServiceServicer):
    """Predict, Classify, Regress and GetModelMetadata (MultiInference stays UNIMPLEMENTED)."""

    def __init__(self, manager: ModelManager, service: InferenceService):
        self._manager = manager
        self._service = service

    def Predict(self, request, context):  # noqa: N802 - gRPC naming
        return _answer(context, self._predict, request)

    def Classify(self, request, context):  # noqa: N802
        return _answer(context, self._classify, request)

    def Regress(self, request, context):  # noqa: N802
        return _answer(context, self._regress, request)

    def GetModelMetadata(self, request, context):  # noqa: N802
        return _answer(context, self._metadata, request)

    def _resolve(self, spec) -> Servable:
        version = spec.version.value if spec.HasField("version") else None
        return self._manager.resolve(spec.name, version, spec.version_label or None)

    def _predict(self, request: predict_pb2.PredictRequest) -> predict_pb2.PredictResponse:
        servable = self._resolve(request.model_spec)
        signature = request.model_spec.signature_name
        try:
            inputs = {name: tf.make_ndarray(proto) for name, proto in request.inputs.items()}
        except (TypeError, ValueError) as error:
            raise invalid_argument(f"Malformed input tensor: {error}") from error
        outputs = self._service.predict(servable, signature, inputs, request.output_filter)
        response = predict_pb2.PredictResponse()
        response.model_spec.CopyFrom(model_spec(servable, signature or DEFAULT_SIGNATURE))
        for name, value in outputs.items():
            response.outputs[name].CopyFrom(tf.make_tensor_proto(value))
        return response

    def _classify(self, request: classification_pb2.ClassificationRequest):
        servable = self._resolve(request.model_spec)
        signature = request.model_spec.signature_name
        results = self._service.classify(servable, signature, _serialized_examples(request.input))
        response = classification_pb2.ClassificationResponse()
        response.model_spec.CopyFrom(model_spec(servable, signature or DEFAULT_SIGNATURE))
        for classes in results:
            entry = response.result.classifications.add()
            for label, score in classes:
                entry.classes.add(label=label, score=score)
        return response

    def _regress(self, request: regression_pb2.RegressionRequest):
        servable = self._resolve(request.model_spec)
        signature = request.model_spec.signature_name
        values = self._service.regress(servable, signature, _serialized_examples(request.input))
        response = regression_pb2.RegressionResponse()
        response.model_spec.CopyFrom(model_spec(servable, signature or DEFAULT_SIGNATURE))
        for value in values:
            response.result.regressions.add(value=value)
        return response

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


def _serialized_examples(input_proto) -> list[bytes]:
    """Examples as the signature's string input; a context is merged into every example."""
    kind = input_proto.WhichOneof("kind")
    if kind == "example_list":
        return [example.SerializeToString() for example in input_proto.example_list.examples]
    if kind == "example_list_with_context":
        with_context = input_proto.example_list_with_context
        context = with_context.context.SerializeToString()
        return [context + example.SerializeToString() for example in with_context.examples]
    raise invalid_argument("Input is empty.")


def start_grpc_server(host: str, port: int, manager: ModelManager, service: InferenceService,
                      max_workers: int) -> grpc.Server:
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="grpc"))
    prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(PredictionServicer(manager, service), server)
    model_service_pb2_grpc.add_ModelServiceServicer_to_server(ModelServicer(manager), server)
    if server.add_insecure_port(f"{host}:{port}") == 0:
        raise OSError(f"cannot bind gRPC port {host}:{port}")
    server.start()
    return server
