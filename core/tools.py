"""Running external tools (e2fsprogs, GRUB, mtools, QEMU, LVM2) with clear errors."""

from __future__ import annotations

import os
import shutil
import subprocess
from typing import Sequence

from .errors import ToolError

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
