"""Sizes: parsing operator input and printing sizes the way storage people read them."""

from __future__ import annotations

import re
from fractions import Fraction

from .errors import UsageError

KiB = 1024
MiB = 1024 * KiB
GiB = 1024 * MiB
TiB = 1024 * GiB
SECTOR = 512
#: the largest size anything takes: a file offset is a signed 64-bit number
MAX_SIZE = 2**63 - 1

_SUFFIX = {"": 1, "B": 1, "K": KiB, "M": MiB, "G": GiB, "T": TiB, "S": SECTOR}
_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGTS]?)(?:I?B)?\s*$", re.IGNORECASE)


def parse_size(text: str | int) -> int:
    """Parse ``512M``, ``2G``, ``4096``, ``8s`` (sectors) into bytes."""
    if isinstance(text, int):
        if text < 0:
            raise UsageError(f"size must not be negative: {text}")
        if text > MAX_SIZE:
            raise UsageError(f"size {text} is too large (at most {human(MAX_SIZE)})")
        return text
    m = _SIZE_RE.match(str(text))
    if len(text) > 40:
        text = text[:40] + "..."       # the message stays one readable line
    if not m:
        raise UsageError(f"not a size: {text!r} (use e.g. 512M, 2G, 4096)")
    number, suffix = m.group(1), m.group(2).upper()
    value = Fraction(number) * _SUFFIX[suffix]          # exact: no float rounding or overflow
    if value.denominator != 1:
        raise UsageError(f"size {text!r} is not a whole number of bytes")
    if value > MAX_SIZE:
        raise UsageError(f"size {text!r} is too large (at most {human(MAX_SIZE)})")
    return int(value)


def human(size: int) -> str:
    """Format bytes as ``1.5G``, ``512M``, ``4.0K``."""
    for unit, factor in (("T", TiB), ("G", GiB), ("M", MiB), ("K", KiB)):
        if size >= factor:
            v = size / factor
            return f"{v:.0f}{unit}" if v == int(v) else f"{v:.1f}{unit}"
    return f"{size}B"


def align_up(value: int, alignment: int) -> int:
    return -(-value // alignment) * alignment


def align_down(value: int, alignment: int) -> int:
    return value // alignment * alignment
