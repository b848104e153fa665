"""How much one request, and all of them together, may make the built-in server hold: the defaults
of ``fmtune serve``'s bounds, in a leaf module so the CLI can name them without loading TensorFlow.

A 2 GiB serving pod holds TensorFlow and a model (about 600 MB) besides these.
"""

from __future__ import annotations

MAX_ROWS = 256  # rows per model call: bounds the activations of one call
MAX_REQUEST_ROWS = 16384  # rows one request may ask for (a Fashion-MNIST test set of 10k fits)
MAX_QUEUED_BYTES = 256 * 1024 * 1024  # decoded inputs waiting or running, all requests together
# TensorFlow's shorthand of one value for a whole tensor turns a message of a few bytes into as
# many as its shape asks for; with this bound, 40 bytes cannot become a 64 MiB batch.
MAX_FILL_BYTES = 1024 * 1024
MAX_CONCURRENT_RPCS = 64  # gRPC calls in progress, as many as the REST API's connection threads
