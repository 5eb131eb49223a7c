"""The install repository: an ext4 file system on ``instlv`` with BOS/OPP images and a TOC.

``instlv`` is a raid1 LV with one leg on each boot disk (one boot disk is
enough to boot *and* install).  The file system is written with e2fsprogs at
the byte offset of every leg; nothing is mounted and no root is needed for
image files.

Layout of the file system::

    /TOC.json        the table of contents (below)
    /bos/            BOS root file-system tarballs
    /opp/            OPP images: Debian packages (.deb) and tarballs
    /lost+found

Raw BOS images (the seed's second BOS format) are raw LVs ``bos_<name>`` in
the VG, laid out like ``instlv`` (raid1 over the same disks); the TOC lists
them with ``format = "raw-lv"`` and ``lv``.

Each leg of ``instlv`` ends with a 4 KiB *leg record* (``LegRecord``: magic
``SANBOSRP``, state clean/dirty, transaction generation, file-system size,
CRC32); the file system fills the leg before it.

**Table of contents** (``/TOC.json``, UTF-8 JSON, indented, one object per
image)::

    {"format": "sanbos-toc", "version": 1, "seqno": 4, "updated": "...Z",
     "images": [
       {"name": "sanbos-demo-base", "version": "1.0", "kind": "opp",
        "format": "deb", "file": "opp/sanbos-demo-base_1.0_all.deb",
        "size": 808, "sha256": "...", "description": "...",
        "dependencies": [], "arch": "all", "source": "sanbos-demo-base_1.0_all.deb",
        "added": "2026-01-01T00:00:00Z"}, ...]}

``kind`` is ``bos`` or ``opp``; ``format`` is ``tar`` (a tarball, optionally
gzip/xz compressed, see ``compression``), ``deb`` or ``raw-lv`` (then
``lv`` names the LV and ``file`` is null).  Name, version, description and
dependencies come from the package itself: ``dpkg-deb -f`` for a .deb, the
``sanbos-opp.toml`` member of an OPP tarball, ``etc/sanbos-bos`` or
``etc/os-release`` of a BOS tarball, the file-system label of a raw image;
``--name``/``--version`` fill what the image does not say.

**Updates** ("build or update once, write every leg").  Every change is a
transaction: leg 0's file system is copied (sparse) into a scratch file,
debugfs changes the scratch, and the blocks that differ are written to every
leg in turn.  On each leg: the leg record is marked *dirty*, the changed
blocks are written, the root-directory block (where ``TOC.json`` is swapped
from ``TOC.json.new``) is written last, then the record is marked *clean*
with the new generation.  A kill at any point therefore leaves every leg
either clean (old or new state) or dirty; a dirty leg still carries the old
TOC unless its commit block was written, and the next write-open re-copies
dirty or stale legs from a clean leg of the highest generation.  Readers use
clean legs of the highest generation and check every image they read against
its SHA-256.

Adding images (the seed's Figure 6, ``add_opps``): the VG is imported (if it
was exported) and opened exclusively; the images are written under temporary
names (``<file>.partial``) and read back from every leg, then a second
transaction renames them and swaps in the new TOC; the VG is closed and
exported again if it was exported before.  Files that no TOC lists (from an
interrupted run) are removed by the next transaction.
"""

from __future__ import annotations

import ctypes
import datetime as _dt
import errno
import hashlib
import json
import os
import re
import shutil
import struct
import subprocess
import tarfile
import tempfile
import tomllib
import zlib
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

from . import ext4
from .checksum import sha256_file
from .disk import data_extents
from .errors import (FormatError, LVMError, NotFoundError, SanbosError, SpaceError, ToolError,
                     UsageError)
from .tools import run
from .units import MiB, align_up, human

Progress = Callable[[str, "float | None"], None]


class DuplicateError(SanbosError):
    """The image is already in the repository (remove it first)."""

REPO_LV = "instlv"
TOC_NAME = "TOC.json"
TOC_PATH = "/" + TOC_NAME
TOC_NEW = "TOC.json.new"
TOC_OLD = "TOC.json.old"
RECORD_SIZE = 4096
BLOCK = 4096
KINDS = ("bos", "opp")
FORMATS = ("tar", "deb", "raw-lv")
RAW_LV_PREFIX = "bos_"
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9.+_~-]{0,126}$")
_VERSION_RE = re.compile(r"^[A-Za-z0-9.+~:_-]{1,64}$")
_SHA_RE = re.compile(r"^[0-9a-f]{64}$")


def _noprogress(message: str, fraction: float | None = None) -> None:
    pass


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


# ---------------------------------------------------------------------------
# Table of contents
# ---------------------------------------------------------------------------

@dataclass
class TocEntry:
    """One image in the repository."""

    name: str
    version: str
    kind: str              # bos | opp
    format: str            # tar | deb | raw-lv
    file: str | None       # path inside the repository (bos/..., opp/...), None for raw-lv
    size: int
    sha256: str
    description: str = ""
    dependencies: list[str] = field(default_factory=list)
    arch: str = ""
    compression: str = ""  # tar: none | gzip | xz | bzip2
    lv: str | None = None  # raw-lv: the LV name
    source: str = ""       # the file name the operator gave
    added: str = ""

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.kind, self.name, self.format)

    @property
    def label(self) -> str:
        return f"{self.kind} {self.name} {self.version} ({self.format})"

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "name": self.name, "version": self.version, "kind": self.kind, "format": self.format,
            "file": self.file, "size": self.size, "sha256": self.sha256,
            "description": self.description, "dependencies": list(self.dependencies)}
        if self.arch:
            d["arch"] = self.arch
        if self.compression:
            d["compression"] = self.compression
        if self.lv:
            d["lv"] = self.lv
        if self.source:
            d["source"] = self.source
        if self.added:
            d["added"] = self.added
        return d

    @classmethod
    def from_dict(cls, d: Any, where: str) -> "TocEntry":
        if not isinstance(d, dict):
            raise FormatError(f"{where}: not an object")
        def get(key: str, typ: type | tuple[type, ...], default: Any = ...) -> Any:
            if key not in d:
                if default is ...:
                    raise FormatError(f"{where}: '{key}' is missing")
                return default
            v = d[key]
            if not isinstance(v, typ) or isinstance(v, bool):
                raise FormatError(f"{where}: '{key}' has the wrong type ({type(v).__name__})")
            return v
        e = cls(name=get("name", str), version=get("version", str), kind=get("kind", str),
                format=get("format", str), file=get("file", (str, type(None))), size=get("size", int),
                sha256=get("sha256", str), description=get("description", str, ""),
                dependencies=list(get("dependencies", list, [])), arch=get("arch", str, ""),
                compression=get("compression", str, ""), lv=get("lv", (str, type(None)), None),
                source=get("source", str, ""), added=get("added", str, ""))
        e.validate(where)
        return e

    def validate(self, where: str = "TOC entry") -> None:
        where = f"{where} ({self.name!r})"
        try:
            check_name(self.name, "image name")
        except UsageError as e:
            raise FormatError(f"{where}: {e}") from None
        if not _VERSION_RE.match(self.version):
            raise FormatError(f"{where}: bad version {self.version!r}")
        if self.kind not in KINDS:
            raise FormatError(f"{where}: kind must be one of {', '.join(KINDS)}, not {self.kind!r}")
        if self.format not in FORMATS:
            raise FormatError(f"{where}: format must be one of {', '.join(FORMATS)}, not {self.format!r}")
        if self.size < 0:
            raise FormatError(f"{where}: negative size")
        if not _SHA_RE.match(self.sha256):
            raise FormatError(f"{where}: sha256 must be 64 lower-case hex digits")
        if not all(isinstance(x, str) for x in self.dependencies):
            raise FormatError(f"{where}: dependencies must be strings")
        if self.format == "raw-lv":
            if self.kind != "bos" or not self.lv or self.file is not None:
                raise FormatError(f"{where}: a raw-lv image is a BOS with 'lv' set and no 'file'")
            if self.lv != RAW_LV_PREFIX + self.name:
                raise FormatError(f"{where}: raw BOS LV must be named {RAW_LV_PREFIX}{self.name}")
        else:
            if not self.file:
                raise FormatError(f"{where}: 'file' is missing")
            check_repo_path(self.file, self.kind)


def check_name(name: str, what: str = "name") -> str:
    """A name safe as a file name inside the repository, or a UsageError saying why not."""
    if not isinstance(name, str) or not name:
        raise UsageError(f"{what} is empty")
    if "/" in name or "\\" in name or name in (".", "..") or name.startswith("."):
        raise UsageError(f"{what} {name!r} escapes the repository directory "
                         "(it must be a plain name, no '/', no leading '.')")
    if not _NAME_RE.match(name):
        raise UsageError(f"{what} {name!r} has characters that are not allowed "
                         "(letters, digits and . + _ ~ - only, at most 127)")
    return name


def check_repo_path(path: str, kind: str) -> str:
    parts = path.split("/")
    if len(parts) != 2 or parts[0] != kind:
        raise FormatError(f"TOC file {path!r} is not inside the {kind}/ directory")
    try:
        check_name(parts[1], "file name")
    except UsageError as e:
        raise FormatError(f"TOC file {path!r}: {e}") from None
    return path


