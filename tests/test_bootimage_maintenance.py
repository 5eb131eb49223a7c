"""``sanbos bootimage build --maintenance``: the generic maintenance image from the CLI."""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
from pathlib import Path

import pytest

from core import bootimage, ext4
from tests.conftest import require_tool


def _newc_names(archive: bytes) -> set[str]:
    """File names of a newc cpio archive (the initramfs format)."""
    names, pos = set(), 0
    while pos + 110 <= len(archive):
        head = archive[pos:pos + 110]
        if head[:6] != b"070701":
            # concatenated archives are padded to 4 bytes; skip zero padding
            pos += 1
            continue
        filesize = int(head[54:62], 16)
        namesize = int(head[94:102], 16)
        name = archive[pos + 110:pos + 110 + namesize - 1].decode(errors="replace")
        if name == "TRAILER!!!":
            pos = (pos + 110 + namesize + 3) & ~3
            pos = (pos + filesize + 3) & ~3
            continue
        names.add(name)
        pos = (pos + 110 + namesize + 3) & ~3
        pos = (pos + filesize + 3) & ~3
    return names


@pytest.mark.slow
def test_cli_builds_the_maintenance_image(tmp_path: Path) -> None:
    require_tool("mke2fs", "debugfs", "python3.11")
    out = tmp_path / "maint.img"
    res = subprocess.run([sys.executable, "-m", "console.cli", "bootimage", "build", "--maintenance",
                          "-o", str(out), "--json"], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    info = json.loads(res.stdout)
    assert info["sha256"] == bootimage.inspect(out).sha256
    assert "sanbos.mode=console" in info["manifest"]["cmdline"]
    t = ext4.Target(out, 0, out.stat().st_size)
    initrd = ext4.read_file(t, "/initrd.img")
    names = _newc_names(gzip.decompress(initrd))
    assert any(n.endswith("bin/python3.11") for n in names), sorted(names)[:20]
    assert any(n.endswith("core/vg.py") for n in names)
    assert any(n.endswith("console/app.py") for n in names)
    assert "init" in names


def test_maintenance_refuses_other_sources(tmp_path: Path) -> None:
    res = subprocess.run([sys.executable, "-m", "console.cli", "bootimage", "build", "--maintenance",
                          "--kernel", "/boot/vmlinuz", "-o", str(tmp_path / "x.img")], capture_output=True, text=True)
    assert res.returncode == 2 and "--maintenance builds its own" in res.stderr
    assert not (tmp_path / "x.img").exists()
