"""Where the coordinator's dashboard listens.

Loopback on one machine; in a pod, the pod's IP (the chart passes it from the downward API).
Like the oracle's address, this is where a process runs, not part of the experiment, so it comes
from the environment: ``FMTUNE_DASHBOARD_HOST`` (default 127.0.0.1) and ``FMTUNE_DASHBOARD_PORT``
(default 0: any free port; ``off`` turns the dashboard off). A ``dashboard`` section in the
config (enabled, host, port), where there is one, is the default under them.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

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


def resolve(cfg: Any = None, environ: Mapping[str, str] | None = None) -> Placement:
    """The config's dashboard section (if it has one), under the environment's.

    >>> resolve(environ={"FMTUNE_DASHBOARD_PORT": "8080"})
    Placement(enabled=True, host='127.0.0.1', port=8080)
    >>> resolve(environ={"FMTUNE_DASHBOARD_PORT": "off"}).enabled
    False
    """
    env = os.environ if environ is None else environ
    section = getattr(cfg, "dashboard", None)
    enabled = bool(getattr(section, "enabled", True))
    host = str(getattr(section, "host", None) or "127.0.0.1")
    port = int(getattr(section, "port", 0) or 0)
    host = env.get(HOST_VAR) or host
    raw = env.get(PORT_VAR, "").strip()
    if raw.lower() in OFF:
        enabled = False
    elif raw:
        if not raw.isdigit() or int(raw) > 65535:
            raise PlacementError(f"{PORT_VAR} must be a port number (0: any free one) or 'off', got {raw!r}")
        port = int(raw)
    return Placement(enabled, host, port)
