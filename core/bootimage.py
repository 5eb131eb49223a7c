"""The generic maintenance boot image that every boot disk carries.

The image is a small **ext2 file-system image** (GRUB's ``ext2`` module and
e2fsprogs both read it) holding::

    vmlinuz        the kernel (an x86 bzImage: "HdrS" at byte 0x202)
    initrd.img     the initramfs (gzip/xz/zstd-compressed or plain newc cpio)
    cmdline        the kernel command line, one line
    SHA256SUMS     sha256sum format ("<hex>  <name>") for vmlinuz, initrd.img,
                   cmdline: GRUB checks it with ``hashsum --check``
    sanbos-boot.json  the manifest (format, version, kernel version, sizes,
                   SHA-256s, cmdline, where the parts came from)

The image file is copied byte for byte onto each boot copy (core.bootcopy);
its own SHA-256 is what the engine records per copy.

``demo_initrd`` builds the demo initramfs from busybox-static: its ``/init``
prints ``SANBOS BOOT OK copy=<sanbos.copy from /proc/cmdline>`` on the
console and powers the machine off.
"""

from __future__ import annotations

import errno
import gzip
import hashlib
import json
import os
import re
import shutil
import struct
import tempfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from . import cpio, debparts, ext4
from .checksum import sha256_file
from .disk import Disk
from .errors import FormatError, NotFoundError, SpaceError, ToolError, UsageError
from .tools import input_file, output_file, run, which
from .units import MiB, align_up

FORMAT = "sanbos-bootimage"
VERSION = 1
MANIFEST = "sanbos-boot.json"
SUMS = "SHA256SUMS"
KERNEL = "vmlinuz"
INITRD = "initrd.img"
CMDLINE = "cmdline"
LABEL = "sanbos-boot"
DEFAULT_CMDLINE = "console=ttyS0,115200 quiet panic=-1"
BANNER = "SANBOS BOOT OK"
#: the regular expression tests and the console use to find the banner
BANNER_RE = re.compile(r"SANBOS BOOT OK copy=(\S+)")
_FIXED_TIME = 1700000000

Progress = Callable[[str, float], None]


def _noprogress(msg: str, frac: float) -> None:
    pass


# -- validation ---------------------------------------------------------------

def _head(p: Path, what: str, n: int) -> bytes:
    try:
        with open(p, "rb") as f:
            return f.read(n)
    except OSError as e:
        raise FormatError(f"{what} {p}: cannot read it: {e.strerror}") from None


def kernel_version(data: bytes) -> str:
    """The version string a bzImage carries (setup header ``kernel_version``)."""
    if len(data) < 0x210:
        return ""
    ptr, = struct.unpack_from("<H", data, 0x20E)
    if not ptr or ptr + 0x200 >= len(data):
        return ""
    raw = data[ptr + 0x200: ptr + 0x200 + 128].split(b"\0", 1)[0]
    return raw.decode(errors="replace").split(" ", 1)[0]


def validate_kernel(path: str | os.PathLike[str]) -> str:
    """Refuse anything that is not an x86 Linux bzImage; return its version."""
    p = input_file(path, "kernel")
    head = _head(p, "kernel", 0x10000)
    if len(head) < 0x210 or head[0x202:0x206] != b"HdrS":
        raise FormatError(f"kernel {p}: not a Linux kernel (no bzImage 'HdrS' header magic at byte 0x202)")
    if head[0x1FE:0x200] != b"\x55\xaa":
        raise FormatError(f"kernel {p}: not a bootable bzImage (no 0x55AA boot signature at byte 0x1FE)")
    proto, = struct.unpack_from("<H", head, 0x206)
    if proto < 0x0200:
        raise FormatError(f"kernel {p}: boot protocol {proto >> 8}.{proto & 0xff} is too old for GRUB's linux loader")
    return kernel_version(head)


_INITRD_MAGICS = [
    (b"\x1f\x8b", "gzip"), (b"070701", "cpio"), (b"070702", "cpio"),
    (b"\xfd7zXZ\x00", "xz"), (b"\x28\xb5\x2f\xfd", "zstd"),
]


