"""What ``FmtuneClient.predict`` makes of a transport's answers, without a server: the model's shape,
class names and background read once per version, and the answer checked."""

from __future__ import annotations

import numpy as np
import pytest

from fmtune.client import FmtuneClient, InvalidInputError, ModelInfo
from fmtune.client.errors import ServerError
from fmtune.client.transport import RawCard, RawPrediction, Transport
from fmtune.client.types import ModelMetadata, TensorSpec, VersionStatus

FASHION = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]


class Version:
    """What one canned version serves."""

    def __init__(self, shape: tuple[int, ...], names: list[str] | None, dark: bool = True, classes: int = 10):
        self.shape, self.names, self.dark, self.classes = shape, names, dark, classes

    def metadata(self, version: int) -> ModelMetadata:
        signatures = ["serving_default"] + (["fmtune_card"] if self.names is not None else [])
        return ModelMetadata(
            name="fmtune",
            version=version,
            signature_name="serving_default",
            inputs={"image": TensorSpec(dtype="DT_UINT8", shape=[-1, *self.shape])},
            outputs={"probabilities": TensorSpec(dtype="DT_FLOAT", shape=[-1, self.classes])},
            signatures=signatures,
        )


class CannedTransport(Transport):
    """Serves ``versions`` (the highest is the latest); predict answers ``answer`` or, without one,
    class 0 from the version asked for (the latest if none), and records what was sent."""

    def __init__(self, versions: dict[int, Version], answer: RawPrediction | None = None):
        super().__init__("canned", "fmtune")
        self.versions, self.answer = versions, answer
        self.sent: list[tuple[np.ndarray, int | None]] = []
        self.calls: list[str] = []

    def predict(self, batch: np.ndarray, version: int | None, timeout: float) -> RawPrediction:
        self.calls.append("predict")
        self.sent.append((batch, version))
        if self.answer is not None:
            return self.answer
        served = version if version is not None else max(self.versions)
        if batch.shape[1:] != self.versions[served].shape:
            raise InvalidInputError(f"shape {batch.shape} does not fit version {served}")
        classes = self.versions[served].classes
        return RawPrediction(
            np.full((len(batch), classes), 1 / classes, np.float32), np.zeros(len(batch), np.int64), served
        )

    def card(self, version: int, image_shape: tuple[int, ...], timeout: float) -> RawCard:
        self.calls.append(f"card {version}")
        served = self.versions[version]
        assert served.names is not None and image_shape == served.shape
        return RawCard(served.names, served.dark)

    def status(self, version: int | None, timeout: float) -> list[VersionStatus]:
        raise NotImplementedError

    def metadata(self, version: int | None, timeout: float) -> ModelMetadata:
        self.calls.append(f"metadata {version}")
        number = version if version is not None else max(self.versions)
        return self.versions[number].metadata(number)


def client_of(transport: CannedTransport, **options: object) -> FmtuneClient:
    client = FmtuneClient("127.0.0.1:1", **options)  # type: ignore[arg-type]
    client._transport = transport
    return client


def client_answering(probabilities: np.ndarray, class_ids: np.ndarray) -> FmtuneClient:
    return client_of(CannedTransport({7: Version((28, 28), FASHION)}, RawPrediction(probabilities, class_ids, 7)))


def test_predictions_carry_plain_python_values() -> None:
    probabilities = np.full((2, 10), 0.05, np.float32)
    probabilities[0, 3], probabilities[1, 9] = 0.55, 0.55
    [first, second] = client_answering(probabilities, np.array([3, 9])).predict(np.zeros((2, 28, 28), np.uint8))
    assert (first.class_id, first.class_name, second.class_name) == (3, "Dress", "Ankle boot")
    assert type(first.class_id) is int and all(type(p) is float for p in first.probabilities)
    assert first.confidence == pytest.approx(0.55) and first.model_version == 7
    assert first.model_dump()["probabilities"][3] == pytest.approx(0.55) and first.inverted is False


@pytest.mark.parametrize(
    ("probabilities", "class_ids", "message"),
    [
        (np.zeros((1, 10), np.float32), np.array([0, 1]), "expected 2 predictions"),
        (np.zeros((2, 3), np.float32), np.array([0, 1]), "over 10 classes"),
        (np.zeros((2, 10), np.float32), np.array([0, 10]), "class ids outside 0..9"),
        (np.zeros((2, 10), np.float32), np.array([-1, 0]), "class ids outside 0..9"),
    ],
)
def test_malformed_answers_are_server_errors(probabilities: np.ndarray, class_ids: np.ndarray, message: str) -> None:
    with pytest.raises(ServerError, match=message):
        client_answering(probabilities, class_ids).predict(np.zeros((2, 28, 28), np.uint8))