@dataclass
class Toc:
    """The table of contents: ``parse(bytes)`` / ``pack()`` round-trip."""

    seqno: int = 0
    images: list[TocEntry] = field(default_factory=list)
    updated: str = ""

    FORMAT = "sanbos-toc"
    VERSION = 1

    def pack(self) -> bytes:
        images = sorted(self.images, key=lambda e: (KINDS.index(e.kind), e.name, e.format))
        doc = {"format": self.FORMAT, "version": self.VERSION, "seqno": self.seqno,
               "updated": self.updated, "images": [e.to_dict() for e in images]}
        return (json.dumps(doc, indent=2, ensure_ascii=False) + "\n").encode()

    @classmethod
    def parse(cls, data: bytes, where: str = TOC_NAME) -> "Toc":
        try:
            doc = json.loads(data.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise FormatError(f"{where}: not valid JSON ({e})") from None
        if not isinstance(doc, dict) or doc.get("format") != cls.FORMAT:
            raise FormatError(f"{where}: not a sanbos table of contents (format != {cls.FORMAT!r})")
        if doc.get("version") != cls.VERSION:
            raise FormatError(f"{where}: unsupported TOC version {doc.get('version')!r}")
        seqno = doc.get("seqno")
        if not isinstance(seqno, int) or isinstance(seqno, bool) or seqno < 0:
            raise FormatError(f"{where}: bad seqno {seqno!r}")
        raw = doc.get("images")
        if not isinstance(raw, list):
            raise FormatError(f"{where}: 'images' must be a list")
        images = [TocEntry.from_dict(d, f"{where}: image #{i}") for i, d in enumerate(raw)]
        seen: set[tuple[str, str, str]] = set()
        files: set[str] = set()
        for e in images:
            if e.key in seen:
                raise FormatError(f"{where}: {e.label} listed twice")
            seen.add(e.key)
            if e.file:
                if e.file in files:
                    raise FormatError(f"{where}: file {e.file} listed twice")
                files.add(e.file)
        return cls(seqno=seqno, images=images, updated=str(doc.get("updated", "")))

    def find(self, name: str, kind: str | None = None, format: str | None = None) -> list[TocEntry]:
        return [e for e in self.images if e.name == name and (kind is None or e.kind == kind)
                and (format is None or e.format == format)]

    @property
    def opps(self) -> list[TocEntry]:
        return [e for e in self.images if e.kind == "opp"]

    @property
    def bos(self) -> list[TocEntry]:
        return [e for e in self.images if e.kind == "bos"]

    def files(self) -> set[str]:
        return {e.file for e in self.images if e.file}


# ---------------------------------------------------------------------------
# Reading package metadata
# ---------------------------------------------------------------------------

def _tar_compression(path: Path) -> str:
    with open(path, "rb") as f:
        head = f.read(6)
    if head[:2] == b"\x1f\x8b":
        return "gzip"
    if head[:6] == b"\xfd7zXZ\x00":
        return "xz"
    if head[:3] == b"BZh":
        return "bzip2"
    return "none"


def _one_line(e: object) -> str:
    text = " ".join(str(e).split())
    return text if len(text) < 200 else text[:197] + "..."


class _HashingReader:
    """A read-only file wrapper that hashes every byte read (tarfile stream mode reads sequentially)."""

    def __init__(self, f: Any, h: Any) -> None:
        self.f, self.h = f, h

    def read(self, n: int = -1) -> bytes:
        data = self.f.read(n)
        self.h.update(data)
        return data

    def drain(self) -> None:
        while self.read(1 << 20):
            pass


def _read_tar(path: Path, what: str, digest: Any = None) -> dict[str, bytes]:
    """Read every member of a tarball in one sequential pass (proves it is whole); return the
    small metadata members.  ``digest`` (a hashlib object) is fed the whole file on the way."""
    wanted = {"sanbos-opp.toml", "etc/sanbos-bos", "etc/os-release"}
    found: dict[str, bytes] = {}
    try:
        with open(path, "rb") as raw:
            src = _HashingReader(raw, digest if digest is not None else hashlib.sha256())
            with tarfile.open(fileobj=src, mode="r|*") as tf:  # type: ignore[call-overload]
                count = 0
                for m in tf:
                    count += 1
                    name = m.name
                    while name.startswith("./"):
                        name = name[2:]
                    if m.isfile():
                        f = tf.extractfile(m)
                        keep = name in wanted and m.size < 65536
                        parts = []
                        while f is not None and (chunk := f.read(1 << 20)):
                            if keep:
                                parts.append(chunk)
                        if keep:
                            found[name] = b"".join(parts)
                if count == 0:
                    raise FormatError(f"{path}: empty tar archive, not a {what}")
            src.drain()
    except (tarfile.TarError, EOFError, OSError, zlib.error) as e:
        raise FormatError(f"{path}: not a readable tar archive ({_one_line(e)}); the {what} is corrupt") from None
    except Exception as e:  # lzma/bz2 errors surface as their own types
        if type(e).__name__ in ("LZMAError", "BadGzipFile") or isinstance(e, ValueError):
            raise FormatError(f"{path}: not a readable tar archive ({_one_line(e)}); "
                              f"the {what} is corrupt") from None
        raise
    return found


def _deb_fields(path: Path) -> dict[str, str]:
    try:
        res = run(["dpkg-deb", "-f", str(path)], what=f"dpkg-deb -f {path.name}")
        run(["dpkg-deb", "--fsys-tarfile", str(path)], what=f"dpkg-deb --fsys-tarfile {path.name}")
    except ToolError as e:
        detail = e.output.strip().splitlines()[-1] if e.output.strip() else str(e)
        raise FormatError(f"{path}: not a valid Debian package ({_one_line(detail)}); "
                          "dpkg-deb cannot read it (corrupt or truncated?)") from None
    fields: dict[str, str] = {}
    key = None
    for line in res.stdout.decode(errors="replace").splitlines():
        if line[:1] in (" ", "\t") and key:
            fields[key] += "\n" + line.strip()
        elif ":" in line:
            key, _, value = line.partition(":")
            key = key.strip()
            fields[key] = value.strip()
    if "Package" not in fields or "Version" not in fields:
        raise FormatError(f"{path}: Debian package without Package/Version fields")
    return fields


def _split_depends(text: str) -> list[str]:
    return [d.strip() for d in text.split(",") if d.strip()]


def inspect_opp(path: str | os.PathLike[str]) -> TocEntry:
    """TOC entry (file, sha256, size filled) for an OPP file: a .deb or a tarball with sanbos-opp.toml."""
    p = Path(path)
    if not p.is_file():
        raise NotFoundError(f"{p}: no such OPP file")
    with open(p, "rb") as f:
        magic = f.read(8)
    if magic == b"!<arch>\n" or p.suffix == ".deb":
        fields = _deb_fields(p)
        name = fields["Package"]
        check_name(name, f"{p}: package name")
        version = fields["Version"]
        arch = fields.get("Architecture", "all")
        check_name(arch, f"{p}: architecture")
        desc = fields.get("Description", "").split("\n")[0]
        deps = _split_depends(fields.get("Depends", "")) + _split_depends(fields.get("Pre-Depends", ""))
        fname = f"{name}_{version.replace(':', '%3a')}_{arch}.deb"
        fmt, comp = "deb", ""
    else:
        if _tar_compression(p) == "none" and not tarfile.is_tarfile(p):
            raise FormatError(f"{p}: neither a Debian package nor an OPP tarball "
                              "(sanbos opp add takes .deb files and tarballs with a sanbos-opp.toml member)")
        digest = hashlib.sha256()
        members = _read_tar(p, "OPP tarball", digest)
        tar_sha = digest.hexdigest()
        meta = members.get("sanbos-opp.toml")
        if meta is None:
            raise FormatError(f"{p}: neither a Debian package nor an OPP tarball with a sanbos-opp.toml member")
        try:
            m = tomllib.loads(meta.decode())
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
            raise FormatError(f"{p}: sanbos-opp.toml is not valid TOML ({_one_line(e)})") from None
        name, version = m.get("name"), m.get("version")
        if not isinstance(name, str) or not isinstance(version, str):
            raise FormatError(f"{p}: sanbos-opp.toml needs string 'name' and 'version'")
        check_name(name, f"{p}: OPP name")
        desc = str(m.get("description", ""))
        deps = m.get("dependencies", [])
        if not isinstance(deps, list) or not all(isinstance(d, str) for d in deps):
            raise FormatError(f"{p}: sanbos-opp.toml 'dependencies' must be a list of strings")
        arch = str(m.get("arch", ""))
        comp = _tar_compression(p)
        ext = {"gzip": ".tar.gz", "xz": ".tar.xz", "bzip2": ".tar.bz2"}.get(comp, ".tar")
        fname = f"{name}_{version}{ext}"
        fmt = "tar"
    if not _VERSION_RE.match(version):
        raise FormatError(f"{p}: version {version!r} is not usable")
    check_name(fname, f"{p}: repository file name")
    return TocEntry(name=name, version=version, kind="opp", format=fmt, file=f"opp/{fname}",
                    size=p.stat().st_size, sha256=tar_sha if fmt == "tar" else sha256_file(p), description=desc,
                    dependencies=list(deps), arch=arch, compression=comp, source=p.name, added=_now())


def _strip_ext(name: str) -> str:
    for ext in (".tar.gz", ".tar.xz", ".tar.bz2", ".tgz", ".tar", ".img", ".ext4", ".raw"):
        if name.endswith(ext):
            return name[: -len(ext)]
    return name


def inspect_bos(path: str | os.PathLike[str], *, raw: bool = False, name: str | None = None,
                version: str | None = None, description: str = "") -> TocEntry:
    """TOC entry for a BOS image: a root file-system tarball, or (raw=True) an ext2/3/4 image."""
    p = Path(path)
    if not p.is_file():
        raise NotFoundError(f"{p}: no such BOS image file")
    meta_name = meta_version = None
    desc = description
    members: dict[str, bytes] = {}
    fname: str | None = None
    if raw:
        res = run(["dumpe2fs", "-h", str(p)], check=False, what=f"dumpe2fs {p.name}")
        if res.returncode != 0:
            raise FormatError(f"{p}: not an ext2/3/4 file-system image (dumpe2fs cannot read it)")
        fsck = run(["e2fsck", "-fn", str(p)], check=False, what=f"e2fsck {p.name}")
        if fsck.returncode != 0:
            raise FormatError(f"{p}: the file system in this raw BOS image is not clean (e2fsck -fn)")
        for line in res.stdout.decode(errors="replace").splitlines():
            if line.startswith("Filesystem volume name:"):
                label = line.split(":", 1)[1].strip()
                if label and label != "<none>":
                    meta_name = label
        img = ext4.Target(p, 0, p.stat().st_size, name=str(p))
        for rel in ("/etc/sanbos-bos", "/etc/os-release"):
            try:
                members[rel[1:]] = ext4.read_file(img, rel)
            except SanbosError:
                pass
        fmt, comp, fname = "raw-lv", "", None
    else:
        digest = hashlib.sha256()
        members = _read_tar(p, "BOS tarball", digest)
        tar_sha = digest.hexdigest()
        fmt, comp = "tar", _tar_compression(p)
    sb = members.get("etc/sanbos-bos", b"").decode(errors="replace").split()
    if len(sb) >= 2:
        meta_name, meta_version = sb[0], sb[1]
    osr = members.get("etc/os-release", b"").decode(errors="replace")
    for line in osr.splitlines():
        k, _, v = line.partition("=")
        v = v.strip().strip('"')
        if k == "VERSION_ID" and not meta_version:
            meta_version = v
        if k == "PRETTY_NAME" and not desc:
            desc = v
    nm = name or meta_name or _strip_ext(p.name)
    check_name(nm, f"{p}: BOS name")
    ver = version or meta_version or "0"
    if not _VERSION_RE.match(ver):
        raise UsageError(f"{p}: BOS version {ver!r} is not usable")
    lv = None
    if fmt == "tar":
        ext = {"gzip": ".tar.gz", "xz": ".tar.xz", "bzip2": ".tar.bz2"}.get(comp, ".tar")
        fname = f"bos/{nm}_{ver}{ext}"
    else:
        lv = RAW_LV_PREFIX + nm
    return TocEntry(name=nm, version=ver, kind="bos", format=fmt, file=fname, size=p.stat().st_size,
                    sha256=tar_sha if fmt == "tar" else sha256_file(p), description=desc or f"BOS {nm}", dependencies=[],
                    compression=comp, lv=lv, source=p.name, added=_now())


# ---------------------------------------------------------------------------
# Legs and the leg record
# ---------------------------------------------------------------------------

@dataclass
class LegRecord:
    """The 4 KiB record at the end of each instlv leg."""

    MAGIC = b"SANBOSRP"
    CLEAN = 1
    DIRTY = 2
    _FMT = "<8sIIQQ"

    state: int
    generation: int
    fs_size: int
    version: int = 1

    def pack(self) -> bytes:
        body = struct.pack(self._FMT, self.MAGIC, self.version, self.state, self.generation, self.fs_size)
        body += struct.pack("<I", zlib.crc32(body))
        return body.ljust(RECORD_SIZE, b"\0")

    @classmethod
    def parse(cls, data: bytes) -> "LegRecord":
        n = struct.calcsize(cls._FMT)
        if len(data) < n + 4:
            raise FormatError("leg record truncated")
        magic, version, state, gen, fs_size = struct.unpack_from(cls._FMT, data)
        if magic != cls.MAGIC:
            raise FormatError("no sanbos repository leg record (bad magic)")
        crc, = struct.unpack_from("<I", data, n)
        if crc != zlib.crc32(data[:n]):
            raise FormatError("leg record checksum mismatch")
        if state not in (cls.CLEAN, cls.DIRTY):
            raise FormatError(f"leg record has unknown state {state}")
        return cls(state=state, generation=gen, fs_size=fs_size, version=version)

    @property
    def clean(self) -> bool:
        return self.state == self.CLEAN


@dataclass(frozen=True)
class Leg:
    """One copy of instlv: ``size`` bytes of ``path`` from ``offset``; ``disk`` names it."""

    disk: str
    path: Path
    offset: int
    size: int
    index: int = 0

    @property
    def fs_size(self) -> int:
        return self.size - RECORD_SIZE

    @property
    def label(self) -> str:
        return f"{REPO_LV} leg {self.index} on {self.disk}"

    @property
    def target(self) -> ext4.Target:
        return ext4.Target(self.path, self.offset, self.fs_size, name=self.label)

    def read_record(self) -> LegRecord | None:
        try:
            with open(self.path, "rb") as f:
                data = os.pread(f.fileno(), RECORD_SIZE, self.offset + self.fs_size)
            return LegRecord.parse(data)
        except (OSError, FormatError):
            return None

    def write_record(self, rec: LegRecord, fd: int | None = None) -> None:
        own = fd is None
        if own:
            fd = os.open(self.path, os.O_RDWR | os.O_CLOEXEC)
        try:
            os.pwrite(fd, rec.pack(), self.offset + self.fs_size)
            os.fsync(fd)
        finally:
            if own:
                os.close(fd)


# -- sparse-aware copying -------------------------------------------------------

_libc = None


def _punch(fd: int, offset: int, length: int) -> bool:
    """Deallocate (zero) a byte range of a regular file; False if the file system cannot."""
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(None, use_errno=True)
        _libc.fallocate.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_longlong, ctypes.c_longlong]
    FALLOC_FL_KEEP_SIZE, FALLOC_FL_PUNCH_HOLE = 1, 2
    return _libc.fallocate(fd, FALLOC_FL_KEEP_SIZE | FALLOC_FL_PUNCH_HOLE, offset, length) == 0


