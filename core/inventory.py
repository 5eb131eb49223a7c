"""The disk listing: every disk with its unique ID, SAN identity, layout and membership.

On a fabric the disks are the manifest's LUNs; otherwise they are the
machine's block devices (``core.discover``).

For each disk the listing reads only what it needs: the first 72 KiB (MBR,
GPT header and entries, LVM label, file-system superblocks), the last
128 KiB (backup GPT, md superblocks) and, on a PV, its label and metadata
header.  That keeps ``list_disks`` well under a millisecond per disk.

Membership:

* ``free``: no partition table, label or signature at all;
* ``labelled``: the sanbos GPT layout and no PV on its LVM partition yet;
* ``pv:<vg>``: a PV of VG ``<vg>`` (``vg_name``/``vg_uuid`` set);
* ``orphan-pv``: a PV that belongs to no VG;
* ``damaged-pv``: an LVM label or metadata that fails its checks;
* ``data``: anything else sanbos does not own (foreign table, file system,
  non-zero bytes without a known signature...);
* ``unknown``: the disk could not be read.
"""

from __future__ import annotations

import os
import re
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

from . import fabric as fab
from .disk import DiskRef, read_only_image
from .errors import FormatError
from .lvm.crc import calc_crc
from .ids import select

HEAD = 72 * 1024
TAIL = 128 * 1024


@dataclass
class PartInfo:
    number: int
    name: str
    start: int        # bytes from disk start
    size: int         # bytes
    kind: str         # "bios_grub", "esp", "lvm", "other"
    type_guid: str = ""


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
    membership: str = "unknown"      # "free", "labelled", "pv:<vg>", "orphan-pv", "damaged-pv", "data", "unknown"
    boot_copy: str | None = None     # health of the boot copy on this disk: "ok", "bad", "missing", None
    table: str | None = None         # "gpt", "mbr" or None
    signatures: list[str] = field(default_factory=list)  # what the listing found, in words
    problems: list[str] = field(default_factory=list)    # damaged GPT, damaged label...

    @property
    def ref(self) -> DiskRef:
        return DiskRef(self.id, self.path)

    @property
    def address(self) -> str:
        return self.addresses[0] if self.addresses else ""

    @property
    def layout(self) -> str:
        """Partition layout summary: ``bios 1M,esp 32M,lvm 29M``, ``-`` without a table."""
        if self.table == "gpt":
            from .gpt import summary
            return summary(self.partitions)
        if self.table == "mbr":
            return "mbr"
        return "-"

    def to_json(self) -> dict:
        """Everything, JSON-ready."""
        return {
            "id": self.id, "path": str(self.path), "size": self.size, "wwn": self.wwn,
            "serial": self.serial, "addresses": list(self.addresses), "kind": self.kind,
            "read_only": self.read_only, "in_use": self.in_use, "backing_file": self.backing_file,
            "backing_offset": self.backing_offset, "paths": list(self.paths),
            "table": self.table, "layout": self.layout,
            "partitions": [{"number": p.number, "name": p.name, "start": p.start, "size": p.size,
                            "kind": p.kind, "type_guid": p.type_guid} for p in self.partitions],
            "pv_uuid": self.pv_uuid, "vg_name": self.vg_name, "vg_uuid": self.vg_uuid,
            "membership": self.membership, "boot_copy": self.boot_copy,
            "signatures": list(self.signatures), "problems": list(self.problems),
        }


# ---------------------------------------------------------------------------
# peeking at a disk

@dataclass
class _Peek:
    table: str | None = None
    parts: list = field(default_factory=list)           # core.gpt.Partition
    sigs: list = field(default_factory=list)            # core.safety.Signature, whole disk
    pv: object | None = None                            # Signature of the PV label
    pv_offset: int = 0
    vg_name: str | None = None
    vg_uuid: str | None = None
    pv_state: str | None = None                         # "vg", "orphan", "damaged"
    problems: list[str] = field(default_factory=list)


_MDA_MAGIC = b" LVM2 x[5A%r0N*>"
_ID_RE = re.compile(rb'\bid = "([A-Za-z0-9-]{38})"')


def _peek_vg(pread, pv_off: int, pv_head: bytes, label_off: int, name: str) -> tuple[str | None, str | None, str]:
    """VG name and UUID from a PV's first metadata area: (name, uuid, state)."""
    lab = pv_head[label_off:label_off + 512]
    # data areas list, then metadata areas list; each ends with a zero offset
    pos = 0x48
    while pos + 16 <= 512 and struct.unpack_from("<Q", lab, pos)[0]:
        pos += 16
    pos += 16
    if pos + 16 > 512:
        return None, None, "damaged"
    moff, msize = struct.unpack_from("<QQ", lab, pos)
    if not moff:
        return None, None, "orphan"   # no metadata area on this PV: cannot tell
    hdr = pread(pv_off + moff, 512)
    if len(hdr) < 512 or hdr[4:20] != _MDA_MAGIC or struct.unpack_from("<I", hdr, 0)[0] != calc_crc(hdr[4:512]):
        return None, None, "damaged"
    toff, tsize, _crc, flags = struct.unpack_from("<QQII", hdr, 0x28)
    if not toff or not tsize:
        return None, None, "orphan"
    text = pread(pv_off + moff + toff, min(tsize, 1024))
    m = re.match(rb"\s*([A-Za-z0-9+_.-]+) \{", text)
    if not m:
        return None, None, "damaged"
    u = _ID_RE.search(text)
    return m.group(1).decode(), (u.group(1).decode() if u else None), "vg"


