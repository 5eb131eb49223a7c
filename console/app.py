"""SanbosApp: the full-screen maintenance console.

The app owns the disk listing (loaded in a thread worker), the theme and the
global keys (help, theme, quit).  Screens live in ``console.screens``; every
call into the engine goes through ``core``'s public API, from thread workers
that post messages back.  A worker's failure becomes the error screen; the
operator never sees a traceback.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path
from typing import Iterable

from textual import work
from textual.app import App
from textual.binding import Binding
from textual.scrollbar import ScrollBar
from textual.worker import Worker, WorkerState

from .messages import DisksLoaded, HealthLoaded
from .widgets.vt import ascii_scrollbar_renderer, key_display

THEMES = {False: ("textual-dark", "textual-light"), True: ("ansi-dark", "ansi-light")}


class SanbosApp(App[int]):
    """The maintenance-mode boot menu and every maintenance flow."""

    CSS_PATH = "app.tcss"
    TITLE = "sanbos maintenance console"
    ENABLE_COMMAND_PALETTE = False

    BINDINGS = [
        Binding("f1", "help", "Help", key_display="F1/?", id="app.help", tooltip="Help: every key"),
        Binding("question_mark", "help", "Help", show=False, id="app.help-alt"),
        Binding("f4", "toggle_theme", "Theme", show=False, id="app.theme", tooltip="Switch light/dark"),
        Binding("f10", "request_quit", "Quit", id="app.quit"),
        Binding("ctrl+q", "request_quit", "Quit", show=False, priority=True, id="app.quit-alt"),
        Binding("ctrl+c", "request_quit", "Quit", show=False, priority=True, id="app.quit-ctrl-c"),
    ]

    def __init__(self, fabric: str | Path | None = None, *, disks: Iterable | None = None,
                 vt: bool = False, keymap: dict[str, str] | None = None, light: bool = False,
                 registry: str | Path | None = None) -> None:
        super().__init__()
        self.fabric = Path(fabric) if fabric is not None else None
        self.injected = list(disks) if disks is not None else None
        self.vt = vt
        self.all_disks: list = []
        self._keymap = dict(keymap or {})
        self._light = light
        self.boot_menu = None
        self.registry_path = str(registry) if registry is not None else None
        self.health_pending = False

    # -- life cycle ---------------------------------------------------------
    @property
    def source_name(self) -> str:
        if self.injected is not None and self.fabric is None:
            return "supplied disk list"
        return f"fabric {self.fabric}" if self.fabric is not None else "this machine's block devices"

    def on_mount(self) -> None:
        dark, light = THEMES[self.vt]
        self.theme = light if self._light else dark
        if self.vt:
            ScrollBar.renderer = ascii_scrollbar_renderer()
        if self._keymap:
            self.set_keymap(self._keymap)
        from .screens.boot_menu import BootMenuScreen
        self.boot_menu = BootMenuScreen()
        self.push_screen(self.boot_menu)
        self.reload_disks()

    def reload_disks(self) -> None:
        if self.injected is not None:
            self.post_message(DisksLoaded(self.injected, self.source_name))
        else:
            self.load_disks()

    @work(thread=True, exclusive=True, group="inventory", exit_on_error=False,
          description="Listing disks")
    def load_disks(self) -> None:
        from core import inventory
        disks = inventory.list_disks(self.fabric)
        self.post_message(DisksLoaded(disks, self.source_name))

    def on_disks_loaded(self, message: DisksLoaded) -> None:
        self.all_disks = list(message.disks)
        if self.boot_menu is not None:
            self.boot_menu.set_disks(self.all_disks)
        if self.injected is None and any(d.vg_name for d in self.all_disks):
            self.health_pending = True
            if self.boot_menu is not None:
                self.boot_menu.refresh_status()
            self.load_health(list(self.all_disks))

    @work(thread=True, exclusive=True, group="health", exit_on_error=False,
          description="Reading boot-copy health")
    def load_health(self, disks: list) -> None:
        """Boot-copy health of every VG's disks (reads every copy; the listing does not)."""
        try:
            from core import bootcopy
        except ImportError:
            return
        health: dict[str, str] = {}
        problems: list[str] = []
        for vg in sorted({d.vg_name for d in disks if d.vg_name}):
            refs = [d.ref for d in disks if d.vg_name == vg]
            try:
                found = bootcopy.status(vg, refs)
            except Exception as e:
                # An install VG (it has a repository LV) whose copies cannot be read stays a boot
                # device with health "unknown"; any other VG (a root VG, say) is simply not one.
                if self._has_repository(vg, refs):
                    problems.append(f"VG {vg}: {e}")
                    health.update({d.id: "unknown" for d in disks if d.vg_name == vg})
                continue
            if found:
                for d in disks:
                    if d.vg_name == vg:
                        health[d.id] = found.get(d.id, "none")
        self.post_message(HealthLoaded(health, problems))

    @staticmethod
    def _has_repository(vg: str, refs: list) -> bool:
        try:
            from core import vg as vgmod
            with vgmod.open_vg(vg, refs, write=False, allow_exported=True) as vgo:
                return any(lv["name"] == "instlv" for lv in vgo.describe()["lvs"])
        except Exception:
            return False

    def on_health_loaded(self, message: HealthLoaded) -> None:
        self.health_pending = False
        for d in self.all_disks:
            d.boot_copy = message.health.get(d.id, d.boot_copy or "none")
        if self.boot_menu is not None:
            self.boot_menu.set_disks(self.all_disks)

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        if event.state == WorkerState.ERROR:
            if event.worker.group == "inventory" and self.boot_menu is not None:
                self.boot_menu.loading_failed(event.worker.error)
            self.show_error(event.worker.error, title="Could not list the disks")

    # -- shared services ----------------------------------------------------
    def show_error(self, error: BaseException | str, *, title: str = "The operation failed",
                   callback=None) -> None:
        from .screens.error import ErrorScreen
        self.push_screen(ErrorScreen(error, title=title), callback)

    def screen_text(self) -> str:
        """The current screen as plain text (what an operator reads), for tests and logs."""
        import io

        from rich.console import Console

        width, height = self.size
        console = Console(width=width, height=height, file=io.StringIO(), force_terminal=True,
                          color_system=None, record=True, legacy_windows=False, safe_box=False)
        console.print(self.screen._compositor.render_update(full=True, screen_stack=self._background_screens))
        return console.export_text()

    def _print_error_renderables(self) -> None:
        """A bug in a UI handler (not in a worker: those become the error screen) ends the app.

        Textual would print a traceback with locals on the terminal; the operator gets one
        line instead, and the traceback goes to a log file for the bug report.
        """
        if not self._exit_renderables:
            return
        from rich.console import Console

        where = ""
        try:
            fd, path = tempfile.mkstemp(prefix="sanbos-console-", suffix=".log")
            with os.fdopen(fd, "w") as fh:
                log = Console(file=fh, width=120, color_system=None, force_terminal=False)
                for renderable in self._exit_renderables:
                    log.print(renderable)
            where = f"; the details are in {path}"
        except OSError:
            pass
        err = self._exception
        what = f"{type(err).__name__}: {err}" if err is not None else "unexpected failure"
        print(f"sanbos console: internal error ({what}){where}", file=sys.stderr)
        self._exit_renderables.clear()

    def get_key_display(self, binding: Binding) -> str:
        if binding.key_display:
            return binding.key_display
        return key_display(binding.key)

    # -- actions ------------------------------------------------------------
    def action_help(self) -> None:
        from .screens.help import HelpScreen
        if not isinstance(self.screen, HelpScreen):
            self.push_screen(HelpScreen(self.screen))

    def action_toggle_theme(self) -> None:
        dark, light = THEMES[self.vt]
        self.theme = light if self.theme == dark else dark

    def busy(self) -> bool:
        return any(w.is_running and w.group == "flow" for w in self.workers)

    def action_request_quit(self) -> None:
        from .screens.quit import QuitScreen
        if isinstance(self.screen, QuitScreen):
            return

        def done(answer: bool | None) -> None:
            if answer:
                for w in list(self.workers):
                    w.cancel()
                self.exit(0)

        self.push_screen(QuitScreen(running=self.busy()), done)
