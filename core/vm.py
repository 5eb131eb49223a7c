"""Machines in QEMU: disks in boot-list order, install-VG LUNs served over NBD.

``run_machine(machine, mode)`` looks the machine up in the registry, takes
its boot list for ``mode`` (the firmware boot order: ``bootindex`` 1, 2, ...
in list order) and its other device lists (``rootvg``, ``primary``,
``secondary``, ``nonessential``: attached without a boot index), and starts
QEMU (TCG by default; KVM with ``kvm=True``).

How the disks are attached, the way a SAN presents LUNs:

- a disk of the machine's own ``rootvg`` list is the machine's: attached
  read-write, straight from its image file or block device;
- every other disk (the install-VG disks, shared by many machines) is
  exported **read-only** over NBD on ``127.0.0.1`` by its own
  ``qemu-nbd -r`` on a free port, and the guest reaches it through QEMU's
  NBD client.  Each disk appears as a ``scsi-hd`` on a virtio-scsi bus with
  the serial from the fabric manifest and the WWN (QEMU's ``wwn`` is 64 bits:
  the NAA identifier's first 8 bytes; the full ``naa.`` ID is given as the
  ``device_id`` that VPD page 0x83 reports).

Firmware and failover: each disk sits on its own virtio-scsi controller and
gets ``bootindex`` = its place in the boot list.  OVMF (``firmware="uefi"``)
makes one boot option per disk in that order and, when one fails (blank or
dead disk, no ``EFI/BOOT/BOOTX64.EFI``), goes on to the next: the ordered
failover of the seed's paragraph 0054.  SeaBIOS (``"bios"``, the default)
honours the order but tries only the first hard disk of it (it maps one disk
to 0x80 and adds a single hard-disk boot entry); use UEFI for failover across
disks.  UEFI machines get at least 512 MiB (GRUB's EFI loader needs it).

Locks (the design, see ARCHITECTURE.md): QEMU and qemu-nbd take only
``fcntl`` byte-range locks on images, which sanbos's writers (``flock``)
would not see.  So every ``qemu-nbd`` takes a **shared flock** on the image
it serves, and QEMU an **exclusive flock** on each read-write disk, in the
child process just before ``exec``: the lock is the server's own for its
whole life, and ``/proc/locks`` names it, so an ``opp add`` (exclusive) while
machines read the install VG is refused with a message naming the
``qemu-nbd`` PIDs.  Every process is stopped by its own PID on exit.
"""

from __future__ import annotations

import errno
import fcntl
import os
import re
import signal
import socket
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

from .disk import describe_pids, lock_holders
from .errors import DiskBusyError, DiskError, NotFoundError, SanbosError, ToolError, UsageError
from .tools import which

Progress = Callable[[str, "float | None"], None]

OVMF = Path("/usr/share/ovmf/OVMF.fd")
MODES = ("normal", "install", "maintenance")


class VMError(SanbosError):
    """A machine could not be started or did not come up."""


@dataclass
class Drive:
    """One disk of a machine as QEMU gets it."""

    id: str                    # unique ID (WWN, serial:..., path:...)
    path: Path                 # image file or block device
    serial: str = ""
    wwn: str = ""
    bootindex: int | None = None
    writable: bool = False     # the machine's own disk (rootvg list)
    lists: list[str] = field(default_factory=list)   # which registry lists name it

    @property
    def nbd(self) -> bool:
        """Shared SAN disks are served read-only over NBD."""
        return not self.writable


@dataclass
class MachinePlan:
    machine: str
    mode: str
    drives: list[Drive]
    firmware: str = "bios"

    def __str__(self) -> str:
        lines = [f"machine {self.machine}, boot mode {self.mode}, firmware {self.firmware}"]
        for d in self.drives:
            how = "read-write, local" if d.writable else "read-only over NBD (127.0.0.1)"
            order = f"boot #{d.bootindex}" if d.bootindex else "no boot"
            lines.append(f"  {order:<8} {d.id}  {d.path}  serial {d.serial or '-'}  {how}  "
                         f"[{', '.join(d.lists)}]")
        return "\n".join(lines)