def _peek(fd: int, size: int, name: str, sector: int = 512) -> _Peek:
    from . import gpt, safety
    pk = _Peek()

    def pread(off: int, n: int) -> bytes:
        if off < 0 or off >= size:
            return b""
        return os.pread(fd, min(n, size - off), off)

    head = pread(0, HEAD)
    toff = max(len(head), size - TAIL)
    tail = pread(toff, size - toff) if toff < size else b""
    pk.sigs = safety.probe(head, size, tail, toff, sector)
    if not pk.sigs:
        u = safety.unrecognised(head, tail, toff)
        if u is not None:
            pk.sigs.append(u)
    kinds = {s.kind for s in pk.sigs}
    try:
        parts = gpt.parse_table(head, size, read=pread, sector=sector, name=name)
    except FormatError as e:
        parts = None
        pk.problems.append(str(e))
        pk.table = "gpt"
    if parts is not None:
        pk.table, pk.parts = "gpt", parts
    elif "mbr" in kinds:
        pk.table = "mbr"
    # the PV: on the whole disk, else on the LVM partition
    pv_off, pv_head = 0, head[:2048]
    if "lvm2" not in kinds:
        for p in pk.parts:
            if p.kind == "lvm" and p.size >= 2048:
                pv_off, pv_head = p.start, pread(p.start, 2048)
                break
    lab = safety.lvm_label(pv_head)
    if lab is not None:
        pk.pv, pk.pv_offset = lab, pv_off
        if lab.detail.startswith("a damaged"):
            pk.pv_state = "damaged"
            pk.problems.append(f"{name}: {lab.detail[2:]}")
        else:
            pk.vg_name, pk.vg_uuid, pk.pv_state = _peek_vg(pread, pv_off, pv_head, lab.offset, name)
            if pk.pv_state == "damaged":
                pk.problems.append(f"{name}: PV {lab.pv_uuid} has a damaged metadata area header")
    return pk


def _sector_size(fd: int) -> int:
    import fcntl
    try:
        return struct.unpack("<i", fcntl.ioctl(fd, 0x1268, b"\0" * 4))[0] or 512   # BLKSSZGET
    except OSError:
        return 512


_SANBOS_NAMES = ("sanbos-bios", "sanbos-esp", "sanbos-lvm")


def _classify(info: DiskInfo, pk: _Peek) -> None:
    info.table = pk.table
    info.partitions = [PartInfo(p.number, p.name, p.start, p.size, p.kind, p.type_guid) for p in pk.parts]
    info.signatures = [s.detail for s in pk.sigs if s.kind != "pmbr"]
    info.problems = list(pk.problems)
    if pk.pv is not None:
        info.pv_uuid = pk.pv.pv_uuid
        if pk.pv_offset:
            info.signatures.append(f"LVM partition carries {pk.pv.detail}")
        if pk.pv_state == "vg" and pk.vg_name:
            info.vg_name, info.vg_uuid = pk.vg_name, pk.vg_uuid
            info.membership = f"pv:{pk.vg_name}"
        elif pk.pv_state == "orphan":
            info.membership = "orphan-pv"
        else:
            info.membership = "damaged-pv"
        return
    if pk.problems:
        info.membership = "data"
        return
    other = [s for s in pk.sigs if s.kind not in ("gpt", "pmbr")]
    if pk.table == "gpt" and not other and \
            tuple(p.name for p in pk.parts) == _SANBOS_NAMES and [p.kind for p in pk.parts] == ["bios_grub", "esp", "lvm"]:
        info.membership = "labelled"
    elif pk.table is None and not other:
        info.membership = "free"
    else:
        info.membership = "data"


