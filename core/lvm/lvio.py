"""LV data I/O without device-mapper: logical extents -> PV byte ranges.

``leg`` selects one image of a raid1/mirror LV (None = every leg on write,
leg 0 on read).  Offsets are bytes from the start of the disk holding the PV.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Callable

from ..errors import LVMError, MetadataError
from .model import VG, LV

SECTOR = 512


@dataclass
class Extent:
    """A contiguous piece of an LV leg on one PV."""

    lv_offset: int        # bytes from the LV start
    length: int
    pv_name: str
    pv_offset: int        # bytes from the PV start


def legs(vg: VG, lv: LV) -> int:
    """Number of legs (1 for linear/striped)."""
    n = 1
    for s in lv.segments:
        if s.base_type == "mirror" or s.base_type == "raid1":
            n = max(n, len(s.images))
    return n


def map_lv(vg: VG, lv: LV, leg: int = 0, _depth: int = 0) -> list[Extent]:
    """The LV (one leg) as PV pieces, in LV order.  Striped LVs give one piece per chunk run."""
    if _depth > 8:
        raise MetadataError(f"VG {vg.name}: LV {lv.name} nests sub-LVs too deeply")
    ext = vg.extent_bytes
    out: list[Extent] = []
    for s in lv.segments:
        base = s.start_extent * ext
        length = s.extent_count * ext
        bt = s.base_type
        if bt == "striped":
            n = s.stripe_count
            if n == 1:
                pvn, pe = s.stripes[0]
                pv = vg.pv(pvn)
                out.append(Extent(base, length, pvn, pv.pe_start * SECTOR + pe * ext))
            else:
                chunk = (s.stripe_size or 128) * SECTOR
                o = 0
                while o < length:
                    c = o // chunk
                    i = c % n
                    pvn, pe = s.stripes[i]
                    pv = vg.pv(pvn)
                    within = (c // n) * chunk
                    out.append(Extent(base + o, chunk, pvn, pv.pe_start * SECTOR + pe * ext + within))
                    o += chunk
        elif bt in ("raid1", "mirror"):
            images = s.images
            if leg >= len(images):
                raise LVMError(f"VG {vg.name}: LV {lv.name} has {len(images)} legs, no leg {leg}")
            sub = vg.lv(images[leg])
            if sub is None:
                raise MetadataError(f"VG {vg.name}: LV {lv.name} leg {images[leg]} is missing")
            first_le = s.mirrors[leg][1] if bt == "mirror" else 0
            sub_map = map_lv(vg, sub, 0, _depth + 1)
            out += _window(sub_map, first_le * ext, length, base)
        else:
            raise LVMError(f"VG {vg.name}: LV {lv.name} has a {s.type} segment, which sanbos cannot read or write")
    return _merge(out)


def _window(pieces: list[Extent], start: int, length: int, new_base: int) -> list[Extent]:
    out = []
    end = start + length
    for p in pieces:
        a, b = max(p.lv_offset, start), min(p.lv_offset + p.length, end)
        if a < b:
            out.append(Extent(new_base + a - start, b - a, p.pv_name, p.pv_offset + a - p.lv_offset))
    return out


def _merge(pieces: list[Extent]) -> list[Extent]:
    out: list[Extent] = []
    for p in pieces:
        if out and out[-1].pv_name == p.pv_name and out[-1].lv_offset + out[-1].length == p.lv_offset \
                and out[-1].pv_offset + out[-1].length == p.pv_offset:
            out[-1] = Extent(out[-1].lv_offset, out[-1].length + p.length, p.pv_name, out[-1].pv_offset)
        else:
            out.append(p)
    return out


# An accessor: pv name -> (read(off, n), write(off, data)) in PV-relative bytes.
Accessor = Callable[[str], tuple[Callable[[int, int], bytes], Callable[[int, bytes | memoryview], None] | None]]


class LVFile(io.RawIOBase):
    """A file-like view of an LV.  ``leg=None`` writes every leg and reads leg 0."""

    def __init__(self, vg: VG, lv: LV, access: Accessor, leg: int | None = None, writable: bool = False) -> None:
        super().__init__()
        self.vg, self.lv, self.access = vg, lv, access
        self.size = lv.extents * vg.extent_bytes
        self.name = f"{vg.name}/{lv.name}"
        self._writable = writable
        nlegs = legs(vg, lv)
        if leg is not None and not 0 <= leg < nlegs:
            raise LVMError(f"LV {self.name} has {nlegs} leg(s); there is no leg {leg}")
        self.read_map = map_lv(vg, lv, leg or 0)
        self.write_maps = [map_lv(vg, lv, k) for k in (range(nlegs) if leg is None else [leg])]
        self.pos = 0

    def readable(self) -> bool:
        return True

    def writable(self) -> bool:
        return self._writable

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self.pos

    def seek(self, off: int, whence: int = 0) -> int:
        base = {0: 0, 1: self.pos, 2: self.size}[whence]
        if base + off < 0:
            raise LVMError(f"LV {self.name}: seek before the start")
        self.pos = base + off
        return self.pos

    def pread(self, off: int, n: int) -> bytes:
        n = max(0, min(n, self.size - off))
        out = []
        for p in _window(self.read_map, off, n, 0):
            rd, _ = self.access(p.pv_name)
            out.append(rd(p.pv_offset, p.length))
        return b"".join(out)

    def pwrite(self, off: int, data: bytes) -> int:
        if not self._writable:
            raise LVMError(f"LV {self.name} is open read-only")
        mv = memoryview(data).cast("B")
        if off + len(mv) > self.size:
            raise LVMError(f"LV {self.name}: write of {len(mv)} bytes at {off} runs past its end ({self.size})")
        for m in self.write_maps:
            for p in _window(m, off, len(mv), 0):
                _, wr = self.access(p.pv_name)
                if wr is None:
                    raise LVMError(f"LV {self.name}: PV {p.pv_name} is not writable")
                # a view, not a copy: every leg gets the caller's bytes (writers take memoryviews)
                wr(p.pv_offset, mv[p.lv_offset:p.lv_offset + p.length])
        return len(mv)

    def read(self, n: int = -1) -> bytes:
        if n is None or n < 0:
            n = self.size - self.pos
        b = self.pread(self.pos, n)
        self.pos += len(b)
        return b

    def readinto(self, buf) -> int:  # type: ignore[override]
        b = self.read(len(buf))
        buf[:len(b)] = b
        return len(b)

    def write(self, data) -> int:  # type: ignore[override]
        n = self.pwrite(self.pos, data)
        self.pos += n
        return n
