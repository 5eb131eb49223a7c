"""The disk listing: every disk with its unique ID, SAN identity, layout and membership.

On a fabric the disks are the manifest's LUNs; otherwise they are the
machine's block devices (``core.discover``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from . import fabric as fab
from .disk import DiskRef
from .ids import select


@dataclass
class PartInfo:
    number: int
    name: str
    start: int        # bytes from disk start
    size: int         # bytes
    kind: str         # "bios_grub", "esp", "lvm", "other"


@dataclass
class DiskInfo:
    """One disk as the listing shows it."""

    id: str                          # unique ID: WWN, else serial:..., else path:...
    path: Path                       # image file or /dev node
    size: int
    wwn: str | None = None
    serial: str | None = None
    addresses: list[str] = field(default_factory=list)   # SAN addresses (several with multipath)
    kind: str = "image"              # "image", "disk", "loop", "multipath"
    read_only: bool = False
    in_use: str | None = None        # why the disk is busy (mounted, holders), None if free
    backing_file: str | None = None  # loop devices
    backing_offset: int | None = None  # loop devices: byte offset into the backing file
    paths: list[str] = field(default_factory=list)       # multipath: the path devices (sda, sdb...)
    partitions: list[PartInfo] = field(default_factory=list)
    pv_uuid: str | None = None       # dashed PV UUID when the disk (or its LVM partition) is a PV
    vg_name: str | None = None
    vg_uuid: str | None = None
    membership: str = "unknown"      # "free", "pv:<vg>", "orphan-pv", "data", "unknown"
    boot_copy: str | None = None     # health of the boot copy on this disk: "ok", "bad", "missing", None

    @property
    def ref(self) -> DiskRef:
        return DiskRef(self.id, self.path)

    @property
    def address(self) -> str:
        return self.addresses[0] if self.addresses else ""


def list_disks(fabric: str | Path | None = None) -> list[DiskInfo]:
    """All disks of a fabric (or, with ``fabric=None``, of this machine)."""
    if fabric is not None:
        f = fab.load(fabric)
        return [DiskInfo(id=l.wwn, path=l.path, size=l.size, wwn=l.wwn, serial=l.serial,
                         addresses=[l.address], kind="image") for l in f.luns]
    from . import discover
    return discover.list_block_disks()


def find(disks: list[DiskInfo], wanted: str) -> DiskInfo:
    """One disk by full ID, unique prefix, WWN, serial or PV UUID."""
    return select(disks, wanted,
                  keys=lambda d: [d.id, d.wwn or "", d.serial or "", d.pv_uuid or "", str(d.path)],
                  what="disk", describe=lambda d: f"{d.id} ({d.path})")


def resolve(ids: list[str], fabric: str | Path | None = None) -> list[DiskInfo]:
    """Disks for the given IDs/prefixes, in order; errors name the bad ID."""
    disks = list_disks(fabric)
    return [find(disks, i) for i in ids]
