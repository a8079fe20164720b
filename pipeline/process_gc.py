"""Garbage-collector settings for a process that imports TensorFlow, TFX and Beam.

Importing TFX's local runner creates about 640,000 long-lived objects (functions,
classes, protos of ~8,000 modules) and almost no garbage (about 5,000 cyclic objects).
The collector still runs full passes over all of them while they are created: 3-5 s of a
17-25 s import here (measured with gc.callbacks). At exit, the interpreter's own final
passes over the same objects take another 5-10 s. Neither changes what the run computes:
the collector only frees reference cycles, and objects alive at exit are never
guaranteed their finalizers (atexit handlers, which close what TFX opened, still run).
"""
from __future__ import annotations

import contextlib
import gc
from typing import Iterator


@contextlib.contextmanager
def imports_without_collection() -> Iterator[None]:
    """No collection while the block imports; then its objects move to the collector's permanent
    generation (gc.freeze), so later passes during the run skip them. The few cyclic objects the
    imports leave stay with them (no final pass: it would cost ~1 s to free a few MB)."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        gc.freeze()
        if was_enabled:
            gc.enable()


def skip_collection_at_exit() -> None:
    """Call right before the process exits: the interpreter's final passes then skip every object."""
    gc.freeze()
