"""The demo SAN fabric: a directory of sparse image files plus a manifest.

``fabric.toml`` gives each image a WWN (NAA IEEE Registered Extended, 16
bytes, unique), a serial and a SAN address, the way an array presents LUNs::

    [fabric]
    name = "demo"
    version = 1

    [[lun]]
    file = "lun00.img"
    wwn = "naa.600a0b8000112233445566778899aabb"
    serial = "SANBOS00000000"
    address = "fc-0x500a0b8000112233-lun-0"
    size = 268435456
"""

from __future__ import annotations

import os
import re
import secrets
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from .errors import FabricError, UsageError

MANIFEST = "fabric.toml"
_WWN_RE = re.compile(r"^naa\.[0-9a-f]{16}([0-9a-f]{16})?$")
_FILE_RE = re.compile(r"^[A-Za-z0-9._+-]+$")
MIN_LUN_SIZE = 8 * 1024 * 1024


@dataclass
class Lun:
    """One LUN of the fabric: an image file with its SAN identity."""

    file: str
    wwn: str
    serial: str
    address: str
    size: int
    path: Path = field(default=Path("."), compare=False)


@dataclass
class Fabric:
    """A loaded fabric directory."""

    root: Path
    name: str
    luns: list[Lun]
    array_id: str = ""

    @property
    def manifest(self) -> Path:
        return self.root / MANIFEST

    def by_wwn(self, wwn: str) -> Lun:
        for lun in self.luns:
            if lun.wwn == wwn:
                return lun
        raise FabricError(f"{self.manifest}: no LUN with WWN {wwn}")


def _toml_str(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


def save(fabric: Fabric) -> None:
    """Write the manifest atomically (temp file, fsync, rename)."""
    lines = ["[fabric]", f"name = {_toml_str(fabric.name)}", "version = 1",
             f"array = {_toml_str(fabric.array_id)}", ""]
    for lun in fabric.luns:
        lines += ["[[lun]]",
                  f"file = {_toml_str(lun.file)}",
                  f"wwn = {_toml_str(lun.wwn)}",
                  f"serial = {_toml_str(lun.serial)}",
                  f"address = {_toml_str(lun.address)}",
                  f"size = {lun.size}", ""]
    tmp = fabric.manifest.with_suffix(".toml.tmp")
    with open(tmp, "w") as f:
        f.write("\n".join(lines))
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, fabric.manifest)


def load(root: str | os.PathLike[str]) -> Fabric:
    """Load and validate a fabric directory."""
    root = Path(root)
    manifest = root / MANIFEST
    if not root.is_dir():
        raise FabricError(f"{root}: not a fabric directory (it does not exist or is not a directory)")
    if not manifest.is_file():
        raise FabricError(f"{root}: no {MANIFEST} here; create a fabric with 'sanbos fabric create {root}'")
    try:
        data = tomllib.loads(manifest.read_text())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise FabricError(f"{manifest}: not valid TOML: {e}") from None
    head = data.get("fabric")
    if not isinstance(head, dict):
        raise FabricError(f"{manifest}: missing [fabric] table")
    if head.get("version") != 1:
        raise FabricError(f"{manifest}: unsupported manifest version {head.get('version')!r} (expected 1)")
    raw = data.get("lun", [])
    if not isinstance(raw, list):
        raise FabricError(f"{manifest}: 'lun' must be an array of tables ([[lun]])")
    luns: list[Lun] = []
    seen_wwn: dict[str, str] = {}
    seen_file: set[str] = set()
    for i, entry in enumerate(raw):
        where = f"{manifest}: LUN #{i}"
        if not isinstance(entry, dict):
            raise FabricError(f"{where}: not a table")
        for key, typ in (("file", str), ("wwn", str), ("serial", str), ("address", str), ("size", int)):
            if not isinstance(entry.get(key), typ) or isinstance(entry.get(key), bool):
                raise FabricError(f"{where}: '{key}' is missing or not a {typ.__name__}")
        file, wwn = entry["file"], entry["wwn"].lower()
        where = f"{manifest}: LUN {file}"
        if not _FILE_RE.match(file) or file in (".", ".."):
            raise FabricError(f"{where}: file name must be a plain name inside the fabric directory")
        if file in seen_file:
            raise FabricError(f"{where}: listed twice")
        seen_file.add(file)
        if not _WWN_RE.match(wwn):
            raise FabricError(f"{where}: WWN {entry['wwn']!r} is not an NAA WWN (naa. + 16 or 32 hex digits)")
        if wwn in seen_wwn:
            raise FabricError(f"{where}: duplicate WWN {wwn}, already used by {seen_wwn[wwn]}")
        seen_wwn[wwn] = file
        size = entry["size"]
        if size < MIN_LUN_SIZE or size % 512:
            raise FabricError(f"{where}: bad size {size} (must be a multiple of 512 and at least 8 MiB)")
        path = root / file
        if path.is_symlink() and path.resolve().parent != root.resolve():
            raise FabricError(f"{where}: image {path} is a link that leaves the fabric directory")
        if not path.is_file():
            raise FabricError(f"{where}: image file {path} is missing")
        actual = path.stat().st_size
        if actual != size:
            raise FabricError(f"{where}: image {path} is {actual} bytes but the manifest says {size}")
        luns.append(Lun(file=file, wwn=wwn, serial=entry["serial"], address=entry["address"],
                        size=size, path=path))
    return Fabric(root=root, name=str(head.get("name", root.name)), luns=luns,
                  array_id=str(head.get("array", "")))


