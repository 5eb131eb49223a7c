"""The PV label sector: label_header, pv_header, area lists, extension.

One 512-byte sector (sector 1 by default, any of sectors 0-3 on read):

    0x00 "LABELONE"  0x08 sector_xl u64  0x10 crc_xl u32 (over 0x14..0x1FF)
    0x14 offset_xl u32 (32)  0x18 "LVM2 001"
    0x20 pv_uuid[32]  0x40 device_size u64
    data areas {offset,size}* {0,0}  metadata areas* {0,0}
    extension {version u32, flags u32}  bootloader areas* {0,0}
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

from ..errors import MetadataError
from . import uuid as lvmuuid
from .crc import calc_crc

LABEL_SIZE = 512
LABEL_SCAN_SECTORS = 4
LABEL_ID = b"LABELONE"
LABEL_TYPE = b"LVM2 001"
PV_EXT_VERSION = 2
PV_EXT_USED = 0x1
DEFAULT_MDA_START = 4096
DEFAULT_MDA_SIZE = 1044480
DEFAULT_PE_START = 2048  # sectors


@dataclass
class DiskLocn:
    offset: int
    size: int

    def pack(self) -> bytes:
        return struct.pack("<QQ", self.offset, self.size)


@dataclass
class PVLabel:
    """A parsed (or to-be-written) label sector."""

    pv_uuid: str                      # raw 32 characters
    device_size: int                  # bytes
    data_areas: list[DiskLocn] = field(default_factory=list)
    metadata_areas: list[DiskLocn] = field(default_factory=list)
    bootloader_areas: list[DiskLocn] = field(default_factory=list)
    ext_version: int = PV_EXT_VERSION
    ext_flags: int = 0
    sector: int = 1
    offset_xl: int = 32
    crc: int = 0                      # as read (pack() computes the real one)

    @property
    def in_vg(self) -> bool:
        return bool(self.ext_flags & PV_EXT_USED)

    @property
    def dashed_uuid(self) -> str:
        return lvmuuid.dashed(self.pv_uuid)

    @property
    def pe_start(self) -> int:
        """Data area start in bytes."""
        return self.data_areas[0].offset if self.data_areas else 0

    # -- pack / parse -------------------------------------------------------
    def pack(self) -> bytes:
        body = bytearray(LABEL_SIZE)
        body[0:8] = LABEL_ID
        struct.pack_into("<Q", body, 8, self.sector)
        struct.pack_into("<I", body, 0x14, self.offset_xl)
        body[0x18:0x20] = LABEL_TYPE
        pos = self.offset_xl
        uid = self.pv_uuid.encode("ascii")
        if len(uid) != 32:
            raise MetadataError(f"PV UUID {self.pv_uuid!r} is not 32 characters")
        body[pos:pos + 32] = uid
        struct.pack_into("<Q", body, pos + 32, self.device_size)
        pos += 40
        parts: list[bytes] = []
        for lst in (self.data_areas, self.metadata_areas):
            parts += [d.pack() for d in lst] + [bytes(16)]
        parts.append(struct.pack("<II", self.ext_version, self.ext_flags))
        if self.ext_version:
            parts += [d.pack() for d in self.bootloader_areas] + [bytes(16)]
        blob = b"".join(parts)
        if pos + len(blob) > LABEL_SIZE:
            raise MetadataError("PV label: disk area lists overflow the 512-byte label sector")
        body[pos:pos + len(blob)] = blob
        crc = calc_crc(bytes(body[0x14:]))
        struct.pack_into("<I", body, 0x10, crc)
        return bytes(body)

    @classmethod
    def parse(cls, data: bytes, sector: int, where: str = "disk", check_crc: bool = True) -> "PVLabel":
        """Parse one label sector read from ``sector``; MetadataError names the defect."""
        if len(data) < LABEL_SIZE:
            raise MetadataError(f"{where}: label sector {sector} is truncated ({len(data)} bytes)")
        data = bytes(data[:LABEL_SIZE])
        if data[0:8] != LABEL_ID:
            raise MetadataError(f"{where}: no LVM label in sector {sector}")
        sector_xl, crc, offset_xl = struct.unpack_from("<QII", data, 8)
        if data[0x18:0x20] != LABEL_TYPE:
            raise MetadataError(f"{where}: label in sector {sector} has type {data[0x18:0x20]!r}, not 'LVM2 001'")
        if sector_xl != sector:
            raise MetadataError(f"{where}: label in sector {sector} claims sector {sector_xl} (corrupt label)")
        real = calc_crc(data[0x14:])
        if check_crc and real != crc:
            raise MetadataError(f"{where}: label checksum mismatch in sector {sector} "
                                f"(stored 0x{crc:08x}, computed 0x{real:08x}): corrupt label/pv_header")
        if offset_xl < 32 or offset_xl + 40 > LABEL_SIZE:
            raise MetadataError(f"{where}: label in sector {sector} has a bad pv_header offset {offset_xl}")
        pos = offset_xl
        raw_uuid = data[pos:pos + 32]
        try:
            uid = raw_uuid.decode("ascii")
        except UnicodeDecodeError:
            uid = ""
        if not lvmuuid.is_valid(uid):
            raise MetadataError(f"{where}: pv_header holds an invalid PV UUID {raw_uuid!r}")
        (dev_size,) = struct.unpack_from("<Q", data, pos + 32)
        pos += 40

        def read_list() -> list[DiskLocn]:
            nonlocal pos
            out = []
            while True:
                if pos + 16 > LABEL_SIZE:
                    raise MetadataError(f"{where}: pv_header disk areas overflow the label sector")
                off, size = struct.unpack_from("<QQ", data, pos)
                pos += 16
                if off == 0:
                    return out
                out.append(DiskLocn(off, size))

        das = read_list()
        mdas = read_list()
        ext_version = ext_flags = 0
        bas: list[DiskLocn] = []
        if pos + 8 <= LABEL_SIZE:
            ext_version, ext_flags = struct.unpack_from("<II", data, pos)
            if ext_version:
                pos += 8
                try:
                    bas = read_list()
                except MetadataError:
                    ext_version, ext_flags, bas = 0, 0, []
        if len(das) != 1:
            raise MetadataError(f"{where}: pv_header lists {len(das)} data areas (LVM writes exactly one)")
        if len(mdas) > 2:
            raise MetadataError(f"{where}: pv_header lists {len(mdas)} metadata areas (at most 2)")
        return cls(pv_uuid=uid, device_size=dev_size, data_areas=das, metadata_areas=mdas,
                   bootloader_areas=bas, ext_version=ext_version, ext_flags=ext_flags,
                   sector=sector, offset_xl=offset_xl, crc=crc)


def find_label(head: bytes, where: str = "disk") -> tuple[PVLabel | None, list[str]]:
    """Look through sectors 0-3 of ``head`` (the first 2 KiB of a PV).

    Returns (label, defects).  ``label`` is None when no valid label exists;
    ``defects`` names anything label-like that was rejected (bad CRC...).
    A head with no ``LABELONE`` at all gives (None, []): not a PV.
    """
    defects: list[str] = []
    for s in range(LABEL_SCAN_SECTORS):
        sec = head[s * LABEL_SIZE:(s + 1) * LABEL_SIZE]
        if len(sec) < LABEL_SIZE:
            break
        if sec[0:8] != LABEL_ID:
            continue
        try:
            return PVLabel.parse(sec, s, where), defects
        except MetadataError as e:
            defects.append(str(e))
    return None, defects


def salvage_label(head: bytes) -> tuple[int, str] | None:
    """(sector, raw PV UUID) of a label whose checksum or fields are damaged, if readable."""
    for s in range(LABEL_SCAN_SECTORS):
        sec = head[s * LABEL_SIZE:(s + 1) * LABEL_SIZE]
        if len(sec) < LABEL_SIZE or (sec[0:8] != LABEL_ID and sec[0x18:0x20] != LABEL_TYPE):
            continue
        try:
            uid = sec[0x20:0x40].decode("ascii")
        except UnicodeDecodeError:
            continue
        if lvmuuid.is_valid(uid):
            return s, uid
    return None
