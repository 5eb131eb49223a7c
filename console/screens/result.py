"""Result of a flow: what was done (or why it stopped)."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.screen import Screen
from textual.widgets import Footer

from ..widgets.navlist import NAV_KEYS
from ..widgets.plain import Plain


class ResultScreen(Screen[None]):
    CSS_PATH = "result.tcss"
    BINDING_GROUP_TITLE = "Result"
    BINDINGS = [
        Binding("enter", "close", "Back to menu", id="result.close"),
        Binding("escape", "close", "Back", show=False, id="result.back"),
        Binding("down", "scroll(1)", "Scroll", key_display=NAV_KEYS, tooltip="Scroll down", id="result.down"),
        Binding("up", "scroll(-1)", "Scroll", show=False, id="result.up"),
        Binding("pagedown", "scroll(10)", "Page down", show=False, id="result.page-down"),
        Binding("pageup", "scroll(-10)", "Scroll", show=False, id="result.page-up"),
    ]

    def __init__(self, title: str, lines: list[str], *, ok: bool = True, cancelled: bool = False) -> None:
        super().__init__()
        self.title_text = title
        self.lines = lines
        self.ok = ok
        self.cancelled = cancelled

    def compose(self) -> ComposeResult:
        state = "CANCELLED" if self.cancelled else ("DONE" if self.ok else "FINISHED WITH PROBLEMS")
        yield Plain(f"SANBOS  Result: {self.title_text}", classes="banner")
        yield Plain(state, id="result-state",
                     classes="-ok" if self.ok and not self.cancelled else "-bad")
        with VerticalScroll(id="result-body", can_focus=False):
            yield Plain("\n".join(self.lines) or "(no details)", id="result-lines")
        yield Plain("Enter returns to the maintenance menu.", classes="status")
        yield Footer(show_command_palette=False, compact=True)

    def action_scroll(self, lines: int) -> None:
        body = self.query_one("#result-body", VerticalScroll)
        body.scroll_to(y=body.scroll_y + lines, animate=False)

    def action_close(self) -> None:
        self.dismiss(None)
