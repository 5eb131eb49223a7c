"""Shared helpers for the boot tests: a demo boot image and a mirrored 4-disk install VG."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from core import bootcopy, bootimage, debparts, gpt
from core import fabric as fab
from core import vg as vgmod
from core.disk import Disk, DiskRef
from core.errors import SanbosError

VG = "inst-vg"   # a dash on purpose: GRUB device names double it
DISK_SIZE = 128 * 1024 * 1024


def demo_image(dest: Path) -> Path:
    """The demo boot image (skips when the Debian kernel cannot be had)."""
    try:
        k = debparts.kernel()
    except SanbosError as e:
        pytest.skip(f"Debian kernel not available (scripts/fetch-parts.sh): {e}")
    initrd = bootimage.demo_initrd(dest.parent / (dest.name + ".initrd"))
    bootimage.build(k.vmlinuz, initrd, None, dest)
    return dest


def install_vg(root: Path, image: Path, disks: int = 4, size: int = DISK_SIZE) -> tuple[fab.Fabric, list[DiskRef]]:
    """A fabric with an install VG (sanbos's own VG creation) and boot copies on every disk."""
    f = fab.create(root, disks, size)
    refs = [DiskRef(l.wwn, l.path) for l in f.luns]
    vgmod.create(VG, refs)
    bootcopy.mirror(VG, refs, image)
    return f, refs


def partitions(path: Path) -> dict[str, gpt.Partition]:
    with Disk(path) as d:
        return {p.kind: p for p in gpt.read_table(d)}


def leg_range(refs: list[DiskRef], leg: int) -> tuple[str, int, int]:
    with vgmod.open_vg(VG, refs, write=False) as vgo:
        pieces = vgo.lv_ranges(bootcopy.BOOT_LV, leg=leg)
    assert len(pieces) == 1
    return pieces[0]


def flip_byte(path: str | Path, offset: int) -> None:
    with open(path, "r+b") as f:
        f.seek(offset)
        b = f.read(1)
        f.seek(offset)
        f.write(bytes([b[0] ^ 0x5A]))


def sparse_copy(src: Path, dest: Path) -> Path:
    subprocess.run(["cp", "--sparse=always", str(src), str(dest)], check=True)
    return dest
