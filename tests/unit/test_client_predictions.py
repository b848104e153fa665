"""What ``FmtuneClient.predict`` makes of a transport's answer, without a server."""

import numpy as np
import pytest

from fmtune.client import FmtuneClient
from fmtune.client.errors import ServerError
from fmtune.client.transport import RawPrediction, Transport


class CannedTransport(Transport):
    def __init__(self, answer: RawPrediction):
        super().__init__("canned", "fmtune")
        self.answer = answer

    def predict(self, batch: np.ndarray, version: int | None, timeout: float) -> RawPrediction:
        return self.answer

    def status(self, version, timeout):  # type: ignore[no-untyped-def]
        raise NotImplementedError

    def metadata(self, version, timeout):  # type: ignore[no-untyped-def]
        raise NotImplementedError


def client_answering(probabilities: np.ndarray, class_ids: np.ndarray) -> FmtuneClient:
    client = FmtuneClient("127.0.0.1:1")
    client._transport = CannedTransport(RawPrediction(probabilities, class_ids, 7))
    return client


def test_predictions_carry_plain_python_values() -> None:
    probabilities = np.full((2, 10), 0.05, np.float32)
    probabilities[0, 3], probabilities[1, 9] = 0.55, 0.55
    [first, second] = client_answering(probabilities, np.array([3, 9])).predict(np.zeros((2, 28, 28), np.uint8))
    assert (first.class_id, first.class_name, second.class_name) == (3, "Dress", "Ankle boot")
    assert type(first.class_id) is int and all(type(p) is float for p in first.probabilities)
    assert first.confidence == pytest.approx(0.55) and first.model_version == 7
    assert first.model_dump()["probabilities"][3] == pytest.approx(0.55)


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
