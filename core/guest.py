"""A small Linux guest with real LVM2 and device-mapper, booted under QEMU.

This host has no device-mapper, so the proof that real LVM2 activates what
sanbos wrote (raid1 LVs included) is given by a QEMU guest: the Debian
kernel and its modules, busybox, the host's own ``lvm`` and ``e2fsck`` with
the libraries ``ldd`` names, an ``lvm.conf`` without udev, and an ``/init``
that loads the modules in dependency order, waits for the disks, runs a
given shell script and powers off.

The initramfs is two concatenated newc archives (the kernel unpacks each in
turn): a *base* archive, built once per kernel and cached, and a small
archive holding the script.  The script's standard output goes to the
guest's second serial port (``/dev/ttyS1``), which QEMU writes to its own
file, so the report is never mixed with kernel messages; its standard error
goes to the console (``ttyS0``).

Public:

- ``kernel_parts(cache=None) -> KernelParts``: the Debian kernel from
  ``core.debparts`` (``apt-get download`` + ``dpkg-deb -x`` into the cache),
  with ``depmod -b`` run on it.
- ``build_lvm_guest_initrd(kernel_parts, out, script) -> Path``.
- ``run_lvm_guest(disks, script, timeout) -> GuestRun``.
"""

from __future__ import annotations

import fcntl
import filecmp
import hashlib
import json
import os
import re
import shutil
import subprocess
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Sequence

from . import debparts
from .debparts import KernelParts
from .errors import NotFoundError, SanbosError, ToolError
from .initscript import busybox_init
from .tools import run, which

#: kernel modules the LVM guest loads (their dependencies come from modprobe)
LVM_GUEST_MODULES = (
    "virtio_pci", "virtio_blk", "crc32c_generic", "dm_mod", "dm_raid", "raid1",
    "dm_mirror", "dm_snapshot", "dm_zero", "ext4",
)

#: host binaries copied into the guest with their libraries
LVM_GUEST_BINARIES = ("/usr/sbin/lvm", "/usr/sbin/e2fsck", "/usr/sbin/dmsetup")

#: what the script's report is framed with on the report serial port
BEGIN_MARK = "@@SANBOS-GUEST-BEGIN@@"
RC_MARK = "@@SANBOS-GUEST-RC="

LVM_CONF = """\
# sanbos maintenance guest: no udev daemon, no devices file, no lvmetad.
devices {
    use_devicesfile = 0
    obtain_device_list_from_udev = 0
    external_device_info_source = "none"
    scan_lvs = 0
}
global {
    use_lvmlockd = 0
    locking_dir = "/run/lock/lvm"
}
activation {
    udev_sync = 0
    udev_rules = 0
    monitoring = 0
    verify_udev_operations = 0
}
backup {
    backup = 0
    archive = 0
}
"""

INIT = busybox_init(r"""
want=$(sed -n 's/.*sanbos\.disks=\([0-9]*\).*/\1/p' /proc/cmdline)
while read -r m; do
    insmod "$m" >/dev/null 2>&1 || echo "sanbos-guest: module $m did not load" >&2
done < /etc/sanbos/modules
n=0
while [ "$(ls -d /sys/block/vd* 2>/dev/null | wc -l)" -lt "${want:-0}" ] && [ $n -lt 100 ]; do
    sleep 0.1; n=$((n + 1))
done
stty -F /dev/ttyS1 raw -echo 2>/dev/null
exec 3>/dev/ttyS1
echo "@@SANBOS-GUEST-BEGIN@@" >&3
sh /etc/sanbos/script.sh >&3 2>/dev/console
rc=$?
echo "@@SANBOS-GUEST-RC=$rc@@" >&3
exec 3>&-
sync
poweroff -f
""", dirs=["/mnt"])


class GuestError(SanbosError):
    """The maintenance guest could not be built or did not finish."""


# --------------------------------------------------------------------------
# cache and kernel parts


def cache_dir(cache: str | os.PathLike[str] | None = None) -> Path:
    """The download/unpack cache: ``cache``, ``$SANBOS_CACHE`` or ``cache/``."""
    return debparts.cache_dir(cache)


