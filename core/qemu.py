"""QEMU command lines and a runner that watches the serial console.

TCG is the default accelerator: on the reference machine a Linux kernel hangs
under its (nested) KVM, while TCG boots the Debian kernel in seconds.
``kvm=True`` is offered, never assumed.

Firmware: SeaBIOS (QEMU's default) for BIOS boots, ``/usr/share/ovmf/OVMF.fd``
for UEFI.  Disks are ``virtio-blk-pci`` devices with a serial and a
``bootindex`` (the firmware boot order), or ``scsi-hd`` on a virtio-scsi
controller when the guest must see a WWN.  ``readonly=True`` adds
``snapshot=on`` so the image is never written.

``Machine`` is a context manager: it starts QEMU, can wait for a regular
expression in the serial log (or for QEMU to exit), and on leaving always
stops exactly the process it started (by its PID), even on errors.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from .errors import NotFoundError, ToolError, UsageError
from .tools import which

OVMF = Path("/usr/share/ovmf/OVMF.fd")
QEMU = "qemu-system-x86_64"


@dataclass
class Drive:
    """One disk given to the guest."""

    path: str                    # image file, block device or nbd:// URL
    serial: str | None = None
    bootindex: int | None = None
    readonly: bool = False       # snapshot=on: guest writes go to a temp overlay
    wwn: str | None = None       # scsi-hd: naa.<16 hex> as wwn=, longer WWNs as device_id=
    bus: str = "virtio"          # "virtio" (virtio-blk-pci) or "scsi" (scsi-hd)
    format: str = "raw"


@dataclass
class Options:
    firmware: str = "bios"       # "bios" (SeaBIOS) or "uefi" (OVMF)
    kvm: bool = False
    memory: int = 512            # MiB
    cpus: int = 1
    kernel: str | None = None    # direct kernel boot (-kernel/-initrd/-append)
    initrd: str | None = None
    append: str | None = None
    extra: list[str] = field(default_factory=list)


def _qemu_serial(s: str) -> str:
    # QEMU's -device serial= is limited to 20 characters on virtio-blk; commas need doubling
    return s[-20:].replace(",", ",,")


def _wwn64(wwn: str) -> str | None:
    m = re.fullmatch(r"(?:naa\.|0x)?([0-9a-fA-F]{16})", wwn.strip())
    return f"0x{m.group(1).lower()}" if m else None


def command(drives: Sequence[Drive], serial_log: str | os.PathLike[str], opts: Options | None = None) -> list[str]:
    """The full QEMU argv for ``drives`` with the serial console written to ``serial_log``."""
    o = opts or Options()
    argv = [QEMU, "-machine", "q35" if o.firmware == "uefi" else "pc",
            "-accel", "kvm" if o.kvm else "tcg", "-m", str(o.memory), "-smp", str(o.cpus),
            "-display", "none", "-monitor", "none", "-net", "none", "-no-reboot",
            "-serial", f"file:{serial_log}"]
    if o.firmware == "uefi":
        if not OVMF.exists():
            raise NotFoundError(f"UEFI firmware {OVMF} is missing; install the ovmf package (scripts/setup.sh)")
        argv += ["-bios", str(OVMF)]
    elif o.firmware != "bios":
        raise UsageError(f"firmware {o.firmware!r}: choose bios or uefi")
    if o.kernel:
        argv += ["-kernel", str(o.kernel)]
        if o.initrd:
            argv += ["-initrd", str(o.initrd)]
        if o.append:
            argv += ["-append", o.append]
    scsi = False
    for i, d in enumerate(drives):
        did = f"d{i}"
        path = str(d.path).replace(",", ",,")      # QEMU option syntax: a comma in a value is doubled
        spec = f"file={path},format={d.format},if=none,id={did}"
        if d.readonly:
            spec += ",snapshot=on"
        argv += ["-drive", spec]
        if d.bus == "scsi":
            if not scsi:
                argv += ["-device", "virtio-scsi-pci,id=scsi0"]
                scsi = True
            dev = f"scsi-hd,bus=scsi0.0,drive={did}"
            if d.wwn and _wwn64(d.wwn):
                dev += f",wwn={_wwn64(d.wwn)}"
            elif d.wwn:
                # QEMU's wwn property is 64-bit; a 128-bit NAA (naa.6...) is shown as the VPD 0x83 device ID
                dev += f",device_id={d.wwn.replace(',', ',,')}"
        elif d.bus == "virtio":
            dev = f"virtio-blk-pci,drive={did}"
        else:
            raise UsageError(f"drive {d.path}: bus {d.bus!r} is not virtio or scsi")
        if d.serial:
            dev += f",serial={_qemu_serial(d.serial)}"
        if d.bootindex is not None:
            dev += f",bootindex={d.bootindex}"
        argv += ["-device", dev]
    argv += list(o.extra)
    return argv


@dataclass
class Result:
    """What a watched run saw."""

    matched: re.Match | None
    exited: bool
    returncode: int | None
    seconds: float
    log: str

    @property
    def ok(self) -> bool:
        return self.matched is not None


class Machine:
    """A running QEMU; use as ``with Machine(drives, log, opts) as m: m.wait_for(...)``."""

    def __init__(self, drives: Sequence[Drive], serial_log: str | os.PathLike[str],
                 opts: Options | None = None) -> None:
        self.serial_log = Path(serial_log)
        self.drives = list(drives)
        self.argv = command(self.drives, self.serial_log, opts)
        self.proc: subprocess.Popen | None = None
        self.started = 0.0
        self.stderr_path = self.serial_log.with_suffix(self.serial_log.suffix + ".stderr")

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def start(self) -> "Machine":
        exe = which(QEMU)
        for d in self.drives:
            if "://" not in str(d.path) and not os.path.exists(d.path):
                raise NotFoundError(f"drive {d.path}: no such disk image or device; QEMU not started")
        self.serial_log.parent.mkdir(parents=True, exist_ok=True)
        self.serial_log.write_bytes(b"")
        self._err = open(self.stderr_path, "wb")
        self.started = time.monotonic()
        try:
            self.proc = subprocess.Popen([exe, *self.argv[1:]], stdin=subprocess.DEVNULL,
                                         stdout=self._err, stderr=self._err)
        except OSError as e:
            self._err.close()
            raise ToolError(f"{QEMU}: cannot start: {e.strerror}") from None
        return self

    def log(self) -> str:
        try:
            return self.serial_log.read_bytes().decode(errors="replace")
        except OSError:
            return ""

    def stderr(self) -> str:
        try:
            return self.stderr_path.read_bytes().decode(errors="replace").strip()
        except OSError:
            return ""

    def wait_for(self, pattern: str | re.Pattern, timeout: float = 60.0) -> Result:
        """Wait until ``pattern`` appears in the serial log, QEMU exits, or ``timeout``."""
        rx = re.compile(pattern) if isinstance(pattern, str) else pattern
        assert self.proc is not None, "start() first"
        deadline = time.monotonic() + timeout
        while True:
            text = self.log()
            m = rx.search(text)
            rc = self.proc.poll()
            if m or rc is not None or time.monotonic() >= deadline:
                if rc is not None and not m:  # the last bytes may land just before exit
                    text = self.log()
                    m = rx.search(text)
                return Result(m, rc is not None, rc, time.monotonic() - self.started, text)
            time.sleep(0.05)

    def wait_exit(self, timeout: float = 60.0) -> Result:
        assert self.proc is not None, "start() first"
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            rc = None
        return Result(None, rc is not None, rc, time.monotonic() - self.started, self.log())

    def stop(self) -> None:
        """Stop exactly the QEMU process we started (SIGTERM, then SIGKILL)."""
        p = self.proc
        if p is None:
            return
        if p.poll() is None:
            try:
                os.kill(p.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                p.wait(3)
            except subprocess.TimeoutExpired:
                try:
                    os.kill(p.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                p.wait()
        if not self._err.closed:
            self._err.close()

    def __enter__(self) -> "Machine":
        if self.proc is None:
            self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def boot(drives: Sequence[Drive], serial_log: str | os.PathLike[str], pattern: str | re.Pattern,
         opts: Options | None = None, timeout: float = 90.0) -> Result:
    """Start a machine, wait for ``pattern`` (or exit/timeout), stop it, return what was seen."""
    with Machine(drives, serial_log, opts) as m:
        res = m.wait_for(pattern, timeout)
        if res.matched:  # let a powering-off guest finish on its own, briefly
            m.wait_exit(5)
    return res
