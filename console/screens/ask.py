"""A yes/no question (cancel a running operation, leave a flow)."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Footer

from ..widgets.navlist import modal_bindings
from ..widgets.plain import Plain


class AskScreen(ModalScreen[bool]):
    CSS_PATH = "ask.tcss"
    BINDINGS = [
        Binding("y", "answer(True)", "Yes", id="ask.yes"),
        Binding("n", "answer(False)", "No", id="ask.no"),
        Binding("escape", "answer(False)", "No", show=False, id="ask.back"),
    ] + modal_bindings('ask')

    def __init__(self, title: str, question: str) -> None:
        super().__init__()
        self.title_text = title
        self.question = question

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog", id="ask-dialog"):
            yield Plain(self.title_text, classes="dialog-title")
            yield Plain(self.question, id="ask-text")
            yield Plain("Y: yes   N or Esc: no", classes="hint")
        yield Footer(show_command_palette=False, compact=True)

    def action_answer(self, value: bool) -> None:
        self.dismiss(value)
