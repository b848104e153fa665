"""The serving data plane on its own, with no gRPC or HTTP in between: each refusal raised as its
typed ``Kind`` with TF Serving's wording, in the order the APIs rely on, and the answers as plain
values."""

from __future__ import annotations

import ast
import functools
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tensorflow as tf

from fmtune.serving import dataplane, decode, models
from fmtune.serving.dataplane import DataPlane, Target
from fmtune.serving.errors import Kind, ServingError
from fmtune.serving.models import AVAILABLE, ModelManager, Servable, Signature
from fmtune.serving.runner import Runner

SPECS = {"x": tf.TensorSpec([None, 3], tf.float32)}


def double(x: tf.Tensor) -> dict[str, tf.Tensor]:
    tf.debugging.assert_less(x, 1000.0, message="value too large")
    return {"double": x * 2}


def fake_load(servable: Servable) -> None:
    """Stands in for reading a SavedModel: one signature, ``serving_default``."""
    servable.signature_defs = {"serving_default": "its SignatureDef"}
    servable.signatures = {"serving_default": Signature(double, SPECS, ("double",))}


@pytest.fixture
def plane(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[DataPlane]:
    """Version 1 of ``fmtune``, AVAILABLE, loaded the way the manager loads it."""
    monkeypatch.setattr(models, "load_servable", fake_load)
    (tmp_path / "1").mkdir()
    (tmp_path / "1" / "saved_model.pb").write_bytes(b"")
    manager = ModelManager(tmp_path, "fmtune")
    manager.poll_once()
    manager.poll_once()
    runner = Runner()
    yield DataPlane(manager, runner)
    runner.stop()


def rows(values: Any) -> functools.partial[dict[str, np.ndarray]]:
    return functools.partial(decode.rows, instances=values, bools=False)


def refusal(call: Any, *args: Any) -> tuple[Kind, str]:
    with pytest.raises(ServingError) as info:
        call(*args)
    return info.value.kind, info.value.message


def never_decoded(specs: Any) -> dict[str, np.ndarray]:
    raise AssertionError("the inputs were decoded before the request was known to be answerable")


def test_a_predict_runs_on_the_default_signature_of_the_latest_version(plane: DataPlane) -> None:
    prediction = plane.predict(Target("fmtune"), "", rows([[1.0, 2.0, 3.0]]))
    assert (prediction.version, prediction.signature) == (1, "serving_default")
    np.testing.assert_array_equal(prediction.outputs.result(10)["double"], [[2.0, 4.0, 6.0]])
    named = plane.predict(Target("fmtune", 1), "serving_default", rows([[0.0, 0.0, 1.0]]), ["double"])
    np.testing.assert_array_equal(named.outputs.result(10)["double"], [[0.0, 0.0, 2.0]])


@pytest.mark.parametrize(
    ("target", "kind", "message"),
    [
        (Target("other"), Kind.NOT_FOUND, "Servable not found for request: Latest(other)"),
        (Target("fmtune", 2), Kind.NOT_FOUND, "Servable not found for request: Specific(fmtune, 2)"),
        (Target("fmtune", None, "stable"), Kind.INVALID, "Unrecognized servable version label: stable"),
        (Target("other", None, "stable"), Kind.NOT_FOUND, "Servable not found for request: Latest(other)"),
    ],
)
def test_a_target_that_is_not_served_is_refused_before_its_inputs_are_decoded(
    plane: DataPlane, target: Target, kind: Kind, message: str
) -> None:
    assert refusal(plane.predict, target, "", never_decoded) == (kind, message)
    assert refusal(plane.metadata, target) == (kind, message)


def test_a_signature_the_model_does_not_have_is_a_failed_precondition(plane: DataPlane) -> None:
    assert refusal(plane.predict, Target("fmtune"), "classify", never_decoded) == (
        Kind.FAILED_PRECONDITION,
        'Serving signature name: "classify" not found in signature def',
    )


def test_inputs_that_do_not_fit_the_signature_are_invalid(plane: DataPlane) -> None:
    assert refusal(plane.predict, Target("fmtune"), "", rows([[1.0, 2.0]])) == (
        Kind.INVALID,
        "input 'x' has shape [1, 2], incompatible with the signature's [None, 3]",
    )
    tensors = functools.partial(decode.tensors, protos={"y": tf.make_tensor_proto(np.zeros((1, 3), np.float32))})
    kind, message = refusal(plane.predict, Target("fmtune"), "", tensors)
    assert kind is Kind.INVALID and message.startswith("input size does not match signature")
    assert refusal(plane.predict, Target("fmtune"), "", rows([[1.0, 2.0, 3.0]]), ["nope"]) == (
        Kind.INVALID,
        "output tensor alias not found in signature: ['nope']",
    )


def test_inputs_over_the_size_limit_are_too_large(plane: DataPlane, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(decode, "MAX_MESSAGE_BYTES", 20)
    assert refusal(plane.predict, Target("fmtune"), "", rows([[1.0, 2.0, 3.0]] * 2)) == (
        Kind.TOO_LARGE,
        "input 'x' of shape [2, 3] holds 6 float32 values, over the 20 byte limit",
    )


def test_one_value_fills_a_tensor_only_up_to_the_fill_limit(plane: DataPlane) -> None:
    """TensorFlow's one-value shorthand: a few bytes on the wire may not become megabytes of batch."""

    def filled(batch: int) -> Any:
        proto = tf.make_tensor_proto(7.0, tf.float32, shape=[batch, 3])
        assert len(proto.float_val) == 1 and proto.ByteSize() < 40
        return functools.partial(decode.tensors, protos={"x": proto})

    assert plane.predict(Target("fmtune"), "", filled(2)).outputs.result(10)["double"].tolist() == [[14.0] * 3] * 2
    most = decode.MAX_FILL_BYTES // 12
    assert filled(most)(SPECS)["x"].shape == (most, 3)
    assert refusal(plane.predict, Target("fmtune"), "", filled(most + 1)) == (
        Kind.TOO_LARGE,
        f"input 'x' of shape [{most + 1}, 3] is filled from one value: {(most + 1) * 12} bytes, over the "
        f"{decode.MAX_FILL_BYTES} byte limit for a filled tensor; send its values",
    )


def test_an_input_the_model_refuses_at_run_time_fails_its_future_as_invalid(plane: DataPlane) -> None:
    prediction = plane.predict(Target("fmtune"), "", rows([[1.0, 2.0, 5000.0]]))
    with pytest.raises(ServingError, match="the model refused the input: value too large") as info:
        prediction.outputs.result(10)
    assert info.value.kind is Kind.INVALID


def test_status_and_metadata_are_plain_values(plane: DataPlane) -> None:
    (status,) = plane.status(Target("fmtune"))
    assert (status.version, status.state, status.state_name, status.error) == (1, AVAILABLE, "AVAILABLE", "")
    assert plane.status(Target("fmtune", 1, "ignored")) == [status]
    metadata = plane.metadata(Target("fmtune", 1))
    assert (metadata.name, metadata.version) == ("fmtune", 1)
    assert dict(metadata.signature_defs) == {"serving_default": "its SignatureDef"}


@pytest.mark.parametrize(
    ("target", "message"),
    [
        (Target("other"), "Could not find any versions of model other"),
        (Target("fmtune", 9), "Could not find version 9 of model fmtune"),
    ],
)
def test_status_of_what_is_not_known_is_not_found(plane: DataPlane, target: Target, message: str) -> None:
    assert refusal(plane.status, target) == (Kind.NOT_FOUND, message)


def test_warmup_submits_to_a_servable_that_cannot_be_resolved_yet(plane: DataPlane) -> None:
    servable = Servable(7, Path("."), state=models.LOADING)
    fake_load(servable)
    prediction = dataplane.submit(plane.runner, servable, "", rows([[1.0, 1.0, 1.0]]))
    assert prediction.version == 7 and prediction.outputs.result(10)["double"].tolist() == [[2.0, 2.0, 2.0]]


def test_every_kind_has_a_status_at_each_edge() -> None:
    from http import HTTPStatus

    import grpc

    from fmtune.serving import grpc_api, rest_api

    assert grpc_api.STATUS == {
        Kind.INVALID: grpc.StatusCode.INVALID_ARGUMENT,
        Kind.FAILED_PRECONDITION: grpc.StatusCode.FAILED_PRECONDITION,
        Kind.NOT_FOUND: grpc.StatusCode.NOT_FOUND,
        Kind.TOO_LARGE: grpc.StatusCode.RESOURCE_EXHAUSTED,
        Kind.UNAVAILABLE: grpc.StatusCode.UNAVAILABLE,  # TF Serving's answer when its batch queue is full
    }
    assert rest_api.HTTP_STATUS == {
        Kind.INVALID: HTTPStatus.BAD_REQUEST,
        Kind.FAILED_PRECONDITION: HTTPStatus.BAD_REQUEST,
        Kind.NOT_FOUND: HTTPStatus.NOT_FOUND,
        Kind.TOO_LARGE: HTTPStatus.REQUEST_ENTITY_TOO_LARGE,  # not TF Serving's 429: too large, not too frequent
        Kind.UNAVAILABLE: HTTPStatus.SERVICE_UNAVAILABLE,  # as TF Serving maps UNAVAILABLE
    }


@pytest.mark.parametrize(
    "module", ["dataplane", "errors", "limits", "models", "runner", "decode", "signatures", "warmup"]
)
def test_the_server_core_names_no_protocol(module: str) -> None:
    source = Path(models.__file__).with_name(f"{module}.py").read_text()
    imported = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            imported |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            imported.add(node.module)
    assert not {name for name in imported if name.split(".")[0] == "grpc" or "grpc_api" in name or "rest_api" in name}
