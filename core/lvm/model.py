"""The VG model: PVs, LVs and segments, built from and turned back into the
parsed text tree.  Unknown keys are kept (``extra``) so that a VG written by
real LVM2 survives a read-modify-write by us.
"""

from __future__ import annotations

import os
import re
import time
from dataclasses import dataclass, field
from typing import Any

from ..errors import MetadataError, UsageError
from . import text as lvmtext
from . import uuid as lvmuuid

SECTOR = 512
NAME_RE = re.compile(r"^[A-Za-z0-9._+][A-Za-z0-9._+-]*$")
VG_STATUS = {"EXPORTED", "RESIZEABLE", "PVMOVE", "READ", "WRITE", "CLUSTERED", "SHARED", "PARTIAL"}
PV_STATUS = {"ALLOCATABLE", "EXPORTED", "MISSING"}
LV_STATUS = {"READ", "WRITE", "VISIBLE", "FIXED_MINOR", "PVMOVE", "LOCKED", "NOTSYNCED", "REBUILD",
             "WRITEMOSTLY", "MIRRORED", "VIRTUAL", "MERGING", "CONVERTING", "PARTIAL"}
RESERVED_LV_SUFFIXES = ("_cdata", "_cmeta", "_corig", "_cpool", "_cvol", "_wcorig", "_mlog", "_mimage",
                        "_pmspare", "_rimage", "_rmeta", "_tdata", "_tmeta", "_vorigin", "_vdata")
CONTENTS = "Text Format Volume Group"


def check_name(name: str, what: str = "VG") -> str:
    """Refuse names LVM would refuse (UsageError naming the rule)."""
    if not name:
        raise UsageError(f"{what} name is empty")
    if len(name) > 127:
        raise UsageError(f"{what} name {name!r} is longer than 127 characters")
    if name in (".", ".."):
        raise UsageError(f"{what} name {name!r} is reserved")
    if not NAME_RE.match(name):
        raise UsageError(f"{what} name {name!r} is invalid: use only A-Z a-z 0-9 . _ + - and do not start with -")
    if what == "VG" and name in ("lvm", "mapper", "dev"):
        raise UsageError(f"VG name {name!r} is reserved")
    if what == "LV":
        if name.startswith("snapshot") or name.startswith("pvmove"):
            raise UsageError(f"LV name {name!r} is reserved (snapshot*/pvmove* are LVM's own)")
        for suf in RESERVED_LV_SUFFIXES:
            if suf in name:
                raise UsageError(f"LV name {name!r} contains the reserved string {suf!r}")
    return name


