"""Snapshot tests (pytest-textual-snapshot 1.1.0; plain ``def``, see textual-notes)."""

from __future__ import annotations

from pathlib import Path

from core.inventory import DiskInfo

from console.app import SanbosApp

MiB = 1024 * 1024


def fixed_disks() -> list[DiskInfo]:
    disks = []
    for i in range(12):
        wwn = f"naa.600a0b8000c0ffee{i:016x}"
        d = DiskInfo(id=wwn, path=Path(f"/srv/fabric/lun{i:02d}.img"), size=256 * MiB, wwn=wwn,
                     serial=f"SBC0FFEE{i:06d}", addresses=[f"fc-0x500a0b8000{i % 4:06x}-lun-{i}"])
        if i < 8:
            d.vg_name, d.membership = "instvg", "pv:instvg"
            d.boot_copy = "bad" if i == 3 else "ok"
            d.pv_uuid = f"Q1w2E3-r4T5-y6U7-i8O9-p0A1-s2D3-f4G5h{i}"
        disks.append(d)
    return disks


def test_boot_menu_snapshot(snap_compare):
    assert snap_compare(SanbosApp(disks=fixed_disks()), terminal_size=(80, 24))


def test_boot_menu_filtered_snapshot(snap_compare):
    assert snap_compare(SanbosApp(disks=fixed_disks()), terminal_size=(80, 24), press=["0", "5"])
