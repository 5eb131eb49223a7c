"""Helpers shared by the LVM engine tests (real LVM2 on loop devices)."""

from __future__ import annotations

from pathlib import Path

from conftest import lvm_cmd

from core import fabric as fab
from core import vg as vgops
from core.disk import DiskRef
from core.lvm import uuid as lvmuuid
from core.lvm.scan import ScanResult, scan

BAD_WORDS = ("checksum", "inconsistent", "invalid", "corrupt", "couldn't", "ignoring metadata",
             "not found", "missing", "bad ", "failed to read", "wrong", "unexpected")


def refs_of(f: fab.Fabric) -> list[DiskRef]:
    return [DiskRef(l.wwn, l.path) for l in f.luns]


def attach_pvs(loopdev, refs: list[DiskRef]) -> dict[tuple[str, int], str]:
    """Attach every PV found on ``refs`` (whole disk or partition byte range)."""
    res = scan(refs)
    out = {}
    for loc in res.pvs:
        if loc.partition is None:
            out[(str(loc.ref.path), 0)] = loopdev(loc.ref.path)
        else:
            out[(str(loc.ref.path), loc.offset)] = loopdev(loc.ref.path, offset=loc.offset, size=loc.size)
    return out


def clean_output(text: str) -> list[str]:
    """Lines of LVM output that mention a problem (device-mapper absence is expected here)."""
    bad = []
    for line in text.splitlines():
        low = line.lower()
        if "device-mapper" in low or "/dev/mapper/control" in low or "libdevmapper" in low:
            continue
        if any(w in low for w in BAD_WORDS):
            bad.append(line.strip())
    return bad


def lvs_rows(devs: list[str], vg: str | None = None) -> set[tuple[str, str, int, str]]:
    args = ["lvs", "-a", "--noheadings", "--separator", "|", "-o", "vg_name,lv_name,seg_start_pe,seg_pe_ranges"]
    if vg:
        args.append(vg)
    r = lvm_cmd(*args, devices=devs)
    rows = set()
    for line in r.stdout.splitlines():
        if not line.strip():
            continue
        v, n, s, rng = [x.strip() for x in line.split("|")]
        rows.add((v, n.strip("[]"), int(s), " ".join(rng.split())))
    return rows


def our_rows(res: ScanResult, devmap: dict[tuple[str, int], str]) -> set[tuple[str, str, int, str]]:
    rows = set()
    for info in res.by_uuid.values():
        vg = info.vg
        for lv in vg.lvs:
            for s in lv.segments:
                if s.base_type == "striped":
                    per = s.extent_count // s.stripe_count
                    parts = []
                    for pvn, pe in s.stripes:
                        loc = info.pvs[vg.pv(pvn).id]
                        parts.append(f"{devmap[(str(loc.ref.path), loc.offset)]}:{pe}-{pe + per - 1}")
                elif s.base_type == "mirror":
                    parts = [f"{img}:{le}-{le + s.extent_count - 1}" for img, le in s.mirrors]
                else:
                    parts = [f"{img}:{s.start_extent}-{s.start_extent + s.extent_count - 1}" for img in s.images]
                rows.add((vg.name, lv.name, s.start_extent, " ".join(parts)))
    return rows


def pvs_table(devs: list[str]) -> dict[str, tuple[str, str]]:
    r = lvm_cmd("pvs", "--noheadings", "--separator", "|", "-o", "pv_name,pv_uuid,vg_name", devices=devs)
    out = {}
    for line in r.stdout.splitlines():
        if line.strip():
            n, u, v = [x.strip() for x in line.split("|")]
            out[n] = (u, v)
    return out


def vg_field(devs: list[str], vg: str, field: str) -> str:
    r = lvm_cmd("vgs", "--noheadings", "-o", field, vg, devices=devs)
    return r.stdout.strip()


def dashed(raw: str) -> str:
    return lvmuuid.dashed(raw)


def make_fabric_vg(make_fabric, name: str = "tvg", disks: int = 2, size: int = 256 << 20):
    f = make_fabric(disks=disks, size=size)
    refs = refs_of(f)
    vgops.create(name, refs)
    return f, refs


def image(path: Path, size: int) -> Path:
    with open(path, "wb") as fh:
        fh.truncate(size)
    return path
