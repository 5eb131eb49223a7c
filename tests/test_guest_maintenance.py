"""The maintenance image runs sanbos itself (issue 9, part 2).

``core.guest.build_maintenance_initrd`` puts Debian's python3.11, sanbos and
its runtime dependencies and the tools it runs into the initramfs of the
Debian kernel.  Booted under QEMU (TCG) with the disks of a demo fabric, the
guest lists the disks, installs the BOS onto a blank target disk, and the
target then boots on its own; in console mode ``sanbos console`` runs on the
serial line and is driven with pexpect.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from core import guest

pytestmark = [pytest.mark.qemu, pytest.mark.slow]

MiB = 1024 * 1024
READY = "SANBOS-BOS-READY"


@pytest.fixture(scope="module")
def kparts():
    for tool in ("qemu-system-x86_64", "dpkg-deb", "modprobe"):
        if shutil.which(tool) is None and not Path("/usr/sbin", tool).exists():
            pytest.skip(f"{tool} is not installed (scripts/setup.sh installs it)")
    if not Path("/usr/bin/python3.11").exists():
        pytest.skip("Debian's python3.11 is not installed")
    try:
        return guest.kernel_parts()
    except guest.SanbosError as e:
        pytest.skip(f"the Debian kernel cannot be fetched here: {e}")


@pytest.fixture(scope="module")
def demo_fabric(tmp_path_factory, kparts):
    from core import demo

    return demo.create_demo(tmp_path_factory.mktemp("maintdemo") / "fabric", disks=4, size=256 * MiB,
                            targets=1, progress=None)


@pytest.fixture(scope="module")
def maintenance_initrd(kparts, tmp_path_factory):
    t0 = time.monotonic()
    out = guest.build_maintenance_initrd(kparts, tmp_path_factory.mktemp("maint") / "initrd.img")
    print(f"maintenance initrd: {out.stat().st_size / MiB:.1f} MiB, built in {time.monotonic() - t0:.1f} s")
    return out


def _copy_fabric(f, dest: Path):
    from core import fabric as fabmod

    dest.mkdir(parents=True)
    for item in f.root.iterdir():
        if item.is_file():
            subprocess.run(["cp", "--sparse=always", str(item), str(dest / item.name)], check=True)
    return fabmod.load(dest)


def _disks(f):
    """The four install-VG disks read-only (snapshot), the blank target writable."""
    return [guest.GuestDisk(l.path, l.serial, snapshot=(i < 4)) for i, l in enumerate(f.luns)]


def _boots_on_its_own(lun, work: Path) -> str:
    """Boot the target alone under SeaBIOS; the installed system's console text."""
    from core import qemu

    res = qemu.boot([qemu.Drive(str(lun.path), serial=lun.serial, bootindex=1, readonly=True)],
                    work / "target-boot.log", READY, timeout=300)
    assert res.matched, res.log[-2000:]
    return res.log


def _table(text: str) -> dict[str, list[str]]:
    """``sanbos disks`` output -> {ID: columns}."""
    rows = {}
    for line in text.splitlines():
        cols = line.split()
        if cols and cols[0].startswith(("serial:", "naa.", "path:")):
            rows[cols[0]] = cols
    return rows


def test_maintenance_image_lists_disks_and_installs_bos(kparts, demo_fabric, maintenance_initrd, tmp_path):
    """Script mode: sanbos in the guest sees the install VG's disks and the blank
    target by their serials; `sanbos install` there writes a target that boots."""
    f = _copy_fabric(demo_fabric, tmp_path / "fabric")
    target = f.luns[4]
    script = f"""
echo "==disks=="
sanbos disks
echo "==install=="
sanbos install --from instvg --bos sanbos-demo-bos:tar --target serial:{target.serial} --opp sanbos-demo-tools >&2
echo "install=$?"
"""
    r = guest.run_maintenance_guest(_disks(f), script, 900, kernel=kparts, workdir=tmp_path / "guest")
    assert r.rc == 0, r.console[-3000:]
    rows = _table(r.section("disks"))
    for i, lun in enumerate(f.luns):
        row = rows.get(f"serial:{lun.serial}")
        assert row is not None, r.section("disks")
        assert ("pv:instvg" in row) == (i < 4) and ("free" in row) == (i == 4), row
    status = guest.GuestRun(r.section("install"), "", None, 0).report
    assert "install=0" in status, r.console[-3000:]
    log = _boots_on_its_own(target, tmp_path)
    assert "sanbos-demo-tools" in log and "sanbos-demo-base" in log