def _zero(fd: int, offset: int, length: int, regular: bool) -> None:
    if length <= 0:
        return
    if regular and _punch(fd, offset, length):
        return
    zero = bytes(1 << 20)
    pos = 0
    while pos < length:
        n = min(len(zero), length - pos)
        os.pwrite(fd, zero[:n], offset + pos)
        pos += n


def _kcopy(sfd: int, dfd: int, n: int, src_off: int, dst_off: int) -> int:
    """Copy inside the kernel: copy_file_range (same file system), else sendfile, else read/write."""
    try:
        return os.copy_file_range(sfd, dfd, n, src_off, dst_off)
    except OSError:
        pass
    try:
        os.lseek(dfd, dst_off, os.SEEK_SET)
        return os.sendfile(dfd, sfd, src_off, n)
    except OSError:
        data = os.pread(sfd, min(n, 4 * MiB), src_off)
        return os.pwrite(dfd, data, dst_off)


def copy_range(src: Path, src_off: int, dst: Path, dst_off: int, length: int,
               progress: Progress = _noprogress, what: str = "", fsync: bool = True) -> None:
    """Copy ``length`` bytes, keeping holes as holes (punched, or zeros on a block device)."""
    sfd = os.open(src, os.O_RDONLY | os.O_CLOEXEC)
    dfd = os.open(dst, os.O_RDWR | os.O_CLOEXEC)
    try:
        regular = os.path.isfile(dst)
        pos = 0
        for start, end in data_extents(sfd, src_off, length):
            _zero(dfd, dst_off + pos, start - pos, regular)
            cur = start
            while cur < end:
                n = min(end - cur, 64 * MiB)
                done = _kcopy(sfd, dfd, n, src_off + cur, dst_off + cur)
                if done <= 0:
                    raise OSError(errno.EIO, f"short copy from {src}")
                cur += done
                progress(what, cur / length if length else 1.0)
            pos = end
        _zero(dfd, dst_off + pos, length - pos, regular)
        if fsync:
            os.fsync(dfd)
    finally:
        os.close(sfd)
        os.close(dfd)


