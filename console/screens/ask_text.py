"""Ask for a line of text (an OPP file, a boot image path, a machine ID)."""

from __future__ import annotations

from typing import Callable

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Footer, Input, Static

from ..widgets.navlist import modal_bindings
from ..widgets.entry import Entry
from ..widgets.plain import Plain


class AskTextScreen(ModalScreen[str | None]):
    CSS_PATH = "ask_text.tcss"
    BINDINGS = [Binding("escape", "cancel", "Cancel", id="ask-text.cancel")] + modal_bindings('ask-text')

    def __init__(self, title: str, prompt: str, *, value: str = "",
                 validate: Callable[[str], str | None] | None = None) -> None:
        super().__init__()
        self.title_text = title
        self.prompt = prompt
        self.value = value
        self.validate = validate

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog", id="ask-text-dialog"):
            yield Plain(self.title_text, classes="dialog-title")
            yield Plain(self.prompt, id="ask-text-prompt")
            yield Entry(value=self.value, id="ask-text-input")
            yield Plain("Enter accepts, Esc cancels.", classes="status", id="ask-text-message")
        yield Footer(show_command_palette=False, compact=True)

    def on_mount(self) -> None:
        inp = self.query_one(Input)
        inp.cursor_blink = False
        inp.focus()

    @on(Input.Submitted)
    def submitted(self, event: Input.Submitted) -> None:
        text = event.value.strip()
        problem = "Enter a value or press Esc." if not text else (self.validate(text) if self.validate else None)
        if problem:
            msg = self.query_one("#ask-text-message", Static)
            msg.update(problem)
            msg.add_class("-warn")
            return
        self.dismiss(text)

    def action_cancel(self) -> None:
        self.dismiss(None)