def validate_initrd(path: str | os.PathLike[str]) -> str:
    """Refuse anything that is not an initramfs; return its format (gzip, cpio, ...)."""
    p = input_file(path, "initrd")
    head = _head(p, "initrd", 1 << 16)
    kind = next((k for magic, k in _INITRD_MAGICS if head.startswith(magic)), None)
    if kind is None:
        raise FormatError(f"initrd {p}: not an initramfs (neither a newc cpio archive nor gzip, xz or zstd)")
    if kind == "gzip":
        try:
            inner = zlib.decompressobj(16 + zlib.MAX_WBITS).decompress(head, 16)
        except zlib.error as e:
            raise FormatError(f"initrd {p}: corrupt gzip data ({e})") from None
        if not inner.startswith((b"070701", b"070702")):
            raise FormatError(f"initrd {p}: gzip data that is not a newc cpio archive")
    return kind


def validate(kernel: str | os.PathLike[str], initrd: str | os.PathLike[str]) -> tuple[str, str]:
    """Check both parts; returns (kernel version, initrd format) or raises FormatError/NotFoundError."""
    return validate_kernel(kernel), validate_initrd(initrd)


# -- build --------------------------------------------------------------------

@dataclass
class ImageInfo:
    """What ``inspect`` found in a boot image."""

    path: str
    size: int
    sha256: str
    manifest: dict
    files: dict[str, int] = field(default_factory=dict)   # name -> size
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def cmdline(self) -> str:
        return str(self.manifest.get("cmdline", ""))

    def to_json(self) -> dict:
        return {"path": self.path, "size": self.size, "sha256": self.sha256, "ok": self.ok,
                "manifest": self.manifest, "files": self.files, "problems": self.problems}


def _check_cmdline(cmdline: str | None) -> str:
    cmdline = (DEFAULT_CMDLINE if cmdline is None else cmdline).strip()
    if any(ord(c) < 32 for c in cmdline) or '"' in cmdline or "$" in cmdline:
        raise UsageError("cmdline: must be one line without quotes or '$' (GRUB would interpret them)")
    return cmdline


