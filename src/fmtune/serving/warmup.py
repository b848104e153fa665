"""TF Serving's warmup records: written into a SavedModel at export, replayed when a version loads.

The format is TF Serving's (``assets.extra/tf_serving_warmup_requests``: a TFRecord file of
``PredictionLog`` records, at most 1000), so TF Serving warms the same export with
``--enable_model_warmup``. Replaying real requests before a version is AVAILABLE means its first
client does not pay for the graph's initialisation.
"""

from __future__ import annotations

import functools
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from fmtune.serving import dataplane, decode
from fmtune.wire.contract import INPUT, SIGNATURE

if TYPE_CHECKING:
    from fmtune.serving.models import Servable
    from fmtune.serving.runner import Runner

log = logging.getLogger("fmtune")
ASSETS_EXTRA = "assets.extra"
WARMUP_FILE = "tf_serving_warmup_requests"
MAX_RECORDS = 1000  # TF Serving's limit
REPLAY_TIMEOUT = 120.0
REPEATS = 3  # a graph's first few runs are all slower than later ones, not only the very first


def path_in(version_dir: Path) -> Path:
    return version_dir / ASSETS_EXTRA / WARMUP_FILE


def write(version_dir: Path, images: np.ndarray) -> Path:
    """Records for one image and for the whole batch of ``images`` (uint8, of the model's shape)."""
    import tensorflow as tf
    from tensorflow_serving.apis import predict_pb2, prediction_log_pb2

    path = path_in(version_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    with tf.io.TFRecordWriter(str(path)) as writer:
        for batch in (images[:1], images):
            request = predict_pb2.PredictRequest()
            request.model_spec.signature_name = SIGNATURE
            request.inputs[INPUT].CopyFrom(tf.make_tensor_proto(np.ascontiguousarray(batch, dtype=np.uint8)))
            entry = prediction_log_pb2.PredictionLog(predict_log=prediction_log_pb2.PredictLog(request=request))
            writer.write(entry.SerializeToString())
    return path


def read(version_dir: Path) -> list[Any]:
    """The PredictRequests of a version's warmup file (none if it has no file)."""
    path = path_in(version_dir)
    if not path.is_file():
        return []
    import tensorflow as tf
    from tensorflow_serving.apis import prediction_log_pb2

    requests = []
    for index, record in enumerate(tf.data.TFRecordDataset(str(path))):
        if index == MAX_RECORDS:
            raise ValueError(f"{path}: more than {MAX_RECORDS} warmup records")
        entry = prediction_log_pb2.PredictionLog.FromString(record.numpy())
        if entry.WhichOneof("log_type") != "predict_log":
            raise ValueError(f"{path}: record {index} is a {entry.WhichOneof('log_type')}, not a predict_log")
        requests.append(entry.predict_log.request)
    return requests


def replay(servable: Servable, runner: Runner) -> int:
    """Run a servable's warmup requests as predicts are run, on the runner (the thread that will serve
    it), though the servable is not AVAILABLE yet; raises if one fails."""
    requests = read(servable.path)
    for request in requests * REPEATS:
        inputs = functools.partial(decode.tensors, protos=request.inputs)
        prediction = dataplane.submit(
            runner, servable, request.model_spec.signature_name, inputs, request.output_filter, bounded=False
        )
        prediction.outputs.result(REPLAY_TIMEOUT)
    if requests:
        log.info("version %d warmed up with %d requests", servable.version, len(requests))
    return len(requests)
