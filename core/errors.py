"""One error hierarchy for sanbos.

Every message is written for an operator: it names the disk, file or VG and
says what is wrong and, where there is one, what to do about it.  The CLI and
the console show ``str(error)``; no traceback ever reaches an operator.
"""

from __future__ import annotations


class SanbosError(Exception):
    """Base of every error sanbos raises on purpose."""

    #: exit code of the CLI when this error ends a command
    exit_code = 1


class UsageError(SanbosError):
    """The request itself is malformed (bad argument, bad size string)."""

    exit_code = 2


class NotFoundError(SanbosError):
    """A named disk, VG, LV, image or machine does not exist."""


class AmbiguousError(SanbosError):
    """A prefix or name matches more than one object."""


class FabricError(SanbosError):
    """A demo fabric directory or its manifest is missing or invalid."""


class DiskError(SanbosError):
    """A disk cannot be read or written as asked."""


class DiskBusyError(DiskError):
    """Another process holds a conflicting lock on the disk."""


class UnsafeDiskError(DiskError):
    """The disk carries data, belongs elsewhere or is in use; needs --force ID."""


class FormatError(SanbosError):
    """An on-disk structure is corrupt or not what it claims to be."""


class LVMError(SanbosError):
    """A volume-group operation cannot be done."""


class MetadataError(FormatError):
    """LVM metadata (label, header, text) is corrupt or unreadable."""


class ToolError(SanbosError):
    """An external tool (mke2fs, grub-mkimage, qemu, ...) failed."""

    def __init__(self, message: str, *, output: str = "") -> None:
        super().__init__(message)
        self.output = output


class SpaceError(SanbosError):
    """Not enough space on a disk, LV, file system or metadata area."""
