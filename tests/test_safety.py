"""core.safety.probe: where each signature lives, for the types no tool here can make.

Real-tool cases (mke2fs, mkfs.fat, mkswap, parted, pvcreate, mount, loop
devices) are in test_gpt.py; this file places the documented magic numbers at
their documented offsets (XFS, btrfs, LUKS1/2, swap with 64 KiB pages, ISO
9660, NTFS, md 0.90/1.0/1.1/1.2, a backup-only GPT) and checks that blank
stays blank.
"""

from __future__ import annotations

import struct

import pytest

from core import safety

MiB = 1024 * 1024
SIZE = 64 * MiB


def disk_with(*pokes: tuple[int, bytes]) -> tuple[bytes, bytes, int]:
    head = bytearray(safety.HEAD)
    toff = SIZE - safety.TAIL
    tail = bytearray(safety.TAIL)
    for off, data in pokes:
        off = off % SIZE
        if off < len(head):
            head[off:off + len(data)] = data
        else:
            tail[off - toff:off - toff + len(data)] = data
    return bytes(head), bytes(tail), toff


def kinds(*pokes) -> list[tuple[str, str]]:
    head, tail, toff = disk_with(*pokes)
    return [(s.kind, s.detail) for s in safety.probe(head, SIZE, tail, toff)]


MD = struct.pack("<I", 0xA92B4EFC)


@pytest.mark.parametrize("pokes, want", [
    ([(0, b"XFSB")], ("xfs", "an XFS file system")),
    ([(0x10040, b"_BHRfS_M")], ("btrfs", "a btrfs file system")),
    ([(0, b"LUKS\xba\xbe\x00\x01")], ("luks", "a LUKS encrypted volume")),
    ([(0x4000, b"SKUL\xba\xbe\x00\x02")], ("luks", "a LUKS encrypted volume")),
    ([(65536 - 10, b"SWAPSPACE2")], ("swap", "a swap area")),
    ([(4096 - 10, b"SWAP-SPACE")], ("swap", "a swap area")),
    ([(0x8001, b"CD001")], ("iso9660", "an ISO 9660 image")),
    ([(3, b"NTFS    "), (510, b"\x55\xaa")], ("ntfs", "an NTFS file system")),
    ([(0, MD)], ("md", "an md RAID member superblock (1.1)")),
    ([(4096, MD)], ("md", "an md RAID member superblock (1.2)")),
    ([((((SIZE // 512) - 16) & ~7) * 512, MD)], ("md", "an md RAID member superblock (1.0)")),
    ([((((SIZE // 512) & ~127) - 128) * 512, MD[::-1])], ("md", "an md RAID member superblock (0.90)")),
    ([(SIZE - 512, b"EFI PART")], ("gpt", "a backup GPT header (primary GPT missing or damaged)")),
])
def test_magic_at_its_offset(pokes, want) -> None:
    assert kinds(*pokes) == [want]


def test_blank_is_blank() -> None:
    assert kinds() == []
    # boot code alone (no partition entries, no BPB) is not a table
    assert kinds((0, b"\xfa\x31\xc0"), (510, b"\x55\xaa")) == []


def test_fat_boot_sector_is_not_an_mbr() -> None:
    bpb = b"\xeb\x3c\x90" + b"mkfs.fat" + struct.pack("<HBHB", 512, 4, 4, 2)
    got = kinds((0, bpb), (0x36, b"FAT16   "), (510, b"\x55\xaa"), (446 + 4, b"\x06"))
    assert got == [("vfat", "a FAT16 file system")]


def test_lvm_label_any_of_sectors_0_to_3_and_crc() -> None:
    from core.lvm.crc import calc_crc   # the LVM engine's CRC, cross-checking ours
    for sector in range(4):
        s = bytearray(512)
        s[0:8] = b"LABELONE"
        s[8:16] = struct.pack("<Q", sector)
        s[20:24] = struct.pack("<I", 32)
        s[24:32] = b"LVM2 001"
        s[32:64] = b"FxTyLwaqp7p7iNgkq6zTLy4HnhY9r7Hy"
        s[16:20] = struct.pack("<I", calc_crc(bytes(s[20:])))
        head = bytes(512 * sector) + bytes(s)
        sig = safety.lvm_label(head)
        assert sig.offset == sector * 512
        assert sig.pv_uuid == "FxTyLw-aqp7-p7iN-gkq6-zTLy-4Hnh-Y9r7Hy"
        assert sig.detail == "an LVM2 physical volume label (PV UUID FxTyLw-aqp7-p7iN-gkq6-zTLy-4Hnh-Y9r7Hy)"
        s[300] ^= 1
        bad = safety.lvm_label(bytes(512 * sector) + bytes(s))
        assert bad.detail.startswith(f"a damaged LVM2 physical volume label in sector {sector}")
    assert safety.lvm_label(bytes(4096)) is None


def test_dash_uuid() -> None:
    assert safety.dash_uuid("FxTyLwaqp7p7iNgkq6zTLy4HnhY9r7Hy") == "FxTyLw-aqp7-p7iN-gkq6-zTLy-4Hnh-Y9r7Hy"
