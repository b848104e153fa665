"""What a worker's container really has: its CPU limit, and the GPU it asked for.

TensorFlow sizes its thread pools from the node's core count, not from the container's CPU limit,
so a worker limited to 2 CPUs on a 64-core node runs 64 threads and is throttled. And a worker that
asked for a GPU but cannot load the driver silently trains on the CPU. Both are checked here.
TensorFlow is imported only when a device list is actually needed.
"""

from __future__ import annotations

import functools
import math
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path

CGROUP_ROOT = Path("/sys/fs/cgroup")
CPUINFO = Path("/proc/cpuinfo")
#: CPU flags of native bfloat16 arithmetic, which oneDNN uses for TensorFlow's bfloat16 kernels.
BFLOAT16_FLAGS = frozenset({"avx512_bf16", "amx_bf16"})
#: Set to 1 (the chart does, on workers with workers.gpu > 0) when a GPU is required.
REQUIRE_GPU = "FMTUNE_REQUIRE_GPU"
_TRUE, _FALSE = {"1", "true", "yes"}, {"", "0", "false", "no"}


class DeviceError(RuntimeError):
    """The container does not have the devices it was configured for."""


def cpu_limit(cgroup_root: Path = CGROUP_ROOT) -> float | None:
    """The container's CPU limit in CPUs, from cgroup v2 ``cpu.max`` or cgroup v1's CFS quota and
    period; None when there is no limit (or no cgroup file to read it from)."""
    v2 = cgroup_root / "cpu.max"
    if v2.is_file():
        quota, _, period = v2.read_text().strip().partition(" ")
        return None if quota == "max" else _number(quota, v2) / _number(period or "100000", v2)
    for v1 in (cgroup_root / "cpu", cgroup_root / "cpu,cpuacct"):
        quota_file, period_file = v1 / "cpu.cfs_quota_us", v1 / "cpu.cfs_period_us"
        if quota_file.is_file() and period_file.is_file():
            cfs_quota = _number(quota_file.read_text(), quota_file)
            return None if cfs_quota < 0 else cfs_quota / _number(period_file.read_text(), period_file)
    return None


def _number(text: str, source: Path) -> int:
    text = text.strip()
    if not re.fullmatch(r"-?[0-9]+", text) or int(text) == 0:
        raise DeviceError(f"cannot read a CPU quota or period from {source}: {text!r}")
    return int(text)


def available_cpus() -> int:
    """CPUs this process may run on (its affinity mask), else the machine's count."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def tensorflow_threads(requested: int = 0, cgroup_root: Path = CGROUP_ROOT) -> int:
    """TensorFlow threads to use: ``requested`` when positive, else the container's CPU limit rounded
    up (a limit of 1.5 CPUs still has work for 2 threads), never more than the CPUs available."""
    if requested > 0:
        return requested
    cpus = available_cpus()
    limit = cpu_limit(cgroup_root)
    return cpus if limit is None else max(1, min(cpus, math.ceil(limit)))


def gpu_required(environ: Mapping[str, str] | None = None) -> bool:
    """Whether ``FMTUNE_REQUIRE_GPU`` asks for a GPU. ``NVIDIA_VISIBLE_DEVICES`` is not used: GKE's
    device plugin does not set it, and CUDA base images set it to ``all`` even without a GPU."""
    value = (os.environ if environ is None else environ).get(REQUIRE_GPU, "").strip().lower()
    if value not in _TRUE | _FALSE:
        raise DeviceError(f"{REQUIRE_GPU} must be 1 or 0, got {value!r}")
    return value in _TRUE


def check_gpu(devices: Sequence[object] | None = None, environ: Mapping[str, str] | None = None) -> None:
    """Raise DeviceError when a GPU is required and TensorFlow lists none (``devices``: the GPUs
    TensorFlow sees; by default ``tf.config.list_physical_devices("GPU")``)."""
    if not gpu_required(environ):
        return
    if devices is None:
        import tensorflow as tf

        devices = tf.config.list_physical_devices("GPU")
    if not devices:
        raise DeviceError(
            f"{REQUIRE_GPU}=1 but TensorFlow sees no GPU, so this worker would train on the CPU. "
            "Check that the pod requests nvidia.com/gpu, that the node runs the NVIDIA driver and "
            "device plugin, that LD_LIBRARY_PATH includes /usr/local/nvidia/lib64 (GKE), and that "
            "the image has TensorFlow's CUDA libraries (tensorflow[and-cuda])."
        )


@functools.cache
def native_bfloat16(cpuinfo: Path = CPUINFO) -> bool:
    """Whether this CPU computes bfloat16 natively. Elsewhere TensorFlow emulates it, slower than
    float32, so ``auto`` precision keeps float32 there."""
    try:
        text = cpuinfo.read_text()
    except OSError:
        return False
    return any(
        BFLOAT16_FLAGS & set(line.partition(":")[2].split()) for line in text.splitlines() if line.startswith("flags")
    )


def precision(wanted: str, cpuinfo: Path = CPUINFO) -> str:
    """The Keras dtype policy for ``search.precision`` on this machine: ``auto`` is mixed_bfloat16
    where the CPU computes bfloat16 natively (figures: reports/precision.md), else float32."""
    if wanted != "auto":
        return wanted
    return "mixed_bfloat16" if native_bfloat16(cpuinfo) else "float32"
