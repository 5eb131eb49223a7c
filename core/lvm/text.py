"""LVM2 text metadata: a parser for the libdm config syntax and a writer in
LVM's exact on-disk style (unindented, VG section first, ``\\n\\n\\0`` end).

Tree representation: a section is a ``dict`` (insertion-ordered) mapping keys
to values; a value is ``int``, ``float``, ``str``, ``list`` of those, or a
nested ``dict`` (section).  Bare words read as ``str``.
"""

from __future__ import annotations

import re
from typing import Any

from ..errors import MetadataError

Tree = dict[str, Any]

_WS = " \t\r\n"
_KEY_STOP = set(" \t\r\n#={}[],\"'")
_INT_RE = re.compile(r"^[+-]?(0[xX][0-9a-fA-F]+|0[0-7]*|[1-9][0-9]*)$")
_FLOAT_RE = re.compile(r"^[+-]?([0-9]+\.[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?$")

# arrays written one pair per line, after a blank line (LVM's export style)
_PAIR_ARRAYS = {"stripes", "raids", "mirrors", "raid0_lvs"}
# keys after which LVM leaves a blank line
_BLANK_AFTER = {"device", "extent_count"}


class _Parser:
    def __init__(self, text: str, where: str) -> None:
        nul = text.find("\0")
        self.s = text if nul < 0 else text[:nul]
        self.i = 0
        self.where = where

    def fail(self, msg: str) -> MetadataError:
        line = self.s.count("\n", 0, self.i) + 1
        return MetadataError(f"{self.where}: metadata text line {line}: {msg}")

    def skip(self) -> None:
        s, n = self.s, len(self.s)
        while self.i < n:
            c = s[self.i]
            if c in _WS:
                self.i += 1
            elif c == "#":
                j = s.find("\n", self.i)
                self.i = n if j < 0 else j + 1
            else:
                break

    def word(self) -> str:
        start = self.i
        s, n = self.s, len(self.s)
        while self.i < n and s[self.i] not in _KEY_STOP:
            self.i += 1
        return s[start:self.i]

    def key(self) -> str:
        self.skip()
        if self.i < len(self.s) and self.s[self.i] in "\"'":
            return self.string()
        k = self.word()
        if not k:
            raise self.fail(f"expected a key, found {self.s[self.i:self.i + 10]!r}")
        return k

    def string(self) -> str:
        q = self.s[self.i]
        self.i += 1
        out = []
        s, n = self.s, len(self.s)
        while True:
            if self.i >= n:
                raise self.fail("unterminated string")
            c = s[self.i]
            if c == q:
                self.i += 1
                return "".join(out)
            if c == "\\" and q == '"' and self.i + 1 < n:
                out.append(s[self.i + 1])
                self.i += 2
                continue
            out.append(c)
            self.i += 1

    def scalar(self) -> Any:
        self.skip()
        if self.i >= len(self.s):
            raise self.fail("value missing at end of text")
        c = self.s[self.i]
        if c in "\"'":
            return self.string()
        w = self.word()
        if not w:
            raise self.fail(f"expected a value, found {self.s[self.i:self.i + 10]!r}")
        if _INT_RE.match(w):
            sign = -1 if w[0] == "-" else 1
            body = w.lstrip("+-")
            if body[:2].lower() == "0x":
                return sign * int(body[2:], 16)
            if len(body) > 1 and body[0] == "0":
                return sign * int(body, 8)
            return sign * int(body)
        if _FLOAT_RE.match(w):
            return float(w)
        return w

    def value(self) -> Any:
        self.skip()
        if self.i < len(self.s) and self.s[self.i] == "[":
            self.i += 1
            arr = []
            while True:
                self.skip()
                if self.i >= len(self.s):
                    raise self.fail("unterminated array")
                if self.s[self.i] == "]":
                    self.i += 1
                    return arr
                if self.s[self.i] == ",":
                    self.i += 1
                    continue
                arr.append(self.scalar())
        return self.scalar()

    def section(self, top: bool, depth: int = 0) -> Tree:
        if depth > 32:
            raise self.fail("sections nested more than 32 deep")
        out: Tree = {}
        while True:
            self.skip()
            if self.i >= len(self.s):
                if top:
                    return out
                raise self.fail("unexpected end of text inside a section (missing '}')")
            if self.s[self.i] == "}":
                if top:
                    raise self.fail("unbalanced '}'")
                self.i += 1
                return out
            k = self.key()
            self.skip()
            if self.i >= len(self.s):
                raise self.fail(f"key {k!r} has no value")
            c = self.s[self.i]
            if c == "{":
                self.i += 1
                v: Any = self.section(False, depth + 1)
            elif c == "=":
                self.i += 1
                v = self.value()
            else:
                raise self.fail(f"expected '=' or '{{' after {k!r}")
            if k not in out:  # a duplicate key: the first one counts
                out[k] = v


def parse(data: bytes | str, where: str = "metadata") -> Tree:
    """Parse config text (stops at the first NUL).  Raises MetadataError."""
    if isinstance(data, (bytes, bytearray, memoryview)):
        try:
            text = bytes(data).split(b"\0", 1)[0].decode("utf-8")
        except UnicodeDecodeError as e:
            raise MetadataError(f"{where}: metadata text is not valid UTF-8 (byte {e.start})") from None
    else:
        text = data
    return _Parser(text, where).section(True)


# -- writing -----------------------------------------------------------------
def quote(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


def fmt_scalar(v: Any) -> str:
    if isinstance(v, bool):
        return "1" if v else "0"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return repr(v)
    if isinstance(v, str):
        return quote(v)
    raise MetadataError(f"cannot write a value of type {type(v).__name__} into LVM metadata")


def _fmt_value(key: str, v: Any) -> str:
    if isinstance(v, list):
        if key in _PAIR_ARRAYS and v:
            lines = []
            for j in range(0, len(v), 2):
                lines.append(", ".join(fmt_scalar(x) for x in v[j:j + 2]))
            return "[\n" + ",\n".join(lines) + "\n]"
        return "[" + ", ".join(fmt_scalar(x) for x in v) + "]"
    return fmt_scalar(v)


def _emit(out: list[str], tree: Tree, depth: int) -> None:
    for k, v in tree.items():
        if isinstance(v, dict):
            out.append("\n")
            out.append(f"{k} {{\n")
            _emit(out, v, depth + 1)
            out.append("}\n")
            continue
        if isinstance(v, list) and k in _PAIR_ARRAYS and v:
            out.append("\n")
        out.append(f"{k} = {_fmt_value(k, v)}\n")
        if k in _BLANK_AFTER:
            out.append("\n")


def dump_section(name: str, tree: Tree) -> str:
    """``name {`` ... ``}`` in LVM's unindented on-disk style."""
    out: list[str] = [f"{name} {{\n"]
    _emit(out, tree, 1)
    out.append("\n}\n")
    return "".join(out)


def dump(tree: Tree) -> str:
    """Any tree in the same style (top-level sections, then top-level keys)."""
    out: list[str] = []
    for k, v in tree.items():
        if isinstance(v, dict):
            out.append(dump_section(k, v))
    for k, v in tree.items():
        if not isinstance(v, dict):
            out.append(f"{k} = {_fmt_value(k, v)}\n")
    return "".join(out)
