"""core.registry: migrations, ordering, audit, bootlist text, known-disk checks, admins."""

from __future__ import annotations

import io
import json
import sqlite3
import threading
from pathlib import Path

import pytest

from core import registry as reg
from core.errors import NotFoundError, UsageError
from core.registry import (ConflictError, Device, Registry, RegistryError, UnknownDiskError,
                           format_bootlist, parse_bootlist)

DISKS = ["naa.600a0b8000000000000000000000aa01", "naa.600a0b8000000000000000000000aa02",
         "naa.600a0b8000000000000000000000bb03", "serial:SANBOS0004"]
M = "naa.5005076801000001"


@pytest.fixture
def r(tmp_path: Path) -> Registry:
    x = Registry(tmp_path / "reg.db", inventory=DISKS)
    x.add_machine(M, "web01", actor="test")
    yield x
    x.close()


def test_new_file_is_at_latest_schema_in_wal_mode(tmp_path: Path) -> None:
    x = Registry(tmp_path / "a.db")
    assert x.schema_version() == reg.SCHEMA_VERSION
    assert x._conn().execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert (tmp_path / "a.db").stat().st_mode & 0o077 == 0
    x.close()


def test_migrates_a_version_1_file_in_order(tmp_path: Path) -> None:
    p = tmp_path / "old.db"
    c = sqlite3.connect(p)
    c.execute("CREATE TABLE schema_version (version INTEGER NOT NULL)")
    c.execute("INSERT INTO schema_version VALUES (1)")
    c.executescript(reg.MIGRATIONS[0][2])
    c.execute("INSERT INTO machines VALUES ('m1', 'old', 'install', 't', 't')")
    c.execute("INSERT INTO admins VALUES ('root', 'x', 't')")
    c.commit()
    c.close()
    x = Registry(p)
    assert x.schema_version() == reg.SCHEMA_VERSION
    assert x.machine("m1").boot_type == "install"        # data kept
    assert x.admin_epoch("root") == 1                     # column added by step 2
    assert x.secret() == x.secret()                       # settings table exists
    x.close()


def test_refuses_a_newer_schema(tmp_path: Path) -> None:
    p = tmp_path / "new.db"
    Registry(p).close()
    c = sqlite3.connect(p)
    c.execute("UPDATE schema_version SET version = 99")
    c.commit()
    c.close()
    with pytest.raises(RegistryError, match="newer than this sanbos"):
        Registry(p)


def test_not_a_database(tmp_path: Path) -> None:
    p = tmp_path / "junk.db"
    p.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(RegistryError, match="not a database"):
        Registry(p)


def test_machine_ids_are_normalised_and_unique(r: Registry) -> None:
    assert r.machine(M.upper()).id == M
    with pytest.raises(ConflictError, match="already"):
        r.add_machine(M.upper(), actor="t")
    with pytest.raises(UsageError, match="bad machine ID"):
        r.add_machine("x'; DROP TABLE machines;--", actor="t")
    with pytest.raises(NotFoundError, match="no machine"):
        r.machine("naa.5005076801009999")
    with pytest.raises(UsageError, match="bad boot type"):
        r.set_boot_type(M, "sms", actor="t")