@contextmanager
def _cache_lock(d: Path, name: str) -> Iterator[None]:
    """An exclusive flock so that concurrent test runs build a cache item once."""
    with open(d / f".{name}.lock", "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _modroot(kparts: KernelParts) -> Path:
    """The tree that holds ``lib/modules/VERSION`` (what depmod/modprobe call the base)."""
    return kparts.modules_dir.parent.parent.parent


def kernel_parts(cache: str | os.PathLike[str] | None = None, package: str | None = None) -> KernelParts:
    """The Debian kernel from ``core.debparts`` (apt-get download + dpkg-deb -x, cached).

    ``depmod -b`` is run once on the unpacked tree so ``modprobe -d`` can
    list dependencies.
    """
    kparts = debparts.kernel(cache, package)
    if not (kparts.modules_dir / "modules.dep").exists():
        d = cache_dir(cache)
        with _cache_lock(d, f"depmod-{kparts.version}"):
            if not (kparts.modules_dir / "modules.dep").exists():
                run(["depmod", "-b", str(_modroot(kparts)), kparts.version], what=f"depmod for {kparts.version}")
    return kparts


def module_files(kparts: KernelParts, names: Sequence[str]) -> list[Path]:
    """The ``.ko`` files for ``names`` and their dependencies, in load order."""
    out: list[Path] = []
    seen: set[Path] = set()
    for name in names:
        res = run(["modprobe", "-d", str(_modroot(kparts)), "-S", kparts.version, "--show-depends", name],
                  what=f"modprobe --show-depends {name}")
        for line in res.stdout.decode().splitlines():
            parts = line.split()
            if len(parts) >= 2 and parts[0] == "insmod":
                p = Path(parts[1])
                if p not in seen:
                    seen.add(p)
                    out.append(p)
    return out


# --------------------------------------------------------------------------
# initramfs


def binary_closure(binaries: Sequence[str]) -> list[Path]:
    """The binaries plus every shared library ``ldd`` lists (the loader too)."""
    files: list[Path] = []
    seen: set[str] = set()
    for b in binaries:
        path = which(b) if not os.path.isabs(b) else b
        if not os.path.exists(path):
            raise NotFoundError(f"{path} is not installed; run scripts/setup.sh")
        for p in [path, *_ldd(path)]:
            if p not in seen:
                seen.add(p)
                files.append(Path(p))
    return files


def _ldd(path: str) -> list[str]:
    res = run(["ldd", path], what=f"ldd {path}", check=False)
    if res.returncode != 0:
        if b"not a dynamic executable" in res.stdout + res.stderr:
            return []          # a script or a static binary: nothing to add
        raise ToolError(f"ldd {path} failed: {(res.stderr or res.stdout).decode(errors='replace').strip()}")
    libs = []
    for line in res.stdout.decode().splitlines():
        m = re.search(r"(/\S+)\s+\(0x", line)
        if m:
            libs.append(m.group(1))
    return libs


def _pack_newc(src: Path, out_fh, compress: bool) -> None:
    """``find . | busybox cpio -o -H newc`` (optionally gzip -9n) of ``src``.  Not ``core.cpio``:
    busybox keeps each file's mtime, which the stdlib's timestamp-checked .pyc files need."""
    names = subprocess.run(["find", ".", "-mindepth", "1"], cwd=src, capture_output=True, check=True).stdout
    names = b"\n".join(sorted(names.split(b"\n"))).strip() + b"\n"
    res = run(["busybox", "cpio", "-o", "-H", "newc"], input=names, cwd=str(src), what="busybox cpio")
    data = res.stdout
    if compress:
        data = run(["gzip", "-9n"], input=data, what="gzip").stdout
    out_fh.write(data)


#: bumped whenever the staging code changes what goes into a cached archive
_LAYOUT_VERSION = 4


def _base_key(kparts: KernelParts, modules: Sequence[str], binaries: Sequence[str]) -> str:
    h = hashlib.sha256()
    h.update(f"{_LAYOUT_VERSION}:{kparts.version}".encode())
    h.update(INIT.encode() + LVM_CONF.encode())
    h.update("\0".join(modules).encode())
    for b in [*binaries, str(debparts.busybox())]:
        st = os.stat(b)
        h.update(f"{b}:{st.st_size}:{st.st_mtime_ns}".encode())
    return h.hexdigest()[:16]


def _copy_host_file(root: Path, f: Path) -> None:
    """Copy a host file into the same place of the guest tree (libraries from
    /usr/lib/x86_64-linux-gnu go to /lib/x86_64-linux-gnu, where ``ldd`` names most of them)."""
    rel = Path(f).relative_to("/")
    if str(rel).startswith("usr/lib/x86_64-linux-gnu/"):
        rel = Path("lib") / rel.relative_to("usr/lib")
    dest = root / rel
    dest.parent.mkdir(parents=True, exist_ok=True)
    if not dest.exists():
        shutil.copy2(os.path.realpath(f), dest)


def _stage_base(root: Path, kparts: KernelParts, modules: Sequence[str], binaries: Sequence[str],
                cache: str | os.PathLike[str] | None, init: str) -> None:
    """busybox, the modules (load order in /etc/sanbos/modules), binaries + libraries, lvm.conf, /init."""
    for sub in ("bin", "sbin", "etc/sanbos", "etc/lvm", "proc", "sys", "dev", "run", "tmp", "mnt",
                "lib64", "lib/x86_64-linux-gnu", "usr/bin", "usr/sbin"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    shutil.copy2(debparts.busybox(cache), root / "bin" / "busybox")
    for f in binary_closure(binaries):
        _copy_host_file(root, f)
    for bindir in (root / "sbin", root / "usr/sbin"):
        if (bindir / "lvm").exists():
            for tool in ("vgchange", "vgimport", "vgscan", "vgs", "lvs", "pvs", "vgmknodes", "lvchange"):
                if not (bindir / tool).exists():
                    os.symlink("lvm", bindir / tool)
    order = []
    for ko in module_files(kparts, modules):
        rel = Path("lib/modules") / kparts.version / ko.relative_to(kparts.modules_dir)
        dest = root / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ko, dest)
        order.append("/" + str(rel))
    (root / "etc/sanbos/modules").write_text("\n".join(order) + "\n")
    (root / "etc/lvm/lvm.conf").write_text(LVM_CONF)
    (root / "init").write_text(init)
    (root / "init").chmod(0o755)


def _prune(d: Path, pattern: str, keep: int) -> None:
    """Remove all but the ``keep`` newest cached archives matching ``pattern`` (the cache
    key changes with the source tree, so old archives would pile up)."""
    files = sorted(d.glob(pattern), key=lambda p: p.stat().st_mtime, reverse=True)
    for old in files[keep:]:
        try:
            old.unlink()
        except OSError:
            pass


def build_base_initrd(kparts: KernelParts, *, cache: str | os.PathLike[str] | None = None,
                      modules: Sequence[str] = LVM_GUEST_MODULES,
                      binaries: Sequence[str] = LVM_GUEST_BINARIES) -> Path:
    """The cached base archive: busybox, modules, lvm/e2fsck with libraries, init."""
    d = cache_dir(cache) / "guest"
    d.mkdir(exist_ok=True)
    key = _base_key(kparts, modules, binaries)
    out = d / f"lvm-guest-{kparts.version}-{key}.cpio.gz"
    with _cache_lock(d, "base"):
        if out.exists():
            return out
        with tempfile.TemporaryDirectory(prefix="guest-root.", dir=d) as tmp:
            root = Path(tmp)
            _stage_base(root, kparts, modules, binaries, cache, INIT)
            partial = out.with_suffix(".part")
            with open(partial, "wb") as fh:
                _pack_newc(root, fh, compress=True)
            partial.rename(out)
        _prune(d, f"lvm-guest-{kparts.version}-*.cpio.gz", keep=6)
    return out


def build_lvm_guest_initrd(kernel_parts: KernelParts, out: str | os.PathLike[str], script: str, *,
                           cache: str | os.PathLike[str] | None = None) -> Path:
    """Write an initramfs to ``out`` whose /init runs ``script`` and powers off."""
    base = build_base_initrd(kernel_parts, cache=cache)
    out = Path(out)
    with tempfile.TemporaryDirectory(prefix="guest-script.") as tmp:
        root = Path(tmp)
        (root / "etc/sanbos").mkdir(parents=True)
        s = root / "etc/sanbos/script.sh"
        s.write_text(script if script.endswith("\n") else script + "\n")
        s.chmod(0o755)
        with open(out, "wb") as fh:
            with open(base, "rb") as b:
                shutil.copyfileobj(b, fh)
            _pack_newc(root, fh, compress=True)
    return out


# --------------------------------------------------------------------------
# running


@dataclass(frozen=True)
class GuestDisk:
    """A disk given to the guest: ``snapshot`` keeps the image unchanged.

    ``bus="scsi"`` attaches it as a SCSI disk (virtio-scsi), which also carries
    ``wwn`` (what the maintenance console shows); virtio-blk has a serial only.
    """

    path: Path
    serial: str = ""
    snapshot: bool = True
    wwn: str = ""
    bus: str = "virtio"


@dataclass
class GuestRun:
    """What a guest run produced."""

    report: str            # the script's standard output (report serial port)
    console: str           # kernel messages and the script's standard error
    rc: int | None         # the script's exit status (None: it never finished)
    seconds: float         # QEMU start to QEMU exit
    initrd_size: int = 0
    argv: list[str] = field(default_factory=list)

    def section(self, name: str) -> str:
        """Text between ``==NAME==`` and the next ``==...==`` line of the report."""
        out: list[str] = []
        inside = False
        for line in self.report.splitlines():
            if re.fullmatch(r"==[A-Za-z0-9_.:/-]+==", line.strip()):
                if inside:
                    break
                inside = line.strip() == f"=={name}=="
                continue
            if inside:
                out.append(line)
        return "\n".join(out)


def _as_disks(disks: Sequence[GuestDisk | str | os.PathLike[str]]) -> list[GuestDisk]:
    gdisks = [d if isinstance(d, GuestDisk) else GuestDisk(Path(d)) for d in disks]
    for d in gdisks:
        if not Path(d.path).exists():
            raise NotFoundError(f"{d.path}: no such disk image for the guest")
    return gdisks


def qemu_argv(kparts: KernelParts, initrd: Path, disks: Sequence[GuestDisk], console: Path,
              report: Path | None, *, memory: int = 512, kvm: bool = False, append: str = "",
              cpus: int = 1) -> list[str]:
    """The QEMU command line (core.qemu) for a direct kernel boot of the guest."""
    from . import qemu

    drives = [qemu.Drive(str(d.path), serial=d.serial or None, readonly=d.snapshot, wwn=d.wwn or None,
                         bus=d.bus) for d in disks]
    extra = ["-serial", f"file:{report}"] if report is not None else []
    cmdline = f"console=ttyS0 quiet loglevel=3 panic=-1 sanbos.disks={len(disks)} {append}".strip()
    opts = qemu.Options(kvm=kvm, memory=memory, cpus=cpus, kernel=str(kparts.vmlinuz), initrd=str(initrd),
                        append=cmdline, extra=extra)
    argv = qemu.command(drives, console, opts)
    argv[0] = which(argv[0])
    return argv


def boot_and_report(kparts: KernelParts, initrd: Path, disks: Sequence[GuestDisk], timeout: float, wd: Path, *,
                    memory: int = 512, kvm: bool = False, append: str = "") -> GuestRun:
    """Boot ``initrd`` (whose /init follows the report protocol) and collect the report.

    The QEMU process is ended by its own PID if it is still running at
    ``timeout`` or when anything goes wrong.
    """
    console, report = wd / "console.log", wd / "report.log"
    for f in (console, report):
        f.write_bytes(b"")
    argv = qemu_argv(kparts, initrd, disks, console, report, memory=memory, kvm=kvm, append=append)
    t0 = time.monotonic()
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        try:
            _, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()          # this exact process, nothing else
            proc.communicate()
            text = report.read_text(errors="replace")
            raise GuestError(f"QEMU guest ({wd}) did not finish within {timeout:.0f} s and was stopped; "
                             f"console ends: {_tail(console)}; report ends: {text[-300:]!r}") from None
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    seconds = time.monotonic() - t0
    raw = report.read_text(errors="replace").replace("\r", "")
    con = console.read_text(errors="replace").replace("\r", "")
    if proc.returncode != 0 and BEGIN_MARK not in raw:
        raise ToolError(f"qemu-system-x86_64 failed (exit {proc.returncode}): "
                        f"{err.decode(errors='replace').strip()[-400:]}")
    if BEGIN_MARK not in raw:
        raise GuestError(f"QEMU guest ({wd}) never reached its script; console ends: {_tail(console)}")
    body = raw.split(BEGIN_MARK, 1)[1].lstrip("\n")
    rc = None
    m = re.search(re.escape(RC_MARK) + r"(\d+)@@", body)
    if m:
        rc = int(m.group(1))
        body = body[:m.start()]
    return GuestRun(report=body, console=con, rc=rc, seconds=seconds,
                    initrd_size=initrd.stat().st_size, argv=argv)


@contextmanager
def _workdir(workdir: str | os.PathLike[str] | None) -> Iterator[Path]:
    if workdir is not None:
        wd = Path(workdir)
        wd.mkdir(parents=True, exist_ok=True)
        yield wd
        return
    with tempfile.TemporaryDirectory(prefix="sanbos-guest.") as tmp:
        yield Path(tmp)


def run_lvm_guest(disks: Sequence[GuestDisk | str | os.PathLike[str]], script: str, timeout: float = 180, *,
                  kernel: KernelParts | None = None, memory: int = 512, kvm: bool = False,
                  workdir: str | os.PathLike[str] | None = None, append: str = "",
                  cache: str | os.PathLike[str] | None = None) -> GuestRun:
    """Boot the LVM guest with ``disks`` (virtio, in order vda, vdb...) and run ``script``.

    Disks are attached with ``snapshot=on`` unless a ``GuestDisk`` says
    otherwise, so the guest's writes (LVM metadata, raid superblocks) never
    reach the images.
    """
    gdisks = _as_disks(disks)
    kparts = kernel or kernel_parts(cache)
    with _workdir(workdir) as wd:
        initrd = build_lvm_guest_initrd(kparts, wd / "initrd.img", script, cache=cache)
        return boot_and_report(kparts, initrd, gdisks, timeout, wd, memory=memory, kvm=kvm, append=append)


def run_maintenance_guest(disks: Sequence[GuestDisk | str | os.PathLike[str]], script: str,
                          timeout: float = 300, *, kernel: KernelParts | None = None, memory: int = 1536,
                          kvm: bool = False, workdir: str | os.PathLike[str] | None = None,
                          cache: str | os.PathLike[str] | None = None) -> GuestRun:
    """Boot the maintenance image in script mode (Python and sanbos available) and run ``script``."""
    gdisks = _as_disks(disks)
    kparts = kernel or kernel_parts(cache)
    with _workdir(workdir) as wd:
        initrd = build_maintenance_initrd(kparts, wd / "initrd.img", cache=cache, script=script)
        return boot_and_report(kparts, initrd, gdisks, timeout, wd, memory=memory, kvm=kvm,
                               append="sanbos.mode=script")


def _tail(path: Path, n: int = 400) -> str:
    try:
        text = path.read_text(errors="replace").replace("\r", "").strip()
    except OSError:
        return "(no console log)"
    return repr(text[-n:]) if text else "(nothing on the console)"


# --------------------------------------------------------------------------
# the maintenance image: the same kernel, with Python, sanbos and its tools

#: modules of the maintenance image: the LVM guest's plus SCSI disks (which carry WWNs)
MAINTENANCE_MODULES = LVM_GUEST_MODULES + ("virtio_scsi", "sd_mod", "ahci", "sr_mod", "isofs", "vfat",
                                           "nls_cp437", "nls_ascii")

#: host tools sanbos runs (core.tools.run) that the maintenance image carries
MAINTENANCE_BINARIES = LVM_GUEST_BINARIES + (
    "/usr/bin/python3.11", "/usr/sbin/mke2fs", "/usr/sbin/debugfs", "/usr/sbin/resize2fs",
    "/usr/sbin/dumpe2fs", "/usr/sbin/e2image", "/usr/sbin/blkid", "/usr/sbin/mkfs.fat", "/usr/sbin/fsck.fat",
    "/usr/bin/mcopy", "/usr/bin/mmd", "/usr/bin/mtype", "/usr/bin/mdir", "/usr/bin/grub-mkimage",
    "/usr/bin/dpkg-deb", "/usr/bin/tar", "/usr/bin/xz", "/usr/bin/zstd", "/usr/bin/gzip",
    "/usr/bin/kmod", "/usr/bin/bash", "/usr/bin/ldd", "/usr/bin/dpkg",
)

#: data directories the tools need
MAINTENANCE_DATA = ("/usr/lib/grub/i386-pc", "/usr/lib/grub/x86_64-efi", "/etc/mke2fs.conf",
                    # iconv code pages mtools converts FAT names with
                    "/usr/lib/x86_64-linux-gnu/gconv/gconv-modules",
                    "/usr/lib/x86_64-linux-gnu/gconv/gconv-modules.cache",
                    "/usr/lib/x86_64-linux-gnu/gconv/gconv-modules.d",
                    "/usr/lib/x86_64-linux-gnu/gconv/IBM850.so",
                    "/usr/lib/x86_64-linux-gnu/gconv/IBM437.so")

#: stdlib parts the console never uses
_STDLIB_SKIP = {"test", "idlelib", "tkinter", "turtledemo", "ensurepip", "lib2to3", "pydoc_data",
                "config-3.11-x86_64-linux-gnu", "dist-packages", "site-packages", "venv", "distutils"}

MAINTENANCE_INIT = busybox_init(r"""
mount -t tmpfs tmpfs /run
mkdir -p /run/lock/lvm /dev/pts
mount -t devpts devpts /dev/pts
while read -r m; do insmod "$m" >/dev/null 2>&1; done < /etc/sanbos/modules
want=$(sed -n 's/.*sanbos\.disks=\([0-9]*\).*/\1/p' /proc/cmdline)
n=0
while [ "$(ls -d /sys/block/sd* /sys/block/vd* 2>/dev/null | wc -l)" -lt "${want:-0}" ] && [ $n -lt 100 ]; do
    sleep 0.1; n=$((n + 1))
done
mode=$(sed -n 's/.*sanbos\.mode=\([a-z]*\).*/\1/p' /proc/cmdline)
rows=$(sed -n 's/.*sanbos\.rows=\([0-9]*\).*/\1/p' /proc/cmdline)
cols=$(sed -n 's/.*sanbos\.cols=\([0-9]*\).*/\1/p' /proc/cmdline)
stty -F /dev/ttyS0 rows ${rows:-30} cols ${cols:-100} 2>/dev/null
echo "sanbos maintenance image: $(ls /sys/block | tr '\n' ' ')"
case "${mode:-console}" in
script)
    stty -F /dev/ttyS1 raw -echo 2>/dev/null
    exec 3>/dev/ttyS1
    echo "@@SANBOS-GUEST-BEGIN@@" >&3
    sh /etc/sanbos/script.sh >&3 2>/dev/console
    rc=$?
    echo "@@SANBOS-GUEST-RC=$rc@@" >&3
    exec 3>&-
    ;;
shell)
    setsid cttyhack sh
    ;;
*)
    echo "SANBOS-MAINTENANCE-CONSOLE"
    # the same console on the first virtual terminal (the machine's own screen and
    # keyboard); when the operator leaves it there it is offered again, and the
    # machine powers off from either console
    if [ -c /dev/tty1 ]; then
        setsid sh -c 'exec </dev/tty1 >/dev/tty1 2>&1
            while :; do
                TERM=linux python3.11 -m console.cli console --vt
                clear
                printf "\nsanbos console ended. Enter: start it again; p: power off: "
                read -r a
                case "$a" in p*|P*) sync; poweroff -f ;; esac
            done' &
    fi
    TERM=linux setsid cttyhack python3.11 -m console.cli console --vt
    echo "sanbos console ended ($?)"
    ;;
esac
sync
poweroff -f
""", dirs=["/mnt", "/root", "/var/tmp"], path="/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    env="HOME=/root PYTHONDONTWRITEBYTECODE=1 SANBOS_CACHE=/var/cache/sanbos")


def _runtime_distributions(root_dist: str = "sanbos") -> list:
    """The installed distributions ``root_dist`` needs at run time (no extras), recursively."""
    import importlib.metadata as md

    seen: dict[str, object] = {}
    todo = [root_dist]
    while todo:
        name = todo.pop()
        key = re.sub(r"[-_.]+", "-", name).lower()
        if key in seen:
            continue
        try:
            dist = md.distribution(name)
        except md.PackageNotFoundError:
            continue
        seen[key] = dist
        for req in dist.requires or []:
            if "extra ==" in req.replace("extra==", "extra =="):
                continue
            m = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", req)
            if m:
                todo.append(m.group(1))
    seen.pop("sanbos", None)
    return list(seen.values())


def _stage_python(root: Path) -> list[Path]:
    """Debian's python3.11 stdlib, the runtime dependencies and sanbos itself; returns the
    extension modules (for their libraries)."""
    src = Path("/usr/lib/python3.11")
    if not src.is_dir():
        raise NotFoundError("/usr/lib/python3.11 is missing: install Debian's python3.11 (scripts/setup.sh)")
    dst = root / "usr/lib/python3.11"

    def skip(d: str, names: list[str]) -> set[str]:
        return {n for n in names if (Path(d) == src and n in _STDLIB_SKIP)}

    shutil.copytree(src, dst, symlinks=True, ignore=skip)
    site = root / "usr/lib/python3/dist-packages"
    site.mkdir(parents=True, exist_ok=True)
    exts: list[Path] = [p for p in dst.rglob("*.so")]
    for dist in _runtime_distributions():
        for f in dist.files or []:
            if str(f).startswith("..") or "__pycache__" in f.parts:
                continue
            path = Path(dist.locate_file(f))
            if not path.is_file():
                continue
            dest = site / f
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, dest)
            if dest.suffix == ".so":
                exts.append(dest)
    repo_root = Path(__file__).resolve().parent.parent
    for pkg in ("core", "console"):
        shutil.copytree(repo_root / pkg, site / pkg, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    return exts


#: where the maintenance root records what it is made of
CONTENTS_FILE = "etc/sanbos/contents.json"


def _host_candidates(rel: str) -> list[str]:
    """Host paths a staged file may have come from (``_copy_host_file`` moves
    /usr/lib/x86_64-linux-gnu to /lib/x86_64-linux-gnu)."""
    # merged /usr: dpkg may list /bin/tar for what is /usr/bin/tar here, and the other way round
    return ["/" + rel, "/" + rel[4:] if rel.startswith("usr/") else "/usr/" + rel]


def _dpkg_owners(paths: Sequence[str]) -> dict[str, str]:
    """{host path: Debian package} for the paths dpkg's database lists."""
    owners: dict[str, str] = {}
    todo = list(paths)
    for i in range(0, len(todo), 1000):
        res = run(["dpkg-query", "-S", *todo[i:i + 1000]], what="dpkg-query -S", check=False)
        for line in res.stdout.decode(errors="replace").splitlines():
            if line.startswith("diversion ") or ": /" not in line:
                continue
            pkgs, path = line.split(": /", 1)
            owners["/" + path] = pkgs.split(",")[0].strip().split(":")[0]
    return owners


def _contents_path(initrd: Path) -> Path:
    """The side file that records what a built maintenance initramfs carries."""
    name = initrd.name[:-len(".cpio.gz")] if initrd.name.endswith(".cpio.gz") else initrd.name
    return initrd.with_name(name + ".contents.json")


def _other_kind(rel: str) -> str:
    if rel.startswith(("lib/modules/", "var/cache/sanbos/")):
        return "kernel"
    if rel.startswith(("usr/lib/python3/dist-packages/core/", "usr/lib/python3/dist-packages/console/")) \
            or rel == "usr/bin/sanbos":
        return "sanbos"
    if rel.startswith("usr/lib/python3/dist-packages/"):
        return "python_distributions"
    if "/__pycache__/" in rel:
        return "bytecode"          # compiled from the packages' .py files by Debian's py3compile
    return "made_here"


def root_contents(root: Path, kparts: KernelParts) -> dict:
    """What a staged maintenance root is made of: for every file copied from the
    host, the Debian package that owns it (from dpkg's database) and the packages'
    versions; the kernel package; the Python distributions; files of sanbos's own."""
    import importlib.metadata as md

    rels = sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file() and not p.is_symlink())
    cand = {rel: [c for c in _host_candidates(rel) if os.path.lexists(c)] for rel in rels}
    owners = _dpkg_owners(sorted({c for cs in cand.values() for c in cs}))
    files: dict[str, dict[str, str]] = {}
    other: list[str] = []
    for rel in rels:
        # a host file counts only when the staged bytes are its bytes (lvm.conf, say, is ours)
        hit = next((c for c in cand[rel] if c in owners
                    and filecmp.cmp(root / rel, os.path.realpath(c), shallow=False)), None)
        if hit is None:
            other.append(rel)
        else:
            files[rel] = {"package": owners[hit], "host": hit}
    pkgs = sorted({f["package"] for f in files.values()})
    versions: dict[str, str] = {}
    if pkgs:
        res = run(["dpkg-query", "-W", "-f", "${Package}\t${Version}\n", *pkgs], what="dpkg-query -W",
                  check=False)
        for line in res.stdout.decode(errors="replace").splitlines():
            name, _, ver = line.partition("\t")
            versions[name.split(":")[0]] = ver
    dists = {d.metadata["Name"]: d.version for d in _runtime_distributions()}
    try:
        sanbos_version = md.version("sanbos")
    except md.PackageNotFoundError:
        sanbos_version = "source tree"
    return {
        "debian_packages": {p: versions.get(p, "?") for p in pkgs},
        "kernel": {"package": kparts.package or f"linux-image-{kparts.version}", "version": kparts.version},
        "python_distributions": dict(sorted(dists.items())),
        "sanbos": sanbos_version,
        "files_from_packages": len(files),
        "files_other": {k: sum(1 for r in other if _other_kind(r) == k)
                        for k in ("kernel", "sanbos", "python_distributions", "bytecode", "made_here")},
        "made_here": [r for r in other if _other_kind(r) == "made_here"],
        "files": files,
    }


def _stage_kernel_cache(cache: Path, kparts: KernelParts) -> None:
    """The kernel in the guest's sanbos cache, laid out as ``core.debparts`` leaves it, so
    that an install inside the guest (``core.install.kernel_for``) finds it without apt:
    the unpacked tree (vmlinuz, modules.* and the modules sanbos's initramfs builders
    use) with its ``.complete`` marker, and an empty stand-in for the .deb that names
    the package."""
    stem = f"{kparts.package or 'linux-image-' + kparts.version}_local_amd64"
    tree = cache / "kernel" / stem
    mods = tree / "lib/modules" / kparts.version
    (tree / "boot").mkdir(parents=True)
    mods.mkdir(parents=True)
    shutil.copy2(kparts.vmlinuz, tree / "boot" / kparts.vmlinuz.name)
    for f in kparts.modules_dir.glob("modules.*"):
        shutil.copy2(f, mods / f.name)
    from .install import ROOT_MODULES
    names = tuple(dict.fromkeys(MAINTENANCE_MODULES + tuple(ROOT_MODULES)))
    for ko in module_files(kparts, names):
        dest = mods / ko.relative_to(kparts.modules_dir)
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ko, dest)
    (tree / ".complete").write_text(f"{stem}.deb\n")
    (cache / "debs").mkdir(parents=True, exist_ok=True)
    (cache / "debs" / f"{stem}.deb").write_bytes(b"")


