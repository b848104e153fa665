"""The serving contract shared by the exporter, the built-in server and the client SDK.

A leaf module with no TensorFlow (or any fmtune) import, so the TF-free client can use it.

An exported version has two signatures, both taking the one uint8 ``INPUT`` of the model's own
image shape, ``[None, H, W]`` (grayscale) or ``[None, H, W, C]``: ``SIGNATURE`` answers
``PROBABILITIES`` ``[None, K]`` and ``CLASS_ID`` ``[None]``; ``CARD_SIGNATURE`` ignores the image and
answers what a client needs to interpret those, as constants. A client learns H, W, C from
GetModelMetadata (``SIGNATURE``'s input) and K and the rest from one ``CARD_SIGNATURE`` predict on
a zero image, so it needs nothing but the server, whether TF Serving or fmtune's own.
"""

from __future__ import annotations

import re

SIGNATURE = "serving_default"
"""The signature every exported model serves and every client calls."""

INPUT = "image"
"""Both signatures' one input: uint8 images ``[None, H, W]`` or ``[None, H, W, C]``, the model's shape."""

PROBABILITIES = "probabilities"
"""``SIGNATURE``'s float32 ``[None, K]`` output: one probability per class."""

CLASS_ID = "class_id"
"""``SIGNATURE``'s int64 ``[None]`` output: the most probable class."""

CARD_SIGNATURE = "fmtune_card"
"""The signature that describes the model: its outputs are constants, the image is ignored."""

CLASS_NAMES = "class_names"
"""``CARD_SIGNATURE``'s string ``[K]`` output: the name of each class, in ``PROBABILITIES`` order."""

DARK_BACKGROUND = "dark_background"
"""``CARD_SIGNATURE``'s bool ``[]`` output: were the training images light objects on a dark
background (the MNIST family)? A client inverts light-background inputs only then."""

MAX_MESSAGE_BYTES = 64 * 1024 * 1024
"""The largest gRPC message and REST body either side sends or accepts.

It also bounds what one decoded input tensor may occupy, so a small request that declares a huge
shape is refused before anything is allocated.
"""

VERSION_NAME = re.compile("[0-9]+")
"""A version directory's name in the model repository. ASCII digits only: ``str.isdigit`` also
takes names such as "²", which ``int`` then refuses."""
