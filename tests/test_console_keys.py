"""Every screen's keys at 80x24: the footer shows what the screen needs (movement keys where
there is a list or text to move through, Enter/Esc/Space/letters where they do something,
F1/? for help), nothing is cut off at 80 columns, and the help screen lists every binding."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from core.inventory import DiskInfo

from console.app import SanbosApp

MiB = 1024 * 1024
HELP = "F1/? Help"
GLOBAL = [HELP, "F10 Quit"]


def fixed_disks() -> list[DiskInfo]:
    disks = []
    for i in range(6):
        wwn = f"naa.600a0b8000c0ffee{i:016x}"
        d = DiskInfo(id=wwn, path=Path(f"/srv/fabric/lun{i:02d}.img"), size=256 * MiB, wwn=wwn,
                     serial=f"SBC0FFEE{i:06d}", addresses=[f"fc-0x500a0b8000{i % 4:06x}-lun-{i}"])
        if i < 4:
            d.vg_name, d.membership, d.boot_copy = "instvg", "pv:instvg", "ok"
        disks.append(d)
    return disks


def screens(disks, tmp_path):
    """(name, factory, keys the footer must show) for every screen of the console."""
    from core.registry import Device, Registry

    from console.screens import flows
    from console.screens.ask import AskScreen
    from console.screens.ask_text import AskTextScreen
    from console.screens.bootlist import BootListScreen
    from console.screens.choice import ChoiceScreen, Item
    from console.screens.confirm import ConfirmScreen
    from console.screens.error import ErrorScreen
    from console.screens.help import HelpScreen
    from console.screens.machine import MachineScreen
    from console.screens.maintenance import MaintenanceScreen
    from console.screens.plan import PlanScreen
    from console.screens.progress import ProgressScreen
    from console.screens.quit import QuitScreen
    from console.screens.result import ResultScreen
    from console.screens.target import TargetScreen

    items = [Item(f"i{n}", f"item {n}", "what it is") for n in range(3)]
    gate = threading.Event()

    def job(rep):
        rep.progress("working", 0.5)
        gate.wait(10)
        return ["done"]

    reg = Registry(tmp_path / "registry.db", inventory=[d.id for d in disks])
    reg.add_machine("machine-01", "web1", actor="test")
    move = "Up/Dn/PgUp/Dn Move"
    page = "Up/Dn/PgUp/Dn"
    scroll = "Up/Dn/PgUp/Dn Scroll"
    return [
        ("maintenance", lambda app: MaintenanceScreen(disks[0], disks), [move, "Esc Boot menu"]),
        ("choice", lambda app: ChoiceScreen("t", "p", items), [move, page, "Enter Select", "Esc Back"]),
        ("choice-multi", lambda app: ChoiceScreen("t", "p", items, multi=True),
         [move, "Space Mark", "F9 Done", "Esc Back"]),
        ("target", lambda app: TargetScreen("t", disks[4:], safety=False, multi=True),
         [move, page, "Enter Select", "Space Mark", "Esc Back"]),
        ("plan", lambda app: PlanScreen("t", ["step"] * 40), [scroll, page, "Enter Continue", "Esc Back"]),
        ("result", lambda app: ResultScreen("t", ["line"] * 40), [scroll, page, "Enter Back to menu"]),
        ("confirm", lambda app: ConfirmScreen(disks[0].id, "Do it."), ["Enter OK", "Esc Cancel"]),
        ("ask-text", lambda app: AskTextScreen("t", "p"), ["Enter OK", "Esc Cancel"]),
        ("ask", lambda app: AskScreen("t", "q"), ["y Yes", "n No"]),
        ("quit", lambda app: QuitScreen(), ["y Yes, quit", "n No"]),
        ("error", lambda app: ErrorScreen("bad"), ["Enter OK"]),       # Esc too: same action
        ("progress", lambda app: ProgressScreen("t", job), ["Esc Cancel"]),
        ("help", lambda app: HelpScreen(app.screen), [scroll, page, "Esc Close"]),
        ("bootlist", lambda app: BootListScreen("m", "normal", [Device(d.id) for d in disks[:3]], disks),
         [move, "u/d Order", "a Add", "x Remove", "s Save", "Esc Back"]),
        ("machine", lambda app: MachineScreen(reg, "machine-01", disks),
         [move, "t Boot type", "Enter Edit", "Esc Back"]),
    ], gate, reg


def footer(app) -> str:
    return app.screen_text().splitlines()[-1]


async def test_boot_menu_footer_at_80_columns():
    app = SanbosApp(disks=fixed_disks())
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        line = footer(app)
        for key in ["Up/Dn/PgUp/Dn Move", "Enter Select", "Tab View", "F5 Rescan", "Esc Clear", *GLOBAL]:
            assert key in line, line


async def test_every_screen_shows_its_keys_at_80_columns(tmp_path, monkeypatch):
    from console.screens import flows
    monkeypatch.setattr(flows, "import_install_vg", lambda ctx: (["VG instvg (test)"], ctx.members))
    disks = fixed_disks()
    table, gate, reg = screens(disks, tmp_path)
    app = SanbosApp(disks=disks)
    try:
        async with app.run_test(size=(80, 24)) as pilot:
            await pilot.pause()
            for name, factory, keys in table:
                await app.push_screen(factory(app))
                await pilot.pause()
                await pilot.pause()
                line = footer(app)
                missing = [k for k in keys + {"quit": [HELP], "help": ["F10 Quit"]}.get(name, GLOBAL) if k not in line]
                assert not missing, f"{name}: footer lacks {missing}:\n{line!r}"
                assert len(line.rstrip()) < 80, f"{name}: footer fills the line, may be cut:\n{line!r}"
                if name == "progress":
                    gate.set()
                    await app.workers.wait_for_complete()
                    await pilot.pause()
                else:
                    app.pop_screen()
                await pilot.pause()
    finally:
        gate.set()
        reg.close()


async def test_help_lists_every_key_of_the_screen(tmp_path):
    """The help screen lists every binding active on the screen under it, with its id, movement
    keys included (the footer shows only one entry for Up/Down)."""
    from console.screens.help import HelpScreen
    app = SanbosApp(disks=fixed_disks())
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        under = app.screen
        await pilot.press("question_mark")
        await pilot.pause()
        assert isinstance(app.screen, HelpScreen)
        keys = app.screen.keys_text
        for key, ident in [("Up", "disk-list.up"), ("Down", "disk-list.down"), ("PgUp", "disk-list.page-up"),
                           ("PgDn", "disk-list.page-down"), ("Home", "disk-list.first"), ("End", "disk-list.last"),
                           ("Tab", "boot-menu.view"), ("F5", "boot-menu.rescan"), ("F1", "app.help"),
                           ("?", "app.help-alt"), ("F10", "app.quit"), ("^Q", "app.quit-alt")]:
            assert any(line.split()[0] == key and line.rstrip().endswith(ident) for line in keys.splitlines()), \
                (key, ident, keys)
        for active in under.active_bindings.values():
            if active.binding.show:
                assert active.binding.id, f"a footer key without an id: {active.binding}"
        assert "F4       Theme" in keys                     # not in the footer (no room), listed here
