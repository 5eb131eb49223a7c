"""core.cpio: reproducible newc archives, read back by GNU cpio."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

from conftest import require_tool
from core import cpio


def _tree(root: Path) -> Path:
    (root / "bin").mkdir(parents=True)
    (root / "bin" / "tool").write_bytes(b"#!/bin/sh\necho hi\n")
    os.chmod(root / "bin" / "tool", 0o755)
    (root / "etc").mkdir()
    (root / "etc" / "odd size").write_bytes(b"abc")         # data padding, a space in the name
    os.symlink("bin/tool", root / "init")
    (root / "empty").mkdir()
    os.chmod(root / "empty", 0o1777)
    return root


def test_same_tree_same_bytes(tmp_path):
    a = cpio.newc(_tree(tmp_path / "a"), mtime=1700000000)
    time.sleep(1.1)                             # other ctimes, other inode numbers, other directory
    b = cpio.newc(_tree(tmp_path / "b"), mtime=1700000000)
    assert a == b
    assert a.startswith(b"070701") and b"TRAILER!!!" in a[-128:]
    assert len(a) % 4 == 0


def test_gnu_cpio_reads_it_back(tmp_path):
    require_tool("cpio")
    data = cpio.newc(_tree(tmp_path / "src"), mtime=1700000000)
    out = tmp_path / "out"
    out.mkdir()
    res = subprocess.run(["cpio", "-idm", "--no-absolute-filenames"], input=data, cwd=out,
                         capture_output=True)
    assert res.returncode == 0, res.stderr
    assert (out / "bin" / "tool").read_bytes() == b"#!/bin/sh\necho hi\n"
    assert os.stat(out / "bin" / "tool").st_mode & 0o777 == 0o755
    assert (out / "etc" / "odd size").read_bytes() == b"abc"
    assert os.readlink(out / "init") == "bin/tool"
    assert os.stat(out / "bin" / "tool").st_mtime == 1700000000
    listing = subprocess.run(["cpio", "-tv"], input=data, capture_output=True).stdout.decode()
    assert all(" root " in line for line in listing.splitlines() if line), listing   # owner root:root
    names = subprocess.run(["cpio", "-t"], input=data, capture_output=True).stdout.decode().split("\n")
    assert names[:3] == [".", "bin", "bin/tool"]       # sorted, parents first
