"""Benchmark the LVM engine (prints results; no asserts).

1. One metadata commit on a 32-disk VG: ``sanbos vg change VG --addtag T``
   (the whole process, as an operator runs it) against real LVM2 doing the
   same change on 32 loop devices (``lvm vgchange --addtag``); median of N
   runs each, and the ratio.
2. Scanning 1,000 image disks of which 8 are in a VG (``core.lvm.scan.scan``
   in-process, and ``sanbos vg list`` as a whole process).

Run as root (loop devices for the LVM2 half):  .venv/bin/python bench/lvm.py
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from core import fabric as fab  # noqa: E402
from core import vg as vgops  # noqa: E402
from core.disk import DiskRef  # noqa: E402
from core.lvm.scan import scan  # noqa: E402

LVM_CFG = ("devices { use_devicesfile = 0 obtain_device_list_from_udev = 0 scan_lvs = 0 %s } "
           "global { use_lvmlockd = 0 } activation { udev_sync = 0 udev_rules = 0 monitoring = 0 }")


def lvm(devs: list[str], *args: str) -> None:
    pat = ", ".join(f'"a|^{d}$|"' for d in devs) + ', "r|.*|"'
    cfg = LVM_CFG % f"filter = [ {pat} ] global_filter = [ {pat} ]"
    subprocess.run(["lvm", args[0], "--config", cfg, *args[1:]], check=True, capture_output=True,
                   env=dict(os.environ, LVM_SUPPRESS_FD_WARNINGS="1"))


def timed(fn, runs: int) -> float:
    times = []
    for i in range(runs):
        t = time.perf_counter()
        fn(i)
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def bench_commit(tmp: Path, disks: int, runs: int) -> None:
    f = fab.create(tmp / "fab32", disks, 64 << 20)
    refs = [DiskRef(l.wwn, l.path) for l in f.luns]
    vgops.create("benchvg", refs, layout="whole")
    vgops.lv_create("benchvg", refs, "lv0", "16M")
    cli = [sys.executable, "-m", "console.cli", "vg", "change", "benchvg", "--fabric", str(f.root), "--addtag"]
    ours = timed(lambda i: subprocess.run(cli + [f"ours{i}"], check=True, capture_output=True, cwd=ROOT), runs)
    print(f"commit on a {disks}-disk VG, sanbos vg change --addtag (whole process): {ours * 1000:.0f} ms (median of {runs})")
    startup = timed(lambda i: subprocess.run([sys.executable, "-m", "console.cli", "--help"], check=True,
                                             capture_output=True, cwd=ROOT), runs)
    engine = timed(lambda i: vgops.change_tags("benchvg", refs, add=[f"inproc{i}"]), runs)
    print(f"  of which CLI start-up (python -m console.cli --help, every command module): {startup * 1000:.0f} ms")
    print(f"  the same commit in-process (core.vg.change_tags: scan, lock, rescan, 3 flush rounds): "
          f"{engine * 1000:.0f} ms")

    if os.geteuid() != 0 or shutil.which("lvm") is None:
        print("real LVM2 half skipped: needs root and lvm")
        return
    imgs = []
    for i in range(disks):
        p = tmp / f"real{i}.img"
        with open(p, "wb") as fh:
            fh.truncate(64 << 20)
        imgs.append(p)
    devs: list[str] = []
    try:
        for p in imgs:
            devs.append(subprocess.run(["losetup", "-f", "--show", str(p)], check=True, capture_output=True,
                                       text=True).stdout.strip())
        lvm(devs, "pvcreate", *devs)
        lvm(devs, "vgcreate", "realbench", *devs)
        lvm(devs, "lvcreate", "--driverloaded", "n", "-an", "-Zn", "-L", "16m", "-n", "lv0", "realbench")
        theirs = timed(lambda i: lvm(devs, "vgchange", "--addtag", f"real{i}", "realbench"), runs)
    finally:
        for d in devs:
            subprocess.run(["losetup", "-d", d], capture_output=True)
    print(f"commit on a {disks}-disk VG, lvm vgchange --addtag on loop devices: {theirs * 1000:.0f} ms (median of {runs})")
    print(f"ratio sanbos/LVM2, whole process: {ours / theirs:.2f} ({'faster' if ours < theirs else 'slower'} than LVM2)")
    print(f"ratio sanbos/LVM2, engine in-process: {engine / theirs:.2f}")


def bench_scan(tmp: Path, disks: int, members: int) -> None:
    t = time.perf_counter()
    f = fab.create(tmp / "fab1000", disks, 64 << 20)
    refs = [DiskRef(l.wwn, l.path) for l in f.luns]
    step = disks // members
    vgops.create("scanvg", [refs[i * step] for i in range(members)])
    print(f"setup: {disks} images, VG on {members} of them (GPT layout) in {time.perf_counter() - t:.1f}s")
    times = []
    for _ in range(3):
        t = time.perf_counter()
        res = scan(refs)
        times.append(time.perf_counter() - t)
    info = res.vgs["scanvg"]
    assert len(info.pvs) == members
    print(f"scan of {disks} disks ({members} PVs found, VG scanvg seqno {info.seqno}): "
          f"{min(times) * 1000:.0f} ms in-process (best of 3, {min(times) / disks * 1e6:.0f} us/disk)")
    t = time.perf_counter()
    subprocess.run([sys.executable, "-m", "console.cli", "vg", "list", "--fabric", str(f.root)], check=True,
                   capture_output=True, cwd=ROOT)
    print(f"sanbos vg list over {disks} disks (whole process): {(time.perf_counter() - t) * 1000:.0f} ms")


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--disks", type=int, default=32)
    ap.add_argument("--runs", type=int, default=7)
    ap.add_argument("--scan-disks", type=int, default=1000)
    ap.add_argument("--members", type=int, default=8)
    a = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="sanbos-bench-") as d:
        tmp = Path(d)
        bench_commit(tmp, a.disks, a.runs)
        bench_scan(tmp, a.scan_disks, a.members)
    return 0


if __name__ == "__main__":
    sys.exit(main())
