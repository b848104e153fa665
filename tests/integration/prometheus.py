"""A real Prometheus (Debian's package) on loopback, scraping the targets a test names, and its
HTTP query API."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import yaml

from .helpers import free_ports, ready_process

PROMETHEUS = Path("/usr/bin/prometheus")
SCRAPE_MS = 500


@dataclass
class Prometheus:
    url: str

    def query(self, expr: str) -> list[dict[str, Any]]:
        """The instant vector ``expr`` evaluates to now."""
        answer = httpx.get(f"{self.url}/api/v1/query", params={"query": expr}, timeout=10).json()
        assert answer["status"] == "success", answer
        return answer["data"]["result"]

    def value(self, expr: str) -> float | None:
        """The value of a one-series result (None while there is none)."""
        found = self.query(expr)
        assert len(found) <= 1, found
        return float(found[0]["value"][1]) if found else None

    def wait_for(self, expr: str, expected: float, timeout: float = 30) -> float:
        """Waits until ``expr`` is ``expected`` (scrapes come every SCRAPE_MS)."""
        deadline = time.monotonic() + timeout
        while (found := self.value(expr)) != expected:
            assert time.monotonic() < deadline, f"{expr} is {found} after {timeout}s, not {expected}"
            time.sleep(SCRAPE_MS / 2000)
        return found

    def targets(self) -> list[dict[str, Any]]:
        return httpx.get(f"{self.url}/api/v1/targets", timeout=10).json()["data"]["activeTargets"]


@contextmanager
def prometheus(tmp: Path, jobs: dict[str, tuple[str, str]]) -> Iterator[Prometheus]:
    """Prometheus scraping each job's (host:port, metrics path) every SCRAPE_MS."""
    if not PROMETHEUS.exists():
        raise AssertionError(f"{PROMETHEUS} is missing: run scripts/install-apt.sh prometheus=/usr/bin/prometheus")
    (port,) = free_ports(1)
    config = {
        "global": {"scrape_interval": f"{SCRAPE_MS}ms", "scrape_timeout": f"{SCRAPE_MS}ms"},
        "scrape_configs": [
            {"job_name": job, "metrics_path": path, "static_configs": [{"targets": [target]}]}
            for job, (target, path) in jobs.items()
        ],
    }
    tmp.mkdir(parents=True, exist_ok=True)
    (tmp / "prometheus.yml").write_text(yaml.safe_dump(config))
    url = f"http://127.0.0.1:{port}"
    argv = [
        str(PROMETHEUS),
        f"--config.file={tmp / 'prometheus.yml'}",
        f"--storage.tsdb.path={tmp / 'data'}",
        f"--web.listen-address=127.0.0.1:{port}",
    ]
    with ready_process(argv, tmp / "prometheus.log", f"{url}/-/ready", timeout=30):
        yield Prometheus(url)