@dataclass
class Segment:
    start_extent: int
    extent_count: int
    type: str = "striped"
    stripes: list[tuple[str, int]] = field(default_factory=list)   # (pv name, first PE)
    stripe_size: int | None = None                                  # sectors, striped N>1
    raids: list[str] = field(default_factory=list)                  # raid: rmeta, rimage, ...
    region_size: int | None = None
    mirrors: list[tuple[str, int]] = field(default_factory=list)    # mirror: (lv, first LE)
    mirror_log: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def base_type(self) -> str:
        return self.type.split("+", 1)[0]

    @property
    def stripe_count(self) -> int:
        return len(self.stripes)

    @property
    def images(self) -> list[str]:
        """Data sub-LVs of a raid/mirror segment, in leg order."""
        if self.base_type == "mirror":
            return [n for n, _ in self.mirrors]
        return [n for n in self.raids if "_rmeta_" not in n]

    @property
    def metas(self) -> list[str]:
        return [n for n in self.raids if "_rmeta_" in n]

    def to_tree(self) -> dict[str, Any]:
        t: dict[str, Any] = {"start_extent": self.start_extent, "extent_count": self.extent_count}
        t["type"] = self.type
        bt = self.base_type
        if bt == "striped":
            t["stripe_count"] = len(self.stripes)
            if len(self.stripes) > 1:
                t["stripe_size"] = self.stripe_size or 128
        elif bt == "mirror":
            t["mirror_count"] = len(self.mirrors)
            if self.mirror_log:
                t["mirror_log"] = self.mirror_log
            if self.region_size is not None:
                t["region_size"] = self.region_size
        elif bt.startswith("raid"):
            t["device_count"] = len(self.images)
            if self.region_size is not None:
                t["region_size"] = self.region_size
        for k, v in self.extra.items():
            t[k] = v
        if bt == "striped":
            t["stripes"] = [x for pv, pe in self.stripes for x in (pv, pe)]
        elif bt == "mirror":
            t["mirrors"] = [x for lv, le in self.mirrors for x in (lv, le)]
        elif bt.startswith("raid"):
            t["raids"] = list(self.raids)
        return t

    @classmethod
    def from_tree(cls, t: dict[str, Any], where: str) -> "Segment":
        t = dict(t)
        try:
            start = _int(t.pop("start_extent"), where, "start_extent")
            count = _int(t.pop("extent_count"), where, "extent_count")
            typ = t.pop("type")
        except KeyError as e:
            raise MetadataError(f"{where}: segment lacks {e.args[0]}") from None
        if not isinstance(typ, str):
            raise MetadataError(f"{where}: segment type is not a string")
        seg = cls(start, count, typ)
        bt = seg.base_type
        if bt == "striped":
            n = _int(t.pop("stripe_count", None), where, "stripe_count")
            arr = t.pop("stripes", None)
            seg.stripes = _pairs(arr, where, "stripes", str)
            if len(seg.stripes) != n or n < 1:
                raise MetadataError(f"{where}: stripe_count {n} but {len(seg.stripes)} stripes")
            if n > 1:
                seg.stripe_size = _int(t.pop("stripe_size", None), where, "stripe_size")
            else:
                t.pop("stripe_size", None)
            if count % n:
                raise MetadataError(f"{where}: extent_count {count} is not a multiple of stripe_count {n}")
        elif bt == "mirror":
            t.pop("mirror_count", None)
            seg.mirrors = _pairs(t.pop("mirrors", None), where, "mirrors", str)
            seg.mirror_log = t.pop("mirror_log", None)
            if "region_size" in t:
                seg.region_size = _int(t.pop("region_size"), where, "region_size")
        elif bt.startswith("raid"):
            t.pop("device_count", None)
            arr = t.pop("raids", None)
            if not isinstance(arr, list) or not all(isinstance(x, str) for x in arr):
                raise MetadataError(f"{where}: raid segment lacks a list of sub-LV names")
            seg.raids = list(arr)
            if "region_size" in t:
                seg.region_size = _int(t.pop("region_size"), where, "region_size")
        seg.extra = t
        return seg


@dataclass
class LV:
    name: str
    id: str                                   # raw 32
    status: list[str] = field(default_factory=lambda: ["READ", "WRITE", "VISIBLE"])
    flags: list[str] = field(default_factory=list)
    creation_time: int | None = None
    creation_host: str | None = None
    segments: list[Segment] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def visible(self) -> bool:
        return "VISIBLE" in self.status

    @property
    def extents(self) -> int:
        return sum(s.extent_count for s in self.segments)

    @property
    def seg_type(self) -> str:
        types = {s.base_type for s in self.segments}
        if types == {"striped"}:
            return "linear" if all(s.stripe_count == 1 for s in self.segments) else "striped"
        return ",".join(sorted(types))

    def to_tree(self) -> dict[str, Any]:
        t: dict[str, Any] = {"id": lvmuuid.dashed(self.id), "status": list(self.status),
                             "flags": list(self.flags)}
        extra = dict(self.extra)
        if "tags" in extra:
            t["tags"] = extra.pop("tags")
        if self.creation_time is not None:
            t["creation_time"] = self.creation_time
            t["creation_host"] = self.creation_host or ""
        t.update(extra)
        t["segment_count"] = len(self.segments)
        for i, s in enumerate(self.segments, 1):
            t[f"segment{i}"] = s.to_tree()
        return t

    @classmethod
    def from_tree(cls, name: str, t: dict[str, Any], where: str) -> "LV":
        t = dict(t)
        w = f"{where}: LV {name}"
        if "id" not in t or "status" not in t or "segment_count" not in t:
            raise MetadataError(f"{w}: lacks id, status or segment_count")
        lv = cls(name=name, id=lvmuuid.normalize(_str(t.pop("id"), w, "id"), f"LV {name} id"))
        lv.status = _strlist(t.pop("status"), w, "status")
        bad = [s for s in lv.status if s not in LV_STATUS]
        if bad:
            raise MetadataError(f"{w}: unknown status flag {bad[0]!r}")
        lv.flags = _strlist(t.pop("flags", []), w, "flags")
        if "creation_time" in t:
            lv.creation_time = _int(t.pop("creation_time"), w, "creation_time")
            lv.creation_host = str(t.pop("creation_host", ""))
        nseg = _int(t.pop("segment_count"), w, "segment_count")
        segs = []
        for k in [k for k, v in t.items() if isinstance(v, dict)]:
            segs.append(Segment.from_tree(t.pop(k), f"{w} {k}"))
        if len(segs) != nseg:
            raise MetadataError(f"{w}: segment_count {nseg} but {len(segs)} segments")
        segs.sort(key=lambda s: s.start_extent)
        le = 0
        for s in segs:
            if s.start_extent != le:
                raise MetadataError(f"{w}: segments leave a gap or overlap at extent {le}")
            le += s.extent_count
        lv.segments = segs
        lv.extra = t
        return lv


