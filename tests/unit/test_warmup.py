"""Warmup records: written by the export in TF Serving's format, replayed by the built-in server
before a version is AVAILABLE, and a version whose warmup fails is not served."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tensorflow as tf
from tensorflow_serving.apis import prediction_log_pb2

from fmtune import export
from fmtune.config import SearchConfig
from fmtune.models.plugins import build_from_values
from fmtune.serving import warmup
from fmtune.serving.models import AVAILABLE, END, LOADING, ModelManager, Servable
from fmtune.serving.runner import Runner

from ..integration.helpers import TINY_MLP, tiny_card


@pytest.fixture(scope="module")
def model() -> Any:
    return build_from_values(SearchConfig(), TINY_MLP, (28, 28), 10)[0]


@pytest.fixture
def runner() -> Any:
    running = Runner()
    yield running
    running.stop()


def test_export_writes_tf_serving_warmup_records_from_the_given_images(model: Any, tmp_path: Path) -> None:
    images = np.random.default_rng(3).integers(0, 256, (20, 28, 28), dtype=np.uint8)
    _, path = export.publish(model, tmp_path, tiny_card(), warmup_images=images)
    records = path / "assets.extra" / "tf_serving_warmup_requests"
    logs = [prediction_log_pb2.PredictionLog.FromString(r.numpy()) for r in tf.data.TFRecordDataset(str(records))]
    assert [log.WhichOneof("log_type") for log in logs] == ["predict_log", "predict_log"]
    sent = [tf.make_ndarray(log.predict_log.request.inputs["image"]) for log in logs]
    assert np.array_equal(sent[0], images[:1]) and np.array_equal(sent[1], images[: export.WARMUP_IMAGES])
    assert {log.predict_log.request.model_spec.signature_name for log in logs} == {"serving_default"}


def test_the_server_replays_them_before_the_version_is_available(model: Any, tmp_path: Path, runner: Runner) -> None:
    export.publish(model, tmp_path, tiny_card())
    seen: list[tuple[int, int]] = []

    def warm(servable: Servable) -> None:
        seen.append((servable.state, warmup.replay(servable, runner)))

    manager = ModelManager(tmp_path / "fmtune", "fmtune", warmup=warm)
    manager.poll_once()  # a version is loaded once two polls have seen it unchanged
    manager.poll_once()
    assert seen == [(LOADING, 2)]  # both records, replayed while the version is LOADING
    assert [s.state for s in manager.statuses("fmtune", None)] == [AVAILABLE]


def test_a_version_whose_warmup_fails_is_not_served(model: Any, tmp_path: Path, runner: Runner) -> None:
    export.publish(model, tmp_path, tiny_card())
    manager = ModelManager(tmp_path / "fmtune", "fmtune", warmup=lambda s: warmup.replay(s, runner))
    manager.poll_once()
    manager.poll_once()
    _, second = export.publish(model, tmp_path, tiny_card())
    warmup.path_in(second).write_bytes(b"not a TFRecord file")
    manager.poll_once()
    manager.poll_once()
    states = {s.version: (s.state, s.error) for s in manager.statuses("fmtune", None)}
    assert states == {1: (AVAILABLE, ""), 2: (END, "version 2 could not be loaded (see the server log)")}
    assert manager.latest().version == 1  # type: ignore[union-attr]
