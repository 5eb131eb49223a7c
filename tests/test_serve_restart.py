"""Restart: SIGKILL the server (by its PID) in the middle of a burst of writes.

On restart the registry passes SQLite's and the registry's own checks, and the
audit log matches the committed changes exactly: per writer, the audited
changes are the writes it sent, in order, covering every acknowledged write
plus at most the one that was in flight when the server died, and replaying
the audit's "after" values gives the stored state.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import httpx
import pytest

from core import fabric as fab
from core.registry import Registry
from serve_support import Server, cli, login

PW = "restart-test-password"
WRITERS = 4


@pytest.mark.slow
def test_sigkill_mid_burst_leaves_a_consistent_registry(tmp_path: Path) -> None:
    f = fab.create(tmp_path / "fabric", 4, 8 * 1024 * 1024)
    d = [l.wwn for l in f.luns]
    db = tmp_path / "registry.db"
    assert cli("admin", "add", "root", "--password-stdin", "--registry", str(db), input=PW + "\n").returncode == 0
    reg = Registry(db, inventory=d)
    machines = [f"naa.5005076801ee{k:04x}" for k in range(WRITERS)]
    for m in machines:
        reg.add_machine(m, "start", actor="setup")
    baseline = reg.audit(limit=1)[0].id
    reg.close()

    srv = Server(db, f.root, log=tmp_path / "serve.log").start()
    try:
        admin, tok = login(srv.url, "root", PW)
        cookies = admin.cookies
        attempted: dict[str, list[tuple[str, object]]] = {m: [] for m in machines}
        acked: dict[str, int] = {m: 0 for m in machines}
        errors: dict[str, str] = {}
        stop = threading.Event()

        def writer(m: str, k: int) -> None:
            c = httpx.Client(base_url=srv.url, cookies=cookies, headers={"X-CSRF-Token": tok}, timeout=10)
            try:
                i = 0
                while not stop.is_set() and i < 2000:
                    kind = i % 3
                    if kind == 0:
                        exp = ("machine.rename", {"name": f"w{k}-{i}"})
                        call = lambda: c.patch(f"/api/machines/{m}", json={"name": f"w{k}-{i}"})  # noqa: E731
                    elif kind == 1:
                        t = ("install", "maintenance", "normal")[(i // 3) % 3]
                        exp = ("machine.boot_type", {"boot_type": t})
                        call = lambda: c.patch(f"/api/machines/{m}", json={"boot_type": t})  # noqa: E731
                    else:
                        rot = (i // 3) % 4
                        devs = (d[rot:] + d[:rot])[: 2 + (i // 3) % 3]
                        exp = ("list.set", [{"id": x, "copy": None, "attrs": {}} for x in devs])
                        call = lambda: c.put(f"/api/machines/{m}/lists/primary",  # noqa: E731
                                             json={"devices": [{"id": x} for x in devs]})
                    attempted[m].append(exp)
                    try:
                        r = call()
                    except httpx.HTTPError as e:
                        errors[m] = f"{type(e).__name__}"
                        return
                    if r.status_code != 200:
                        errors[m] = f"HTTP {r.status_code}: {r.text[:200]}"
                        return
                    acked[m] += 1
                    i += 1
            finally:
                c.close()

        threads = [threading.Thread(target=writer, args=(m, k)) for k, m in enumerate(machines)]
        for t in threads:
            t.start()
        deadline = time.monotonic() + 30
        while sum(acked.values()) < 60 and time.monotonic() < deadline:
            time.sleep(0.02)
        srv.kill()                                   # SIGKILL by PID, mid-burst
        stop.set()
        for t in threads:
            t.join(30)
        assert sum(acked.values()) >= 60, (acked, errors)
        # every writer stopped because the server vanished, not because it refused something
        assert all(not e.startswith("HTTP") for e in errors.values()), errors

        # the file as the killed server left it
        reg = Registry(db, inventory=d)
        assert reg.integrity_check() == []
        log = list(reversed(reg.audit(limit=100000, since_id=baseline)))
        for m in machines:
            mine = [(a.action, a.after) for a in log if a.target in (m, f"{m}/primary")]
            # a prefix of what was sent, in order: all acknowledged writes, plus at most the one in flight
            assert mine == attempted[m][:len(mine)], m
            assert acked[m] <= len(mine) <= acked[m] + 1, (m, acked[m], len(mine))
            assert all(a.actor == "root" for a in log if a.target.startswith(m))
            # replaying the audit gives the stored state
            state = reg.machine(m)
            names = [a for a in mine if a[0] == "machine.rename"]
            types = [a for a in mine if a[0] == "machine.boot_type"]
            lists = [a for a in mine if a[0] == "list.set"]
            assert state.name == (names[-1][1]["name"] if names else "start")
            assert state.boot_type == (types[-1][1]["boot_type"] if types else "normal")
            assert [x.to_dict() for x in state.lists["primary"]] == (lists[-1][1] if lists else [])
        # nothing else was audited
        assert all(a.target.split("/")[0] in machines for a in log)
        reg.close()

        # restart on the same file: same answers, old session still valid (secret is in the registry)
        srv2 = Server(db, f.root, log=tmp_path / "serve2.log").start()
        try:
            reg = Registry(db)
            for m in machines:
                state = reg.machine(m)
                j = httpx.get(f"{srv2.url}/v1/machines/{m}/primary", timeout=10).json()
                assert [x["id"] for x in j["devices"]] == [x.id for x in state.lists["primary"]]
                assert httpx.get(f"{srv2.url}/v1/machines/{m}/boot", timeout=10).json()["boot_type"] == state.boot_type
            c = httpx.Client(base_url=srv2.url, cookies=cookies, headers={"X-CSRF-Token": tok}, timeout=10)
            r = c.patch(f"/api/machines/{machines[0]}", json={"name": "after-restart"})
            assert r.status_code == 200
            c.close()
            last = reg.audit(limit=1)[0]
            assert (last.action, last.after, last.actor) == ("machine.rename", {"name": "after-restart"}, "root")
            assert reg.integrity_check() == []
            reg.close()
        finally:
            srv2.stop()
        admin.close()
    finally:
        srv.stop()