def _maintenance_key(kparts: KernelParts) -> str:
    h = hashlib.sha256(_base_key(kparts, MAINTENANCE_MODULES, LVM_GUEST_BINARIES).encode())
    h.update(MAINTENANCE_INIT.encode())
    repo_root = Path(__file__).resolve().parent.parent
    for pkg in ("core", "console"):
        for p in sorted((repo_root / pkg).rglob("*")):
            if p.is_file() and "__pycache__" not in p.parts:
                st = p.stat()
                h.update(f"{p}:{st.st_size}:{st.st_mtime_ns}".encode())
    for b in MAINTENANCE_BINARIES:
        h.update(b.encode())
    h.update(str(_LAYOUT_VERSION).encode())
    return h.hexdigest()[:16]


def build_maintenance_initrd(kparts: KernelParts, out: str | os.PathLike[str], *,
                             cache: str | os.PathLike[str] | None = None, script: str | None = None) -> Path:
    """The maintenance initramfs: the LVM guest plus Debian's Python 3.11, sanbos
    (``core``, ``console``) with its runtime dependencies, and the tools sanbos runs.

    Its /init starts ``sanbos console`` on the serial console and on tty1 (``sanbos.mode=console``,
    the default), a shell (``sanbos.mode=shell``), or runs ``script`` with the
    report protocol of ``run_lvm_guest`` (``sanbos.mode=script``).  The base archive
    is cached per kernel and source tree; ``script`` is appended as a second archive.
    """
    d = cache_dir(cache) / "guest"
    d.mkdir(exist_ok=True)
    base = d / f"maintenance-{kparts.version}-{_maintenance_key(kparts)}.cpio.gz"
    with _cache_lock(d, "maintenance"):
        if not base.exists():
            with tempfile.TemporaryDirectory(prefix="maint-root.", dir=d) as tmp:
                root = Path(tmp)
                bins = [b for b in MAINTENANCE_BINARIES if os.path.exists(b)]
                _stage_base(root, kparts, MAINTENANCE_MODULES, bins, cache, MAINTENANCE_INIT)
                exts = _stage_python(root)
                libs: set[str] = set()
                for so in exts:
                    libs.update(_ldd(str(so)))
                for lib in sorted(libs):
                    _copy_host_file(root, Path(lib))
                for item in MAINTENANCE_DATA:
                    p = Path(item)
                    if p.is_dir() and str(p).startswith("/usr/lib/x86_64-linux-gnu/"):
                        shutil.copytree(p, root / "lib" / p.relative_to("/usr/lib"), dirs_exist_ok=True)
                    elif p.is_dir():
                        shutil.copytree(p, root / p.relative_to("/"), dirs_exist_ok=True)
                    elif p.is_file():
                        _copy_host_file(root, p)
                (root / "usr/bin/python3").symlink_to("python3.11")
                for tool in ("modprobe", "depmod", "insmod", "lsmod"):
                    link = root / "sbin" / tool
                    if not link.exists():
                        link.symlink_to("/usr/bin/kmod")
                if not (root / "bin/bash").exists():
                    (root / "bin/bash").symlink_to("/usr/bin/bash")
                _stage_kernel_cache(root / "var/cache/sanbos", kparts)
                sanbos = root / "usr/bin/sanbos"
                sanbos.write_text("#!/bin/sh\nexec python3.11 -m console.cli \"$@\"\n")
                sanbos.chmod(0o755)
                if not (root / "usr/lib/x86_64-linux-gnu").exists():
                    (root / "usr/lib/x86_64-linux-gnu").symlink_to("../../lib/x86_64-linux-gnu")
                for sub in ("var/cache/sanbos", "var/tmp", "root", "etc", "var/lib/dpkg/info",
                            "var/lib/dpkg/updates"):
                    (root / sub).mkdir(parents=True, exist_ok=True)
                (root / "var/lib/dpkg/status").write_text("")
                (root / "etc/passwd").write_text("root:x:0:0:root:/root:/bin/sh\n")
                (root / "etc/group").write_text("root:x:0:\ndisk:x:6:\n")
                contents = root_contents(root, kparts)
                (root / CONTENTS_FILE).write_text(json.dumps(contents, indent=1, sort_keys=True) + "\n")
                summary = {k: v for k, v in contents.items() if k != "files"}
                _contents_path(base).write_text(json.dumps(summary, indent=1, sort_keys=True) + "\n")
                partial = base.with_suffix(".part")
                with open(partial, "wb") as fh:
                    _pack_newc(root, fh, compress=True)
                partial.rename(base)
            _prune(d, f"maintenance-{kparts.version}-*.cpio.gz", keep=2)
            for side in d.glob(f"maintenance-{kparts.version}-*.contents.json"):
                if not (d / side.name.replace(".contents.json", ".cpio.gz")).exists():
                    side.unlink(missing_ok=True)
    out = Path(out)
    if _contents_path(base).exists():
        shutil.copyfile(_contents_path(base), _contents_path(out))
    with open(out, "wb") as fh:
        with open(base, "rb") as b:
            shutil.copyfileobj(b, fh)
        if script is not None:
            with tempfile.TemporaryDirectory(prefix="guest-script.") as tmp:
                root = Path(tmp)
                (root / "etc/sanbos").mkdir(parents=True)
                s = root / "etc/sanbos/script.sh"
                s.write_text(script if script.endswith("\n") else script + "\n")
                s.chmod(0o755)
                _pack_newc(root, fh, compress=True)
    return out


