"""The console in real terminals: a pty with TERM=linux, and tmux at 80x24."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from console.widgets.vt import VT_SAFE_GLYPHS

MiB = 1024 * 1024
ROOT = Path(__file__).resolve().parent.parent


def console_cmd(fabric: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "console.cli", "console", "--fabric", str(fabric), *extra]


def vt_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TEXTUAL", "COLORTERM", "NO_COLOR"))}
    env.update(TERM="linux", LANG="C.UTF-8", LC_ALL="C.UTF-8", PYTHONPATH=str(ROOT))
    return env


def test_linux_console_emits_only_font_safe_glyphs(make_fabric):
    """Everything the console writes on TERM=linux is in the default console font.

    Also: 16 colours only (no 256/truecolor codes) and no mouse reporting.
    """
    pexpect = pytest.importorskip("pexpect")
    f = make_fabric(disks=3, size=64 * MiB)
    child = pexpect.spawn(console_cmd(f.root)[0], console_cmd(f.root)[1:], env=vt_env(),
                          dimensions=(24, 80), timeout=20, encoding=None)
    out = bytearray()

    def read_for(seconds: float, until: bytes | None = None) -> bool:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            try:
                out.extend(child.read_nonblocking(65536, timeout=0.1))
            except pexpect.TIMEOUT:
                pass
            except pexpect.EOF:
                return True
            if until is not None and until in out:
                return True
        return False

    try:
        assert read_for(20, b"Select Install/Boot Device"), out[-2000:]
        read_for(0.8)
        for keys in ("\t", f.luns[1].wwn[-4:], "\x1bOP"):      # other view, filter, F1 (help)
            child.send(keys)
            read_for(0.8)
        child.send("\x1b")                                      # close help
        read_for(0.8)
        child.send("\x1b[21~")                                  # F10: quit asks first
        read_for(0.8)
        child.send("y")
        read_for(10)
        assert not child.isalive() or child.wait() is not None
    finally:
        if child.isalive():
            child.terminate(force=True)
    text = out.decode("utf-8", errors="strict")
    assert "Select Install/Boot Device" in text and "Help" in text and "Quit" in text
    odd = {ch for ch in text if ord(ch) > 126 and ch not in VT_SAFE_GLYPHS}
    assert not odd, f"glyphs missing from the Linux console font: {sorted(odd)!r}"
    assert not re.search(r"\x1b\[[0-9;]*[34]8;[25];", text), "more than 16 colours used"
    for mode in ("1000", "1002", "1003", "1006", "1015"):
        assert f"\x1b[?{mode}h" not in text, f"mouse mode {mode} enabled"


def test_tmux_linux_console_filter_and_select(make_fabric, tmp_path):
    """tmux with TERM=linux at 80x24: send-keys filter the list; the pane shows the result."""
    if shutil.which("tmux") is None:
        pytest.skip("tmux is not installed (scripts/setup.sh installs it)")
    f = make_fabric(disks=4, size=64 * MiB)
    sock = f"sanbos-test-{uuid.uuid4().hex[:10]}"
    tmux = ["tmux", "-L", sock, "-f", "/dev/null"]
    env = vt_env()
    cmd = " ".join(console_cmd(f.root))
    try:
        subprocess.run(tmux + ["new-session", "-d", "-s", "console", "-x", "80", "-y", "24",
                               f"env TERM=linux PYTHONPATH={ROOT} {cmd}"], check=True, env=env)

        def pane() -> str:
            return subprocess.run(tmux + ["capture-pane", "-p", "-t", "console"], check=True,
                                  capture_output=True, text=True).stdout

        def wait_for(needle: str, timeout: float = 15) -> str:
            end = time.monotonic() + timeout
            text = ""
            while time.monotonic() < end:
                text = pane()
                if needle in text:
                    return text
                time.sleep(0.1)
            raise AssertionError(f"{needle!r} not on screen:\n{text}")

        def keys(*k: str) -> None:
            subprocess.run(tmux + ["send-keys", "-t", "console", *k], check=True)

        wait_for("Select Install/Boot Device")
        keys("Tab")
        text = wait_for(f.luns[3].wwn)
        assert all(lun.wwn in text for lun in f.luns)
        keys("-l", f.luns[2].wwn[-5:])
        text = wait_for("1 of 4")
        assert f.luns[2].wwn in text and f.luns[0].wwn not in text
        keys("Enter")
        wait_for("not an install-VG disk")
        keys("Escape")
        wait_for("4 disks.")
        keys("z", "z", "z")
        wait_for("No disk matches 'zzz'")
        lines = pane().splitlines()
        assert len(lines) <= 24 and all(len(l) <= 80 for l in lines)
        keys("F10")
        wait_for("Leave the maintenance console?")
        keys("y")
    finally:
        subprocess.run(tmux + ["kill-server"], check=False, capture_output=True)
