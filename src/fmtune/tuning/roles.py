"""Keras Tuner's environment contract for distributed search.

``KERASTUNER_TUNER_ID`` is ``chief`` for the coordinator and ``tuner<N>`` for workers (a worker id
must never contain "chief": Keras Tuner treats any such id as the chief). ``KERASTUNER_ORACLE_IP``
and ``KERASTUNER_ORACLE_PORT`` say where the chief listens (coordinator) or is reached (workers).
"""

from __future__ import annotations

import os
import re
import socket
from collections.abc import Collection, Mapping
from dataclasses import dataclass

TUNER_ID = "KERASTUNER_TUNER_ID"
ORACLE_IP = "KERASTUNER_ORACLE_IP"
ORACLE_PORT = "KERASTUNER_ORACLE_PORT"
CHIEF = "chief"
WORKER_ID = re.compile(r"^[A-Za-z0-9_.-]+$")


class RoleError(RuntimeError):
    """The environment does not describe a valid coordinator or worker."""


@dataclass(frozen=True)
class Role:
    tuner_id: str
    host: str
    port: int

    @property
    def is_chief(self) -> bool:
        return self.tuner_id == CHIEF

    @property
    def address(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    def env(self) -> dict[str, str]:
        return {TUNER_ID: self.tuner_id, ORACLE_IP: self.host, ORACLE_PORT: str(self.port)}


def worker_id(index: int) -> str:
    """The stable id of worker ``index`` (a pod's completion index, or a local process slot)."""
    return f"tuner{index}"


def check_worker_id(tuner_id: str) -> str:
    if CHIEF in tuner_id:
        raise RoleError(f"worker id '{tuner_id}' must not contain '{CHIEF}' (Keras Tuner would treat it as the chief)")
    if not WORKER_ID.match(tuner_id):
        raise RoleError(f"worker id '{tuner_id}' may only hold letters, digits, '.', '_' and '-'")
    return tuner_id


def from_env(expect_chief: bool, environ: Mapping[str, str] | None = None) -> Role:
    """Read and check the contract. The coordinator binds loopback unless told otherwise: in a pod
    it is given the pod's IP."""
    env = os.environ if environ is None else environ
    tuner_id = env.get(TUNER_ID, CHIEF if expect_chief else "")
    if expect_chief and tuner_id != CHIEF:
        raise RoleError(f"the coordinator needs {TUNER_ID}={CHIEF}, got '{tuner_id}'")
    if not expect_chief:
        if not tuner_id:
            raise RoleError(f"{TUNER_ID} is not set (workers need a stable id such as tuner0)")
        check_worker_id(tuner_id)
    host = env.get(ORACLE_IP, "127.0.0.1" if expect_chief else "")
    if not host:
        raise RoleError(f"{ORACLE_IP} is not set (the coordinator's address)")
    raw_port = env.get(ORACLE_PORT, "")
    if not raw_port.isdigit() or not 0 < int(raw_port) < 65536:
        raise RoleError(f"{ORACLE_PORT} must be a port number, got '{raw_port}'")
    return Role(tuner_id, host, int(raw_port))


def free_port(host: str = "127.0.0.1", avoid: Collection[int] = ()) -> int:
    """A port that is free right now and not in ``avoid`` (ports already chosen for another server
    of the same run, since the kernel may hand a port it just freed out again). gRPC binds with
    SO_REUSEPORT, so collisions would go unnoticed."""
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind((host, 0))
            port = int(sock.getsockname()[1])
        if port not in avoid:
            return port
