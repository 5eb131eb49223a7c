"""Benchmark of the flows: BOS install against the same work done by hand, and boot times.

1. A ~200 MB BOS root (the demo busybox BOS plus bulk files) as a tarball in an
   install VG's repository, and 5 OPPs (.deb).  ``core.install.install`` of it
   with the 5 OPPs onto a blank target image, the whole process (read the
   images out of the repository with their checksums, unpack, root VG, mke2fs,
   boot image, GRUB, e2fsck), against ``tar -x`` of the same tarball into a
   directory plus ``mke2fs -d`` on an image of the root LV's size.
2. QEMU (TCG) from start to the installed system's banner for one machine.
3. Eight machines booting at once from the NBD-exported install VG (maintenance
   boot list), from the first start to the last banner.

    .venv/bin/python bench/install.py [--size-mb 200] [--machines 8] [--skip-boot]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from core import demo, demoparts, ext4, install, inventory, registry as reg, repo, vg, vm  # noqa: E402
from core import fabric as fab  # noqa: E402
from core.disk import DiskRef  # noqa: E402
from core.errors import SanbosError  # noqa: E402
from core.units import MiB, human  # noqa: E402


def bulk_bos(tree: Path, size_mb: int) -> None:
    """The demo BOS tree plus ``size_mb`` MB of files of mixed sizes (incompressible)."""
    demoparts.bos_tree(tree)
    left = size_mb * 1_000_000
    i = 0
    rnd = os.urandom(1 << 20)
    while left > 0:
        d = tree / "usr/lib/bulk" / f"d{i // 100:03d}"
        d.mkdir(parents=True, exist_ok=True)
        n = min(left, [4_096, 40_000, 300_000, 2_000_000][i % 4])
        with open(d / f"f{i:05d}", "wb") as f:
            f.write((rnd * (n // len(rnd) + 1))[:n] if n > len(rnd) else rnd[(i * 7919) % 1000:][:n])
        left -= n
        i += 1


def timed(fn):
    t0 = time.monotonic()
    out = fn()
    return time.monotonic() - t0, out


def bench_install(work: Path, size_mb: int, runs: int = 5) -> None:
    import statistics
    f = fab.create(work / "fabric", 2 + runs, 1 << 30)
    refs = [DiskRef(l.wwn, l.path) for l in f.luns[:2]]
    vg.create("instvg", refs)
    debs = work / "debs"
    opps = [demoparts.opp_deb(debs, f"bench-opp{i}", "1.0", depends=[f"bench-opp{i - 1}"] if i else [],
                              payload={f"usr/lib/bench-opp{i}/data": os.urandom(200_000)}) for i in range(5)]
    tree = work / "bos-tree"
    bulk_bos(tree, size_mb)
    tarball = demoparts.tar_tree(tree, work / "bigbos.tar")
    print(f"BOS tarball: {human(tarball.stat().st_size)} ({tarball.stat().st_size} bytes), 5 OPPs")
    repo.create_repo("instvg", refs, tarball.stat().st_size + 64 * MiB, images=opps)
    repo.add_bos("instvg", refs, tarball, name="bigbos", version="1.0")
    ti, th = [], []
    for k in range(runs):
        target = f.luns[2 + k]
        os.sync()      # neither step pays for the other's pending writes
        t_inst, res = timed(lambda: install.install("instvg", "bigbos", target.wwn, ["bench-opp4"],
                                                    fabric=f.root))
        root_size = res.plan.root_lv_size
        ti.append(t_inst)

        def by_hand() -> None:
            d = work / f"hand{k}"
            d.mkdir()
            subprocess.run(["tar", "-x", "-f", str(tarball), "-C", str(d)], check=True)
            img = work / f"hand{k}.img"
            with open(img, "wb") as fh:
                fh.truncate(root_size)
            ext4.make(ext4.Target(img, 0, root_size), d, fstype="ext4")
        os.sync()
        t_hand, _ = timed(by_hand)
        th.append(t_hand)
        shutil.rmtree(work / f"hand{k}")
        (work / f"hand{k}.img").unlink()
        print(f"run {k + 1}: sanbos install {t_inst:.2f} s, by hand {t_hand:.2f} s")
    mi, mh = statistics.median(ti), statistics.median(th)
    print(f"sanbos install (whole process, 5 OPPs, root LV {human(root_size)}): median {mi:.2f} s")
    print(f"by hand (tar -x + mke2fs -d on an image of that size):        median {mh:.2f} s")
    print(f"ratio: {mi / mh:.2f}x (target: within 1.5x)")


def bench_boot(work: Path, machines: int) -> None:
    f = demo.create_demo(work / "demo", disks=3, size=256 * MiB, targets=1, progress=None)
    lun = f.luns[3]
    install.install("instvg", "sanbos-demo-bos:tar", lun.wwn, ["sanbos-demo-tools"], fabric=f.root)
    regf = work / "reg.db"
    r = reg.Registry(regf)
    ids = [l.wwn for l in f.luns[:3]]
    r.add_machine("host", "host", "normal", actor="bench")
    r.set_list("host", "boot", [lun.wwn], mode="normal", actor="bench")
    r.set_list("host", "rootvg", [lun.wwn], actor="bench")
    for i in range(machines):
        r.add_machine(f"m{i}", f"m{i}", "maintenance", actor="bench")
        k = i % 3
        r.set_list(f"m{i}", "boot", ids[k:] + ids[:k], mode="maintenance", actor="bench")
    r.close()
    t0 = time.monotonic()
    with vm.start_machine("host", "normal", fabric=f.root, registry=regf, work_dir=work / "vmhost") as m:
        m.wait_for(install.READY_RE, timeout=600)
    print(f"one machine, QEMU start to installed-system banner: {time.monotonic() - t0:.1f} s")
    t0 = time.monotonic()
    running = []
    try:
        for i in range(machines):
            running.append(vm.start_machine(f"m{i}", "maintenance", fabric=f.root, registry=regf,
                                            work_dir=work / f"vm{i}", memory=192))
        for m in running:
            m.wait_for(r"SANBOS BOOT OK", timeout=1200)
    finally:
        for m in running:
            m.stop()
    print(f"{machines} machines at once (install VG over NBD), start to last banner: {time.monotonic() - t0:.1f} s")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size-mb", type=int, default=200)
    ap.add_argument("--machines", type=int, default=8)
    ap.add_argument("--skip-boot", action="store_true")
    ap.add_argument("--skip-install", action="store_true")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-install."))
    try:
        if not args.skip_install:
            bench_install(work, args.size_mb)
        if not args.skip_boot:
            bench_boot(work, args.machines)
    except SanbosError as e:
        print(f"bench/install.py: {e}", file=sys.stderr)
        return 1
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