@dataclass
class PV:
    name: str                                 # pv0, pv1 ...
    id: str                                   # raw 32
    dev_size: int                             # sectors
    pe_start: int                             # sectors
    pe_count: int
    status: list[str] = field(default_factory=lambda: ["ALLOCATABLE"])
    flags: list[str] = field(default_factory=list)
    device: str | None = None
    ba_start: int | None = None
    ba_size: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def to_tree(self) -> dict[str, Any]:
        t: dict[str, Any] = {"id": lvmuuid.dashed(self.id)}
        extra = dict(self.extra)
        if self.device is not None:
            t["device"] = self.device
        for k in ("device_id_type", "device_id"):
            if k in extra:
                t[k] = extra.pop(k)
        t["status"] = list(self.status)
        t["flags"] = list(self.flags)
        if "tags" in extra:
            t["tags"] = extra.pop("tags")
        t["dev_size"] = self.dev_size
        t["pe_start"] = self.pe_start
        t["pe_count"] = self.pe_count
        if self.ba_start is not None:
            t["ba_start"] = self.ba_start
            t["ba_size"] = self.ba_size or 0
        t.update(extra)
        return t

    @classmethod
    def from_tree(cls, name: str, t: dict[str, Any], where: str) -> "PV":
        t = dict(t)
        w = f"{where}: PV {name}"
        for k in ("id", "status", "pe_start", "pe_count"):
            if k not in t:
                raise MetadataError(f"{w}: lacks {k}")
        pv = cls(name=name, id=lvmuuid.normalize(_str(t.pop("id"), w, "id"), f"PV {name} id"),
                 dev_size=0, pe_start=_int(t.pop("pe_start"), w, "pe_start"),
                 pe_count=_int(t.pop("pe_count"), w, "pe_count"))
        pv.status = _strlist(t.pop("status"), w, "status")
        bad = [s for s in pv.status if s not in PV_STATUS]
        if bad:
            raise MetadataError(f"{w}: unknown status flag {bad[0]!r}")
        pv.flags = _strlist(t.pop("flags", []), w, "flags")
        if "dev_size" in t:
            pv.dev_size = _int(t.pop("dev_size"), w, "dev_size")
        if "device" in t:
            pv.device = str(t.pop("device"))
        if ("ba_start" in t) != ("ba_size" in t):
            raise MetadataError(f"{w}: ba_start and ba_size must come together")
        if "ba_start" in t:
            pv.ba_start = _int(t.pop("ba_start"), w, "ba_start")
            pv.ba_size = _int(t.pop("ba_size"), w, "ba_size")
        pv.extra = t
        return pv