def test_maintenance_guest_sees_scsi_disks_by_wwn(kparts, demo_fabric, maintenance_initrd, tmp_path):
    """SCSI disks (virtio-scsi) carrying WWNs: sanbos in the guest names each disk
    by its WWN (read from sysfs, no udev) and sees the install VG on it.  QEMU's
    scsi-hd ``wwn`` is 64 bits, so the disks get NAA-5 WWNs here (the fabric's
    own are 128-bit NAA-6, which QEMU cannot present as such)."""
    f = demo_fabric
    wwns = [f"naa.5000c500a1b2c3{i:02x}" for i in range(len(f.luns))]
    disks = [guest.GuestDisk(l.path, l.serial, wwn=w, bus="scsi") for l, w in zip(f.luns, wwns)]
    r = guest.run_maintenance_guest(disks, "sanbos disks", 600, kernel=kparts, workdir=tmp_path / "guest")
    assert r.rc == 0, r.console[-3000:]
    rows = _table(r.report)
    for i, w in enumerate(wwns):
        assert w in rows, r.report
        assert rows[w][1] == w and (("pv:instvg" in rows[w]) == (i < 4)), rows[w]


def _dpkg_md5(pkg: str) -> dict[str, str]:
    """{path without the leading /: md5} from dpkg's record of ``pkg``'s files."""
    info = Path("/var/lib/dpkg/info")
    sums: dict[str, str] = {}
    for f in list(info.glob(f"{pkg}.md5sums")) + list(info.glob(f"{pkg}:*.md5sums")):
        for line in f.read_text(errors="replace").splitlines():
            md5, _, path = line.partition("  ")
            sums[path] = md5
    return sums


def test_maintenance_root_is_made_of_debian_packages(maintenance_image, maintenance_initrd, tmp_path):
    """The maintenance root's files come from Debian packages, unmodified: every file
    the image says came from a package has that package's bytes (the md5 in dpkg's
    own record), the packages and versions in the boot image's manifest are the
    installed ones, and every other file of the root is accounted for."""
    import hashlib
    import json

    from core import bootimage

    root = tmp_path / "root"
    root.mkdir()
    with open(maintenance_initrd, "rb") as fh:
        gz = subprocess.Popen(["gzip", "-dc"], stdin=fh, stdout=subprocess.PIPE)
        subprocess.run(["cpio", "-idm", "--quiet"], stdin=gz.stdout, cwd=root, check=True)
        assert gz.wait() == 0
    contents = json.loads((root / guest.CONTENTS_FILE).read_text())
    manifest = bootimage.inspect(maintenance_image).manifest["contents"]
    assert manifest == {k: v for k, v in contents.items() if k != "files"}
    pkgs = contents["debian_packages"]
    for must in ("python3.11-minimal", "libpython3.11-stdlib", "lvm2", "e2fsprogs", "busybox-static", "libc6"):
        assert must in pkgs, sorted(pkgs)
    installed = subprocess.run(["dpkg-query", "-W", "-f", "${Package}\\t${Version}\\n", *pkgs],
                               capture_output=True, text=True, check=True).stdout
    assert dict(line.split("\t") for line in installed.splitlines()) == pkgs
    checked, mismatched = 0, []
    md5s: dict[str, dict[str, str]] = {}
    for rel, src in contents["files"].items():
        sums = md5s.setdefault(src["package"], _dpkg_md5(src["package"]))
        real = os.path.realpath(src["host"]).lstrip("/")
        want = sums.get(real) or sums.get(real[4:] if real.startswith("usr/") else "usr/" + real)
        if want is None:
            continue                     # conffiles: dpkg keeps their md5 elsewhere
        checked += 1
        if hashlib.md5((root / rel).read_bytes()).hexdigest() != want:
            mismatched.append(rel)
    assert not mismatched, mismatched[:20]
    assert checked >= 0.95 * len(contents["files"]) and checked > 1000, (checked, len(contents["files"]))
    n_files = sum(1 for p in root.rglob("*") if p.is_file() and not p.is_symlink())
    assert n_files == contents["files_from_packages"] + sum(contents["files_other"].values()) + 1
    assert set(contents["made_here"]) <= {"init", "etc/passwd", "etc/group", "etc/lvm/lvm.conf",
                                          "etc/sanbos/modules", "var/lib/dpkg/status"}, contents["made_here"]


# --------------------------------------------------------------------------
# the console on the serial line, driven like an operator with pexpect

_CSI = re.compile(rb"\x1b\[[0-9;?<>=$]*[ -/]*[@-~]|\x1b[\]P_^][^\x07\x1b]*(?:\x07|\x1b\\)|\x1b[()][0-9A-B]|\x1b[=>78]")
F9, F10 = "\x1b[20~", "\x1b[21~"


