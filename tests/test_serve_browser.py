"""A real browser (Debian chromium via Playwright) configures a machine on the SAN boot device pages.

Logs in, sets a machine to maintenance, reorders its maintenance boot list
with the up/down buttons (plain HTML forms, no JavaScript needed), and checks
that the firmware query API returns the new order.  Screenshots go to
``screenshots/web-machine.png`` (and ``web-login.png``, ``web-machines.png``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import httpx
import pytest

from core import fabric as fab
from core.registry import Registry
from serve_support import Server, cli

ROOT = Path(__file__).resolve().parent.parent
SHOTS = ROOT / "screenshots"
CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run"]
M = "naa.5005076801000abc"
PW = "browser-test-password"


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    if not Path(CHROMIUM).exists():
        pytest.skip(f"{CHROMIUM} is not installed (Debian package chromium; scripts/setup.sh installs it)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError as e:
        pytest.skip(f"the Python playwright package does not import: {e}")
    pw = sync_playwright().start()
    try:
        b = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
    except Exception as e:  # noqa: BLE001 - say exactly why the browser is missing
        pw.stop()
        pytest.skip(f"playwright could not launch {CHROMIUM}: {str(e).splitlines()[0]}")
    yield b
    b.close()
    pw.stop()


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[Server, list[str]]]:
    f = fab.create(tmp_path / "fabric", 4, 8 * 1024 * 1024)
    disks = [l.wwn for l in f.luns]
    db = tmp_path / "registry.db"
    assert cli("admin", "add", "operator", "--password-stdin", "--registry", str(db),
               input=PW + "\n").returncode == 0
    r = Registry(db, inventory=disks)
    r.add_machine(M, "payroll-lpar", actor="test")
    r.add_machine("naa.5005076801000def", "batch-lpar", "install", actor="test")
    r.set_list(M, "boot", disks[:2], mode="normal", actor="test")
    r.set_list(M, "boot", [{"id": disks[0], "copy": "bootlv_rimage_0"}, {"id": disks[1], "copy": "bootlv_rimage_1"},
                           {"id": disks[2], "copy": "bootlv_rimage_2"}], mode="maintenance", actor="test")
    r.set_list(M, "rootvg", [disks[3]], actor="test")
    r.set_list(M, "primary", [disks[3], disks[2]], actor="test")
    r.close()
    with Server(db, f.root, log=tmp_path / "serve.log") as srv:
        yield srv, disks


def test_browser_sets_maintenance_and_reorders_the_boot_list(browser, server) -> None:
    srv, d = server
    SHOTS.mkdir(exist_ok=True)
    ctx = browser.new_context(viewport={"width": 1200, "height": 1400}, java_script_enabled=False)
    page = ctx.new_page()
    try:
        page.goto(srv.url + "/")
        assert "/login" in page.url
        page.fill("#name", "operator")
        page.fill("#password", "wrong password")
        page.click("#login")
        assert "Wrong administrator name or password" in page.inner_text("#login-error")
        page.fill("#password", PW)
        page.screenshot(path=str(SHOTS / "web-login.png"))
        page.click("#login")
        assert page.url.rstrip("/") == srv.url
        assert "payroll-lpar" in page.inner_text("#machines")
        page.screenshot(path=str(SHOTS / "web-machines.png"))

        page.click(f"text={M}")
        assert page.inner_text("#machine-id") == M
        assert page.inner_text("#current-type") == "normal"

        # set the boot type to maintenance
        page.select_option("#boot-type", "maintenance")
        page.click("#set-boot-type")
        assert page.inner_text("#current-type") == "maintenance"
        assert httpx.get(f"{srv.url}/v1/machines/{M}/boot", timeout=30).json()["boot_type"] == "maintenance"

        # reorder the maintenance boot list: third disk up twice -> first; then first disk down once
        section = "#list-boot-maintenance"
        rows = lambda: page.locator(f"{section} tr.dev code.devid").all_inner_texts()  # noqa: E731
        assert rows() == d[:3]
        page.locator(f"{section} tr.dev").nth(2).locator("button.up").click()
        assert rows() == [d[0], d[2], d[1]]
        page.locator(f"{section} tr.dev").nth(1).locator("button.up").click()
        assert rows() == [d[2], d[0], d[1]]
        page.locator(f"{section} tr.dev").nth(1).locator("button.down").click()
        assert rows() == [d[2], d[1], d[0]]
        assert page.locator(f"{section} tr.dev").nth(0).locator("button.up").is_disabled()

        # add the fourth disk through the form, then remove it again
        page.locator(f"{section} form.add input[name=device]").fill(d[3])
        page.locator(f"{section} form.add input[name=copy]").fill("bootlv_rimage_3")
        page.locator(f"{section} form.add button").click()
        assert rows() == [d[2], d[1], d[0], d[3]]
        page.locator(f"{section} tr.dev").nth(3).locator("button.remove").click()
        assert rows() == [d[2], d[1], d[0]]

        # the firmware query answers with the new order, for the machine's current type
        j = httpx.get(f"{srv.url}/v1/machines/{M}/boot", timeout=30).json()
        assert j["boot_type"] == "maintenance"
        assert [(x["id"], x["copy"]) for x in j["devices"]] == [
            (d[2], "bootlv_rimage_2"), (d[1], "bootlv_rimage_1"), (d[0], "bootlv_rimage_0")]
        script = httpx.get(f"{srv.url}/v1/machines/{M}/boot.ipxe", timeout=30).text
        assert script.index(d[2]) < script.index(d[1]) < script.index(d[0])
        # the normal list is untouched
        assert [x["id"] for x in httpx.get(f"{srv.url}/v1/machines/{M}/boot?type=normal",
                                           timeout=30).json()["devices"]] == d[:2]

        page.locator("#list-boot-maintenance").scroll_into_view_if_needed()
        page.screenshot(path=str(SHOTS / "web-machine.png"), full_page=True)
        assert (SHOTS / "web-machine.png").stat().st_size > 10000
        assert (SHOTS / "web-machine.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

        # the audit page shows who did it
        page.goto(srv.url + "/audit")
        audit = page.inner_text("#audit")
        assert "operator" in audit and "machine.boot_type" in audit and "list.move" in audit
    finally:
        ctx.close()
