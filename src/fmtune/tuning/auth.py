"""A shared token that the coordinator's Oracle service asks of every caller.

Whoever reaches the oracle port could otherwise take trials and report results for them. The
token is ``FMTUNE_ORACLE_TOKEN`` when set (``fmtune tune`` makes a random one for each run);
otherwise the coordinator makes one at its first start and keeps it in the experiment's directory
(``oracle-token``, readable by its owner alone), where workers that share the work dir, as on
Kubernetes, read it. A caller on the network without it is refused UNAUTHENTICATED, and the
coordinator logs who was refused.
"""

from __future__ import annotations

import hmac
import logging
import os
import secrets
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any

import grpc

from fmtune.layout import ExperimentDir
from fmtune.tuning.headers import AUTHORIZATION

log = logging.getLogger("fmtune")
TOKEN_ENV = "FMTUNE_ORACLE_TOKEN"



def new_token() -> str:
    return secrets.token_urlsafe(32)


def token(experiment_dir: Path, environ: Mapping[str, str] | None = None) -> str | None:
    """The experiment's token, as a worker finds it: the environment's, else the coordinator's file."""
    given = (os.environ if environ is None else environ).get(TOKEN_ENV)
    if given:
        return given
    try:
        return ExperimentDir(experiment_dir).token.read_text().strip() or None
    except OSError:
        return None


def coordinator_token(experiment_dir: Path, environ: Mapping[str, str] | None = None) -> str:
    """The token the coordinator asks for: the environment's, else the one in its file, made at
    its first start (so a restarted coordinator keeps it)."""
    found = token(experiment_dir, environ)
    if found:
        return found
    experiment_dir.mkdir(parents=True, exist_ok=True)
    made = new_token()
    path = ExperimentDir(experiment_dir).token
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(made)
    return made


def call_metadata(token: str | None) -> tuple[tuple[str, str], ...]:
    """What a worker adds to every call."""
    return () if token is None else ((AUTHORIZATION, f"Bearer {token}"),)


class TokenCheck(grpc.aio.ServerInterceptor):
    """Lets a call through only with ``authorization: Bearer <token>``."""

    def __init__(self, token: str):
        self._expected = f"Bearer {token}".encode()

        async def refuse(request: Any, context: grpc.aio.ServicerContext) -> None:
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, f"a valid oracle token is needed ({TOKEN_ENV})")

        self._refusal = grpc.unary_unary_rpc_method_handler(refuse)

    async def intercept_service(
        self, continuation: Callable[[Any], Awaitable[Any]], details: grpc.HandlerCallDetails
    ) -> Any:
        given = next((v for k, v in details.invocation_metadata or () if k == AUTHORIZATION), "")
        if hmac.compare_digest(given.encode() if isinstance(given, str) else given, self._expected):
            return await continuation(details)
        reason = "a wrong token" if given else "no token"
        log.warning("refused %s with %s (set %s on the workers)", details.method, reason, TOKEN_ENV)
        return self._refusal
