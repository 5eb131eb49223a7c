"""Messages the console's workers post back to the UI thread.

Workers never touch widgets: they post one of these and the screen that owns
the worker updates itself on the UI thread.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from textual.message import Message


@dataclass
class DisksLoaded(Message):
    """The disk listing finished (``core.inventory.list_disks``)."""

    disks: list[Any]
    source: str = ""


@dataclass
class StepLog(Message):
    """One line for a live log (a step of a flow, an engine message)."""

    text: str
    level: str = "info"          # "info", "ok", "warn", "error"


@dataclass
class StepProgress(Message):
    """Progress of a running flow; ``fraction`` None means indeterminate."""

    message: str
    fraction: float | None = None

    def can_replace(self, message: Message) -> bool:  # merge queued updates (serial lines are slow)
        return isinstance(message, StepProgress)


@dataclass
class FlowFinished(Message):
    """A flow's worker ended successfully; ``summary`` lines go on the result screen."""

    title: str
    summary: list[str] = field(default_factory=list)
    ok: bool = True
    cancelled: bool = False


@dataclass
class ImportDone(Message):
    """The install VG of the selected disk was imported (or could not be)."""

    vg_name: str | None
    lines: list[str] = field(default_factory=list)
    members: list[Any] = field(default_factory=list)


@dataclass
class HealthLoaded(Message):
    """Boot-copy health per disk ID (``core.bootcopy.status``), for the listing."""

    health: dict[str, str]
    problems: list[str] = field(default_factory=list)


@dataclass
class MachineLoaded(Message):
    """A machine read from (or just written to) the registry; ``note`` says what changed."""

    machine: Any
    note: str = ""
