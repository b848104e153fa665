"""Domain types of the SDK: what a prediction, a model status and model metadata are."""

from __future__ import annotations

from pydantic import BaseModel, Field


class Prediction(BaseModel):
    class_id: int
    class_name: str
    probabilities: list[float]
    model_version: int

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