# ---------------------------------------------------------------------------
# planning from the registry

def _disk_index(fabric: str | os.PathLike[str] | None) -> list:
    from . import inventory
    return inventory.list_disks(fabric)


def plan_machine(machine: str, mode: str, *, fabric: str | os.PathLike[str] | None = None,
                 registry: str | os.PathLike[str] | None = None, firmware: str = "bios",
                 writable: Sequence[str] | None = None) -> MachinePlan:
    """The machine's disks in firmware boot order (nothing is started).

    ``writable``: disk IDs attached read-write (default: the machine's
    ``rootvg`` list); every other disk is a read-only NBD export.
    """
    from . import inventory
    from . import registry as reg

    if mode not in MODES:
        raise UsageError(f"unknown boot mode {mode!r}: use one of {', '.join(MODES)}")
    if firmware not in ("bios", "uefi"):
        raise UsageError(f"unknown firmware {firmware!r}: use bios or uefi")
    r = reg.Registry(registry)
    try:
        m = r.machine(machine)
    finally:
        r.close()
    boot = m.boot_list(mode)
    if not boot:
        raise VMError(f"machine {m.id}: its {mode} boot list is empty; set it with "
                      f"'sanbos bootlist set {m.id} --mode {mode} ID...'")
    disks = _disk_index(fabric)
    rootvg_ids = [d.id for d in m.lists.get("rootvg", [])]
    drives: dict[str, Drive] = {}
    order: list[str] = []

    def add(dev_id: str, lst: str, bootindex: int | None) -> None:
        try:
            info = inventory.find(disks, dev_id)
        except NotFoundError:
            raise NotFoundError(f"machine {m.id}: its {lst} list names disk {dev_id}, "
                                f"which is not on the {'fabric ' + str(fabric) if fabric else 'SAN'}") from None
        if info.id in drives:
            drives[info.id].lists.append(lst)
            return
        drives[info.id] = Drive(id=info.id, path=Path(info.path), serial=info.serial or "",
                                wwn=info.wwn or "", bootindex=bootindex, lists=[lst])
        order.append(info.id)

    for i, dev in enumerate(boot, start=1):
        add(dev.id, f"boot/{mode}", i)
    for lst in ("rootvg", "primary", "secondary", "nonessential"):
        for dev in m.lists.get(lst, []):
            add(dev.id, lst, None)
    want_rw = set(writable) if writable is not None else set(rootvg_ids)
    for d in drives.values():
        d.writable = d.id in want_rw or any(w and d.id.startswith(w) for w in want_rw if len(w) >= 6)
    return MachinePlan(machine=m.id, mode=mode, drives=[drives[i] for i in order], firmware=firmware)


# ---------------------------------------------------------------------------
# processes: each started with its lock, each stopped by its own PID

def _locking_preexec(paths: list[tuple[str, str]]) -> Callable[[], None]:
    """In the child, before exec: take flocks (kept open across exec).

    The child must be started with ``close_fds=False``: subprocess closes
    stray descriptors *after* preexec_fn, which would drop the lock.  Python
    opens its own descriptors close-on-exec, so nothing else leaks."""
    def pre() -> None:
        os.setsid()  # own process group: a terminal ^C reaches sanbos, which stops us by PID
        for path, mode in paths:
            fd = os.open(path, os.O_RDONLY)
            os.set_inheritable(fd, True)     # kept across exec: the lock lives as long as the server
            op = fcntl.LOCK_SH if mode == "shared" else fcntl.LOCK_EX
            try:
                fcntl.flock(fd, op | fcntl.LOCK_NB)
            except OSError as e:
                if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
                    os._exit(75)   # EX_TEMPFAIL: the parent reports the holders
                raise
    return pre


def _stop_pid(proc: subprocess.Popen, grace: float = 3.0) -> None:
    if proc.poll() is not None:
        return
    try:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)
    except ProcessLookupError:
        pass


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _busy_message(drive: Drive, mode: str) -> str:
    holders = describe_pids(lock_holders(drive.path))
    want = "read (shared lock)" if mode == "shared" else "use read-write (exclusive lock)"
    return (f"{drive.id}: busy, cannot {want} {drive.path}: held by {holders}; "
            "wait for them to finish or stop them")


