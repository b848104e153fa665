"""The gRPC metadata keys on the oracle's calls, beside what Keras Tuner's protocol carries."""

AUTHORIZATION = "authorization"
"""``Bearer <credential>``: the worker's own credential, made from the experiment's secret and the
id in CALLER (``fmtune.tuning.auth``), on every call."""

CALLER = "fmtune-tuner-id"
"""The worker's tuner id, on every call, so the chief knows who reports what: its credential
proves it, and a call that changes the search without it is refused."""

MESSAGE = "fmtune-message-bin"
"""A failed trial's error, on EndTrial: Keras Tuner's Trial proto has no field for it."""
