"""Linux console / serial line support: 16 colours, font-safe glyphs, no mouse.

The default Linux console font (Debian's Lat15-Fixed16) has no sub-cell
block elements (``▁ ▊ ▎ ▏ ▔``), no ``⭘`` and no arrows, all of which stock
Textual widgets draw.  The console therefore uses only ASCII plus the box
and block glyphs listed in ``VT_SAFE_GLYPHS`` (present in Lat15-Fixed16,
Lat15-Terminus16, Uni2-VGA16, Uni2-Terminus16 and Uni3-Terminus16).
"""

from __future__ import annotations

import os

#: non-ASCII glyphs the console may emit: every one is in the Unicode tables of Debian's
#: console-setup-linux 1.221 fonts Lat15-Fixed16 (the default), Lat15-Terminus16,
#: Uni2-VGA16, Uni2-Terminus16 and Uni3-Terminus16 (checked by parsing the PSF files)
VT_SAFE_GLYPHS = frozenset("─│┌┐└┘├┤┬┴┼═║╔╗╚╝━╸█░▒●▶▼")

VT_TERMS = ("linux", "vt100", "vt102", "vt220", "vt320", "ansi", "dumb")


def wants_vt(term: str | None = None) -> bool:
    """True for a Linux virtual console or a serial terminal."""
    term = (term if term is not None else os.environ.get("TERM", "")).lower()
    return term in VT_TERMS or term.startswith("vt")


def prepare_environment(vt: bool) -> None:
    """Set what Textual reads at import time; call before importing textual.app."""
    if vt:
        os.environ["TEXTUAL_COLOR_SYSTEM"] = "standard"
        os.environ.setdefault("TEXTUAL_FPS", "10")


def ascii_scrollbar_renderer():
    """A scrollbar renderer drawing with spaces only (the thumb is a coloured block).

    Built on demand so that importing this module does not import Textual
    (Textual reads TEXTUAL_COLOR_SYSTEM when it is first imported).
    """
    from textual.scrollbar import ScrollBarRender

    class AsciiScrollBarRender(ScrollBarRender):
        VERTICAL_BARS = [" "] * 8
        HORIZONTAL_BARS = [" "] * 8

    return AsciiScrollBarRender


KEY_NAMES = {
    "up": "Up", "down": "Down", "left": "Left", "right": "Right", "enter": "Enter",
    "escape": "Esc", "backspace": "BkSp", "pageup": "PgUp", "pagedown": "PgDn",
    "home": "Home", "end": "End", "tab": "Tab", "space": "Space", "delete": "Del",
    "question_mark": "?", "insert": "Ins",
}


def key_display(key: str) -> str:
    """ASCII name of a key for the footer and help (F1, ^Q, Enter, PgDn)."""
    parts = key.split("+")
    base = parts[-1]
    name = KEY_NAMES.get(base) or (base.upper() if base.startswith("f") and base[1:].isdigit() else base)
    mods = parts[:-1]
    if "ctrl" in mods:
        mods.remove("ctrl")
        name = "^" + name.upper() if len(name) == 1 else "^" + name
    return "+".join([m.capitalize() for m in mods] + [name])
