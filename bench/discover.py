"""Benchmark: ``sanbos disks --fabric DIR --json`` over 1,000 sparse images.

Creates a fabric of N sparse images (default 1,000; a few of them labelled
with the install-VG GPT so the listing parses real tables), then times the
whole command as a separate process (interpreter start, imports, manifest
load, every disk's peek, JSON output) several times and reports the per-disk
cost.  Target: under 1 ms per disk.

    .venv/bin/python bench/discover.py [--disks 1000] [--runs 5] [--labelled 50] [--keep DIR]
"""

from __future__ import annotations

import argparse
import json
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
from core import gpt  # noqa: E402
from core.disk import Disk  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--disks", type=int, default=1000)
    ap.add_argument("--size", type=int, default=256 * 1024 * 1024)
    ap.add_argument("--labelled", type=int, default=50, help="how many images get the GPT layout")
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--keep", metavar="DIR", help="build the fabric here and keep it")
    args = ap.parse_args()

    base = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="sanbos-bench-"))
    fdir = base / "fabric"
    try:
        t0 = time.perf_counter()
        if (fdir / fab.MANIFEST).exists():
            f = fab.load(fdir)
        else:
            f = fab.create(fdir, args.disks, args.size)
            for lun in f.luns[:args.labelled]:
                with Disk(lun.path, writable=True, lock="exclusive") as d:
                    gpt.apply_layout(d)
        print(f"fabric: {len(f.luns)} sparse images of {args.size >> 20} MiB "
              f"({min(args.labelled, len(f.luns))} labelled) in {time.perf_counter() - t0:.1f} s")

        sanbos = [sys.executable, "-m", "console.cli"]
        env = dict(os.environ, PYTHONPATH=str(ROOT))
        # baseline: the interpreter and the CLI's imports alone
        base_times = []
        for _ in range(args.runs):
            t = time.perf_counter()
            subprocess.run([*sanbos, "--help"], check=True, capture_output=True, env=env, cwd=ROOT)
            base_times.append(time.perf_counter() - t)
        times = []
        out = b""
        for _ in range(args.runs):
            t = time.perf_counter()
            res = subprocess.run([*sanbos, "disks", "--fabric", str(fdir), "--json"],
                                 check=True, capture_output=True, env=env, cwd=ROOT)
            times.append(time.perf_counter() - t)
            out = res.stdout
        disks = json.loads(out)
        n = len(disks)
        labelled = sum(1 for d in disks if d["membership"] == "labelled")
        best, med = min(times), statistics.median(times)
        startup = min(base_times)
        print(f"sanbos disks --fabric DIR --json: {n} disks ({labelled} labelled), {len(out)} bytes of JSON")
        print(f"  whole process: best {best * 1000:.0f} ms, median {med * 1000:.0f} ms over {args.runs} runs")
        print(f"  per disk (whole process / disks): best {best / n * 1000:.3f} ms, median {med / n * 1000:.3f} ms "
              f"(target < 1 ms)")
        print(f"  interpreter + CLI start alone (sanbos --help): {startup * 1000:.0f} ms; "
              f"per disk without it: {(best - startup) / n * 1000:.3f} ms")
        print("RESULT: " + ("PASS" if best / n < 0.001 else "MISS") + " (best run under 1 ms per disk)")
    finally:
        if not args.keep:
            shutil.rmtree(base, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
