"""Crash-safe metadata commit, and writing fresh PV labels / mda headers.

Protocol (LVM2's vg_write / vg_precommit / vg_commit): the identical text goes
into every mda's circular buffer after its current copy; fsync; every header
gets slot 1 = new copy (precommit); fsync; every header gets slot 0 = new copy
and slot 1 = 0 (commit); fsync.  A kill at any instant leaves every mda with
slot 0 at the old or the new copy, so readers see the old or the new seqno.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from ..disk import Disk
from ..errors import SpaceError
from .label import PVLabel
from .mda import MDAHeader, RawLocn, place_text

# Fault injection for crash tests: after this many writes, the process dies
# (os._exit) before the next one.  Set by tests through the environment.
_FAULT_ENV = "SANBOS_LVM_FAULT_AFTER_WRITES"
_writes = 0


def _write(disk: Disk, offset: int, data: bytes) -> None:
    global _writes
    limit = os.environ.get(_FAULT_ENV)
    if limit is not None and _writes >= int(limit):
        os._exit(99)
    disk.write(offset, data)
    _writes += 1


@dataclass
class MdaTarget:
    """One mda to commit into: its disk, the PV's offset on it, its header."""

    disk: Disk
    pv_offset: int
    header: MDAHeader
    where: str


def check_fits(targets: list[MdaTarget], text: bytes) -> None:
    for t in targets:
        if len(text) > t.header.max_text:
            raise SpaceError(f"{t.where}: VG metadata is {len(text)} bytes, more than this metadata area "
                             f"can hold ({t.header.max_text} bytes); nothing was written")


def commit(targets: list[MdaTarget], text: bytes) -> list[RawLocn]:
    """Write ``text`` (with its final NUL) into every target; returns the new slots."""
    if not text.endswith(b"\0"):
        text += b"\0"
    check_fits(targets, text)
    disks = _unique_disks(targets)
    # 1. text into every circular buffer
    new: list[RawLocn] = []
    for t in targets:
        locn, writes = place_text(t.header, text, t.where)
        for off, data in writes:
            _write(t.disk, t.pv_offset + off, data)
        new.append(locn)
    _sync(disks)
    # 2. precommit: slot 1 everywhere
    for t, locn in zip(targets, new):
        t.header.slot1 = locn
        _write(t.disk, t.pv_offset + t.header.start, t.header.pack())
    _sync(disks)
    # 3. commit: slot 0 everywhere, slot 1 cleared
    for t, locn in zip(targets, new):
        t.header.slot0 = locn
        t.header.slot1 = RawLocn()
        _write(t.disk, t.pv_offset + t.header.start, t.header.pack())
    _sync(disks)
    return new


def _unique_disks(targets: list[MdaTarget]) -> list[Disk]:
    seen: dict[int, Disk] = {}
    for t in targets:
        seen.setdefault(id(t.disk), t.disk)
    return list(seen.values())


def _sync(disks: list[Disk]) -> None:
    """Flush every disk (data only, like fdatasync), in parallel: each step of
    the protocol must be on stable storage everywhere before the next starts."""
    if len(disks) == 1:
        _sync_one(disks[0])
        return
    from concurrent.futures import ThreadPoolExecutor
    with ThreadPoolExecutor(max_workers=min(16, len(disks))) as pool:
        list(pool.map(_sync_one, disks))


def _sync_one(disk: Disk) -> None:
    try:
        os.fdatasync(disk.fd)
    except OSError as e:
        from ..errors import DiskError
        raise DiskError(f"{disk.name}: flush failed: {e.strerror}") from None


def init_mda(disk: Disk, pv_offset: int, start: int, size: int, where: str) -> MDAHeader:
    """A fresh, empty mda: zero its first 4 KiB, write an empty header."""
    if size < 8 * 4096:
        raise SpaceError(f"{where}: metadata area of {size} bytes is too small (at least 32 KiB)")
    _write(disk, pv_offset + start, bytes(min(4096, size)))
    hdr = MDAHeader(start=start, size=size)
    _write(disk, pv_offset + start, hdr.pack())
    return hdr


def write_label(disk: Disk, pv_offset: int, label: PVLabel) -> None:
    """Write the label sector, zeroing any other label in sectors 0-3 (sector 0 kept unless it is a label)."""
    for s in range(4):
        if s == label.sector:
            continue
        old = disk.read(pv_offset + s * 512, 512)
        if old[0:8] == b"LABELONE":
            _write(disk, pv_offset + s * 512, bytes(512))
    _write(disk, pv_offset + label.sector * 512, label.pack())