class NbdExport:
    """``qemu-nbd -r`` serving one disk read-only on 127.0.0.1, holding a shared flock on it."""

    def __init__(self, drive: Drive, name: str, log_dir: Path) -> None:
        self.drive = drive
        self.name = name
        self.port = 0
        self.proc: subprocess.Popen | None = None
        self.log = log_dir / f"qemu-nbd-{name}.log"

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    @property
    def uri(self) -> str:
        return f"nbd://127.0.0.1:{self.port}/{self.name}"

    def start(self, timeout: float = 20.0) -> None:
        exe = which("qemu-nbd")
        for _attempt in range(5):
            self.port = _free_port()
            cmd = [exe, "-r", "-x", self.name, "-b", "127.0.0.1", "-p", str(self.port), "-f", "raw",
                   "-t", "-e", "4", str(self.drive.path)]
            with open(self.log, "ab") as logf:
                self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=logf, stderr=logf,
                                             preexec_fn=_locking_preexec([(str(self.drive.path), "shared")]),
                                             close_fds=False)  # the lock fd opened in the child must stay
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                rc = self.proc.poll()
                if rc is not None:
                    break
                try:
                    with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                        return
                except OSError:
                    time.sleep(0.05)
            rc = self.proc.poll()
            if rc == 75:
                self.proc = None
                raise DiskBusyError(_busy_message(self.drive, "shared"))
            text = self.log.read_text(errors="replace") if self.log.exists() else ""
            if rc is not None and "Address already in use" in text:
                continue  # the free port was taken meanwhile: another one
            self.stop()
            last = " / ".join(text.strip().splitlines()[-2:]) or "no output"
            raise ToolError(f"qemu-nbd could not export {self.drive.id} ({self.drive.path}) on "
                            f"127.0.0.1:{self.port}: {last}")
        raise ToolError(f"qemu-nbd: no free port on 127.0.0.1 for {self.drive.id}")

    def stop(self) -> None:
        if self.proc is not None:
            _stop_pid(self.proc)
            self.proc = None


def _wwn64(wwn: str) -> str | None:
    m = re.fullmatch(r"naa\.([0-9a-f]{16})([0-9a-f]{16})?", wwn or "")
    return "0x" + m.group(1) if m else None


def qemu_command(plan: MachinePlan, exports: dict[str, NbdExport], *, serial: str,
                 serial_log: Path | None, kvm: bool = False, memory: int = 256,
                 extra: Sequence[str] = ()) -> list[str]:
    """The QEMU command line for ``plan`` (``serial``: ``"stdio"`` or ``"log"``)."""
    if plan.firmware == "uefi":
        memory = max(memory, 512)   # OVMF + GRUB's EFI linux loader run out of memory below that
    cmd = [which("qemu-system-x86_64"), "-name", f"sanbos-{plan.machine}"[:60],
           "-accel", "kvm" if kvm else "tcg", "-m", str(memory), "-display", "none",
           "-monitor", "none", "-net", "none", "-no-reboot", "-no-user-config"]
    if plan.firmware == "uefi":
        if not OVMF.exists():
            raise ToolError(f"{OVMF} is missing: install the Debian package ovmf for UEFI machines")
        cmd += ["-bios", str(OVMF)]
    if serial == "stdio":
        chardev = "stdio,id=ser0,signal=off,mux=on"   # Ctrl-A x stops the machine
        if serial_log:
            chardev += f",logfile={serial_log},logappend=off"
    else:
        if serial_log is None:
            raise UsageError("a serial log file is needed when the console is not the terminal")
        chardev = f"file,id=ser0,path={serial_log}"
    cmd += ["-chardev", chardev, "-serial", "chardev:ser0"]
    for n, d in enumerate(plan.drives):
        # one virtio-scsi controller per disk (like one SAN path per LUN): OVMF then offers
        # every disk as its own boot option, in bootindex order
        cmd += ["-device", f"virtio-scsi-pci,id=scsi{n}"]
        if d.writable:
            src = f"file={d.path},format=raw,if=none,id=d{n},cache=writeback"
        else:
            src = f"file={exports[d.id].uri},format=raw,if=none,id=d{n},readonly=on"
        dev = f"scsi-hd,drive=d{n},bus=scsi{n}.0,scsi-id=0,lun=0"
        if d.serial:
            dev += f",serial={d.serial[:36]}"
        w = _wwn64(d.wwn)
        if w:
            dev += f",wwn={w},device_id={d.wwn}"
        if d.bootindex:
            dev += f",bootindex={d.bootindex}"
        cmd += ["-drive", src, "-device", dev]
    cmd += list(extra)
    return cmd


