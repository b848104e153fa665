"""The built-in server in this process on loopback, and tiny real models to serve: cheaper than a
subprocess for tests that need a real gRPC/REST endpoint but not a separate process."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .integration.helpers import TINY_MLP, free_ports, tiny_card


@dataclass
class Loopback:
    server: Any  # fmtune.serving.server.BuiltinServer
    repo: Path
    grpc_port: int
    rest_port: int

    @property
    def grpc_target(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    @property
    def rest_target(self) -> str:
        return f"http://127.0.0.1:{self.rest_port}"

    def states(self) -> dict[int, str]:
        """Version -> TF Serving state, as a client sees it over gRPC ({} if none is known)."""
        from fmtune.client import FmtuneClient, ModelNotFoundError

        with FmtuneClient(self.grpc_target, retries=0) as client:
            try:
                return {s.version: s.state for s in client.status()}
            except ModelNotFoundError:
                return {}

    def wait_for(self, version: int, state: str = "AVAILABLE", timeout: float = 60) -> dict[int, str]:
        deadline = time.monotonic() + timeout
        while (states := self.states()).get(version) != state:
            assert time.monotonic() < deadline, f"version {version} not {state} after {timeout}s: {states}"
            time.sleep(0.05)
        return states


@contextmanager
def builtin_server(repo: Path, poll_seconds: float = 0.1) -> Iterator[Loopback]:
    """The built-in server (gRPC and REST, warmup included) serving ``repo/fmtune``."""
    from fmtune.serving.server import BuiltinServer, ServeOptions

    grpc_port, rest_port = free_ports(2)
    opts = ServeOptions(model_repo=repo, grpc_port=grpc_port, rest_port=rest_port, poll_seconds=poll_seconds)
    server = BuiltinServer(opts)
    try:
        yield Loopback(server, repo, grpc_port, rest_port)
    finally:
        server.close()


def tiny_model(seed: int) -> Any:
    """An untrained tiny MLP; different seeds give different weights, hence different predictions."""
    import keras

    from fmtune.config import SearchConfig
    from fmtune.models.plugins import build_from_values

    keras.utils.set_random_seed(seed)
    return build_from_values(SearchConfig(), TINY_MLP, (28, 28), 10)[0]


def export_version(model: Any, repo: Path, accuracy: float | None = None) -> Path:
    """``model`` published into ``repo/fmtune`` as its next version (SavedModel, card, warmup)."""
    from fmtune import export

    card = tiny_card()
    if accuracy is not None:
        card = card.model_copy(update={"test_metrics": {"accuracy": accuracy}})
    return export.publish(model, repo, card)[1]


def probabilities(version_dir: Path, images: np.ndarray) -> np.ndarray:
    """What the exported SavedModel itself answers, in this process (as ``fmtune deploy`` computes it)."""
    import tensorflow as tf

    from fmtune import export

    fn = tf.saved_model.load(str(version_dir)).signatures[export.SIGNATURE]
    return np.asarray(fn(image=tf.constant(images))["probabilities"].numpy())


def mixed_images(count: int = 16, seed: int = 0) -> np.ndarray:
    """Random pixels, as ``fmtune deploy`` smoke-tests with: about half have a light border."""
    return np.random.default_rng(seed).integers(0, 256, (count, 28, 28), np.uint8)