def build(kernel: str | os.PathLike[str], initrd: str | os.PathLike[str], cmdline: str | None,
          out: str | os.PathLike[str], *, source: str = "", size: int | None = None,
          contents: dict | None = None, kernel_source: str | None = None,
          initrd_source: str | None = None) -> ImageInfo:
    """Pack ``kernel`` + ``initrd`` + ``cmdline`` into the ext2 boot image ``out``.

    Refuses (before writing anything) a kernel that is not a bzImage or an
    initrd that is not an initramfs.  ``size`` forces the image size (bytes);
    by default it is the content plus room for file-system overhead, rounded
    up to MiB.  ``contents`` (JSON-able) goes into the manifest as what the
    image carries, e.g. the Debian packages and versions of a maintenance root.
    The manifest names where the kernel and initrd came from: their paths as
    given, or ``kernel_source`` / ``initrd_source``.

    Reproducible: the same parts, cmdline, sources and size give the same
    bytes (fixed times, modes, file-system UUID and directory hash seed, the
    UUID and seed derived from the manifest).
    """
    cmdline = _check_cmdline(cmdline)
    kver = validate_kernel(kernel)
    ikind = validate_initrd(initrd)
    out = output_file(out, "boot image")
    with tempfile.TemporaryDirectory(prefix="sanbos-bootimage.") as tmp:
        src = Path(tmp) / "root"
        src.mkdir()
        shutil.copyfile(kernel, src / KERNEL)
        shutil.copyfile(initrd, src / INITRD)
        (src / CMDLINE).write_text(cmdline + "\n")
        sums = {n: sha256_file(src / n) for n in (KERNEL, INITRD, CMDLINE)}
        (src / SUMS).write_text("".join(f"{h}  {n}\n" for n, h in sums.items()))
        manifest = {
            "format": FORMAT, "version": VERSION,
            "kernel": {"file": KERNEL, "version": kver, "size": (src / KERNEL).stat().st_size,
                       "sha256": sums[KERNEL], "source": kernel_source or str(kernel)},
            "initrd": {"file": INITRD, "format": ikind, "size": (src / INITRD).stat().st_size,
                       "sha256": sums[INITRD], "source": initrd_source or str(initrd)},
            "cmdline": cmdline,
            "source": source,
        }
        if contents:
            manifest["contents"] = contents
        (src / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
        for f in src.iterdir():
            os.chmod(f, 0o644)                  # not whatever the umask gave
            os.utime(f, (_FIXED_TIME, _FIXED_TIME))
        os.chmod(src, 0o755)
        os.utime(src, (_FIXED_TIME, _FIXED_TIME))
        content = sum(f.stat().st_size for f in src.iterdir())
        want = size or align_up(content + content // 16 + 2 * MiB, MiB)
        tmp_out = out.with_name(out.name + ".tmp")
        digest = hashlib.sha256(json.dumps(manifest, sort_keys=True).encode()).hexdigest()
        uuid, seed = (f"{h[:8]}-{h[8:12]}-4{h[13:16]}-8{h[17:20]}-{h[20:32]}" for h in (digest[:32], digest[32:]))
        try:
            with open(tmp_out, "wb") as f:
                f.truncate(want)
            try:
                ext4.make(ext4.Target(tmp_out, 0, want, name=str(out)), src, label=LABEL, fstype="ext2",
                          uuid=uuid, hash_seed=seed, timestamp=_FIXED_TIME)
            except (SpaceError, ToolError) as e:
                raise SpaceError(f"boot image {out}: kernel + initrd ({content} bytes) do not fit in "
                                 f"{want} bytes ({e})") from None
            os.replace(tmp_out, out)
        except OSError as e:
            raise (SpaceError if e.errno == errno.ENOSPC else UsageError)(
                f"boot image {out}: cannot write it: {e.strerror or e}") from None
        finally:
            if tmp_out.exists():
                tmp_out.unlink()
    return inspect(out)


def inspect(image: str | os.PathLike[str] | ext4.Target, *, deep: bool = True) -> ImageInfo:
    """Read a boot image (file or byte range): manifest, files, problems.

    ``deep`` reads every file and checks it against SHA256SUMS.
    """
    target = image if isinstance(image, ext4.Target) else _file_target(image)
    label = target.label
    problems: list[str] = []
    if _ext2_magic(target) != b"\x53\xef":
        raise FormatError(f"boot image {label}: not a readable ext2 file system (no ext2 superblock magic at byte 1080)")
    try:
        names = ext4.listdir(target, "/")
    except (ToolError, FormatError) as e:
        raise FormatError(f"boot image {label}: not a readable ext2 file system ({e})") from None
    manifest: dict = {}
    if MANIFEST not in names:
        problems.append(f"{MANIFEST} is missing")
    else:
        try:
            manifest = json.loads(ext4.read_file(target, "/" + MANIFEST))
        except (ValueError, ToolError) as e:
            problems.append(f"{MANIFEST} is unreadable ({e})")
        problems += _manifest_problems(manifest)
        if not isinstance(manifest, dict):
            manifest = {}
    files: dict[str, int] = {}
    for n in (KERNEL, INITRD, CMDLINE, SUMS):
        if n not in names:
            problems.append(f"{n} is missing")
    if deep and not any("missing" in p for p in problems):
        data = {n: ext4.read_file(target, "/" + n) for n in (KERNEL, INITRD, CMDLINE, SUMS)}
        files = {n: len(b) for n, b in data.items()}
        for line in data[SUMS].decode(errors="replace").splitlines():
            parts = line.split(None, 1)
            if len(parts) != 2:
                continue
            want, name = parts[0], parts[1].lstrip("*")
            if name not in data:
                problems.append(f"{SUMS} names {name}, which is not in the image")
            elif hashlib.sha256(data[name]).hexdigest() != want:
                problems.append(f"{name} does not match its SHA-256 in {SUMS}")
        if data[KERNEL][0x202:0x206] != b"HdrS":
            problems.append(f"{KERNEL} is not a bzImage")
    sha = _sha256_target(target)
    return ImageInfo(path=label, size=target.size, sha256=sha, manifest=manifest, files=files, problems=problems)


def _manifest_problems(m: object) -> list[str]:
    """What is wrong with a parsed manifest's shape (a damaged one must not pass, nor crash a reader)."""
    if not isinstance(m, dict):
        return [f"{MANIFEST} is not a JSON object"]
    if m.get("format") != FORMAT:
        return [f"{MANIFEST} is not a {FORMAT} manifest"]
    out = []
    for key in ("kernel", "initrd"):
        part = m.get(key)
        if not isinstance(part, dict) or not isinstance(part.get("size"), int) \
                or not isinstance(part.get("sha256"), str):
            out.append(f"{MANIFEST}: its {key!r} entry is damaged (needs size and sha256)")
    if not isinstance(m.get("cmdline"), str):
        out.append(f"{MANIFEST}: its 'cmdline' is not text")
    else:
        try:
            _check_cmdline(m["cmdline"])
        except UsageError as e:
            out.append(f"{MANIFEST}: {e}")
    return out


def check(image: str | os.PathLike[str] | ext4.Target) -> ImageInfo:
    """``inspect`` and raise FormatError naming the first problem."""
    info = inspect(image)
    if info.problems:
        raise FormatError(f"boot image {info.path}: {'; '.join(info.problems)}")
    return info


def _file_target(image: str | os.PathLike[str]) -> ext4.Target:
    p = input_file(image, "boot image")
    return ext4.Target(p, 0, p.stat().st_size, name=str(p))


def _ext2_magic(t: ext4.Target) -> bytes:
    """The two superblock magic bytes of an ext2/3/4 file system at ``t`` (b"" when too short)."""
    if t.size < 2048:
        return b""
    try:
        with open(t.path, "rb") as f:
            f.seek(t.offset + 1080)
            return f.read(2)
    except OSError as e:
        raise FormatError(f"boot image {t.label}: cannot read it: {e.strerror}") from None


def _sha256_target(t: ext4.Target) -> str:
    h = hashlib.sha256()
    with Disk(t.path, name=t.label) as d:
        for b in d.range(t.offset, t.size).chunks():
            h.update(b)
    return h.hexdigest()


# -- the demo initramfs -------------------------------------------------------

_INIT = """#!/bin/busybox sh
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null
copy=unknown
for w in $(cat /proc/cmdline); do
  case "$w" in sanbos.copy=*) copy="${w#sanbos.copy=}" ;; esac
done
echo
echo "%(banner)s copy=$copy kernel=$(uname -r)"
echo "sanbos: %(title)s, booted from boot copy $copy"
%(extra)s
sync
poweroff -f
"""


def demo_initrd(out: str | os.PathLike[str], *, busybox: str | os.PathLike[str] | None = None,
                title: str = "maintenance boot image (demo)", extra_init: str = "",
                extra_files: dict[str, str | os.PathLike[str]] | None = None) -> Path:
    """A busybox-static initramfs whose /init prints the banner and powers off.

    Reproducible: the same busybox and arguments give the same bytes (``core.cpio.newc``:
    sorted entries, fixed inode numbers, owners and mtimes; gzip without name or time).

    ``extra_files`` maps paths inside the initramfs to local files (for
    guests that need more, e.g. kernel modules); ``extra_init`` is shell run
    before poweroff.
    """
    bb = Path(busybox) if busybox else debparts.busybox()
    out = Path(out)
    with tempfile.TemporaryDirectory(prefix="sanbos-initrd.") as tmp:
        root = Path(tmp) / "root"
        for d in ("bin", "sbin", "dev", "proc", "sys", "tmp", "etc", "usr/bin", "usr/sbin"):
            (root / d).mkdir(parents=True, exist_ok=True)
        shutil.copyfile(bb, root / "bin" / "busybox")
        os.chmod(root / "bin" / "busybox", 0o755)
        init = root / "init"
        init.write_text(_INIT % {"banner": BANNER, "title": title, "extra": extra_init})
        os.chmod(init, 0o755)
        for dest, src in (extra_files or {}).items():
            target = root / dest.lstrip("/")
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, target)
        for d in (root, *(p for p in root.rglob("*") if p.is_dir() and not p.is_symlink())):
            os.chmod(d, 0o755)                  # not whatever the umask gave
        data = cpio.newc(root, mtime=_FIXED_TIME)
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out, "wb") as f:                  # gzip -n: no name, no time in the header
        with gzip.GzipFile(filename="", fileobj=f, mode="wb", mtime=0, compresslevel=6) as gz:
            gz.write(data)
    return out


