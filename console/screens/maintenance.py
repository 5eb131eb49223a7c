"""The maintenance menu for the selected boot device.

On entry the install VG of the chosen disk is imported read-only (shared
locks; nothing written) in a thread worker, shown as a step.  The menu then
offers the seed's flows; each flow runs as an async worker that walks the
generic screens (choose, plan, confirm, progress, result) and every engine
call runs in a thread.  An entry whose engine function this build lacks
says so instead of pretending.
"""

from __future__ import annotations

from textual import work
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import Footer, Log, OptionList, Static
from textual.widgets.option_list import Option
from textual.worker import Worker, WorkerState

from core.units import human

from ..messages import ImportDone
from . import flows
from ..widgets.navlist import NavList
from ..widgets.plain import Plain


class MaintenanceScreen(Screen[None]):
    CSS_PATH = "maintenance.tcss"
    BINDING_GROUP_TITLE = "Maintenance menu"
    BINDINGS = [
        Binding("escape", "back", "Boot menu", id="maintenance.back"),
        Binding("0", "back", "Back", show=False, id="maintenance.back-0"),
    ] + [Binding(f.key, f"start('{f.id}')", f.title, show=False, id=f"maintenance.{f.id}") for f in flows.MENU]

    def __init__(self, disk, disks: list, *, no_copies: bool = False) -> None:
        super().__init__()
        self.no_copies = no_copies
        self.ctx = flows.FlowContext(disk=disk, disks=disks, vg_name=disk.vg_name)
        self.imported = False
        self.import_lines: list[str] = []

    def compose(self) -> ComposeResult:
        d = self.ctx.disk
        yield Plain("SANBOS  Maintenance Mode  --  Maintenance menu", classes="banner")
        yield Plain(f"Boot device {d.id}  ({d.address or '-'}, {human(d.size)})", classes="title",
                     id="maint-device")
        yield Log(id="maint-steps", auto_scroll=True)
        options = []
        for f in flows.MENU:
            reason = f.unavailable()
            label = f"{f.key}. {f.title}" + ("   (not available in this build)" if reason else "")
            options.append(Option(Text(label), id=f.id))
        options.append(Option(Text("0. Back to the boot device selection"), id="back"))
        yield NavList(*options, id="maint-menu")
        yield Plain("", id="maint-description")
        yield Plain("Up/Down and Enter, or the entry's number. Esc returns to the boot menu.",
                     classes="status", id="maint-status")
        yield Footer(show_command_palette=False, compact=True)

    def on_mount(self) -> None:
        self.query_one("#maint-menu", OptionList).focus()
        self.query_one("#maint-menu", OptionList).highlighted = 0
        log = self.query_one("#maint-steps", Log)
        log.write_line(f"[1] boot device selected: {self.ctx.disk.id}")
        log.write_line(f"[2] importing install VG {self.ctx.vg_name} (read-only, shared locks) ...")
        self.import_vg()

    @work(thread=True, exclusive=True, group="import", exit_on_error=False, description="import VG")
    def import_vg(self) -> None:
        lines, members = flows.import_install_vg(self.ctx)
        self.post_message(ImportDone(self.ctx.vg_name, lines, members))

    def on_import_done(self, message: ImportDone) -> None:
        self.imported = True
        self.import_lines = message.lines
        log = self.query_one("#maint-steps", Log)
        for line in message.lines:
            log.write_line("    " + line)
        if self.no_copies:
            log.write_line(f"[3] VG {self.ctx.vg_name} has no boot copies on this disk: "
                           "4 (Boot copies) mirrors them onto its disks")
        else:
            log.write_line(f"[3] install VG {self.ctx.vg_name} ready; choose a task")

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        if event.state != WorkerState.ERROR:
            return
        if event.worker.group == "import":
            log = self.query_one("#maint-steps", Log)
            log.write_line(f"    import FAILED: {event.worker.error}")
            self.app.show_error(event.worker.error, title=f"Could not import install VG {self.ctx.vg_name}")
        else:
            self.app.show_error(event.worker.error, title="The task failed")

    # -- menu -----------------------------------------------------------------
    def on_option_list_option_highlighted(self, event: OptionList.OptionHighlighted) -> None:
        f = flows.BY_ID.get(event.option.id)
        text = "" if f is None else f.description
        if f is not None and f.unavailable():
            text += f"\nNot available in this build: {f.unavailable()}."
        self.query_one("#maint-description", Static).update(text)

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        self.start(event.option.id)

    def action_start(self, flow_id: str) -> None:
        self.start(flow_id)

    def start(self, flow_id: str) -> None:
        if flow_id == "back":
            self.action_back()
            return
        if any(w.is_running for w in self.workers if w.group == "flow-ui"):
            return
        self.run_flow(flow_id)

    @work(exclusive=True, group="flow-ui", exit_on_error=False, description="flow")
    async def run_flow(self, flow_id: str) -> None:
        flow = flows.BY_ID[flow_id]
        changed = await flow.run(self.app, self.ctx)
        if changed:
            self.app.reload_disks()
            self.query_one("#maint-steps", Log).write_line(f"    {flow.title}: done; disk list rescanned")

    def action_back(self) -> None:
        self.dismiss(None)
