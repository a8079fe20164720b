"""Status and metadata as TF Serving's protos, built once for both transports.

REST renders these same messages to JSON (as TF Serving does), so the two APIs
cannot drift apart.
"""
from __future__ import annotations

from typing import Iterable

from google.protobuf import json_format
from tensorflow_serving.apis import get_model_metadata_pb2, get_model_status_pb2, model_pb2

from serving.manager import VersionStatus
from serving.servable import Servable


def model_status_response(statuses: Iterable[VersionStatus]) -> get_model_status_pb2.GetModelStatusResponse:
    response = get_model_status_pb2.GetModelStatusResponse()
    for status in statuses:
        entry = response.model_version_status.add()
        entry.version = status.version
        entry.state = get_model_status_pb2.ModelVersionStatus.State.Value(status.state)
        entry.status.error_code = status.error_code.value if status.error_code else 0
        entry.status.error_message = status.error_message
    return response


def model_spec(servable: Servable, signature_name: str = "") -> model_pb2.ModelSpec:
    spec = model_pb2.ModelSpec(name=servable.name, signature_name=signature_name)
    spec.version.value = servable.version
    return spec


def signature_def_map(servable: Servable) -> get_model_metadata_pb2.SignatureDefMap:
    signatures = get_model_metadata_pb2.SignatureDefMap()
    for key, signature in servable.signature_defs.items():
        signatures.signature_def[key].CopyFrom(signature)
    return signatures


def to_json_dict(message) -> dict:
    """TF Serving's JSON rendering: proto field names, default values included."""
    return json_format.MessageToDict(message, preserving_proto_field_name=True, including_default_value_fields=True)
