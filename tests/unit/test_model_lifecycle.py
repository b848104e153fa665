"""A model version's life on disk and in the server: staged as a copy, committed, failing to load,
removed while served, and asked for metadata it does not have."""

from __future__ import annotations

import logging
import shutil
from collections.abc import Iterator
from pathlib import Path

import grpc
import numpy as np
import pytest
from tensorflow_serving.apis import (
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
)

from fmtune import export
from fmtune.serving import warmup
from fmtune.serving.errors import Kind, ServingError
from fmtune.serving.models import AVAILABLE, END, ModelManager, Servable
from fmtune.serving.runner import Runner

from .._builtin_server import Loopback, builtin_server, export_version, mixed_images, probabilities, tiny_model
from ..integration.helpers import tiny_card


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One exported version (SavedModel, card, warmup records) to copy from."""
    return export_version(tiny_model(seed=5), tmp_path_factory.mktemp("exported"))


def files(directory: Path) -> dict[str, bytes]:
    return {str(p.relative_to(directory)): p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file()}


def place(exported: Path, model_dir: Path, version: int) -> Path:
    """A copy of ``exported`` as ``model_dir/version``, as an operator might put it there."""
    target = model_dir / str(version)
    shutil.copytree(exported, target)
    return target


def loaded(model_dir: Path) -> ModelManager:
    manager = ModelManager(model_dir, "fmtune", poll_seconds=60)
    settle(manager)
    return manager


def settle(manager: ModelManager) -> None:
    """Two polls: a directory is loaded once it looks the same twice."""
    manager.poll_once()
    manager.poll_once()


def states(manager: ModelManager) -> dict[int, int]:
    return {s.version: s.state for s in manager.statuses("fmtune", None)}


def test_stage_copy_is_a_hidden_copy_without_the_card(tmp_path: Path, exported: Path) -> None:
    before = files(exported)
    staging = export.stage_copy(exported, tmp_path / "repo", "fmtune")
    assert staging.parent == tmp_path / "repo" / "fmtune" and staging.name.startswith(".staging-")
    assert files(staging) == {k: v for k, v in before.items() if k != export.CARD_FILE}
    assert export.CARD_FILE in before and "saved_model.pb" in before
    assert files(exported) == before  # the source is untouched
    assert export.versions(tmp_path / "repo" / "fmtune") == []
    manager = loaded(tmp_path / "repo" / "fmtune")
    with pytest.raises(ServingError, match="Could not find any versions of model fmtune"):
        manager.statuses("fmtune", None)


def test_a_staged_copy_commits_as_the_next_version_and_serves_the_same_model(tmp_path: Path, exported: Path) -> None:
    model_dir = tmp_path / "repo" / "fmtune"
    place(exported, model_dir, 4)
    version, path = export.commit(export.stage_copy(exported, tmp_path / "repo", "fmtune"), tiny_card())
    assert (version, path) == (5, model_dir / "5")
    assert export.read_card(path).version == 5 and export.read_card(exported).version == 1
    manager = loaded(model_dir)
    assert states(manager) == {5: AVAILABLE}  # the newest on disk, alone
    images = mixed_images(4)
    runner = Runner()
    try:
        got = runner.submit(manager.resolve("fmtune", None), "", {"image": images}, ()).result(30)
    finally:
        runner.stop()
    np.testing.assert_allclose(got["probabilities"], probabilities(exported, images), atol=1e-6)


def test_stage_copy_of_a_missing_version_leaves_nothing_behind(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        export.stage_copy(tmp_path / "no-such-version", tmp_path / "repo", "fmtune")
    assert list((tmp_path / "repo" / "fmtune").iterdir()) == []


def corrupt_variables(version_dir: Path) -> None:
    """saved_model.pb still parses; the weights it needs are cut short."""
    (data,) = (version_dir / "variables").glob("variables.data-*")
    data.write_bytes(data.read_bytes()[:10])


def test_a_savedmodel_with_broken_weights_fails_once_and_the_previous_keeps_serving(
    tmp_path: Path, exported: Path, caplog: pytest.LogCaptureFixture
) -> None:
    model_dir = tmp_path / "fmtune"
    place(exported, model_dir, 1)
    manager = loaded(model_dir)
    corrupt_variables(place(exported, model_dir, 2))
    with caplog.at_level(logging.ERROR, logger="fmtune"):
        for _ in range(4):
            manager.poll_once()
    failures = [r for r in caplog.records if r.getMessage().startswith("could not load fmtune version 2")]
    assert len(failures) == 1  # not retried while the directory stays as it is
    assert states(manager) == {2: END, 1: AVAILABLE}
    assert manager.statuses("fmtune", 2)[0].error == "version 2 could not be loaded (see the server log)"
    assert manager.resolve("fmtune", None).version == 1
    with pytest.raises(ServingError, match=r"Servable not found for request: Specific\(fmtune, 2\)"):
        manager.resolve("fmtune", 2)
    # Repaired in place, it is tried again and replaces version 1.
    shutil.rmtree(model_dir / "2" / "variables")
    shutil.copytree(exported / "variables", model_dir / "2" / "variables")
    settle(manager)
    assert states(manager) == {2: AVAILABLE, 1: END}


def test_a_version_whose_warmup_fails_never_becomes_available(tmp_path: Path, exported: Path) -> None:
    model_dir = tmp_path / "fmtune"
    place(exported, model_dir, 1)
    place(exported, model_dir, 2)
    warmup.path_in(model_dir / "2").write_bytes(b"\x00" * 40)  # not TFRecords
    runner = Runner()

    def warm(servable: Servable) -> None:
        warmup.replay(servable, runner)

    try:
        manager = ModelManager(model_dir, "fmtune", warmup=warm)
        settle(manager)
        settle(manager)
    finally:
        runner.stop()
    assert states(manager) == {2: END, 1: AVAILABLE}
    assert manager.statuses("fmtune", 2)[0].error == "version 2 could not be loaded (see the server log)"


def test_the_served_version_removed_from_disk_is_unloaded_and_requests_in_flight_finish(
    tmp_path: Path, exported: Path
) -> None:
    model_dir = tmp_path / "fmtune"
    place(exported, model_dir, 1)
    manager = loaded(model_dir)
    held = manager.resolve("fmtune", None)  # a request in flight holds version 1
    shutil.rmtree(model_dir / "1")
    manager.poll_once()
    (status,) = manager.statuses("fmtune", None)
    assert (status.version, status.state, status.error) == (1, END, "")
    with pytest.raises(ServingError, match=r"Servable not found for request: Latest\(fmtune\)") as info:
        manager.resolve("fmtune", None)
    assert info.value.kind is Kind.NOT_FOUND
    runner = Runner()
    try:
        got = runner.submit(held, "", {"image": mixed_images(2)}, ()).result(30)
    finally:
        runner.stop()
    assert got["probabilities"].shape == (2, 10)  # its model is still in memory


def test_the_latest_version_removed_from_disk_falls_back_to_the_one_below(tmp_path: Path, exported: Path) -> None:
    """What a rollback relies on: unpublishing a version brings the previous one back."""
    model_dir = tmp_path / "fmtune"
    place(exported, model_dir, 1)
    place(exported, model_dir, 2)
    manager = loaded(model_dir)
    assert states(manager) == {2: AVAILABLE}  # the newest of those on disk at start, alone
    export.unpublish(model_dir / "2")
    manager.poll_once()
    assert states(manager) == {2: END, 1: AVAILABLE}
    assert manager.resolve("fmtune", None).version == 1
    with pytest.raises(ServingError, match=r"Specific\(fmtune, 2\)"):
        manager.resolve("fmtune", 2)


@pytest.fixture(scope="module")
def served(exported: Path) -> Iterator[Loopback]:
    with builtin_server(exported.parent.parent) as server:
        server.wait_for(1)
        yield server


def metadata(served: Loopback, fields: list[str]) -> get_model_metadata_pb2.GetModelMetadataResponse:
    request = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=fields)
    request.model_spec.name = "fmtune"
    with grpc.insecure_channel(served.grpc_target) as channel:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        return stub.GetModelMetadata(request, timeout=20)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ([], "GetModelMetadataRequest must specify at least one metadata_field"),
        (["signature"], "Metadata field signature is not supported"),
        (["signature_def", "preprocessing_settings"], "Metadata field preprocessing_settings is not supported"),
    ],
)
def test_an_unsupported_metadata_field_is_invalid_argument_as_tf_serving_words_it(
    served: Loopback, fields: list[str], message: str
) -> None:
    with pytest.raises(grpc.RpcError) as info:
        metadata(served, fields)
    assert (info.value.code(), info.value.details()) == (grpc.StatusCode.INVALID_ARGUMENT, message)


def test_a_request_without_a_model_spec_is_invalid_argument_as_tf_serving_words_it(served: Loopback) -> None:
    requests = {
        "GetModelMetadata": get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=["signature_def"]),
        "Predict": predict_pb2.PredictRequest(),
    }
    with grpc.insecure_channel(served.grpc_target) as channel:
        for method, request in requests.items():
            call = getattr(prediction_service_pb2_grpc.PredictionServiceStub(channel), method)
            with pytest.raises(grpc.RpcError) as info:
                call(request, timeout=20)
            assert (info.value.code(), info.value.details()) == (grpc.StatusCode.INVALID_ARGUMENT, "Missing ModelSpec")
        with pytest.raises(grpc.RpcError) as info:
            model_service_pb2_grpc.ModelServiceStub(channel).GetModelStatus(
                get_model_status_pb2.GetModelStatusRequest(), timeout=20
            )
        assert (info.value.code(), info.value.details()) == (grpc.StatusCode.INVALID_ARGUMENT, "Missing ModelSpec")


def test_signature_def_named_twice_is_answered_as_once(served: Loopback) -> None:
    response = metadata(served, ["signature_def", "signature_def"])
    assert (response.model_spec.name, response.model_spec.version.value) == ("fmtune", 1)
    signatures = get_model_metadata_pb2.SignatureDefMap()
    assert response.metadata["signature_def"].Unpack(signatures)
    assert "serving_default" in signatures.signature_def
