"""Where the coordinator's dashboard listens.

Loopback on one machine; in a pod, the pod's IP (the chart passes it from the downward API).
Like the oracle's address, this is where a process runs, not part of the experiment, so it comes
from the environment: ``FMTUNE_DASHBOARD_HOST`` (default 127.0.0.1) and ``FMTUNE_DASHBOARD_PORT``
(default 0: any free port; ``off`` turns the dashboard off). The experiment's config has no say.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

HOST_VAR = "FMTUNE_DASHBOARD_HOST"
PORT_VAR = "FMTUNE_DASHBOARD_PORT"
OFF = ("off", "false", "no")


class PlacementError(ValueError):
    """The dashboard's address in the environment cannot be used."""


@dataclass(frozen=True)
class Placement:
    enabled: bool = True
    host: str = "127.0.0.1"
    port: int = 0


def resolve(environ: Mapping[str, str] | None = None) -> Placement:
    """The dashboard's address in the environment (``os.environ`` unless given).

    >>> resolve(environ={"FMTUNE_DASHBOARD_PORT": "8080"})
    Placement(enabled=True, host='127.0.0.1', port=8080)
    >>> resolve(environ={"FMTUNE_DASHBOARD_PORT": "off"}).enabled
    False
    """
    env = os.environ if environ is None else environ
    host = env.get(HOST_VAR) or Placement.host
    raw = env.get(PORT_VAR, "").strip()
    if raw.lower() in OFF:
        return Placement(False, host)
    if raw and (not raw.isdigit() or int(raw) > 65535):
        raise PlacementError(f"{PORT_VAR} must be a port number (0: any free one) or 'off', got {raw!r}")
    return Placement(True, host, int(raw or 0))


def pinned(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The dashboard's address for a launcher to hand its coordinator, as environment variables:
    a free port chosen now when any would do, so that the launcher can print the address at once."""
    from fmtune.tuning.roles import free_port

    where = resolve(environ=environ)
    if not where.enabled:
        return {PORT_VAR: "off"}
    return {HOST_VAR: where.host, PORT_VAR: str(where.port or free_port())}