def test_lists_keep_their_order_and_edits(r: Registry) -> None:
    r.set_list(M, "boot", DISKS[:3], mode="normal", actor="t")
    assert [d.id for d in r.device_list(M, "boot")] == DISKS[:3]
    r.move_device(M, "boot", 3, "up", mode="normal", actor="t")
    assert [d.id for d in r.device_list(M, "boot", "normal")] == [DISKS[0], DISKS[2], DISKS[1]]
    r.move_device(M, "boot", 1, "down", mode="normal", actor="t")
    r.move_device(M, "boot", 3, 1, mode="normal", actor="t")
    assert [d.id for d in r.device_list(M, "boot", "normal")] == [DISKS[1], DISKS[2], DISKS[0]]
    r.add_device(M, "boot", {"id": DISKS[3], "copy": "bootlv_rimage_3"}, mode="normal", position=2, actor="t")
    assert [d.id for d in r.device_list(M, "boot", "normal")] == [DISKS[1], DISKS[3], DISKS[2], DISKS[0]]
    r.remove_device(M, "boot", 1, mode="normal", expect=DISKS[1], actor="t")
    r.remove_device(M, "boot", DISKS[0], mode="normal", actor="t")
    assert r.bootlist_text(M, "normal") == f"{DISKS[3]} copy=bootlv_rimage_3\n{DISKS[2]}\n"
    with pytest.raises(ConflictError, match="changed meanwhile"):
        r.remove_device(M, "boot", 1, mode="normal", expect=DISKS[2], actor="t")
    with pytest.raises(NotFoundError, match="no position 7"):
        r.move_device(M, "boot", 7, "up", mode="normal", actor="t")
    # the five lists are independent; modes only on boot
    r.set_list(M, "rootvg", [DISKS[0]], actor="t")
    r.set_list(M, "non-essential", [DISKS[1], DISKS[2]], actor="t")
    m = r.machine(M)
    assert [d.id for d in m.lists["rootvg"]] == [DISKS[0]]
    assert [d.id for d in m.lists["nonessential"]] == [DISKS[1], DISKS[2]]
    assert m.lists["primary"] == [] and m.lists["boot"]["install"] == []
    with pytest.raises(UsageError, match="no modes"):
        r.set_list(M, "rootvg", [DISKS[0]], mode="normal", actor="t")
    with pytest.raises(NotFoundError, match="no device list"):
        r.device_list(M, "tertiary")
    assert r.integrity_check() == []


def test_query_follows_the_boot_type(r: Registry) -> None:
    r.set_list(M, "boot", [DISKS[0], DISKS[1]], mode="normal", actor="t")
    r.set_list(M, "boot", [DISKS[2]], mode="maintenance", actor="t")
    assert [d.id for d in r.query(M).devices] == [DISKS[0], DISKS[1]]
    r.set_boot_type(M, "maintenance", actor="admin")
    q = r.query(M, "boot")
    assert q.boot_type == "maintenance" and [d.id for d in q.devices] == [DISKS[2]]
    assert [d.id for d in r.query(M, "boot", "normal").devices] == [DISKS[0], DISKS[1]]
    assert r.query(M, "rootvg").to_dict()["devices"] == []
    with pytest.raises(UsageError):
        r.query(M, "rootvg", "install")


def test_unknown_and_duplicate_devices_are_refused(r: Registry) -> None:
    with pytest.raises(UnknownDiskError, match="unknown disk 'naa.6000dead'"):
        r.set_list(M, "boot", [DISKS[0], "naa.6000dead"], mode="normal", actor="t")
    with pytest.raises(UnknownDiskError):
        r.add_device(M, "primary", "naa.6000dead", actor="t")
    with pytest.raises(UsageError, match="ambiguous"):
        r.add_device(M, "primary", "naa.600a0b80", actor="t")
    with pytest.raises(ConflictError, match="twice"):
        r.set_list(M, "primary", [DISKS[0], DISKS[0]], actor="t")
    with pytest.raises(UsageError, match="bad disk ID"):
        r.add_device(M, "primary", "<script>alert(1)</script>", actor="t")
    # a unique prefix resolves to the full ID; serial IDs work too
    r.set_list(M, "primary", ["naa.600a0b8000000000000000000000bb", "serial:SANBOS0004"], actor="t")
    assert [d.id for d in r.device_list(M, "primary")] == [DISKS[2], DISKS[3]]
    # nothing was written by the refused edits
    assert [a.action for a in r.audit()] == ["list.set", "machine.add"]


def test_inventory_may_be_a_callable_of_diskinfo_like_objects(tmp_path: Path) -> None:
    class D:
        def __init__(self, i: str) -> None:
            self.id, self.wwn, self.serial, self.pv_uuid = i, i, None, None
    calls = []

    def inv():
        calls.append(1)
        return [D(DISKS[0])]
    x = Registry(tmp_path / "c.db", inventory=inv)
    x.add_machine("m", actor="t")
    x.set_list("m", "boot", [DISKS[0]], mode="install", actor="t")
    assert calls
    with pytest.raises(UnknownDiskError):
        x.set_list("m", "boot", [DISKS[1]], mode="install", actor="t")
    x.close()


