"""NavList: an OptionList whose movement keys show in the footer (Up/Dn, PgUp/Dn).

Stock OptionList hides its bindings; on a maintenance console every key a
screen needs is in the footer, and every binding has an id (remappable,
listed by the help screen).
"""

from __future__ import annotations

from textual.binding import Binding
from textual.widgets import OptionList


#: the footer's one entry for Up, Down, PgUp and PgDn (80 columns hold no more)
NAV_KEYS = "Up/Dn/PgUp/Dn"


def move_bindings(prefix: str, up: str = "cursor_up", down: str = "cursor_down", page_up: str = "page_up",
                  page_down: str = "page_down", first: str | None = "first", last: str | None = "last",
                  what: str = "Move") -> list[Binding]:
    """Up/Down and PgUp/PgDn: one footer entry ("Up/Dn/PgUp/Dn Move"); the help lists each key."""
    out = [
        Binding("up", up, "Up", show=False, id=f"{prefix}.up"),
        Binding("down", down, what, key_display=NAV_KEYS, id=f"{prefix}.down", tooltip="Down"),
        Binding("pageup", page_up, "Page up", show=False, id=f"{prefix}.page-up"),
        Binding("pagedown", page_down, "Page down", show=False, id=f"{prefix}.page-down"),
    ]
    if first:
        out.append(Binding("home", first, "First", show=False, id=f"{prefix}.first"))
    if last:
        out.append(Binding("end", last, "Last", show=False, id=f"{prefix}.last"))
    return out


class NavList(OptionList):
    BINDINGS = move_bindings("list") + [Binding("enter", "select", "Select", id="list.select")]


def modal_bindings(prefix: str, *, quit: bool = True) -> list[Binding]:
    """Help (and quit) on a modal screen: Textual leaves the app's own keys out of a modal's
    binding chain, so without these F1 would do nothing on a dialog and the footer would not show it."""
    out = [Binding("f1", "app.help", "Help", key_display="F1/?", id=f"{prefix}.help")]
    if quit:
        out.append(Binding("f10", "app.request_quit", "Quit", id=f"{prefix}.quit"))
    return out


class QuietNavList(NavList):
    """A NavList where Enter does nothing worth a footer entry (a list edited with letter keys)."""

    BINDINGS = [Binding("enter", "select", "Select", show=False, id="list.select")]