def _probe_path(info: DiskInfo) -> None:
    try:
        fd = os.open(info.path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError as e:
        info.membership = "unknown"
        info.problems.append(f"{info.id}: cannot read {info.path}: {e.strerror}")
        return
    try:
        size = info.size or os.lseek(fd, 0, os.SEEK_END)
        if info.kind == "image":
            info.read_only = read_only_image(os.fstat(fd))
        sector = 512
        if info.kind != "image":
            # a shared SAN disk may have been written by another host (or an image
            # under a loop device written directly): drop cached pages, read fresh
            try:
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            except OSError:
                pass
            sector = _sector_size(fd)
        _classify(info, _peek(fd, size, info.id, sector))
    except OSError as e:
        info.membership = "unknown"
        info.problems.append(f"{info.id}: read error on {info.path}: {e.strerror}")
    finally:
        os.close(fd)


def _apply_lvm_scan(disks: list[DiskInfo]) -> None:
    """Let the LVM engine's scanner (core.lvm.scan) confirm PV/VG membership.

    Only disks the quick peek found a label on are scanned.  If the scanner
    is missing or fails, the peek's answer stands.
    """
    labelled = [d for d in disks if d.pv_uuid]
    if not labelled:
        return
    try:
        from .lvm import scan as lvscan
        res = lvscan.scan([d.ref for d in labelled])
    except Exception:   # the engine is optional here; the peek already answered
        return
    by_id = {d.id: d for d in labelled}
    from .lvm.uuid import dashed
    listed = {}      # raw PV UUID -> VGInfo whose current metadata lists it
    for vg in res.by_uuid.values():
        for p in vg.vg.pvs:
            listed[p.id.replace("-", "")] = vg
    orphans = {id(loc) for loc in res.orphans}
    for loc in res.pvs:
        d = by_id.get(loc.ref.id)
        if d is None:
            continue
        if loc.uuid:
            d.pv_uuid = dashed(loc.uuid)
        vg = listed.get(loc.uuid)
        if vg is not None:
            d.vg_name, d.vg_uuid, d.membership = vg.name, dashed(vg.uuid), f"pv:{vg.name}"
        elif id(loc) in orphans:
            d.vg_name, d.vg_uuid, d.membership = None, None, "orphan-pv"
        else:
            d.membership = "damaged-pv"
    for p in res.problems:
        words = {w.rstrip(":,;)").lstrip("(") for w in p.split()}
        for d in labelled:
            if d.id in words and p not in d.problems:
                d.problems.append(p)


def _fabric_usage(luns: list) -> dict[tuple[int, int], str]:
    """(st_dev, st_ino) of images -> why they are in use (loop devices, locks)."""
    from . import discover
    out: dict[tuple[int, int], list[str]] = {}
    for lo in discover.loop_devices():
        try:
            st = os.stat(lo.backing_file)
        except OSError:
            continue
        where = f" at offset {lo.offset}" if lo.offset else ""
        out.setdefault((st.st_dev, st.st_ino), []).append(f"attached to /dev/{lo.name}{where}")
    try:
        text = Path("/proc/locks").read_text()
    except OSError:
        text = ""
    me = os.getpid()
    for line in text.splitlines():
        f = line.split()
        if len(f) < 6 or f[1] not in ("FLOCK", "OFDLCK", "POSIX"):
            continue
        try:
            pid = int(f[4])
            maj, mnr, ino = f[5].split(":")
            key = (os.makedev(int(maj, 16), int(mnr, 16)), int(ino))
        except ValueError:
            continue
        if pid == me:
            continue
        if f[1] == "FLOCK":
            why = f"locked by PID {pid} ({'write' if f[3] == 'WRITE' else 'read'})"
        elif pid > 0:
            why = f"byte-range locked by PID {pid}"
        else:
            why = "byte-range locked (as a running QEMU locks its disk images)"
        if why not in out.get(key, []):
            out.setdefault(key, []).append(why)
    return {k: "; ".join(v) for k, v in out.items()}


def list_disks(fabric: str | Path | None = None, *, lvm_scan: bool = True) -> list[DiskInfo]:
    """All disks of a fabric (or, with ``fabric=None``, of this machine), with layout and membership."""
    if fabric is not None:
        f = fab.load(fabric)
        disks = [DiskInfo(id=l.wwn, path=l.path, size=l.size, wwn=l.wwn, serial=l.serial,
                          addresses=[l.address], kind="image") for l in f.luns]
        usage = _fabric_usage(f.luns)
        for d in disks:
            _probe_path(d)
            if usage:
                try:
                    st = os.stat(d.path)
                    d.in_use = usage.get((st.st_dev, st.st_ino))
                except OSError:
                    pass
    else:
        from . import discover
        disks = discover.list_block_disks()
        for d in disks:
            _probe_path(d)
    if lvm_scan:
        _apply_lvm_scan(disks)
    return disks


def find(disks: list[DiskInfo], wanted: str) -> DiskInfo:
    """One disk by full ID, unique prefix, WWN, serial or PV UUID."""
    return select(disks, wanted,
                  keys=lambda d: [d.id, d.wwn or "", d.serial or "", d.pv_uuid or "", str(d.path)],
                  what="disk", describe=lambda d: f"{d.id} ({d.path})")


def resolve(ids: list[str], fabric: str | Path | None = None) -> list[DiskInfo]:
    """Disks for the given IDs/prefixes, in order; errors name the bad ID."""
    disks = list_disks(fabric)
    return [find(disks, i) for i in ids]


def check_blank(ref: DiskRef, force_ids: Iterable[str] = (), min_size: int = 0) -> list[str]:
    """``core.safety.require_safe``: refuse a disk that is not blank unless forced by its ID."""
    from . import safety
    return safety.require_safe(ref, force_ids, min_size)
