"""The gRPC metadata keys on the oracle's calls, beside what Keras Tuner's protocol carries."""

AUTHORIZATION = "authorization"
"""``Bearer <token>``: the experiment's token (``fmtune.tuning.auth``), on every call."""

CALLER = "fmtune-tuner-id"
"""The worker's tuner id, on every call, so the chief knows who reports what."""

MESSAGE = "fmtune-message-bin"
"""A failed trial's error, on EndTrial: Keras Tuner's Trial proto has no field for it."""