class Screen:
    """Reads the serial console; ``wait(regex)`` matches the text with escape sequences removed."""

    def __init__(self, child, log: Path) -> None:
        self.child = child
        self.raw = bytearray()
        self.text = ""
        self.log = open(log, "wb")
        self.mark = 0

    def pump(self, seconds: float) -> None:
        import pexpect

        end = time.monotonic() + seconds
        while time.monotonic() < end:
            try:
                data = self.child.read_nonblocking(65536, timeout=0.2)
            except pexpect.TIMEOUT:
                continue
            except pexpect.EOF:
                break
            self.raw += data
            self.log.write(data)
            self.log.flush()
            self.text = _CSI.sub(b"", bytes(self.raw)).decode(errors="replace")

    def wait(self, pattern: str, timeout: float, since_mark: bool = True) -> re.Match:
        import pexpect

        end = time.monotonic() + timeout
        while True:
            m = re.search(pattern, self.text[self.mark if since_mark else 0:])
            if m:
                return m
            if time.monotonic() > end:
                raise AssertionError(f"{pattern!r} not on the console within {timeout} s; it ends:\n"
                                     f"{self.text[-3000:]}")
            try:
                data = self.child.read_nonblocking(65536, timeout=0.5)
            except pexpect.TIMEOUT:
                continue
            except pexpect.EOF:
                raise AssertionError(f"the guest ended before {pattern!r}; console ends:\n{self.text[-3000:]}")
            self.raw += data
            self.log.write(data)
            self.log.flush()
            self.text = _CSI.sub(b"", bytes(self.raw)).decode(errors="replace")

    def type(self, keys: str, pause: float = 0.05) -> None:
        self.mark = len(self.text)
        for ch in keys:
            self.child.send(ch)
            time.sleep(pause)

    def key(self, seq: str) -> None:
        self.mark = len(self.text)
        self.child.send(seq)


@pytest.fixture
def console_child():
    """Spawns QEMU under pexpect; the process is ended by its own PID at teardown."""
    import pexpect

    children = []

    def spawn(argv: list[str]):
        child = pexpect.spawn(argv[0], argv[1:], timeout=60, dimensions=(30, 100))
        children.append(child)
        return child

    yield spawn
    for child in children:
        if child.isalive():
            child.terminate(force=True)      # signals child.pid only
        child.close(force=True)


@pytest.fixture(scope="module")
def maintenance_image(kparts, tmp_path_factory):
    """The maintenance boot image (``core.guest.build_maintenance_image``)."""
    out = tmp_path_factory.mktemp("maintimg") / "maintenance.img"
    t0 = time.monotonic()
    info = guest.build_maintenance_image(out, kernel=kparts)
    print(f"maintenance boot image: {info.size / MiB:.1f} MiB "
          f"(initrd {info.files['initrd.img'] / MiB:.1f} MiB), built in {time.monotonic() - t0:.1f} s")
    return out


@pytest.fixture(scope="module")
def maint_demo(tmp_path_factory, maintenance_image):
    """A demo fabric whose boot copies are the maintenance image (GRUB on every disk)."""
    from core import bootcopy, demo
    from core.disk import DiskRef

    f = demo.create_demo(tmp_path_factory.mktemp("maintboot") / "fabric", disks=4, size=320 * MiB,
                         targets=1, progress=None, boot=False)
    refs = [DiskRef(l.wwn, l.path) for l in f.luns[:4]]
    rep = bootcopy.mirror(demo.DEMO_VG, refs, maintenance_image)
    assert "all good" in str(rep), str(rep)
    return f


def _firmware_console_argv(f, boot_disk: int, work: Path) -> list[str]:
    """SeaBIOS boots install-VG disk ``boot_disk`` (its own GRUB and boot copy); serial on stdio."""
    from core import qemu

    drives = [qemu.Drive(str(l.path), serial=l.serial, readonly=(i < 4),
                         bootindex=1 if i == boot_disk else None) for i, l in enumerate(f.luns)]
    marker = work / "unused-serial.log"
    argv = qemu.command(drives, marker, qemu.Options(memory=1536, cpus=guest.MAINTENANCE_CPUS))
    argv[argv.index(f"file:{marker}")] = "stdio"
    return argv


