"""Transform whose analysers give the same numbers on every run of the same data.

TFX's Transform leaves the batch size of tf.Examples to Beam's BatchElements, which sizes
batches by how long the previous ones took (1, 2, 4, ... then whatever the clock says).
The analysers (mean and variance for `scale_to_z_score`, ...) accumulate batch by batch in
float32, and float addition is not associative: with batch edges that move with the
machine's load, two runs of the same data gave z-scores one or two float32 ulps apart, and
the seeded Trainer, fed those, a slightly different model (another operating threshold,
another test AUC in the fourth decimal). With a fixed batch size the edges, and so the sums,
are the same on every run.
"""
from __future__ import annotations

import contextlib
from typing import Any, Iterator, Optional

from tensorflow_metadata.proto.v0 import schema_pb2
from tfx import types
from tfx.components import Transform as TfxTransform
from tfx.components.transform import executor as transform_executor
from tfx.dsl.components.base import executor_spec

# Rows per batch where TFX leaves it to Beam. Beam's adaptive sizing tops out at 1,000 rows
# for tf.Examples too (tfx_bsl's cap), so this keeps its throughput from the first batch on.
FIXED_BATCH_SIZE = 1000


class FixedBatchTransformProcessor(transform_executor.TransformProcessor):
    """TFX's TransformProcessor with a fixed batch size where TFX leaves it to Beam."""

    def _GetDesiredBatchSize(self, data_format: int, schema: schema_pb2.Schema) -> Optional[int]:
        chosen = super()._GetDesiredBatchSize(data_format, schema)
        return FIXED_BATCH_SIZE if chosen is None else chosen


@contextlib.contextmanager
def _processor(processor: type) -> Iterator[None]:
    """TFX's Executor.Do instantiates the module's TransformProcessor by name; no argument
    chooses another, so it is swapped for the duration of one Do (components run one at a
    time in a process: LocalDagRunner runs them in turn, a cluster each in its own pod)."""
    stock = transform_executor.TransformProcessor
    transform_executor.TransformProcessor = processor
    try:
        yield
    finally:
        transform_executor.TransformProcessor = stock


class Executor(transform_executor.Executor):
    """TFX's Transform executor, its Beam work batched in fixed sizes."""

    def Do(self, input_dict: dict[str, list[types.Artifact]], output_dict: dict[str, list[types.Artifact]],
           exec_properties: dict[str, Any]) -> None:
        with _processor(FixedBatchTransformProcessor):
            super().Do(input_dict, output_dict, exec_properties)


class Transform(TfxTransform):
    """TFX's Transform with the executor above."""

    EXECUTOR_SPEC = executor_spec.BeamExecutorSpec(Executor)
