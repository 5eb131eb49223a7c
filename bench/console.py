"""Benchmark: the console's disk list with 1,000 and 10,000 disks (headless).

1. **First full frame**: from process start (the parent's clock just before
   it spawns ``python bench/console.py --child``) until the boot menu has
   drawn every visible line of the disk list with disks in it.  Measured for
   10,000 and 1,000 disks fed straight in (``SanbosApp(disks=...)``) and for
   a real 1,000-disk fabric of sparse images listed by ``core.inventory`` in
   the app's thread worker (its disks are blank, so that frame is the boot
   view saying "no install-VG disks, Tab for the 1,000 others").
2. **Filter keystroke**: with 10,000 disks, from a key press to the list
   having redrawn its visible lines with the filtered rows (typing a serial
   a character at a time, then Backspace back to all 10,000).

Targets (issue 8): first frame under 1.5 s with 10,000 disks; filter under 100 ms.

    .venv/bin/python bench/console.py [--runs 3] [--fabric-disks 1000]
"""

from __future__ import annotations

import argparse
import asyncio
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

MiB = 1024 * 1024


def synthetic(n: int) -> list:
    from core.inventory import DiskInfo
    out = []
    for i in range(n):
        wwn = f"naa.600a0b8000bench0{i:015x}"
        d = DiskInfo(id=wwn, path=Path(f"/dev/bench{i}"), size=(64 + i % 512) * MiB, wwn=wwn,
                     serial=f"SBBENCH{i:07d}", addresses=[f"fc-0x500a0b8000{i % 8:06x}-lun-{i}"])
        if i % 10 < 8:
            d.vg_name, d.membership, d.boot_copy = "instvg", "pv:instvg", ("bad" if i % 97 == 0 else "ok")
        out.append(d)
    return out


def instrument(on_mark=None):
    """Record when the DiskList has drawn its last visible line with disks in the list."""
    from console.widgets.disk_list import DiskList
    marks: list[float] = []
    orig = DiskList.render_line

    def render_line(self, y):
        strip = orig(self, y)
        loaded = self.disks or getattr(self.app, "all_disks", None)   # a blank fabric: "press Tab" frame
        if loaded and y == self.scrollable_content_region.height - 1:
            marks.append(time.perf_counter())
            if on_mark is not None:
                on_mark(self)
        return strip

    DiskList.render_line = render_line
    return marks


def child(args) -> None:
    t0 = float(os.environ["BENCH_T0"])
    from console.app import SanbosApp
    result = {}

    def mark(widget) -> None:
        if "first_frame" not in result:
            result["first_frame"] = time.time() - t0
            widget.app.call_later(widget.app.exit)

    instrument(mark)
    disks = synthetic(args.disks) if not args.fabric else None
    app = SanbosApp(args.fabric, disks=disks)
    app.run(headless=True, size=(80, 24))
    print(json.dumps(result))


def first_frame(n: int | None, fabric: str | None = None) -> float:
    cmd = [sys.executable, __file__, "--child"]
    cmd += ["--fabric", fabric] if fabric else ["--disks", str(n)]
    env = dict(os.environ, BENCH_T0=repr(time.time()))
    env["BENCH_T0"] = repr(time.time())
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, env=env).stdout
    return json.loads(out.strip().splitlines()[-1])["first_frame"]


async def filter_latency(n: int) -> dict:
    from console.app import SanbosApp
    marks = instrument()
    app = SanbosApp(disks=synthetic(n))
    lat: list[float] = []
    back: list[float] = []
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        dl = app.screen.disk_list
        assert dl.total == sum(1 for d in synthetic(n) if d.vg_name)

        async def press(key: str) -> float:
            marks.clear()
            t = time.perf_counter()
            await pilot.press(key)
            for _ in range(200):
                if marks:
                    break
                await asyncio.sleep(0.001)
            return marks[0] - t

        for ch in "sbbench0001234":
            lat.append(await press(ch))
        assert len(dl.disks) == 1, len(dl.disks)
        for _ in range(len("sbbench0001234")):
            back.append(await press("backspace"))
        assert len(dl.disks) == dl.total
    return {"typing_ms": [round(x * 1000, 1) for x in lat], "backspace_ms": [round(x * 1000, 1) for x in back]}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--disks", type=int, default=10_000)
    ap.add_argument("--fabric", help=argparse.SUPPRESS)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--fabric-disks", type=int, default=1000)
    args = ap.parse_args()
    if args.child:
        child(args)
        return 0

    report: dict = {}
    for n in (1_000, 10_000):
        times = [first_frame(n) for _ in range(args.runs)]
        report[f"first_frame_{n}_injected_s"] = {"median": round(statistics.median(times), 3),
                                                 "runs": [round(t, 3) for t in times]}
    tmp = Path(tempfile.mkdtemp(prefix="sanbos-bench-console."))
    try:
        from core import fabric as fab
        fab.create(tmp / "fabric", args.fabric_disks, 8 * MiB)
        times = [first_frame(None, str(tmp / "fabric")) for _ in range(args.runs)]
        report[f"first_frame_{args.fabric_disks}_fabric_s"] = {"median": round(statistics.median(times), 3),
                                                              "runs": [round(t, 3) for t in times]}
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    lat = asyncio.run(filter_latency(10_000))
    allv = lat["typing_ms"] + lat["backspace_ms"]
    report["filter_10000"] = {"median_ms": round(statistics.median(allv), 1), "max_ms": max(allv), **lat}
    report["targets"] = {"first_frame_10000_s": 1.5, "filter_ms": 100}
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
