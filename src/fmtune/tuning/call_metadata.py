"""What fmtune's workers add to Keras Tuner's Oracle calls, as gRPC metadata."""

CALLER = "fmtune-tuner-id"
"""The worker's tuner id, on every call, so the chief knows who reports what."""

MESSAGE = "fmtune-message-bin"
"""A failed trial's error, on EndTrial: Keras Tuner's Trial proto has no field for it."""
