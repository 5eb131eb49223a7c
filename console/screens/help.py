"""Help: every key of the screen underneath (with its remappable id) and how to work."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.screen import ModalScreen, Screen
from textual.widgets import Footer

from ..widgets.navlist import NAV_KEYS
from ..widgets.plain import Plain
from ..widgets.vt import key_display

GUIDE = """\
How to work
  The boot menu lists the install-VG disks that carry a boot copy. Type any
  part of a disk's unique ID, WWN, serial, SAN address, PV UUID or VG to
  filter; Up/Down/PgUp/PgDn/Home/End move; Enter selects the boot device.
  Tab switches to the disks that are not install-VG members; Enter on a PV
  there opens its VG's menu (Boot copies can mirror boot copies onto it).
  After selection the install VG is imported and the maintenance menu offers
  Install BOS, Recover root VG, Add OPPs, Boot copies (verify, repair, mirror,
  replace, remove), Boot lists (a machine's boot type and device lists) and
  Add a BOS to the install repository.
  Destructive steps ask you to type the target disk's ID. Escape on a running
  operation asks before cancelling it at a safe point.
  The footer shows each screen's keys; Up/Dn/PgUp/Dn stands for the four
  movement keys, and F4 (light/dark theme) is listed here only.
  Keys can be remapped: sanbos console --key ID=KEY (ids below)."""


def binding_rows(app, screen: Screen) -> list[tuple[str, str, str]]:
    rows: list[tuple[str, str, str]] = []
    seen: set[tuple[str, str]] = set()
    for key, active in screen.active_bindings.items():
        b = active.binding
        ident = b.id or ""
        if not ident or (b.action, key) in seen:
            continue
        seen.add((b.action, key))
        # a footer entry that stands for several keys (Up/Dn/PgUp/Dn) names its own key in the tooltip
        what = (b.tooltip if b.key_display and b.tooltip else b.description) or b.action.replace("_", " ")
        rows.append((key_display(key), what, ident))
    return rows


class HelpScreen(ModalScreen[None]):
    CSS_PATH = "help.tcss"
    BINDINGS = [
        Binding("escape", "close", "Close", id="help.close"),
        Binding("f1", "close", "Close", show=False, id="help.close-f1"),
        Binding("q", "close", "Close", show=False, id="help.close-q"),
        Binding("down", "scroll(1)", "Scroll", key_display=NAV_KEYS, tooltip="Scroll down", id="help.down"),
        Binding("up", "scroll(-1)", "Scroll", show=False, id="help.up"),
        Binding("pagedown", "scroll(10)", "Page down", show=False, id="help.page-down"),
        Binding("pageup", "scroll(-10)", "Scroll", show=False, id="help.page-up"),
        Binding("f10", "app.request_quit", "Quit", id="help.quit"),
    ]

    def __init__(self, under: Screen) -> None:
        super().__init__()
        self.under = under

    def compose(self) -> ComposeResult:
        self.rows = rows = binding_rows(self.app, self.under)
        lines = [f"  {k:<8} {d:<28} {i}" for k, d, i in rows]
        self.keys_text = "\n".join(lines)
        title = getattr(self.under, "BINDING_GROUP_TITLE", None) or type(self.under).__name__
        with Vertical(classes="dialog", id="help-dialog"):
            yield Plain(f"Help: {title}", classes="dialog-title")
            with VerticalScroll(id="help-body", can_focus=False):
                yield Plain("Keys      Action                       Id (for --key)\n" + self.keys_text,
                             id="help-keys")
                yield Plain(GUIDE, id="help-guide")
            yield Plain("Up/Down/PgUp/PgDn scroll, Esc closes this help.", classes="hint")
        yield Footer(show_command_palette=False, compact=True)

    def action_scroll(self, lines: int) -> None:
        body = self.query_one("#help-body", VerticalScroll)
        body.scroll_to(y=body.scroll_y + lines, animate=False)

    def action_close(self) -> None:
        self.dismiss(None)
