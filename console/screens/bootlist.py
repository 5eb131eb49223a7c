"""One device list of a machine (a boot list for one mode, or rootvg/primary/...): view,
reorder, add, remove; S hands the new order back (the caller saves it to the registry)."""

from __future__ import annotations

from textual import work
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import Footer, OptionList, Static
from textual.widgets.option_list import Option

from ..widgets.disk_list import health_text
from ..widgets.navlist import QuietNavList
from ..widgets.plain import Plain


class BootListScreen(Screen[list | None]):
    CSS_PATH = "bootlist.tcss"
    BINDING_GROUP_TITLE = "Boot list"
    BINDINGS = [
        Binding("u,shift+up", "move(-1)", "Order", key_display="u/d", id="bootlist.up",
                tooltip="Move the highlighted device up (u) or down (d)"),
        Binding("d,shift+down", "move(1)", "Move down", show=False, id="bootlist.down"),
        Binding("a", "add", "Add", id="bootlist.add"),
        Binding("x,delete", "remove", "Remove", id="bootlist.remove"),
        Binding("s,f9", "save", "Save", id="bootlist.save"),
        Binding("escape", "back", "Back", id="bootlist.back"),
    ]

    def __init__(self, machine: str, mode: str | None, devices: list, disks: list, *,
                 list_name: str = "boot") -> None:
        super().__init__()
        self.list_name = list_name
        self.machine = machine
        self.mode = mode
        self.devices = list(devices)
        self.original = [d.line() for d in devices]
        self.disks = {d.id: d for d in disks}
        self.all_disks = disks

    def compose(self) -> ComposeResult:
        if self.list_name == "boot":
            yield Plain(f"SANBOS  Boot list of {self.machine}, mode {self.mode}", classes="banner")
            yield Plain("Order = firmware failover order (first boots first)", classes="title")
        else:
            yield Plain(f"SANBOS  {self.list_name} list of {self.machine}", classes="banner")
            yield Plain(f"Order = the order of the machine's {self.list_name} disks", classes="title")
        yield QuietNavList(id="bootlist")
        yield Plain("", classes="status", id="bootlist-status")
        yield Footer(show_command_palette=False, compact=True)

    def on_mount(self) -> None:
        self._fill(0)
        self.query_one(OptionList).focus()

    def _label(self, i: int, dev) -> str:
        d = self.disks.get(dev.id)
        where = f"{d.address or '-':<28} boot copy {health_text(d.boot_copy)}" if d else "(disk not seen on this fabric)"
        copy = f" copy={dev.copy}" if dev.copy else ""
        return f"{i}. {dev.id}{copy}\n   {where}"

    def _fill(self, highlight: int | None) -> None:
        ol = self.query_one(OptionList)
        ol.clear_options()
        ol.add_options([Option(Text(self._label(i, d)), id=str(i)) for i, d in enumerate(self.devices, 1)])
        if not self.devices:
            ol.add_option(Option(Text("(empty: press A to add a disk)"), id="empty", disabled=True))
        elif highlight is not None:
            ol.highlighted = max(0, min(highlight, len(self.devices) - 1))
        changed = [d.line() for d in self.devices] != self.original
        self._status(f"{len(self.devices)} device(s)" + ("  -- modified, S saves" if changed else "")
                     + ".  U/D move, A adds, X removes, S saves, Esc leaves.")

    def _status(self, text: str, warn: bool = False) -> None:
        st = self.query_one("#bootlist-status", Static)
        st.update(text)
        st.set_class(warn, "-warn")

    @property
    def index(self) -> int | None:
        h = self.query_one(OptionList).highlighted
        return h if h is not None and h < len(self.devices) else None

    def action_move(self, step: int) -> None:
        i = self.index
        if i is None:
            return
        j = max(0, min(len(self.devices) - 1, i + step))
        self.devices.insert(j, self.devices.pop(i))
        self._fill(j)

    def action_remove(self) -> None:
        i = self.index
        if i is None:
            return
        del self.devices[i]
        self._fill(i)

    @work(exclusive=True, group="bootlist-add", exit_on_error=False)
    async def action_add(self) -> None:
        from core.registry import Device

        from .target import TargetScreen
        present = {d.id for d in self.devices}
        candidates = [d for d in self.all_disks if d.id not in present]
        chosen = await self.app.push_screen_wait(TargetScreen(
            f"Add to the {self.mode + ' boot' if self.list_name == 'boot' else self.list_name} list of "
            f"{self.machine}", candidates, multi=True,
            purpose="disks to add", safety=False))
        if chosen:
            self.devices += [Device(d.id) for d in chosen]
            self._fill(len(self.devices) - 1)

    def action_save(self) -> None:
        self.dismiss(list(self.devices))

    def action_back(self) -> None:
        self.dismiss(None)
