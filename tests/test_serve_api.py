"""`sanbos serve` against a real server on loopback: firmware queries, configuration API, pages, security."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Iterator

import httpx
import pytest

from core import fabric as fab
from core.registry import Registry
from serve_support import Server, cli, login

M1 = "naa.5005076801000001"
M2 = "naa.5005076801000002"
PW = "correct horse battery"

INJECTIONS = [
    "'; DROP TABLE machines;--",
    "Robert'); DELETE FROM admins; --",
    "<script>alert('xss')</script>",
    "\"><img src=x onerror=alert(1)>",
    "{{7*7}}{% raw %}",
    "1 OR 1=1",
]


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    tmp = tmp_path_factory.mktemp("serve")
    f = fab.create(tmp / "fabric", 4, 8 * 1024 * 1024)
    disks = [l.wwn for l in f.luns]
    db = tmp / "registry.db"
    r = cli("admin", "add", "root", "--password-stdin", "--registry", str(db), input=PW + "\n")
    assert r.returncode == 0, r.stderr
    reg = Registry(db, inventory=disks)
    reg.add_machine(M1, "web01", actor="test")
    reg.set_list(M1, "boot", disks[:3], mode="normal", actor="test")
    reg.set_list(M1, "boot", [{"id": disks[3], "copy": "bootlv_rimage_3"}, disks[0]], mode="maintenance",
                 actor="test")
    reg.set_list(M1, "rootvg", [disks[1]], actor="test")
    reg.set_list(M1, "primary", [disks[2], disks[3]], actor="test")
    reg.add_machine(M2, "db01", "install", actor="test")
    with Server(db, f.root, log=tmp / "serve.log") as srv:
        yield {"url": srv.url, "disks": disks, "reg": reg, "db": db, "fabric": f.root, "tmp": tmp}
    reg.close()


@pytest.fixture
def admin(env: dict) -> Iterator[tuple[httpx.Client, str]]:
    c, tok = login(env["url"], "root", PW)
    yield c, tok
    c.close()


def get(env: dict, path: str, **kw) -> httpx.Response:
    return httpx.get(env["url"] + path, timeout=30, **kw)


# ---------------------------------------------------------------------------
# firmware query API (no login)


def test_boot_query_follows_the_boot_type(env: dict) -> None:
    d = env["disks"]
    r = get(env, f"/v1/machines/{M1}/boot")
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/json")
    j = r.json()
    assert j["machine"] == M1 and j["boot_type"] == "normal" and j["list"] == "boot"
    assert [x["id"] for x in j["devices"]] == d[:3]
    assert [x["position"] for x in j["devices"]] == [1, 2, 3]
    j = get(env, f"/v1/machines/{M1}/boot?type=maintenance").json()
    assert j["boot_type"] == "maintenance"
    assert j["devices"][0] == {"position": 1, "id": d[3], "copy": "bootlv_rimage_3", "attrs": {}}
    # machine IDs are case-insensitive (a WWN is a WWN)
    assert get(env, f"/v1/machines/{M1.upper()}/boot").json()["machine"] == M1
    assert get(env, f"/v1/machines/{M2}/boot").json() == {
        "machine": M2, "name": "db01", "list": "boot", "boot_type": "install", "devices": []}


@pytest.mark.parametrize("lst,want", [("rootvg", [1]), ("primary", [2, 3]), ("secondary", []),
                                      ("nonessential", []), ("non-essential", [])])
def test_other_lists(env: dict, lst: str, want: list[int]) -> None:
    r = get(env, f"/v1/machines/{M1}/{lst}")
    assert r.status_code == 200
    j = r.json()
    assert j["list"] == lst.replace("-", "") and "boot_type" not in j
    assert [x["id"] for x in j["devices"]] == [env["disks"][i] for i in want]


def test_text_and_ipxe_formats(env: dict) -> None:
    d = env["disks"]
    t = get(env, f"/v1/machines/{M1}/boot?type=maintenance&format=text")
    assert t.text == f"{d[3]} copy=bootlv_rimage_3\n{d[0]}\n"
    for path in (f"/v1/machines/{M1}/boot.ipxe", f"/v1/machines/{M1}/boot?format=ipxe"):
        s = get(env, path).text
        assert s.startswith("#!ipxe\n")
        sanboots = re.findall(r"^sanboot (\S+) \|\| goto (\S+)$", s, re.M)
        assert [u.rsplit(":", 1)[1] for u, _ in sanboots] == d[:3]          # in order
        assert [g for _, g in sanboots] == ["sanbos-2", "sanbos-3", "sanbos-failed"]   # failover chain
        for i in (1, 2, 3):
            assert f"\n:sanbos-{i}\n" in s
        assert s.rstrip().endswith("exit 1")
    s = get(env, f"/v1/machines/{M1}/boot.ipxe?type=maintenance").text
    assert "boot copy bootlv_rimage_3" in s and s.index(d[3]) < s.index(d[0])
    empty = get(env, f"/v1/machines/{M2}/boot.ipxe").text
    assert "sanboot" not in empty and "exit 1" in empty
    assert get(env, f"/v1/machines/{M1}/rootvg?format=ipxe").status_code == 400
    assert get(env, f"/v1/machines/{M1}/boot?format=xml").status_code == 400


def test_machine_summary_and_health(env: dict) -> None:
    j = get(env, f"/v1/machines/{M1}").json()
    assert j["boot_type"] == "normal" and "rootvg" in j["lists"]
    assert get(env, "/v1/health").json()["ok"] is True


@pytest.mark.parametrize("path,msg", [
    (f"/v1/machines/naa.50050768ffffffff/boot", "no machine 'naa.50050768ffffffff'"),
    (f"/v1/machines/naa.50050768ffffffff/rootvg", "no machine"),
    (f"/v1/machines/naa.50050768ffffffff/boot.ipxe", "no machine"),
    (f"/v1/machines/naa.50050768ffffffff", "no machine"),
    (f"/v1/machines/{M1}/tertiary", "no device list 'tertiary'"),
    (f"/v1/nothing", "no such page"),
])
def test_unknown_things_are_404_with_a_message(env: dict, path: str, msg: str) -> None:
    r = get(env, path)
    assert r.status_code == 404
    assert msg in r.json()["error"]
    assert "Traceback" not in r.text


def test_bad_type_is_400(env: dict) -> None:
    r = get(env, f"/v1/machines/{M1}/boot?type=sms")
    assert r.status_code == 400 and "bad boot type" in r.json()["error"]


def test_firmware_api_is_read_only(env: dict) -> None:
    for method in ("POST", "PUT", "PATCH", "DELETE"):
        r = httpx.request(method, env["url"] + f"/v1/machines/{M1}/boot", json={"devices": []}, timeout=30)
        assert r.status_code == 405, method
    assert len(get(env, f"/v1/machines/{M1}/boot").json()["devices"]) == 3


# ---------------------------------------------------------------------------
# configuration API


CONFIG_CALLS = [
    ("GET", "/api/machines", None),
    ("POST", "/api/machines", {"id": "naa.5005076801000099", "name": "x"}),
    ("GET", f"/api/machines/{M1}", None),
    ("PATCH", f"/api/machines/{M1}", {"boot_type": "maintenance"}),
    ("DELETE", f"/api/machines/{M2}", None),
    ("GET", f"/api/machines/{M1}/lists/boot?mode=normal", None),
    ("PUT", f"/api/machines/{M1}/lists/boot?mode=normal", {"devices": []}),
    ("POST", f"/api/machines/{M1}/lists/rootvg/devices", {"id": "naa.1"}),
    ("DELETE", f"/api/machines/{M1}/lists/primary/devices/1", None),
    ("POST", f"/api/machines/{M1}/lists/primary/devices/2/move", {"to": "up"}),
    ("GET", "/api/admins", None),
    ("POST", "/api/admins", {"name": "mallory", "password": "12345678"}),
    ("DELETE", "/api/admins/root", None),
    ("PUT", "/api/admins/root/password", {"password": "pwned-pwned"}),
    ("GET", "/api/audit", None),
    ("GET", "/api/disks", None),
]


def _snapshot(env: dict) -> tuple:
    reg: Registry = env["reg"]
    return ([m.to_dict() for m in reg.list_machines()], [reg.machine(m.id).to_dict() for m in reg.list_machines()],
            [a.name for a in reg.list_admins()], len(reg.audit(limit=100000)))


@pytest.mark.parametrize("method,path,body", CONFIG_CALLS)
def test_config_api_needs_login(env: dict, method: str, path: str, body) -> None:
    before = _snapshot(env)
    r = httpx.request(method, env["url"] + path, json=body, timeout=30)
    assert r.status_code == 401 and "login required" in r.json()["error"]
    # a forged or stale cookie is no better
    r = httpx.request(method, env["url"] + path, json=body, timeout=30,
                      cookies={"sanbos_session": "eyJhZG1pbiI6ICJyb290In0=.forged.sig"})
    assert r.status_code == 401
    assert _snapshot(env) == before


@pytest.mark.parametrize("method,path,body", [c for c in CONFIG_CALLS if c[0] != "GET"])
def test_config_writes_need_the_csrf_header(env: dict, admin, method: str, path: str, body) -> None:
    c, tok = admin
    before = _snapshot(env)
    assert c.request(method, path, json=body).status_code == 403
    r = c.request(method, path, json=body, headers={"X-CSRF-Token": "wrong" + tok})
    assert r.status_code == 403 and "CSRF" in r.json()["error"]
    assert _snapshot(env) == before


def test_login_sets_a_safe_cookie(env: dict) -> None:
    r = httpx.post(env["url"] + "/api/login", json={"name": "root", "password": PW}, timeout=30)
    assert r.status_code == 200
    cookie = r.headers["set-cookie"].lower()
    assert cookie.startswith("sanbos_session=")
    assert "httponly" in cookie and "samesite=strict" in cookie and "path=/" in cookie
    assert "secure" not in cookie          # plain HTTP on loopback; --certfile turns it on
    assert PW.lower() not in cookie


def test_json_api_wants_json(env: dict) -> None:
    # a cross-site HTML form can only send urlencoded, multipart or text/plain bodies
    for kw in ({"data": {"name": "root", "password": PW}},
               {"content": f'{{"name": "root", "password": "{PW}"}}', "headers": {"content-type": "text/plain"}}):
        r = httpx.post(env["url"] + "/api/login", timeout=30, **kw)
        assert r.status_code == 400 and "Content-Type: application/json" in r.json()["error"]
        assert "set-cookie" not in r.headers


def test_tls_marks_the_cookie_secure(tmp_path: Path) -> None:
    import shutil
    import subprocess
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed (needed to make a test certificate)")
    key, crt = tmp_path / "key.pem", tmp_path / "crt.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(crt),
                    "-days", "1", "-subj", "/CN=127.0.0.1"], check=True, capture_output=True, timeout=60)
    db = tmp_path / "tls.db"
    assert cli("admin", "add", "root", "--password-stdin", "--registry", str(db), input=PW + "\n").returncode == 0
    with Server(db, extra=["--certfile", str(crt), "--keyfile", str(key)]) as srv:
        assert srv.url.startswith("https://127.0.0.1:")
        r = httpx.post(srv.url + "/api/login", json={"name": "root", "password": PW}, timeout=30, verify=False)
        assert r.status_code == 200
        assert "; secure" in r.headers["set-cookie"].lower() and "samesite=strict" in r.headers["set-cookie"].lower()
    assert cli("serve", "--registry", str(db), "--certfile", str(crt)).returncode == 2


def test_config_api_full_round(env: dict, admin) -> None:
    c, tok = admin
    h = {"X-CSRF-Token": tok}
    d = env["disks"]
    new = "naa.5005076801000003"
    assert c.get("/api/session").json()["admin"] == "root"
    assert {m["id"] for m in c.get("/api/machines").json()["machines"]} >= {M1, M2}
    r = c.post("/api/machines", json={"id": new.upper(), "name": "app03", "boot_type": "normal"}, headers=h)
    assert r.status_code == 201 and r.json()["id"] == new
    assert c.post("/api/machines", json={"id": new}, headers=h).status_code == 409
    assert c.get(f"/api/machines/{new}").json()["name"] == "app03"
    # boot list by devices, then by bootlist text
    r = c.put(f"/api/machines/{new}/lists/boot?mode=normal",
              json={"devices": [{"id": d[2], "copy": "bootlv_rimage_2"}, {"id": d[0]}]}, headers=h)
    assert r.status_code == 200 and [x["id"] for x in r.json()["devices"]] == [d[2], d[0]]
    r = c.put(f"/api/machines/{new}/lists/boot", json={"mode": "maintenance", "text": f"{d[1]}\n{d[3]} pathid=1\n"},
              headers=h)
    assert [x["id"] for x in r.json()["devices"]] == [d[1], d[3]]
    # add (by unique prefix), move, remove
    r = c.post(f"/api/machines/{new}/lists/boot/devices", json={"id": d[3], "mode": "normal", "position": 1}, headers=h)
    assert [x["id"] for x in r.json()["devices"]] == [d[3], d[2], d[0]]
    r = c.post(f"/api/machines/{new}/lists/boot/devices/3/move", json={"to": "up", "mode": "normal"}, headers=h)
    assert [x["id"] for x in r.json()["devices"]] == [d[3], d[0], d[2]]
    r = c.post(f"/api/machines/{new}/lists/boot/devices/1/move", json={"to": 3, "mode": "normal"}, headers=h)
    assert [x["id"] for x in r.json()["devices"]] == [d[0], d[2], d[3]]
    r = c.delete(f"/api/machines/{new}/lists/boot/devices/2?mode=normal&expect={d[2]}", headers=h)
    assert [x["id"] for x in r.json()["devices"]] == [d[0], d[3]]
    r = c.delete(f"/api/machines/{new}/lists/boot/devices/1?mode=normal&expect={d[2]}", headers=h)
    assert r.status_code == 409 and "changed meanwhile" in r.json()["error"]
    for lst in ("rootvg", "primary", "secondary", "nonessential"):
        r = c.post(f"/api/machines/{new}/lists/{lst}/devices", json={"id": d[1]}, headers=h)
        assert r.status_code == 200, r.text
        assert get(env, f"/v1/machines/{new}/{lst}").json()["devices"][0]["id"] == d[1]
    assert c.get(f"/api/machines/{new}/lists/primary").json()["devices"][0]["id"] == d[1]
    # boot type and name; the firmware answer follows
    assert get(env, f"/v1/machines/{new}/boot").json()["devices"][0]["id"] == d[0]
    r = c.patch(f"/api/machines/{new}", json={"boot_type": "maintenance", "name": "app03b"}, headers=h)
    assert r.json()["boot_type"] == "maintenance" and r.json()["name"] == "app03b"
    assert [x["id"] for x in get(env, f"/v1/machines/{new}/boot").json()["devices"]] == [d[1], d[3]]
    assert c.patch(f"/api/machines/{new}", json={"colour": "red"}, headers=h).status_code == 400
    # the disk inventory and the audit log
    disks = c.get("/api/disks").json()
    assert disks["checked"] is True and [x["id"] for x in disks["disks"]] == d
    assert all(x["address"].endswith(f"-lun-{i}") and x["size"] == 8 * 1024 * 1024
               for i, x in enumerate(disks["disks"]))
    audit = c.get(f"/api/audit?limit=500").json()["audit"]
    mine = [a for a in audit if a["target"].startswith(new)]
    assert all(a["actor"] == "root" for a in mine)
    assert {a["action"] for a in mine} >= {"machine.add", "list.set", "list.add", "list.move", "list.remove",
                                           "machine.boot_type", "machine.rename"}
    # admins
    assert c.post("/api/admins", json={"name": "op", "password": "op-password-1"}, headers=h).status_code == 201
    assert "op" in [a["name"] for a in c.get("/api/admins").json()["admins"]]
    c2, tok2 = login(env["url"], "op", "op-password-1")
    assert c2.get("/api/machines").status_code == 200
    assert c.put("/api/admins/op/password", json={"password": "op-password-2"}, headers=h).status_code == 200
    assert c2.get("/api/machines").status_code == 401          # the old session ended with the password
    c2.close()
    login(env["url"], "op", "op-password-2")[0].close()
    assert c.delete("/api/admins/op", headers=h).status_code == 200
    assert c.delete("/api/admins/root", headers=h).status_code == 409     # never the last one
    assert c.delete(f"/api/machines/{new}", headers=h).status_code == 200
    assert get(env, f"/v1/machines/{new}/boot").status_code == 404
    assert c.post("/api/logout", headers=h).status_code == 200
    assert c.get("/api/machines").status_code == 401


def test_unknown_machines_and_devices_are_404(env: dict, admin) -> None:
    c, tok = admin
    h = {"X-CSRF-Token": tok}
    before = _snapshot(env)
    nobody = "naa.50050768ffffffff"
    for method, path, body in [("GET", f"/api/machines/{nobody}", None),
                               ("PATCH", f"/api/machines/{nobody}", {"boot_type": "install"}),
                               ("DELETE", f"/api/machines/{nobody}", None),
                               ("PUT", f"/api/machines/{nobody}/lists/rootvg", {"devices": []}),
                               ("GET", f"/api/machines/{M1}/lists/tertiary", None)]:
        r = c.request(method, path, json=body, headers=h)
        assert r.status_code == 404, (method, path, r.text)
        assert "no machine" in r.json()["error"] or "no device list" in r.json()["error"]
    r = c.put(f"/api/machines/{M1}/lists/rootvg", json={"devices": [{"id": "naa.600a0b80deadbeef"}]}, headers=h)
    assert r.status_code == 404 and "unknown disk 'naa.600a0b80deadbeef'" in r.json()["error"]
    r = c.post(f"/api/machines/{M1}/lists/boot/devices", json={"id": "naa.6000dead", "mode": "normal"}, headers=h)
    assert r.status_code == 404 and "unknown disk" in r.json()["error"]
    r = c.delete(f"/api/machines/{M1}/lists/primary/devices/9", headers=h)
    assert r.status_code == 404 and "no position 9" in r.json()["error"]
    assert c.delete("/api/admins/nobody", headers=h).status_code == 404
    assert _snapshot(env) == before


def test_bad_requests_are_400_with_a_message(env: dict, admin) -> None:
    c, tok = admin
    h = {"X-CSRF-Token": tok, "content-type": "application/json"}
    before = _snapshot(env)
    for method, path, content in [("POST", "/api/machines", b"{not json"),
                                  ("POST", "/api/machines", b"[1, 2]"),
                                  ("PUT", f"/api/machines/{M1}/lists/boot", b'{"devices": []}'),   # no mode
                                  ("PUT", f"/api/machines/{M1}/lists/rootvg?mode=normal", b'{"devices": []}'),
                                  ("PUT", f"/api/machines/{M1}/lists/rootvg", b'{"devices": "naa.1"}'),
                                  ("PATCH", f"/api/machines/{M1}", b'{"boot_type": "sms"}'),
                                  ("POST", "/api/admins", b'{"name": "short", "password": "abc"}')]:
        r = c.request(method, path, content=content, headers=h)
        assert r.status_code == 400, (path, content, r.text)
        assert r.json()["error"] and "Traceback" not in r.text
    assert _snapshot(env) == before


# ---------------------------------------------------------------------------
# pages


def _csrf(html: str) -> str:
    return re.search(r'name="csrf_token" value="([^"]+)"', html).group(1)


def page_login(env: dict) -> httpx.Client:
    c = httpx.Client(base_url=env["url"], timeout=30)
    tok = _csrf(c.get("/login").text)
    r = c.post("/login", data={"name": "root", "password": PW, "csrf_token": tok, "next": f"/machines/{M1}"})
    assert r.status_code == 303 and r.headers["location"] == f"/machines/{M1}"
    return c


def test_pages_need_login(env: dict) -> None:
    for path in ("/", f"/machines/{M1}", "/admins", "/audit"):
        r = get(env, path)
        assert r.status_code == 303 and r.headers["location"].startswith("/login")
    before = _snapshot(env)
    d = env["disks"]
    for path, data in [(f"/machines/{M1}/type", {"boot_type": "install"}),
                       (f"/machines/{M1}/name", {"name": "pwned"}),
                       (f"/machines/{M1}/delete", {"confirm": M1}),
                       (f"/machines/{M1}/lists/boot/add", {"mode": "normal", "device": d[3]}),
                       (f"/machines/{M1}/lists/boot/move", {"mode": "normal", "position": "2", "to": "up"}),
                       (f"/machines/{M1}/lists/boot/remove", {"mode": "normal", "position": "1"}),
                       (f"/machines/{M1}/lists/boot/set", {"mode": "normal", "text": ""}),
                       ("/machines", {"id": "naa.5005076801000066"}),
                       ("/admins/add", {"name": "eve", "password": "eve-password"}),
                       ("/admins/password", {"name": "root", "password": "eve-password"}),
                       ("/admins/delete", {"name": "root"})]:
        r = httpx.post(env["url"] + path, data={**data, "csrf_token": "x" * 43}, timeout=30)
        assert r.status_code == 403 and "Log in first" in r.text, path
    assert _snapshot(env) == before


def test_login_form_needs_csrf_and_refuses_wrong_passwords(env: dict) -> None:
    c = httpx.Client(base_url=env["url"], timeout=30)
    r = c.post("/login", data={"name": "root", "password": PW})            # no token: refused even if right
    assert r.status_code == 403 and "security token" in r.text
    assert c.get("/").status_code == 303
    tok = _csrf(c.get("/login").text)
    r = c.post("/login", data={"name": "root", "password": "wrong password", "csrf_token": tok})
    assert r.status_code == 401 and "Wrong administrator name or password" in r.text
    assert c.get("/").status_code == 303
    # open redirect refused
    r = c.post("/login", data={"name": "root", "password": PW, "csrf_token": _csrf(c.get("/login").text),
                               "next": "//evil.example/"})
    assert r.status_code == 303 and r.headers["location"] == "/"
    c.close()


def test_pages_show_and_edit_a_machine(env: dict) -> None:
    c = page_login(env)
    d = env["disks"]
    html = c.get(f"/machines/{M1}").text
    assert "web01" in html and 'id="list-boot-normal"' in html and 'id="list-nonessential"' in html
    for x in d[:3]:
        assert x in html
    tok = _csrf(html)
    # a form post without the token changes nothing
    before = _snapshot(env)
    for path, data in [(f"/machines/{M1}/type", {"boot_type": "install"}),
                       (f"/machines/{M1}/lists/boot/move", {"mode": "normal", "position": "2", "expect": d[1], "to": "up"}),
                       (f"/machines/{M1}/lists/boot/remove", {"mode": "normal", "position": "1", "expect": d[0]}),
                       (f"/machines/{M1}/lists/rootvg/add", {"device": d[0]}),
                       ("/machines", {"id": "naa.5005076801000077"}),
                       ("/admins/add", {"name": "eve", "password": "eve-password"}),
                       ("/admins/delete", {"name": "root"}),
                       (f"/machines/{M1}/delete", {"confirm": M1})]:
        for bad in ({}, {"csrf_token": "x" * 43}):
            r = c.post(path, data={**data, **bad})
            assert r.status_code == 403 and "CSRF" in r.text, path
    assert _snapshot(env) == before
    # with the token: boot type, move, add, remove
    r = c.post(f"/machines/{M1}/type", data={"boot_type": "install", "csrf_token": tok})
    assert r.status_code == 303
    assert get(env, f"/v1/machines/{M1}/boot").json()["boot_type"] == "install"
    c.post(f"/machines/{M1}/lists/boot/add", data={"mode": "install", "device": d[2], "copy": "bootlv_rimage_2",
                                                    "csrf_token": tok})
    c.post(f"/machines/{M1}/lists/boot/add", data={"mode": "install", "device": d[0], "csrf_token": tok})
    r = c.post(f"/machines/{M1}/lists/boot/move", data={"mode": "install", "position": "2", "expect": d[0],
                                                         "to": "up", "csrf_token": tok})
    assert r.status_code == 303 and r.headers["location"].endswith("#list-boot-install")
    assert [x["id"] for x in get(env, f"/v1/machines/{M1}/boot").json()["devices"]] == [d[0], d[2]]
    html = c.get(f"/machines/{M1}").text
    assert "moved" in html                                      # flash message
    r = c.post(f"/machines/{M1}/lists/boot/add", data={"mode": "install", "device": "naa.6000dead", "csrf_token": tok})
    assert r.status_code == 303
    assert "unknown disk" in c.get(f"/machines/{M1}").text    # the error is shown, not a traceback
    c.post(f"/machines/{M1}/lists/boot/remove", data={"mode": "install", "position": "1", "expect": d[0],
                                                       "csrf_token": tok})
    c.post(f"/machines/{M1}/lists/boot/set", data={"mode": "install", "text": f"{d[3]}\n{d[2]} copy=x\n",
                                                    "csrf_token": tok})
    assert get(env, f"/v1/machines/{M1}/boot?format=text").text == f"{d[3]}\n{d[2]} copy=x\n"
    c.post(f"/machines/{M1}/type", data={"boot_type": "normal", "csrf_token": tok})
    # removing a machine needs its ID typed as confirmation
    c.post("/machines", data={"id": "naa.5005076801000055", "name": "tmp", "csrf_token": tok})
    r = c.post("/machines/naa.5005076801000055/delete", data={"confirm": "yes", "csrf_token": tok})
    assert r.status_code == 303 and env["reg"].has_machine("naa.5005076801000055")
    assert "type the machine ID" in c.get("/machines/naa.5005076801000055").text
    r = c.post("/machines/naa.5005076801000055/delete", data={"confirm": "naa.5005076801000055", "csrf_token": tok})
    assert r.status_code == 303 and r.headers["location"] == "/"
    assert not env["reg"].has_machine("naa.5005076801000055")
    # lists page, admins page, audit page
    assert M1 in c.get("/").text
    assert "root" in c.get("/admins").text
    assert "machine.boot_type" in c.get("/audit").text
    assert get(env, f"/machines/naa.50050768ffffffff").status_code == 303    # not logged in
    r = c.get("/machines/naa.50050768ffffffff")
    assert r.status_code == 404 and "no machine" in r.text
    c.close()


def test_injection_strings_are_stored_and_shown_inert(env: dict, admin) -> None:
    c, tok = admin
    h = {"X-CSRF-Token": tok}
    reg: Registry = env["reg"]
    d = env["disks"]
    pc = page_login(env)
    ptok = _csrf(pc.get("/").text)
    made = []
    for i, s in enumerate(INJECTIONS):
        mid = f"naa.50050768inj{i:04d}"
        # free-text fields are stored verbatim: machine name (API and form), admin name and password
        assert c.post("/api/machines", json={"id": mid, "name": s}, headers=h).status_code == 201
        made.append(mid)
        assert c.patch(f"/api/machines/{mid}", json={"name": s + "!"}, headers=h).json()["name"] == s + "!"
        r = pc.post("/machines", data={"id": mid + "f", "name": s, "csrf_token": ptok})
        assert r.status_code == 303
        made.append(mid + "f")
        assert reg.machine(mid + "f").name == s.strip()
        r = c.post("/api/admins", json={"name": f"adm{i}{s.replace(' ', '')}", "password": s + "-pw-long"}, headers=h)
        assert r.status_code == 201, r.text
        # structured fields refuse them with a clear message, storing nothing
        for method, path, body, code in [
                ("POST", "/api/machines", {"id": s, "name": "x"}, 400),
                ("PATCH", f"/api/machines/{mid}", {"boot_type": s}, 400),
                ("PUT", f"/api/machines/{mid}/lists/rootvg", {"devices": [{"id": s}]}, 400),
                ("PUT", f"/api/machines/{mid}/lists/rootvg", {"devices": [{"id": d[0], "copy": s}]}, 400),
                ("PUT", f"/api/machines/{mid}/lists/rootvg", {"devices": [{"id": d[0], "attrs": {"pathid": s}}]}, 400),
                ("PUT", f"/api/machines/{mid}/lists/boot", {"mode": s, "devices": []}, 400)]:
            r = c.request(method, path, json=body, headers=h)
            assert r.status_code == code, (path, body, r.text)
            assert "Traceback" not in r.text
        r = c.get(f"/api/machines/{mid}/lists/{s}")
        assert r.status_code in (404, 400)
    # everything still there, nothing dropped or deleted
    assert reg.integrity_check() == []
    assert {M1, M2} <= {m.id for m in reg.list_machines()}
    assert "root" in [a.name for a in reg.list_admins()]
    # the firmware API returns names as JSON data
    assert get(env, f"/v1/machines/{made[0]}").json()["name"] == INJECTIONS[0] + "!"
    # pages escape them
    for path in ["/", "/admins", "/audit"] + [f"/machines/{m}" for m in made]:
        html = pc.get(path).text
        assert "<script>alert" not in html and "<img src=x" not in html, path
    home = pc.get("/").text
    assert "&lt;script&gt;alert(&#39;xss&#39;)&lt;/script&gt;" in home
    assert "&#34;&gt;&lt;img src=x onerror=alert(1)&gt;" in home
    assert "{{7*7}}" in home and ">49<" not in home
    # the passwords work as passwords (stored as hashes, not interpreted)
    login(env["url"], f"adm2{INJECTIONS[2].replace(' ', '')}", INJECTIONS[2] + "-pw-long")[0].close()
    # clean up the extra admins and machines so the other tests see the fixture's state
    for a in reg.list_admins():
        if a.name != "root":
            reg.remove_admin(a.name, actor="test")
    for m in made:
        reg.remove_machine(m, actor="test")
    pc.close()


def test_security_headers(env: dict) -> None:
    r = get(env, "/login")
    assert r.headers["x-frame-options"] == "DENY"
    assert "frame-ancestors 'none'" in r.headers["content-security-policy"]
    assert r.headers["x-content-type-options"] == "nosniff"


# ---------------------------------------------------------------------------
# rate limit (own server: the limit is per client address, and tests share 127.0.0.1)


def test_rate_limiter_counts_per_address_and_per_user(monkeypatch) -> None:
    from console.web import app as webapp
    now = [1000.0]
    monkeypatch.setattr(webapp.time, "monotonic", lambda: now[0])
    rl = webapp.RateLimiter(limit=5, window=60)
    for i in range(5):
        assert rl.retry_after([f"ip:10.0.0.{i}", "user:root"]) == 0
        rl.fail([f"ip:10.0.0.{i}", "user:root"])
    # five addresses, one user: the user is locked, wherever the next try comes from
    assert rl.retry_after(["ip:10.0.0.99", "user:root"]) == 61
    assert rl.retry_after(["ip:10.0.0.1", "user:op"]) == 0          # other users from those addresses are not
    now[0] += 30
    assert 0 < rl.retry_after(["ip:10.0.0.99", "user:root"]) <= 31
    now[0] += 31
    assert rl.retry_after(["ip:10.0.0.99", "user:root"]) == 0        # failures age out
    rl.fail(["ip:10.0.0.7", "user:a"])
    rl.reset(["ip:10.0.0.7", "user:a"])
    assert rl.retry_after(["ip:10.0.0.7", "user:a"]) == 0


def test_wrong_passwords_are_rate_limited(env: dict, tmp_path: Path) -> None:
    db = tmp_path / "rl.db"
    assert cli("admin", "add", "root", "--password-stdin", "--registry", str(db), input=PW + "\n").returncode == 0
    with Server(db) as srv:
        u = srv.url
        codes = [httpx.post(u + "/api/login", json={"name": "root", "password": f"guess{i}"}, timeout=30).status_code
                 for i in range(5)]
        assert codes == [401] * 5
        r = httpx.post(u + "/api/login", json={"name": "root", "password": "guess5"}, timeout=30)
        assert r.status_code == 429 and int(r.headers["retry-after"]) > 0
        assert "too many failed logins" in r.json()["error"]
        # even the right password is refused while the limit holds
        r = httpx.post(u + "/api/login", json={"name": "root", "password": PW}, timeout=30)
        assert r.status_code == 429
        # the form login is limited too, and says so
        c = httpx.Client(base_url=u, timeout=30)
        tok = _csrf(c.get("/login").text)
        r = c.post("/login", data={"name": "root", "password": PW, "csrf_token": tok})
        assert r.status_code == 429 and "Too many failed logins" in r.text
        c.close()
        # the limit is also per user name: another client address is not needed to see it,
        # but a different user from a fresh limiter window is refused only by the address limit
        r = httpx.post(u + "/api/login", json={"name": INJECTIONS[0], "password": "x"}, timeout=30)
        assert r.status_code == 429


def test_admin_pages(env: dict) -> None:
    c = page_login(env)
    tok = _csrf(c.get("/admins").text)
    assert c.post("/admins/add", data={"name": "pageop", "password": "pageop-pass", "csrf_token": tok}).status_code == 303
    html = c.get("/admins").text
    assert "administrator pageop added" in html and "pageop" in html
    c.post("/admins/add", data={"name": "x", "password": "short", "csrf_token": tok})
    assert "at least 8" in c.get("/admins").text
    op, _ = login(env["url"], "pageop", "pageop-pass")
    c.post("/admins/password", data={"name": "pageop", "password": "pageop-pass-2", "csrf_token": tok})
    assert op.get("/api/machines").status_code == 401            # its session ended
    op.close()
    login(env["url"], "pageop", "pageop-pass-2")[0].close()
    c.post("/admins/delete", data={"name": "pageop", "csrf_token": tok})
    assert [a.name for a in env["reg"].list_admins()] == ["root"]
    c.post("/admins/delete", data={"name": "root", "csrf_token": tok})
    assert "last administrator" in c.get("/admins").text
    # logging out ends the page session
    c.post("/logout", data={"csrf_token": tok})
    assert c.get("/").status_code == 303
    c.close()
