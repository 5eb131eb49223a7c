"""Target-disk chooser: disks with their safety status (``core.safety.assess``).

Safety is checked in a thread worker (it reads every candidate's first and
last sectors, and asks blkid); until then a disk shows "...".  An unsafe
disk cannot be chosen here: the message names the reason.  (The CLI's
``--force ID`` exists for scripts; the console never forces.)
"""

from __future__ import annotations

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import Footer, Static

from core.units import human

from ..widgets.disk_list import DiskHeader, DiskList
from ..widgets.plain import Plain

class TargetScreen(Screen[list | None]):
    CSS_PATH = "target.tcss"
    BINDING_GROUP_TITLE = "Choose target"
    BINDINGS = [
        Binding("escape", "back", "Back", id="target.back"),
    ]

    def __init__(self, title: str, disks: list, *, min_size: int = 0, multi: bool = False,
                 purpose: str = "target", safety: bool = True, assess=None,
                 labels: tuple[str, str, str] = ("safe", "UNSAFE", "blank, safe to write")) -> None:
        """``assess(disks) -> {disk id: [reasons]}`` replaces the blank-disk safety check (e.g. "can
        this PV hold a boot copy"); it runs in the worker.  ``labels``: the column word for a good
        disk, for a refused one, and the detail line for a good one."""
        super().__init__()
        self.title_text = title
        self.candidates = disks
        self.min_size = min_size
        self.multi = multi
        self.purpose = purpose
        self.check = safety or assess is not None
        self.assess = assess
        self.labels = labels
        # safety=False: the candidates are members of the VG itself (new boot disks), nothing to assess
        self.safety: dict[str, list[str] | None] = {d.id: (None if self.check else []) for d in disks}

    def status_of(self, disk) -> str:
        reasons = self.safety.get(disk.id)
        if reasons is None:
            return "..."
        if not self.check:
            return "-"
        return self.labels[1] if reasons else self.labels[0]

    def compose(self) -> ComposeResult:
        self.disk_list = DiskList(id="targets", empty_text="No candidate disks.",
                                  status_header="SAFETY" if self.assess is None else "STATUS",
                                  status_fn=self.status_of, bad_fn=lambda d: bool(self.safety.get(d.id)),
                                  multi=self.multi)
        yield Plain(f"SANBOS  {self.title_text}", classes="banner")
        yield Plain(f"Choose the {self.purpose}; type to filter", classes="title")
        yield DiskHeader(self.disk_list)
        yield self.disk_list
        yield Plain("", id="target-detail")
        yield Plain("Checking the disks' safety ...", classes="status", id="target-status")
        yield Footer(show_command_palette=False, compact=True)

    def on_mount(self) -> None:
        self.disk_list.set_disks(self.candidates)
        self.disk_list.focus()
        if self.check:
            self.check_safety()
        else:
            self._status(f"{len(self.candidates)} disks. "
                         + ("Space marks, Enter takes the marked disks." if self.multi else "Enter chooses."))

    @work(thread=True, exclusive=True, group="safety", exit_on_error=False, description="safety")
    def check_safety(self) -> None:
        if self.assess is not None:
            results = self.assess(list(self.candidates))
            self.app.call_from_thread(self._safety_done, results)
            return
        from core import safety
        use_blkid = len(self.candidates) <= 64
        results = {}
        for d in self.candidates:
            try:
                results[d.id] = list(safety.assess(d.ref, self.min_size, use_blkid=use_blkid))
            except Exception as e:  # a disk that cannot be read is not a safe target
                results[d.id] = [str(e) or type(e).__name__]
        self.app.call_from_thread(self._safety_done, results)

    def _safety_done(self, results: dict) -> None:
        self.safety.update(results)
        self.disk_list.refresh()
        unsafe = sum(1 for r in results.values() if r)
        good, bad = (w.lower() for w in self.labels[:2])
        self._status(f"{len(results) - unsafe} {good}, {unsafe} {bad} of {len(results)} disks. "
                     + ("Space marks, Enter takes the marked disks." if self.multi else "Enter chooses."))
        self.on_disk_list_highlighted(DiskList.Highlighted(self.disk_list, self.disk_list.highlighted))

    def on_worker_state_changed(self, event) -> None:
        from textual.worker import WorkerState
        if event.state == WorkerState.ERROR:
            self._status(f"Safety check failed: {event.worker.error}", warn=True)

    def _status(self, text: str, warn: bool = False) -> None:
        st = self.query_one("#target-status", Static)
        st.update(text)
        st.set_class(warn, "-warn")

    def on_disk_list_highlighted(self, event: DiskList.Highlighted) -> None:
        d = event.disk
        detail = self.query_one("#target-detail", Static)
        if d is None:
            detail.update("")
            return
        reasons = self.safety.get(d.id)
        why = "checking ..." if reasons is None else ("; ".join(reasons) if reasons else self.labels[2])
        if not self.check:
            why = f"PV of VG {d.vg_name or '-'}"
        marked = f"marked {len(self.disk_list.marked)}; " if self.multi else ""
        word = "safety" if self.assess is None else "status"
        detail.update(f"{d.id}  {human(d.size)}  {d.address or '-'}\n{marked}{word}: {why}")

    def on_disk_list_filter_changed(self, event: DiskList.FilterChanged) -> None:
        if event.text and not event.shown:
            self._status(f"No disk matches '{event.text}'. BkSp edits, Esc goes back.", warn=True)
        elif event.text:
            self._status(f"Filter '{event.text}': {event.shown} of {event.total} disks.")

    def on_disk_list_selected(self, event: DiskList.Selected) -> None:
        chosen = list(self.disk_list.marked) if self.multi and self.disk_list.marked else [event.disk]
        pending = [d for d in chosen if self.safety.get(d.id) is None]
        if pending:
            self._status("Still checking the disks' safety; try again in a moment.", warn=True)
            return
        unsafe = [d for d in chosen if self.safety.get(d.id)]
        if unsafe:
            d = unsafe[0]
            what = "is not safe to write" if self.assess is None else "cannot be used"
            self._status(f"{d.id} {what}: {'; '.join(self.safety[d.id])}. "
                         f"Choose another disk.", warn=True)
            return
        self.dismiss(chosen)

    def action_back(self) -> None:
        if not self.disk_list.clear_filter():
            self.dismiss(None)
