"""The maintenance-mode boot menu: "Select Install/Boot Device".

Two views of the disk listing: the boot devices (members of an install VG,
i.e. a VG whose disks carry boot copies) and every other disk.  Typing
filters on every shown field; Enter on a boot device opens the maintenance
menu for it.
"""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.reactive import reactive
from textual.screen import Screen
from textual.widgets import Footer, Static

from core.units import human

from ..widgets.disk_list import DiskHeader, DiskList, health_text
from ..widgets.plain import Plain

BANNER = "SANBOS  Maintenance Mode  --  SAN install volume group boot"

VIEW_LABEL = {"boot": "Boot devices (install-VG disks)", "other": "Other disks (not install-VG members)"}


def disks_word(n: int) -> str:
    return f"{n} disk" + ("" if n == 1 else "s")


def split_views(disks: list) -> tuple[list, list]:
    """(boot devices, other disks).

    Boot devices are the install-VG disks that carry a boot copy (any
    health).  Until boot-copy health is known (it is read in a worker after
    the listing), every PV of a VG is offered, so selection never waits.
    """
    if any(d.boot_copy is not None for d in disks):
        boot = [d for d in disks if d.boot_copy not in (None, "none")]
    else:
        boot = [d for d in disks if d.vg_name]
    ids = {id(d) for d in boot}
    return boot, [d for d in disks if id(d) not in ids]


class BootMenuScreen(Screen):
    CSS_PATH = "boot_menu.tcss"
    BINDING_GROUP_TITLE = "Boot menu"

    BINDINGS = [
        Binding("tab", "toggle_view", "View", id="boot-menu.view", tooltip="Boot devices / other disks"),
        Binding("f2", "toggle_view", "Other view", show=False, id="boot-menu.view-alt"),
        Binding("f5", "rescan", "Rescan", id="boot-menu.rescan"),
        Binding("escape", "clear_filter", "Clear", id="boot-menu.clear"),
    ]

    view: reactive[str] = reactive("boot", init=False)

    def __init__(self) -> None:
        super().__init__()
        self._boot: list = []
        self._other: list = []
        self.loaded = False
        self.message_text = ""

    def compose(self) -> ComposeResult:
        self.disk_list = DiskList(id="disks", empty_text="Scanning disks ...")
        yield Plain(BANNER, classes="banner", id="banner")
        yield Plain("Select Install/Boot Device", classes="title", id="title")
        yield DiskHeader(self.disk_list, id="disk-header")
        yield self.disk_list
        yield Plain("", id="detail")
        yield Plain("Scanning disks ...", classes="status", id="status")
        yield Footer(show_command_palette=False, compact=True)

    def on_mount(self) -> None:
        self.disk_list.focus()
        self._update_title()

    # -- data ---------------------------------------------------------------
    def set_disks(self, disks: list) -> None:
        self._boot, self._other = split_views(disks)
        self.loaded = True
        self.message_text = ""
        if not self._boot and self._other and self.view == "boot":
            self.disk_list.empty_text = (f"No install-VG disks with boot copies here. "
                                         f"Press Tab to see the other {disks_word(len(self._other))}.")
        else:
            self.disk_list.empty_text = "No disks in this view."
        self._show_view()

    def loading_failed(self, error) -> None:
        self.loaded = True
        self.disk_list.empty_text = "The disk list could not be read (F5 to retry)."
        self.disk_list.set_disks([])

    def _show_view(self) -> None:
        self.disk_list.set_disks(self._boot if self.view == "boot" else self._other)
        self._update_title()
        self.query_one(DiskHeader).refresh()

    def watch_view(self, old: str, new: str) -> None:
        if new == "other":
            self.disk_list.empty_text = "No other disks."
        elif not self._boot:
            self.disk_list.empty_text = (f"No install-VG disks with boot copies here. "
                                         f"Press Tab to see the other {disks_word(len(self._other))}.")
        self.message_text = ""
        self._show_view()

    def _update_title(self) -> None:
        if self.view == "boot":
            view = f"boot devices ({len(self._boot)}); Tab: other disks ({len(self._other)})"
        else:
            view = f"other disks ({len(self._other)}); Tab: boot devices ({len(self._boot)})"
        self.query_one("#title", Static).update(f"Select Install/Boot Device   view: {view}")

    # -- events -------------------------------------------------------------
    def on_disk_list_filter_changed(self, event: DiskList.FilterChanged) -> None:
        self.message_text = ""
        self._update_status(event.text, event.shown, event.total)

    def refresh_status(self) -> None:
        self._update_status(self.disk_list.filter_text, len(self.disk_list.disks), self.disk_list.total)

    def _update_status(self, text: str, shown: int, total: int) -> None:
        status = self.query_one("#status", Static)
        warn = False
        if self.message_text:
            msg, warn = self.message_text, True
        elif not self.loaded:
            msg = "Scanning disks ..."
        elif text and shown == 0:
            msg = (f"No disk matches '{text}' in this view (searched ID, WWN, serial, SAN address, "
                   f"PV UUID, VG). BkSp edits, Esc clears.")
            warn = True
        elif text:
            msg = f"Filter '{text}': {shown} of {disks_word(total)}. Enter selects, Esc clears."
        elif total == 0:
            msg = "No disks in this view."
        else:
            msg = f"{disks_word(total)}. Type part of an ID/WWN/serial/address to filter; Enter selects."
        if getattr(self.app, "health_pending", False):
            msg += "  (reading boot-copy health ...)"
        status.update(msg)
        status.set_class(warn, "-warn")

    def on_disk_list_highlighted(self, event: DiskList.Highlighted) -> None:
        d = event.disk
        detail = self.query_one("#detail", Static)
        if d is None:
            detail.update("")
            return
        busy = f"  IN USE: {d.in_use}" if d.in_use else ""
        wwn = f"WWN {d.wwn}\n" if d.wwn and d.wwn != d.id else ""
        detail.update(
            f"addr {', '.join(d.addresses) or '-'}  serial {d.serial or '-'}  {human(d.size)}\n{wwn}"
            f"PV {d.pv_uuid or '-'}  boot copy {health_text(d.boot_copy)}{busy}")

    def on_disk_list_selected(self, event: DiskList.Selected) -> None:
        disk = event.disk
        if self.view != "boot" and disk.vg_name:
            # a PV of a VG without boot copies: its maintenance menu can mirror boot copies onto it
            from .maintenance import MaintenanceScreen
            self.app.push_screen(MaintenanceScreen(disk, list(self.app.all_disks), no_copies=True))
            return
        if self.view != "boot":
            self.message_text = (f"{disk.id} is not an install-VG disk, so it cannot be a boot "
                                 f"device. Press Tab for the boot devices.")
            self._update_status(self.disk_list.filter_text, len(self.disk_list.disks), self.disk_list.total)
            return
        from .maintenance import MaintenanceScreen
        self.app.push_screen(MaintenanceScreen(disk, list(self.app.all_disks)))

    # -- actions ------------------------------------------------------------
    def action_toggle_view(self) -> None:
        self.view = "other" if self.view == "boot" else "boot"

    def action_rescan(self) -> None:
        self.loaded = False
        self.disk_list.empty_text = "Scanning disks ..."
        self.query_one("#status", Static).update("Scanning disks ...")
        self.app.reload_disks()

    def action_clear_filter(self) -> None:
        self.message_text = ""
        if not self.disk_list.clear_filter():
            self._update_status("", len(self.disk_list.disks), self.disk_list.total)