class RunningMachine:
    """A started machine: its QEMU, its NBD servers, its serial log."""

    def __init__(self, plan: MachinePlan, *, serial: str = "log", serial_log: str | os.PathLike[str] | None = None,
                 kvm: bool = False, memory: int = 256, work_dir: str | os.PathLike[str] | None = None,
                 extra: Sequence[str] = ()) -> None:
        self.plan = plan
        self.serial = serial
        self._own_dir = None
        if work_dir is None:
            self._own_dir = tempfile.TemporaryDirectory(prefix=f"sanbos-vm-")
            work_dir = self._own_dir.name
        self.work_dir = Path(work_dir)
        self.work_dir.mkdir(parents=True, exist_ok=True)
        self.serial_log = Path(serial_log) if serial_log else self.work_dir / f"{_safe(plan.machine)}.serial.log"
        self.kvm = kvm
        self.memory = memory
        self.extra = list(extra)
        self.exports: dict[str, NbdExport] = {}
        self.qemu: subprocess.Popen | None = None
        self.qemu_log = self.work_dir / f"{_safe(plan.machine)}.qemu.log"
        self.started = 0.0

    # -- life cycle --------------------------------------------------------
    def start(self, progress: Progress | None = None) -> "RunningMachine":
        progress = progress or (lambda m, f: None)
        try:
            for n, d in enumerate(self.plan.drives):
                if d.writable:
                    continue
                exp = NbdExport(d, f"lun{n}", self.work_dir)
                exp.start()
                self.exports[d.id] = exp
                progress(f"{d.id}: exported read-only on {exp.uri} (qemu-nbd PID {exp.pid})", None)
            cmd = qemu_command(self.plan, self.exports, serial=self.serial, serial_log=self.serial_log,
                               kvm=self.kvm, memory=self.memory, extra=self.extra)
            if self.serial != "stdio":
                self.serial_log.write_bytes(b"")
            locks = [(str(d.path), "exclusive") for d in self.plan.drives if d.writable]
            self.started = time.monotonic()
            logf = open(self.qemu_log, "ab")
            try:
                if self.serial == "stdio":
                    self.qemu = subprocess.Popen(cmd, stderr=logf, preexec_fn=_locking_preexec(locks)
                                                 if locks else os.setsid, close_fds=False)
                else:
                    self.qemu = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=logf, stderr=logf,
                                                 preexec_fn=_locking_preexec(locks) if locks else os.setsid,
                                                 close_fds=False)
            finally:
                logf.close()
            time.sleep(0.2)
            rc = self.qemu.poll()
            if rc == 75:
                busy = [d for d in self.plan.drives if d.writable and lock_holders(d.path)]
                self.qemu = None
                raise DiskBusyError(_busy_message(busy[0], "exclusive") if busy else
                                    f"machine {self.plan.machine}: one of its disks is locked by another process")
            if rc is not None:
                raise VMError(f"machine {self.plan.machine}: QEMU exited at once ({rc}): {self._qemu_tail()}")
            progress(f"machine {self.plan.machine}: QEMU PID {self.qemu.pid} started "
                     f"({'KVM' if self.kvm else 'TCG'})", None)
        except BaseException:
            self.stop()
            raise
        return self

    def _qemu_tail(self) -> str:
        try:
            text = self.qemu_log.read_text(errors="replace").strip()
        except OSError:
            return "no output"
        return " / ".join(text.splitlines()[-3:]) or "no output"

    @property
    def pids(self) -> list[int]:
        out = [e.pid for e in self.exports.values() if e.pid]
        if self.qemu and self.qemu.poll() is None:
            out.append(self.qemu.pid)
        return out

    def output(self) -> str:
        try:
            return self.serial_log.read_text(errors="replace")
        except OSError:
            return ""

    def wait_for(self, pattern: str | re.Pattern, timeout: float = 300.0) -> str:
        """Wait until the serial console shows ``pattern``; return the console text."""
        rx = re.compile(pattern) if isinstance(pattern, str) else pattern
        deadline = time.monotonic() + timeout
        while True:
            text = self.output()
            if rx.search(text):
                return text
            if self.qemu is None or self.qemu.poll() is not None:
                text = self.output()
                if rx.search(text):
                    return text
                raise VMError(f"machine {self.plan.machine}: QEMU ended before the console showed "
                              f"{rx.pattern!r}; console tail: {_tail(text)}; QEMU: {self._qemu_tail()}")
            if time.monotonic() > deadline:
                raise VMError(f"machine {self.plan.machine}: no {rx.pattern!r} on the console after "
                              f"{timeout:.0f} s; console tail: {_tail(text)}")
            time.sleep(0.2)

    def wait(self, timeout: float | None = None) -> int:
        """Wait for QEMU to end (the guest powers off); its exit code."""
        if self.qemu is None:
            return 0
        try:
            return self.qemu.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise VMError(f"machine {self.plan.machine}: still running after {timeout:.0f} s") from None

    def stop(self) -> None:
        """Stop QEMU, then every NBD server, each by its own PID."""
        if self.qemu is not None:
            _stop_pid(self.qemu)
            self.qemu = None
        for exp in self.exports.values():
            exp.stop()
        self.exports.clear()

    def cleanup(self) -> None:
        self.stop()
        if self._own_dir is not None:
            self._own_dir.cleanup()
            self._own_dir = None

    def __enter__(self) -> "RunningMachine":
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _safe(s: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]", "_", s)[:80]


