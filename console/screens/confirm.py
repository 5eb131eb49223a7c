"""Destructive confirm: the operator types the target disk's ID.

Only the full unique ID is accepted (case does not matter); a prefix, a
typo or another disk's ID is refused with a message, and nothing happens.
"""

from __future__ import annotations

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Footer, Input, Static

from ..widgets.navlist import modal_bindings
from ..widgets.entry import Entry
from ..widgets.plain import Plain


class ConfirmScreen(ModalScreen[bool]):
    CSS_PATH = "confirm.tcss"
    BINDING_GROUP_TITLE = "Confirm"
    BINDINGS = [Binding("escape", "cancel", "Cancel", id="confirm.cancel")] + modal_bindings('confirm')

    def __init__(self, target_id: str, action: str, *, consequence: str | None = None,
                 noun: str = "disk's full ID") -> None:
        super().__init__()
        self.target_id = target_id
        self.action = action
        self.consequence = consequence or f"Everything on disk {target_id} will be overwritten."
        self.noun = noun
        self.attempts = 0
        self.last_message = ""

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog -error", id="confirm-dialog"):
            yield Plain("Confirm destructive operation", classes="dialog-title")
            yield Plain(f"{self.action}\n\n{self.consequence}\nType the {self.noun} to confirm:",
                         id="confirm-text")
            yield Entry(placeholder=self.target_id[:4] + "...", id="confirm-input")
            yield Plain("", id="confirm-message", classes="status")
        yield Footer(show_command_palette=False, compact=True)

    def on_mount(self) -> None:
        inp = self.query_one(Input)
        inp.cursor_blink = False
        inp.focus()

    @on(Input.Submitted)
    def check(self, event: Input.Submitted) -> None:
        typed = event.value.strip()
        if typed.lower() == self.target_id.lower():
            self.dismiss(True)
            return
        self.attempts += 1
        msg = self.query_one("#confirm-message", Static)
        if not typed:
            text = "Type the ID; Esc cancels."
        elif self.target_id.lower().startswith(typed.lower()):
            text = f"That is only the start of the ID: type all {len(self.target_id)} characters."
        else:
            text = "That is not the ID of the target. Nothing was done; type it again or Esc."
        self.last_message = text
        msg.update(text)
        msg.add_class("-warn")

    def action_cancel(self) -> None:
        self.dismiss(False)
