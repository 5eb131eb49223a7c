"""core.disk: bounded I/O at byte offsets, read-only refusal, shared/exclusive locks.

Locks are real ``flock`` locks: a second writer is refused while a writer
holds a disk (in this process and from another process, and the message
names the holder's PID), while many readers coexist.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from conftest import ROOT
from core.disk import Disk, DiskRef, lock_holders
from core.errors import DiskBusyError, DiskError

MiB = 1024 * 1024


@pytest.fixture
def img(tmp_path: Path) -> Path:
    p = tmp_path / "d.img"
    with open(p, "wb") as f:
        f.truncate(16 * MiB)
    return p


def test_read_write_round_trip_at_offsets(img: Path) -> None:
    with Disk(img, writable=True, name="naa.t") as d:
        assert d.size == 16 * MiB and not d.is_block
        d.write(12345, b"hello")
        d.write(16 * MiB - 3, b"end")
        d.fsync()
        assert d.read(12345, 5) == b"hello"
        assert d.read(16 * MiB - 3, 3) == b"end"
        big = os.urandom(3 * MiB + 17)
        d.write(5 * MiB + 1, big)
        assert d.read(5 * MiB + 1, len(big)) == big
        d.zero(5 * MiB + 1, 1000)
        assert d.read(5 * MiB + 1, 1000) == bytes(1000)
    raw = img.read_bytes()
    assert raw[12345:12350] == b"hello" and raw[-3:] == b"end"


def test_bounds(img: Path) -> None:
    with Disk(img, writable=True, name="naa.bounds") as d:
        with pytest.raises(DiskError, match=r"naa.bounds: access at byte 16777215 \(\+2\) is beyond the end"):
            d.read(16 * MiB - 1, 2)
        with pytest.raises(DiskError, match="beyond the end"):
            d.write(16 * MiB, b"x")
        with pytest.raises(DiskError, match="beyond the end"):
            d.read(-1, 1)
        r = d.range(MiB, MiB, name="naa.bounds p1")
        r.write(0, b"abc")
        assert d.read(MiB, 3) == b"abc"
        with pytest.raises(DiskError, match=r"naa.bounds p1: access at byte 1048575 \(\+2\) is beyond its end"):
            r.read(MiB - 1, 2)
        with pytest.raises(DiskError, match="beyond the end"):
            d.range(16 * MiB - 10, 11)
        assert sum(len(c) for c in r.chunks(300_000)) == MiB
    assert img.stat().st_size == 16 * MiB     # nothing grew the image


def test_read_only_refusal(img: Path) -> None:
    with Disk(img, name="naa.ro") as d:
        with pytest.raises(DiskError, match="naa.ro: opened read-only, refusing to write"):
            d.write(0, b"x")
        with pytest.raises(DiskError, match="naa.ro: opened read-only"):
            d.range(0, 512).write(0, b"x")
    assert open(img, "rb").read(1) == b"\0"


def test_open_errors_name_the_disk(tmp_path: Path) -> None:
    with pytest.raises(DiskError, match=r"naa.gone: no such disk or image file"):
        DiskRef("naa.gone", tmp_path / "missing.img").open()
    with pytest.raises(DiskError, match="is neither an image file nor a block device"):
        Disk(tmp_path, name="dir")


def test_second_writer_refused_in_process(img: Path) -> None:
    with Disk(img, writable=True, lock="exclusive", name="naa.w") as w:
        assert w.lock_mode == "exclusive"
        with pytest.raises(DiskBusyError, match="naa.w: busy, cannot write"):
            Disk(img, writable=True, lock="exclusive", name="naa.w")
        with pytest.raises(DiskBusyError, match="naa.w: busy, cannot read"):
            Disk(img, lock="shared", name="naa.w")
    # released with the descriptor
    with Disk(img, writable=True, lock="exclusive"):
        pass


def test_many_readers_coexist_and_block_a_writer(img: Path) -> None:
    readers = [Disk(img, lock="shared") for _ in range(5)]
    try:
        assert all(r.lock_mode == "shared" for r in readers)
        with pytest.raises(DiskBusyError, match="cannot write"):
            Disk(img, writable=True, lock="exclusive")
    finally:
        for r in readers:
            r.close()
    with Disk(img, writable=True, lock="exclusive"):
        pass


HOLDER = textwrap.dedent("""
    import sys, time
    sys.path.insert(0, {root!r})
    from core.disk import Disk
    d = Disk({img!r}, writable={writable}, lock={mode!r})
    print("locked", flush=True)
    sys.stdin.readline()
""")


def _hold(img: Path, mode: str) -> subprocess.Popen:
    code = HOLDER.format(root=str(ROOT), img=str(img), writable=mode == "exclusive", mode=mode)
    p = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert p.stdout.readline().strip() == "locked"
    return p


def _release(p: subprocess.Popen) -> None:
    p.stdin.write("\n")
    p.stdin.flush()
    p.wait(timeout=10)


def test_second_writer_refused_across_processes_names_pid(img: Path) -> None:
    p = _hold(img, "exclusive")
    try:
        assert lock_holders(img) == [p.pid]
        with pytest.raises(DiskBusyError) as e:
            Disk(img, writable=True, lock="exclusive", name="naa.x")
        assert f"naa.x: busy, cannot write: held by {p.pid} (python" in str(e.value)
        with pytest.raises(DiskBusyError, match=f"cannot read: held by {p.pid}"):
            Disk(img, lock="shared")
    finally:
        _release(p)
    assert lock_holders(img) == []
    with Disk(img, writable=True, lock="exclusive"):
        pass


def test_readers_across_processes(img: Path) -> None:
    procs = [_hold(img, "shared") for _ in range(3)]
    try:
        assert sorted(lock_holders(img)) == sorted(p.pid for p in procs)
        with Disk(img, lock="shared") as r:       # one more reader is fine
            assert r.read(0, 4) == bytes(4)
        with pytest.raises(DiskBusyError) as e:
            Disk(img, writable=True, lock="exclusive")
        for p in procs:
            assert str(p.pid) in str(e.value)
    finally:
        for p in procs:
            _release(p)


def test_block_device(loopdev, img: Path) -> None:
    dev = loopdev(img)
    with Disk(dev, writable=True, lock="exclusive", name="path:" + dev) as d:
        assert d.is_block and d.size == 16 * MiB
        d.write(4096, b"via loop")
        d.fsync()
    with open(img, "rb") as f:
        f.seek(4096)
        assert f.read(8) == b"via loop"
    # a read-only device: the kernel refuses the write, and safety says so before anyone tries
    ro = loopdev(img, readonly=True)
    with Disk(ro, writable=True, name="naa.ro") as d:
        with pytest.raises(DiskError, match=r"naa.ro: write error at byte 0: Operation not permitted"):
            d.write(0, b"x")
    from core import safety
    assert "read-only: it cannot be written" in safety.assess(DiskRef("naa.ro", Path(ro)))
