"""Shared fixtures: fabrics of disk images, loop devices released by name."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Callable, Iterator

import pytest

from core import fabric as fab

ROOT = Path(__file__).resolve().parent.parent
SHOTS = ROOT / "screenshots"


def require_tool(*names: str) -> None:
    """Skip (saying why) when a system tool is truly absent."""
    for name in names:
        if shutil.which(name) is None and not Path(name).exists():
            pytest.skip(f"{name} is not installed on this machine (scripts/setup.sh installs it)")


def require_root() -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root for loop devices / real LVM2 (CI runs as root)")
    if not Path("/dev/loop-control").exists():
        pytest.skip("no /dev/loop-control: this kernel has no loop devices")


@pytest.fixture
def make_fabric(tmp_path: Path) -> Callable[..., fab.Fabric]:
    """``make_fabric(disks=4, size=64 MiB)`` -> a new fabric under tmp_path."""
    counter = {"n": 0}

    def make(disks: int = 4, size: int = 64 * 1024 * 1024) -> fab.Fabric:
        counter["n"] += 1
        return fab.create(tmp_path / f"fabric{counter['n']}", disks, size)

    return make


@pytest.fixture
def loopdev() -> Iterator[Callable[..., str]]:
    """``loopdev(path, offset=0, size=None)`` attaches a loop device.

    Every device this fixture attached is detached by its exact name at
    teardown, even when the test fails.  Real LVM2 sees PVs inside GPT
    partitions only this way here (the kernel cannot scan partitions).
    """
    require_root()
    require_tool("losetup")
    attached: list[str] = []

    def attach(path: str | os.PathLike[str], offset: int = 0, size: int | None = None,
               readonly: bool = False) -> str:
        cmd = ["losetup", "-f", "--show", "--offset", str(offset)]
        if size is not None:
            cmd += ["--sizelimit", str(size)]
        if readonly:
            cmd.append("--read-only")
        cmd.append(str(path))
        dev = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.strip()
        attached.append(dev)
        return dev

    yield attach
    for dev in reversed(attached):
        subprocess.run(["losetup", "-d", dev], check=False, capture_output=True)


def lvm_cmd(*args: str, devices: list[str] | None = None, check: bool = True) -> subprocess.CompletedProcess:
    """Run real LVM2 with activation off and only the given devices visible.

    Uses a throw-away config so the host's own disks and devices file never
    matter.
    """
    require_root()
    require_tool("lvm")
    cfg = ["devices { use_devicesfile = 0 obtain_device_list_from_udev = 0 scan_lvs = 0 ",
           "global { use_lvmlockd = 0 } ",
           "activation { udev_sync = 0 udev_rules = 0 monitoring = 0 }"]
    if devices is not None:
        pattern = ", ".join(f'"a|^{d}$|"' for d in devices) + ', "r|.*|"'
        cfg[0] += f"filter = [ {pattern} ] global_filter = [ {pattern} ] "
    cfg[0] += "}"
    env = dict(os.environ, LVM_SUPPRESS_FD_WARNINGS="1")
    cmd = ["lvm", args[0], "--config", " ".join(cfg), *args[1:]]
    res = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if check and res.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed ({res.returncode}):\n{res.stdout}\n{res.stderr}")
    return res
