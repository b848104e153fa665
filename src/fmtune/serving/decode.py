"""Request payloads (TensorProto, JSON rows or columns) as numpy arrays, checked against the signature first.

Everything a client can get wrong is refused here, at the boundary, as ``Kind.INVALID``
(``Kind.TOO_LARGE`` for size) with a message naming the problem: the dtype, the rank, every
dimension and the element count are checked from the request's header fields before any array is
made, so a small request that declares a huge shape never allocates it, and one value fills at
most ``MAX_FILL_BYTES``. The data plane calls these with the signature's input specs, once it knows
which signature a request is for.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

from fmtune.serving.errors import Kind, ServingError, invalid
from fmtune.serving.limits import MAX_FILL_BYTES
from fmtune.wire.contract import MAX_MESSAGE_BYTES
from fmtune.wire.tensors import NUMPY, VALUE_FIELDS, dtype_name


def check_names(specs: Mapping[str, Any], names: Iterable[str]) -> None:
    """The request names exactly the signature's inputs (TF Serving's wording)."""
    names = set(names)
    if names != set(specs):
        extra, missing = sorted(names - set(specs)), sorted(set(specs) - names)
        raise invalid(
            f"input size does not match signature: {len(names)}!={len(specs)} "
            f"len({sorted(names)}) != len({sorted(specs)}). Sent extra: {extra}. "
            f"Missing but required: {missing}."
        )


def _check_size(name: str, shape: list[int], dtype: np.dtype[Any]) -> int:
    """The element count, once the shape is known to fit under the message limit."""
    count = math.prod(shape)
    if count * dtype.itemsize > MAX_MESSAGE_BYTES:
        raise ServingError(
            Kind.TOO_LARGE,
            f"input '{name}' of shape {shape} holds {count} {dtype.name} values, over the "
            f"{MAX_MESSAGE_BYTES} byte limit",
        )
    return count


def _check_shape(name: str, shape: list[int], spec: Any) -> None:
    expected = spec.shape
    if expected.rank is not None and len(shape) != expected.rank:
        raise invalid(
            f"input '{name}' has rank {len(shape)} (shape {shape}); the signature expects rank "
            f"{expected.rank} (shape {expected.as_list()})"
        )
    if not expected.is_compatible_with(shape):
        raise invalid(f"input '{name}' has shape {shape}, incompatible with the signature's {expected.as_list()}")


def _in_range(name: str, values: np.ndarray, dtype: np.dtype[Any]) -> None:
    info = np.iinfo(dtype)
    if values.size and (values.min() < info.min or values.max() > info.max):
        raise invalid(f"input '{name}': values out of range for {dtype.name} [{info.min}, {info.max}]")


def tensor(proto: Any, spec: Any, name: str, index: int = 0) -> np.ndarray:
    """A request's TensorProto for input ``name`` (the ``index``-th in sorted order), decoded."""
    expected = spec.dtype.as_datatype_enum
    if proto.dtype != expected:
        raise invalid(
            f"Expects arg[{index}] ('{name}') to be {spec.dtype.name} but {dtype_name(proto.dtype)} is provided"
        )
    if expected not in NUMPY:
        raise invalid(f"input '{name}': dtype {dtype_name(expected)} is not supported by this server")
    dtype = NUMPY[expected]
    if proto.tensor_shape.unknown_rank:
        raise invalid(f"input '{name}' has an unknown rank; every dimension must be given")
    shape = [d.size for d in proto.tensor_shape.dim]
    if any(size < 0 for size in shape):
        raise invalid(f"input '{name}' has shape {shape}; dimensions must be non-negative")
    _check_shape(name, shape, spec)
    count = _check_size(name, shape, dtype)
    if proto.tensor_content:
        if len(proto.tensor_content) != count * dtype.itemsize:
            raise invalid(
                f"input '{name}' has {len(proto.tensor_content)} bytes of tensor_content; shape {shape} of "
                f"{dtype.name} needs {count * dtype.itemsize}"
            )
        return np.frombuffer(proto.tensor_content, dtype=dtype.newbyteorder("<")).astype(dtype).reshape(shape)
    field = VALUE_FIELDS[expected]
    values = getattr(proto, field)
    if len(values) not in (count, 1) or (count == 0 and len(values)):
        raise invalid(f"input '{name}' holds {len(values)} values in {field}; shape {shape} needs {count}")
    if dtype.kind in "iu":
        wide = np.asarray(values, dtype=np.int64)
        _in_range(name, wide, dtype)
        array = wide.astype(dtype)
    else:
        array = np.asarray(values, dtype=dtype)
    if array.size == count:
        return array.reshape(shape)
    if count * dtype.itemsize > MAX_FILL_BYTES:
        raise ServingError(
            Kind.TOO_LARGE,
            f"input '{name}' of shape {shape} is filled from one value: {count * dtype.itemsize} bytes, over the "
            f"{MAX_FILL_BYTES} byte limit for a filled tensor; send its values",
        )
    return np.full(shape, array[0], dtype=dtype)  # TensorFlow's shorthand: one value fills the tensor