def test_bootlist_text_round_trip() -> None:
    text = ("# bootlist -m normal -o\n"
            f"{DISKS[0]} copy=bootlv_rimage_0 pathid=0\n"
            "-\n\n"
            f"{DISKS[1]} blv=bootlv_rimage_1\n"
            f"{DISKS[2]}   # trailing comment\n")
    devs = parse_bootlist(text)
    assert devs == [Device(DISKS[0], "bootlv_rimage_0", {"pathid": "0"}),
                    Device(DISKS[1], "bootlv_rimage_1"), Device(DISKS[2])]
    out = format_bootlist(devs)
    assert out == (f"{DISKS[0]} copy=bootlv_rimage_0 pathid=0\n{DISKS[1]} copy=bootlv_rimage_1\n{DISKS[2]}\n")
    assert parse_bootlist(out) == devs
    # several devices on one line (AIX argument style)
    assert parse_bootlist(f"{DISKS[0]} copy=a {DISKS[1]}") == [Device(DISKS[0], "a"), Device(DISKS[1])]
    with pytest.raises(UsageError, match="line 1: attribute"):
        parse_bootlist("copy=a naa.1")
    with pytest.raises(UsageError, match="bad value"):
        parse_bootlist("naa.1 pathid=<b>")


def test_bootlist_text_through_the_registry(r: Registry) -> None:
    text = f"{DISKS[2]} copy=bootlv_rimage_2\n{DISKS[0]}\n"
    r.set_bootlist_text(M, "install", text, actor="t")
    assert r.bootlist_text(M, "install") == text
    assert r.bootlist_text(M, "normal") == ""


def test_every_change_is_audited_with_before_and_after(r: Registry) -> None:
    r.set_boot_type(M, "install", actor="alice")
    r.set_boot_type(M, "install", actor="alice")             # no change, no entry
    r.rename_machine(M, "<b>web01</b>'; DROP TABLE audit;--", actor="bob")
    r.set_list(M, "secondary", [DISKS[0]], actor="carol")
    r.add_admin("root", "correct horse", actor="cli")
    r.remove_machine(M, actor="dave")
    log = list(reversed(r.audit()))
    assert [(a.actor, a.action, a.target) for a in log] == [
        ("test", "machine.add", M),
        ("alice", "machine.boot_type", M),
        ("bob", "machine.rename", M),
        ("carol", "list.set", f"{M}/secondary"),
        ("cli", "admin.add", "admin:root"),
        ("dave", "machine.remove", M)]
    assert log[1].before == {"boot_type": "normal"} and log[1].after == {"boot_type": "install"}
    assert log[2].after == {"name": "<b>web01</b>'; DROP TABLE audit;--"}
    assert log[3].before == [] and log[3].after == [{"id": DISKS[0], "copy": None, "attrs": {}}]
    assert log[5].before["lists"]["secondary"][0]["id"] == DISKS[0] and log[5].after is None
    assert "password" not in repr(log[4].after) and "scrypt" not in repr(log[4].after)
    assert all(a.at.endswith("Z") for a in log)
    # the device rows went with the machine
    assert r._conn().execute("SELECT count(*) FROM devices").fetchone()[0] == 0


def test_failed_write_leaves_no_audit_and_no_change(r: Registry, monkeypatch) -> None:
    r.set_list(M, "boot", [DISKS[0]], mode="normal", actor="t")
    n = len(r.audit())

    def boom(*a, **k):
        raise RuntimeError("disk full")
    monkeypatch.setattr(Registry, "_audit", staticmethod(boom))
    with pytest.raises(RuntimeError):
        r.set_list(M, "boot", [DISKS[1]], mode="normal", actor="t")
    monkeypatch.undo()
    assert [d.id for d in r.device_list(M, "boot", "normal")] == [DISKS[0]]
    assert len(r.audit()) == n


