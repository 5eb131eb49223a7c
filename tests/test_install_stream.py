"""The install's data paths, without QEMU: the BOS tarball streamed out of the repository into
``tar -x`` (SHA-256 checked on the way, a damaged leg skipped for the next), and the boot image
written into the boot LV byte for byte (only its data copied, the rest zeroed where needed)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from conftest import require_tool
from core import demoparts, ext4, install, repo
from core import vg as vgops
from core.disk import Disk, DiskRef
from core.errors import FormatError

VG = "instvg"


def _tree(root: Path) -> dict[str, bytes]:
    """A small BOS tree: files smaller and larger than the stream's chunk, empty, nested."""
    files = {
        "etc/hostname": b"streamed\n",
        "etc/empty": b"",
        "usr/lib/big/a.bin": os.urandom(install._STREAM_CHUNK * 3 + 12345),
        "usr/lib/big/b.bin": os.urandom(install._STREAM_CHUNK - 1),
        "var/lib/x/y/z.txt": b"z" * 5000,
    }
    for rel, data in files.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
    (root / "bin").mkdir()
    os.symlink("../etc/hostname", root / "bin/link")
    return files


@pytest.fixture
def bos_repo(make_fabric, tmp_path):
    require_tool("debugfs", "mke2fs", "tar")
    f = make_fabric(disks=2, size=96 * 1024 * 1024)
    refs = [DiskRef(l.wwn, l.path) for l in f.luns]
    vgops.create(VG, refs)
    tree = tmp_path / "tree"
    files = _tree(tree)
    tarball = demoparts.tar_tree(tree, tmp_path / "sbos.tar")
    repo.create_repo(VG, refs, 24 * 1024 * 1024)
    repo.add_bos(VG, refs, tarball, name="sbos", version="1.0")
    return f, files


def _flip_in_leg(leg: repo.Leg, path: str, at: int) -> None:
    """Change one byte of ``path``'s data, ``at`` bytes into the file, in one leg only."""
    out = ext4.debugfs(leg.target, f'blocks "{path}"')
    blocks = [int(x) for x in out.split() if x.isdigit()]
    off = leg.offset + blocks[at // repo.BLOCK] * repo.BLOCK + at % repo.BLOCK
    with open(leg.path, "r+b") as fh:
        b = os.pread(fh.fileno(), 1, off)
        os.pwrite(fh.fileno(), bytes([b[0] ^ 0xFF]), off)


def _check_tree(dest: Path, files: dict[str, bytes]) -> None:
    for rel, data in files.items():
        assert (dest / rel).read_bytes() == data, rel
    assert os.readlink(dest / "bin/link") == "../etc/hostname"


def test_streamed_tarball_unpacks_and_skips_a_damaged_leg(bos_repo, tmp_path):
    f, files = bos_repo
    disks = install._disks(f.root)
    with install.open_install_vg(VG, disks) as (vgo, r):
        src = install.RepoSource(vgo, r)
        dest = tmp_path / "ok"
        dest.mkdir()
        src.bos_tar_into("sbos:tar", dest)
        _check_tree(dest, files)
        entry = src._bos_entry("sbos:tar")
        legs = r.good_legs()
        assert len(legs) == 2
        # leg 0's copy damaged in the middle of the big file: refused by its SHA-256, leg 1 used;
        # what tar wrote from the bad copy is gone before leg 1's copy is unpacked
        tar_member_offset = 3 * 512 + 2 * install._STREAM_CHUNK   # well inside a.bin's data
        _flip_in_leg(legs[0], "/" + entry.file, tar_member_offset)
        dest2 = tmp_path / "fallback"
        dest2.mkdir()
        src.bos_tar_into("sbos:tar", dest2)
        _check_tree(dest2, files)
        # both copies damaged: refused, naming both legs
        _flip_in_leg(legs[1], "/" + entry.file, tar_member_offset)
        dest3 = tmp_path / "bad"
        dest3.mkdir()
        with pytest.raises(FormatError, match="no good copy") as ei:
            src.bos_tar_into("sbos:tar", dest3)
        assert str(ei.value).count("checksum mismatch") == 2


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
