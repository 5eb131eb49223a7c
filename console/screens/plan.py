"""Plan review: what a flow will do, step by step, before anything is written."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.screen import Screen
from textual.widgets import Footer

from ..widgets.navlist import NAV_KEYS
from ..widgets.plain import Plain


class PlanScreen(Screen[bool]):
    CSS_PATH = "plan.tcss"
    BINDING_GROUP_TITLE = "Plan review"
    BINDINGS = [
        Binding("enter", "answer(True)", "Continue", id="plan.continue"),
        Binding("escape", "answer(False)", "Back", id="plan.back"),
        Binding("down", "scroll(1)", "Scroll", key_display=NAV_KEYS, tooltip="Scroll down", id="plan.down"),
        Binding("up", "scroll(-1)", "Scroll", show=False, id="plan.up"),
        Binding("pagedown", "scroll(10)", "Page down", show=False, id="plan.page-down"),
        Binding("pageup", "scroll(-10)", "Scroll", show=False, id="plan.page-up"),
    ]

    def __init__(self, title: str, steps: list[str], *, destructive: bool = False,
                 note: str = "", warning: str | None = None) -> None:
        super().__init__()
        self.warning = warning
        self.title_text = title
        self.steps = steps
        self.destructive = destructive
        self.note = note

    def compose(self) -> ComposeResult:
        yield Plain(f"SANBOS  Plan review: {self.title_text}", classes="banner")
        with Vertical(id="plan-box"):
            with VerticalScroll(id="plan-body", can_focus=False):
                yield Plain("\n".join(f"{i:>2}. {s}" for i, s in enumerate(self.steps, 1)), id="plan-steps")
            warn = self.warning or ("DESTRUCTIVE: the target disk will be overwritten. You will be asked to "
                                    "type its ID." if self.destructive else "Nothing has been written yet.")
            yield Plain(warn + (" " + self.note if self.note else ""), id="plan-warn",
                         classes="-destructive" if self.destructive else "")
        yield Plain("Enter continues, Esc goes back without doing anything.", classes="status")
        yield Footer(show_command_palette=False, compact=True)

    def action_scroll(self, lines: int) -> None:
        body = self.query_one("#plan-body", VerticalScroll)
        body.scroll_to(y=body.scroll_y + lines, animate=False)

    def action_answer(self, value: bool) -> None:
        self.dismiss(value)
