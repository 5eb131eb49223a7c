"""LVM2 identifiers: 32 characters, printed 6-4-4-4-4-4-6 with dashes."""

from __future__ import annotations

import os
import re

from ..errors import MetadataError

ALPHABET = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ!#"
_GROUPS = (6, 4, 4, 4, 4, 4, 6)
_VALID_RE = re.compile(r"[0-9a-zA-Z!#]{32}")


def generate() -> str:
    """A new 32-character id, drawn as LVM does: 32 random bytes, each mod 62."""
    return "".join(ALPHABET[b % 62] for b in os.urandom(32))


def is_valid(raw: str) -> bool:
    return isinstance(raw, str) and _VALID_RE.fullmatch(raw) is not None


def normalize(text: str, what: str = "UUID") -> str:
    """Strip every dash; exactly 32 valid characters must remain."""
    raw = text.replace("-", "")
    if not is_valid(raw):
        raise MetadataError(f"invalid {what} {text!r}: need 32 characters from [0-9a-zA-Z!#]")
    return raw


def dashed(raw: str) -> str:
    """``FxTyLwaqp7...`` -> ``FxTyLw-aqp7-p7iN-gkq6-zTLy-4Hnh-Y9r7Hy``."""
    raw = raw.replace("-", "")
    out, pos = [], 0
    for n in _GROUPS:
        out.append(raw[pos:pos + n])
        pos += n
    return "-".join(out)