def _changed_blocks(a: Path, a_off: int, b: Path, b_off: int, length: int,
                    known: set[int] | frozenset[int] = frozenset()) -> list[int]:
    """Block numbers (BLOCK-sized) where file ``a`` (a scratch copy) differs from ``b``.

    ``known`` blocks are taken as changed without comparing them (new file data)."""
    changed: list[int] = []
    afd = os.open(a, os.O_RDONLY | os.O_CLOEXEC)
    bfd = os.open(b, os.O_RDONLY | os.O_CLOEXEC)
    chunk = 4 * MiB
    try:
        for start, end in data_extents(afd, a_off, length):
            start -= start % BLOCK
            pos = start
            while pos < end:
                n = min(chunk, end - pos)
                first = pos // BLOCK
                blocks = range(first, first + -(-n // BLOCK))
                if known and all(b in known for b in blocks):
                    changed.extend(blocks)
                    pos += n
                    continue
                x = os.pread(afd, n, a_off + pos)
                y = os.pread(bfd, n, b_off + pos)
                if x != y:
                    for i in range(0, n, BLOCK):
                        if x[i:i + BLOCK] != y[i:i + BLOCK]:
                            changed.append((pos + i) // BLOCK)
                pos += n
    finally:
        os.close(afd)
        os.close(bfd)
    return changed


def _root_dir_blocks(t: ext4.Target) -> set[int]:
    out = ext4.debugfs(t, 'blocks "/"')
    return {int(x) for x in out.split() if x.isdigit()}


def _scratch_dir(need: int = 0, near: Path | None = None) -> str | None:
    """Where scratch file systems go: $SANBOS_TMP; else next to the disk image ``near`` (same
    file system, so copy_file_range copies inside the kernel, as cp does) when there is room;
    else $TMPDIR."""
    if os.environ.get("SANBOS_TMP"):
        return os.environ["SANBOS_TMP"]
    if near is not None and near.is_file():
        d = near.parent
        try:
            st = os.statvfs(d)
            if os.access(d, os.W_OK) and st.f_bavail * st.f_frsize > need + 64 * MiB:
                return str(d)
        except OSError:
            pass
    return None


def _differing(src: Path, legs: Sequence["Leg"], length: int, src_off: int = 0) -> list["Leg"]:
    """Legs whose bytes differ from ``src`` (from ``src_off``) over its data extents (``src`` read once)."""
    sfd = os.open(src, os.O_RDONLY | os.O_CLOEXEC)
    fds = [os.open(l.path, os.O_RDONLY | os.O_CLOEXEC) for l in legs]
    bad: set[int] = set()
    try:
        for start, end in data_extents(sfd, src_off, length):
            pos = start
            while pos < end:
                n = min(4 * MiB, end - pos)
                want = os.pread(sfd, n, src_off + pos)
                for k, (leg, fd) in enumerate(zip(legs, fds)):
                    if k not in bad and os.pread(fd, n, leg.offset + pos) != want:
                        bad.add(k)
                pos += n
    finally:
        os.close(sfd)
        for fd in fds:
            os.close(fd)
    return [legs[k] for k in sorted(bad)]


def _same_as(src: Path, src_off: int, dst: Path, dst_off: int, length: int) -> bool:
    """Read back: ``dst`` holds ``src``'s bytes over ``src``'s data extents (holes were punched/zeroed)."""
    sfd = os.open(src, os.O_RDONLY | os.O_CLOEXEC)
    dfd = os.open(dst, os.O_RDONLY | os.O_CLOEXEC)
    try:
        for start, end in data_extents(sfd, src_off, length):
            pos = start
            while pos < end:
                n = min(4 * MiB, end - pos)
                if os.pread(sfd, n, src_off + pos) != os.pread(dfd, n, dst_off + pos):
                    return False
                pos += n
    finally:
        os.close(sfd)
        os.close(dfd)
    return True


# ---------------------------------------------------------------------------
# The repository over a list of legs
# ---------------------------------------------------------------------------

@dataclass
class LegHealth:
    leg: Leg
    record: LegRecord | None
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


@dataclass
class VerifyReport:
    vg: str
    legs: list[LegHealth]
    images: list[tuple[TocEntry, str, str]]  # (entry, where, problem or "ok")
    toc: Toc | None

    @property
    def ok(self) -> bool:
        return all(h.ok for h in self.legs) and all(p == "ok" for _, _, p in self.images)

    def problems(self) -> list[str]:
        out = [f"{h.leg.label}: {p}" for h in self.legs for p in h.problems]
        out += [f"{e.label} on {w}: {p}" for e, w, p in self.images if p != "ok"]
        return out


class Repository:
    """An opened install repository over the legs of instlv.

    Use ``open_repo(vg, readonly=...)`` on a VG; ``Repository(legs, ...)``
    directly works on any list of legs (tests, benchmarks).
    """

    def __init__(self, legs: Sequence[Leg], *, vg_name: str = "", writable: bool = False,
                 vg: Any = None, progress: Progress = _noprogress) -> None:
        if not legs:
            raise NotFoundError(f"VG {vg_name or '?'}: {REPO_LV} has no legs")
        self.legs = list(legs)
        self.vg_name = vg_name
        self.writable = writable
        self.vg = vg
        self.progress = progress
        self.fs_size = self.legs[0].fs_size
        self._known: set[int] = set()
        for leg in self.legs:
            if leg.size != self.legs[0].size:
                raise LVMError(f"VG {vg_name}: {REPO_LV} legs differ in size ({leg.label})")
        if writable:
            self.recover()

    # -- leg selection ---------------------------------------------------
    def records(self) -> list[LegRecord | None]:
        return [leg.read_record() for leg in self.legs]

    def good_legs(self, allow_dirty: bool = True) -> list[Leg]:
        """Clean legs of the highest generation, in leg order.

        With no clean leg at all (a one-leg repository killed while writing), the dirty legs
        are returned for reading (their TOC is the old one until the commit block; every read
        checks SHA-256) unless ``allow_dirty`` is False."""
        recs = self.records()
        clean = [(leg, r) for leg, r in zip(self.legs, recs) if r is not None and r.clean]
        if not clean and allow_dirty:
            dirty = [(leg, r) for leg, r in zip(self.legs, recs) if r is not None]
            if dirty:
                top = max(r.generation for _, r in dirty)
                return [leg for leg, r in dirty if r.generation == top]
        if not clean:
            raise FormatError(f"VG {self.vg_name}: no clean copy of the repository ({REPO_LV}) on any leg: "
                              + ", ".join(f"{leg.label}: {'dirty' if r else 'no leg record'}"
                                          for leg, r in zip(self.legs, recs)))
        top = max(r.generation for _, r in clean)
        return [leg for leg, r in clean if r.generation == top]

    @property
    def generation(self) -> int:
        rec = self.good_legs()[0].read_record()
        return rec.generation if rec else 0

    def recover(self) -> list[str]:
        """Re-copy dirty or stale legs from a good leg; return what was done."""
        done = []
        recs = self.records()
        if not any(r is not None and r.clean for r in recs):
            done += self._repair_in_place()
        good = self.good_legs(allow_dirty=False)
        src = good[0]
        rec = src.read_record()
        assert rec is not None
        for leg in self.legs:
            r = leg.read_record()
            if r is not None and r.clean and r.generation == rec.generation:
                continue
            why = "dirty (interrupted update)" if r is not None and not r.clean else \
                ("missing leg record" if r is None else f"stale (generation {r.generation} < {rec.generation})")
            self.progress(f"{leg.label}: {why}; copying from {src.label}", None)
            leg.write_record(LegRecord(LegRecord.DIRTY, rec.generation, self.fs_size))
            copy_range(src.path, src.offset, leg.path, leg.offset, self.fs_size)
            leg.write_record(LegRecord(LegRecord.CLEAN, rec.generation, self.fs_size))
            done.append(f"{leg.label}: resynced from {src.label} ({why})")
        return done

    def _repair_in_place(self) -> list[str]:
        """No clean leg (one leg, interrupted): e2fsck -fy the newest dirty leg, then mark it clean.

        The blocks written before the kill only add to the old state (new files, bitmaps,
        counts); the old TOC still names only complete images, and e2fsck puts the counts right.
        """
        legs = self.good_legs(allow_dirty=True)
        if not legs:
            raise FormatError(f"VG {self.vg_name}: no leg of {REPO_LV} carries a repository leg record")
        leg = legs[0]
        rec = leg.read_record()
        assert rec is not None
        self.progress(f"{leg.label}: interrupted update and no other clean copy; running e2fsck -fy", None)
        res = run(["e2fsck", "-fy", leg.target.spec], check=False, what=f"e2fsck on {leg.label}")
        if res.returncode not in (0, 1, 2):
            out = (res.stdout + res.stderr).decode(errors="replace").strip().splitlines()
            raise FormatError(f"{leg.label}: e2fsck could not repair the interrupted update "
                              f"(exit {res.returncode}: {' / '.join(out[-2:])})")
        toc = Toc.parse(ext4.read_file(leg.target, TOC_PATH, catastrophic=True), f"{leg.label}:{TOC_PATH}")
        for e in toc.images:
            if e.file and _sha256_in_fs(leg.target, "/" + e.file) != e.sha256:
                raise FormatError(f"{leg.label}: {e.label} does not match the TOC after the interrupted update")
        leg.write_record(LegRecord(LegRecord.CLEAN, rec.generation, self.fs_size))
        return [f"{leg.label}: repaired in place with e2fsck after an interrupted update"]

    # -- reads -----------------------------------------------------------
    def _read_any(self, path: str) -> tuple[bytes, Leg]:
        errors = []
        for leg in self.good_legs():
            try:
                return ext4.read_file(leg.target, path, catastrophic=True), leg
            except SanbosError as e:
                errors.append(f"{leg.label}: {e}")
        raise FormatError(f"VG {self.vg_name}: cannot read {path} from the repository: " + "; ".join(errors))

    def toc(self) -> Toc:
        errors = []
        for leg in self.good_legs():
            try:
                return Toc.parse(ext4.read_file(leg.target, TOC_PATH, catastrophic=True), f"{leg.label}:{TOC_PATH}")
            except SanbosError as e:
                errors.append(str(e))
        raise FormatError(f"VG {self.vg_name}: no readable table of contents: " + "; ".join(errors))

    def read_image(self, entry: TocEntry, dest: str | os.PathLike[str]) -> Path:
        """Copy an image out to ``dest``, checked against its SHA-256 (tries each good leg)."""
        dest = Path(dest)
        errors = []
        if entry.format == "raw-lv":
            return self._read_raw(entry, dest)
        for leg in self.good_legs():
            try:
                ext4.debugfs(leg.target, f'dump "/{entry.file}" "{dest}"', catastrophic=True)
                got = sha256_file(dest)
                if got == entry.sha256 and dest.stat().st_size == entry.size:
                    return dest
                errors.append(f"{leg.label}: checksum mismatch")
            except SanbosError as e:
                errors.append(f"{leg.label}: {e}")
        raise FormatError(f"VG {self.vg_name}: no good copy of {entry.label}: " + "; ".join(errors))

    def _read_raw(self, entry: TocEntry, dest: Path) -> Path:
        if self.vg is None:
            raise NotFoundError(f"{entry.label}: raw LV images need the VG")
        errors = []
        for k, (path, off, length) in enumerate(_lv_legs(self.vg, entry.lv or "")):
            h = hashlib.sha256()
            with open(path, "rb") as src, open(dest, "wb") as out:
                pos = 0
                while pos < entry.size:
                    data = os.pread(src.fileno(), min(4 * MiB, entry.size - pos), off + pos)
                    if not data:
                        break
                    h.update(data)
                    out.write(data)
                    pos += len(data)
            if h.hexdigest() == entry.sha256:
                return dest
            errors.append(f"leg {k}: checksum mismatch")
        raise FormatError(f"VG {self.vg_name}: no good copy of {entry.label}: " + "; ".join(errors))

    def free_bytes(self) -> int:
        leg = self.good_legs()[0]
        out = run(["dumpe2fs", "-h", leg.target.spec], what=f"dumpe2fs on {leg.label}").stdout.decode()
        free = bsize = 0
        for line in out.splitlines():
            if line.startswith("Free blocks:"):
                free = int(line.split(":")[1])
            elif line.startswith("Block size:"):
                bsize = int(line.split(":")[1])
        return free * bsize

    # -- transactions ----------------------------------------------------
    @contextmanager
    def transaction(self, what: str) -> Iterator[ext4.Target]:
        """Yield a scratch copy of the file system; on success write the changes to every leg."""
        if not self.writable:
            raise UsageError(f"VG {self.vg_name}: the repository is open read-only")
        src = self.good_legs()[0]
        rec = src.read_record()
        assert rec is not None
        with tempfile.TemporaryDirectory(prefix=".sanbos-repo-", dir=_scratch_dir(self.fs_size, src.path)) as d:
            scratch = Path(d) / "fs.img"
            _metadata_copy(src, scratch, self.fs_size)
            target = ext4.Target(scratch, 0, self.fs_size, name=f"repository of VG {self.vg_name} ({what})")
            self._known = set()
            yield target
            known, self._known = self._known, set()
            clean, out = ext4.fsck(target)
            if not clean:
                raise FormatError(f"VG {self.vg_name}: {what} would leave the repository file system "
                                  f"inconsistent; nothing written ({out.strip().splitlines()[-1] if out.strip() else ''})")
            self._commit(scratch, src, rec.generation + 1, what, known)

    def _commit(self, scratch: Path, src: Leg, generation: int, what: str, known: set[int] = frozenset()) -> None:
        changed = _changed_blocks(scratch, 0, src.path, src.offset, self.fs_size, known)
        root = _root_dir_blocks(ext4.Target(scratch, 0, self.fs_size))
        # a 1 KiB-block file system keeps its root block inside one 4 KiB block
        bs = self._block_size(scratch)
        root4k = {(b * bs) // BLOCK for b in root}
        commit = [b for b in changed if b in root4k]
        body = [b for b in changed if b not in root4k]
        runs = _runs(body)
        sfd = os.open(scratch, os.O_RDONLY | os.O_CLOEXEC)
        try:
            for n, leg in enumerate(self.legs):
                self.progress(f"{what}: writing {len(changed)} blocks to {leg.label}", n / len(self.legs))
                fd = os.open(leg.path, os.O_RDWR | os.O_CLOEXEC)
                try:
                    leg.write_record(LegRecord(LegRecord.DIRTY, generation - 1, self.fs_size), fd)
                    for start, count in runs:
                        _copy_blocks(sfd, fd, start, count, leg.offset)
                    os.fsync(fd)
                    for b in commit:
                        _copy_blocks(sfd, fd, b, 1, leg.offset)
                    os.fsync(fd)
                    leg.write_record(LegRecord(LegRecord.CLEAN, generation, self.fs_size), fd)
                finally:
                    os.close(fd)
        finally:
            os.close(sfd)
        self.progress(f"{what}: written to {len(self.legs)} legs", 1.0)

    @staticmethod
    def _block_size(scratch: Path) -> int:
        with open(scratch, "rb") as f:
            sb = os.pread(f.fileno(), 1024, 1024)
        log, = struct.unpack_from("<I", sb, 24)
        return 1024 << log

    # -- writes ------------------------------------------------------------
    def _gc_requests(self, t: ext4.Target, toc: Toc) -> list[str]:
        """debugfs requests removing files no TOC lists (left by an interrupted update)."""
        listed = toc.files()
        reqs = []
        for d in ("bos", "opp"):
            for name in ext4.listdir(t, "/" + d):
                if f"{d}/{name}" not in listed:
                    reqs.append(f'rm "/{d}/{name}"')
        for name in ext4.listdir(t, "/"):
            if name not in ("lost+found", "bos", "opp", TOC_NAME):
                reqs.append(f'rm "/{name}"')
        return reqs

    def add_images(self, items: list[tuple[TocEntry, Path]], *, remove: Sequence[TocEntry] = (),
                   raw_entries: Sequence[TocEntry] = ()) -> Toc:
        """Write file images (temp names, verified on every leg), then swap in the new TOC.

        ``raw_entries`` (already written raw LVs) and ``remove`` only change the TOC.
        """
        toc = self.toc()
        need = sum(align_up(e.size, BLOCK) + 2 * BLOCK for e, _ in items) + 64 * 1024
        if items and need > self.free_bytes():
            raise SpaceError(f"VG {self.vg_name}: the repository is full: {human(need)} needed, "
                             f"{human(self.free_bytes())} free on {REPO_LV}; nothing written")
        if items:
            with self.transaction("writing images") as t:
                reqs = self._gc_requests(t, toc)
                for e, src in items:
                    reqs.append(f'write "{src}" "/{e.file}.partial"')
                ext4.debugfs(t, *reqs, write=True)
                for e, _ in items:  # the new files' data blocks are changed: no need to compare them
                    for _, pblk, count, _ in file_extents(t, f"/{e.file}.partial"):
                        self._known.update(range(pblk, pblk + count))
            # read back every image from every leg before the TOC names it (the block maps of all
            # the images: one debugfs run per leg)
            partial = [f"/{e.file}.partial" for e, _ in items]
            maps = [file_maps(leg.target, partial) for leg in self.legs]
            for i, (e, _) in enumerate(items):
                self.progress(f"reading {e.file} back from {len(self.legs)} legs", i / len(items))
                problems = verify_copies(self.legs, partial[i], e.size, e.sha256,
                                         mapped=[m[partial[i]] for m in maps])
                if problems:
                    raise FormatError("; ".join(problems) + "; the TOC was not changed")
        new = Toc(seqno=toc.seqno + 1, updated=_now(),
                  images=[x for x in toc.images if all(x.key != r.key for r in remove)]
                  + [e for e, _ in items] + list(raw_entries))
        for e in new.images:
            e.validate()
        Toc.parse(new.pack())  # validates duplicates
        with tempfile.NamedTemporaryFile(prefix="toc-", suffix=".json", dir=_scratch_dir()) as tf:
            tf.write(new.pack())
            tf.flush()
            with self.transaction("updating the table of contents") as t:
                reqs = []
                for e, _ in items:
                    reqs += [f'ln "/{e.file}.partial" "/{e.file}"', f'unlink "/{e.file}.partial"']
                if ext4.exists(t, f"/{TOC_NEW}"):
                    reqs.append(f'rm "/{TOC_NEW}"')
                if ext4.exists(t, f"/{TOC_OLD}"):
                    reqs.append(f'rm "/{TOC_OLD}"')
                reqs += [f'write "{tf.name}" "/{TOC_NEW}"',
                         f'ln "{TOC_PATH}" "/{TOC_OLD}"', f'unlink "{TOC_PATH}"',
                         f'ln "/{TOC_NEW}" "{TOC_PATH}"', f'unlink "/{TOC_NEW}"']
                ext4.debugfs(t, *reqs, write=True)
        self.collect_garbage()
        return new

    def collect_garbage(self) -> None:
        """Remove files the TOC does not list (old TOC, removed or half-written images)."""
        toc = self.toc()
        leg = self.good_legs()[0]
        if not self._gc_requests(leg.target, toc):
            return
        with self.transaction("removing unlisted files") as t:
            ext4.debugfs(t, *self._gc_requests(t, toc), write=True)

    def remove_entries(self, entries: Sequence[TocEntry]) -> Toc:
        return self.add_images([], remove=entries)


def _metadata_copy(src: Leg, scratch: Path, fs_size: int) -> None:
    """The scratch file system: ``e2image -r`` (metadata and directories only; file data are holes).

    debugfs never reads file data for the changes a transaction makes (write, ln,
    unlink, rm), and only the scratch's data extents are compared and written back.
    """
    res = run(["e2image", "-r", "-o", str(src.offset), str(src.path), str(scratch)], check=False,
              what=f"e2image of {src.label}")
    if res.returncode == 0 and scratch.exists() and scratch.stat().st_size >= fs_size:
        return
    with open(scratch, "wb") as f:  # fall back to a full (sparse) copy
        f.truncate(fs_size)
    copy_range(src.path, src.offset, scratch, 0, fs_size)


def _runs(blocks: list[int]) -> list[tuple[int, int]]:
    runs: list[tuple[int, int]] = []
    for b in sorted(blocks):
        if runs and runs[-1][0] + runs[-1][1] == b:
            runs[-1] = (runs[-1][0], runs[-1][1] + 1)
        else:
            runs.append((b, 1))
    return runs


def _copy_blocks(sfd: int, dfd: int, start: int, count: int, dst_base: int) -> None:
    pos, end = start * BLOCK, (start + count) * BLOCK
    while pos < end:
        n = min(end - pos, 64 * MiB)
        done = _kcopy(sfd, dfd, n, pos, dst_base + pos)
        if done <= 0:
            raise OSError(errno.EIO, "short copy while writing a repository leg")
        pos += done


_EXTENT_RE = re.compile(r"^\s*\d+/\s*\d+\s+\d+/\s*\d+\s+(\d+)(?:\s*-\s*(\d+))?\s+(\d+)(?:\s*-\s*(\d+))?\s+(\d+)\s*(\S*)")


def file_extents(t: ext4.Target, path: str) -> list[tuple[int, int, int, bool]]:
    """(logical block, physical block, count, uninit) of a file, from ``debugfs dump_extents``."""
    return file_map(t, path)[1]


_SIZE_RE = re.compile(r"\bSize:\s*(\d+)")


def file_map(t: ext4.Target, path: str) -> tuple[int, list[tuple[int, int, int, bool]]]:
    """The file's size (from its inode) and its extents, in one debugfs run."""
    out = ext4.debugfs(t, f'stat "{path}"', f'dump_extents -l "{path}"', catastrophic=True)
    return _parse_file_map(t, path, out)


def _parse_file_map(t: ext4.Target, path: str, out: str) -> tuple[int, list[tuple[int, int, int, bool]]]:
    m = _SIZE_RE.search(out)
    if not m:
        raise FormatError(f"{t.label}: no inode size for {path}")
    size = int(m.group(1))
    ext = []
    for line in out.splitlines():
        m = _EXTENT_RE.match(line)
        if m:
            ext.append((int(m.group(1)), int(m.group(3)), int(m.group(5)), "Uninit" in m.group(6)))
    return size, sorted(ext)


def file_maps(t: ext4.Target, paths: Sequence[str]) -> dict[str, tuple[int, list[tuple[int, int, int, bool]]] | SanbosError]:
    """``file_map`` of several files in one debugfs run: {path: (size, extents), or the error}.

    When that run fails (debugfs reports an error for one of them) every file is mapped on its
    own, so each gets its own result or error, as with ``file_map``."""
    if len(paths) > 1:
        reqs = []
        for path in paths:
            reqs += [f'stat "{path}"', f'dump_extents -l "{path}"']
        try:
            out = ext4.debugfs(t, *reqs, catastrophic=True)
        except SanbosError:
            out = None
        if out is not None:
            sections: dict[str, list[str]] = {}
            cur: list[str] | None = None
            for line in out.splitlines():
                if line.startswith('debugfs: stat "') and line.endswith('"'):
                    cur = sections.setdefault(line[len('debugfs: stat "'):-1], [])
                elif cur is not None:
                    cur.append(line)
            if all(p in sections for p in paths):
                res: dict[str, Any] = {}
                for path in paths:
                    try:
                        res[path] = _parse_file_map(t, path, "\n".join(sections[path]))
                    except SanbosError as e:
                        res[path] = e
                return res
    res = {}
    for path in paths:
        try:
            res[path] = file_map(t, path)
        except SanbosError as e:
            res[path] = e
    return res


def _file_chunks(disk: Path, base: int, extents: list[tuple[int, int, int, bool]], size: int,
                 chunk: int = 4 * MiB) -> Iterator[bytes]:
    """A file's bytes read through its block map (holes and unwritten extents read as zeros)."""
    bs = BLOCK
    with open(disk, "rb") as f:
        fd = f.fileno()
        pos = 0
        i = 0
        while pos < size:
            n = min(chunk, size - pos)
            lblk = pos // bs
            while i < len(extents) and extents[i][0] + extents[i][2] <= lblk:
                i += 1
            if i < len(extents) and extents[i][0] <= lblk and not extents[i][3] \
                    and (extents[i][0] + extents[i][2]) * bs >= pos + n:
                lstart, pstart = extents[i][0], extents[i][1]
                data = os.pread(fd, n, base + pstart * bs + (pos - lstart * bs))  # one extent: no copying
                yield data if len(data) == n else data.ljust(n, b"\0")
                pos += n
                continue
            buf = bytearray(n)
            cur = pos
            while cur < pos + n:
                lblk = cur // bs
                while i < len(extents) and extents[i][0] + extents[i][2] <= lblk:
                    i += 1
                if i >= len(extents) or extents[i][0] > lblk:
                    nxt = extents[i][0] * bs if i < len(extents) else pos + n
                    cur = min(max(nxt, cur + 1), pos + n)  # a hole: zeros already there
                    continue
                lstart, pstart, count, uninit = extents[i]
                end = min((lstart + count) * bs, pos + n)
                if not uninit:
                    off = base + pstart * bs + (cur - lstart * bs)
                    data = os.pread(fd, end - cur, off)
                    buf[cur - pos:cur - pos + len(data)] = data
                cur = end
            yield bytes(buf)
            pos += n


def verify_copies(legs: Sequence[Leg], path: str, size: int, sha256: str,
                  mapped: Sequence[Any] | None = None) -> list[str]:
    """Read ``path`` back from every leg through that leg's own block map: leg 0's bytes must
    hash to ``sha256`` and every other leg's bytes must equal leg 0's.  Returns problems.

    ``mapped``: per leg, the ``file_maps`` result for ``path`` when the caller has it."""
    problems = []
    maps = []
    for k, leg in enumerate(legs):
        try:
            pre = mapped[k] if mapped is not None else None
            if isinstance(pre, SanbosError):
                raise pre
            actual, ext = pre if pre is not None else file_map(leg.target, path)
            if actual != size:
                raise FormatError(f"size {actual} instead of {size}")
            maps.append(ext)
        except SanbosError as e:
            maps.append(None)
            problems.append(f"{leg.label}: {path} unreadable ({e})")
    readers = [None if m is None else _file_chunks(leg.path, leg.offset, m, size) for leg, m in zip(legs, maps)]
    h = hashlib.sha256()
    ref_leg = next((k for k, r in enumerate(readers) if r is not None), None)
    if ref_leg is None:
        return problems
    bad = set()
    for chunk in readers[ref_leg]:
        h.update(chunk)
        for k, r in enumerate(readers):
            if r is None or k == ref_leg or k in bad:
                continue
            if next(r, None) != chunk:
                bad.add(k)
    if h.hexdigest() != sha256:
        problems.append(f"{legs[ref_leg].label}: {path} reads back with the wrong checksum")
    problems += [f"{legs[k].label}: {path} reads back different from {legs[ref_leg].label}" for k in sorted(bad)]
    return problems


def _sha256_leg(leg: Leg, path: str, size: int) -> str:
    """SHA-256 of a file read through the leg's own block map ("missing" if it cannot be read)."""
    try:
        actual, ext = file_map(leg.target, path)
    except SanbosError:
        return "missing"
    if actual != size:
        return f"size-{actual}"
    if not ext and size > 0:
        return _sha256_in_fs(leg.target, path)  # inline data or an odd mapping: let debugfs read it
    h = hashlib.sha256()
    for chunk in _file_chunks(leg.path, leg.offset, ext, size):
        h.update(chunk)
    return h.hexdigest()


def _sha256_in_fs(t: ext4.Target, path: str) -> str:
    with tempfile.TemporaryDirectory(prefix="sanbos-check-", dir=_scratch_dir()) as d:
        out = Path(d) / "f"
        ext4.debugfs(t, f'dump "{path}" "{out}"', catastrophic=True)
        if not out.exists():
            return "missing"
        return sha256_file(out)


def format_legs(legs: Sequence[Leg], *, progress: Progress = _noprogress, label: str = "sanbos-repo",
                files: Sequence[tuple[TocEntry, Path]] = ()) -> Toc:
    """Make a new repository file system on every leg (build once, copy to every leg).

    ``files`` are images to put in the initial build (mke2fs -d): the fast
    path for large initial content.
    """
    if not legs:
        raise UsageError("a repository needs at least one leg")
    fs_size = legs[0].fs_size
    if fs_size < 8 * MiB:
        raise SpaceError(f"{legs[0].label}: {human(legs[0].size)} is too small for a repository (8 MiB at least)")
    toc = Toc(seqno=1, updated=_now(), images=[e for e, _ in files])
    with tempfile.TemporaryDirectory(prefix=".sanbos-repo-", dir=_scratch_dir(fs_size, legs[0].path)) as d:
        stage = Path(d) / "stage"
        for sub in ("bos", "opp"):
            (stage / sub).mkdir(parents=True)
        for e, src in files:
            dest = stage / (e.file or "")
            try:
                os.link(src, dest)
            except OSError:
                shutil.copyfile(src, dest)
        (stage / TOC_NAME).write_bytes(toc.pack())
        scratch = Path(d) / "fs.img"
        with open(scratch, "wb") as f:
            f.truncate(fs_size)
        progress(f"building the repository file system ({human(fs_size)})", 0.0)
        try:
            ext4.make(ext4.Target(scratch, 0, fs_size, name=f"{REPO_LV} ({legs[0].label})"), stage,
                      label=label, blocksize=BLOCK)
        except SpaceError:
            raise SpaceError(f"{REPO_LV}: the initial images ({human(sum(e.size for e, _ in files))}) "
                             f"do not fit in {human(fs_size)}") from None
        # a new repository has no old state to protect: write every leg, read every leg back, then
        # mark them clean.  Every leg is marked dirty first; the in-kernel copies then run two at
        # a time (copy_file_range: memory copies the two cores share)
        for leg in legs:
            leg.write_record(LegRecord(LegRecord.DIRTY, 0, fs_size))
        from concurrent.futures import ThreadPoolExecutor
        with ThreadPoolExecutor(max_workers=2) as pool:
            jobs = [pool.submit(copy_range, scratch, 0, leg.path, leg.offset, fs_size, fsync=False)
                    for leg in legs]
            try:
                for n, (leg, job) in enumerate(zip(legs, jobs)):
                    progress(f"writing {leg.label}", (n + 1) / (len(legs) + 2))
                    job.result()
            except BaseException:
                for job in jobs:
                    job.cancel()
                raise
        for leg in legs:  # one flush at the end lets the kernel write the legs back in parallel
            fd = os.open(leg.path, os.O_RDONLY | os.O_CLOEXEC)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        progress(f"reading back {len(legs)} legs", len(legs) / (len(legs) + 2))
        bad = _differing(scratch, legs, fs_size)
        if bad:
            raise FormatError("the repository reads back different from what was written on "
                              + ", ".join(l.label for l in bad))
        for leg in legs:
            leg.write_record(LegRecord(LegRecord.CLEAN, 1, fs_size))
    progress(f"repository written to {len(legs)} legs", 1.0)
    return toc


def verify_legs(repo: Repository, *, progress: Progress = _noprogress, fsck: bool = True) -> VerifyReport:
    """Check every leg: record, e2fsck -fn, TOC, every file image's SHA-256."""
    healths = []
    recs = repo.records()
    top = max((r.generation for r in recs if r is not None and r.clean), default=None)
    toc = None
    try:
        toc = repo.toc()
    except SanbosError as e:
        pass
    images: list[tuple[TocEntry, str, str]] = []
    for i, (leg, rec) in enumerate(zip(repo.legs, recs)):
        h = LegHealth(leg, rec)
        progress(f"checking {leg.label}", i / max(1, len(repo.legs)))
        if rec is None:
            h.problems.append("no leg record (not a sanbos repository leg, or overwritten)")
        elif not rec.clean:
            h.problems.append("dirty: an update was interrupted; the next write re-copies it")
        elif rec.generation != top:
            h.problems.append(f"stale: generation {rec.generation}, newest is {top}")
        if fsck:
            clean, out = ext4.fsck(leg.target)
            if not clean:
                lines = [l for l in out.splitlines() if l.strip() and not l.startswith("e2fsck ")]
                h.problems.append("e2fsck -fn reports errors: " + " / ".join(lines[:3]))
        try:
            leg_toc = Toc.parse(ext4.read_file(leg.target, TOC_PATH, catastrophic=True), f"{leg.label}:{TOC_PATH}")
            if toc is not None and leg_toc.pack() != toc.pack():
                h.problems.append(f"its TOC (seqno {leg_toc.seqno}) differs from the newest (seqno {toc.seqno})")
        except SanbosError as e:
            h.problems.append(f"TOC unreadable: {e}")
        if toc is not None:
            for e in toc.images:
                if e.format == "raw-lv":
                    continue
                got = _sha256_leg(leg, f"/{e.file}", e.size)
                images.append((e, leg.label, "ok" if got == e.sha256 else
                               ("missing" if got == "missing" else f"checksum mismatch (sha256 {got[:16]}...)")))
        healths.append(h)
    if toc is not None and repo.vg is not None:
        for e in toc.images:
            if e.format != "raw-lv":
                continue
            try:
                for k, (path, off, length) in enumerate(_lv_legs(repo.vg, e.lv or "")):
                    got = _sha256_range(Path(path), off, e.size)
                    images.append((e, f"{e.lv} leg {k} ({path})", "ok" if got == e.sha256 else
                                   f"checksum mismatch (sha256 {got[:16]}...)"))
            except SanbosError as err:
                images.append((e, str(e.lv), str(err)))
    progress("verify done", 1.0)
    return VerifyReport(vg=repo.vg_name, legs=healths, images=images, toc=toc)


def _sha256_range(path: Path, offset: int, size: int) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        pos = 0
        while pos < size:
            data = os.pread(f.fileno(), min(4 * MiB, size - pos), offset + pos)
            if not data:
                break
            h.update(data)
            pos += len(data)
    return h.hexdigest()


# ---------------------------------------------------------------------------
# VG glue
# ---------------------------------------------------------------------------

def _lv_pieces(vg: Any, lv_name: str) -> list[list[tuple[str, int, int]]]:
    """Every leg of an LV as its (disk path, byte offset, length) pieces."""
    from .lvm.lvio import legs as lv_legs
    lv = vg.lv(lv_name)
    return [vg.lv_ranges(lv_name, leg=k) for k in range(lv_legs(vg.vg, lv))]


def _lv_legs(vg: Any, lv_name: str) -> list[tuple[Path, int, int]]:
    """Each leg of an LV as one contiguous (path, offset, length)."""
    out = []
    for k, pieces in enumerate(_lv_pieces(vg, lv_name)):
        if len(pieces) != 1:
            raise LVMError(f"VG {vg.name}: LV {lv_name} leg {k} is in {len(pieces)} pieces; "
                           "the repository needs each leg contiguous on its disk")
        path, off, length = pieces[0]
        out.append((Path(path), off, length))
    return out


def _leg_disks(vg: Any, lv_name: str) -> list[str]:
    """The disk ID of each leg."""
    from .lvm.lvio import legs as lv_legs, map_lv
    lv = vg.lv(lv_name)
    out = []
    for k in range(lv_legs(vg.vg, lv)):
        ext = map_lv(vg.vg, lv, k)
        out.append(vg.disk_of(ext[0].pv_name).id if ext else "?")
    return out


def repo_legs(vg: Any) -> list[Leg]:
    """The legs of instlv in an open VolumeGroup."""
    try:
        vg.lv(REPO_LV)
    except NotFoundError:
        raise NotFoundError(f"VG {vg.name} has no install repository (no LV {REPO_LV}); "
                            f"create one with 'sanbos repo create {vg.name}'") from None
    disks = _leg_disks(vg, REPO_LV)
    return [Leg(disk=d, path=p, offset=o, size=n, index=k)
            for k, ((p, o, n), d) in enumerate(zip(_lv_legs(vg, REPO_LV), disks))]


def open_repo(vg: Any, readonly: bool = True, progress: Progress = _noprogress) -> Repository:
    """The repository of an open VolumeGroup.  For writing, the VG must be open for write;
    dirty or stale legs are re-copied from a good leg first."""
    if not readonly and not getattr(vg, "write", False):
        raise UsageError(f"VG {vg.name} is open read-only; open it for write to change the repository")
    legs = repo_legs(vg)
    return Repository(legs, vg_name=vg.name, writable=not readonly, vg=vg, progress=progress)


def toc(vg: Any) -> Toc:
    """The table of contents (from a clean leg of the newest generation)."""
    return open_repo(vg, readonly=True).toc()


def verify(vg: Any, progress: Progress = _noprogress, fsck: bool = True) -> VerifyReport:
    """Every image against the TOC on every leg (and every raw BOS LV leg); ``e2fsck -fn`` each leg."""
    return verify_legs(open_repo(vg, readonly=True), progress=progress, fsck=fsck)


def _vgops():
    from . import vg as vgops
    return vgops


def create_repo(vg_name: str, disks: Sequence[Any], size: int | str, *, boot_disks: Sequence[str] | None = None,
                images: Sequence[str | os.PathLike[str]] = (), progress: Progress = _noprogress) -> Toc:
    """Create ``instlv`` (raid1, one leg per boot disk; linear on one disk) and its file system.

    ``boot_disks``: disk IDs for the legs (default: every PV of the VG).
    ``images``: OPP files (.deb / OPP tarballs) to put in the first build.
    """
    from .units import parse_size
    vgops = _vgops()
    want = parse_size(size)
    if want < 8 * MiB:
        raise UsageError(f"repository size {human(want)} is too small (8 MiB at least)")
    entries = [(inspect_opp(f), Path(f)) for f in images]
    _check_batch([e for e, _ in entries])
    with vgops.open_vg(vg_name, disks, write=False) as vg:
        if vg.vg.lv(REPO_LV) is not None:
            raise LVMError(f"VG {vg_name} already has a repository ({REPO_LV}); "
                           "use 'sanbos repo verify' / 'sanbos opp add'")
        pvs = list(boot_disks) if boot_disks else [vg.disk_of(pv.name).id for pv in vg.pvs]
    total = sum(align_up(e.size, BLOCK) for e, _ in entries)
    if total + 16 * MiB > want:
        raise SpaceError(f"VG {vg_name}: {human(total)} of images do not fit in a {human(want)} repository")
    progress(f"creating LV {REPO_LV} ({'raid1' if len(pvs) > 1 else 'linear'}, {len(pvs)} leg(s))", 0.0)
    vgops.lv_create(vg_name, list(disks), REPO_LV, want + RECORD_SIZE,
                    type="raid1" if len(pvs) > 1 else "linear", pvs=pvs)
    with vgops.open_vg(vg_name, disks, write=True) as vg:
        legs = repo_legs(vg)
        return format_legs(legs, progress=progress, files=entries)


def _check_batch(entries: Sequence[TocEntry]) -> None:
    seen: dict[str, str] = {}
    for e in entries:
        if e.name in seen:
            raise DuplicateError(f"OPP {e.name} is given twice ({seen[e.name]} and {e.source})")
        seen[e.name] = e.source


def _duplicates(toc: Toc, entries: Sequence[TocEntry], vg_name: str) -> None:
    for e in entries:
        for have in toc.find(e.name, kind=e.kind, format=e.format if e.kind == "bos" else None):
            raise DuplicateError(f"VG {vg_name}: {e.kind.upper()} {e.name} is already in the repository "
                             f"(version {have.version}, {have.file or have.lv}); "
                             f"remove it first (sanbos {e.kind} remove {vg_name} {e.name})")


@contextmanager
def _figure6(vg_name: str, disks: Sequence[Any], progress: Progress) -> Iterator[Any]:
    """Import the VG if it is exported, open it exclusively, yield it; export it again after."""
    vgops = _vgops()
    with vgops.open_vg(vg_name, disks, write=False) as vg:
        exported = vg.vg.exported
    if exported:
        progress(f"importing VG {vg_name}", None)
        vgops.import_(vg_name, list(disks))
    try:
        with vgops.open_vg(vg_name, disks, write=True) as vg:
            yield vg
    finally:
        if exported:
            progress(f"exporting VG {vg_name}", None)
            vgops.export(vg_name, list(disks))


def add_opps(vg_name: str, disks: Sequence[Any], files: Sequence[str | os.PathLike[str]],
             progress: Progress = _noprogress) -> list[TocEntry]:
    """The seed's Figure 6: add OPP images to the install VG's repository.

    Every file is read and checked first (metadata, name, duplicates, space)
    with nothing written; then the VG is imported (if exported) and opened
    exclusively, the images are written under temporary names and read back
    from every leg, the TOC is replaced, and the VG is exported again.
    """
    if not files:
        raise UsageError("no OPP files given")
    vgops = _vgops()
    entries = []
    for i, f in enumerate(files):
        progress(f"reading {f}", i / (len(files) + 2))
        entries.append((inspect_opp(f), Path(f)))
    _check_batch([e for e, _ in entries])
    with vgops.open_vg(vg_name, disks, write=False) as vg:
        r = open_repo(vg, readonly=True)
        _duplicates(r.toc(), [e for e, _ in entries], vg_name)
        need = sum(align_up(e.size, BLOCK) + 2 * BLOCK for e, _ in entries) + 64 * 1024
        free = r.free_bytes()
        if need > free:
            raise SpaceError(f"VG {vg_name}: the repository is full: the OPPs need {human(need)}, "
                             f"{human(free)} is free on {REPO_LV}; nothing written")
    with _figure6(vg_name, disks, progress) as vg:
        r = open_repo(vg, readonly=False, progress=progress)
        _duplicates(r.toc(), [e for e, _ in entries], vg_name)
        r.add_images(entries)
    progress(f"added {len(entries)} OPP(s) to VG {vg_name}", 1.0)
    return [e for e, _ in entries]


def remove_opp(vg_name: str, disks: Sequence[Any], name: str, progress: Progress = _noprogress) -> TocEntry:
    """Drop an OPP from the TOC (one transaction), then remove its file (a second one)."""
    vgops = _vgops()
    check_name(name, "OPP name")
    with vgops.open_vg(vg_name, disks, write=False) as vg:
        found = open_repo(vg).toc().find(name, kind="opp")
        if not found:
            raise NotFoundError(f"VG {vg_name}: no OPP named {name} in the repository")
    with _figure6(vg_name, disks, progress) as vg:
        r = open_repo(vg, readonly=False, progress=progress)
        found = r.toc().find(name, kind="opp")
        if not found:
            raise NotFoundError(f"VG {vg_name}: no OPP named {name} in the repository")
        dependents = [e.name for e in r.toc().opps
                      if any(re.split(r"[\s(]", d.strip())[0] == name for d in e.dependencies)]
        r.remove_entries(found)
    progress(f"removed OPP {name} from VG {vg_name}"
             + (f" (still needed by: {', '.join(dependents)})" if dependents else ""), 1.0)
    return found[0]


def add_bos(vg_name: str, disks: Sequence[Any], file: str | os.PathLike[str], *, raw: bool = False,
            name: str | None = None, version: str | None = None, description: str = "",
            progress: Progress = _noprogress) -> TocEntry:
    """Add a BOS image: a root file-system tarball into /bos, or (raw) an ext4 image as LV bos_<name>."""
    vgops = _vgops()
    entry = inspect_bos(file, raw=raw, name=name, version=version, description=description)
    src = Path(file)
    with vgops.open_vg(vg_name, disks, write=False) as vg:
        r = open_repo(vg, readonly=True)
        _duplicates(r.toc(), [entry], vg_name)
        legs_pvs = _leg_disks(vg, REPO_LV)
        stale_lv = raw and vg.vg.lv(entry.lv or "") is not None
        if not raw:
            need = align_up(entry.size, BLOCK) + 64 * 1024
            if need > r.free_bytes():
                raise SpaceError(f"VG {vg_name}: the repository is full: {src.name} needs {human(need)}, "
                                 f"{human(r.free_bytes())} free on {REPO_LV}; nothing written")
        else:
            from .lvm import alloc  # noqa: F401  (space is checked by lv_create itself)
            free = sum(vg.vg.free_extents(pv.name) for pv in vg.vg.pvs
                       if vg.disk_of(pv.name).id in legs_pvs) * vg.vg.extent_bytes
            if align_up(entry.size, vg.vg.extent_bytes) * len(legs_pvs) > free:
                raise SpaceError(f"VG {vg_name}: no room for LV {entry.lv} ({human(entry.size)} x "
                                 f"{len(legs_pvs)} legs, {human(free)} free on the boot disks); nothing written")
    if raw:
        if stale_lv:
            progress(f"removing LV {entry.lv} left by an interrupted run (not in the TOC)", None)
            vgops.lv_remove(vg_name, list(disks), entry.lv)
        progress(f"creating LV {entry.lv}", 0.1)
        vgops.lv_create(vg_name, list(disks), entry.lv, entry.size,
                        type="raid1" if len(legs_pvs) > 1 else "linear", pvs=legs_pvs)
    with _figure6(vg_name, disks, progress) as vg:
        r = open_repo(vg, readonly=False, progress=progress)
        _duplicates(r.toc(), [entry], vg_name)
        if raw:
            _write_raw(vg, entry, src, progress)
            r.add_images([], raw_entries=[entry])
        else:
            r.add_images([(entry, src)])
    progress(f"added BOS {entry.name} ({entry.format}) to VG {vg_name}", 1.0)
    return entry


def _write_raw(vg: Any, entry: TocEntry, src: Path, progress: Progress) -> None:
    pieces = _lv_pieces(vg, entry.lv or "")
    for k, leg in enumerate(pieces):
        progress(f"writing {src.name} to {entry.lv} leg {k}", 0.2 + 0.6 * k / len(pieces))
        pos = 0
        for path, off, length in leg:
            n = min(length, entry.size - pos)
            if n <= 0:
                break
            copy_range(src, pos, Path(path), off, n)
            pos += n
    for k, leg in enumerate(pieces):
        h = hashlib.sha256()
        pos = 0
        for path, off, length in leg:
            n = min(length, entry.size - pos)
            if n <= 0:
                break
            with open(path, "rb") as f:
                done = 0
                while done < n:
                    data = os.pread(f.fileno(), min(4 * MiB, n - done), off + done)
                    h.update(data)
                    done += len(data)
            pos += n
        if h.hexdigest() != entry.sha256:
            raise FormatError(f"VG {vg.name}: {entry.lv} leg {k} reads back with the wrong checksum; "
                              "the TOC was not changed")


def remove_bos(vg_name: str, disks: Sequence[Any], name: str, *, raw: bool | None = None,
               progress: Progress = _noprogress) -> list[TocEntry]:
    """Drop a BOS (both formats unless ``raw`` says which) from the TOC, then its file / LV."""
    vgops = _vgops()
    with _figure6(vg_name, disks, progress) as vg:
        r = open_repo(vg, readonly=False, progress=progress)
        found = [e for e in r.toc().find(name, kind="bos")
                 if raw is None or (e.format == "raw-lv") == raw]
        if not found:
            raise NotFoundError(f"VG {vg_name}: no BOS named {name} in the repository")
        r.remove_entries(found)
    for e in found:
        if e.lv:
            vgops.lv_remove(vg_name, list(disks), e.lv)
    return found


def repair(vg_name: str, disks: Sequence[Any], progress: Progress = _noprogress) -> list[str]:
    """Rewrite every bad copy from a good one: repository legs (whole file system from a leg whose
    record is current, e2fsck is clean and every image matches the TOC) and raw BOS LV legs (from
    a leg matching the TOC).  Every rewritten copy is read back.  Returns what was done."""
    vgops = _vgops()
    done: list[str] = []
    with vgops.open_vg(vg_name, disks, write=True) as vg:
        r = open_repo(vg, readonly=False, progress=progress)  # dirty/stale legs re-copied first
        rep = verify_legs(r, progress=lambda m, f=None: progress(m, None if f is None else 0.5 * f))
        if rep.toc is None:
            raise FormatError(f"VG {vg_name}: no readable table of contents on any leg; nothing to repair from")
        bad_legs = {h.leg.index for h in rep.legs if not h.ok}
        for e, where, status in rep.images:
            if status != "ok" and e.format != "raw-lv":
                bad_legs.update(l.index for l in r.legs if l.label == where)
        good = [l for l in r.legs if l.index not in bad_legs]
        if bad_legs and not good:
            raise FormatError(f"VG {vg_name}: every leg of {REPO_LV} has a problem; no good copy to repair from "
                              "(" + "; ".join(rep.problems()[:4]) + ")")
        src = good[0] if good else None
        rec = src.read_record() if src else None
        for leg in r.legs:
            if leg.index not in bad_legs or src is None or rec is None:
                continue
            progress(f"rewriting {leg.label} from {src.label}", None)
            leg.write_record(LegRecord(LegRecord.DIRTY, rec.generation, r.fs_size))
            copy_range(src.path, src.offset, leg.path, leg.offset, r.fs_size)
            if _differing(src.path, [leg], r.fs_size, src_off=src.offset):
                raise FormatError(f"{leg.label}: still differs from {src.label} after rewriting it")
            leg.write_record(LegRecord(LegRecord.CLEAN, rec.generation, r.fs_size))
            done.append(f"{leg.label}: rewritten from {src.label}")
        for e in rep.toc.images:
            if e.format != "raw-lv" or not e.lv:
                continue
            legs = _lv_legs(vg, e.lv)
            sums = [_sha256_range(p, off, e.size) for p, off, _ in legs]
            ok = [k for k, h in enumerate(sums) if h == e.sha256]
            bad = [k for k, h in enumerate(sums) if h != e.sha256]
            if bad and not ok:
                raise FormatError(f"VG {vg_name}: no leg of {e.lv} matches the TOC; add the BOS again")
            for k in bad:
                sp, so, _ = legs[ok[0]]
                dp, do, _ = legs[k]
                progress(f"rewriting {e.lv} leg {k} from leg {ok[0]}", None)
                copy_range(sp, so, dp, do, e.size)
                if _sha256_range(dp, do, e.size) != e.sha256:
                    raise FormatError(f"{e.lv} leg {k} ({dp}): still wrong after rewriting it")
                done.append(f"{e.lv} leg {k} ({dp}): rewritten from leg {ok[0]}")
    progress(f"VG {vg_name}: repository repaired ({len(done)} cop{'y' if len(done) == 1 else 'ies'} rewritten)", 1.0)
    return done


# ---------------------------------------------------------------------------
# Read-only mount for people (root)
# ---------------------------------------------------------------------------

def mount(vg: Any, directory: str | os.PathLike[str], progress: Progress = _noprogress) -> str:
    """Mount one clean leg read-only on ``directory`` through a read-only loop device; return it."""
    if os.geteuid() != 0:
        raise UsageError("mounting the repository needs root (loop devices); "
                         "without root use 'sanbos repo toc' and 'sanbos repo verify'")
    d = Path(directory)
    if not d.is_dir():
        raise NotFoundError(f"{d}: no such directory to mount the repository on")
    if os.path.ismount(d):
        raise UsageError(f"{d}: something is already mounted there")
    r = open_repo(vg, readonly=True)
    leg = r.good_legs()[0]
    res = run(["losetup", "-f", "--show", "--read-only", "--offset", str(leg.offset),
               "--sizelimit", str(leg.fs_size), str(leg.path)], what=f"losetup for {leg.label}")
    dev = res.stdout.decode().strip()
    try:
        run(["mount", "-t", "ext4", "-o", "ro,noload", dev, str(d)], what=f"mount {dev} on {d}")
    except SanbosError:
        run(["losetup", "-d", dev], check=False)
        raise
    progress(f"VG {r.vg_name}: {leg.label} mounted read-only on {d} ({dev})", 1.0)
    return dev


def _mount_source(d: Path) -> str | None:
    real = os.path.realpath(d)
    src = None
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        parts = line.split()
        if len(parts) > 4 and parts[4] == real:
            sep = parts.index("-")
            src = parts[sep + 2]
    return src


def umount(directory: str | os.PathLike[str], progress: Progress = _noprogress) -> str:
    """Unmount ``directory`` and detach exactly the loop device it was mounted from."""
    d = Path(directory)
    src = _mount_source(d)
    if src is None:
        raise NotFoundError(f"{d}: nothing is mounted there")
    if not re.match(r"^/dev/loop\d+$", src):
        raise UsageError(f"{d}: mounted from {src}, not from a repository loop device; not touching it")
    run(["umount", str(d)], what=f"umount {d}")
    run(["losetup", "-d", src], what=f"losetup -d {src}")
    progress(f"{d} unmounted, {src} detached", 1.0)
    return src
