"""Domain types of the SDK: what a prediction, a model status and model metadata are."""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import BaseModel, Field


class Prediction(BaseModel):
    class_id: int
    class_name: str
    probabilities: list[float]
    model_version: int
    inverted: bool = False  # sent as 255 - x (a light background, for a model of light-on-dark images)

    @property
    def confidence(self) -> float:
        return self.probabilities[self.class_id]


class VersionStatus(BaseModel):
    version: int
    state: str  # START, LOADING, AVAILABLE, UNLOADING, END (TF Serving's states)
    error_code: str = "OK"
    error_message: str = ""


class TensorSpec(BaseModel):
    dtype: str  # e.g. DT_UINT8
    shape: list[int] | None  # -1 for an unknown dimension; None for an unknown rank


class ModelMetadata(BaseModel):
    name: str
    version: int
    signature_name: str
    inputs: dict[str, TensorSpec]
    outputs: dict[str, TensorSpec]
    signatures: list[str] = Field(default_factory=list)


@dataclass(frozen=True)
class ModelInfo:
    """What the SDK must know of a served version to prepare its images and name its answers:
    read once per version, from ``GetModelMetadata`` and the ``fmtune_card`` signature.

    ``class_names`` is None for a model that serves no ``fmtune_card`` (exported by an fmtune
    before the card existed, or by hand): its predictions are named by their class id, and its
    images are inverted only when asked (``dark_background`` False).
    """

    version: int
    image_shape: tuple[int, ...]  # one image: (H, W) grayscale or (H, W, C); -1 for a size the model leaves open
    num_classes: int | None  # from the signature's probabilities [-1, K]; None if it leaves K open
    class_names: tuple[str, ...] | None = None
    dark_background: bool = False

    @property
    def channels(self) -> int:
        """1 for grayscale, else C."""
        return self.image_shape[2] if len(self.image_shape) == 3 else 1

    def name(self, class_id: int) -> str:
        return self.class_names[class_id] if self.class_names is not None else str(class_id)
