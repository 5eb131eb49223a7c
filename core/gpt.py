"""GPT partition tables: the install-VG layout written with pyparted, read back natively.

Layout of an install-VG disk (1 MiB alignment; ARCHITECTURE.md)::

    1  sanbos-bios  bios_grub  1 MiB at 1 MiB
    2  sanbos-esp   ESP        32 MiB at 2 MiB (boot, esp flags)
    3  sanbos-lvm   LVM        from 34 MiB to the last 1 MiB boundary before
                               the backup GPT (type E6D6D379-...)

``apply_layout`` writes the table with **pyparted** (libparted), on image
files and block devices alike.  ``read_table`` parses the GPT itself (header
and entry CRCs checked, backup header used when the primary is damaged): it
reads only the header and the entry array, which keeps the disk listing fast
for thousands of disks and needs neither root nor libparted.
"""

from __future__ import annotations

import fcntl
import struct
import uuid
import zlib
from dataclasses import dataclass

from .disk import Disk
from .errors import DiskError, FormatError, SpaceError
from .units import MiB, align_down, human

# Partition type GUIDs (as printed: the usual mixed-endian textual form).
BIOS_GRUB_GUID = "21686148-6449-6E6F-744E-656564454649"
ESP_GUID = "C12A7328-F81F-11D2-BA4B-00A0C93EC93B"
LVM_GUID = "E6D6D379-F507-44C2-A23C-238F2A3DF928"
LINUX_DATA_GUID = "0FC63DAF-8483-4772-8E79-3D69D8477DE4"

KIND_BY_GUID = {BIOS_GRUB_GUID: "bios_grub", ESP_GUID: "esp", LVM_GUID: "lvm"}

ALIGN = MiB
BIOS_START, BIOS_SIZE = 1 * MiB, 1 * MiB
ESP_START, ESP_SIZE = 2 * MiB, 32 * MiB
LVM_START = 34 * MiB
#: smallest LVM partition the layout accepts (room for a PV's metadata and extents)
MIN_LVM_SIZE = 8 * MiB
#: smallest disk the layout fits on
MIN_DISK_SIZE = LVM_START + MIN_LVM_SIZE + MiB

NAMES = {"bios_grub": "sanbos-bios", "esp": "sanbos-esp", "lvm": "sanbos-lvm"}

_HDR = struct.Struct("<8sIIIIQQQQ16sQIII")   # 92 bytes
_ENTRY = struct.Struct("<16s16sQQQ72s")       # 128 bytes


@dataclass
class Partition:
    """One GPT partition, in bytes."""

    number: int
    name: str
    start: int        # bytes from the start of the disk
    size: int         # bytes
    type_guid: str    # upper case, dashed
    kind: str         # "bios_grub", "esp", "lvm", "other"

    @property
    def end(self) -> int:
        """First byte after the partition."""
        return self.start + self.size


