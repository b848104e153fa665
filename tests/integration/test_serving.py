"""The built-in server and the SDK, on a model exported by the pipeline, over gRPC and REST."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import httpx
import numpy as np
import pytest
import tensorflow as tf
from tensorflow_serving.apis import (
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
)

from fmtune import data, export
from fmtune.client import (
    FmtuneClient,
    InvalidInputError,
    ModelNotFoundError,
    RequestTimeoutError,
    ServerUnavailableError,
)
from fmtune.config import SearchConfig
from fmtune.models.plugins import build_from_values

from ..conftest import SYNTHETIC
from .helpers import Served, free_ports, running_server, tiny_repo, wait_until

pytestmark = pytest.mark.timeout(600)


def copy_repo(pipeline: tuple[Path, str], into: Path) -> Path:
    repo = into / "models"
    shutil.copytree(pipeline[0] / "models", repo)
    return repo


@pytest.fixture(scope="module")
def served(pipeline: tuple[Path, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    with running_server(copy_repo(pipeline, tmp_path_factory.mktemp("serving"))) as server:
        yield server


@pytest.fixture(scope="module")
def test_images(synthetic_dir: Path) -> data.Split:
    return data.load(SYNTHETIC, synthetic_dir, download=False).test


@pytest.fixture(scope="module")
def in_process(served: Served, test_images: data.Split) -> dict[str, np.ndarray]:
    fn = tf.saved_model.load(str(served.repo / "fmtune" / "1")).signatures["serving_default"]
    out = fn(image=tf.constant(test_images.images[:20]))
    return {k: v.numpy() for k, v in out.items()}


@pytest.mark.parametrize("transport", ["grpc", "rest"])
def test_sdk_matches_the_model_in_process(
    served: Served, transport: str, test_images: data.Split, in_process: dict[str, np.ndarray]
) -> None:
    target = served.grpc_target if transport == "grpc" else served.rest_target
    with FmtuneClient(target, class_names=[f"class{i}" for i in range(10)]) as client:
        predictions = client.predict(test_images.images[:20])
        assert [p.class_id for p in predictions] == in_process["class_id"].tolist()
        assert np.allclose([p.probabilities for p in predictions], in_process["probabilities"], atol=1e-6)
        assert {p.model_version for p in predictions} == {1}
        assert predictions[0].class_name == f"class{predictions[0].class_id}"
        assert client.predict(test_images.images[0], version=1)[0].class_id == in_process["class_id"][0]
        status = client.status()
        assert [(s.version, s.state, s.error_code) for s in status] == [(1, "AVAILABLE", "OK")]
        meta = client.metadata()
        assert meta.version == 1 and meta.signature_name == "serving_default"
        assert meta.inputs["image"].dtype == "DT_UINT8" and meta.inputs["image"].shape == [-1, 28, 28]
        assert meta.outputs["probabilities"].dtype == "DT_FLOAT" and meta.outputs["probabilities"].shape == [-1, 10]
        assert meta.outputs["class_id"].dtype == "DT_INT64" and meta.outputs["class_id"].shape == [-1]
        with pytest.raises(ModelNotFoundError):
            client.predict(test_images.images[0], version=42)
        with pytest.raises(InvalidInputError, match="shape"):
            client.predict(np.zeros((3, 28), np.uint8))
    with FmtuneClient(target, model_name="nope") as client, pytest.raises(ModelNotFoundError, match="nope"):
        client.predict(test_images.images[0])


def test_concurrent_requests_each_get_their_own_answers(served: Served, test_images: data.Split) -> None:
    """Requests that arrive together run as one batch in the server; each must get back its own rows."""
    fn = tf.saved_model.load(str(served.repo / "fmtune" / "1")).signatures["serving_default"]
    slices = [slice(i, i + 1 + i % 5) for i in range(8)]
    expected = [fn(image=tf.constant(test_images.images[s]))["probabilities"].numpy() for s in slices]
    wrong: list[str] = []

    def caller(index: int, target: str) -> None:
        with FmtuneClient(target, timeout=30) as client:
            for _ in range(25):
                got = [p.probabilities for p in client.predict(test_images.images[slices[index]])]
                if not np.allclose(got, expected[index], atol=1e-5):
                    wrong.append(f"slice {index} over {target}")

    targets = [served.grpc_target if i % 4 else served.rest_target for i in range(len(slices))]
    threads = [threading.Thread(target=caller, args=(i, t)) for i, t in enumerate(targets)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert wrong == []


def test_tf_serving_stubs_without_the_sdk(
    served: Served, test_images: data.Split, in_process: dict[str, np.ndarray]
) -> None:
    channel = grpc.insecure_channel(served.grpc_target)
    predict_stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
    model_stub = model_service_pb2_grpc.ModelServiceStub(channel)

    request = predict_pb2.PredictRequest()
    request.model_spec.name = "fmtune"
    request.inputs["image"].CopyFrom(tf.make_tensor_proto(test_images.images[:20]))
    response = predict_stub.Predict(request, timeout=30)
    assert response.model_spec.version.value == 1 and response.model_spec.signature_name == "serving_default"
    assert np.array_equal(tf.make_ndarray(response.outputs["class_id"]), in_process["class_id"])

    request.output_filter.append("class_id")
    assert set(predict_stub.Predict(request, timeout=30).outputs) == {"class_id"}

    meta_request = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=["signature_def"])
    meta_request.model_spec.name = "fmtune"
    meta = predict_stub.GetModelMetadata(meta_request, timeout=30)
    signatures = get_model_metadata_pb2.SignatureDefMap()
    assert meta.metadata["signature_def"].Unpack(signatures)
    assert signatures.signature_def["serving_default"].inputs["image"].dtype == tf.uint8.as_datatype_enum

    status_request = get_model_status_pb2.GetModelStatusRequest()
    status_request.model_spec.name = "fmtune"
    status = model_stub.GetModelStatus(status_request, timeout=30)
    assert [(s.version, s.state) for s in status.model_version_status] == [
        (1, get_model_status_pb2.ModelVersionStatus.AVAILABLE)
    ]

    def code_of(call: object, req: object) -> grpc.StatusCode:
        with pytest.raises(grpc.RpcError) as info:
            call(req, timeout=30)  # type: ignore[operator]
        return info.value.code()

    bad = predict_pb2.PredictRequest()
    bad.model_spec.name = "missing"
    bad.inputs["image"].CopyFrom(tf.make_tensor_proto(test_images.images[:1]))
    assert code_of(predict_stub.Predict, bad) == grpc.StatusCode.NOT_FOUND
    bad.model_spec.name = "fmtune"
    bad.inputs["image"].CopyFrom(tf.make_tensor_proto(test_images.images[:1].astype(np.float32)))
    assert code_of(predict_stub.Predict, bad) == grpc.StatusCode.INVALID_ARGUMENT
    bad.inputs["image"].CopyFrom(tf.make_tensor_proto(np.zeros((1, 27, 28), np.uint8)))
    assert code_of(predict_stub.Predict, bad) == grpc.StatusCode.INVALID_ARGUMENT
    del bad.inputs["image"]
    bad.inputs["pixels"].CopyFrom(tf.make_tensor_proto(test_images.images[:1]))
    assert code_of(predict_stub.Predict, bad) == grpc.StatusCode.INVALID_ARGUMENT
    request.model_spec.signature_name = "nope"
    assert code_of(predict_stub.Predict, request) == grpc.StatusCode.FAILED_PRECONDITION
    status_request.model_spec.name = "missing"
    assert code_of(model_stub.GetModelStatus, status_request) == grpc.StatusCode.NOT_FOUND
    assert served.alive()


def test_rest_api_without_the_sdk(served: Served, test_images: data.Split, in_process: dict[str, np.ndarray]) -> None:
    http = httpx.Client(base_url=served.rest_target, timeout=30)
    status = http.get("/v1/models/fmtune")
    assert status.status_code == 200
    assert status.json() == {
        "model_version_status": [
            {"version": "1", "state": "AVAILABLE", "status": {"error_code": "OK", "error_message": ""}}
        ]
    }
    assert http.get("/v1/models/fmtune/versions/1").json() == status.json()

    meta = http.get("/v1/models/fmtune/metadata").json()
    assert meta["model_spec"] == {"name": "fmtune", "signature_name": "", "version": "1"}
    sig = meta["metadata"]["signature_def"]["signature_def"]["serving_default"]
    assert sig["inputs"]["image"]["dtype"] == "DT_UINT8"
    assert [d["size"] for d in sig["inputs"]["image"]["tensor_shape"]["dim"]] == ["-1", "28", "28"]
    assert sig["method_name"] == "tensorflow/serving/predict"

    images = test_images.images[:3]
    rows = http.post("/v1/models/fmtune:predict", json={"instances": images.tolist()}).json()
    assert [p["class_id"] for p in rows["predictions"]] == in_process["class_id"][:3].tolist()
    assert len(rows["predictions"][0]["probabilities"]) == 10
    named = http.post(
        "/v1/models/fmtune/versions/1:predict",
        json={"signature_name": "serving_default", "instances": [{"image": im} for im in images.tolist()]},
    )
    assert named.json() == rows
    columns = http.post("/v1/models/fmtune:predict", json={"inputs": {"image": images.tolist()}}).json()
    assert columns["outputs"]["class_id"] == in_process["class_id"][:3].tolist()
    assert np.allclose(columns["outputs"]["probabilities"], in_process["probabilities"][:3], atol=1e-6)
    assert http.post("/v1/models/fmtune:predict", json={"inputs": images.tolist()}).json() == columns

    one = images[0].tolist()
    cases = [
        ("POST", "/v1/models/fmtune/versions/9:predict", {"instances": [one]}, 404, "Specific(fmtune, 9)"),
        ("POST", "/v1/models/other:predict", {"instances": [one]}, 404, "other"),
        ("GET", "/v1/models/other", None, 404, "other"),
        ("POST", "/v1/models/fmtune:predict", b"{not json", 400, "JSON Parse error"),
        ("POST", "/v1/models/fmtune:predict", {"signature_name": "serving_default"}, 400, "Missing 'inputs'"),
        ("POST", "/v1/models/fmtune:predict", {"inputs": [one], "instances": [one]}, 400, "only one of"),
        ("POST", "/v1/models/fmtune:predict", {"instances": [[[300] * 28] * 28]}, 400, "out of range"),
        ("POST", "/v1/models/fmtune:predict", {"instances": [[[0.5] * 28] * 28]}, 400, "non-integer"),
        ("POST", "/v1/models/fmtune:predict", {"instances": [[[1] * 27] * 28]}, 400, "shape"),
        ("POST", "/v1/models/fmtune:predict", {"instances": [one, [[1, 2]]]}, 400, "ragged"),
        ("POST", "/v1/models/fmtune:predict", {"instances": []}, 400, "non-empty"),
        ("POST", "/v1/models/fmtune:predict", {"instances": [one], "signature_name": "x"}, 400, "not found"),
        ("POST", "/v1/models/fmtune:classify", {"examples": []}, 400, "classify"),
        ("GET", "/v1/nonsense", None, 400, "Malformed request"),
    ]
    for method, path, body, code, words in cases:
        kwargs = {"content": body} if isinstance(body, bytes) else {"json": body}
        reply = http.request(method, path, **kwargs) if body is not None else http.request(method, path)
        assert reply.status_code == code, (path, body, reply.text)
        assert words in reply.json()["error"], (path, reply.json())
    assert http.get("/v1/models/fmtune").status_code == 200 and served.alive()


@pytest.mark.parametrize("transport", ["grpc", "rest"])
def test_unreachable_server_and_timeouts(transport: str) -> None:
    import socket

    (port,) = free_ports(1)
    target = f"127.0.0.1:{port}" if transport == "grpc" else f"http://127.0.0.1:{port}"
    started = time.monotonic()
    with (
        FmtuneClient(target, retries=2, backoff=0.05, timeout=2) as client,
        pytest.raises(ServerUnavailableError, match=str(port)),
    ):
        client.predict(np.zeros((28, 28), np.uint8))
    assert time.monotonic() - started < 10

    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)  # the kernel accepts connections; nothing ever answers
    port = silent.getsockname()[1]
    target = f"127.0.0.1:{port}" if transport == "grpc" else f"http://127.0.0.1:{port}"
    timeout = 0.5
    try:
        with FmtuneClient(target, timeout=timeout, retries=0) as client:
            for call in (client.status, lambda: client.predict(np.zeros((28, 28), np.uint8))):
                started = time.monotonic()
                with pytest.raises(RequestTimeoutError, match=str(port)):
                    call()
                took = time.monotonic() - started
                assert timeout <= took < timeout + 5, f"timed out after {took:.2f}s, not at {timeout}s"
    finally:
        silent.close()


def test_new_version_under_load_is_picked_up_without_errors(test_images: data.Split, tmp_path: Path) -> None:
    with running_server(tiny_repo(tmp_path)) as served:
        hot_swap(served, test_images)


def hot_swap(served: Served, test_images: data.Split) -> None:
    """Four callers predict while version 2 is published; each sees only version 1 and then only
    version 2 (a caller's versions never go back), and no call fails."""
    stop = threading.Event()
    failures: list[str] = []
    seen: list[list[int]] = [[] for _ in range(4)]  # per caller, the version of each answer

    def hammer(target: str, versions: list[int]) -> None:
        with FmtuneClient(target, timeout=30) as client:
            while not stop.is_set():
                try:
                    versions.append(client.predict(test_images.images[:8])[0].model_version)
                except Exception as exc:  # every failure counts
                    failures.append(repr(exc))

    def answered(version: int, count: int) -> bool:
        return all(versions.count(version) >= count for versions in seen) or bool(failures)

    def progress() -> str:
        return f"answers per caller {[(v.count(1), v.count(2)) for v in seen]}, failures {failures[:3]}"

    targets = (served.grpc_target, served.grpc_target, served.rest_target, served.rest_target)
    threads = [threading.Thread(target=hammer, args=(t, v)) for t, v in zip(targets, seen, strict=True)]
    for thread in threads:
        thread.start()
    try:
        wait_until(lambda: answered(1, 5), 120, lambda: f"5 answers from version 1 each; {progress()}")
        model, _ = build_from_values(
            SearchConfig(),
            {"num_layers": 1, "units_0": 16, "dropout_0": 0.1, "learning_rate": 1e-3, "batch_size": 32},
            (28, 28),
            10,
        )
        card = export.read_card(served.repo / "fmtune" / "1").model_copy(update={"experiment": "swap"})
        assert export.publish(model, served.repo, card)[0] == 2
        wait_until(lambda: answered(2, 25), 120, lambda: f"25 answers from version 2 each; {progress()}")
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=60)
    assert failures == []
    for versions in seen:
        assert set(versions) == {1, 2} and versions == sorted(versions), versions  # once swapped, it stays swapped
    with FmtuneClient(served.grpc_target) as client:
        states = {s.version: s.state for s in client.status()}
    assert states == {2: "AVAILABLE", 1: "END"}
    assert json.loads((served.repo / "fmtune" / "2" / "fmtune.json").read_text())["version"] == 2