@dataclass
class VG:
    name: str
    id: str                                   # raw 32
    seqno: int = 1
    extent_size: int = 8192                   # sectors
    status: list[str] = field(default_factory=lambda: ["RESIZEABLE", "READ", "WRITE"])
    flags: list[str] = field(default_factory=list)
    system_id: str | None = None
    max_lv: int = 0
    max_pv: int = 0
    metadata_copies: int | None = 0
    format: str | None = "lvm2"
    pvs: list[PV] = field(default_factory=list)
    lvs: list[LV] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)
    trailer: dict[str, Any] = field(default_factory=dict)

    # -- queries --------------------------------------------------------------
    @property
    def exported(self) -> bool:
        return "EXPORTED" in self.status

    @property
    def extent_bytes(self) -> int:
        return self.extent_size * SECTOR

    def pv(self, name: str) -> PV:
        for p in self.pvs:
            if p.name == name:
                return p
        raise MetadataError(f"VG {self.name}: no PV named {name!r} in the metadata")

    def pv_by_id(self, raw: str) -> PV | None:
        for p in self.pvs:
            if p.id == raw:
                return p
        return None

    def lv(self, name: str) -> LV | None:
        for l in self.lvs:
            if l.name == name:
                return l
        return None

    def pv_used(self, pv_name: str) -> list[tuple[int, int, str]]:
        """(first PE, count, LV name) ranges allocated on a PV, sorted."""
        out = []
        for lv in self.lvs:
            for s in lv.segments:
                if s.base_type == "striped":
                    per = s.extent_count // max(1, s.stripe_count)
                    for pvn, pe in s.stripes:
                        if pvn == pv_name:
                            out.append((pe, per, lv.name))
        return sorted(out)

    def free_extents(self, pv_name: str) -> int:
        return self.pv(pv_name).pe_count - sum(n for _, n, _ in self.pv_used(pv_name))

    # -- tree / text ------------------------------------------------------------
    def to_tree(self) -> dict[str, Any]:
        t: dict[str, Any] = {"id": lvmuuid.dashed(self.id), "seqno": self.seqno}
        extra = dict(self.extra)
        if self.format is not None:
            t["format"] = self.format
        t["status"] = list(self.status)
        t["flags"] = list(self.flags)
        if "tags" in extra:
            t["tags"] = extra.pop("tags")
        if self.system_id:
            t["system_id"] = self.system_id
        for k in ("lock_type", "lock_args"):
            if k in extra:
                t[k] = extra.pop(k)
        t["extent_size"] = self.extent_size
        t["max_lv"] = self.max_lv
        t["max_pv"] = self.max_pv
        if self.metadata_copies is not None:
            t["metadata_copies"] = self.metadata_copies
        hist = extra.pop("historical_logical_volumes", None)
        t.update(extra)
        t["physical_volumes"] = {p.name: p.to_tree() for p in self.pvs}
        if self.lvs:
            ordered = [l for l in self.lvs if l.visible] + [l for l in self.lvs if not l.visible]
            t["logical_volumes"] = {l.name: l.to_tree() for l in ordered}
        if hist is not None:
            t["historical_logical_volumes"] = hist
        return t

    def to_text(self, description: str = "", now: float | None = None) -> bytes:
        """The exact on-disk copy: VG section, trailer, ``\\n\\n\\0``."""
        now = time.time() if now is None else now
        ctime = time.ctime(now)
        host = os.uname().nodename
        try:
            u = os.uname()
            uname = f"{u.sysname} {u.nodename} {u.release} {u.version} {u.machine}"
        except Exception:  # pragma: no cover
            uname = host
        parts = [lvmtext.dump_section(self.name, self.to_tree()),
                 f"# Generated by sanbos (LVM2 text format version 1): {ctime}\n\n",
                 f'contents = "{CONTENTS}"\nversion = 1\n\n',
                 f"description = {lvmtext.quote(description)}\n\n",
                 f"creation_host = {lvmtext.quote(host)}\t# {uname}\n",
                 f"creation_time = {int(now)}\t# {ctime}\n\n"]
        if self.system_id:
            parts.insert(4, f"creation_host_system_id = {lvmtext.quote(self.system_id)}\n")
        return "".join(parts).encode("utf-8") + b"\0"

    @classmethod
    def from_tree(cls, tree: dict[str, Any], where: str = "metadata") -> "VG":
        if tree.get("contents") != CONTENTS:
            raise MetadataError(f"{where}: not LVM2 VG metadata (contents = {tree.get('contents')!r})")
        if tree.get("version") != 1:
            raise MetadataError(f"{where}: metadata version {tree.get('version')!r} is not 1")
        name = next((k for k, v in tree.items() if isinstance(v, dict)), None)
        if name is None:
            raise MetadataError(f"{where}: metadata holds no VG section")
        try:
            check_name(name, "VG")
        except UsageError as e:
            raise MetadataError(f"{where}: {e}") from None
        t = dict(tree[name])
        w = f"{where}: VG {name}"
        for k in ("id", "seqno", "status", "extent_size", "physical_volumes"):
            if k not in t:
                raise MetadataError(f"{w}: lacks {k}")
        vg = cls(name=name, id=lvmuuid.normalize(_str(t.pop("id"), w, "id"), f"VG {name} id"))
        vg.seqno = _int(t.pop("seqno"), w, "seqno")
        vg.status = _strlist(t.pop("status"), w, "status")
        bad = [s for s in vg.status if s not in VG_STATUS]
        if bad:
            raise MetadataError(f"{w}: unknown status flag {bad[0]!r}")
        vg.flags = _strlist(t.pop("flags", []), w, "flags")
        vg.extent_size = _int(t.pop("extent_size"), w, "extent_size")
        if vg.extent_size <= 0:
            raise MetadataError(f"{w}: extent_size {vg.extent_size} is not positive")
        vg.max_lv = _int(t.pop("max_lv", 0), w, "max_lv")
        vg.max_pv = _int(t.pop("max_pv", 0), w, "max_pv")
        vg.metadata_copies = _int(t.pop("metadata_copies"), w, "metadata_copies") if "metadata_copies" in t else None
        vg.format = t.pop("format", None)
        sid = t.pop("system_id", None)
        vg.system_id = str(sid) if sid else None
        pvs = t.pop("physical_volumes")
        if not isinstance(pvs, dict):
            raise MetadataError(f"{w}: physical_volumes is not a section")
        vg.pvs = [PV.from_tree(n, p, w) for n, p in pvs.items() if isinstance(p, dict)]
        lvs = t.pop("logical_volumes", {})
        if not isinstance(lvs, dict):
            raise MetadataError(f"{w}: logical_volumes is not a section")
        vg.lvs = [LV.from_tree(n, l, w) for n, l in lvs.items() if isinstance(l, dict)]
        vg.extra = t
        vg.trailer = {k: v for k, v in tree.items() if k != name and not isinstance(v, dict)}
        vg.validate(where)
        return vg

    def validate(self, where: str = "metadata") -> None:
        """Cross-references: stripes name known PVs within pe_count; sub-LVs exist."""
        w = f"{where}: VG {self.name}"
        names = {p.name for p in self.pvs}
        lvnames = {l.name for l in self.lvs}
        for lv in self.lvs:
            for s in lv.segments:
                if s.base_type == "striped":
                    per = s.extent_count // s.stripe_count
                    for pvn, pe in s.stripes:
                        if pvn not in names:
                            raise MetadataError(f"{w}: LV {lv.name} uses unknown PV {pvn!r}")
                        pvo = self.pv(pvn)
                        if pe < 0 or pe + per > pvo.pe_count:
                            raise MetadataError(f"{w}: LV {lv.name} uses extents {pe}-{pe + per - 1} "
                                                f"beyond {pvn}'s {pvo.pe_count}")
                elif s.base_type in ("mirror",) or s.base_type.startswith("raid"):
                    for sub in (s.images + s.metas + ([s.mirror_log] if s.mirror_log else [])):
                        if sub not in lvnames:
                            raise MetadataError(f"{w}: LV {lv.name} refers to missing sub-LV {sub!r}")


