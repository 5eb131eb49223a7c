"""Choose one or several items (a BOS and OPPs from the TOC, an action, a machine)."""

from __future__ import annotations

from dataclasses import dataclass

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import Footer, OptionList, Static
from textual.widgets.option_list import Option

from ..widgets.navlist import NavList
from ..widgets.plain import Plain


@dataclass
class Item:
    id: str
    label: str
    description: str = ""
    disabled: bool = False


class ChoiceScreen(Screen[list | None]):
    CSS_PATH = "choice.tcss"
    BINDING_GROUP_TITLE = "Choose"
    BINDINGS = [
        Binding("escape", "back", "Back", id="choice.back"),
        Binding("space", "toggle", "Mark", id="choice.mark"),
        Binding("f9", "done", "Done", id="choice.done"),
    ]

    def __init__(self, title: str, prompt: str, items: list[Item], *, multi: bool = False,
                 allow_none: bool = False, preselect: list[str] | None = None, start: int = 0) -> None:
        super().__init__()
        self.start = start
        self.title_text = title
        self.prompt = prompt
        self.items = items
        self.multi = multi
        self.allow_none = allow_none
        self.marked: set[str] = set(preselect or [])

    def check_action(self, action: str, parameters) -> bool | None:
        if action in ("toggle", "done") and not self.multi:
            return False
        return True

    def _label(self, it: Item) -> str:
        mark = ("[x] " if it.id in self.marked else "[ ] ") if self.multi else ""
        return f"{mark}{it.label}"

    def compose(self) -> ComposeResult:
        yield Plain(f"SANBOS  {self.title_text}", classes="banner")
        yield Plain(self.prompt, classes="title", id="choice-prompt")
        yield NavList(*[Option(Text(self._label(it)), id=it.id, disabled=it.disabled) for it in self.items],
                         id="choice-list")
        yield Plain("", id="choice-description")
        hint = ("Space marks, F9 (or Enter) takes the marked items, Esc goes back."
                if self.multi else "Enter chooses, Esc goes back.")
        yield Plain(hint, classes="status", id="choice-status")
        yield Footer(show_command_palette=False, compact=True)

    def on_mount(self) -> None:
        ol = self.query_one(OptionList)
        ol.focus()
        if self.items:
            ol.highlighted = max(0, min(self.start, len(self.items) - 1))

    def on_option_list_option_highlighted(self, event: OptionList.OptionHighlighted) -> None:
        it = next((i for i in self.items if i.id == event.option.id), None)
        self.query_one("#choice-description", Static).update(it.description if it else "")

    def _refresh_labels(self) -> None:
        ol = self.query_one(OptionList)
        for it in self.items:
            ol.replace_option_prompt(it.id, Text(self._label(it)))

    def action_toggle(self) -> None:
        ol = self.query_one(OptionList)
        if ol.highlighted is None:
            return
        opt = ol.get_option_at_index(ol.highlighted)
        self.marked ^= {opt.id}
        self._refresh_labels()

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        if self.multi:
            if not self.marked:
                self.marked.add(event.option.id)
                self._refresh_labels()
            self.action_done()
        else:
            self.dismiss([event.option.id])

    def action_done(self) -> None:
        if not self.marked and not self.allow_none:
            st = self.query_one("#choice-status", Static)
            st.update("Mark at least one item with Space.")
            st.add_class("-warn")
            return
        self.dismiss([it.id for it in self.items if it.id in self.marked])

    def action_back(self) -> None:
        self.dismiss(None)
