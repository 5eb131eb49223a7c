#!/usr/bin/env python3
"""Benchmark the SAN boot device firmware query API on loopback.

Two phases, both bounded in time and in request count:

1. **paced**: ``--rate`` queries per second (default 200) for ``--duration``
   seconds (default 30), each query its own concurrent task (httpx.AsyncClient),
   like many machines' firmware asking at once; reports errors and latency
   percentiles (p50/p95/p99/max) and the rate actually achieved.
2. **burst**: ``--burst-concurrency`` workers (default 32) asking as fast as
   they can for ``--burst-seconds`` (default 10): maximum throughput.

Without ``--url`` it starts its own ``sanbos serve`` (loopback, free port) on a
throw-away registry with ``--machines`` machines (default 50) over a demo
fabric, and stops it by its PID afterwards.

    .venv/bin/python bench/serve.py                      # 30 s at 200 rps + 10 s burst
    .venv/bin/python bench/serve.py --duration 10 --json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import selectors
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


@dataclass
class Result:
    phase: str
    requests: int = 0
    errors: int = 0
    seconds: float = 0.0
    latencies: list[float] = field(default_factory=list)     # seconds
    error_samples: list[str] = field(default_factory=list)

    def pct(self, p: float) -> float:
        if not self.latencies:
            return float("nan")
        s = sorted(self.latencies)
        return s[min(len(s) - 1, max(0, int(round(p / 100 * len(s) + 0.5)) - 1))]

    def summary(self) -> dict[str, Any]:
        return {"phase": self.phase, "requests": self.requests, "errors": self.errors,
                "seconds": round(self.seconds, 2), "rps": round(self.requests / self.seconds, 1) if self.seconds else 0,
                "p50_ms": round(self.pct(50) * 1000, 2), "p95_ms": round(self.pct(95) * 1000, 2),
                "p99_ms": round(self.pct(99) * 1000, 2),
                "max_ms": round(max(self.latencies) * 1000, 2) if self.latencies else None,
                "mean_ms": round(statistics.fmean(self.latencies) * 1000, 2) if self.latencies else None,
                "error_samples": self.error_samples[:5]}

    def line(self) -> str:
        s = self.summary()
        return (f"{s['phase']:<7} {s['requests']:>6} req in {s['seconds']:>6.2f} s = {s['rps']:>7.1f} rps, "
                f"errors {s['errors']}, p50 {s['p50_ms']} ms, p95 {s['p95_ms']} ms, p99 {s['p99_ms']} ms, "
                f"max {s['max_ms']} ms")


async def _one(client: httpx.AsyncClient, path: str, res: Result) -> None:
    t = time.perf_counter()
    try:
        r = await client.get(path)
        ok = r.status_code == 200 and (path.endswith(".ipxe") or "devices" in r.json())
        if not ok:
            res.errors += 1
            res.error_samples.append(f"{path}: HTTP {r.status_code} {r.text[:100]}")
    except (httpx.HTTPError, ValueError) as e:
        res.errors += 1
        res.error_samples.append(f"{path}: {type(e).__name__} {e}")
    res.latencies.append(time.perf_counter() - t)
    res.requests += 1


async def paced(url: str, paths: list[str], rate: float = 200, duration: float = 30, max_requests: int = 20000,
                timeout: float = 10, connections: int = 100) -> Result:
    """``rate`` queries/s for ``duration`` s (at most ``max_requests``), each its own concurrent task."""
    res = Result("paced")
    n = min(int(rate * duration), max_requests)
    limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
    async with httpx.AsyncClient(base_url=url, timeout=timeout, limits=limits) as client:
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        tasks = []
        for i in range(n):
            delay = t0 + i / rate - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(_one(client, paths[i % len(paths)], res)))
        await asyncio.wait_for(asyncio.gather(*tasks), timeout=duration + timeout + 30)
        res.seconds = loop.time() - t0
    return res


async def burst(url: str, paths: list[str], concurrency: int = 32, seconds: float = 10, max_requests: int = 200000,
                timeout: float = 10) -> Result:
    """``concurrency`` workers asking back to back for ``seconds`` (at most ``max_requests`` in all)."""
    res = Result("burst")
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, timeout=timeout, limits=limits) as client:
        t0 = time.perf_counter()
        end = t0 + seconds

        async def worker(k: int) -> None:
            i = k
            while time.perf_counter() < end and res.requests < max_requests:
                await _one(client, paths[i % len(paths)], res)
                i += concurrency
        await asyncio.wait_for(asyncio.gather(*(worker(k) for k in range(concurrency))), timeout=seconds + timeout + 30)
        res.seconds = time.perf_counter() - t0
    return res


def query_paths(machines: list[str]) -> list[str]:
    """A mix of firmware queries over the machines: boot (current and asked type), iPXE, the other lists."""
    out = []
    for m in machines:
        out += [f"/v1/machines/{m}/boot", f"/v1/machines/{m}/boot?type=maintenance", f"/v1/machines/{m}/rootvg",
                f"/v1/machines/{m}/boot.ipxe", f"/v1/machines/{m}/primary"]
    return out


def populate(registry: Path, disks: list[str], machines: int) -> list[str]:
    """``machines`` machines with boot lists in every mode and the other lists filled."""
    from core.registry import Registry
    r = Registry(registry, inventory=disks)
    ids = []
    for k in range(machines):
        mid = f"naa.50050768{k:08x}"
        r.add_machine(mid, f"lpar{k:03d}", ("normal", "install", "maintenance")[k % 3], actor="bench")
        rot = disks[k % len(disks):] + disks[:k % len(disks)]
        for mode in ("normal", "install", "maintenance"):
            r.set_list(mid, "boot", rot[:4], mode=mode, actor="bench")
        r.set_list(mid, "rootvg", rot[:2], actor="bench")
        r.set_list(mid, "primary", rot[2:5], actor="bench")
        ids.append(mid)
    r.close()
    return ids


def start_server(registry: Path, fabric: Path | None, log: Path) -> tuple[subprocess.Popen[str], str]:
    cmd = [sys.executable, "-m", "console.cli", "serve", "--host", "127.0.0.1", "--port", "0",
           "--registry", str(registry)] + (["--fabric", str(fabric)] if fabric else ["--no-disk-check"])
    with open(log, "a") as logf:
        proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=logf, text=True,
                                env=dict(os.environ, PYTHONUNBUFFERED="1"))
    sel = selectors.DefaultSelector()
    assert proc.stdout is not None
    sel.register(proc.stdout, selectors.EVENT_READ)
    line, deadline = "", time.monotonic() + 30
    while "http://" not in line and time.monotonic() < deadline and proc.poll() is None:
        if sel.select(0.2):
            line = proc.stdout.readline()
    sel.close()
    if "http://" not in line:
        stop_server(proc)
        raise SystemExit(f"sanbos serve did not start: {log.read_text()[-2000:]}")
    return proc, line.split(" on ", 1)[1].split("/ ", 1)[0].rstrip("/")


def stop_server(proc: subprocess.Popen[str]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
    if proc.stdout:
        proc.stdout.close()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--url", help="an already running sanbos serve (else one is started)")
    ap.add_argument("--machine", action="append", default=[], help="with --url: machine IDs to query")
    ap.add_argument("--rate", type=float, default=200)
    ap.add_argument("--duration", type=float, default=30)
    ap.add_argument("--burst-seconds", type=float, default=10)
    ap.add_argument("--burst-concurrency", type=int, default=32)
    ap.add_argument("--machines", type=int, default=50)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)

    proc = None
    tmp = tempfile.TemporaryDirectory(prefix="sanbos-bench-")
    try:
        if args.url:
            if not args.machine:
                ap.error("--url needs --machine ID (one or more)")
            url, machines = args.url.rstrip("/"), args.machine
        else:
            from core import fabric as fab
            f = fab.create(Path(tmp.name) / "fabric", 8, 8 * 1024 * 1024)
            machines = populate(Path(tmp.name) / "registry.db", [l.wwn for l in f.luns], args.machines)
            proc, url = start_server(Path(tmp.name) / "registry.db", f.root, Path(tmp.name) / "serve.log")
        paths = query_paths(machines)
        results = []
        if args.duration > 0:
            results.append(asyncio.run(paced(url, paths, args.rate, args.duration)))
            if not args.json:
                print(results[-1].line(), flush=True)
        if args.burst_seconds > 0:
            results.append(asyncio.run(burst(url, paths, args.burst_concurrency, args.burst_seconds)))
            if not args.json:
                print(results[-1].line(), flush=True)
        if args.json:
            print(json.dumps({"url": url, "machines": len(machines), "cpus": os.cpu_count(),
                              "results": [r.summary() for r in results]}, indent=2))
        return 1 if any(r.errors for r in results) else 0
    finally:
        if proc is not None:
            stop_server(proc)
        tmp.cleanup()


if __name__ == "__main__":
    sys.exit(main())