def parse_vg(text: bytes, where: str = "metadata") -> VG:
    return VG.from_tree(lvmtext.parse(text, where), where)


def new_lv(name: str, segments: list[Segment], visible: bool = True) -> LV:
    return LV(name=name, id=lvmuuid.generate(),
              status=["READ", "WRITE", "VISIBLE"] if visible else ["READ", "WRITE"],
              creation_time=int(time.time()), creation_host=os.uname().nodename, segments=segments)


# -- helpers ---------------------------------------------------------------
def _int(v: Any, where: str, key: str) -> int:
    if isinstance(v, bool) or not isinstance(v, int):
        raise MetadataError(f"{where}: {key} must be an integer, found {v!r}")
    return v


def _str(v: Any, where: str, key: str) -> str:
    if not isinstance(v, str):
        raise MetadataError(f"{where}: {key} must be a string, found {v!r}")
    return v


def _strlist(v: Any, where: str, key: str) -> list[str]:
    if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
        raise MetadataError(f"{where}: {key} must be a list of strings")
    return list(v)


def _pairs(v: Any, where: str, key: str, first: type) -> list[tuple[Any, int]]:
    if not isinstance(v, list) or len(v) % 2:
        raise MetadataError(f"{where}: {key} must be a list of (name, number) pairs")
    out = []
    for i in range(0, len(v), 2):
        a, b = v[i], v[i + 1]
        if not isinstance(a, first) or isinstance(b, bool) or not isinstance(b, int):
            raise MetadataError(f"{where}: {key} entry {i // 2} is not a (name, number) pair")
        out.append((a, b))
    return out