def test_the_model_is_read_once_per_version() -> None:
    transport = CannedTransport({3: Version((8, 8, 3), ["cat", "dog", "fox"], dark=False, classes=3)})
    client = client_of(transport)
    assert client.model_info() == ModelInfo(3, (8, 8, 3), 3, ("cat", "dog", "fox"), False)
    for _ in range(3):
        assert client.predict(np.zeros((8, 8, 3), np.uint8))[0].class_name == "cat"
    client.predict(np.zeros((2, 8, 8, 3), np.uint8), version=3)
    assert transport.calls == ["metadata None", "card 3", "predict", "predict", "predict", "predict"]


def test_light_images_are_inverted_only_for_a_dark_background_model() -> None:
    light = np.full((2, 8, 8), 250, np.uint8)
    light[1] = 5  # dark already
    dark_model = CannedTransport({1: Version((8, 8), [str(i) for i in range(10)], dark=True)})
    [first, second] = client_of(dark_model).predict(light)
    assert (first.inverted, second.inverted) == (True, False)
    assert dark_model.sent[0][0][0].max() == 5 and dark_model.sent[0][0][1].max() == 5
    photo_model = CannedTransport({1: Version((8, 8), [str(i) for i in range(10)], dark=False)})
    assert [p.inverted for p in client_of(photo_model).predict(light)] == [False, False]
    assert [p.inverted for p in client_of(photo_model).predict(light, invert=True)] == [True, True]


def test_a_model_without_a_card_is_named_by_class_id_and_not_inverted() -> None:
    transport = CannedTransport({2: Version((28, 28), None)})
    client = client_of(transport)
    [prediction] = client.predict(np.full((28, 28), 255, np.uint8))
    assert (prediction.class_name, prediction.inverted) == ("0", False)
    assert client.model_info() == ModelInfo(2, (28, 28), 10, None, False)
    assert not any(call.startswith("card") for call in transport.calls)
    assert client.predict(np.full((28, 28), 255, np.uint8), invert=True)[0].inverted
    named = client_of(CannedTransport({2: Version((28, 28), None)}), class_names=FASHION)
    assert named.predict(np.zeros((28, 28), np.uint8))[0].class_name == "T-shirt/top"


def test_a_card_that_does_not_fit_the_model_is_a_server_error() -> None:
    transport = CannedTransport({1: Version((8, 8), ["a", "b"], classes=10)})
    with pytest.raises(ServerError, match="serves 2 class names for 10 classes"):
        client_of(transport).predict(np.zeros((8, 8), np.uint8))


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        (TensorSpec(dtype="DT_FLOAT", shape=[-1, 28, 28]), "does not take uint8 images"),
        (TensorSpec(dtype="DT_UINT8", shape=None), "does not take uint8 images"),
        (TensorSpec(dtype="DT_UINT8", shape=[-1, 784]), "does not take uint8 images"),
        (TensorSpec(dtype="DT_UINT8", shape=[-1, 28, 28, 4]), "takes 4 channels"),
    ],
)
def test_a_model_input_the_sdk_cannot_make_is_a_server_error(spec: TensorSpec, message: str) -> None:
    transport = CannedTransport({1: Version((28, 28), None)})
    transport.metadata = lambda version, timeout: (
        Version((28, 28), None)
        .metadata(1)
        .model_copy(  # type: ignore[method-assign]
            update={"inputs": {"image": spec}}
        )
    )
    with pytest.raises(ServerError, match=message):
        client_of(transport).predict(np.zeros((28, 28), np.uint8))


def test_a_new_version_with_other_images_is_followed() -> None:
    """Unpinned, the client makes images for the version it saw last; once the server serves one
    that takes others, it refuses them, and the client reads the new version and sends again."""
    transport = CannedTransport({1: Version((28, 28), FASHION)})
    client = client_of(transport)
    assert client.predict(np.zeros((28, 28), np.uint8))[0].model_version == 1
    transport.versions[2] = Version((8, 8, 3), ["cat", "dog", "fox"], dark=False, classes=3)
    from PIL import Image

    [prediction] = client.predict(Image.new("L", (50, 40), 255))
    assert (prediction.model_version, prediction.class_name, prediction.inverted) == (2, "cat", False)
    assert transport.sent[-1][0].shape == (1, 8, 8, 3)
    with pytest.raises(InvalidInputError, match=r"\(N, 8, 8, 3\)"):
        client.predict(np.zeros((28, 28), np.uint8))  # the array no longer fits: the user's to fix


def test_an_answer_from_another_version_is_named_by_that_version() -> None:
    """Unpinned requests go where the server sends them: the names are those of the version that answered."""
    transport = CannedTransport({1: Version((8, 8), FASHION), 2: Version((8, 8), [f"v2-{i}" for i in range(10)])})
    client = client_of(transport)
    client._latest = client.model_info(1)  # as if version 1 had been the latest when last asked
    [prediction] = client.predict(np.zeros((8, 8), np.uint8))
    assert (prediction.model_version, prediction.class_name) == (2, "v2-0")
    assert client.model_info().version == 2 and len(transport.sent) == 1  # same images: not sent again
