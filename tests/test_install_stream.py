"""The install's data paths, without QEMU: the boot image written into the boot LV byte for byte
(only its data copied, the rest zeroed where needed)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from core import install
from core.disk import Disk


def _image(path: Path, size: int) -> bytes:
    """A sparse image file: data at the start, in the middle and at the end, holes between."""
    pieces = {0: os.urandom(70_000), size // 2 + 4096: os.urandom(5 << 20), size - 8192: os.urandom(8192)}
    with open(path, "wb") as fh:
        fh.truncate(size)
        for off, data in pieces.items():
            os.pwrite(fh.fileno(), data, off)
    return path.read_bytes()


@pytest.mark.parametrize("dest_state", ["sparse", "garbage"])
def test_boot_image_written_byte_for_byte(tmp_path, dest_state):
    size = 24 << 20
    img = tmp_path / "boot.img"
    want = _image(img, size)
    disk = tmp_path / "disk.img"
    offset = 3 << 20
    with open(disk, "wb") as fh:
        fh.truncate(offset + size + (1 << 20))
        if dest_state == "garbage":   # an old boot LV's bytes under the new image
            for off in range(0, offset + size + (1 << 20), 7 << 20):
                os.pwrite(fh.fileno(), os.urandom(1 << 20), off)
    before = disk.read_bytes()
    with Disk(disk, writable=True) as d:
        assert install._write_image(img, d, offset) == size
    after = disk.read_bytes()
    assert after[offset:offset + size] == want
    assert after[:offset] == before[:offset] and after[offset + size:] == before[offset + size:]