def demo(out: str | os.PathLike[str], *, cache: str | os.PathLike[str] | None = None,
         cmdline: str | None = None, progress: Progress | None = None) -> ImageInfo:
    """The demo maintenance boot image: Debian kernel + busybox demo initramfs."""
    progress = progress or _noprogress
    _check_cmdline(cmdline)              # refuse bad arguments before fetching and building
    output_file(out, "boot image")
    progress("fetching the Debian kernel", 0.0)
    k = debparts.kernel(cache)
    progress("building the busybox initramfs", 0.4)
    with tempfile.TemporaryDirectory(prefix="sanbos-demo.") as tmp:
        initrd = demo_initrd(Path(tmp) / "initrd.img")
        progress("packing the boot image", 0.7)
        info = build(k.vmlinuz, initrd, cmdline, out, source=f"demo: {k.package} + busybox-static",
                     kernel_source=f"{k.package}: {k.vmlinuz.name}", initrd_source="demo initramfs (busybox-static)")
    progress("boot image ready", 1.0)
    return info


# -- removable media ----------------------------------------------------------

_KERNEL_NAME = re.compile(r"^(vmlinuz.*|bzimage.*|linux|linux64|kernel|vmlinux\.efi)$", re.I)
_INITRD_NAME = re.compile(r"^(initrd.*|initramfs.*|initrd)$", re.I)


