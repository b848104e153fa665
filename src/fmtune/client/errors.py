"""Typed errors of the client SDK; none of them carries a protobuf or a transport object."""

from __future__ import annotations


class FmtuneClientError(Exception):
    """Base class of every error the SDK raises."""


class InvalidInputError(FmtuneClientError, ValueError):
    """The images cannot be sent as they are (checked before sending), or the server rejected them."""


class ModelNotFoundError(FmtuneClientError, LookupError):
    """The server has no such model, or not that version of it."""


class ServerUnavailableError(FmtuneClientError, ConnectionError):
    """The server could not be reached (after retries with backoff)."""


class RequestTimeoutError(FmtuneClientError, TimeoutError):
    """The server did not answer within the timeout."""


class ServerError(FmtuneClientError, RuntimeError):
    """Any other failure the server reported."""
