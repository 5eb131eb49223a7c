"""The LVM2 checksum: reflected CRC-32 (poly 0xEDB88320), seed 0xF597A6CF, no final XOR."""

from __future__ import annotations

import zlib

INITIAL_CRC = 0xF597A6CF


def calc_crc(data: bytes | bytearray | memoryview, crc: int = INITIAL_CRC) -> int:
    """LVM2's ``calc_crc``; chainable (pass the previous result as ``crc``)."""
    # zlib inverts the seed on entry and the result on exit: undo both.
    return zlib.crc32(data, crc ^ 0xFFFFFFFF) ^ 0xFFFFFFFF
