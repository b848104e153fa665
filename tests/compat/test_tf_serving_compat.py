"""Every family's export loads and predicts the same under the TensorFlow of the chart's pinned
``tensorflow/serving`` image.

TensorFlow reads SavedModels written by older releases, not always by newer ones (a newer exporter
can emit ops an older server has not registered), and training exports with a newer TensorFlow than
the serving image's. So each family is exported here, then loaded in a separate venv holding that
image's TensorFlow release: in a v1 Session from its signature_def, as TF Serving's C++
SavedModelBundle runs it, and with ``tf.saved_model.load``. Both must give this environment's
predictions. The venv is kept in ``.tools/`` and reused; ``FMTUNE_TF_SERVING_TAG`` checks another tag.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
import yaml

from fmtune import export
from fmtune.config import SearchConfig
from fmtune.models.families import FAMILIES
from fmtune.models.plugins import build_from_values

from ..integration.helpers import tiny_card

pytestmark = pytest.mark.timeout(1800)
REPO = Path(__file__).resolve().parents[2]
INSTALL_SECONDS = 1500
LOAD_IN_THAT_TF = r"""
import sys
import numpy as np
import tensorflow as tf

images = np.load(sys.argv[1])
results = {"version": np.array(tf.__version__)}
def plain(value):  # strings as text, so that np.load needs no pickle
    return np.char.decode(value.astype(bytes)) if value.dtype == object else value

for family, path in zip(sys.argv[3::2], sys.argv[4::2]):
    signatures = tf.saved_model.load(path).signatures
    for key in ("serving_default", "fmtune_card"):
        batch = images if key == "serving_default" else images[:1]
        for name, value in signatures[key](image=tf.constant(batch)).items():
            results[f"{family}/v2/{key}/{name}"] = plain(value.numpy())
    with tf.compat.v1.Session(graph=tf.Graph()) as session:
        meta = tf.compat.v1.saved_model.loader.load(session, ["serve"], path)
        for key in ("serving_default", "fmtune_card"):
            signature = meta.signature_def[key]
            batch = images if key == "serving_default" else images[:1]
            fetches = {name: info.name for name, info in signature.outputs.items()}
            for name, value in session.run(fetches, {signature.inputs["image"].name: batch}).items():
                results[f"{family}/session/{key}/{name}"] = plain(np.asarray(value))
np.savez(sys.argv[2], **results)
"""


def pinned_tag() -> str:
    values = yaml.safe_load((REPO / "helm" / "values.yaml").read_text())
    return os.environ.get("FMTUNE_TF_SERVING_TAG") or str(values["serving"]["image"]["tag"])


def python_with_tensorflow(version: str) -> Path:
    """A venv holding only ``tensorflow-cpu==version`` (TF Serving X.Y.Z is built from TensorFlow X.Y.Z)."""
    venv = REPO / ".tools" / f"tensorflow-{version}"
    python, stamp = venv / "bin" / "python", venv / ".installed"
    if not stamp.is_file():
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True, timeout=300)
        done = subprocess.run(
            [str(python), "-m", "pip", "install", "--quiet", "--progress-bar", "off", f"tensorflow-cpu=={version}"],
            capture_output=True,
            text=True,
            timeout=INSTALL_SECONDS,
        )
        assert done.returncode == 0, done.stderr[-3000:]
        stamp.touch()
    return python


def test_every_family_predicts_the_same_under_the_serving_images_tensorflow(tmp_path: Path) -> None:
    version = pinned_tag()
    python = python_with_tensorflow(version)
    images = np.random.default_rng(0).integers(0, 256, (16, 28, 28), dtype=np.uint8)
    expected: dict[str, dict[str, np.ndarray]] = {}
    argv: list[str] = []
    for family in sorted(FAMILIES):
        model, _ = build_from_values(SearchConfig(family=family), {}, (28, 28), 10)
        _, path = export.publish(model, tmp_path / "models", tiny_card(f"compat-{family}", family, {}))
        fn = tf.saved_model.load(str(path)).signatures["serving_default"]
        expected[family] = {k: v.numpy() for k, v in fn(image=tf.constant(images)).items()}
        argv += [family, str(path)]
    np.save(tmp_path / "images.npy", images)
    done = subprocess.run(
        [str(python), "-c", LOAD_IN_THAT_TF, str(tmp_path / "images.npy"), str(tmp_path / "out.npz"), *argv],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "CUDA_VISIBLE_DEVICES": ""},
    )
    assert done.returncode == 0, f"TensorFlow {version} could not load the exports:\n{done.stderr[-4000:]}"
    got = np.load(tmp_path / "out.npz")
    assert str(got["version"]) == version
    for family, outputs in expected.items():
        probabilities = outputs["probabilities"]
        top2 = np.sort(probabilities, axis=1)[:, -2:]
        clear = top2[:, 1] - top2[:, 0] > 1e-4  # where the top class is not a near tie
        for loader in ("v2", "session"):
            theirs = got[f"{family}/{loader}/serving_default/probabilities"]
            assert np.allclose(theirs, probabilities, atol=1e-5), (family, loader, np.abs(theirs - probabilities).max())
            ids = got[f"{family}/{loader}/serving_default/class_id"]
            assert np.array_equal(ids[clear], outputs["class_id"][clear]), (family, loader)
            # The card signature, as TF Serving runs it: constants, whatever the image.
            names = got[f"{family}/{loader}/fmtune_card/class_names"]
            assert names.tolist() == tiny_card().class_names, (family, loader)
            assert got[f"{family}/{loader}/fmtune_card/dark_background"].item() is False, (family, loader)
