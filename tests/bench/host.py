"""The host a benchmark ran on: runs on different CPUs are not comparable, and each record says which."""

from __future__ import annotations

import platform
from pathlib import Path


def cpu_model() -> str:
    """The CPU's model name, e.g. "AMD EPYC" (Linux's /proc/cpuinfo, else Python's guess)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.partition(":")[2].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"