def _new_array_id() -> str:
    # NAA 6: IEEE registered extended; a fixed OUI-like prefix plus random vendor bits
    return "600a0b80" + secrets.token_hex(4)


def _make_lun(fabric: Fabric, index: int, size: int, file: str | None = None) -> Lun:
    wwn = f"naa.{fabric.array_id}{secrets.token_hex(4)}{index:08x}"
    serial = f"SB{fabric.array_id[-6:].upper()}{index:06d}"
    port = f"0x5{fabric.array_id[1:8]}{index % 4:08x}"
    address = f"fc-{port}-lun-{index}"
    return Lun(file=file or f"lun{index:02d}.img", wwn=wwn, serial=serial, address=address,
               size=size, path=fabric.root / (file or f"lun{index:02d}.img"))


def create(root: str | os.PathLike[str], disks: int, size: int, name: str | None = None) -> Fabric:
    """Make a new fabric with ``disks`` sparse images of ``size`` bytes."""
    root = Path(root)
    if disks < 1:
        raise UsageError("a fabric needs at least one disk (--disks N, N >= 1)")
    if size < MIN_LUN_SIZE or size % 512:
        raise UsageError(f"disk size {size} is too small or not a multiple of 512 (minimum 8 MiB)")
    if (root / MANIFEST).exists():
        raise FabricError(f"{root}: already holds a fabric ({MANIFEST}); use 'sanbos fabric add' to grow it")
    from .tools import make_dir
    made = not root.exists()
    make_dir(root, "fabric")
    fabric = Fabric(root=root, name=name or root.name, luns=[], array_id=_new_array_id())
    try:
        add(fabric, disks, size)
    except BaseException:
        if made:   # add() removed its images; leave no empty directory behind either
            try:
                root.rmdir()
            except OSError:
                pass
        raise
    return fabric


def add(fabric: Fabric, disks: int, size: int) -> list[Lun]:
    """Add ``disks`` new blank sparse LUNs to a fabric and save the manifest."""
    if disks < 1:
        raise UsageError(f"{fabric.root}: add at least one disk (--disks N, N >= 1)")
    if size < MIN_LUN_SIZE or size % 512:
        raise UsageError(f"disk size {size} is too small or not a multiple of 512 (minimum 8 MiB)")
    if not fabric.array_id:
        fabric.array_id = _new_array_id()
    start = len(fabric.luns)
    new = []
    used = {lun.file for lun in fabric.luns}
    index = start
    while len(new) < disks:
        lun = _make_lun(fabric, index, size)
        index += 1
        if lun.file in used or lun.path.exists():
            continue
        try:
            with open(lun.path, "xb") as f:
                f.truncate(size)
        except OSError as e:
            for done in new:   # nothing half-made is left behind
                done.path.unlink(missing_ok=True)
            lun.path.unlink(missing_ok=True)
            raise FabricError(f"{fabric.root}: cannot create disk image {lun.file}: {e.strerror or e}") from None
        new.append(lun)
    fabric.luns.extend(new)
    save(fabric)
    return new


def adopt(fabric: Fabric, image: str | os.PathLike[str]) -> Lun:
    """Adopt an existing image file (moved into place by name) as a new LUN."""
    src = Path(image)
    if src.is_dir():
        raise FabricError(f"{src}: is a directory, not an image file")
    if not src.is_file():
        raise FabricError(f"{src}: no such image file")
    size = src.stat().st_size
    if size < MIN_LUN_SIZE or size % 512:
        raise FabricError(f"{src}: size {size} is too small or not a multiple of 512")
    if src.resolve().parent != fabric.root.resolve():
        dest = fabric.root / src.name
        if dest.exists():
            raise FabricError(f"{dest}: a file of that name is already in the fabric")
        os.link(src, dest) if src.stat().st_dev == fabric.root.stat().st_dev else _copy_sparse(src, dest)
        src = dest
    if any(lun.file == src.name for lun in fabric.luns):
        raise FabricError(f"{src}: already a LUN of this fabric")
    lun = _make_lun(fabric, len(fabric.luns), size, file=src.name)
    fabric.luns.append(lun)
    save(fabric)
    return lun


def _copy_sparse(src: Path, dest: Path) -> None:
    import subprocess
    subprocess.run(["cp", "--sparse=always", str(src), str(dest)], check=True)
