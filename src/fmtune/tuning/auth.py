"""Who may call the coordinator's Oracle service, and as whom.

The experiment has one secret: ``FMTUNE_ORACLE_TOKEN`` when set (``fmtune tune`` makes a random
one for each run), else the file named by ``FMTUNE_ORACLE_TOKEN_FILE``, else ``oracle-token`` in
the experiment's directory, made at the coordinator's first start (readable by its owner alone).
Only the coordinator (and an operator's tools) should hold it.

A worker holds a credential of its own instead, ``HMAC-SHA256(secret, tuner id)``
(``worker_credential``), given to it as ``FMTUNE_WORKER_CREDENTIAL`` or in the file named by
``FMTUNE_WORKER_CREDENTIAL_FILE``. Every call carries the caller's tuner id (``fmtune-tuner-id``)
and ``authorization: Bearer <credential>``; ``TokenCheck`` lets a call through only if the
credential is the one of the id it names (or the secret itself), so a worker cannot act as another:
the id the servicer reads is one the caller proved. A worker that finds the secret (a shared work
dir with its file) derives its own credential from it, and sends only that.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import logging
import os
import secrets
import sys
import time
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any

import grpc

from fmtune.layout import ExperimentDir
from fmtune.tuning.headers import AUTHORIZATION, CALLER
from fmtune.tuning.roles import RoleError, check_worker_id

log = logging.getLogger("fmtune")
TOKEN_ENV = "FMTUNE_ORACLE_TOKEN"
TOKEN_FILE_ENV = "FMTUNE_ORACLE_TOKEN_FILE"
CREDENTIAL_ENV = "FMTUNE_WORKER_CREDENTIAL"
CREDENTIAL_FILE_ENV = "FMTUNE_WORKER_CREDENTIAL_FILE"
SECRET_VARS = frozenset({TOKEN_ENV, TOKEN_FILE_ENV, CREDENTIAL_ENV, CREDENTIAL_FILE_ENV})
MAX_LOGGED = 1000  # distinct refusals logged; more are counted by the caller's callback only


class TokenFileError(RuntimeError):
    """The token file exists but cannot be read: the coordinator cannot know the secret."""


def new_token() -> str:
    return secrets.token_urlsafe(32)


def worker_credential(secret: str, tuner_id: str) -> str:
    """The credential of worker ``tuner_id``: only the secret's holder can make it for any id.

    >>> worker_credential("s", "tuner0") == worker_credential("s", "tuner0") != worker_credential("s", "tuner1")
    True
    """
    return hmac.new(secret.encode(), b"fmtune-worker:" + tuner_id.encode(), hashlib.sha256).hexdigest()


def _env(environ: Mapping[str, str] | None) -> Mapping[str, str]:
    return os.environ if environ is None else environ


def token_path(experiment_dir: Path, environ: Mapping[str, str] | None = None) -> Path:
    """Where the coordinator keeps the secret: ``FMTUNE_ORACLE_TOKEN_FILE``, else the work dir's
    ``oracle-token`` (on Kubernetes, a path on the volume that workers' containers do not mount)."""
    named = _env(environ).get(TOKEN_FILE_ENV)
    return Path(named) if named else ExperimentDir(experiment_dir).token


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip() or None
    except FileNotFoundError:
        return None


def token(experiment_dir: Path, environ: Mapping[str, str] | None = None) -> str | None:
    """The experiment's secret if this process can see it: the environment's, else the file's."""
    given = _env(environ).get(TOKEN_ENV)
    if given:
        return given
    try:
        return _read(token_path(experiment_dir, environ))
    except OSError:
        return None


def credential(tuner_id: str, experiment_dir: Path, environ: Mapping[str, str] | None = None) -> str | None:
    """What worker ``tuner_id`` presents: its own credential as given, else one derived from the
    secret if it can see it (a shared work dir), else None."""
    env = _env(environ)
    if env.get(CREDENTIAL_ENV):
        return env[CREDENTIAL_ENV]
    if env.get(CREDENTIAL_FILE_ENV):
        with contextlib.suppress(OSError):
            return _read(Path(env[CREDENTIAL_FILE_ENV]))
        return None
    secret = token(experiment_dir, environ)
    return None if secret is None else worker_credential(secret, tuner_id)


def coordinator_token(experiment_dir: Path, environ: Mapping[str, str] | None = None) -> str:
    """The secret the coordinator checks against: the environment's, else the one in its file,
    made at its first start (so a restarted coordinator keeps it).

    The file is written whole under a random name, flushed to disk, then linked to its name,
    which fails if another coordinator made one meanwhile: that one is used. An empty file (left
    by a crash between creating and writing it, as versions before this one could) holds no
    secret anyone can be using, so it is replaced; an unreadable one raises TokenFileError."""
    given = _env(environ).get(TOKEN_ENV)
    if given:
        return given
    path = token_path(experiment_dir, environ)
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    for _ in range(3):
        try:
            found = _read(path)
        except OSError as exc:
            raise TokenFileError(
                f"cannot read the oracle token file {path}: {exc.strerror or exc}; "
                f"give this process read access, or remove the file (workers then need new credentials)"
            ) from None
        if found:
            return found
        if path.exists():  # empty: a crash's leftover, not a secret
            log.warning(
                "the oracle token file %s is empty (an earlier start crashed while making it): replacing it", path
            )
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
        made = _write_new(path)
        if made is not None:
            return made
    raise TokenFileError(f"the oracle token file {path} keeps changing: is another coordinator starting?")


def _write_new(path: Path) -> str | None:
    """Make ``path`` hold a new secret, atomically; None if another process made it first."""
    made = new_token()
    temp = path.with_name(f".{path.name}.{secrets.token_hex(8)}")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w") as out:
            out.write(made)
            out.flush()
            os.fsync(out.fileno())
        try:
            os.link(temp, path)
        except FileExistsError:
            return None
        with contextlib.suppress(OSError):  # the name's entry on disk, not only the file's data
            directory = os.open(path.parent, os.O_RDONLY)
            try:
                os.fsync(directory)
            finally:
                os.close(directory)
        return made
    finally:
        with contextlib.suppress(FileNotFoundError):
            temp.unlink()


def call_metadata(token: str | None) -> tuple[tuple[str, str], ...]:
    """What a worker adds to every call (beside its tuner id)."""
    return () if token is None else ((AUTHORIZATION, f"Bearer {token}"),)


def _text(value: str | bytes) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else value


class TokenCheck(grpc.aio.ServerInterceptor):
    """Lets a call through only with ``authorization: Bearer <c>`` where ``c`` is the credential
    of the tuner id the call names, or the secret itself (the coordinator's and an operator's: it
    may name any id, or none). ``on_refused(who, reason)`` is told of each refusal (to count and
    log it); without one, each (who, reason) is logged once."""

    def __init__(self, token: str, on_refused: Callable[[str, str], None] | None = None):
        self._secret = token
        self._master = f"Bearer {token}".encode()
        self._on_refused = on_refused
        self._logged: set[tuple[str, str]] = set()

        async def refuse(request: Any, context: grpc.aio.ServicerContext) -> None:
            await context.abort(
                grpc.StatusCode.UNAUTHENTICATED,
                f"a valid credential for the tuner id sent is needed ({CREDENTIAL_ENV}, or {TOKEN_ENV})",
            )

        self._refusal = grpc.unary_unary_rpc_method_handler(refuse)

    def _valid(self, given: bytes, caller: str | None) -> bool:
        if hmac.compare_digest(given, self._master):
            return True
        if caller is None:
            return False
        expected = f"Bearer {worker_credential(self._secret, caller)}".encode()
        return hmac.compare_digest(given, expected)

    async def intercept_service(
        self, continuation: Callable[[Any], Awaitable[Any]], details: grpc.HandlerCallDetails
    ) -> Any:
        metadata = details.invocation_metadata or ()
        raw = next((v for k, v in metadata if k == AUTHORIZATION), "")
        caller = next((_text(v) for k, v in metadata if k == CALLER), None)
        given = raw.encode() if isinstance(raw, str) else raw
        if self._valid(given, caller):
            return await continuation(details)
        reason = "a wrong token" if given else "no token"
        who = (caller or "no tuner id")[:64]
        why = f"with {reason} (set {CREDENTIAL_ENV} on each worker, or {TOKEN_ENV})"
        if self._on_refused is not None:
            self._on_refused(who, why)
        elif (who, reason) not in self._logged and len(self._logged) < MAX_LOGGED:
            self._logged.add((who, reason))
            log.warning("refused %s from %s %s", details.method, who, why)
        return self._refusal


def _wait_for(path: Path, seconds: float) -> str:
    deadline = time.monotonic() + seconds
    while True:
        with contextlib.suppress(OSError):
            found = _read(path)
            if found:
                return found
        if time.monotonic() >= deadline:
            raise SystemExit(f"fmtune: no oracle token in {path} after {seconds:.0f}s: is the coordinator running?")
        time.sleep(1.0)


def main(argv: list[str] | None = None) -> None:
    """``python -m fmtune.tuning.auth SECRET_FILE TUNER_ID OUT [WAIT_SECONDS]``: write worker
    TUNER_ID's credential to OUT, once the coordinator has written its secret to SECRET_FILE. A
    Kubernetes worker's init container runs this, so the worker's own container (where the user's
    code runs) holds its credential and never the secret."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) not in (3, 4):
        raise SystemExit(main.__doc__)
    secret_file, tuner_id, out = Path(args[0]), args[1], Path(args[2])
    try:
        check_worker_id(tuner_id)
    except RoleError as exc:
        raise SystemExit(f"fmtune: {exc}") from None
    secret = _wait_for(secret_file, float(args[3]) if len(args) == 4 else 600.0)
    out.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(worker_credential(secret, tuner_id))


if __name__ == "__main__":
    main()