def test_maintenance_image_boots_from_install_vg_disk_and_installs(kparts, maint_demo, tmp_path, console_child):
    """Booted by GRUB from install-VG disk 2 (its copy checked with hashsum),
    `sanbos console` appears on the serial line; the operator selects a disk by
    typing part of its ID and installs the BOS onto the blank disk; the guest
    powers off; the target then boots on its own."""
    f = _copy_fabric(maint_demo, tmp_path / "fabric")
    target = f.luns[4]
    t0 = time.monotonic()
    scr = Screen(console_child(_firmware_console_argv(f, 2, tmp_path)), tmp_path / "console.raw")
    scr.wait(r"booting copy \d+ from disk \S+", 300)
    scr.wait("SANBOS-MAINTENANCE-CONSOLE", 300)
    # the first screen: the install-VG disks by unique ID
    scr.wait(re.escape(f"serial:{f.luns[3].serial}"), 300)
    print(f"QEMU start (SeaBIOS, GRUB, hashsum) to the console's first screen (TCG): "
          f"{time.monotonic() - t0:.1f} s")
    scr.pump(3)
    # select disk 1 by typing the end of its ID: the VG is imported read-only
    scr.type(f.luns[1].serial[-5:])
    scr.pump(2)
    scr.key("\r")
    scr.wait(r"Install\s*BOS", 180)
    scr.pump(3)
    scr.type("1")
    scr.wait(r"sanbos-demo-bos", 60)
    scr.pump(2)
    scr.key("\r")                                   # the BOS
    scr.wait(r"sanbos-demo-tools", 60)
    scr.pump(2)
    scr.type(" ")                                   # mark sanbos-demo-base
    scr.pump(1)
    scr.key("\x1b[B")                               # down
    scr.pump(1)
    scr.type(" ")                                   # mark sanbos-demo-tools
    scr.pump(1)
    scr.key(F9)
    scr.wait(r"safe|blank|free", 120)
    scr.pump(3)
    scr.type(target.serial[-5:])
    scr.pump(2)
    scr.key("\r")
    scr.wait(r"DESTRUCTIVE", 120)
    scr.pump(2)
    scr.key("\r")
    scr.pump(3)
    scr.type(f"serial:{target.serial}")
    scr.pump(1)
    scr.key("\r")
    t1 = time.monotonic()
    m = scr.wait(r"DONE|FAILED|failed|[Ee]rror", 900)
    print(f"in-guest BOS install: {time.monotonic() - t1:.1f} s")
    if m.group(0) != "DONE":
        scr.pump(3)
        raise AssertionError(scr.text[-3000:])
    scr.pump(2)
    scr.key(F10)                                    # quit: the guest powers off
    scr.pump(2)
    if "sanbos console ended" not in scr.text:
        scr.type("y")
    scr.wait("reboot: Power down|sanbos console ended", 120)
    log = _boots_on_its_own(target, tmp_path)
    assert "sanbos-demo-tools" in log and "sanbos-demo-base" in log


# --------------------------------------------------------------------------
# the console on tty1: the machine's own screen and keyboard

@pytest.fixture
def screen_session():
    """A private tmux server whose pane runs QEMU with ``-display curses`` (the
    guest's VGA text screen as text, the keyboard into the guest's PS/2 port).
    At teardown the QEMU process is ended by its PID and the private tmux server
    (its own socket) is killed; nothing else is touched."""
    import os
    import signal
    import uuid

    if shutil.which("tmux") is None:
        pytest.skip("tmux is not installed (scripts/setup.sh installs it)")
    sock = f"sanbos-tty1-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    tmux = ["tmux", "-L", sock, "-f", "/dev/null"]
    state: dict[str, int] = {}

    def start(argv: list[str]) -> list[str]:
        subprocess.run(tmux + ["new-session", "-d", "-s", "screen", "-x", "80", "-y", "25", *argv], check=True)
        out = subprocess.run(tmux + ["display-message", "-p", "-t", "screen", "#{pane_pid}"], check=True,
                             capture_output=True, text=True).stdout
        state["pid"] = int(out.strip())
        return tmux

    yield start, state
    pid = state.get("pid")
    if pid and Path(f"/proc/{pid}").exists():
        os.kill(pid, signal.SIGTERM)
    subprocess.run(tmux + ["kill-server"], check=False, capture_output=True)


