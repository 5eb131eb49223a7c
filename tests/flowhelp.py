"""Helpers for the flow tests (install, recover, failover, many machines)."""

from __future__ import annotations

import hashlib
import os
import re
import shutil
from pathlib import Path

import pytest

from core import demo, ext4, gpt, vg, vm
from core import fabric as fab
from core import registry as reg
from core.disk import Disk, DiskRef

READY = r"SANBOS-BOS-READY"
BOOT_OK = r"SANBOS BOOT OK copy=(\S+)"


def require_qemu() -> None:
    for t in ("qemu-system-x86_64", "qemu-nbd", "grub-mkimage", "mke2fs", "dpkg-deb"):
        if shutil.which(t) is None:
            pytest.skip(f"{t} is not installed (scripts/setup.sh installs it)")


def demo_fabric(root: Path, disks: int = 3, targets: int = 4, size: int = 256 << 20) -> fab.Fabric:
    return demo.create_demo(root, disks=disks, size=size, targets=targets, progress=None)


def sha256_file(path: str | os.PathLike[str]) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for b in iter(lambda: f.read(1 << 20), b""):
            h.update(b)
    return h.hexdigest()


def sha256_range(path: str | os.PathLike[str], offset: int, length: int) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        f.seek(offset)
        left = length
        while left:
            b = f.read(min(left, 1 << 20))
            if not b:
                break
            h.update(b)
            left -= len(b)
    return h.hexdigest()


def lv_target(lun: fab.Lun, lv: str, vg_name: str = "rootvg") -> ext4.Target:
    with vg.open_vg(vg_name, [DiskRef(lun.wwn, lun.path)], write=False) as v:
        p, off, n = v.lv_ranges(lv)[0]
    return ext4.Target(Path(p), off, n, name=f"{vg_name}/{lv}")


def partitions(path: Path) -> dict[str, gpt.Partition]:
    with Disk(path) as d:
        return {p.kind: p for p in gpt.read_table(d)}


def machine(registry: Path, mid: str, mode: str, boot: list[str], rootvg: list[str] = ()) -> None:
    r = reg.Registry(registry)
    try:
        if not r.has_machine(mid):
            r.add_machine(mid, mid, mode, actor="test")
        r.set_list(mid, "boot", list(boot), mode=mode, actor="test")
        r.set_list(mid, "rootvg", list(rootvg), actor="test")
    finally:
        r.close()


def boot(fabric: Path, registry: Path, mid: str, mode: str, pattern: str, work: Path,
         timeout: float = 300, firmware: str = "bios") -> str:
    """Start the machine, wait for ``pattern`` on its console, stop it (by PID); the console text."""
    rm = vm.start_machine(mid, mode, fabric=fabric, registry=registry, serial="log", work_dir=work,
                          firmware=firmware)
    try:
        return rm.wait_for(pattern, timeout=timeout)
    finally:
        rm.stop()


def file_block(t: ext4.Target, path: str, n: int = 3) -> int:
    """Byte offset (in the disk image) of the ``n``-th block of a file."""
    blk = int(ext4.debugfs(t, f"bmap {path} {n}").strip().split()[-1])
    bs = int([l for l in ext4.debugfs(t, "stats").splitlines() if l.startswith("Block size:")][0].split()[-1])
    return t.offset + blk * bs


def flip(path: str | os.PathLike[str], offset: int, data: bytes = b"\xde\xad\xbe\xef" * 4) -> None:
    with open(path, "r+b") as f:
        f.seek(offset)
        old = f.read(len(data))
        f.seek(offset)
        f.write(bytes(a ^ 0xFF for a in old) if old == data else data)
