"""Ordered failover boot (seed 0054): the firmware tries the boot list in order.

A machine's maintenance boot list names three install-VG disks (each with its
own boot copy and GRUB, served read-only over NBD).  It boots from the first;
with the first disk blank it boots from the second; with the second dead too
it boots from the third.  The list order, not the disk order, decides.

The failover runs under UEFI (OVMF tries every boot option in BootOrder, which
QEMU sets from the bootindex).  SeaBIOS tries only the first hard disk of the
boot order (it maps one disk to 0x80 and adds one hard-disk boot entry), so
under BIOS the list order is proven but not the failover.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from flowhelp import BOOT_OK, boot, demo_fabric, machine, require_qemu

pytestmark = [pytest.mark.qemu, pytest.mark.slow]


@pytest.fixture(scope="module")
def fabric(tmp_path_factory):
    require_qemu()
    return demo_fabric(tmp_path_factory.mktemp("failover") / "fabric", disks=3, targets=0)


def _copy(console: str) -> str:
    return re.search(BOOT_OK, console).group(1)


def test_boot_order_and_failover(fabric, tmp_path):
    d = [l.wwn for l in fabric.luns[:3]]
    regf = tmp_path / "reg.db"
    # the list order drives the firmware: the third disk first
    machine(regf, "fo", "maintenance", [d[2], d[0], d[1]])
    assert _copy(boot(fabric.root, regf, "fo", "maintenance", BOOT_OK, tmp_path / "v0")) == d[2]

    machine(regf, "fo", "maintenance", d)
    assert _copy(boot(fabric.root, regf, "fo", "maintenance", BOOT_OK, tmp_path / "v1", firmware="uefi")) == d[0]

    # first disk blank: no MBR, no GPT, no boot code -> the firmware goes on to the second
    with open(fabric.luns[0].path, "r+b") as f:
        f.write(bytes(1 << 20))
    console = boot(fabric.root, regf, "fo", "maintenance", BOOT_OK, tmp_path / "v2", firmware="uefi")
    assert _copy(console) == d[1]
    assert f"GRUB on disk {d[1]}" in console
    assert re.search(r"failed to load Boot0001", console)

    # second disk dead too (all zeros) -> the third
    size = fabric.luns[1].path.stat().st_size
    with open(fabric.luns[1].path, "r+b") as f:
        f.truncate(0)
        f.truncate(size)
    console = boot(fabric.root, regf, "fo", "maintenance", BOOT_OK, tmp_path / "v3", firmware="uefi")
    assert _copy(console) == d[2]
    assert f"GRUB on disk {d[2]}" in console
