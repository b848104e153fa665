"""The built-in server's predict runner: requests that queue together run as one batch, and one
bad request never costs the others their answers."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tensorflow as tf

from fmtune.serving.errors import Kind, ServingError
from fmtune.serving.models import AVAILABLE, Servable, Signature
from fmtune.serving.runner import Runner


class Model:
    """A signature whose calls are recorded and can be held, so tests decide what queues."""

    def __init__(self, body: Callable[[tf.Tensor], dict[str, tf.Tensor]] | None = None):
        self.calls: list[int] = []
        self.release = threading.Event()
        self.release.set()
        self.started = threading.Event()
        self.body = body or (lambda x: {"double": x * 2, "total": tf.reduce_sum(x, axis=1)})

    def __call__(self, x: tf.Tensor) -> dict[str, tf.Tensor]:
        self.calls.append(int(x.shape[0]))
        self.started.set()
        self.release.wait(10)
        return self.body(x)

    def servable(self, outputs: tuple[str, ...] = ("double", "total"), batched: bool = True) -> Servable:
        specs = {"x": tf.TensorSpec([None, 3], tf.float32)}
        signature = Signature(self, specs, outputs, batched)
        return Servable(1, Path("."), state=AVAILABLE, signatures={"serving_default": signature})


@pytest.fixture
def runner() -> Iterator[Runner]:
    runner = Runner()
    yield runner
    runner.stop()


def rows(n: int, start: float = 0) -> dict[str, np.ndarray]:
    return {"x": np.arange(start, start + 3 * n, dtype=np.float32).reshape(n, 3)}


def queue_behind_a_held_request(runner: Runner, model: Model, servable: Servable, jobs: list[Any]) -> list[Any]:
    model.release.clear()
    first = runner.submit(servable, "", rows(1), ())
    assert model.started.wait(10)
    futures = [runner.submit(servable, "", inputs, ()) for inputs in jobs]
    model.release.set()
    first.result(10)
    return futures


def test_requests_queued_while_busy_run_as_one_batch(runner: Runner) -> None:
    model = Model()
    servable = model.servable()
    futures = queue_behind_a_held_request(runner, model, servable, [rows(2), rows(3, 100), rows(1, 200)])
    answers = [f.result(10) for f in futures]
    assert model.calls == [1, 6]
    for inputs, answer in zip([rows(2), rows(3, 100), rows(1, 200)], answers, strict=True):
        assert np.array_equal(answer["double"], inputs["x"] * 2)
        assert np.array_equal(answer["total"], inputs["x"].sum(axis=1))


def test_a_lone_request_runs_alone(runner: Runner) -> None:
    model = Model()
    answer = runner.submit(model.servable(), "serving_default", rows(4), ()).result(10)
    assert model.calls == [4] and answer["double"].shape == (4, 3)


def test_a_batch_never_exceeds_its_row_limit() -> None:
    runner = Runner(max_rows=4)
    try:
        model = Model()
        futures = queue_behind_a_held_request(runner, model, model.servable(), [rows(3), rows(3), rows(1)])
        [f.result(10) for f in futures]
        assert model.calls == [1, 4, 3]  # the second request waits; the third joins the first
    finally:
        runner.stop()


def test_output_filters_and_models_are_not_mixed(runner: Runner) -> None:
    model, other = Model(), Model()
    servable = model.servable()
    model.release.clear()
    first = runner.submit(servable, "", rows(1), ())
    assert model.started.wait(10)
    filtered = runner.submit(servable, "", rows(2), ["total"])
    elsewhere = runner.submit(other.servable(), "", rows(2), ())
    plain = runner.submit(servable, "", rows(2), ())
    model.release.set()
    assert set(filtered.result(10)) == {"total"} and set(plain.result(10)) == {"double", "total"}
    elsewhere.result(10)
    assert first.result(10) and model.calls == [1, 2, 2] and other.calls == [2]


def test_a_bad_request_is_refused_before_it_can_join_a_batch(runner: Runner) -> None:
    servable = Model().servable()
    with pytest.raises(ServingError) as wrong_dtype:
        runner.submit(servable, "", {"x": np.zeros((2, 3), np.int32)}, ())
    assert wrong_dtype.value.kind is Kind.INVALID
    with pytest.raises(ServingError, match="output tensor alias not found"):
        runner.submit(servable, "", rows(1), ["nope"])
    with pytest.raises(ServingError, match="not found in signature def"):
        runner.submit(servable, "other", rows(1), ())


def test_when_a_batch_fails_only_the_culprit_gets_the_error(runner: Runner) -> None:
    def body(x: tf.Tensor) -> dict[str, tf.Tensor]:
        tf.debugging.assert_less(x, 1000.0, message="value too large")
        return {"double": x * 2, "total": tf.reduce_sum(x, axis=1)}

    model = Model(body)
    good, bad = rows(2), rows(1, 5000)
    futures = queue_behind_a_held_request(runner, model, model.servable(), [good, bad, good])
    assert np.array_equal(futures[0].result(10)["double"], good["x"] * 2)
    with pytest.raises(ServingError, match="value too large") as failed:
        futures[1].result(10)
    assert failed.value.kind is Kind.INVALID
    assert np.array_equal(futures[2].result(10)["double"], good["x"] * 2)
    assert model.calls == [1, 5, 2, 1, 2]  # the batch, then each request on its own
    assert runner.submit(model.servable(), "", good, ()).result(10)["double"].shape == (2, 3)  # and the runner goes on


def test_outputs_that_are_not_one_row_per_input_are_not_split(runner: Runner) -> None:
    model = Model(lambda x: {"double": x * 2, "total": tf.reduce_sum(x)})
    futures = queue_behind_a_held_request(runner, model, model.servable(), [rows(2), rows(3, 10)])
    assert futures[0].result(10)["total"] == rows(2)["x"].sum()
    assert futures[1].result(10)["total"] == rows(3, 10)["x"].sum()
    assert model.calls == [1, 5, 2, 3]


def test_a_signature_without_a_batch_dimension_runs_each_request_alone(runner: Runner) -> None:
    """As ``fmtune_card``: a ``[3]`` output of three one-row requests run together would look like
    one row each, so such a signature is never batched."""
    model = Model(lambda x: {"names": tf.constant(["a", "b", "c"]), "flag": tf.constant(True)})
    servable = model.servable(("flag", "names"), batched=False)
    futures = queue_behind_a_held_request(runner, model, servable, [rows(1), rows(1, 10), rows(1, 20)])
    for future in futures:
        answer = future.result(10)
        assert answer["names"].tolist() == [b"a", b"b", b"c"] and answer["flag"].item() is True
    assert model.calls == [1, 1, 1, 1]


def test_a_signature_is_batched_only_if_every_input_and_output_has_a_batch_dimension() -> None:
    spec = tf.TensorSpec([None, 3], tf.float32, name="x")

    def traced(body: Callable[[tf.Tensor], dict[str, tf.Tensor]]) -> Any:
        return tf.function(body, input_signature=[spec]).get_concrete_function()

    assert Signature.of(traced(lambda x: {"double": x * 2, "total": tf.reduce_sum(x, axis=1)})).batched
    assert not Signature.of(traced(lambda x: {"double": x * 2, "total": tf.reduce_sum(x)})).batched
    assert not Signature.of(traced(lambda x: {"double": x * 2, "names": tf.constant(["a", "b"])})).batched


def test_a_request_larger_than_a_model_call_runs_in_slices_of_bounded_rows() -> None:
    """Activations grow with the rows of a call; a big request never becomes one big call."""
    runner = Runner(max_rows=4)
    try:
        model = Model()
        answer = runner.submit(model.servable(), "", rows(10), ()).result(10)
        assert model.calls == [4, 4, 2]
        assert np.array_equal(answer["double"], rows(10)["x"] * 2)
        assert np.array_equal(answer["total"], rows(10)["x"].sum(axis=1))
    finally:
        runner.stop()


def test_a_request_over_the_row_limit_is_refused_as_tf_serving_words_it() -> None:
    runner = Runner(max_request_rows=5)
    try:
        model = Model()
        with pytest.raises(ServingError) as refused:
            runner.submit(model.servable(), "", rows(6), ())
        assert refused.value.kind is Kind.INVALID
        assert refused.value.message == "Task size 6 is larger than maximum input batch size 5"
        assert runner.submit(model.servable(), "", rows(5), ()).result(10)["double"].shape == (5, 3)
        assert model.calls == [5]
    finally:
        runner.stop()


def test_a_full_queue_refuses_unavailable_until_it_drains() -> None:
    """Inputs waiting or running are bounded in bytes; the refusal is TF Serving's for a full batch queue."""
    one = rows(2)["x"].nbytes
    runner = Runner(max_queued_bytes=3 * one)
    try:
        model = Model()
        servable = model.servable()
        model.release.clear()
        held = [runner.submit(servable, "", rows(2), ()) for _ in range(3)]
        assert model.started.wait(10)
        with pytest.raises(ServingError) as refused:
            runner.submit(servable, "", rows(2), ())
        assert refused.value.kind is Kind.UNAVAILABLE
        assert refused.value.message == "The batch scheduling queue to which this task was submitted is full"
        warmup = runner.submit(servable, "", rows(2), (), bounded=False)  # a version's warmup still runs
        model.release.set()
        for future in [*held, warmup]:
            assert future.result(10)["double"].shape == (2, 3)
        assert runner.submit(servable, "", rows(2), ()).result(10)["double"].shape == (2, 3)  # drained
    finally:
        runner.stop()
