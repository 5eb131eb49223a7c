"""Load: 200 concurrent firmware queries per second for ~10 s on loopback, no errors; latency percentiles.

Bounded in count (2000 requests) and time.  The 30 s run is ``bench/serve.py``
(same load generator).  The percentiles are printed (``pytest -s``) and
recorded as test properties.
"""

from __future__ import annotations

import asyncio
import importlib.util
import os
import sys
import warnings
from pathlib import Path

import pytest

from core import fabric as fab
from serve_support import Server

ROOT = Path(__file__).resolve().parent.parent
RATE, SECONDS = 200, 10


def _bench():
    spec = importlib.util.spec_from_file_location("sanbos_bench_serve", ROOT / "bench" / "serve.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod              # dataclasses look their module up
    assert spec.loader is not None
    spec.loader.exec_module(mod)
    return mod


@pytest.mark.slow
def test_200_queries_per_second_without_errors(tmp_path: Path, record_property) -> None:
    bench = _bench()
    load_before = os.getloadavg()[0]
    cpus = os.cpu_count() or 1
    f = fab.create(tmp_path / "fabric", 8, 8 * 1024 * 1024)
    machines = bench.populate(tmp_path / "registry.db", [l.wwn for l in f.luns], 40)
    with Server(tmp_path / "registry.db", f.root, log=tmp_path / "serve.log") as srv:
        res = asyncio.run(bench.paced(srv.url, bench.query_paths(machines), rate=RATE, duration=SECONDS,
                                      max_requests=RATE * SECONDS))
    s = res.summary()
    print("\n" + res.line() + f" (load average before {load_before:.1f} on {cpus} CPUs)")
    for k in ("requests", "errors", "rps", "p50_ms", "p95_ms", "p99_ms", "max_ms"):
        record_property(k, s[k])
    record_property("loadavg_before", round(load_before, 2))
    assert s["errors"] == 0, s["error_samples"]
    assert s["requests"] == RATE * SECONDS
    assert s["p99_ms"] < 5000, s
    if load_before < 1.5 * cpus:
        # a machine not already overloaded by others: the rate must hold and sends stay on schedule
        assert res.seconds < SECONDS + 2, s
        assert s["p99_ms"] < 500, s
    else:
        # shared CI box saturated by other jobs (QEMU...): the server's capacity is not what is
        # measured then; report the figures instead of failing on them
        warnings.warn(f"load average {load_before:.1f} on {cpus} CPUs before the run: rate/latency not "
                      f"asserted; measured {res.line()}")
