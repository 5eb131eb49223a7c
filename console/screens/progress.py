"""Progress: a flow's engine call in a thread worker, a ProgressBar and a live log.

The job is a plain function ``job(reporter) -> list[str]`` (the summary
lines).  It runs in a thread worker (``exit_on_error=False``); it reports
through ``reporter.progress(message, fraction)`` (the engine's progress
callback signature) and ``reporter.log(text)``, which post messages to this
screen.  Escape asks first, then cancels at the next safe point: the next
progress call raises ``Cancelled`` inside the engine, between its steps.
A failure (a ``SanbosError`` or anything else) ends the screen with an
``Outcome`` carrying the error; the caller shows the error screen.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Callable

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import Footer, Log, ProgressBar, Static
from textual.worker import Worker, WorkerState

from core.errors import SanbosError

from ..messages import FlowFinished, StepLog, StepProgress
from ..widgets.plain import Plain


class Cancelled(SanbosError):
    """The operator cancelled the operation at a safe point."""


@dataclass
class Outcome:
    state: str                      # "ok", "cancelled", "error"
    lines: list[str] = field(default_factory=list)
    log: list[str] = field(default_factory=list)
    error: BaseException | None = None
    clean: bool = True              # False: finished, but the result reports problems

    @property
    def ok(self) -> bool:
        return self.state == "ok"


class Reporter:
    """What a job gets: progress/log callables that are safe from any thread."""

    def __init__(self, screen: "ProgressScreen") -> None:
        self._screen = screen
        self.cancel_requested = threading.Event()
        self.clean = True           # a job sets False when its result reports problems
        self._last_message = ""

    def check(self) -> None:
        if self.cancel_requested.is_set():
            raise Cancelled("cancelled by the operator at a safe point")

    def progress(self, message: str, fraction: float | None = None) -> None:
        self.check()
        self._screen.post_message(StepProgress(str(message), fraction))
        if message and message != self._last_message:     # the log gets each step once
            self._last_message = message
            self._screen.post_message(StepLog(str(message)))

    def log(self, text: str, level: str = "info") -> None:
        self._screen.post_message(StepLog(str(text), level))

    __call__ = progress


Job = Callable[[Reporter], list[str]]


class ProgressScreen(Screen[Outcome]):
    CSS_PATH = "progress.tcss"
    BINDING_GROUP_TITLE = "Running"
    BINDINGS = [Binding("escape", "ask_cancel", "Cancel", id="progress.cancel")]
    #: the log's time stamps (seconds since the start); tests that save screenshots fix it
    clock = staticmethod(time.monotonic)

    def __init__(self, title: str, job: Job, *, determinate: bool = True) -> None:
        super().__init__()
        self.title_text = title
        self.job = job
        self.determinate = determinate
        self.reporter = Reporter(self)
        self.log_lines: list[str] = []
        self.started = 0.0
        self._done = False
        self._ask = None

    def compose(self) -> ComposeResult:
        yield Plain(f"SANBOS  Running: {self.title_text}", classes="banner")
        yield Plain("Starting ...", id="progress-step")
        yield ProgressBar(total=100 if self.determinate else None, show_eta=False, id="progress-bar")
        yield Log(id="progress-log", auto_scroll=True)
        yield Plain("Esc asks to cancel; the operation stops at the next safe point.",
                     classes="status", id="progress-status")
        yield Footer(show_command_palette=False, compact=True)

    def on_mount(self) -> None:
        self.started = self.clock()
        self.run_job()

    @work(thread=True, exclusive=True, group="flow", exit_on_error=False, description="flow")
    def run_job(self) -> None:
        try:
            lines = self.job(self.reporter)
        except Cancelled:
            self.post_message(FlowFinished(self.title_text, ["Cancelled at a safe point."], ok=False,
                                           cancelled=True))
            return
        self.post_message(FlowFinished(self.title_text, list(lines or []), ok=self.reporter.clean))

    # -- messages from the worker -----------------------------------------------
    def on_step_progress(self, message: StepProgress) -> None:
        self.query_one("#progress-step", Static).update(message.message)
        bar = self.query_one(ProgressBar)
        if message.fraction is not None:
            if bar.total is None:
                bar.update(total=100)
            bar.update(progress=max(0.0, min(1.0, float(message.fraction))) * 100)

    def on_step_log(self, message: StepLog) -> None:
        stamp = f"{self.clock() - self.started:6.1f}s"
        from .flows import on_fabric
        line = f"{stamp} {'!! ' if message.level in ('warn', 'error') else ''}{on_fabric(self.app, message.text)}"
        self.log_lines.append(message.text)
        self.query_one(Log).write_line(line)

    def _close_question(self) -> None:
        """The job ended while 'Cancel?' was open: the question is moot, close it."""
        if self._ask is not None and self._ask.is_attached and self.app.screen is self._ask:
            self._ask.dismiss(False)
        self._ask = None

    def _finish(self, outcome: Outcome) -> None:
        self._close_question()
        if self.app.screen is self:
            self.dismiss(outcome)
        else:
            self.call_after_refresh(self._finish_later, outcome)

    def _finish_later(self, outcome: Outcome) -> None:
        if self.is_attached and self.app.screen is self:
            self.dismiss(outcome)
        else:
            self.set_timer(0.05, lambda: self._finish_later(outcome))

    def on_flow_finished(self, message: FlowFinished) -> None:
        if self._done:
            return
        self._done = True
        bar = self.query_one(ProgressBar)
        if not message.cancelled:
            bar.update(total=100, progress=100)
        state = "cancelled" if message.cancelled else "ok"
        self._finish(Outcome(state, message.summary, list(self.log_lines), clean=message.ok))

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        if event.state == WorkerState.ERROR and not self._done:
            self._done = True
            self._finish(Outcome("error", [], list(self.log_lines), event.worker.error))
        elif event.state == WorkerState.CANCELLED and not self._done:
            self._done = True
            self._finish(Outcome("cancelled", ["Cancelled."], list(self.log_lines)))

    # -- cancel ---------------------------------------------------------------
    def action_ask_cancel(self) -> None:
        from .ask import AskScreen

        def answer(yes: bool | None) -> None:
            self._ask = None
            if yes and not self._done:
                self.reporter.cancel_requested.set()
                status = self.query_one("#progress-status", Static)
                status.update("Cancelling at the next safe point ...")
                status.add_class("-warn")

        if self._done or self._ask is not None:
            return
        self._ask = AskScreen("Cancel?", f"Cancel '{self.title_text}'? It stops at the next safe point; "
                              "completed steps stay done and the disks stay consistent.")
        self.app.push_screen(self._ask, answer)