def _depth(value: Any) -> int:
    """How deep the first elements nest: the rank a regular nested list would have."""
    depth = 0
    while isinstance(value, list):
        depth += 1
        value = value[0] if value else None
    return depth


def _holds_bool(value: Any, depth: int) -> bool:
    level = [value]
    for _ in range(depth):
        level = [item for items in level for item in items]
    return any(type(item) is bool for item in level)


def json_array(value: Any, spec: Any, name: str, may_hold_bools: bool = True) -> np.ndarray:
    """A JSON value as an array of the input's dtype: regular nested lists of numbers only.

    ``may_hold_bools`` False (the body has no ``true``/``false``) skips the per-element walk that
    finds booleans hidden among numbers, where numpy would quietly take them as 0 and 1.
    """
    target = np.dtype(spec.dtype.as_numpy_dtype)
    rank = spec.shape.rank
    depth = _depth(value)
    if rank is not None and depth != rank:
        raise invalid(
            f"input '{name}' is a list nested {depth} deep; the signature expects rank {rank} "
            f"(shape {spec.shape.as_list()})"
        )
    try:
        array = np.asarray(value)
    except (ValueError, TypeError, OverflowError, RecursionError):
        raise invalid(f"input '{name}': ragged nested lists") from None
    if array.dtype == object or array.dtype.kind in "USV":
        raise invalid(f"input '{name}': expected a nested list of numbers of equal lengths")
    if array.dtype.kind == "b" or (may_hold_bools and _holds_bool(value, array.ndim)):
        raise invalid(f"input '{name}': booleans are not numbers; send {spec.dtype.name} values")
    shape = list(array.shape)
    _check_shape(name, shape, spec)
    _check_size(name, shape, target)
    if target.kind in "iu":
        if array.dtype.kind == "f" and not np.all(np.isfinite(array) & (array == np.round(array))):
            raise invalid(f"input '{name}' expects {spec.dtype.name} values; got non-integer numbers")
        _in_range(name, array, target)
    return array.astype(target)


def tensors(specs: Mapping[str, Any], protos: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """A PredictRequest's ``inputs``, each decoded against its spec."""
    check_names(specs, protos.keys())
    return {name: tensor(protos[name], spec, name, index) for index, (name, spec) in enumerate(sorted(specs.items()))}


def rows(specs: Mapping[str, Any], instances: Any, bools: bool) -> dict[str, np.ndarray]:
    """A REST request's ``instances`` (the row format): one item per row, or per row an object naming each input.

    ``bools`` is ``json_array``'s ``may_hold_bools``.
    """
    if not isinstance(instances, list) or not instances:
        raise invalid("'instances' must be a non-empty list")
    if all(isinstance(row, dict) for row in instances):
        names = set(instances[0])
        if any(set(row) != names for row in instances):
            raise invalid("every instance must name the same inputs")
        unknown = sorted(names - set(specs))
        if unknown:
            raise invalid(f"instances name inputs the signature does not have: {unknown}")
        return {n: json_array([row[n] for row in instances], specs[n], n, bools) for n in names}
    if len(specs) != 1:
        raise invalid("instances must be objects naming each input when the signature has several inputs")
    ((name, spec),) = specs.items()
    return {name: json_array(instances, spec, name, bools)}


def columns(specs: Mapping[str, Any], inputs: Any, bools: bool) -> dict[str, np.ndarray]:
    """A REST request's ``inputs`` (the columnar format): one value, or an object naming each input."""
    if isinstance(inputs, dict):
        unknown = sorted(set(inputs) - set(specs))
        if unknown:
            raise invalid(f"inputs the signature does not have: {unknown}")
        return {n: json_array(v, specs[n], n, bools) for n, v in inputs.items()}
    if len(specs) != 1:
        raise invalid("'inputs' must be an object naming each input when the signature has several inputs")
    ((name, spec),) = specs.items()
    return {name: json_array(inputs, spec, name, bools)}
