"""Checking decoded inputs against a loaded signature and running it, refusing as TF Serving words it."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence

import numpy as np
import tensorflow as tf

from fmtune.serving.decode import check_names
from fmtune.serving.errors import invalid
from fmtune.serving.models import Signature

log = logging.getLogger("fmtune")
# Lines of a TensorFlow error that locate it in the graph or in source files, not what was wrong.
_LOCATION = ("Graph execution error", "Detected at node", "File ")


def check_inputs(specs: Mapping[str, tf.TensorSpec], inputs: Mapping[str, np.ndarray]) -> None:
    check_names(specs, inputs)
    for index, (name, spec) in enumerate(sorted(specs.items())):
        array = inputs[name]
        if array.dtype != spec.dtype.as_numpy_dtype:
            raise invalid(
                f"Expects arg[{index}] ('{name}') to be {spec.dtype.name} but "
                f"{tf.as_dtype(array.dtype).name} is provided"
            )
        if not spec.shape.is_compatible_with(array.shape):
            raise invalid(
                f"input '{name}' has shape {list(array.shape)}, incompatible with the signature's "
                f"{spec.shape.as_list()}"
            )
        if array.ndim and array.shape[0] == 0:
            raise invalid(f"input '{name}' is an empty batch")


def check(signature: Signature, inputs: Mapping[str, np.ndarray], output_filter: Sequence[str] = ()) -> None:
    """Everything about a request that can be wrong before the model runs, as TF Serving words it."""
    check_inputs(signature.inputs, inputs)
    unknown = sorted(set(output_filter) - set(signature.outputs))
    if unknown:
        raise invalid(f"output tensor alias not found in signature: {unknown}")


def model_message(exc: Exception) -> str:
    """What the model said was wrong with an input, without graph locations or file paths."""
    text = getattr(exc, "message", None) or str(exc)
    lines = [line.strip() for line in text.splitlines()]
    said = [line for line in lines if line and not line.startswith(_LOCATION)]
    return f"the model refused the input: {said[0][:300]}" if said else "the model refused the input"


def execute(
    signature: Signature, inputs: Mapping[str, np.ndarray], output_filter: Sequence[str] = ()
) -> dict[str, np.ndarray]:
    """Run checked inputs through the model."""
    try:
        outputs = signature.fn(**{name: tf.constant(value) for name, value in inputs.items()})
    except (tf.errors.InvalidArgumentError, ValueError, TypeError) as exc:
        log.warning("predict refused by the model: %s", exc)
        raise invalid(model_message(exc)) from None
    return {name: outputs[name].numpy() for name in (output_filter or signature.outputs)}