CLIENT_ONLY = r"""
import importlib.util, json, sys
import numpy as np
from fmtune.client import FmtuneClient
assert importlib.util.find_spec("tensorflow") is None, "tensorflow is installed"
images = np.load(sys.argv[3])
out = {}
for target in sys.argv[1:3]:
    with FmtuneClient(target) as client:
        out[target] = [p.class_id for p in client.predict(images)]
assert "tensorflow" not in sys.modules and "keras" not in sys.modules
print(json.dumps(out))
"""


def test_client_extra_alone_predicts_over_both_transports(
    served: Served, test_images: data.Split, in_process: dict[str, np.ndarray], tmp_path: Path
) -> None:
    """A clean venv with only `fmtune[client]`: no TensorFlow, and predictions over gRPC and REST."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    repo = Path(__file__).resolve().parents[2]
    install = subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", f"{repo}[client]"], capture_output=True, text=True, timeout=600
    )
    assert install.returncode == 0, install.stderr[-3000:]
    np.save(tmp_path / "images.npy", test_images.images[:20])
    done = subprocess.run(
        [str(python), "-c", CLIENT_ONLY, served.grpc_target, served.rest_target, str(tmp_path / "images.npy")],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    expected = in_process["class_id"].tolist()
    assert result == {served.grpc_target: expected, served.rest_target: expected}