def test_admin_passwords_are_slow_salted_hashes(r: Registry) -> None:
    r.add_admin("root", "s3cret-pass", actor="cli")
    r.add_admin("op", "s3cret-pass", actor="root")
    rows = dict(r._conn().execute("SELECT name, pw_hash FROM admins"))
    assert rows["root"] != rows["op"]                       # salted
    assert rows["root"].startswith("scrypt$16384$8$1$") and "s3cret" not in rows["root"]
    assert r.authenticate("root", "s3cret-pass").name == "root"
    with pytest.raises(reg.AuthError):
        r.authenticate("root", "wrong-pass")
    with pytest.raises(reg.AuthError):
        r.authenticate("nobody", "s3cret-pass")
    with pytest.raises(UsageError, match="at least 8"):
        r.add_admin("short", "abc", actor="cli")
    with pytest.raises(ConflictError):
        r.add_admin("root", "another-pass", actor="cli")
    r.set_password("op", "new-password", actor="root")
    assert r.admin_epoch("op") == 2
    r.remove_admin("op", actor="root")
    with pytest.raises(ConflictError, match="last administrator"):
        r.remove_admin("root", actor="root")
    assert not reg.verify_password("x", "garbage")


def test_concurrent_writers_serialise(tmp_path: Path) -> None:
    p = tmp_path / "conc.db"
    x = Registry(p, inventory=DISKS)
    x.add_machine("m", actor="t")
    errors: list[BaseException] = []

    def worker(k: int) -> None:
        y = Registry(p, inventory=DISKS)
        try:
            for i in range(20):
                y.set_boot_type("m", ("normal", "install", "maintenance")[(i + k) % 3], actor=f"w{k}")
                y.set_list("m", "primary", [DISKS[(i + k) % 4]], actor=f"w{k}")
        except BaseException as e:  # noqa: BLE001
            errors.append(e)
        finally:
            y.close()
    ts = [threading.Thread(target=worker, args=(k,)) for k in range(4)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert not errors
    assert x.integrity_check() == []
    # the audit log replays to the stored state
    last = {}
    for a in reversed(x.audit(limit=10000)):
        last[a.target] = a.after
    m = x.machine("m")
    assert last["m"]["boot_type"] == m.boot_type
    assert last["m/primary"] == [d.to_dict() for d in m.lists["primary"]]
    x.close()


def test_unwritable_location_is_a_clear_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(RegistryError, match="cannot create the registry directory"):
        Registry(blocker / "sub" / "reg.db")


def test_default_path_comes_from_the_environment(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setenv("SANBOS_REGISTRY", str(tmp_path / "env.db"))
    assert reg.default_path() == str(tmp_path / "env.db")
    monkeypatch.delenv("SANBOS_REGISTRY")
    assert reg.default_path() == "/var/lib/sanbos/registry.db"


# ---------------------------------------------------------------------------
# the CLI shares the registry: sanbos machine / bootlist / admin


def _cli(capsys, *argv: str) -> tuple[int, str, str]:
    from console.cli import main
    rc = main(list(argv))
    out, err = capsys.readouterr()
    return rc, out, err


def test_cli_bootlist_round_trip(tmp_path: Path, capsys, monkeypatch) -> None:
    from core import fabric as fab
    f = fab.create(tmp_path / "fabric", 3, 8 * 1024 * 1024)
    d = [l.wwn for l in f.luns]
    db = str(tmp_path / "cli.db")
    base = ["--registry", db]
    assert _cli(capsys, "machine", "add", "NAA.5005076801000001", "--name", "web01", *base)[0] == 0
    rc, out, err = _cli(capsys, "bootlist", "set", "naa.5005076801000001", "--mode", "normal", "--fabric",
                        str(f.root), *base, d[2], "copy=bootlv_rimage_2", d[0][:-1], "pathid=1")
    assert rc == 0, err
    assert out == f"{d[2]} copy=bootlv_rimage_2\n{d[0]} pathid=1\n"        # the prefix was resolved
    rc, out, _ = _cli(capsys, "bootlist", "show", "naa.5005076801000001", *base)
    assert out == f"{d[2]} copy=bootlv_rimage_2\n{d[0]} pathid=1\n"
    # the same text back in with -f, for another mode
    (tmp_path / "bl.txt").write_text(out)
    assert _cli(capsys, "bootlist", "set", "naa.5005076801000001", "-m", "maintenance", "-f",
                str(tmp_path / "bl.txt"), "--fabric", str(f.root), *base)[0] == 0
    rc, out, _ = _cli(capsys, "bootlist", "show", "naa.5005076801000001", "--mode", "maintenance", "--json", *base)
    j = json.loads(out)
    assert j["mode"] == "maintenance" and [x["id"] for x in j["devices"]] == [d[2], d[0]]
    # stdin
    monkeypatch.setattr("sys.stdin", io.StringIO(f"# from stdin\n{d[1]}\n"))
    assert _cli(capsys, "bootlist", "set", "naa.5005076801000001", "-m", "install", "-f", "-", "--fabric",
                str(f.root), *base)[0] == 0
    # unknown disk: one line, exit 1, nothing changed
    rc, out, err = _cli(capsys, "bootlist", "set", "naa.5005076801000001", "--mode", "normal", "--fabric",
                        str(f.root), *base, "naa.6000dead")
    assert rc == 1 and err.strip().startswith("sanbos: unknown disk 'naa.6000dead'") and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1
    # device-list edits and set-type through `machine`
    assert _cli(capsys, "machine", "dev-add", "naa.5005076801000001", "rootvg", d[1], "--fabric", str(f.root),
                *base)[0] == 0
    assert _cli(capsys, "machine", "dev-set", "naa.5005076801000001", "primary", "--fabric", str(f.root), *base,
                d[0], d[1])[0] == 0
    assert _cli(capsys, "machine", "dev-move", "naa.5005076801000001", "primary", "2", "up", *base)[0] == 0
    assert _cli(capsys, "machine", "dev-remove", "naa.5005076801000001", "boot", "1", "--mode", "normal", *base)[0] == 0
    assert _cli(capsys, "machine", "set-type", "naa.5005076801000001", "maintenance", *base)[0] == 0
    rc, out, _ = _cli(capsys, "machine", "show", "naa.5005076801000001", "--json", *base)
    m = json.loads(out)
    assert m["boot_type"] == "maintenance"
    assert [x["id"] for x in m["lists"]["primary"]] == [d[1], d[0]]
    assert [x["id"] for x in m["lists"]["boot"]["normal"]] == [d[0]]
    rc, out, _ = _cli(capsys, "machine", "show", "naa.5005076801000001", *base)
    assert "boot list maintenance (in use):" in out and "rootvg:" in out
    rc, out, _ = _cli(capsys, "machine", "list", *base)
    assert "naa.5005076801000001" in out and "maintenance" in out
    rc, _, err = _cli(capsys, "machine", "show", "naa.50050768ffff", *base)
    assert rc == 1 and "no machine 'naa.50050768ffff'" in err
    # every change was audited with the CLI user as actor
    rc, out, _ = _cli(capsys, "admin", "audit", "--json", "--limit", "100", *base)
    log = json.loads(out)
    assert len(log) == 9 and all(e["actor"].startswith("cli:") for e in log)


def test_cli_admins(tmp_path: Path, capsys, monkeypatch) -> None:
    db = str(tmp_path / "adm.db")
    monkeypatch.setattr("sys.stdin", io.StringIO("first-password\n"))
    assert _cli(capsys, "admin", "add", "root", "--password-stdin", "--registry", db)[0] == 0
    monkeypatch.setattr("sys.stdin", io.StringIO("short\n"))
    rc, _, err = _cli(capsys, "admin", "add", "op", "--password-stdin", "--registry", db)
    assert rc == 2 and "at least 8" in err
    monkeypatch.setattr("sys.stdin", io.StringIO(""))
    rc, _, err = _cli(capsys, "admin", "add", "op", "--registry", db)       # no terminal to prompt on
    assert rc == 2 and "--password-stdin" in err
    rc, out, _ = _cli(capsys, "admin", "list", "--registry", db)
    assert out.startswith("root")
    assert Registry(db).authenticate("root", "first-password").name == "root"
    rc, _, err = _cli(capsys, "admin", "remove", "root", "--registry", db)
    assert rc == 1 and "last administrator" in err
