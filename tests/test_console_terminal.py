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
from core import fabric as fab

MiB = 1024 * 1024
ROOT = Path(__file__).resolve().parent.parent


def console_cmd(fabric: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "console.cli", "console", "--fabric", str(fabric), *extra]


@pytest.fixture(scope="module")
def install_fabric(tmp_path_factory) -> fab.Fabric:
    from test_console_flows import build_install_fabric
    return fab.load(build_install_fabric(tmp_path_factory.mktemp("terminal")))


def vt_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TEXTUAL", "COLORTERM", "NO_COLOR"))}
    env.update(TERM="linux", LANG="C.UTF-8", LC_ALL="C.UTF-8", PYTHONPATH=str(ROOT))
    return env


class Pty:
    """The console in a pseudo-terminal (TERM=linux, 80x24); every byte it writes is kept."""

    def __init__(self, fabric_root: Path) -> None:
        self.pexpect = pytest.importorskip("pexpect")
        cmd = console_cmd(fabric_root)
        self.child = self.pexpect.spawn(cmd[0], cmd[1:], env=vt_env(), dimensions=(24, 80), timeout=20,
                                        encoding=None)
        self.out = bytearray()

    def read(self, seconds: float, until: bytes | None = None) -> bool:
        end = time.monotonic() + seconds
        start = len(self.out)
        while time.monotonic() < end:
            try:
                self.out.extend(self.child.read_nonblocking(65536, timeout=0.1))
            except self.pexpect.TIMEOUT:
                pass
            except self.pexpect.EOF:
                return True
            if until is not None and until in self.out[start:]:
                return True
        return False

    def send(self, keys: str, wait: float = 0.8, until: bytes | None = None) -> bool:
        self.child.send(keys)
        return self.read(wait if until is None else 30, until)

    def close(self) -> None:
        if self.child.isalive():
            self.child.terminate(force=True)

    def text(self) -> str:
        return self.out.decode("utf-8", errors="strict")


F1, F10 = "\x1b[[A", "\x1b[21~"     # what the Linux console sends


FONT = Path("/usr/share/consolefonts/Lat15-Fixed16.psf.gz")   # Debian's default console font


def font_glyphs(path: Path) -> set[str] | None:
    """The characters a PSF console font maps (its Unicode table), or None."""
    import gzip
    import struct
    try:
        data = gzip.open(path).read()
    except OSError:
        return None
    chars: set[str] = set()
    if data[:2] == b"\x36\x04":                       # PSF1: UCS-2 table, 0xFFFF ends a glyph
        mode, height = data[2], data[3]
        if not mode & 2:
            return None
        table = data[4 + (512 if mode & 1 else 256) * height:]
        for i in range(0, len(table) - 1, 2):
            u = struct.unpack_from("<H", table, i)[0]
            if u not in (0xFFFF, 0xFFFE):
                chars.add(chr(u))
        return chars
    if data[:4] != b"\x72\xb5\x4a\x86":               # PSF2: UTF-8 table, 0xFF ends a glyph
        return None
    _magic, _ver, hdr, _flags, n, size, _h, _w = struct.unpack_from("<8I", data)
    for glyph in data[hdr + n * size:].split(b"\xff"):
        chars |= set(glyph.split(b"\xfe")[0].decode("utf-8", "ignore"))
    return chars


def test_safe_glyph_list_is_in_the_console_font():
    glyphs = font_glyphs(FONT)
    if glyphs is None:
        pytest.skip(f"{FONT} is not installed (package console-setup-linux)")
    assert VT_SAFE_GLYPHS <= glyphs, sorted(VT_SAFE_GLYPHS - glyphs)


