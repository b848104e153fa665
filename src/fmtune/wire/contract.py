"""The serving contract shared by the exporter, the built-in server and the client SDK.

A leaf module with no TensorFlow (or any fmtune) import, so the TF-free client can use it.
"""

from __future__ import annotations

import re

SIGNATURE = "serving_default"
"""The signature every exported model serves and every client calls."""

INPUT = "image"
"""The signature's one input: uint8 images ``[None, 28, 28]``."""

MAX_MESSAGE_BYTES = 64 * 1024 * 1024
"""The largest gRPC message and REST body either side sends or accepts.

It also bounds what one decoded input tensor may occupy, so a small request that declares a huge
shape is refused before anything is allocated.
"""

VERSION_NAME = re.compile("[0-9]+")
"""A version directory's name in the model repository. ASCII digits only: ``str.isdigit`` also
takes names such as "²", which ``int`` then refuses."""
