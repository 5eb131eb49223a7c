"""Entry: an Input whose Enter shows in the footer (stock Input hides it), cursor not blinking."""

from __future__ import annotations

from textual.binding import Binding
from textual.widgets import Input


class Entry(Input):
    BINDINGS = [Binding("enter", "submit", "OK", id="entry.submit")]

    def on_mount(self) -> None:
        self.cursor_blink = False       # a blinking cursor costs serial bandwidth and flaky screenshots
