"""numpy arrays <-> the wire TensorProto, encoded exactly as ``tf.make_tensor_proto`` does.

Part of the wire contract, below both the built-in server and the client SDK, so each speaks the
same tensor encoding without either importing the other (and without TensorFlow).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from fmtune.wire import serving_pb2 as pb
from fmtune.wire.contract import MAX_MESSAGE_BYTES

_DTYPES: dict[np.dtype[Any], int] = {
    np.dtype(np.float32): pb.DT_FLOAT,
    np.dtype(np.float64): pb.DT_DOUBLE,
    np.dtype(np.int32): pb.DT_INT32,
    np.dtype(np.uint8): pb.DT_UINT8,
    np.dtype(np.int16): pb.DT_INT16,
    np.dtype(np.int8): pb.DT_INT8,
    np.dtype(np.int64): pb.DT_INT64,
    np.dtype(np.bool_): pb.DT_BOOL,
}
NUMPY: dict[int, np.dtype[Any]] = {code: dtype for dtype, code in _DTYPES.items()}
# The typed repeated field each dtype uses when tensor_content is empty.
VALUE_FIELDS = {
    pb.DT_FLOAT: "float_val",
    pb.DT_DOUBLE: "double_val",
    pb.DT_INT32: "int_val",
    pb.DT_UINT8: "int_val",
    pb.DT_INT16: "int_val",
    pb.DT_INT8: "int_val",
    pb.DT_INT64: "int64_val",
    pb.DT_BOOL: "bool_val",
}


def dtype_name(code: int) -> str:
    return pb.DataType.Name(code) if code in pb.DataType.values() else f"DT_{code}"


def to_proto(array: np.ndarray, message: type[Any] = pb.TensorProto) -> Any:
    """Raw little-endian bytes in ``tensor_content``, as TensorFlow writes numeric tensors; strings
    (str, bytes or an object array of either) one per ``string_val``, as it writes those.

    ``message`` may be TensorFlow's own TensorProto class: its fields and dtype codes are the same.
    """
    array = np.asarray(array)
    if array.dtype.kind in "OSU":
        return _strings_to_proto(array, message)
    array = np.ascontiguousarray(array)
    if array.dtype not in _DTYPES:
        raise TypeError(f"dtype {array.dtype} has no TensorProto encoding here")
    proto = message(dtype=_DTYPES[array.dtype])
    for size in array.shape:
        proto.tensor_shape.dim.add(size=size)
    proto.tensor_content = array.astype(array.dtype.newbyteorder("<"), copy=False).tobytes()
    return proto


def _strings_to_proto(array: np.ndarray, message: type[Any]) -> Any:
    values = [item.encode() if isinstance(item, str) else item for item in array.ravel().tolist()]
    if not all(isinstance(item, bytes) for item in values):
        raise TypeError("an object array has a TensorProto encoding here only if it holds str or bytes")
    proto = message(dtype=pb.DT_STRING)
    for size in array.shape:
        proto.tensor_shape.dim.add(size=size)
    proto.string_val.extend(values)
    return proto


def _strings_from_proto(proto: Any, shape: tuple[int, ...]) -> np.ndarray:
    """An object array of ``bytes``: TensorFlow's strings are bytes, whatever their encoding."""
    values = list(proto.string_val)
    count = math.prod(shape)
    if len(values) == 1 and count != 1:  # TensorFlow's shorthand: one value filling the whole tensor
        values = values * count
    if len(values) != count:
        raise ValueError(f"tensor holds {len(values)} strings for shape {shape}")
    array = np.empty(count, dtype=object)
    array[:] = values
    return array.reshape(shape)


def from_proto(proto: Any) -> np.ndarray:
    """A TensorProto as an array; a string tensor as an object array of ``bytes``."""
    if proto.dtype == pb.DT_STRING:
        shape = tuple(d.size for d in proto.tensor_shape.dim)
        # One reference per element at the least, so that is what the limit bounds.
        if any(size < 0 for size in shape) or math.prod(shape) * np.dtype(object).itemsize > MAX_MESSAGE_BYTES:
            raise ValueError(f"tensor shape {list(shape)} is negative or too large to decode")
        return _strings_from_proto(proto, shape)
    if proto.dtype not in NUMPY:
        raise TypeError(f"cannot decode a {dtype_name(proto.dtype)} tensor")
    dtype = NUMPY[proto.dtype]
    shape = tuple(d.size for d in proto.tensor_shape.dim)
    if any(size < 0 for size in shape) or math.prod(shape) * dtype.itemsize > MAX_MESSAGE_BYTES:
        raise ValueError(f"tensor shape {list(shape)} is negative or too large to decode")
    if proto.tensor_content:
        return np.frombuffer(proto.tensor_content, dtype=dtype.newbyteorder("<")).astype(dtype).reshape(shape)
    values = np.asarray(getattr(proto, VALUE_FIELDS[proto.dtype]), dtype=dtype)
    count = int(np.prod(shape)) if shape else 1
    if values.size == count:
        return values.reshape(shape)
    if values.size == 1:  # TensorFlow's shorthand: one value filling the whole tensor
        return np.full(shape, values[0], dtype=dtype)
    raise ValueError(f"tensor holds {values.size} values for shape {shape}")