def _tail(text: str, n: int = 3) -> str:
    lines = [l for l in text.replace("\r", "").splitlines() if l.strip()]
    return " / ".join(lines[-n:]) or "(nothing)"


def start_machine(machine: str, mode: str, *, fabric: str | os.PathLike[str] | None = None,
                  registry: str | os.PathLike[str] | None = None, serial: str = "log",
                  serial_log: str | os.PathLike[str] | None = None, kvm: bool = False,
                  firmware: str = "bios", memory: int = 256, work_dir: str | os.PathLike[str] | None = None,
                  progress: Progress | None = None) -> RunningMachine:
    """Plan and start a machine; the caller stops it (``with`` or ``.stop()``)."""
    plan = plan_machine(machine, mode, fabric=fabric, registry=registry, firmware=firmware)
    return RunningMachine(plan, serial=serial, serial_log=serial_log, kvm=kvm, memory=memory,
                          work_dir=work_dir).start(progress)


def run_machine(machine: str, mode: str, *, fabric: str | os.PathLike[str] | None = None,
                registry: str | os.PathLike[str] | None = None, serial: str = "stdio",
                serial_log: str | os.PathLike[str] | None = None, kvm: bool = False,
                firmware: str = "bios", memory: int = 256, timeout: float | None = None,
                until: str | None = None, progress: Progress | None = None) -> int:
    """Run a machine until the guest powers off (or ``until`` shows on the console).

    Returns QEMU's exit code (0 after ``until`` matched).  Everything started
    is stopped by PID on the way out, also on ^C or an error.
    """
    rm = start_machine(machine, mode, fabric=fabric, registry=registry, serial=serial,
                       serial_log=serial_log, kvm=kvm, firmware=firmware, memory=memory, progress=progress)
    try:
        if until:
            rm.wait_for(until, timeout=timeout or 600)
            return 0
        return rm.wait(timeout)
    finally:
        rm.cleanup()
