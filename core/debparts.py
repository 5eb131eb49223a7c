"""Real parts from Debian, fetched without installing anything.

The kernel comes from the versioned ``linux-image-*`` package that
``apt-cache depends linux-image-amd64`` names: ``apt-get download`` puts the
.deb in the cache directory and ``dpkg-deb -x`` unpacks it there.  Both steps
are cached across runs (a ``.complete`` marker is written last, so a killed
run is redone, never half-used).  The busybox binary comes from
``busybox-static`` (the installed one, else the package unpacked the same way).

The cache directory is ``$SANBOS_CACHE`` or ``<repo>/cache`` (gitignored).
"""

from __future__ import annotations

import fcntl
import glob
import os
import re
import shutil
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from .errors import NotFoundError, ToolError
from .tools import run

REPO_ROOT = Path(__file__).resolve().parent.parent
KERNEL_META = "linux-image-amd64"


@dataclass(frozen=True)
class KernelParts:
    """An unpacked Debian kernel: the bzImage, its modules tree, its version."""

    vmlinuz: Path
    modules_dir: Path  # .../lib/modules/<version>
    version: str
    package: str = ""


def cache_dir(path: str | os.PathLike[str] | None = None) -> Path:
    """The cache directory (created): ``path``, ``$SANBOS_CACHE`` or ``<repo>/cache``."""
    d = Path(path) if path else Path(os.environ.get("SANBOS_CACHE") or REPO_ROOT / "cache")
    d.mkdir(parents=True, exist_ok=True)
    return d


@contextmanager
def _locked(d: Path) -> Iterator[None]:
    """Serialise fetches between processes sharing one cache."""
    fd = os.open(d / ".lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def kernel_package(meta: str = KERNEL_META) -> str:
    """The versioned kernel package the meta package depends on."""
    res = run(["apt-cache", "depends", meta], what=f"apt-cache depends {meta}")
    for line in res.stdout.decode(errors="replace").splitlines():
        m = re.match(r"\s*\|?Depends:\s*(linux-image-\S+)", line)
        if m and m.group(1) != meta:
            return m.group(1)
    raise NotFoundError(f"apt-cache depends {meta} names no linux-image package; run apt-get update")


def _download(package: str, debs: Path) -> Path:
    found = sorted(debs.glob(f"{package}_*.deb"))
    if found:
        return found[-1]
    with tempfile.TemporaryDirectory(dir=debs) as tmp:
        run(["apt-get", "download", package], cwd=tmp, what=f"apt-get download {package}", timeout=900)
        got = sorted(Path(tmp).glob(f"{package}_*.deb"))
        if not got:
            raise ToolError(f"apt-get download {package} left no .deb in {tmp}")
        final = debs / got[-1].name
        os.replace(got[-1], final)
    return final


def _extract(deb: Path, dest: Path) -> Path:
    """Unpack ``deb`` into ``dest`` once (atomic: temp dir, marker, rename)."""
    if (dest / ".complete").exists():
        return dest
    if dest.exists():
        shutil.rmtree(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=dest.name + ".", dir=dest.parent))
    os.chmod(tmp, 0o755)
    try:
        run(["dpkg-deb", "-x", str(deb), str(tmp)], what=f"dpkg-deb -x {deb.name}")
        (tmp / ".complete").write_text(deb.name + "\n")
        os.replace(tmp, dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return dest


def _cached_kernel_package(debs: Path) -> str | None:
    found = sorted(debs.glob("linux-image-*-amd64_*.deb"))
    return found[-1].name.split("_")[0] if found else None


def kernel(cache: str | os.PathLike[str] | None = None, package: str | None = None) -> KernelParts:
    """The Debian kernel, downloaded and unpacked into the cache (once)."""
    d = cache_dir(cache)
    debs = d / "debs"
    debs.mkdir(exist_ok=True)
    with _locked(d):
        if package is None:
            try:
                package = kernel_package()
            except (ToolError, NotFoundError):
                package = _cached_kernel_package(debs)
                if package is None:
                    raise
        deb = _download(package, debs)
        root = _extract(deb, d / "kernel" / deb.stem)
    vmlinuzes = sorted(glob.glob(str(root / "boot" / "vmlinuz-*")))
    if not vmlinuzes:
        raise NotFoundError(f"{deb.name}: no boot/vmlinuz-* inside the package")
    vmlinuz = Path(vmlinuzes[-1])
    version = vmlinuz.name[len("vmlinuz-"):]
    mods = root / "lib" / "modules" / version
    if not mods.is_dir():
        raise NotFoundError(f"{deb.name}: no lib/modules/{version} inside the package")
    return KernelParts(vmlinuz=vmlinuz, modules_dir=mods, version=version, package=package)


def busybox(cache: str | os.PathLike[str] | None = None) -> Path:
    """A statically linked busybox: busybox-static's, installed or unpacked into the cache."""
    for cand in ("/bin/busybox", "/usr/bin/busybox"):
        p = Path(cand)
        if p.is_file() and _is_static(p):
            return p
    d = cache_dir(cache)
    debs = d / "debs"
    debs.mkdir(exist_ok=True)
    with _locked(d):
        deb = _download("busybox-static", debs)
        root = _extract(deb, d / "busybox" / deb.stem)
    for cand in ("bin/busybox", "usr/bin/busybox"):
        if (root / cand).is_file():
            return root / cand
    raise NotFoundError(f"{deb.name}: no busybox binary inside the package")


def _is_static(path: Path) -> bool:
    """True when the ELF file has no PT_INTERP program header (no dynamic loader)."""
    import struct
    try:
        with open(path, "rb") as f:
            hdr = f.read(64)
            if hdr[:4] != b"\x7fELF" or hdr[4] != 2:
                return False
            phoff, = struct.unpack_from("<Q", hdr, 0x20)
            phentsize, phnum = struct.unpack_from("<HH", hdr, 0x36)
            f.seek(phoff)
            table = f.read(phentsize * phnum)
    except OSError:
        return False
    for i in range(phnum):
        p_type, = struct.unpack_from("<I", table, i * phentsize)
        if p_type == 3:  # PT_INTERP
            return False
    return True