def iso_files(iso: str | os.PathLike[str]) -> list[str]:
    """Every regular file path on an ISO 9660 image (xorriso)."""
    res = run(["xorriso", "-indev", str(iso), "-find", "/", "-type", "f"], what=f"xorriso reading {iso}")
    out = []
    for line in res.stdout.decode(errors="replace").splitlines():
        line = line.strip()
        if line.startswith("'") and line.endswith("'"):
            line = line[1:-1]
        if line.startswith("/"):
            out.append(line)
    return out


_CFG_NAME = re.compile(r"(grub|loopback|isolinux|syslinux|txt|live|menu)[^/]*\.cfg$", re.I)
_SKIP_ARGS = re.compile(r"^(initrd=|BOOT_IMAGE=|---$|\$)")


def iso_cmdline(iso: str | os.PathLike[str], kernel_path: str, files: list[str] | None = None) -> str | None:
    """The kernel arguments the ISO's own boot menu (GRUB or ISOLINUX) gives ``kernel_path``."""
    files = files if files is not None else iso_files(iso)
    kname = kernel_path.rsplit("/", 1)[-1]
    with tempfile.TemporaryDirectory(prefix="sanbos-isocfg.") as tmp:
        for i, cfg in enumerate(f for f in files if _CFG_NAME.search(f)):
            dest = Path(tmp) / f"{i}.cfg"
            res = run(["xorriso", "-osirrox", "on", "-indev", str(iso), "-extract", cfg, str(dest)], check=False,
                      what=f"xorriso extracting {cfg}")
            if res.returncode != 0 or not dest.exists():
                continue
            lines = dest.read_text(errors="replace").splitlines()
            for j, line in enumerate(lines):
                words = line.split()
                if len(words) >= 2 and words[0] in ("linux", "linuxefi", "kernel") and \
                        words[1].rsplit("/", 1)[-1] == kname:
                    args = words[2:]
                    if words[0] == "kernel":  # ISOLINUX: the arguments are on a following "append" line
                        for nxt in lines[j + 1:j + 4]:
                            w = nxt.split()
                            if w and w[0].lower() == "append":
                                args = w[1:]
                                break
                    return " ".join(a for a in args if not _SKIP_ARGS.match(a))
    return None