def test_maintenance_console_on_tty1_and_serial(kparts, maint_demo, tmp_path, screen_session):
    """Booted by SeaBIOS + GRUB from a SCSI disk carrying a WWN, the image starts
    `sanbos console` on tty1 as well: QEMU's VGA text screen (``-display curses``
    in tmux at 80x25) shows the boot menu with the disks by WWN (serial under
    the list) while the serial line shows it too; keys typed on the machine's
    keyboard filter by part of a WWN and select the disk (the install VG is
    imported read-only); leaving the
    console on tty1 offers it again (Enter) or powers the machine off (p)."""
    from core import qemu

    start, state = screen_session
    f = _copy_fabric(maint_demo, tmp_path / "fabric")
    serial_log = tmp_path / "serial.log"
    # SCSI disks with WWNs and serials, as a SAN presents them (QEMU's wwn is 64-bit: NAA-5)
    wwns = [f"naa.5000c500a1b2c3{i:02x}" for i in range(len(f.luns))]
    drives = [qemu.Drive(str(l.path), serial=l.serial, readonly=(i < 4), bus="scsi", wwn=w,
                         bootindex=1 if i == 0 else None) for i, (l, w) in enumerate(zip(f.luns, wwns))]
    argv = qemu.command(drives, serial_log, qemu.Options(memory=1536, cpus=guest.MAINTENANCE_CPUS))
    argv[argv.index("-display") + 1] = "curses"
    tmux = start(argv)
    shots = tmp_path / "tty1.txt"

    def screen() -> str:
        r = subprocess.run(tmux + ["capture-pane", "-p", "-t", "screen"], capture_output=True, text=True)
        text = r.stdout if r.returncode == 0 else ""
        with open(shots, "a") as fh:
            fh.write(text + "\n" + "=" * 80 + "\n")
        return text

    def wait_screen(pattern: str, timeout: float) -> str:
        end = time.monotonic() + timeout
        text = ""
        while time.monotonic() < end:
            text = screen()
            if re.search(pattern, text):
                return text
            if not Path(f"/proc/{state['pid']}").exists():
                break
            time.sleep(1)
        raise AssertionError(f"{pattern!r} not on tty1 within {timeout} s; the screen:\n{text}\n"
                             f"serial ends:\n{_serial_text(serial_log)[-2000:]}")

    def keys(*k: str, literal: bool = False) -> None:
        subprocess.run(tmux + ["send-keys", "-t", "screen", *(["-l"] if literal else []), *k], check=True)

    first = wait_screen(re.escape(wwns[3]), 420)
    assert "Select Install/Boot Device" in first, first
    for w in wwns[:4]:
        assert w in first, first
    assert wwns[4] not in first                             # the blank target is under Tab, not a boot device
    # the highlighted (first listed) disk's serial is shown under the list
    top = min(wwns[:4], key=first.index)
    assert f"serial {f.luns[wwns.index(top)].serial}" in first, first
    # the serial line carries its own console at the same time
    end = time.monotonic() + 120
    while wwns[3] not in _serial_text(serial_log) and time.monotonic() < end:
        time.sleep(1)
    assert wwns[3] in _serial_text(serial_log), _serial_text(serial_log)[-2000:]
    # type the end of disk 1's WWN on the machine's keyboard: only that disk is listed
    keys(wwns[1][-6:], literal=True)
    end = time.monotonic() + 120
    while True:
        text = screen()
        listed = [w for w in wwns[:4] if f" {w} " in text]
        if listed == [wwns[1]] or time.monotonic() > end:
            break
        time.sleep(1)
    assert listed == [wwns[1]], text
    assert f"serial {f.luns[1].serial}" in text, text
    keys("Enter")
    menu = wait_screen(r"imported read-only", 300)
    assert f"Boot device {wwns[1]}" in menu, menu
    assert "Install BOS onto a target disk" in menu, menu
    from conftest import SHOTS
    (SHOTS / "maintenance-tty1.txt").write_text(menu)    # the guest's screen as QEMU shows it
    # leave the console on tty1: it is offered again, or powers the machine off
    keys("F10")
    wait_screen(r"Leave the maintenance console", 120)
    keys("y")
    wait_screen(r"sanbos console ended", 120)
    keys("Enter")                                   # offered again: the boot menu
    again = wait_screen(r"Select Install/Boot Device", 300)
    assert "sanbos console ended" not in again, again
    wait_screen(re.escape(wwns[3]), 300)
    keys("F10")
    wait_screen(r"Leave the maintenance console", 120)
    keys("y")
    wait_screen(r"sanbos console ended", 120)
    keys("p", "Enter")
    end = time.monotonic() + 120
    while Path(f"/proc/{state['pid']}").exists() and time.monotonic() < end:
        time.sleep(1)
    assert not Path(f"/proc/{state['pid']}").exists(), screen()
    assert "reboot: Power down" in _serial_text(serial_log), _serial_text(serial_log)[-2000:]


def _serial_text(log: Path) -> str:
    try:
        return _CSI.sub(b"", log.read_bytes()).decode(errors="replace")
    except FileNotFoundError:
        return ""
