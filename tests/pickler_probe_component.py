"""A TFX component that records how Beam pickles in a pipeline created inside a run.

Its own module: TFX reads a component function's annotations as types, and the test modules
use `from __future__ import annotations`, which turns them into strings.
"""
import base64

import apache_beam as beam
from apache_beam.internal import pickler
from tfx.dsl.component.experimental.annotations import Parameter
from tfx.dsl.component.experimental.decorators import component


@component
def RecordBeamsPickler(record: Parameter[str]) -> None:  # noqa: N802 - TFX names components like classes
    """Creates a Beam pipeline, as a Beam component's executor does, and writes the pickler's
    module name and the first bytes of a function it pickles (compressed: b'x' zlib, b'BZh' bz2)."""
    beam.Pipeline()
    pickled = base64.b64decode(pickler.dumps(lambda element: element + 1))
    with open(record, "w") as out:
        out.write(f"{pickler.desired_pickle_lib.__name__}\n{pickled[:3]!r}")
