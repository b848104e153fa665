"""Where the coordinator's dashboard listens.

Its own setting, apart from the oracle's address: loopback unless told otherwise, on one machine
and in a pod alike (``kubectl port-forward`` reaches a pod's loopback; the chart's
``dashboard.host`` opens it to the pod's network only when asked). Like the oracle's address, this
is where a process runs, not part of the experiment, so it comes from the environment (which
``fmtune tune --dashboard-host`` and the chart set): ``FMTUNE_DASHBOARD_HOST`` (default 127.0.0.1)
and ``FMTUNE_DASHBOARD_PORT`` (default 0: any free port; ``off`` turns the dashboard off). The
experiment's config has no say.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass

HOST_VAR = "FMTUNE_DASHBOARD_HOST"
PORT_VAR = "FMTUNE_DASHBOARD_PORT"
OFF = ("off", "false", "no")
HOST_NAME = re.compile(r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)(\.(?!-)[A-Za-z0-9-]{1,63}(?<!-))*")


class PlacementError(ValueError):
    """The dashboard's address in the environment cannot be used."""


@dataclass(frozen=True)
class Placement:
    enabled: bool = True
    host: str = "127.0.0.1"
    port: int = 0


def checked_host(host: str) -> str:
    """``host`` if it is an IP address or a host name to bind, else PlacementError.

    >>> checked_host("0.0.0.0"), checked_host("::1"), checked_host("localhost")
    ('0.0.0.0', '::1', 'localhost')
    >>> checked_host("127.0.0.1:8080")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    fmtune.dashboard.placement.PlacementError: ... must be an IP address or a host name (no port), got '127.0.0.1:8080'
    """
    with contextlib.suppress(ValueError):
        return str(ipaddress.ip_address(host))
    if len(host) <= 253 and HOST_NAME.fullmatch(host):
        return host
    raise PlacementError(f"{HOST_VAR} must be an IP address or a host name (no port), got {host!r}")


def resolve(environ: Mapping[str, str] | None = None) -> Placement:
    """The dashboard's address in the environment (``os.environ`` unless given).

    >>> resolve(environ={"FMTUNE_DASHBOARD_PORT": "8080"})
    Placement(enabled=True, host='127.0.0.1', port=8080)
    >>> resolve(environ={"FMTUNE_DASHBOARD_PORT": "off"}).enabled
    False
    """
    env = os.environ if environ is None else environ
    host = checked_host(env.get(HOST_VAR, "").strip() or Placement.host)
    raw = env.get(PORT_VAR, "").strip()
    if raw.lower() in OFF:
        return Placement(False, host)
    if raw and (not raw.isdigit() or int(raw) > 65535):
        raise PlacementError(f"{PORT_VAR} must be a port number (0: any free one) or 'off', got {raw!r}")
    return Placement(True, host, int(raw or 0))


def pinned(
    environ: Mapping[str, str] | None = None, host: str | None = None, avoid: Collection[int] = ()
) -> dict[str, str]:
    """The dashboard's address for a launcher to hand its coordinator, as environment variables:
    a free port chosen now when any would do (none in ``avoid``, the oracle's), so that the
    launcher can print the address at once. ``host`` (``fmtune tune --dashboard-host``) comes
    before the environment's."""
    from fmtune.tuning.roles import free_port

    env = dict(os.environ if environ is None else environ)
    if host is not None:
        env[HOST_VAR] = host
    where = resolve(environ=env)
    if not where.enabled:
        return {PORT_VAR: "off"}
    if where.port in avoid:
        raise PlacementError(f"{PORT_VAR}={where.port} is the port of the run's oracle; choose another")
    return {HOST_VAR: where.host, PORT_VAR: str(where.port or free_port(avoid=avoid))}
