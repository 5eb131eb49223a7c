"""Extent allocation: contiguous free extents on named PVs."""

from __future__ import annotations

from typing import Callable

from ..errors import SpaceError
from .model import VG, Segment


def free_ranges(vg: VG, pv_name: str) -> list[tuple[int, int]]:
    """(first PE, count) free runs on a PV, in PE order."""
    pv = vg.pv(pv_name)
    out, pos = [], 0
    for pe, n, _ in vg.pv_used(pv_name):
        if pe > pos:
            out.append((pos, pe - pos))
        pos = max(pos, pe + n)
    if pos < pv.pe_count:
        out.append((pos, pv.pe_count - pos))
    return out


def allocatable(vg: VG, pv_name: str) -> bool:
    pv = vg.pv(pv_name)
    return "ALLOCATABLE" in pv.status and "MISSING" not in pv.status and "MISSING" not in pv.flags


def allocate(vg: VG, extents: int, pv_names: list[str], start_le: int = 0,
             what: str = "LV", contiguous: bool = False,
             label: Callable[[str], str] = str) -> list[Segment]:
    """Linear segments for ``extents`` extents on the named PVs, in order.

    ``label(pv_name)`` is how messages name a PV (the engine passes the disk ID).

    Prefers one contiguous run (smallest that fits, on the first PV that has
    one); otherwise fills runs in PV order unless ``contiguous`` is set.
    """
    if extents <= 0:
        raise SpaceError(f"{what}: size must be at least one extent")
    pvs = [p for p in pv_names if allocatable(vg, p)]
    if not pvs:
        raise SpaceError(f"{what}: none of the PVs {', '.join(map(label, pv_names))} is allocatable")
    for p in pvs:
        fits = [r for r in free_ranges(vg, p) if r[1] >= extents]
        if fits:
            pe, _ = min(fits, key=lambda r: r[1])
            return [Segment(start_le, extents, "striped", stripes=[(p, pe)])]
    total = sum(n for p in pvs for _, n in free_ranges(vg, p))
    if contiguous or total < extents:
        ext = vg.extent_bytes
        raise SpaceError(f"{what}: needs {extents} extents ({extents * ext // 2**20} MiB)"
                         f"{' contiguous' if contiguous else ''} but {', '.join(map(label, pvs))} "
                         f"{'have' if len(pvs) > 1 else 'has'} {total} free extents"
                         f"{' in total' if contiguous else ''}")
    segs, le, left = [], start_le, extents
    for p in pvs:
        for pe, n in free_ranges(vg, p):
            take = min(n, left)
            segs.append(Segment(le, take, "striped", stripes=[(p, pe)]))
            le += take
            left -= take
            if not left:
                return segs
    raise SpaceError(f"{what}: allocation failed")  # pragma: no cover
