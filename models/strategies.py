"""Distribution strategies for the Trainer; models are built under `strategy.scope()`."""
from __future__ import annotations

import tensorflow as tf

STRATEGIES = ("default", "mirrored", "multi_worker_mirrored", "tpu")


class StrategyError(RuntimeError):
    """The requested strategy cannot run on this machine."""


def make_strategy(name: str = "default", tpu: str | None = None) -> tf.distribute.Strategy:
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        return tf.distribute.MirroredStrategy()
    if name == "multi_worker_mirrored":
        return tf.distribute.MultiWorkerMirroredStrategy()
    if name == "tpu":
        return _tpu_strategy(tpu)
    raise StrategyError(f"unknown strategy {name!r}; choose one of {', '.join(STRATEGIES)}")


def _tpu_strategy(address: str | None) -> tf.distribute.Strategy:
    """Connects to a TPU or fails at once with what to do (never hangs)."""
    try:
        resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu=address or "")
    except (ValueError, RuntimeError) as e:
        raise StrategyError(f"--strategy tpu: no TPU found ({e}); on Cloud TPU VMs pass --tpu local, "
                            "elsewhere --tpu grpc://HOST:8470, or choose another --strategy") from e
    tf.config.experimental_connect_to_cluster(resolver)
    tf.tpu.experimental.initialize_tpu_system(resolver)
    return tf.distribute.TPUStrategy(resolver)
