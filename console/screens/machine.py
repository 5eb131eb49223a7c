"""One machine of the SAN boot device registry: its boot type and every device list.

The boot type (normal / install / maintenance) picks which boot list the
firmware gets; the other lists (rootvg, primary, secondary, nonessential)
are plain ordered device lists.  Enter opens a list in the list editor
(reorder, add, remove); its S saves it to the registry at once.  Every
registry call runs in a thread worker; a failure becomes the error screen.
"""

from __future__ import annotations

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import Footer, OptionList, Static
from textual.widgets.option_list import Option
from textual.worker import Worker, WorkerState

from ..messages import MachineLoaded
from ..widgets.navlist import NavList
from ..widgets.plain import Plain

BOOT_TYPES = ("normal", "install", "maintenance")
PLAIN_LISTS = ("rootvg", "primary", "secondary", "nonessential")
ROWS = [("boot", t) for t in BOOT_TYPES] + [(name, None) for name in PLAIN_LISTS]

WHAT = {
    "boot": "boot list for boot type {mode}: the firmware's failover order when the machine boots {mode}",
    "rootvg": "the disks of the machine's root VG",
    "primary": "primary data disks",
    "secondary": "secondary data disks",
    "nonessential": "non-essential disks (attached last, may be missing)",
}


def row_id(lst: str, mode: str | None) -> str:
    return f"{lst}-{mode}" if mode else lst


def row_title(lst: str, mode: str | None) -> str:
    return f"boot ({mode})" if mode else lst


class ListsList(NavList):
    """The machine's lists; Enter opens the highlighted one in the list editor."""

    BINDINGS = [Binding("enter", "select", "Edit", id="machine.edit")]


class MachineScreen(Screen[None]):
    CSS_PATH = "machine.tcss"
    BINDING_GROUP_TITLE = "Machine"
    BINDINGS = [
        Binding("t", "boot_type", "Boot type", id="machine.boot-type"),
        Binding("f5", "reload", "Reload", show=False, id="machine.reload"),
        Binding("escape", "back", "Back", id="machine.back"),
    ]

    def __init__(self, registry, machine_id: str, disks: list) -> None:
        super().__init__()
        self.registry = registry
        self.machine_id = machine_id
        self.disks = disks
        self.machine = None

    def compose(self) -> ComposeResult:
        yield Plain(f"SANBOS  Machine {self.machine_id}", classes="banner", id="machine-banner")
        yield Plain("Reading the registry ...", classes="title", id="machine-type")
        yield ListsList(*[Option(Text(row_title(l, m)), id=row_id(l, m)) for l, m in ROWS], id="machine-lists")
        yield Plain("", id="machine-detail")
        yield Plain("Up/Down choose a list, Enter edits it, T changes the boot type, Esc goes back.",
                    classes="status", id="machine-status")
        yield Footer(show_command_palette=False, compact=True)

    def on_mount(self) -> None:
        ol = self.query_one(OptionList)
        ol.focus()
        ol.highlighted = 0
        self.load()

    # -- registry, in threads ---------------------------------------------------------
    @work(thread=True, exclusive=True, group="registry", exit_on_error=False, description="registry")
    def load(self, note: str = "") -> None:
        self.post_message(MachineLoaded(self.registry.machine(self.machine_id), note))

    @work(thread=True, exclusive=True, group="registry", exit_on_error=False, description="registry")
    def save_list(self, lst: str, mode: str | None, devices: list) -> None:
        saved = self.registry.set_list(self.machine_id, lst, devices, mode, actor="console")
        self.post_message(MachineLoaded(self.registry.machine(self.machine_id),
                                        f"Saved the {row_title(lst, mode)} list: {len(saved)} device(s)."))

    @work(thread=True, exclusive=True, group="registry", exit_on_error=False, description="registry")
    def save_boot_type(self, boot_type: str) -> None:
        m = self.registry.set_boot_type(self.machine_id, boot_type, actor="console")
        self.post_message(MachineLoaded(m, f"Boot type saved: {m.boot_type}."))

    def on_machine_loaded(self, message: MachineLoaded) -> None:
        m = self.machine = message.machine
        self.query_one("#machine-banner", Static).update(f"SANBOS  Machine {m.id}" + (f" ({m.name})" if m.name else ""))
        self.query_one("#machine-type", Static).update(
            f"Boot type: {m.boot_type}  (* = the boot list the firmware gets; T changes it)")
        ol = self.query_one(OptionList)
        for lst, mode in ROWS:
            devs = self._devices(lst, mode)
            mark = "*" if mode == m.boot_type else " "
            first = (devs[0].id + (f" +{len(devs) - 1}" if len(devs) > 1 else "")) if devs else "(empty)"
            label = f"{mark} {row_title(lst, mode):<19} {len(devs):>2} dev  {first}"
            ol.replace_option_prompt(row_id(lst, mode), Text(label))
        self._detail()
        if message.note:
            self._status(message.note)

    def _devices(self, lst: str, mode: str | None) -> list:
        if self.machine is None:
            return []
        return list(self.machine.lists["boot"][mode] if lst == "boot" else self.machine.lists[lst])

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        if event.state == WorkerState.ERROR and event.worker.group == "registry":
            self._status(f"Registry error: {event.worker.error}", warn=True)
            self.app.show_error(event.worker.error, title="The registry refused the change")

    # -- UI -------------------------------------------------------------------------
    def _status(self, text: str, warn: bool = False) -> None:
        st = self.query_one("#machine-status", Static)
        st.update(text)
        st.set_class(warn, "-warn")

    @property
    def current_row(self) -> tuple[str, str | None] | None:
        h = self.query_one(OptionList).highlighted
        return ROWS[h] if h is not None else None

    def _detail(self) -> None:
        row = self.current_row
        if row is None:
            return
        lst, mode = row
        devs = self._devices(lst, mode)
        text = WHAT[lst].format(mode=mode) + ":\n" + ("\n".join(
            f"  {i}. {d.line()}" for i, d in enumerate(devs[:3], 1)) or "  (empty)")
        if len(devs) > 3:
            text += f"\n  ... {len(devs) - 3} more"
        self.query_one("#machine-detail", Static).update(text)

    def on_option_list_option_highlighted(self, event: OptionList.OptionHighlighted) -> None:
        self._detail()

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        self.action_edit()

    def action_edit(self) -> None:
        row = self.current_row
        if row is None or self.machine is None:
            return
        lst, mode = row
        from .bootlist import BootListScreen

        def done(devices: list | None) -> None:
            if devices is not None:
                self._status(f"Saving the {row_title(lst, mode)} list ...")
                self.save_list(lst, mode, devices)

        self.app.push_screen(BootListScreen(self.machine.id, mode, self._devices(lst, mode), self.disks,
                                            list_name=lst), done)

    def action_boot_type(self) -> None:
        if self.machine is None:
            return
        from .choice import ChoiceScreen, Item
        items = [Item(t, t + ("  (current)" if t == self.machine.boot_type else ""),
                      f"The firmware boots from the boot ({t}) list.") for t in BOOT_TYPES]

        def done(pick: list | None) -> None:
            if pick and pick[0] != self.machine.boot_type:
                self._status(f"Saving boot type {pick[0]} ...")
                self.save_boot_type(pick[0])

        self.app.push_screen(ChoiceScreen(f"Boot type of {self.machine.id}", "How does the machine boot next?",
                                          items, start=BOOT_TYPES.index(self.machine.boot_type)), done)

    def action_reload(self) -> None:
        self.load("Reloaded from the registry.")

    def action_back(self) -> None:
        self.dismiss(None)
