"""Volume-group operations on disks named by ``DiskRef``: create, extend,
reduce, LV create/remove, raid1 legs, export/import, check/repair.

Writers lock every PV disk exclusively (flock), readers shared.  Every change
is one crash-safe metadata commit (``core.lvm.commit``).  ``dry_run=True``
returns a printable ``Plan`` and writes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable

from .disk import Disk, DiskRef
from .errors import LVMError, MetadataError, NotFoundError, SanbosError, SpaceError, UsageError
from .ids import select
from .lvm import alloc, commit as lvmcommit
from .lvm import uuid as lvmuuid
from .lvm.label import DEFAULT_MDA_SIZE, DEFAULT_MDA_START, DEFAULT_PE_START, PV_EXT_USED, DiskLocn, PVLabel
from .lvm.lvio import LVFile, legs as lv_legs, map_lv
from .lvm.mda import MDAHeader
from .lvm.model import LV, PV, VG, Segment, check_name, new_lv
from .lvm.scan import PVLoc, ScanResult, VGInfo, scan_open
from .units import MiB, human, parse_size

SECTOR = 512
DEFAULT_EXTENT = 4 * MiB
RAID_REGION = 4096  # sectors (2 MiB), LVM's default raid region size


@dataclass
class Plan:
    """What an operation would do; ``str(plan)`` is the printable form."""

    action: str
    steps: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        return "\n".join([f"plan: {self.action} (dry run, nothing written)"] + [f"  - {s}" for s in self.steps])


# -- opening -----------------------------------------------------------------------
class VolumeGroup:
    """An open VG: the current metadata plus the locked disks of its PVs."""

    def __init__(self, info: VGInfo, disks: dict[str, tuple[DiskRef, Disk]], write: bool,
                 scan: ScanResult) -> None:
        self.info = info
        self.vg: VG = info.vg
        self._disks = disks
        self.write = write
        self.scan = scan
        self.closed = False

    # -- context ---------------------------------------------------------------
    def __enter__(self) -> "VolumeGroup":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        for _, d in self._disks.values():
            d.close()
        self.closed = True

    # -- queries ---------------------------------------------------------------
    @property
    def name(self) -> str:
        return self.vg.name

    @property
    def uuid(self) -> str:
        return lvmuuid.dashed(self.vg.id)

    @property
    def seqno(self) -> int:
        return self.vg.seqno

    @property
    def pvs(self) -> list[PV]:
        return self.vg.pvs

    @property
    def lvs(self) -> list[LV]:
        return self.vg.lvs

    def lv(self, name: str) -> LV:
        lv = self.vg.lv(name)
        if lv is None:
            known = ", ".join(l.name for l in self.vg.lvs if l.visible) or "none"
            raise NotFoundError(f"VG {self.name} has no LV {name!r} (LVs: {known})")
        return lv

    def pv_loc(self, pv_name: str) -> PVLoc:
        pv = self.vg.pv(pv_name)
        loc = self.info.pvs.get(pv.id)
        if loc is None:
            raise LVMError(f"VG {self.name}: PV {pv_name} ({lvmuuid.dashed(pv.id)}) is missing")
        return loc

    def disk_of(self, pv_name: str) -> DiskRef:
        return self.pv_loc(pv_name).ref

    def pv_for_disk(self, wanted: str) -> PV:
        """The PV on a disk named by ID/prefix, path or PV UUID."""
        cands = []
        for pv in self.vg.pvs:
            loc = self.info.pvs.get(pv.id)
            keys = [lvmuuid.dashed(pv.id), pv.name]
            if loc is not None:
                keys += [loc.ref.id, str(loc.ref.path)]
            cands.append((pv, keys))
        return select(cands, wanted, keys=lambda c: c[1], what=f"PV of VG {self.name}",
                      describe=lambda c: f"{c[0].name} on {c[1][2] if len(c[1]) > 2 else 'missing disk'}")[0]

    def _access(self, pv_name: str):
        loc = self.pv_loc(pv_name)
        disk = self._disks[loc.ref.id][1]
        base = loc.offset

        def rd(off: int, n: int) -> bytes:
            return disk.read(base + off, n)

        def wr(off: int, data: bytes) -> None:
            disk.write(base + off, data)

        return rd, (wr if self.write else None)

    def leg_on(self, name: str, disk: str) -> int:
        """Index of the raid1/mirror leg of LV ``name`` that lies on ``disk`` (ID/prefix/PV UUID)."""
        lv = self.lv(name)
        pvn = self.pv_for_disk(disk).name
        for k in range(lv_legs(self.vg, lv)):
            if any(p.pv_name == pvn for p in map_lv(self.vg, lv, k)):
                return k
        raise NotFoundError(f"LV {name} has no leg on {self._pv_label(pvn)}")

    def lv_io(self, name: str, leg: int | None = None, disk: str | None = None) -> LVFile:
        """File-like LV; ``disk`` picks the leg on that disk (boot copies: read your own disk's leg)."""
        if self.closed:
            raise LVMError(f"VG {self.name} is closed")
        if disk is not None:
            leg = self.leg_on(name, disk)
        return LVFile(self.vg, self.lv(name), self._access, leg, writable=self.write)

    def lv_ranges(self, name: str, leg: int = 0) -> list[tuple[str, int, int]]:
        """(disk path, byte offset on that disk, length) pieces of one leg, in LV order."""
        out = []
        for p in map_lv(self.vg, self.lv(name), leg):
            loc = self.pv_loc(p.pv_name)
            out.append((str(loc.ref.path), loc.offset + p.pv_offset, p.length))
        return out

    def describe(self) -> dict[str, Any]:
        """A JSON-ready summary: PVs with disk IDs, LVs with segments and PE ranges."""
        ext = self.vg.extent_bytes
        pvs = []
        for pv in self.vg.pvs:
            loc = self.info.pvs.get(pv.id)
            pvs.append({"name": pv.name, "uuid": lvmuuid.dashed(pv.id),
                        "disk": loc.ref.id if loc else None, "path": str(loc.ref.path) if loc else None,
                        "partition": loc.partition if loc else None, "offset": loc.offset if loc else None,
                        "pe_count": pv.pe_count, "pe_free": self.vg.free_extents(pv.name),
                        "size": pv.pe_count * ext, "status": pv.status, "missing": loc is None})
        lvs = []
        for lv in self.vg.lvs:
            segs = []
            for s in lv.segments:
                d: dict[str, Any] = {"start_extent": s.start_extent, "extent_count": s.extent_count,
                                     "type": s.type}
                if s.base_type == "striped":
                    per = s.extent_count // s.stripe_count
                    d["pe_ranges"] = [f"{self._pv_label(pvn)}:{pe}-{pe + per - 1}" for pvn, pe in s.stripes]
                else:
                    d["images"] = s.images
                    if s.metas:
                        d["metas"] = s.metas
                segs.append(d)
            lvs.append({"name": lv.name, "uuid": lvmuuid.dashed(lv.id), "visible": lv.visible,
                        "type": lv.seg_type, "size": lv.extents * ext, "extents": lv.extents,
                        "legs": lv_legs(self.vg, lv), "segments": segs})
        return {"name": self.name, "uuid": self.uuid, "seqno": self.seqno, "extent_size": ext,
                "status": self.vg.status, "exported": self.vg.exported, "system_id": self.vg.system_id,
                "pvs": pvs, "lvs": lvs,
                "problems": (self.info.problems + self.info.stale + self.info.corrupt + self.info.duplicates
                             + [f"PV {m} is missing" for m in self.info.missing] + _seen(self.info, self.scan))}

    def _pv_label(self, pv_name: str) -> str:
        pv = self.vg.pv(pv_name)
        loc = self.info.pvs.get(pv.id)
        return loc.ref.id if loc else f"{pv_name}(missing)"

    # -- writing -----------------------------------------------------------------
    def _targets(self) -> list[lvmcommit.MdaTarget]:
        out = []
        for pv in self.vg.pvs:
            loc = self.info.pvs.get(pv.id)
            if loc is None:
                continue
            disk = self._disks[loc.ref.id][1]
            for m in loc.mdas:
                if m.ignored:
                    continue
                hdr = m.header
                if hdr is None or m.defect and "header" in m.defect:
                    size = m.size or (loc.label.metadata_areas[m.index].size if loc.label else 0) \
                        or (pv.pe_start * SECTOR - m.start)
                    hdr = MDAHeader(start=m.start, size=size)
                    m.header = hdr
                out.append(lvmcommit.MdaTarget(disk, loc.offset, hdr, f"{loc.where} mda{m.index + 1}"))
        return out

    def commit(self, description: str) -> int:
        """Write the (modified) model as seqno+1 into every mda; fix labels after."""
        if not self.write:
            raise LVMError(f"VG {self.name} is open read-only")
        self.vg.validate("new metadata")
        self.vg.seqno = max(self.info.seqno, self.vg.seqno) + 1
        text = self.vg.to_text(description)
        targets = self._targets()
        if not targets:
            raise LVMError(f"VG {self.name}: no usable metadata area on any PV; nothing written")
        lvmcommit.commit(targets, text)
        self.info.seqno = self.vg.seqno
        self.info.text = text
        # labels: PVs in the VG carry PV_EXT_USED; damaged labels are rebuilt
        for pv in self.vg.pvs:
            loc = self.info.pvs.get(pv.id)
            if loc is None:
                continue
            if loc.label is None or not loc.label.in_vg:
                self._write_label(pv, loc)
        return self.vg.seqno

    def _write_label(self, pv: PV, loc: PVLoc) -> None:
        disk = self._disks[loc.ref.id][1]
        if loc.label is not None:
            lab = loc.label
            lab.ext_flags |= PV_EXT_USED
            if not lab.ext_version:
                lab.ext_version = 2
        else:
            mdas = [DiskLocn(m.start, m.header.size if m.header else m.size) for m in loc.mdas]
            bas = [DiskLocn(pv.ba_start * SECTOR, pv.ba_size * SECTOR)] if pv.ba_start else []
            lab = PVLabel(pv_uuid=pv.id, device_size=loc.size, data_areas=[DiskLocn(pv.pe_start * SECTOR, 0)],
                          metadata_areas=mdas, bootloader_areas=bas, ext_version=2, ext_flags=PV_EXT_USED,
                          sector=loc.label_sector if loc.label_sector in (0, 1, 2, 3) else 1)
        lvmcommit.write_label(disk, loc.offset, lab)
        disk.fsync()
        loc.label = lab
        loc.defects = []


def _open_disks(refs: Iterable[DiskRef], write: bool, lock: str | None) -> dict[str, tuple[DiskRef, Disk]]:
    out: dict[str, tuple[DiskRef, Disk]] = {}
    try:
        for ref in refs:
            if ref.id in out:
                continue
            out[ref.id] = (ref, ref.open(writable=write, lock=lock))
    except BaseException:
        for _, d in out.values():
            d.close()
        raise
    return out


def _close(disks: dict[str, tuple[DiskRef, Disk]]) -> None:
    for _, d in disks.values():
        d.close()


def _pick(res: ScanResult, name: str, disks: dict[str, tuple[DiskRef, Disk]]) -> VGInfo:
    if name in res.name_conflicts:
        raise LVMError(f"two different VGs are named {name}: "
                       + "; ".join(f"UUID {lvmuuid.dashed(i.uuid)} on "
                                   f"{', '.join(l.where for l in i.pvs.values())}" for i in res.name_conflicts[name])
                       + "; leave out the disks of the one you do not mean")
    info = res.vgs.get(name)
    if info is None:
        known = ", ".join(sorted(res.vgs)) or "none"
        extra = ""
        if res.problems:
            extra = "; problems seen: " + "; ".join(res.problems[:4])
        raise NotFoundError(f"no VG named {name} on the {len(disks)} disk(s) given (VGs found: {known}){extra}")
    return info


def _refuse_duplicates(info: VGInfo) -> None:
    if info.duplicates:
        raise LVMError(f"VG {info.name}: " + "; ".join(info.duplicates)
                       + "; cloned LUN? detach one copy (or give only the right disk) before using the VG")


def _refuse_missing(info: VGInfo, name: str, res: ScanResult) -> None:
    if info.missing:
        miss = ", ".join(f"{m} ({lvmuuid.dashed(info.vg.pv(m).id)})" for m in info.missing)
        seen = _seen(info, res)
        raise LVMError(f"VG {name}: PV(s) {miss} not found on the disks given; "
                       "add the missing disk(s) to the command"
                       + (f" (problems seen: {'; '.join(seen[:3])})" if seen else ""))


def _seen(info: VGInfo, res: ScanResult) -> list[str]:
    """With PVs missing: the scan's disk-level problems (a damaged GPT, an unreadable
    disk) that may be why; they are not the VG's own problems."""
    if not info.missing:
        return []
    own = set(info.problems + info.stale + info.corrupt + info.duplicates)
    return [p for p in res.problems if p not in own]


def open_vg(name: str, disks: Iterable[DiskRef], *, write: bool, allow_exported: bool = False,
            allow_missing: bool = False) -> VolumeGroup:
    """Open VG ``name`` found on ``disks``: exclusive locks on its PV disks for
    write, shared for read.  Refuses (for write) an exported VG, a VG with
    missing or duplicate PVs, and same-named VGs."""
    check_name(name, "VG")
    refs = list(disks)
    # 1. find the VG's disks without locks (a disk that cannot be opened cannot hold it)
    probe: dict[str, tuple[DiskRef, Disk]] = {}
    unreadable: list[str] = []
    for ref in refs:
        if ref.id not in probe:
            try:
                probe[ref.id] = (ref, ref.open())
            except SanbosError as e:
                unreadable.append(str(e))
    try:
        res = scan_open(probe.values())
        seen = unreadable + res.problems     # kept: they may explain a PV missing below
        info = _pick(res, name, probe)
        _refuse_duplicates(info)
        mine = [probe[loc.ref.id][0] for loc in info.pvs.values()]
        for loc in info.outdated:
            mine.append(probe[loc.ref.id][0])
    finally:
        _close(probe)
    # 2. lock them and read again under the lock
    locked = _open_disks(mine, write, "exclusive" if write else "shared")
    try:
        res = scan_open(locked.values())
        res.problems += [p for p in seen if p not in res.problems]
        info = _pick(res, name, locked)
        _refuse_duplicates(info)
        if write and not allow_missing:
            _refuse_missing(info, name, res)
        if write and info.vg.exported and not allow_exported:
            raise LVMError(f"VG {name} is exported; import it first (sanbos vg import {name})")
        if write and info.vg.system_id and not allow_exported:
            raise LVMError(f"VG {name} belongs to system ID {info.vg.system_id!r}, not to this machine; "
                           f"import it (sanbos vg import {name}) to take it over")
        if write and info.vg.extra.get("lock_type"):
            raise LVMError(f"VG {name} uses lock_type {info.vg.extra['lock_type']} (lvmlockd); sanbos will not write it")
        if write and "WRITE" not in info.vg.status:
            raise LVMError(f"VG {name} is marked read-only in its metadata")
        return VolumeGroup(info, locked, write, res)
    except BaseException:
        _close(locked)
        raise


# -- create / extend / reduce --------------------------------------------------------
def _safety(refs: list[DiskRef], force_ids: Iterable[str]) -> list[str]:
    from . import safety
    notes = []
    for ref in refs:
        forced = safety.require_safe(ref, list(force_ids))
        notes += [f"{ref.id}: forced over: {r}" for r in forced]
    return notes


def _pv_plan(disk: Disk, ref: DiskRef, layout: str) -> tuple[int, int, int | None, str]:
    """(offset, size, partition, description) of the PV-to-be on a disk; nothing is written."""
    if layout == "whole":
        return 0, disk.size, None, f"{ref.id}: whole disk is the PV ({human(disk.size)})"
    from . import gpt
    try:
        parts = gpt.plan_layout(disk.size, gpt.sector_size(disk))
    except SpaceError as e:
        raise SpaceError(f"disk {ref.id}: {e}") from None
    lvm = [p for p in parts if p.kind == "lvm"][0]
    return lvm.start, lvm.size, lvm.number, f"{ref.id}: write GPT ({gpt.describe(parts)}); PV = partition {lvm.number}"


@dataclass
class _NewPV:
    """A PV planned on a disk (by ``_plan_pvs``), written by ``_write_pvs``."""

    ref: DiskRef
    disk: Disk
    offset: int
    size: int
    partition: int | None
    pv: PV
    label: PVLabel


def _plan_pvs(refs: list[DiskRef], opened: dict[str, tuple[DiskRef, Disk]], names: list[str], layout: str,
              extent: int, ba_size: int, plan: Plan) -> list[_NewPV]:
    """Plan a new PV on every disk; raises (SpaceError...) before anything is written."""
    out = []
    for ref, pvname in zip(refs, names):
        disk = opened[ref.id][1]
        off, size, part, desc = _pv_plan(disk, ref, layout)
        pv, lab = _new_pv(pvname, size, extent, ba_size, ref.id if part is None else f"{ref.id} partition {part}")
        plan.steps.append(desc)
        plan.steps.append(f"{ref.id}: PV {pvname} {lvmuuid.dashed(pv.id)} at byte {off}, {pv.pe_count} extents of "
                          f"{human(extent)}, metadata area {human(DEFAULT_MDA_SIZE)}")
        out.append(_NewPV(ref, disk, off, size, part, pv, lab))
    return out


def _write_pvs(new: list[_NewPV], layout: str, info: VGInfo) -> None:
    """GPT (layout "gpt"), then pvcreate on every planned PV; records them in ``info``."""
    from .lvm.scan import MdaCopy
    for n in new:
        if layout == "gpt":
            from . import gpt
            lvm = [p for p in gpt.apply_layout(n.disk) if p.kind == "lvm"][0]
            if (lvm.start, lvm.size) != (n.offset, n.size):
                raise LVMError(f"disk {n.ref.id}: the LVM partition written ({lvm.start}+{lvm.size}) is not the "
                               f"one planned ({n.offset}+{n.size})")
        loc = PVLoc(ref=n.ref, offset=n.offset, size=n.size, partition=n.partition, label=n.label, uuid=n.pv.id)
        hdr = _init_pv(n.disk, n.offset, n.label, loc.where)
        loc.mdas = [MdaCopy(index=0, start=DEFAULT_MDA_START, size=DEFAULT_MDA_SIZE, header=hdr)]
        info.pvs[n.pv.id] = loc


def _refuse_twice(refs: list[DiskRef]) -> None:
    seen: set[str] = set()
    for r in refs:
        if r.id in seen:
            raise UsageError(f"disk {r.id} is named twice")
        seen.add(r.id)


def _new_pv(name: str, size: int, extent_size: int, ba_size: int, where: str) -> tuple[PV, PVLabel]:
    pe_start = DEFAULT_PE_START
    ba_start = None
    if ba_size:
        ba_start = pe_start
        pe_start = pe_start + -(-ba_size // MiB) * (MiB // SECTOR)
    dev_sectors = size // SECTOR
    es = extent_size // SECTOR
    pe_count = (dev_sectors - pe_start) // es if dev_sectors > pe_start else 0
    if pe_count < 1:
        raise SpaceError(f"{where}: {human(size)} is too small for a PV with {human(extent_size)} extents")
    raw = lvmuuid.generate()
    pv = PV(name=name, id=raw, dev_size=dev_sectors, pe_start=pe_start, pe_count=pe_count,
            ba_start=ba_start, ba_size=(pe_start - ba_start) if ba_start else None)
    lab = PVLabel(pv_uuid=raw, device_size=size, data_areas=[DiskLocn(pe_start * SECTOR, 0)],
                  metadata_areas=[DiskLocn(DEFAULT_MDA_START, DEFAULT_MDA_SIZE)],
                  bootloader_areas=[DiskLocn(ba_start * SECTOR, pv.ba_size * SECTOR)] if ba_start else [],
                  ext_version=2, ext_flags=0, sector=1)
    return pv, lab


def _init_pv(disk: Disk, offset: int, lab: PVLabel, where: str) -> MDAHeader:
    """pvcreate: empty mda, orphan label (PV_EXT_USED clear)."""
    hdr = lvmcommit.init_mda(disk, offset, DEFAULT_MDA_START, DEFAULT_MDA_SIZE, where)
    lvmcommit.write_label(disk, offset, lab)
    disk.fsync()
    return hdr


def create(name: str, disks: list[DiskRef], force_ids: Iterable[str] = (), dry_run: bool = False,
           layout: str = "gpt", extent_size: int | str = DEFAULT_EXTENT, bootloader_area: int | str = 0,
           description: str = "") -> Plan | VolumeGroup:
    """A new VG over ``disks`` (GPT layout first unless ``layout="whole"``).

    Returns a Plan for a dry run, else the new VolumeGroup (already closed:
    its model is readable, open it again with ``open_vg`` to change it)."""
    check_name(name, "VG")
    if layout not in ("gpt", "whole"):
        raise UsageError(f"unknown layout {layout!r} (gpt or whole)")
    if not disks:
        raise UsageError("a VG needs at least one disk")
    ext = parse_size(extent_size)
    if ext < 4096 * 2 or ext & (ext - 1):
        raise UsageError(f"extent size {extent_size} must be a power of two of at least 8 KiB")
    ba = parse_size(bootloader_area)
    _refuse_twice(disks)
    plan = Plan(f"create VG {name} on {len(disks)} disk(s)")
    plan.steps += _safety(disks, force_ids)
    opened = _open_disks(disks, not dry_run, None if dry_run else "exclusive")
    try:
        vg = VG(name=name, id=lvmuuid.generate(), seqno=0, extent_size=ext // SECTOR)
        new = _plan_pvs(disks, opened, [f"pv{i}" for i in range(len(disks))], layout, ext, ba, plan)
        vg.pvs += [n.pv for n in new]
        plan.steps.append(f"commit VG {name} metadata seqno 1 to {len(disks)} metadata area(s)")
        if dry_run:
            return plan
        info = VGInfo(name=name, uuid=vg.id, seqno=0, vg=vg, text=b"")
        _write_pvs(new, layout, info)
        vgo = VolumeGroup(info, opened, True, ScanResult())
        vgo.commit(description or f"sanbos vg create {name}")
        vgo.close()
        return vgo
    finally:
        _close(opened)


def extend(name: str, disks: list[DiskRef], new_disks: list[DiskRef], force_ids: Iterable[str] = (),
           dry_run: bool = False, layout: str = "gpt") -> Plan | int:
    """Add ``new_disks`` as PVs; returns the new seqno (or a Plan).  Every new
    PV is planned (and refused: too small, not safe) before anything is written."""
    if layout not in ("gpt", "whole"):
        raise UsageError(f"unknown layout {layout!r} (gpt or whole)")
    _refuse_twice(new_disks)
    new_ids = {r.id for r in new_disks}
    plan = Plan(f"extend VG {name} with {len(new_disks)} disk(s)")
    # the new disks are not opened with the VG (they are locked below, after the safety check)
    with open_vg(name, [r for r in disks if r.id not in new_ids], write=not dry_run, allow_missing=True) as vgo:
        if vgo.info.missing:
            from .lvm.scan import scan
            members = {pv.id for pv in vgo.vg.pvs}
            for loc in scan(new_disks).pvs:
                if loc.uuid in members:
                    raise UsageError(f"disk {loc.ref.id} is already a PV of VG {name}")
            _refuse_missing(vgo.info, name, vgo.scan)
        plan.steps += _safety(new_disks, force_ids)
        newd = _open_disks(new_disks, not dry_run, None if dry_run else "exclusive")
        vgo._disks.update(newd)
        vg = vgo.vg
        used = {p.name for p in vg.pvs}
        names = [n for n in (f"pv{i}" for i in range(len(used) + len(new_disks) + 1)) if n not in used]
        new = _plan_pvs(new_disks, newd, names, layout, vg.extent_bytes, 0, plan)
        for n in new:
            if "EXPORTED" in vg.status:
                n.pv.status.append("EXPORTED")
            vg.pvs.append(n.pv)
        plan.steps.append(f"commit VG {name} seqno {vgo.seqno + 1} to every metadata area")
        if dry_run:
            return plan
        _write_pvs(new, layout, vgo.info)
        return vgo.commit(f"sanbos vg extend {name} " + " ".join(r.id for r in new_disks))


def reduce(name: str, disks: list[DiskRef], remove: list[str], dry_run: bool = False) -> Plan | int:
    """Remove empty PVs (named by disk ID/prefix or PV UUID) from the VG, then wipe their labels."""
    plan = Plan(f"reduce VG {name} by {len(remove)} PV(s)")
    with open_vg(name, disks, write=not dry_run) as vgo:
        vg = vgo.vg
        gone: list[tuple[PV, PVLoc]] = []
        for w in remove:
            pv = vgo.pv_for_disk(w)
            used = vg.pv_used(pv.name)
            if used:
                lvs = sorted({u[2] for u in used})
                raise LVMError(f"PV {pv.name} on {vgo._pv_label(pv.name)} is in use by LV(s) {', '.join(lvs)}; "
                               "only empty PVs can be removed")
            gone.append((pv, vgo.pv_loc(pv.name)))
        if len(gone) >= len(vg.pvs):
            raise LVMError(f"cannot remove every PV of VG {name}")
        for pv, loc in gone:
            vg.pvs.remove(pv)
            plan.steps.append(f"remove PV {pv.name} ({loc.where}) from the metadata, then wipe its label")
        plan.steps.append(f"commit VG {name} seqno {vgo.seqno + 1}")
        if dry_run:
            return plan
        keep = {pv.id: vgo.info.pvs.pop(pv.id) for pv, _ in gone}
        seq = vgo.commit(f"sanbos vg reduce {name}")
        for pv, loc in gone:
            disk = vgo._disks[loc.ref.id][1]
            wipe_pv(disk, loc)
        del keep
        return seq


def wipe_pv(disk: Disk, loc: PVLoc) -> None:
    """pvremove: zero the label sectors and the mda headers."""
    for s in range(4):
        head = disk.read(loc.offset + s * 512, 512)
        if head[0:8] == b"LABELONE":
            disk.write(loc.offset + s * 512, bytes(512))
    for m in loc.mdas:
        disk.write(loc.offset + m.start, bytes(512))
    disk.fsync()


# -- LVs -----------------------------------------------------------------------------
def _extents(vg: VG, size: int | str, what: str) -> int:
    b = parse_size(size)
    if b <= 0:
        raise UsageError(f"{what}: size must be positive, not {size!r}")
    return -(-b // vg.extent_bytes)


def _pv_names(vgo: VolumeGroup, pvs: Iterable[str] | None) -> list[str]:
    if not pvs:
        return [p.name for p in vgo.vg.pvs]
    return [vgo.pv_for_disk(w).name for w in pvs]


def lv_create(vg_name: str, disks: list[DiskRef], name: str, size: int | str, type: str = "linear",
              pvs: Iterable[str] | None = None, dry_run: bool = False) -> Plan | int:
    """Create a linear LV (on the named PVs, in order) or a raid1 LV with one
    leg per named PV (each leg: 1-extent ``_rmeta_K``, zeroed, + ``_rimage_K``)."""
    check_name(name, "LV")
    if type not in ("linear", "raid1"):
        raise UsageError(f"LV type {type!r} is not supported (linear or raid1)")
    plan = Plan(f"create {type} LV {name} in VG {vg_name}")
    with open_vg(vg_name, disks, write=not dry_run) as vgo:
        vg = vgo.vg
        if vg.lv(name) is not None:
            raise LVMError(f"VG {vg_name} already has an LV named {name}")
        n = _extents(vg, size, f"LV {vg_name}/{name}")
        names = _pv_names(vgo, pvs)
        zero: list[tuple[str, int]] = []
        if type == "linear":
            segs = alloc.allocate(vg, n, names, what=f"LV {vg_name}/{name}", label=vgo._pv_label)
            vg.lvs.append(new_lv(name, segs))
        else:
            if len(names) < 2 and pvs is None:
                raise UsageError("raid1 needs at least two PVs (one leg per PV)")
            if len(set(names)) != len(names):
                twice = next(n for n in names if names.count(n) > 1)
                raise UsageError(f"LV {vg_name}/{name}: raid1 legs must be on different PVs; "
                                 f"{vgo._pv_label(twice)} is named twice")
            raids, subs = [], []
            for k, pvn in enumerate(names):
                meta = alloc.allocate(vg, 1, [pvn], what=f"LV {name} leg {k} metadata",
                                      label=vgo._pv_label)
                mlv = new_lv(f"{name}_rmeta_{k}", meta, visible=False)
                vg.lvs.append(mlv)
                img = alloc.allocate(vg, n, [pvn], what=f"LV {name} leg {k} on {vgo._pv_label(pvn)}",
                                     label=vgo._pv_label)
                ilv = new_lv(f"{name}_rimage_{k}", img, visible=False)
                vg.lvs.append(ilv)
                raids += [mlv.name, ilv.name]
                subs += [mlv, ilv]
                zero.append((pvn, meta[0].stripes[0][1]))
            for s in subs:
                vg.lvs.remove(s)
            top = new_lv(name, [Segment(0, n, "raid1", raids=raids, region_size=RAID_REGION)])
            vg.lvs.append(top)
            vg.lvs += subs
        for seg_lv in [l for l in vg.lvs if l.name == name or l.name.startswith(name + "_r")]:
            for s in seg_lv.segments:
                if s.base_type == "striped":
                    pvn, pe = s.stripes[0]
                    plan.steps.append(f"{seg_lv.name}: LE {s.start_extent}-{s.start_extent + s.extent_count - 1}"
                                      f" on {vgo._pv_label(pvn)} PE {pe}-{pe + s.extent_count - 1}")
        plan.steps.append(f"commit VG {vg_name} seqno {vgo.seqno + 1}")
        if dry_run:
            return plan
        _zero_extents(vgo, zero)
        if type == "raid1":
            _write_raid_meta(vgo, vg.lv(name))
        return vgo.commit(f"sanbos lv create {vg_name}/{name}")


def _zero_extents(vgo: VolumeGroup, where: list[tuple[str, int]]) -> None:
    ext = vgo.vg.extent_bytes
    for pvn, pe in where:
        loc = vgo.pv_loc(pvn)
        disk = vgo._disks[loc.ref.id][1]
        disk.zero(loc.offset + vgo.vg.pv(pvn).pe_start * SECTOR + pe * ext, ext)
        disk.fsync()


def _write_raid_meta(vgo: VolumeGroup, lv: LV) -> None:
    """dm-raid superblock + clean bitmap in every ``_rmeta_K`` of a raid1 LV
    (all legs in sync), so the kernel can assemble it even with a leg missing.
    Every leg is rewritten with one events count above any found."""
    from .lvm import dmraid
    seg = lv.segments[0]
    metas = seg.metas
    if not metas or len(metas) != len(seg.images):
        return
    ext = vgo.vg.extent_bytes
    leg_sectors = lv.extents * vgo.vg.extent_size
    places = []
    events = 0
    for m in metas:
        mlv = vgo.vg.lv(m)
        pvn, pe = mlv.segments[0].stripes[0]
        loc = vgo.pv_loc(pvn)
        disk = vgo._disks[loc.ref.id][1]
        off = loc.offset + vgo.vg.pv(pvn).pe_start * SECTOR + pe * ext
        try:
            events = max(events, dmraid.DmRaidSuperblock.parse(disk.read(off, 512)).events)
        except MetadataError:
            pass
        places.append((disk, off, mlv.extents * ext))
    for k, (disk, off, size) in enumerate(places):
        img = dmraid.rmeta_image(len(metas), k, leg_sectors, seg.region_size or RAID_REGION, events + 1)
        if len(img) > size:
            raise SpaceError(f"LV {lv.name}: raid metadata ({len(img)} bytes) does not fit its rmeta LV")
        disk.write(off, img + bytes(min(size, 1 << 16) - len(img)))
        disk.fsync()


def _sub_lvs(vg: VG, lv: LV) -> list[str]:
    out = []
    for s in lv.segments:
        subs = s.images + s.metas + ([s.mirror_log] if s.mirror_log else [])
        for n in subs:
            out.append(n)
            sub = vg.lv(n)
            if sub is not None:
                out += _sub_lvs(vg, sub)
    return out


def lv_remove(vg_name: str, disks: list[DiskRef], name: str, dry_run: bool = False) -> Plan | int:
    plan = Plan(f"remove LV {name} from VG {vg_name}")
    with open_vg(vg_name, disks, write=not dry_run) as vgo:
        lv = vgo.lv(name)
        if not lv.visible:
            raise LVMError(f"LV {name} is a hidden part of another LV; remove that LV instead")
        drop = [name] + _sub_lvs(vgo.vg, lv)
        vgo.vg.lvs = [l for l in vgo.vg.lvs if l.name not in drop]
        plan.steps += [f"drop LV {n}" for n in drop] + [f"commit VG {vg_name} seqno {vgo.seqno + 1}"]
        if dry_run:
            return plan
        return vgo.commit(f"sanbos lv remove {vg_name}/{name}")


def _raid_seg(vgo: VolumeGroup, name: str) -> tuple[LV, Segment]:
    lv = vgo.lv(name)
    if len(lv.segments) != 1 or lv.segments[0].base_type != "raid1":
        raise LVMError(f"LV {name} is not a raid1 LV")
    return lv, lv.segments[0]


def raid1_add_leg(vg_name: str, disks: list[DiskRef], name: str, pv: str, dry_run: bool = False) -> Plan | int:
    """Add a leg on PV ``pv`` (disk ID): zeroed rmeta, rimage filled from leg 0."""
    plan = Plan(f"add a leg to raid1 LV {name} in VG {vg_name}")
    with open_vg(vg_name, disks, write=not dry_run) as vgo:
        vg = vgo.vg
        lv, seg = _raid_seg(vgo, name)
        pvn = vgo.pv_for_disk(pv).name
        for img in seg.images + seg.metas:
            sub = vg.lv(img)
            if sub and any(p == pvn for s in sub.segments for p, _ in s.stripes):
                raise LVMError(f"LV {name} already has a leg on {vgo._pv_label(pvn)}")
        k = len(seg.images)
        meta = alloc.allocate(vg, 1, [pvn], what=f"LV {name} new leg metadata", label=vgo._pv_label)
        mlv = new_lv(f"{name}_rmeta_{k}", meta, visible=False)
        vg.lvs.append(mlv)
        img = alloc.allocate(vg, lv.extents, [pvn], what=f"LV {name} new leg on {vgo._pv_label(pvn)}",
                             label=vgo._pv_label)
        ilv = new_lv(f"{name}_rimage_{k}", img, visible=False)
        vg.lvs.append(ilv)
        seg.raids += [mlv.name, ilv.name]
        plan.steps += [f"new leg {k} on {vgo._pv_label(pvn)}: rmeta PE {meta[0].stripes[0][1]}, "
                       f"rimage {len(img)} segment(s); copy {human(lv.extents * vg.extent_bytes)} from leg 0",
                       f"commit VG {vg_name} seqno {vgo.seqno + 1}"]
        if dry_run:
            return plan
        _zero_extents(vgo, [(pvn, meta[0].stripes[0][1])])
        _copy_leg(vgo, lv, img, pvn)
        _write_raid_meta(vgo, lv)
        return vgo.commit(f"sanbos lv raid1 add leg {vg_name}/{name}")


def _copy_leg(vgo: VolumeGroup, lv: LV, img: list[Segment], pvn: str) -> None:
    src = vgo.lv_io(lv.name, leg=0)
    loc = vgo.pv_loc(pvn)
    disk = vgo._disks[loc.ref.id][1]
    ext = vgo.vg.extent_bytes
    pv = vgo.vg.pv(pvn)
    for s in img:
        pe = s.stripes[0][1]
        for i in range(s.extent_count):
            data = src.pread((s.start_extent + i) * ext, ext)
            disk.write(loc.offset + pv.pe_start * SECTOR + (pe + i) * ext, data)
    disk.fsync()


def raid1_remove_leg(vg_name: str, disks: list[DiskRef], name: str, pv: str, dry_run: bool = False) -> Plan | int:
    """Drop the leg on PV ``pv``; legs are renumbered; one leg left -> linear LV."""
    plan = Plan(f"remove a leg of raid1 LV {name} in VG {vg_name}")
    with open_vg(vg_name, disks, write=not dry_run, allow_missing=True) as vgo:
        vg = vgo.vg
        lv, seg = _raid_seg(vgo, name)
        pvo = vg.pv_by_id(lvmuuid.normalize(pv)) if _looks_uuid(pv) else None
        pvn = pvo.name if pvo else vgo.pv_for_disk(pv).name
        pairs = [(seg.raids[i], seg.raids[i + 1]) for i in range(0, len(seg.raids), 2)]
        keep, drop = [], []
        for meta, img in pairs:
            sub = vg.lv(img)
            on = sub is not None and any(p == pvn for s in sub.segments for p, _ in s.stripes)
            (drop if on else keep).append((meta, img))
        if not drop:
            raise LVMError(f"LV {name} has no leg on {vgo._pv_label(pvn)}")
        if not keep:
            raise LVMError(f"LV {name} has only that leg; remove the LV instead")
        dropped = {n for pair in drop for n in pair}
        vg.lvs = [l for l in vg.lvs if l.name not in dropped]
        if len(keep) == 1:
            img = vg.lv(keep[0][1])
            vg.lvs = [l for l in vg.lvs if l.name not in keep[0]]
            lv.segments = img.segments
            plan.steps.append(f"LV {name} becomes linear on its remaining leg")
        else:
            seg.raids = []
            for k, (meta, img) in enumerate(keep):
                for old, new in ((meta, f"{name}_rmeta_{k}"), (img, f"{name}_rimage_{k}")):
                    vg.lv(old).name = new
                    seg.raids.append(new)
        plan.steps += [f"drop {n}" for n in sorted(dropped)] + [f"commit VG {vg_name} seqno {vgo.seqno + 1}"]
        if dry_run:
            return plan
        if len(keep) > 1:
            _write_raid_meta(vgo, lv)
        return vgo.commit(f"sanbos lv raid1 remove leg {vg_name}/{name}")


def _looks_uuid(s: str) -> bool:
    return lvmuuid.is_valid(s.replace("-", ""))


# -- export / import -------------------------------------------------------------------
def export(name: str, disks: list[DiskRef], dry_run: bool = False) -> Plan | int:
    """vgexport: EXPORTED on the VG and every PV, system_id cleared."""
    plan = Plan(f"export VG {name}")
    with open_vg(name, disks, write=not dry_run) as vgo:
        vg = vgo.vg
        if "EXPORTED" not in vg.status:
            vg.status.insert(0, "EXPORTED")
        for pv in vg.pvs:
            if "EXPORTED" not in pv.status:
                pv.status.append("EXPORTED")
        vg.system_id = None
        plan.steps += ["add EXPORTED to the VG and every PV, clear system_id",
                       f"commit VG {name} seqno {vgo.seqno + 1}"]
        if dry_run:
            return plan
        return vgo.commit(f"sanbos vg export {name}")


def import_(name: str, disks: list[DiskRef], readonly: bool = False, dry_run: bool = False) -> Plan | VolumeGroup | int:
    """vgimport: clear EXPORTED.  ``readonly=True``: shared locks, nothing
    written; returns the open (read-only) VolumeGroup, to be closed by the caller."""
    if readonly:
        return open_vg(name, disks, write=False, allow_exported=True)
    plan = Plan(f"import VG {name}")
    with open_vg(name, disks, write=not dry_run, allow_exported=True) as vgo:
        vg = vgo.vg
        if not vg.exported and not vg.system_id:
            raise LVMError(f"VG {name} is not exported (and has no foreign system ID)")
        vg.status = [s for s in vg.status if s != "EXPORTED"]
        for pv in vg.pvs:
            pv.status = [s for s in pv.status if s != "EXPORTED"]
        vg.system_id = None
        plan.steps += ["remove EXPORTED from the VG and every PV", f"commit VG {name} seqno {vgo.seqno + 1}"]
        if dry_run:
            return plan
        return vgo.commit(f"sanbos vg import {name}")


# -- check / repair -----------------------------------------------------------------------
@dataclass
class CheckReport:
    name: str
    seqno: int
    problems: list[str]
    repaired: list[str] = field(default_factory=list)

    @property
    def clean(self) -> bool:
        return not self.problems

    def __str__(self) -> str:
        lines = [f"VG {self.name} seqno {self.seqno}: " + ("clean" if self.clean else f"{len(self.problems)} problem(s)")]
        lines += [f"  problem: {p}" for p in self.problems]
        lines += [f"  repaired: {r}" for r in self.repaired]
        return "\n".join(lines)


def _problems(info: VGInfo) -> list[str]:
    return (info.corrupt + info.stale + info.problems + info.duplicates
            + [f"PV {m} ({lvmuuid.dashed(info.vg.pv(m).id)}) is missing" for m in info.missing])


def check(name: str, disks: list[DiskRef], repair: bool = False, dry_run: bool = False) -> CheckReport | Plan:
    """Report stale/corrupt labels, headers and texts; with ``repair``, rewrite
    them from the newest good copy (as ``vgck --updatemetadata``)."""
    with open_vg(name, disks, write=repair and not dry_run, allow_exported=True) as vgo:
        info = vgo.info
        probs = _problems(info) + _seen(info, vgo.scan)
        report = CheckReport(name, info.seqno, probs)
        if not repair or not probs:
            return report
        if info.duplicates:
            raise LVMError(f"VG {name}: duplicate PVs, refusing to repair: " + "; ".join(info.duplicates))
        if dry_run:
            return Plan(f"repair VG {name}", [f"fix: {p}" for p in probs]
                        + [f"rewrite metadata seqno {info.seqno + 1} into every metadata area and label"])
        for loc in info.outdated:
            wipe_pv(vgo._disks[loc.ref.id][1], loc)
            report.repaired.append(f"{loc.where}: outdated PV wiped (no longer in VG {name})")
        damaged = [pv for pv in vgo.vg.pvs if pv.id in info.pvs and info.pvs[pv.id].label is None]
        seq = vgo.commit(f"sanbos vg check --repair {name}")
        for pv in damaged:
            report.repaired.append(f"{info.pvs[pv.id].where}: label rebuilt")
        report.repaired.append(f"metadata seqno {seq} written to every metadata area")
    with open_vg(name, disks, write=False, allow_exported=True) as again:
        report.problems = _problems(again.info)
        report.seqno = again.seqno
    return report


def list_vgs(disks: list[DiskRef]) -> ScanResult:
    """Scan for VGs (no locks, read only)."""
    from .lvm.scan import scan
    return scan(disks)


def describe_all(disks: list[DiskRef]) -> list[dict[str, Any]]:
    """``VolumeGroup.describe()`` of every VG found on ``disks``, from one scan
    (no locks, read only: a listing), sorted by name."""
    res = list_vgs(disks)
    return sorted((VolumeGroup(info, {}, False, res).describe() for info in res.by_uuid.values()),
                  key=lambda d: (d["name"], d["uuid"]))


def change_tags(name: str, disks: list[DiskRef], add: Iterable[str] = (), remove: Iterable[str] = (),
                dry_run: bool = False) -> Plan | int:
    """vgchange --addtag/--deltag: one metadata commit."""
    add, remove = list(add), list(remove)
    for t in add:
        if not t or not all(c.isalnum() or c in "_+.-/=!:&#" for c in t):
            raise UsageError(f"tag {t!r} is invalid: use A-Z a-z 0-9 _ + . - / = ! : & #")
    plan = Plan(f"change tags of VG {name}")
    with open_vg(name, disks, write=not dry_run) as vgo:
        tags = list(vgo.vg.extra.get("tags", []))
        tags = [t for t in tags if t not in remove] + [t for t in add if t not in tags]
        vgo.vg.extra["tags"] = tags
        plan.steps += [f"tags = {tags}", f"commit VG {name} seqno {vgo.seqno + 1}"]
        if dry_run:
            return plan
        return vgo.commit(f"sanbos vg change {name}")
