"""Running external tools (e2fsprogs, GRUB, mtools, QEMU, LVM2) with clear errors;
checking the files an operator names (``input_file``, ``output_file``)."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
from pathlib import Path
from typing import Sequence

from .errors import NotFoundError, ToolError, UsageError

# Debian puts some tools outside PATH for non-login shells.
_EXTRA_PATHS = ("/usr/sbin", "/sbin", "/usr/lib/grub/i386-pc")


def which(name: str) -> str:
    """Full path of a tool, or a ToolError naming the Debian package to install."""
    found = shutil.which(name)
    if found:
        return found
    for d in _EXTRA_PATHS:
        cand = os.path.join(d, name)
        if os.access(cand, os.X_OK):
            return cand
    raise ToolError(f"{name} is not installed; run scripts/setup.sh (it installs the Debian packages sanbos needs)")


def run(cmd: Sequence[str], *, input: bytes | None = None, check: bool = True,
        env: dict[str, str] | None = None, cwd: str | None = None,
        what: str | None = None, timeout: float | None = None) -> subprocess.CompletedProcess:
    """Run ``cmd``; on failure raise ToolError with the tool's own words."""
    argv = [which(cmd[0]), *cmd[1:]]
    full_env = None
    if env is not None:
        full_env = dict(os.environ)
        full_env.update(env)
    try:
        res = subprocess.run(argv, input=input, capture_output=True, env=full_env, cwd=cwd, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise ToolError(f"{what or cmd[0]}: timed out after {timeout} s") from None
    if check and res.returncode != 0:
        err = (res.stderr or res.stdout or b"").decode(errors="replace").strip()
        last = err.splitlines()[-3:] if err else []
        raise ToolError(f"{what or cmd[0]} failed (exit {res.returncode}): {' / '.join(last) or 'no output'}",
                        output=err)
    return res


def input_file(path: str | os.PathLike[str], what: str) -> Path:
    """``path`` as an existing, readable regular file, else an error naming it
    (``what``: "kernel", "boot image", ...) and what is wrong."""
    p = Path(path)
    try:
        st = p.stat()
    except FileNotFoundError:
        raise NotFoundError(f"{what} {p}: no such file") from None
    except OSError as e:
        raise UsageError(f"{what} {p}: cannot be read: {e.strerror or e}") from None
    if stat.S_ISDIR(st.st_mode):
        raise UsageError(f"{what} {p}: is a directory, not a file")
    if not stat.S_ISREG(st.st_mode):
        raise UsageError(f"{what} {p}: not a regular file")
    if not os.access(p, os.R_OK):
        raise UsageError(f"{what} {p}: permission denied (cannot be read)")
    return p


def output_file(path: str | os.PathLike[str], what: str) -> Path:
    """``path`` as a file that can be (re)written: not a directory, in a
    directory that exists (created if missing) and is writable."""
    p = Path(path)
    if p.is_dir():
        raise UsageError(f"{what} {p}: is a directory; give a file name")
    if p.exists() and not p.is_file():
        raise UsageError(f"{what} {p}: exists and is not a regular file")
    parent = make_dir(p.parent, f"{what} {p}")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise UsageError(f"{what} {p}: directory {parent} is not writable")
    return p


def make_dir(d: str | os.PathLike[str], what: str) -> Path:
    """Directory ``d`` (created with its parents if missing); ``what`` names it in errors."""
    d = Path(d)
    if d.exists() and not d.is_dir():
        raise UsageError(f"{what}: {d} exists and is not a directory")
    try:
        d.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UsageError(f"{what}: cannot create the directory {d}: {e.strerror or e}") from None
    return d