def _backup_bytes(sector: int) -> int:
    """Bytes the backup GPT takes at the end: 128 entries of 128 bytes plus the header sector."""
    return sector + -(-128 * 128 // sector) * sector


def plan_layout(size: int, sector_size: int = 512) -> list[Partition]:
    """The install-VG layout for a disk of ``size`` bytes (nothing is written).

    ``sector_size`` is the logical sector size (4096 on 4Kn disks); it only
    changes how much room the backup GPT needs at the end.
    """
    lvm_end = align_down(size - _backup_bytes(sector_size), ALIGN)
    if size < MIN_DISK_SIZE or lvm_end - LVM_START < MIN_LVM_SIZE:
        raise SpaceError(
            f"disk of {human(size)} ({size} bytes) is too small for the install-VG layout: "
            f"it needs at least {human(MIN_DISK_SIZE)} ({MIN_DISK_SIZE} bytes)")
    return [
        Partition(1, NAMES["bios_grub"], BIOS_START, BIOS_SIZE, BIOS_GRUB_GUID, "bios_grub"),
        Partition(2, NAMES["esp"], ESP_START, ESP_SIZE, ESP_GUID, "esp"),
        Partition(3, NAMES["lvm"], LVM_START, lvm_end - LVM_START, LVM_GUID, "lvm"),
    ]


def describe(parts: list[Partition]) -> str:
    """One line per partition, for plans and listings."""
    return "\n".join(
        f"  {p.number}  {p.name:<12} {p.kind:<9} start {p.start:>12} ({human(p.start)})  "
        f"size {p.size:>12} ({human(p.size)})  type {p.type_guid}" for p in parts)


def summary(parts) -> str:
    """Short layout summary for a table column: ``bios 1M,esp 32M,lvm 29M``."""
    if parts is None:
        return "-"
    if not parts:
        return "gpt (empty)"
    short = {"bios_grub": "bios", "esp": "esp", "lvm": "lvm", "other": "other"}
    return ",".join(f"{short.get(p.kind, p.kind)} {human(p.size)}" for p in parts)


# ---------------------------------------------------------------------------
# sector size

_BLKSSZGET = 0x1268


def sector_size(disk: Disk) -> int:
    """Logical sector size: 512 for image files, the device's for block devices."""
    if not disk.is_block:
        return 512
    try:
        buf = fcntl.ioctl(disk.fd, _BLKSSZGET, b"\0" * 4)
        return struct.unpack("<i", buf)[0] or 512
    except OSError:
        return 512


# ---------------------------------------------------------------------------
# writing (pyparted)

def _wipe_nonzero(disk: Disk, offset: int, length: int, chunk: int = 64 * 1024) -> None:
    """Zero ``[offset, offset+length)`` but only where it is not already zero.

    Keeps image files sparse while making sure no old signature survives.
    """
    end = min(offset + length, disk.size)
    pos = max(offset, 0)
    zeros = bytes(chunk)
    while pos < end:
        n = min(chunk, end - pos)
        if disk.read(pos, n) != zeros[:n]:
            disk.write(pos, zeros[:n])
        pos += n


def apply_layout(disk: Disk) -> list[Partition]:
    """Write the install-VG GPT on ``disk`` with pyparted and return it.

    The caller has checked the disk (``core.safety.require_safe``) and opened
    it writable with an exclusive lock.  Old signatures are cleared first
    where the new layout would not overwrite them (start and end of the disk,
    start of every new partition), so no stale LVM label or file system is
    found later.  The table is read back and compared with the plan.
    """
    if not disk.writable:
        raise DiskError(f"{disk.name}: opened read-only, cannot write a partition table")
    if disk.lock_mode != "exclusive":
        raise DiskError(f"{disk.name}: not locked for writing; take an exclusive lock before labelling")
    ss = sector_size(disk)
    if ss != 512 and ALIGN % ss:
        raise DiskError(f"{disk.name}: unsupported logical sector size {ss}")
    plan = plan_layout(disk.size, ss)

    # 1. clear old signatures the new table will not cover
    _wipe_nonzero(disk, 0, 1 * MiB)                        # MBR, GPT, LVM label, fs superblocks, btrfs
    _wipe_nonzero(disk, align_down(disk.size, ALIGN) - MiB, disk.size)   # backup GPT, md 0.90/1.0
    for p in plan:
        _wipe_nonzero(disk, p.start, min(p.size, 1 * MiB))  # stale labels inside the new partitions
    disk.fsync()

    # 2. the table, through libparted
    import _ped
    import parted  # imported here: listing disks does not need libparted

    # pyparted's exceptions do not share a base class
    errors = tuple(getattr(_ped, n) for n in dir(_ped) if n.endswith("Exception"))
    try:
        dev = parted.getDevice(str(disk.path))
    except errors as e:
        raise DiskError(f"{disk.name}: libparted cannot open {disk.path}: {e}") from None
    try:
        if dev.sectorSize != ss:
            raise DiskError(f"{disk.name}: libparted sees {dev.sectorSize}-byte sectors, expected {ss}")
        pdisk = parted.freshDisk(dev, "gpt")
        flags = {v: k for k, v in parted.partitionFlag.items()}
        for p in plan:
            geom = parted.Geometry(dev, start=p.start // ss, length=p.size // ss)
            part = parted.Partition(disk=pdisk, type=parted.PARTITION_NORMAL, geometry=geom)
            pdisk.addPartition(part, constraint=parted.Constraint(exactGeom=geom))
            part.set_name(p.name)
            if p.kind == "bios_grub":
                part.setFlag(flags["bios_grub"])
            elif p.kind == "esp":
                part.setFlag(flags["boot"])
                part.setFlag(flags["esp"])
            elif p.kind == "lvm":
                part.setFlag(flags["lvm"])
            # libparted 3.5 sets the type GUID from these flags (the read-back
            # below checks it); pyparted's set_type_uuid needs libparted > 3.5
        pdisk.commitToDevice()
        if disk.is_block:
            try:
                pdisk.commitToOS()   # tell the kernel; harmless when it cannot read GPTs
            except errors:
                pass
    except errors as e:
        raise DiskError(f"{disk.name}: libparted failed to write the partition table: {e}") from None
    finally:
        try:
            dev.removeFromCache()
        except Exception:  # pragma: no cover - cache bookkeeping only
            pass
    disk.fsync()

    # 3. read back and compare
    got = read_table(disk)
    if got is None or [(p.number, p.start, p.size, p.type_guid, p.name) for p in got] != \
            [(p.number, p.start, p.size, p.type_guid, p.name) for p in plan]:
        raise FormatError(f"{disk.name}: the partition table read back ({summary(got)}) does not match "
                          f"the plan ({summary(plan)})")
    return got


# ---------------------------------------------------------------------------
# reading (native)

def _guid(b: bytes) -> str:
    return str(uuid.UUID(bytes_le=b)).upper()


def _parse_header(sector: bytes, lba: int):
    """Parsed GPT header at ``lba`` or None; raises FormatError on a bad CRC."""
    if sector[:8] != b"EFI PART":
        return None
    (sig, rev, hsize, hcrc, _res, my_lba, alt_lba, first, last, dguid,
     ent_lba, n_ent, ent_size, ent_crc) = _HDR.unpack_from(sector)
    if not 92 <= hsize <= len(sector):
        raise FormatError(f"GPT header at LBA {lba} has a bad header size {hsize}")
    raw = bytearray(sector[:hsize])
    raw[16:20] = b"\0\0\0\0"
    if zlib.crc32(raw) != hcrc:
        raise FormatError(f"GPT header at LBA {lba} is corrupt (header CRC mismatch)")
    if my_lba != lba:
        raise FormatError(f"GPT header at LBA {lba} says it is at LBA {my_lba}")
    if ent_size < 128 or ent_size % 8 or n_ent > 65536:
        raise FormatError(f"GPT header at LBA {lba} has a bad entry array ({n_ent} x {ent_size} bytes)")
    return dict(first=first, last=last, ent_lba=ent_lba, n_ent=n_ent, ent_size=ent_size, ent_crc=ent_crc)


def _parse_entries(raw: bytes, hdr: dict, ss: int, disk_size: int) -> list[Partition]:
    if zlib.crc32(raw) != hdr["ent_crc"]:
        raise FormatError("GPT partition entries are corrupt (entry array CRC mismatch)")
    parts = []
    for i in range(hdr["n_ent"]):
        tguid, _pguid, first, last, _attrs, name = _ENTRY.unpack_from(raw, i * hdr["ent_size"])
        if tguid == bytes(16):
            continue
        if last < first or (last + 1) * ss > disk_size:
            raise FormatError(f"GPT partition {i + 1} has a bad extent (LBA {first}..{last})")
        t = _guid(tguid)
        nm = name.decode("utf-16-le", errors="replace").split("\0", 1)[0]
        parts.append(Partition(number=i + 1, name=nm, start=first * ss, size=(last - first + 1) * ss,
                               type_guid=t, kind=KIND_BY_GUID.get(t, "other")))
    return parts


def parse_table(head: bytes, disk_size: int, read=None, sector: int = 512,
                name: str = "disk") -> list[Partition] | None:
    """Partitions from a disk's first bytes ``head`` (or None if it has no GPT).

    ``read(offset, length)`` is used for anything ``head`` does not cover
    (a large entry array, the backup header).  Without it, missing bytes are
    an error.  The backup header is consulted only when the primary one is
    absent or damaged and the protective MBR says the disk is GPT.
    """
    def get(off: int, n: int) -> bytes:
        if off + n <= len(head):
            return head[off:off + n]
        if read is None:
            raise FormatError(f"{name}: need bytes {off}..{off + n} to read the GPT")
        return read(off, n)

    def load(lba: int) -> list[Partition] | None:
        hdr = _parse_header(get(lba * sector, sector), lba)
        if hdr is None:
            return None
        raw = get(hdr["ent_lba"] * sector, hdr["n_ent"] * hdr["ent_size"])
        return _parse_entries(raw, hdr, sector, disk_size)

    if disk_size < 3 * sector:
        return None
    mbr = get(0, 512)
    protective = mbr[510:512] == b"\x55\xaa" and any(mbr[446 + 16 * i + 4] == 0xEE for i in range(4))
    primary_error: FormatError | None = None
    try:
        parts = load(1)
        if parts is not None:
            return parts
    except FormatError as e:
        primary_error = e
    if not protective and primary_error is None:
        return None
    last_lba = disk_size // sector - 1
    try:
        parts = load(last_lba)
    except FormatError as e:
        raise FormatError(f"{name}: both GPT headers are damaged ({primary_error or 'primary missing'}; "
                          f"backup: {e})") from None
    if parts is None:
        if primary_error is not None:
            raise FormatError(f"{name}: {primary_error}, and there is no backup GPT header")
        return None   # protective MBR without any GPT: treat as no GPT
    return parts


def read_table(disk: Disk) -> list[Partition] | None:
    """The disk's GPT partitions (by number), or None if the disk has no GPT.

    Raises FormatError naming the disk when the GPT is damaged beyond use
    (both headers or the entry arrays fail their CRCs).
    """
    ss = sector_size(disk)
    n = min(disk.size, 34 * ss)
    head = disk.read(0, n)
    try:
        return parse_table(head, disk.size, read=disk.read, sector=ss, name=disk.name)
    except FormatError as e:
        msg = str(e)
        raise FormatError(msg if msg.startswith(disk.name) else f"{disk.name}: {msg}") from None


def lvm_partition(disk: Disk) -> Partition | None:
    """The LVM partition of the install-VG layout (the PV), or None."""
    parts = read_table(disk)
    if not parts:
        return None
    lvm = [p for p in parts if p.kind == "lvm"]
    return lvm[0] if lvm else None
