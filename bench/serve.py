#!/usr/bin/env python3
"""Benchmark the SAN boot device firmware query API on loopback.

Two phases, both bounded in time and in request count:

1. **paced**: ``--rate`` queries per second (default 200) for ``--duration``
   seconds (default 30), up to 64 at once (httpx.AsyncClient), like many
   machines' firmware asking at once; reports errors, latency percentiles
   (p50/p95/p99/max), the rate achieved and how late sends were.  With wrk
   installed the same rate runs again through wrk (20 connections, each
   pausing between requests), whose client costs far less CPU: on a
   contended box the Python client, not the server, is what falls behind.
2. **burst**: ``--burst-concurrency`` connections (default 32) asking as fast
   as they can for ``--burst-seconds`` (default 10): maximum throughput.  Uses
   ``wrk`` (scripts/setup.sh installs it; far less client CPU than Python)
   when it is installed, else httpx workers (``--burst-tool``).

The machine's load average is printed with each phase: on a shared 2-core
box the client and the other tenants compete with the server, so read the
figures with it.

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
import re
import selectors
import shutil
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
    lags: list[float] = field(default_factory=list)          # seconds a paced send started late

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
                "late_sends": len(self.lags), "max_lag_ms": round(max(self.lags) * 1000, 2) if self.lags else 0.0,
                "error_samples": self.error_samples[:5]}

    def line(self) -> str:
        s = self.summary()
        return (f"{s['phase']:<7} {s['requests']:>6} req in {s['seconds']:>6.2f} s = {s['rps']:>7.1f} rps, "
                f"errors {s['errors']}, p50 {s['p50_ms']} ms, p95 {s['p95_ms']} ms, p99 {s['p99_ms']} ms, "
                f"max {s['max_ms']} ms" + (f", {s['late_sends']} sends late (max {s['max_lag_ms']} ms)"
                                           if self.phase == "paced" else ""))


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
                timeout: float = 10, connections: int = 64) -> Result:
    """``rate`` queries/s for ``duration`` s (at most ``max_requests``), up to ``connections`` at once.

    Query ``i`` is sent at ``t0 + i / rate`` by whichever of the ``connections``
    workers is free (so the client never queues inside httpx's pool, whose
    cost grows with its queue).  Latency is measured from the actual send;
    ``lag`` (how late sends were against the schedule) says whether the
    client kept up.
    """
    res = Result("paced")
    n = min(int(rate * duration), max_requests)
    limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
    async with httpx.AsyncClient(base_url=url, timeout=timeout, limits=limits) as client:
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        counter = iter(range(n))

        async def worker() -> None:
            for i in counter:
                delay = t0 + i / rate - loop.time()
                if delay > 0:
                    await asyncio.sleep(delay)
                else:
                    res.lags.append(-delay)
                await _one(client, paths[i % len(paths)], res)
        await asyncio.wait_for(asyncio.gather(*(worker() for _ in range(connections))),
                               timeout=duration + timeout + 60)
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


WRK_LUA = """
local paths = {%s}
local i = 0
request = function()
  i = i + 1
  return wrk.format("GET", paths[(i %% #paths) + 1])
end
"""
WRK_DELAY = """
delay = function()
  return %d
end
"""


def _ms(value: str) -> float:
    m = re.match(r"([\d.]+)(us|ms|s|m)$", value)
    if not m:
        return float("nan")
    return float(m.group(1)) * {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}[m.group(2)]


def burst_wrk(url: str, paths: list[str], concurrency: int = 32, seconds: float = 10,
              workdir: Path | None = None, rate: float | None = None) -> dict[str, Any]:
    """The burst with ``wrk`` (bounded by ``-d``); its own summary of rps, errors and percentiles.

    With ``rate``: paced instead, each connection waiting ``concurrency / rate``
    seconds between its requests (wrk's ``delay()``), so the whole runs at
    about ``rate`` queries/s; latencies exclude the wait.
    """
    wrk = shutil.which("wrk")
    assert wrk
    workdir = Path(workdir or tempfile.mkdtemp(prefix="sanbos-wrk-"))
    script = workdir / "paths.lua"
    text = WRK_LUA % ", ".join(json.dumps(p) for p in paths)
    if rate:
        text += WRK_DELAY % max(1, int(round(concurrency * 1000 / rate)))
    script.write_text(text)
    threads = max(1, min(2, concurrency))
    out = subprocess.run([wrk, f"-t{threads}", f"-c{concurrency}", f"-d{max(1, int(seconds))}s", "--latency",
                          "--timeout", "10s", "-s", str(script), url], capture_output=True, text=True,
                         timeout=seconds + 60).stdout
    lat = dict(re.findall(r"^\s+(50|75|90|99)%\s+(\S+)$", out, re.M))
    total = re.search(r"(\d+) requests in ([\d.]+)(\w+)", out)
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    errors = (int(non2xx.group(1)) if non2xx else 0) + (sum(int(x) for x in sock.groups()) if sock else 0)
    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    return {"phase": "paced(wrk)" if rate else "burst(wrk)", "requests": int(total.group(1)) if total else 0, "errors": errors,
            "seconds": _ms(total.group(2) + total.group(3)) / 1000 if total else None,
            "rps": float(rps.group(1)) if rps else 0.0, "p50_ms": _ms(lat.get("50", "")),
            "p90_ms": _ms(lat.get("90", "")), "p99_ms": _ms(lat.get("99", "")),
            "max_ms": _ms(m.group(1)) if (m := re.search(r"Latency\s+\S+\s+\S+\s+(\S+)", out)) else None,
            "connections": concurrency, "raw": out.strip().splitlines()[-8:]}


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
    ap.add_argument("--burst-tool", choices=("auto", "wrk", "httpx"), default="auto")
    ap.add_argument("--paced-tool", choices=("httpx", "wrk", "both"), default="both",
                    help="httpx: Python async client, exact count; wrk: 20 connections with a per-connection "
                         "delay (much less client CPU); both (default, wrk only when installed)")
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
        results: list[dict[str, Any]] = []

        def report(summary: dict[str, Any], line: str) -> None:
            summary["loadavg_after"] = [round(x, 2) for x in os.getloadavg()]
            results.append(summary)
            if not args.json:
                print(f"{line}  (load average {summary['loadavg_after'][0]} on {os.cpu_count()} CPUs)", flush=True)

        def wrk_line(w: dict[str, Any]) -> str:
            return (f"{w['phase']:<10} {w['requests']:>6} req = {w['rps']:>7.1f} rps, errors {w['errors']}, "
                    f"p50 {w['p50_ms']} ms, p90 {w['p90_ms']} ms, p99 {w['p99_ms']} ms, max {w['max_ms']} ms")

        if args.duration > 0:
            if args.paced_tool in ("httpx", "both"):
                r = asyncio.run(paced(url, paths, args.rate, args.duration))
                report(r.summary(), r.line())
            if args.paced_tool == "wrk" or (args.paced_tool == "both" and shutil.which("wrk")):
                if not shutil.which("wrk"):
                    raise SystemExit("wrk is not installed (scripts/setup.sh installs it)")
                w = burst_wrk(url, paths, 20, args.duration, Path(tmp.name), rate=args.rate)
                report(w, wrk_line(w))
        if args.burst_seconds > 0:
            tool = args.burst_tool
            if tool == "auto":
                tool = "wrk" if shutil.which("wrk") else "httpx"
            if tool == "wrk":
                if not shutil.which("wrk"):
                    raise SystemExit("wrk is not installed (scripts/setup.sh installs it); use --burst-tool httpx")
                w = burst_wrk(url, paths, args.burst_concurrency, args.burst_seconds, Path(tmp.name))
                report(w, wrk_line(w))
            else:
                r = asyncio.run(burst(url, paths, args.burst_concurrency, args.burst_seconds))
                report(r.summary(), r.line())
        if args.json:
            print(json.dumps({"url": url, "machines": len(machines), "cpus": os.cpu_count(),
                              "results": results}, indent=2))
        return 1 if any(r["errors"] for r in results) else 0
    finally:
        if proc is not None:
            stop_server(proc)
        tmp.cleanup()


if __name__ == "__main__":
    sys.exit(main())
