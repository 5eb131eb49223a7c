"""Find PVs on a set of disks (whole disk or GPT partition) and assemble VGs.

Rules (as LVM2's label scan and vg_read): the label must have a good CRC and
``sector_xl``; an mda header must have a good CRC, magic, version and start;
the slot-0 text must have a good CRC; ignored mdas are skipped.  Copies are
grouped by VG UUID; the highest seqno wins; lower copies are "stale";
a PV UUID seen on two disks is a duplicate (cloned LUN) and is never guessed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable

from ..disk import Disk, DiskRef
from ..gpt import read_table
from ..errors import DiskError, MetadataError, SanbosError
from . import uuid as lvmuuid
from .label import LABEL_SCAN_SECTORS, LABEL_SIZE, PVLabel, find_label, salvage_label
from .mda import MDA_HEADER_SIZE, MDAHeader, read_text
from .model import VG

HEAD = LABEL_SCAN_SECTORS * LABEL_SIZE


@dataclass
class MdaCopy:
    """One metadata area of one PV, as read."""

    index: int                       # 0 = mda1, 1 = mda2
    start: int                       # absolute offset within the PV
    size: int
    header: MDAHeader | None = None
    text: bytes | None = None
    vg: VG | None = None
    defect: str | None = None        # why it is unusable
    ignored: bool = False

    @property
    def seqno(self) -> int | None:
        return self.vg.seqno if self.vg else None


@dataclass
class PVLoc:
    """A PV found on a disk (or a damaged one that still names its UUID)."""

    ref: DiskRef
    offset: int                      # PV start within the disk, bytes
    size: int                        # PV size, bytes
    partition: int | None = None     # GPT partition number, None for a whole disk
    label: PVLabel | None = None
    label_sector: int = 1
    uuid: str = ""                   # raw 32
    defects: list[str] = field(default_factory=list)
    mdas: list[MdaCopy] = field(default_factory=list)

    @property
    def where(self) -> str:
        return self.ref.id if self.partition is None else f"{self.ref.id} partition {self.partition}"

    @property
    def dashed_uuid(self) -> str:
        return lvmuuid.dashed(self.uuid)

    @property
    def good_mdas(self) -> list[MdaCopy]:
        return [m for m in self.mdas if m.vg is not None and m.defect is None]


@dataclass
class VGInfo:
    name: str
    uuid: str                         # raw 32
    seqno: int
    vg: VG
    text: bytes
    pvs: dict[str, PVLoc] = field(default_factory=dict)      # raw PV uuid -> location
    missing: list[str] = field(default_factory=list)          # PV names in the metadata not found
    stale: list[str] = field(default_factory=list)            # descriptions
    corrupt: list[str] = field(default_factory=list)
    outdated: list[PVLoc] = field(default_factory=list)       # claim membership, not listed
    duplicates: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def healthy(self) -> bool:
        return not (self.missing or self.stale or self.corrupt or self.duplicates or self.problems)


@dataclass
class ScanResult:
    vgs: dict[str, VGInfo] = field(default_factory=dict)
    by_uuid: dict[str, VGInfo] = field(default_factory=dict)
    orphans: list[PVLoc] = field(default_factory=list)
    pvs: list[PVLoc] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    name_conflicts: dict[str, list[VGInfo]] = field(default_factory=dict)


# -- reading one PV -------------------------------------------------------------
def read_pv(disk: Disk, ref: DiskRef, offset: int, size: int, partition: int | None,
            head: bytes | None = None) -> PVLoc | None:
    """Read the label and mdas of a PV at ``offset``; None if there is no label at all."""
    loc = PVLoc(ref=ref, offset=offset, size=size, partition=partition)
    if head is None:
        head = disk.read(offset, min(HEAD, size))
    label, defects = find_label(head, loc.where)
    loc.defects += defects
    if label is None:
        salv = salvage_label(head)
        if salv is None and not defects:
            return None                      # no label at all: not a PV
        if salv is not None:
            loc.label_sector, loc.uuid = salv
        else:
            loc.label_sector = next((s for s in range(LABEL_SCAN_SECTORS)
                                     if head[s * LABEL_SIZE:s * LABEL_SIZE + 8] == b"LABELONE"), 1)
        if not defects:
            loc.defects.append(f"{loc.where}: damaged LVM label in sector {loc.label_sector}")
        # the label is unusable; look for the default mda so the PV can still be placed
        areas = [(4096, None)]
    else:
        loc.label, loc.label_sector, loc.uuid = label, label.sector, label.pv_uuid
        areas = [(m.offset, m.size) for m in label.metadata_areas]
        if label.pe_start > size:
            loc.defects.append(f"{loc.where}: label data area starts at {label.pe_start}, beyond the PV end {size}")
    for i, (moff, msize) in enumerate(areas):
        loc.mdas.append(_read_mda(disk, loc, i, moff, msize))
    return loc


def _read_mda(disk: Disk, loc: PVLoc, index: int, moff: int, msize: int | None) -> MdaCopy:
    where = f"{loc.where} mda{index + 1}"
    m = MdaCopy(index=index, start=moff, size=msize or 0)
    try:
        if moff + MDA_HEADER_SIZE > loc.size:
            raise MetadataError(f"{where}: metadata area at {moff} lies beyond the PV end ({loc.size} bytes)")
        hdr = MDAHeader.parse(disk.read(loc.offset + moff, MDA_HEADER_SIZE), moff, where)
        if msize is not None and hdr.size != msize:
            raise MetadataError(f"{where}: header says size {hdr.size}, label says {msize}")
        if moff + hdr.size > loc.size:
            raise MetadataError(f"{where}: metadata area runs past the PV end")
        m.header, m.size = hdr, hdr.size
        if hdr.slot0.ignored:
            m.ignored = True
            return m
        if hdr.slot0.empty:
            return m
        m.text = read_text(lambda o, n: disk.read(loc.offset + o, n), hdr, hdr.slot0, where)
        m.vg = _parse_cached(m.text, where)
    except MetadataError as e:
        m.defect = str(e)
    except DiskError as e:
        m.defect = f"{where}: {e}"
    except (ValueError, RecursionError, UnicodeError, OverflowError) as e:  # never escape raw
        m.defect = f"{where}: unreadable metadata ({type(e).__name__})"
    return m


_TREE_CACHE: dict[bytes, dict] = {}


def _parse_cached(text: bytes, where: str) -> VG:
    """Every mda of a VG holds the same text: parse it once (the tree is cached,
    the VG model is built fresh for each copy)."""
    from . import text as lvmtext
    tree = _TREE_CACHE.get(text)
    if tree is None:
        tree = lvmtext.parse(text, where)
        if len(_TREE_CACHE) > 256:
            _TREE_CACHE.clear()
        _TREE_CACHE[text] = tree
    return VG.from_tree(tree, where)


def find_pvs(disk: Disk, ref: DiskRef) -> list[PVLoc]:
    """PVs on a whole disk, else in its GPT partitions."""
    if disk.size < HEAD:
        return []
    head = disk.read(0, HEAD)
    whole = read_pv(disk, ref, 0, disk.size, None, head)
    if whole is not None:
        return [whole]
    out = []
    # the CRC-checked GPT of core.gpt (backup header when the primary is damaged); a GPT
    # damaged beyond use raises FormatError naming the disk: scan_open reports it
    for p in read_table(disk) or []:
        if p.size < HEAD:
            continue
        pv = read_pv(disk, ref, p.start, p.size, p.number)
        if pv is not None:
            out.append(pv)
    return out


# -- assembling VGs -------------------------------------------------------------
def assemble(locs: list[PVLoc]) -> ScanResult:
    res = ScanResult(pvs=locs)
    for loc in locs:
        res.problems += loc.defects
        res.problems += [m.defect for m in loc.mdas if m.defect]
    # duplicates
    by_pv: dict[str, list[PVLoc]] = {}
    for loc in locs:
        if loc.uuid:
            by_pv.setdefault(loc.uuid, []).append(loc)
    dups = {u: ls for u, ls in by_pv.items() if len(ls) > 1}
    for u, ls in dups.items():
        res.problems.append(f"PV {lvmuuid.dashed(u)} appears on more than one disk: "
                            + " and ".join(l.where for l in ls)
                            + " (cloned LUN?); refusing to guess which is real")
    # group copies by VG UUID
    groups: dict[str, list[tuple[PVLoc, MdaCopy]]] = {}
    for loc in locs:
        for m in loc.good_mdas:
            groups.setdefault(m.vg.id, []).append((loc, m))
    for vid, copies in groups.items():
        best_loc, best = max(copies, key=lambda c: c[1].vg.seqno)
        vg = best.vg
        info = VGInfo(name=vg.name, uuid=vid, seqno=vg.seqno, vg=vg, text=best.text or b"")
        for loc, m in copies:
            w = f"{loc.where} mda{m.index + 1}"
            if m.vg.seqno < vg.seqno:
                info.stale.append(f"{w}: stale metadata seqno {m.vg.seqno} (current {vg.seqno} on {best_loc.where})")
            elif m.vg.seqno == vg.seqno and m.text != best.text:
                info.problems.append(f"{w}: metadata seqno {vg.seqno} differs from the copy on {best_loc.where}")
        listed = {p.id: p for p in vg.pvs}
        seen_locs = {id(l) for l, _ in copies}
        # a damaged label whose UUID bytes are unreadable: if this VG lacks
        # exactly one PV and the damaged PV carries this VG's metadata, it is that PV
        found = {l.uuid for l in locs if l.label is not None}
        lacking = [p for p in vg.pvs if p.id not in found]
        for loc in locs:
            if loc.label is None and id(loc) in seen_locs and loc.uuid not in listed:
                if len(lacking) == 1 and not any(l.uuid == lacking[0].id for l in locs):
                    loc.defects.append(f"{loc.where}: PV UUID in the damaged label is unreadable; "
                                       f"its metadata makes it {lacking[0].name} ({lvmuuid.dashed(lacking[0].id)})")
                    loc.uuid = lacking[0].id
                else:
                    info.problems.append(f"{loc.where}: damaged PV label; cannot tell which PV of VG {vg.name} it is")
                    seen_locs.discard(id(loc))
        for loc in locs:
            if loc.uuid in listed:
                if loc.uuid in dups:
                    continue
                info.pvs[loc.uuid] = loc
                for m in loc.mdas:
                    if m.defect:
                        info.corrupt.append(m.defect)
                info.corrupt += loc.defects
                if not loc.mdas and loc.label is None:
                    pass
                if loc.label is not None and not any(m.vg is not None or m.defect or m.ignored for m in loc.mdas) \
                        and loc.mdas:
                    info.stale.append(f"{loc.where}: metadata area holds no metadata for VG {vg.name}")
            elif id(loc) in seen_locs:
                info.outdated.append(loc)
                info.problems.append(f"{loc.where}: PV {loc.dashed_uuid} still claims VG {vg.name} "
                                     f"but the current metadata (seqno {vg.seqno}) does not list it")
        for u in dups:
            if u in listed:
                info.duplicates.append(f"PV {lvmuuid.dashed(u)} ({listed[u].name}) is on "
                                       + " and ".join(l.where for l in by_pv[u]))
        for p in vg.pvs:
            if p.id not in info.pvs and p.id not in dups:
                info.missing.append(p.name)
        if info.missing:
            for loc in locs:
                if loc.label is None and loc.uuid not in listed and id(loc) not in seen_locs:
                    info.problems.append(f"{loc.where}: damaged PV label and no readable metadata; "
                                         f"it may be the missing PV of VG {vg.name}")
        if info.name in res.vgs:
            other = res.vgs[info.name]
            res.name_conflicts.setdefault(info.name, [other]).append(info)
            res.problems.append(
                f"two different VGs are named {info.name}: UUID {lvmuuid.dashed(other.uuid)} on "
                f"{', '.join(l.where for l in other.pvs.values())} and UUID {lvmuuid.dashed(vid)} on "
                f"{', '.join(l.where for l in info.pvs.values())}")
        else:
            res.vgs[info.name] = info
        res.by_uuid[vid] = info
    claimed = {u for v in res.by_uuid.values() for u in v.pvs} | \
              {id(l) for v in res.by_uuid.values() for l in v.outdated}
    for loc in locs:
        if loc.label is not None and loc.uuid not in claimed and id(loc) not in claimed and \
                not any(m.defect for m in loc.mdas) and not loc.defects:
            res.orphans.append(loc)
    return res


def scan_open(disks: Iterable[tuple[DiskRef, Disk]]) -> ScanResult:
    """Scan already-open disks (the caller holds whatever locks it needs)."""
    locs: list[PVLoc] = []
    errors: list[str] = []
    for ref, disk in disks:
        try:
            locs += find_pvs(disk, ref)
        except SanbosError as e:
            errors.append(str(e))
    res = assemble(locs)
    res.problems = errors + res.problems
    return res


def scan(disks: Iterable[DiskRef]) -> ScanResult:
    """Scan disks read-only, without locks (a listing; writers use core.vg.open_vg)."""
    opened: list[tuple[DiskRef, Disk]] = []
    errors: list[str] = []
    try:
        for ref in disks:
            try:
                opened.append((ref, ref.open()))
            except SanbosError as e:
                errors.append(str(e))
        res = scan_open(opened)
    finally:
        for _, d in opened:
            d.close()
    res.problems = errors + res.problems
    return res
