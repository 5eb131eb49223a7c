"""The boot menu ("Select Install/Boot Device") against a real fabric of disk images."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest

from core import fabric as fab
from core.errors import FabricError
from core.inventory import list_disks

from console.app import SanbosApp
from console.screens.boot_menu import BootMenuScreen
from console.screens.error import ErrorScreen
from console.screens.help import HelpScreen
from console.screens.quit import QuitScreen

ROOT = Path(__file__).resolve().parent.parent
SHOTS = ROOT / "screenshots"
MiB = 1024 * 1024


def shot(app: SanbosApp, name: str) -> None:
    SHOTS.mkdir(exist_ok=True)
    app.save_screenshot(f"{name}.svg", path=str(SHOTS))


@pytest.fixture
def fixed_ids(monkeypatch):
    """Deterministic WWNs (so screenshots do not change from run to run)."""
    counter = itertools.count(0xB0)

    def token_hex(n: int = 16) -> str:
        return f"{next(counter):0{2 * n}x}"[-2 * n:]

    monkeypatch.setattr(fab.secrets, "token_hex", token_hex)


def mark_install_vg(disks, n: int = 4, bad: int | None = 2):
    """Give the first ``n`` disks install-VG membership and a boot copy.

    Stands in for the engine's enriched listing where the engine is not
    yet in this build; the disks themselves are real fabric images.
    """
    for i, d in enumerate(disks[:n]):
        d.vg_name, d.membership, d.boot_copy = "instvg", "pv:instvg", "ok"
        d.pv_uuid = f"aBcDeF-0000-1111-2222-3333-4444-55555{i}"
    if bad is not None and bad < n:
        disks[bad].boot_copy = "bad"
    return disks


@pytest.fixture
def disks(make_fabric, fixed_ids):
    f = make_fabric(disks=6, size=64 * MiB)
    return mark_install_vg(list_disks(f.root))


async def loaded(app, pilot):
    """Wait for the app's workers; a failed worker is the app's business (error screen)."""
    from textual.worker import WorkerFailed

    try:
        await app.workers.wait_for_complete()
    except WorkerFailed:
        pass
    await pilot.pause()


async def until(pilot, cond, timeout: float = 10.0) -> None:
    """Poll (the machine is shared: one pause is not always enough)."""
    import asyncio
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while not cond():
        assert loop.time() < end, "condition not met in time"
        await pilot.pause(0.05)


async def test_boot_menu_lists_install_vg_disks(disks):
    app = SanbosApp(disks=disks)
    async with app.run_test(size=(80, 24)) as pilot:
        await loaded(app, pilot)
        assert isinstance(app.screen, BootMenuScreen)
        text = app.screen_text()
        assert "Select Install/Boot Device" in text
        assert "SANBOS" in text
        for d in disks[:4]:
            assert d.id in text
        assert disks[4].id not in text          # not an install-VG member: second view
        assert "BAD" in text                    # boot-copy health of disk 2
        assert "instvg" in text
        shot(app, "boot_menu")


async def test_real_fabric_listing_in_worker(make_fabric, fixed_ids):
    """Without injection the listing runs core.inventory in a thread worker."""
    f = make_fabric(disks=3, size=64 * MiB)
    app = SanbosApp(f.root)
    async with app.run_test(size=(80, 24)) as pilot:
        await loaded(app, pilot)
        assert [d.id for d in app.all_disks] == [l.wwn for l in f.luns]
        # a blank fabric has no install VG yet: the menu says so and the other view lists them
        assert "No install-VG disks" in app.screen_text()
        await pilot.press("tab")
        await pilot.pause()
        assert all(l.wwn in app.screen_text() for l in f.luns)


async def test_select_by_typing_part_of_id(disks):
    app = SanbosApp(disks=disks)
    async with app.run_test(size=(80, 24)) as pilot:
        await loaded(app, pilot)
        menu = app.screen
        want = disks[3]
        await pilot.press(*want.id[-6:])       # the unique tail of the WWN
        await pilot.pause()
        assert menu.disk_list.disks == [want]
        assert menu.disk_list.highlighted is want
        assert f"1 of 4" in app.screen_text()
        shot(app, "boot_menu_filtered")


async def test_filter_by_address_and_serial_and_pv(disks):
    app = SanbosApp(disks=disks)
    async with app.run_test(size=(80, 24)) as pilot:
        await loaded(app, pilot)
        dl = app.screen.disk_list
        dl.filter_text = disks[1].address[-6:]
        await pilot.pause()
        assert dl.disks == [disks[1]]
        dl.filter_text = disks[2].serial
        await pilot.pause()
        assert dl.disks == [disks[2]]
        dl.filter_text = disks[0].pv_uuid.replace("-", "").upper()   # PV UUID without dashes
        await pilot.pause()
        assert dl.disks == [disks[0]]


async def test_no_match_message_and_backspace(disks):
    app = SanbosApp(disks=disks)
    async with app.run_test(size=(80, 24)) as pilot:
        await loaded(app, pilot)
        await pilot.press("z", "z", "z")
        await pilot.pause()
        text = app.screen_text()
        assert "No disk matches 'zzz'" in text
        assert app.screen.query_one("#status").has_class("-warn")
        shot(app, "boot_menu_no_match")
        await pilot.press("backspace", "backspace", "backspace")
        await pilot.pause()
        assert len(app.screen.disk_list.disks) == 4
        await pilot.press("x", "escape")           # Esc clears the filter
        await pilot.pause()
        assert app.screen.disk_list.filter_text == ""


async def test_cursor_keys(disks):
    app = SanbosApp(disks=disks)
    async with app.run_test(size=(80, 24)) as pilot:
        await loaded(app, pilot)
        dl = app.screen.disk_list
        assert dl.highlighted is disks[0]
        await pilot.press("down", "down")
        assert dl.highlighted is disks[2]
        await pilot.press("end")
        assert dl.highlighted is disks[3]
        await pilot.press("pageup")
        assert dl.highlighted is disks[0]
        await pilot.press("pagedown")
        assert dl.highlighted is disks[3]
        await pilot.press("home", "up")
        assert dl.highlighted is disks[0]


async def test_second_view_lists_other_disks(disks):
    app = SanbosApp(disks=disks)
    async with app.run_test(size=(80, 24)) as pilot:
        await loaded(app, pilot)
        await pilot.press("tab")
        await pilot.pause()
        menu = app.screen
        assert menu.view == "other"
        assert menu.disk_list.disks == disks[4:]
        text = app.screen_text()
        assert "other disks (2)" in text
        shot(app, "boot_menu_other_disks")
        await pilot.press("enter")                 # not a boot device: explained, nothing opened
        await pilot.pause()
        assert app.screen is menu
        assert "not an install-VG disk" in app.screen_text()
        await pilot.press("f2")
        await pilot.pause()
        assert menu.view == "boot"


async def test_help_screen_lists_keys(disks):
    app = SanbosApp(disks=disks)
    async with app.run_test(size=(80, 24)) as pilot:
        await loaded(app, pilot)
        await pilot.press("f1")
        await until(pilot, lambda: isinstance(app.screen, HelpScreen))
        text = app.screen.keys_text
        for key in ("Enter", "Tab", "F5", "F4", "F10", "boot-menu.view", "disk-list.select", "app.quit"):
            assert key in text
        assert "Help: Boot menu" in app.screen_text()
        shot(app, "help")
        await pilot.press("pagedown")
        await pilot.pause()
        assert "How to work" in app.screen_text()
        await pilot.press("escape")
        await pilot.pause()
        assert isinstance(app.screen, BootMenuScreen)
        await pilot.press("question_mark")
        await pilot.pause()
        assert isinstance(app.screen, HelpScreen)


async def test_footer_shows_keys_at_80x24(disks):
    app = SanbosApp(disks=disks)
    async with app.run_test(size=(80, 24)) as pilot:
        await loaded(app, pilot)
        footer = app.screen_text().splitlines()[-1]
        for key in ("Up/Dn/PgUp/Dn", "Enter", "Tab", "F5", "Esc", "F1/?", "F10"):
            assert key in footer            # F4 (theme) has no room at 80 columns: the help lists it


async def test_theme_toggle(disks):
    app = SanbosApp(disks=disks)
    async with app.run_test(size=(80, 24)) as pilot:
        await loaded(app, pilot)
        assert app.theme == "textual-dark"
        await pilot.press("f4")
        assert app.theme == "textual-light"
        shot(app, "boot_menu_light")
        await pilot.press("f4")
        assert app.theme == "textual-dark"
    vt = SanbosApp(disks=disks, vt=True)
    async with vt.run_test(size=(80, 24)) as pilot:
        await loaded(vt, pilot)
        assert vt.theme == "ansi-dark"
        shot(vt, "boot_menu_vt")                 # the Linux-console theme (SVG colours approximate the VT's)
        await pilot.press("f4")
        assert vt.theme == "ansi-light"


async def test_keys_can_be_remapped_by_id(disks):
    app = SanbosApp(disks=disks, keymap={"app.help": "f3", "boot-menu.rescan": "f6"})
    async with app.run_test(size=(80, 24)) as pilot:
        await loaded(app, pilot)
        await until(pilot, lambda: "F3 Help" in app.screen_text())
        await pilot.press("f3")
        await until(pilot, lambda: isinstance(app.screen, HelpScreen))


async def test_failing_listing_worker_becomes_error_screen(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    app = SanbosApp("no-such-fabric")
    async with app.run_test(size=(80, 24)) as pilot:
        await loaded(app, pilot)
        assert app.is_running                      # the worker failed, the app did not exit
        assert isinstance(app.screen, ErrorScreen)
        assert isinstance(app.screen.error, FabricError)
        text = app.screen_text()
        assert "no-such-fabric" in text and "not a fabric directory" in text
        assert "What to do" in text
        assert "Traceback" not in text
        shot(app, "error")
        await pilot.press("enter")
        await pilot.pause()
        assert isinstance(app.screen, BootMenuScreen)
        assert "could not be read" in app.screen_text()


async def test_unexpected_exception_is_an_error_screen_not_a_traceback(disks, monkeypatch):
    import core.inventory

    def boom(fabric=None):
        raise RuntimeError("simulated bug")

    monkeypatch.setattr(core.inventory, "list_disks", boom)
    app = SanbosApp("/nonexistent")
    async with app.run_test(size=(80, 24)) as pilot:
        await loaded(app, pilot)
        assert isinstance(app.screen, ErrorScreen)
        text = app.screen_text()
        assert "Internal error" in text and "simulated bug" in text
        assert "Traceback" not in text


async def test_quit_asks_first(disks):
    app = SanbosApp(disks=disks)
    async with app.run_test(size=(80, 24)) as pilot:
        await loaded(app, pilot)
        await pilot.press("f10")
        await pilot.pause()
        assert isinstance(app.screen, QuitScreen)
        shot(app, "quit")
        await pilot.press("n")
        await pilot.pause()
        assert isinstance(app.screen, BootMenuScreen)
        await pilot.press("ctrl+q")
        await pilot.pause()
        await pilot.press("y")
        await pilot.pause()
    assert app.return_code == 0


async def test_ten_thousand_disks_filter_fast(disks):
    import time

    from core.inventory import DiskInfo

    many = [DiskInfo(id=f"naa.600a0b80{i:024x}", path=Path(f"/dev/x{i}"), size=(i + 1) * MiB,
                     wwn=f"naa.600a0b80{i:024x}", serial=f"SER{i:07d}", addresses=[f"fc-0x5000-lun-{i}"],
                     vg_name="instvg", boot_copy="ok") for i in range(10_000)]
    app = SanbosApp(disks=many)
    async with app.run_test(size=(80, 24)) as pilot:
        await loaded(app, pilot)
        dl = app.screen.disk_list
        assert dl.total == 10_000
        t = time.perf_counter()
        dl.filter_text = "ser0001234"
        elapsed = time.perf_counter() - t
        await pilot.pause()
        assert [d.serial for d in dl.disks] == ["SER0001234"]
        print(f"filter over 10,000 disks: {elapsed * 1000:.1f} ms (bench/console.py measures this)")
        await pilot.press("escape", "end")
        assert dl.highlighted is many[-1]


def test_cli_has_console_command():
    from console.cli import build_parser

    args = build_parser().parse_args(["console", "--fabric", "/x", "--key", "app.help=f3", "--no-vt",
                                      "--registry", "/r.db"])
    assert args.fabric == "/x" and args.vt is False and args.registry == "/r.db"
    from console.commands.console import parse_keymap

    assert parse_keymap(args.key) == {"app.help": "f3"}


async def test_wwn_shown_when_the_id_is_not_the_wwn(disks):
    from core.inventory import DiskInfo
    odd = DiskInfo(id="serial:XYZ123", path=Path("/dev/sdz"), size=64 * MiB, wwn="naa.5000c500deadbeef",
                   serial="XYZ123", addresses=["pci-0000:00:1f.2-ata-1"], vg_name="instvg", boot_copy="ok")
    app = SanbosApp(disks=[odd] + disks)
    async with app.run_test(size=(80, 24)) as pilot:
        await loaded(app, pilot)
        text = app.screen_text()
        assert "serial:XYZ123" in text and "WWN naa.5000c500deadbeef" in text
        await pilot.press(*"deadbeef")              # the WWN filters too
        await pilot.pause()
        assert app.screen.disk_list.disks == [odd]


async def test_a_bug_in_a_handler_ends_with_one_line_not_a_traceback(disks, monkeypatch, capsys):
    app = SanbosApp(disks=disks)

    def broken(self):
        raise RuntimeError("simulated handler bug")

    monkeypatch.setattr(BootMenuScreen, "action_rescan", broken)
    with pytest.raises(RuntimeError):
        async with app.run_test(size=(80, 24)) as pilot:
            await loaded(app, pilot)
            await pilot.press("f5")
            await pilot.pause()
    app._print_error_renderables()      # what App.run() does at exit
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "internal error (RuntimeError: simulated handler bug)" in err
    assert "Traceback" not in err
    log = Path(err.split("details are in ")[1].strip())
    assert "simulated handler bug" in log.read_text()
    log.unlink()