#: vCPUs of a maintenance machine: the consoles on the serial line and on tty1 start
#: side by side (bench/guest.py, TCG, SeaBIOS + GRUB to the first screen: ~33 s with
#: one vCPU, ~25 s with two)
MAINTENANCE_CPUS = 2


def console_argv(kparts: KernelParts, initrd: Path, disks: Sequence[GuestDisk], *, rows: int = 30,
                 cols: int = 100, memory: int = 1536, kvm: bool = False, cpus: int = MAINTENANCE_CPUS) -> list[str]:
    """QEMU command line for the maintenance image in console mode, its serial
    console on QEMU's standard input/output (for a terminal, pexpect or tmux)."""
    marker = Path("/nonexistent/sanbos-console-marker")
    argv = qemu_argv(kparts, initrd, list(disks), marker, None, memory=memory, kvm=kvm, cpus=cpus,
                     append=f"sanbos.mode=console sanbos.rows={rows} sanbos.cols={cols}")
    argv[argv.index(f"file:{marker}")] = "stdio"
    return argv


MAINTENANCE_CMDLINE = "console=ttyS0,115200 quiet loglevel=3 panic=-1 sanbos.mode=console sanbos.rows=30 sanbos.cols=100"


def build_maintenance_image(out: str | os.PathLike[str], *, kernel: KernelParts | None = None,
                            cmdline: str = MAINTENANCE_CMDLINE, cache: str | os.PathLike[str] | None = None,
                            progress=None):
    """The generic maintenance boot image (``core.bootimage`` format: ext2 with vmlinuz,
    initrd.img, cmdline, SHA256SUMS, manifest) whose initramfs runs ``sanbos console``
    on the serial console and on tty1; ``core.bootcopy.mirror`` puts it on every boot disk.
    Returns the ``bootimage.ImageInfo``."""
    from . import bootimage

    say = progress or (lambda msg, frac=None: None)
    kparts = kernel or kernel_parts(cache)
    say(f"kernel {kparts.version}", 0.05)
    with tempfile.TemporaryDirectory(prefix="sanbos-maint.") as tmp:
        initrd = build_maintenance_initrd(kparts, Path(tmp) / "initrd.img", cache=cache)
        say(f"maintenance initramfs {initrd.stat().st_size / 2**20:.1f} MiB (python3.11, sanbos, tools)", 0.8)
        side = _contents_path(initrd)
        contents = json.loads(side.read_text()) if side.exists() else None
        info = bootimage.build(kparts.vmlinuz, initrd, cmdline, out, source="sanbos maintenance image",
                               contents=contents)
    say(f"maintenance boot image {out}", 1.0)
    return info
