"""fmtune's TensorFlow-free messages put the same bytes on the wire as tensorflow-serving-api."""

import numpy as np
import pytest
import tensorflow as tf
from tensorflow_serving.apis import get_model_metadata_pb2, get_model_status_pb2, predict_pb2

from fmtune.client.grpc_transport import predict_request
from fmtune.wire import serving_pb2 as pb
from fmtune.wire.tensors import from_proto, to_proto


@pytest.mark.parametrize("version", [None, 3])
def test_predict_request_bytes_equal_tf_serving(version: int | None) -> None:
    images = np.random.default_rng(0).integers(0, 256, (5, 28, 28), dtype=np.uint8)
    ours = predict_request("fmtune", images, version)
    theirs = predict_pb2.PredictRequest()
    theirs.model_spec.name = "fmtune"
    theirs.model_spec.signature_name = "serving_default"
    if version is not None:
        theirs.model_spec.version.value = version
    theirs.inputs["image"].CopyFrom(tf.make_tensor_proto(images))
    assert ours.SerializeToString(deterministic=True) == theirs.SerializeToString(deterministic=True)


@pytest.mark.parametrize(
    "array",
    [
        np.random.default_rng(1).random((4, 10), dtype=np.float32),
        np.array([3, 1, 4, 1], np.int64),
        np.arange(6, dtype=np.uint8).reshape(2, 3),
    ],
)
def test_tensor_encoding_matches_tensorflow(array: np.ndarray) -> None:
    assert to_proto(array).SerializeToString() == tf.make_tensor_proto(array).SerializeToString()


def test_tf_serving_responses_decode_the_same() -> None:
    probabilities = np.random.default_rng(2).random((3, 10), dtype=np.float32)
    class_ids = probabilities.argmax(axis=1).astype(np.int64)
    theirs = predict_pb2.PredictResponse()
    theirs.model_spec.name, theirs.model_spec.version.value = "fmtune", 7
    theirs.outputs["probabilities"].CopyFrom(tf.make_tensor_proto(probabilities))
    theirs.outputs["class_id"].CopyFrom(tf.make_tensor_proto(class_ids))
    ours = pb.PredictResponse.FromString(theirs.SerializeToString())
    assert ours.model_spec.version.value == 7
    assert np.array_equal(from_proto(ours.outputs["probabilities"]), probabilities)
    assert np.array_equal(from_proto(ours.outputs["class_id"]), class_ids)
    # TensorFlow's value-list encoding (no tensor_content) decodes too.
    assert np.array_equal(
        from_proto(pb.TensorProto.FromString(tf.make_tensor_proto([1.5, 2.5], dtype=tf.float32).SerializeToString())),
        [1.5, 2.5],
    )

    status = get_model_status_pb2.GetModelStatusResponse()
    status.model_version_status.add(version=7, state=get_model_status_pb2.ModelVersionStatus.AVAILABLE)
    decoded = pb.GetModelStatusResponse.FromString(status.SerializeToString())
    assert decoded.model_version_status[0].state == pb.ModelVersionStatus.AVAILABLE

    signatures = get_model_metadata_pb2.SignatureDefMap()
    signatures.signature_def["serving_default"].inputs["image"].dtype = tf.uint8.as_datatype_enum
    metadata = get_model_metadata_pb2.GetModelMetadataResponse()
    metadata.metadata["signature_def"].Pack(signatures)
    ours_meta = pb.GetModelMetadataResponse.FromString(metadata.SerializeToString())
    ours_sigs = pb.SignatureDefMap.FromString(ours_meta.metadata["signature_def"].value)
    assert ours_sigs.signature_def["serving_default"].inputs["image"].dtype == pb.DT_UINT8


def test_message_layouts_match_field_for_field() -> None:
    from tensorflow.core.framework import tensor_pb2, tensor_shape_pb2
    from tensorflow.core.protobuf import meta_graph_pb2
    from tensorflow_serving.apis import model_pb2

    pairs = [
        (pb.PredictRequest, predict_pb2.PredictRequest),
        (pb.PredictResponse, predict_pb2.PredictResponse),
        (pb.ModelSpec, model_pb2.ModelSpec),
        (pb.TensorProto, tensor_pb2.TensorProto),
        (pb.TensorShapeProto, tensor_shape_pb2.TensorShapeProto),
        (pb.GetModelStatusResponse, get_model_status_pb2.GetModelStatusResponse),
        (pb.ModelVersionStatus, get_model_status_pb2.ModelVersionStatus),
        (pb.GetModelMetadataRequest, get_model_metadata_pb2.GetModelMetadataRequest),
        (pb.GetModelMetadataResponse, get_model_metadata_pb2.GetModelMetadataResponse),
        (pb.SignatureDef, meta_graph_pb2.SignatureDef),
        (pb.TensorInfo, meta_graph_pb2.TensorInfo),
    ]
    for ours, theirs in pairs:
        for field in ours.DESCRIPTOR.fields:
            other = theirs.DESCRIPTOR.fields_by_name[field.name]
            assert (field.number, field.type) == (other.number, other.type), f"{ours.__name__}.{field.name}"


def test_string_and_scalar_tensors_round_trip_as_tensorflow_encodes_them() -> None:
    """What ``fmtune_card`` answers: a string ``[K]`` and a bool scalar."""
    names = np.array(["T-shirt/top", "chat", "é"], dtype=object)
    assert to_proto(names).SerializeToString() == tf.make_tensor_proto(names).SerializeToString()
    theirs = pb.TensorProto.FromString(tf.make_tensor_proto(names).SerializeToString())
    decoded = from_proto(theirs)
    assert decoded.dtype == object and decoded.tolist() == [n.encode() for n in names]
    assert from_proto(to_proto(np.array([b"a", b"b"]))).tolist() == [b"a", b"b"]
    flag = from_proto(pb.TensorProto.FromString(tf.make_tensor_proto(np.array(True)).SerializeToString()))
    assert flag.shape == () and flag.item() is True
    assert from_proto(to_proto(np.array(False))).item() is False
    with pytest.raises(TypeError, match="str or bytes"):
        to_proto(np.array([1, "a"], dtype=object))