def check_vt_output(text: str) -> None:
    allowed = (font_glyphs(FONT) or set()) | VT_SAFE_GLYPHS if FONT.exists() else VT_SAFE_GLYPHS
    odd = {ch for ch in text if ord(ch) > 126 and ch not in allowed}
    assert not odd, f"glyphs missing from the Linux console font: {sorted(odd)!r}"
    assert not re.search(r"\x1b\[[0-9;]*[34]8;[25];", text), "more than 16 colours used"
    for mode in ("1000", "1002", "1003", "1006", "1015"):
        assert f"\x1b[?{mode}h" not in text, f"mouse mode {mode} enabled"


def test_linux_console_emits_only_font_safe_glyphs(make_fabric):
    """Boot menu, filter, help, quit on TERM=linux: only glyphs of the default console font.

    Also: 16 colours only (no 256/truecolor codes) and no mouse reporting.
    """
    f = make_fabric(disks=3, size=64 * MiB)
    pty = Pty(f.root)
    try:
        assert pty.read(20, b"Select Install/Boot Device"), pty.out[-2000:]
        pty.read(0.8)
        pty.send("\t")                                  # other view
        pty.send(f.luns[1].wwn[-4:])                    # filter
        pty.send(F1, until=b"How to work")              # help
        pty.send("\x1b")                                # close help
        pty.send(F10, until=b"Leave the maintenance")   # quit asks first
        pty.send("y", wait=10)
        assert not pty.child.isalive() or pty.child.wait() is not None
    finally:
        pty.close()
    text = pty.text()
    assert "Select Install/Boot Device" in text and "Help" in text and "Quit" in text
    check_vt_output(text)


def test_linux_console_maintenance_flow_glyphs(install_fabric):
    """Select a boot device, the maintenance menu, a boot-copy verify with its progress bar
    and log, the result: still only font-safe glyphs, 16 colours, no mouse."""
    f = install_fabric
    pty = Pty(f.root)
    try:
        assert pty.read(20, b"Select Install/Boot Device")
        assert pty.read(20, b"ok ")                     # boot-copy health arrived
        pty.send(f.luns[2].wwn[-5:])
        pty.send("\r", until=b"imported read-only")
        pty.send("4", until=b"Verify every boot copy")
        pty.send("\r", until=b"all good")
        pty.send("\r", until=b"Maintenance menu")
        pty.send("\x1b", until=b"Select Install/Boot Device")
        pty.send(F10, until=b"Leave the maintenance")
        pty.send("y", wait=10)
    finally:
        pty.close()
    text = pty.text()
    assert "Result: Verify boot copies" in text
    check_vt_output(text)


def test_tmux_linux_console_filter_and_select(install_fabric):
    """tmux with TERM=linux at 80x24: send-keys filter, select a boot device, see the maintenance menu."""
    if shutil.which("tmux") is None:
        pytest.skip("tmux is not installed (scripts/setup.sh installs it)")
    f = install_fabric
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
        wait_for("boot copy ok")                                # boot-copy health read
        text = pane()
        assert all(lun.wwn in text for lun in f.luns[:4])       # the install-VG disks
        assert f.luns[4].wwn not in text                        # blank targets: second view
        keys("Tab")
        text = wait_for(f.luns[5].wwn)
        keys("-l", "zzz")
        wait_for("No disk matches 'zzz'")
        keys("Escape")
        wait_for("2 disks.")
        keys("Tab")
        wait_for("view: boot devices (4)")
        keys("-l", f.luns[2].wwn[-5:])
        text = wait_for("1 of 4")
        assert f.luns[2].wwn in text and f.luns[0].wwn not in text
        keys("Enter")
        text = wait_for("imported read-only")
        assert "Maintenance menu" in text and f"Boot device {f.luns[2].wwn}" in text
        for entry in ("Install BOS", "Add OPPs", "Boot copies", "Boot lists"):
            assert entry in text
        lines = pane().splitlines()
        assert len(lines) <= 24 and all(len(l) <= 80 for l in lines)
        keys("F10")
        wait_for("Leave the maintenance console?")
        keys("y")
    finally:
        subprocess.run(tmux + ["kill-server"], check=False, capture_output=True)