def from_iso(iso: str | os.PathLike[str], out_dir: str | os.PathLike[str]) -> tuple[Path, Path]:
    """Find and extract the kernel and initramfs of a bootable Linux ISO: (kernel, initrd)."""
    _, k, i = _iso_parts(iso, out_dir)
    return k, i


def _iso_parts(iso: str | os.PathLike[str], out_dir: str | os.PathLike[str]) -> tuple[str, Path, Path]:
    """Find and extract the kernel and initramfs of a bootable Linux ISO.

    Kernel candidates (``vmlinuz*``, ``bzImage``, ``linux``...) are checked
    for the bzImage magic; the initramfs is the valid ``initrd*``/
    ``initramfs*`` closest to the kernel (same directory first).
    Returns (kernel path on the ISO, extracted kernel, extracted initrd).
    """
    iso = input_file(iso, "ISO")
    with open(iso, "rb") as f:
        f.seek(0x8001)
        if f.read(5) != b"CD001":
            raise FormatError(f"ISO {iso}: not an ISO 9660 image (no CD001 volume descriptor at byte 32769)")
    try:
        files = iso_files(iso)
    except ToolError as e:
        raise FormatError(f"ISO {iso}: not a readable ISO 9660 image ({e})") from None
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)

    def extract(path: str, name: str) -> Path:
        dest = out_dir / name
        if dest.exists():
            dest.unlink()
        run(["xorriso", "-osirrox", "on", "-indev", str(iso), "-extract", path, str(dest)],
            what=f"xorriso extracting {path} from {iso}")
        os.chmod(dest, 0o644)
        return dest

    kernels = [f for f in files if _KERNEL_NAME.match(os.path.basename(f))]
    initrds = [f for f in files if _INITRD_NAME.match(os.path.basename(f))]

    def first_valid(cands: list[str], tag: str, check: Callable[[Path], object]) -> tuple[str, Path] | None:
        for i, c in enumerate(cands):
            p = extract(c, f"{tag}.{i}")
            try:
                check(p)
            except FormatError:
                continue
            return c, p
        return None

    kernel = first_valid(kernels, "kernel", validate_kernel)
    if kernel is None:
        raise NotFoundError(f"ISO {iso}: no Linux kernel (bzImage) found among {len(files)} files")
    kdir = os.path.dirname(kernel[0])
    initrds.sort(key=lambda f: (os.path.dirname(f) != kdir, len(f), f))
    initrd = first_valid(initrds, "initrd", validate_initrd)
    if initrd is None:
        raise NotFoundError(f"ISO {iso}: kernel {kernel[0]} found but no initramfs (initrd*/initramfs*)")
    return kernel[0], kernel[1], initrd[1]


def build_from_iso(iso: str | os.PathLike[str], cmdline: str | None, out: str | os.PathLike[str]) -> ImageInfo:
    """A boot image from an ISO's kernel and initramfs.  Without ``cmdline``,
    the ISO's own menu arguments are used (plus a serial console if it names none)."""
    output_file(out, "boot image")      # before extracting anything from the ISO
    with tempfile.TemporaryDirectory(prefix="sanbos-iso.") as tmp:
        where, k, i = _iso_parts(iso, tmp)
        if cmdline is None:
            found = iso_cmdline(iso, where)
            if found is not None:
                words = [w for w in found.split() if not any(c in w for c in "\"'$;{}`")]
                if not any(w.startswith("console=") for w in words):
                    words.insert(0, "console=ttyS0,115200")
                cmdline = " ".join(words)
        return build(k, i, cmdline, out, source=f"iso: {Path(iso).name}")



def have_tools() -> list[str]:
    """Names of the tools this module needs that are missing."""
    missing = []
    for t in ("mke2fs", "debugfs", "xorriso"):
        try:
            which(t)
        except ToolError:
            missing.append(t)
    return missing
