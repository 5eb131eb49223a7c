"""The error screen: what happened (the engine's own message) and what to do.

Never a traceback: a ``core.errors.SanbosError`` already names the disk,
file or VG and what is wrong; anything else is an internal error and says so.
"""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Footer

from core import errors as E

from ..widgets.navlist import modal_bindings
from ..widgets.plain import Plain


class NotAvailableError(E.SanbosError):
    """The engine of this build does not provide a function the console needs."""


ADVICE: list[tuple[type, str]] = [
    (NotAvailableError, "This build of sanbos does not include that part of the engine yet. "
                        "Use another menu entry, or a newer build."),
    (E.AmbiguousError, "Type more characters of the ID so that exactly one disk matches."),
    (E.NotFoundError, "Check the name or ID. Any unique prefix of a disk's ID, WWN, serial or "
                      "PV UUID works. F5 on the boot menu rescans the disks."),
    (E.UsageError, "Check the value you entered and try again."),
    (E.FabricError, "Check the fabric directory (sanbos fabric show DIR), or start the console "
                    "with another --fabric."),
    (E.DiskBusyError, "Another process is using the disk (named above). Wait for it to finish or "
                      "stop it, then try again."),
    (E.UnsafeDiskError, "Nothing was written. Choose a blank target disk, or clear this one first "
                        "if you are sure its data is not needed."),
    (E.MetadataError, "The LVM metadata is damaged. Verify the VG, or select another disk of the "
                      "install VG: every boot disk carries its own copy."),
    (E.FormatError, "The on-disk data failed its checks and was not used. Run verify/repair, or "
                    "choose another disk."),
    (E.SpaceError, "Choose a larger disk, or free space in the volume group first."),
    (E.LVMError, "Check the volume group (sanbos vg check) and try again."),
    (E.ToolError, "An external tool failed; its message is above. Check that it is installed "
                  "(scripts/setup.sh)."),
    (E.DiskError, "Check that the disk exists and is readable/writable, then try again."),
    (E.SanbosError, "Correct the problem named above and try again."),
    (OSError, "The operating system refused the operation (see above). Check the disk and your "
              "permissions."),
]


def describe(error: BaseException | str) -> tuple[str, str]:
    """(what happened, what to do) for an operator; never a traceback."""
    if isinstance(error, str):
        return error, "Correct the problem named above and try again."
    for cls, advice in ADVICE:
        if isinstance(error, cls):
            if isinstance(error, OSError) and not isinstance(error, E.SanbosError):
                where = f" ({error.filename})" if getattr(error, "filename", None) else ""
                return f"{error.strerror or error}{where}", advice
            return str(error) or type(error).__name__, advice
    return (f"Internal error in sanbos ({type(error).__name__}: {error}).",
            "Nothing further was done. The disks are left as the last completed step wrote them; "
            "report this message.")


class ErrorScreen(ModalScreen[None]):
    CSS_PATH = "error.tcss"
    BINDINGS = [
        Binding("enter", "close", "OK", id="error.ok"),
        Binding("escape", "close", "Back", id="error.back"),
    ] + modal_bindings('error')

    def __init__(self, error: BaseException | str, title: str = "The operation failed") -> None:
        super().__init__()
        self.error = error
        self.title_text = title
        self.what, self.advice = describe(error)

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog -error", id="error-dialog"):
            yield Plain(f"Error: {self.title_text}", classes="dialog-title", id="error-title")
            with VerticalScroll(id="error-body"):
                yield Plain(self.what, id="error-what")
                yield Plain("What to do: " + self.advice, id="error-advice")
            yield Plain("Enter or Esc returns.", classes="hint")
        yield Footer(show_command_palette=False, compact=True)

    def action_close(self) -> None:
        self.dismiss(None)
