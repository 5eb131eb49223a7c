"""Quit confirmation."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Footer

from ..widgets.navlist import modal_bindings
from ..widgets.plain import Plain


class QuitScreen(ModalScreen[bool]):
    CSS_PATH = "quit.tcss"
    BINDINGS = [
        Binding("y", "answer(True)", "Yes, quit", id="quit.yes"),
        Binding("n", "answer(False)", "No", id="quit.no"),
        Binding("escape", "answer(False)", "Back", id="quit.back"),
    ] + modal_bindings('quit', quit=False)

    def __init__(self, running: bool = False) -> None:
        super().__init__()
        self.running = running

    def compose(self) -> ComposeResult:
        text = "Leave the maintenance console?"
        if self.running:
            text += ("\n\nAn operation is still running. Quitting cancels it at the next safe "
                     "point; the disks stay consistent but the operation will be incomplete.")
        with Vertical(classes="dialog", id="quit-dialog"):
            yield Plain("Quit", classes="dialog-title")
            yield Plain(text, id="quit-text")
            yield Plain("Y quits, N or Esc goes back.", classes="hint")
        yield Footer(show_command_palette=False, compact=True)

    def action_answer(self, value: bool) -> None:
        self.dismiss(value)
