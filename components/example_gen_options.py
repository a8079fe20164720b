"""Options of our ExampleGens, carried in ExampleGen's `custom_config` proto as a Struct.

ExampleGen's component spec only has `custom_config` (a CustomConfig wrapping an
Any) for executor options; a Struct keeps them plain JSON on both sides.
"""
from __future__ import annotations

from typing import Any, Mapping

from google.protobuf import json_format, struct_pb2
from tfx.proto import example_gen_pb2

from specs.fingerprint import code_fingerprint


def pack_options(options: Mapping[str, Any], executor_module: str) -> example_gen_pb2.CustomConfig:
    """Packs `options`, plus the fingerprint of the executor's code so cached examples go stale with it."""
    struct = struct_pb2.Struct()
    struct.update({**options, "code_version": code_fingerprint(executor_module)})
    custom_config = example_gen_pb2.CustomConfig()
    custom_config.custom_config.Pack(struct)
    return custom_config


def unpack_options(exec_properties: Mapping[str, Any]) -> dict[str, Any]:
    """The options `pack_options` put into the component's custom_config."""
    packed = example_gen_pb2.CustomConfig()
    json_format.Parse(exec_properties.get("custom_config") or "{}", packed)
    struct = struct_pb2.Struct()
    if packed.HasField("custom_config"):
        packed.custom_config.Unpack(struct)
    return json_format.MessageToDict(struct)
