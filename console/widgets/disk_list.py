"""DiskList: a virtual (Line API) list of disks with type-to-filter.

Measured before choosing (see bench/console.py and the team's Textual
notes): OptionList/DataTable fill 10,000 rows in 0.3-0.7 s and take about
0.5 s to show all rows again after a filter is cleared; ListView does not
scale at all.  A ScrollView that renders only the visible lines
(``render_line``) costs the same at 10 or 100,000 disks, so filtering is a
list comprehension plus one repaint of ~20 lines.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

from rich.segment import Segment
from textual import events
from textual.binding import Binding
from textual.geometry import Size
from textual.message import Message
from textual.reactive import reactive
from textual.scroll_view import ScrollView
from textual.strip import Strip

from core.units import human


def _norm(text: str) -> str:
    return text.lower().replace("-", "").replace(":", "").replace("_", "")


def health_text(boot_copy: str | None) -> str:
    return {"ok": "ok", "bad": "BAD", "missing": "MISSING", "stale": "STALE", "none": "-"}.get(
        boot_copy or "", (boot_copy or "-").upper() if boot_copy else "-")


def vg_text(disk) -> str:
    if disk.vg_name:
        return disk.vg_name
    return {"free": "-", "data": "(data)", "orphan-pv": "(orphan)", "unknown": "-"}.get(
        disk.membership, disk.membership)


@dataclass(slots=True)
class DiskRow:
    """A disk plus its search key (every field the list shows or names)."""

    disk: object
    raw: str
    normed: str

    @classmethod
    def of(cls, disk) -> "DiskRow":
        fields = [disk.id, disk.wwn or "", disk.serial or "", *disk.addresses, disk.pv_uuid or "",
                  disk.vg_name or "", str(disk.path), human(disk.size)]
        raw = "\x00".join(f.lower() for f in fields if f)
        return cls(disk, raw, "\x00".join(_norm(f) for f in fields if f))

    def matches(self, needle: str, normed: str) -> bool:
        return needle in self.raw or (bool(normed) and normed in self.normed)


def fit(text: str, width: int) -> str:
    """Pad or cut ``text`` to ``width`` cells; a cut ends in '~' (ASCII-safe)."""
    if width <= 0:
        return ""
    if len(text) <= width:
        return text.ljust(width)
    return text[: width - 1] + "~"


def fit_tail(text: str, width: int) -> str:
    """Like ``fit`` but keeps the end (SAN addresses differ in their port/LUN tail)."""
    if width <= 0:
        return ""
    if len(text) <= width:
        return text.ljust(width)
    if width < 8:
        return fit(text, width)
    return text[:3] + "~" + text[-(width - 4):]


class Columns:
    """Column widths for a given line width; header and rows share them."""

    def __init__(self, width: int, id_len: int = 36, show_wwn: bool | None = None) -> None:
        self.width = width
        self.id_w = max(12, min(id_len, 36))
        self.size_w, self.vg_w, self.boot_w = 5, 8, 7
        fixed = 1 + self.id_w + 1 + self.size_w + 1 + self.vg_w + 1 + self.boot_w + 1
        rest = max(0, width - fixed)
        self.wwn_w = 0
        if show_wwn is not False and rest >= 36 + 1 + 22:
            self.wwn_w = 36
            rest -= 37
        self.addr_w = max(6, rest - 1)

    def line(self, ident: str, wwn: str, addr: str, size: str, vg: str, boot: str) -> str:
        parts = [" " + fit(ident, self.id_w)]
        if self.wwn_w:
            parts.append(fit(wwn, self.wwn_w))
        parts += [fit_tail(addr, self.addr_w), size.rjust(self.size_w)[: self.size_w],
                  fit(vg, self.vg_w), fit(boot, self.boot_w)]
        return fit(" ".join(parts), self.width)

    def header(self, status: str = "BOOT") -> str:
        return self.line("UNIQUE ID", "WWN", "SAN ADDRESS", "SIZE", "VG", status)

    def row(self, disk, status: str | None = None, mark: str = " ") -> str:
        text = self.line(disk.id, disk.wwn or "-", ",".join(disk.addresses) or "-", human(disk.size),
                         vg_text(disk), health_text(disk.boot_copy) if status is None else status)
        return mark + text[1:]


class DiskList(ScrollView, can_focus=True):
    """Disks, one per line, a cursor, and a filter typed straight into the list."""

    BINDINGS = [
        Binding("up", "cursor_up", "Up", show=False, id="disk-list.up"),
        Binding("down", "cursor_down", "Move", key_display="Up/Dn/PgUp/Dn", id="disk-list.down",
                tooltip="Down"),
        Binding("pageup", "page_up", "Page up", show=False, id="disk-list.page-up"),
        Binding("pagedown", "page_down", "Page down", show=False, id="disk-list.page-down"),
        Binding("home", "first", "First", show=False, id="disk-list.first"),
        Binding("end", "last", "Last", show=False, id="disk-list.last"),
        Binding("enter", "select", "Select", id="disk-list.select"),
        Binding("space", "toggle_mark", "Mark", id="disk-list.mark"),
        Binding("backspace", "filter_backspace", "Edit filter", show=False, id="disk-list.backspace"),
    ]

    COMPONENT_CLASSES = {"disk-list--cursor", "disk-list--bad", "disk-list--empty"}

    DEFAULT_CSS = """
    DiskList { height: 1fr; scrollbar-size-vertical: 1; scrollbar-size-horizontal: 0; }
    DiskList > .disk-list--cursor { background: $accent; color: $text; text-style: bold; }
    DiskList:blur > .disk-list--cursor { background: $accent 50%; }
    DiskList > .disk-list--bad { color: $error; }
    DiskList > .disk-list--empty { color: $warning; text-style: bold; }
    """

    #: characters that are keys of their own (help) rather than filter text
    RESERVED = set("?")

    cursor: reactive[int] = reactive(0, always_update=True, init=False)
    filter_text: reactive[str] = reactive("", init=False)

    class Highlighted(Message):
        def __init__(self, disk_list: "DiskList", disk) -> None:
            super().__init__()
            self.disk_list = disk_list
            self.disk = disk

    class Selected(Message):
        def __init__(self, disk_list: "DiskList", disk) -> None:
            super().__init__()
            self.disk_list = disk_list
            self.disk = disk

    class FilterChanged(Message):
        def __init__(self, disk_list: "DiskList", text: str, shown: int, total: int) -> None:
            super().__init__()
            self.disk_list = disk_list
            self.text = text
            self.shown = shown
            self.total = total

    def __init__(self, *, empty_text: str = "No disks.", status_header: str = "BOOT",
                 status_fn=None, bad_fn=None, multi: bool = False, name: str | None = None,
                 id: str | None = None, classes: str | None = None) -> None:
        super().__init__(name=name, id=id, classes=classes)
        self.status_header = status_header
        self.status_fn = status_fn
        self.bad_fn = bad_fn or (lambda d: d.boot_copy in ("bad", "missing"))
        self.multi = multi
        self.marked: list = []
        self._all: list[DiskRow] = []
        self._shown: list[DiskRow] = []
        self._id_len = 36
        self.empty_text = empty_text

    # -- data ---------------------------------------------------------------
    def set_disks(self, disks: Iterable) -> None:
        self._all = [DiskRow.of(d) for d in disks]
        self._id_len = max((len(r.disk.id) for r in self._all), default=12)
        self._apply_filter(keep=self.highlighted)

    @property
    def disks(self) -> list:
        """The disks currently shown (after the filter)."""
        return [r.disk for r in self._shown]

    @property
    def total(self) -> int:
        return len(self._all)

    @property
    def highlighted(self):
        if 0 <= self.cursor < len(self._shown):
            return self._shown[self.cursor].disk
        return None

    def columns(self, width: int | None = None) -> Columns:
        return Columns(width if width is not None else self.scrollable_content_region.width, self._id_len)

    def watch_filter_text(self, old: str, new: str) -> None:
        self._apply_filter(keep=self.highlighted)

    def _apply_filter(self, keep) -> None:
        text = self.filter_text.strip().lower()
        if text:
            normed = _norm(text)
            self._shown = [r for r in self._all if r.matches(text, normed)]
        else:
            self._shown = list(self._all)
        new_cursor = 0
        if keep is not None:
            for i, r in enumerate(self._shown):
                if r.disk is keep:
                    new_cursor = i
                    break
        self.virtual_size = Size(self.scrollable_content_region.width, len(self._shown) or 1)
        self.scroll_to(y=0, animate=False, immediate=True)
        self.cursor = new_cursor
        self.refresh()
        self.post_message(self.FilterChanged(self, self.filter_text, len(self._shown), len(self._all)))

    # -- cursor -------------------------------------------------------------
    def validate_cursor(self, value: int) -> int:
        return max(0, min(value, len(self._shown) - 1)) if self._shown else 0

    def watch_cursor(self, old: int, new: int) -> None:
        height = max(1, self.scrollable_content_region.height)
        top = int(self.scroll_y)
        if new < top:
            self.scroll_to(y=new, animate=False, immediate=True)
        elif new >= top + height:
            self.scroll_to(y=new - height + 1, animate=False, immediate=True)
        self.refresh()
        self.post_message(self.Highlighted(self, self.highlighted))

    def _page(self) -> int:
        return max(1, self.scrollable_content_region.height - 1)

    def action_cursor_up(self) -> None:
        self.cursor -= 1

    def action_cursor_down(self) -> None:
        self.cursor += 1

    def action_page_up(self) -> None:
        self.cursor -= self._page()

    def action_page_down(self) -> None:
        self.cursor += self._page()

    def action_first(self) -> None:
        self.cursor = 0

    def action_last(self) -> None:
        self.cursor = len(self._shown) - 1

    def action_select(self) -> None:
        disk = self.highlighted
        if disk is not None:
            self.post_message(self.Selected(self, disk))

    def action_filter_backspace(self) -> None:
        if self.filter_text:
            self.filter_text = self.filter_text[:-1]

    def clear_filter(self) -> bool:
        """Clear the filter; False when there was none."""
        if not self.filter_text:
            return False
        self.filter_text = ""
        return True

    def check_action(self, action: str, parameters) -> bool | None:
        if action == "toggle_mark" and not self.multi:
            return False            # single choice: Space is filter text, and no footer entry
        return True

    def action_toggle_mark(self) -> None:
        self.toggle_mark()

    def toggle_mark(self) -> None:
        disk = self.highlighted
        if disk is None:
            return
        if any(m is disk for m in self.marked):
            self.marked = [m for m in self.marked if m is not disk]
        else:
            self.marked.append(disk)
        self.refresh()
        self.post_message(self.Highlighted(self, disk))

    def on_key(self, event: events.Key) -> None:
        char = event.character
        if self.multi and char == " ":
            event.stop()
            event.prevent_default()
            self.toggle_mark()
            return
        if char and event.is_printable and char not in self.RESERVED and len(char) == 1:
            event.stop()
            event.prevent_default()
            self.filter_text += char

    # -- rendering ----------------------------------------------------------
    def on_resize(self, event: events.Resize) -> None:
        self.virtual_size = Size(self.scrollable_content_region.width, len(self._shown) or 1)

    def render_line(self, y: int) -> Strip:
        width = self.scrollable_content_region.width
        index = int(self.scroll_y) + y
        base = self.rich_style
        if not self._shown:
            if y == 1:
                text = self.empty_text if not self.filter_text else (
                    f"No disk matches '{self.filter_text}'.")
                style = base + self.get_component_rich_style("disk-list--empty")
                return Strip([Segment(fit("  " + text, width), style)], width)
            return Strip.blank(width, base)
        if index >= len(self._shown):
            return Strip.blank(width, base)
        disk = self._shown[index].disk
        status = self.status_fn(disk) if self.status_fn else None
        mark = "*" if self.multi and any(m is disk for m in self.marked) else " "
        text = self.columns(width).row(disk, status, mark)
        style = base
        if self.bad_fn(disk):
            style = style + self.get_component_rich_style("disk-list--bad")
        if index == self.cursor:
            style = style + self.get_component_rich_style("disk-list--cursor")
        return Strip([Segment(text, style)], width)


class DiskHeader(ScrollView):
    """The column header line of a DiskList (same widths as its rows)."""

    DEFAULT_CSS = """
    DiskHeader { height: 1; overflow: hidden hidden; text-style: bold; background: $panel; }
    """

    def __init__(self, disk_list: DiskList, **kwargs) -> None:
        super().__init__(**kwargs)
        self.disk_list = disk_list

    def render_line(self, y: int) -> Strip:
        width = self.size.width
        list_width = self.disk_list.scrollable_content_region.width or width
        text = self.disk_list.columns(list_width).header(self.disk_list.status_header) if y == 0 else ""
        return Strip([Segment(fit(text, width), self.rich_style)], width)
