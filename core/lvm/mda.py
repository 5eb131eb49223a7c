"""Metadata areas: the mda_header sector and the circular text buffer.

mda_header (512 bytes at the mda start): checksum u32 (over 0x04..0x1FF),
magic[16], version u32 (1), start u64 (absolute), size u64, then raw_locn
slots of 24 bytes {offset u64 (relative), size u64 (incl. NUL), checksum u32,
flags u32}: slot 0 committed, slot 1 precommitted, then a zero terminator.
Text lives in [512, size) relative to the mda start and may wrap to 512.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import Callable

from ..errors import MetadataError, SpaceError
from .crc import calc_crc

MDA_HEADER_SIZE = 512
MAGIC = b" LVM2 x[5A%r0N*>"
FMTT_VERSION = 1
RAW_LOCN_IGNORED = 0x1
MIN_MDA_SIZE = 32 * 1024


@dataclass
class RawLocn:
    offset: int = 0
    size: int = 0
    checksum: int = 0
    flags: int = 0

    def pack(self) -> bytes:
        return struct.pack("<QQII", self.offset, self.size, self.checksum, self.flags)

    @classmethod
    def unpack(cls, data: bytes, pos: int) -> "RawLocn":
        return cls(*struct.unpack_from("<QQII", data, pos))

    @property
    def empty(self) -> bool:
        return self.offset == 0

    @property
    def ignored(self) -> bool:
        return bool(self.flags & RAW_LOCN_IGNORED)


@dataclass
class MDAHeader:
    start: int                 # absolute byte offset of the mda in the PV
    size: int                  # bytes, including the header sector
    slot0: RawLocn = field(default_factory=RawLocn)
    slot1: RawLocn = field(default_factory=RawLocn)
    version: int = FMTT_VERSION
    checksum: int = 0          # as read

    def pack(self) -> bytes:
        body = bytearray(MDA_HEADER_SIZE)
        body[4:20] = MAGIC
        struct.pack_into("<IQQ", body, 20, self.version, self.start, self.size)
        body[40:64] = self.slot0.pack()
        body[64:88] = self.slot1.pack()
        struct.pack_into("<I", body, 0, calc_crc(bytes(body[4:])))
        return bytes(body)

    @classmethod
    def parse(cls, data: bytes, expected_start: int | None = None, where: str = "mda") -> "MDAHeader":
        if len(data) < MDA_HEADER_SIZE:
            raise MetadataError(f"{where}: metadata area header is truncated")
        data = bytes(data[:MDA_HEADER_SIZE])
        (crc,) = struct.unpack_from("<I", data, 0)
        real = calc_crc(data[4:])
        if crc != real:
            raise MetadataError(f"{where}: wrong checksum in metadata area header "
                                f"(stored 0x{crc:08x}, computed 0x{real:08x})")
        if data[4:20] != MAGIC:
            raise MetadataError(f"{where}: bad magic in metadata area header")
        version, start, size = struct.unpack_from("<IQQ", data, 20)
        if version != FMTT_VERSION:
            raise MetadataError(f"{where}: metadata area header version {version}, expected 1")
        if expected_start is not None and start != expected_start:
            raise MetadataError(f"{where}: metadata area header says start {start}, label says {expected_start}")
        if size < MDA_HEADER_SIZE:
            raise MetadataError(f"{where}: metadata area size {size} is too small")
        hdr = cls(start=start, size=size, slot0=RawLocn.unpack(data, 40), slot1=RawLocn.unpack(data, 64),
                  version=version, checksum=crc)
        for i, r in enumerate((hdr.slot0, hdr.slot1)):
            if r.empty:
                continue
            if r.offset < MDA_HEADER_SIZE or r.offset >= size or r.size > size - MDA_HEADER_SIZE:
                raise MetadataError(f"{where}: metadata slot {i} points outside the area "
                                    f"(offset {r.offset}, size {r.size}, area {size})")
        return hdr

    # -- circular buffer ------------------------------------------------------
    @property
    def max_text(self) -> int:
        """Largest copy (incl. NUL) that can never overlap the previous one."""
        return (self.size - MDA_HEADER_SIZE) // 2 - MDA_HEADER_SIZE

    def next_offset(self) -> int:
        """Where the next copy goes: after slot 0, 512-aligned, wrapping to 512."""
        old = self.slot0
        if old.empty:
            return MDA_HEADER_SIZE
        end = old.offset + old.size
        if end > self.size:  # the old copy wrapped
            end = MDA_HEADER_SIZE + (end - self.size)
        new = -(-end // 512) * 512
        if self.size - end < 512 or new > self.size - MDA_HEADER_SIZE:
            return MDA_HEADER_SIZE
        return new

    def pieces(self, locn: RawLocn) -> list[tuple[int, int]]:
        """(relative offset, length) pieces of a copy, two when it wraps."""
        first = min(locn.size, self.size - locn.offset)
        out = [(locn.offset, first)]
        if locn.size > first:
            out.append((MDA_HEADER_SIZE, locn.size - first))
        return out


def read_text(read: Callable[[int, int], bytes], hdr: MDAHeader, locn: RawLocn, where: str = "mda") -> bytes:
    """The text of ``locn`` (with its NUL), checksum verified."""
    if locn.size == 0:
        raise MetadataError(f"{where}: metadata slot is empty")
    data = b"".join(read(hdr.start + off, n) for off, n in hdr.pieces(locn))
    real = calc_crc(data)
    if real != locn.checksum:
        raise MetadataError(f"{where}: metadata text checksum error at offset {locn.offset} "
                            f"(stored 0x{locn.checksum:08x}, computed 0x{real:08x})")
    return data


def place_text(hdr: MDAHeader, text: bytes, where: str = "mda") -> tuple[RawLocn, list[tuple[int, bytes]]]:
    """New slot for ``text`` (incl. NUL) and the absolute writes that put it there.

    Each write is zero-padded to 512 bytes (within the area)."""
    if len(text) > hdr.max_text:
        raise SpaceError(f"{where}: metadata ({len(text)} bytes) does not fit in the metadata area "
                         f"(at most {hdr.max_text} bytes for an area of {hdr.size} bytes)")
    off = hdr.next_offset()
    locn = RawLocn(offset=off, size=len(text), checksum=calc_crc(text), flags=0)
    writes = []
    pos = 0
    for roff, n in hdr.pieces(locn):
        chunk = text[pos:pos + n]
        pos += n
        padded = min(-(-n // 512) * 512, hdr.size - roff)
        writes.append((hdr.start + roff, chunk + bytes(padded - n)))
    return locn, writes
