"""The container's CPU limit and the GPU check, on fake cgroup trees and fake device lists."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from fmtune import devices
from fmtune.devices import DeviceError, check_gpu, cpu_limit, gpu_required, tensorflow_threads


def cgroup_v2(root: Path, cpu_max: str) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "cpu.max").write_text(cpu_max + "\n")
    return root


def cgroup_v1(root: Path, quota: int, period: int = 100_000, controller: str = "cpu") -> Path:
    folder = root / controller
    folder.mkdir(parents=True)
    (folder / "cpu.cfs_quota_us").write_text(f"{quota}\n")
    (folder / "cpu.cfs_period_us").write_text(f"{period}\n")
    return root


@pytest.mark.parametrize(
    ("cpu_max", "limit"), [("200000 100000", 2.0), ("150000 100000", 1.5), ("50000 100000", 0.5), ("max 100000", None)]
)
def test_cgroup_v2_limit(tmp_path: Path, cpu_max: str, limit: float | None) -> None:
    assert cpu_limit(cgroup_v2(tmp_path, cpu_max)) == limit


@pytest.mark.parametrize("controller", ["cpu", "cpu,cpuacct"])
def test_cgroup_v1_limit(tmp_path: Path, controller: str) -> None:
    assert cpu_limit(cgroup_v1(tmp_path / "a", 300_000, controller=controller)) == 3.0
    assert cpu_limit(cgroup_v1(tmp_path / "b", -1, controller=controller)) is None


def test_no_cgroup_files_means_no_limit(tmp_path: Path) -> None:
    assert cpu_limit(tmp_path) is None


@pytest.mark.parametrize("cpu_max", ["lots 100000", "²00000 100000", "100000 0"])
def test_unreadable_cgroup_file_is_a_clear_error(tmp_path: Path, cpu_max: str) -> None:
    with pytest.raises(DeviceError, match=r"cannot read a CPU quota or period from .*cpu\.max"):
        cpu_limit(cgroup_v2(tmp_path, cpu_max))


def test_threads_follow_the_cpu_limit_not_the_node(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(devices, "available_cpus", lambda: 64)
    assert tensorflow_threads(0, cgroup_v2(tmp_path / "two", "200000 100000")) == 2
    assert tensorflow_threads(0, cgroup_v2(tmp_path / "half", "50000 100000")) == 1
    assert tensorflow_threads(0, cgroup_v2(tmp_path / "odd", "150000 100000")) == 2
    assert tensorflow_threads(0, cgroup_v2(tmp_path / "none", "max 100000")) == 64
    assert tensorflow_threads(5, cgroup_v2(tmp_path / "asked", "200000 100000")) == 5  # an explicit count wins


def test_threads_never_exceed_the_cpus_available(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(devices, "available_cpus", lambda: 4)
    assert tensorflow_threads(0, cgroup_v2(tmp_path, "1600000 100000")) == 4


def test_available_cpus_is_this_process_affinity() -> None:
    assert 1 <= devices.available_cpus() <= (os.cpu_count() or 1)


@pytest.mark.parametrize(("value", "required"), [("1", True), ("true", True), ("0", False), ("", False)])
def test_gpu_required_reads_the_variable(value: str, required: bool) -> None:
    assert gpu_required({"FMTUNE_REQUIRE_GPU": value}) is required
    assert gpu_required({}) is False


def test_a_misspelt_requirement_is_refused() -> None:
    with pytest.raises(DeviceError, match="FMTUNE_REQUIRE_GPU must be 1 or 0, got 'ture'"):
        gpu_required({"FMTUNE_REQUIRE_GPU": "ture"})


def test_required_gpu_missing_fails_with_a_message() -> None:
    with pytest.raises(DeviceError, match=r"TensorFlow sees no GPU.*/usr/local/nvidia/lib64"):
        check_gpu([], {"FMTUNE_REQUIRE_GPU": "1"})


def test_required_gpu_present_passes() -> None:
    check_gpu(["PhysicalDevice(name='/physical_device:GPU:0', device_type='GPU')"], {"FMTUNE_REQUIRE_GPU": "1"})


def test_no_gpu_needed_when_none_was_asked_for() -> None:
    check_gpu([], {})
    check_gpu([], {"FMTUNE_REQUIRE_GPU": "0"})


def test_tensorflow_is_not_imported_unless_a_device_list_is_needed() -> None:
    code = (
        "import sys; from fmtune import devices; devices.check_gpu(environ={}); devices.tensorflow_threads(); "
        "assert 'tensorflow' not in sys.modules, 'tensorflow imported'"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr


@pytest.mark.parametrize(
    ("flags", "native"),
    [
        ("fpu avx2 avx512f avx512_bf16 avx512_vnni", True),
        ("fpu avx2 amx_bf16 amx_tile", True),
        ("fpu avx2 avx512f avx512bw", False),  # AVX-512 alone: bfloat16 emulated, slower than float32
        ("", False),
    ],
)
def test_auto_precision_is_bfloat16_only_where_the_cpu_computes_it(tmp_path: Path, flags: str, native: bool) -> None:
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(f"processor\t: 0\nmodel name\t: x\nflags\t\t: {flags}\n\nprocessor\t: 1\nflags\t\t: {flags}\n")
    assert devices.native_bfloat16(cpuinfo) is native
    assert devices.precision("auto", cpuinfo) == ("mixed_bfloat16" if native else "float32")
    assert devices.precision("float32", cpuinfo) == "float32"
    assert devices.precision("mixed_bfloat16", cpuinfo) == "mixed_bfloat16"


def test_a_machine_without_cpuinfo_keeps_float32(tmp_path: Path) -> None:
    assert devices.precision("auto", tmp_path / "absent") == "float32"
