"""Running a Predict request against a servable, with TF Serving's checks and error codes."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import grpc
import numpy as np
import tensorflow as tf

from fmtune.serving.models import ServingError, Signature

DEFAULT_SIGNATURE = "serving_default"


def check_inputs(specs: Mapping[str, tf.TensorSpec], inputs: Mapping[str, np.ndarray]) -> None:
    if set(inputs) != set(specs):
        extra, missing = sorted(set(inputs) - set(specs)), sorted(set(specs) - set(inputs))
        raise ServingError(
            grpc.StatusCode.INVALID_ARGUMENT,
            f"input size does not match signature: {len(inputs)}!={len(specs)} "
            f"len({sorted(inputs)}) != len({sorted(specs)}). Sent extra: {extra}. "
            f"Missing but required: {missing}.",
        )
    for index, (name, spec) in enumerate(sorted(specs.items())):
        array = inputs[name]
        if array.dtype != spec.dtype.as_numpy_dtype:
            raise ServingError(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"Expects arg[{index}] ('{name}') to be {spec.dtype.name} but "
                f"{tf.as_dtype(array.dtype).name} is provided",
            )
        if not spec.shape.is_compatible_with(array.shape):
            raise ServingError(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"input '{name}' has shape {list(array.shape)}, incompatible with the "
                f"signature's {spec.shape.as_list()}",
            )
        if array.ndim and array.shape[0] == 0:
            raise ServingError(grpc.StatusCode.INVALID_ARGUMENT, f"input '{name}' is an empty batch")


def check(signature: Signature, inputs: Mapping[str, np.ndarray], output_filter: Sequence[str] = ()) -> None:
    """Everything about a request that can be wrong before the model runs, as TF Serving words it."""
    check_inputs(signature.inputs, inputs)
    unknown = sorted(set(output_filter) - set(signature.outputs))
    if unknown:
        raise ServingError(grpc.StatusCode.INVALID_ARGUMENT, f"output tensor alias not found in signature: {unknown}")


def execute(
    signature: Signature, inputs: Mapping[str, np.ndarray], output_filter: Sequence[str] = ()
) -> dict[str, np.ndarray]:
    """Run checked inputs through the model."""
    try:
        outputs = signature.fn(**{name: tf.constant(value) for name, value in inputs.items()})
    except (tf.errors.InvalidArgumentError, ValueError, TypeError) as exc:
        raise ServingError(grpc.StatusCode.INVALID_ARGUMENT, str(exc).splitlines()[0]) from None
    return {name: outputs[name].numpy() for name in (output_filter or signature.outputs)}


def json_to_array(value: Any, spec: tf.TensorSpec, name: str) -> np.ndarray:
    """A JSON value as an array of the input's dtype, rejecting ragged lists and lossy casts."""
    try:
        array = np.asarray(value)
    except ValueError:
        raise ServingError(grpc.StatusCode.INVALID_ARGUMENT, f"input '{name}': ragged nested lists") from None
    target = np.dtype(spec.dtype.as_numpy_dtype)
    if array.dtype == object or array.dtype.kind in "USV":
        raise ServingError(
            grpc.StatusCode.INVALID_ARGUMENT, f"input '{name}': expected a nested list of numbers of equal lengths"
        )
    if target.kind in "iu":
        if array.dtype.kind == "f" and not np.all(np.isfinite(array) & (array == np.round(array))):
            raise ServingError(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"input '{name}' expects {spec.dtype.name} values; got non-integer numbers",
            )
        info = np.iinfo(target)
        if array.size and (array.min() < info.min or array.max() > info.max):
            raise ServingError(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"input '{name}': values out of range for {spec.dtype.name} [{info.min}, {info.max}]",
            )
    return array.astype(target)
