"""ext2/ext4 file systems at byte offsets, through e2fsprogs: no mount, no root.

A ``Target`` is a byte range of an image file or a block device (an LV leg,
for instance).  e2fsprogs reach it with their ``NAME?offset=N`` I/O option;
``mke2fs -E offset=N`` creates one there.  debugfs exits 0 even when a
request fails, so its stderr is read for errors.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from .errors import SpaceError, ToolError
from .tools import run

_DEBUGFS_ERRORS = ("File not found", "not found by ext2_lookup", "Could not allocate",
                   "No free space", "Filesystem has unexpected", "Bad magic number",
                   "ext2fs_", "Couldn't", "Could not", "error", "Ext2 inode is not a directory",
                   "already exists", "short read", "Filesystem not open", "Attempt to read block")


@dataclass(frozen=True)
class Target:
    """Where a file system lives: ``path`` from byte ``offset`` for ``size`` bytes."""

    path: Path
    offset: int
    size: int
    name: str = ""

    @property
    def spec(self) -> str:
        return f"{self.path}?offset={self.offset}" if self.offset else str(self.path)

    @property
    def label(self) -> str:
        return self.name or f"{self.path}@{self.offset}"


def make(target: Target, src_dir: str | os.PathLike[str] | None = None, *, label: str = "",
         fstype: str = "ext4", uuid: str | None = None, features: str | None = None,
         timestamp: int | None = None, blocksize: int | None = None,
         hash_seed: str | None = None) -> None:
    """Create a file system filling ``target``, populated from ``src_dir``.

    ``blocksize`` (bytes) overrides the default (4096 from 64 MiB, else 1024).

    ``timestamp`` (seconds: E2FSPROGS_FAKE_TIME and SOURCE_DATE_EPOCH), ``uuid``
    and ``hash_seed`` (the directory-index hash seed, a UUID; mke2fs draws
    both at random otherwise) together make the result reproducible: the same
    tree (names, modes, owners, contents, mtimes) gives the same bytes.
    """
    if target.size < 1024 * 1024:
        raise SpaceError(f"{target.label}: {target.size} bytes is too small for a file system")
    bs = blocksize or (4096 if target.size >= 64 << 20 else 1024)
    cmd = ["mke2fs", "-F", "-q", "-t", fstype, "-b", str(bs)]
    ext = [f"offset={target.offset}"] if target.offset else []
    if hash_seed:
        ext.append(f"hash_seed={hash_seed}")
    if ext:
        cmd += ["-E", ",".join(ext)]
    if label:
        cmd += ["-L", label[:16]]
    if uuid:
        cmd += ["-U", uuid]
    if features:
        cmd += ["-O", features]
    if src_dir is not None:
        cmd += ["-d", str(src_dir)]
    cmd += [str(target.path), f"{target.size // 1024}k"]
    env = {"MKE2FS_CONFIG": "/etc/mke2fs.conf"}
    if timestamp is not None:
        env.update(E2FSPROGS_FAKE_TIME=str(timestamp), SOURCE_DATE_EPOCH=str(timestamp))
    try:
        run(cmd, env=env, what=f"mke2fs on {target.label}")
    except ToolError as e:
        if "No space" in e.output or "Could not allocate" in e.output or "too small" in e.output:
            raise SpaceError(f"{target.label}: the files do not fit in {target.size} bytes") from None
        raise
    if timestamp is not None and src_dir is not None:
        _clamp_times(target, Path(src_dir), timestamp, env)


def _clamp_times(target: Target, src: Path, timestamp: int, env: dict[str, str]) -> None:
    """Every inode copied from ``src`` gets ``timestamp`` as its atime, mtime, ctime and crtime.

    ``mke2fs -d`` copies each source file's atime and ctime (which no one can
    set: it is when the file was last changed here), so without this the same
    tree packed twice gives different bytes.
    """
    paths = ["/"] + sorted("/" + p.relative_to(src).as_posix() for p in src.rglob("*"))
    reqs = []
    for p in paths:
        q = p.replace('"', '\\"')
        reqs += [f'sif "{q}" {field} @{timestamp}' for field in ("atime", "mtime", "ctime", "crtime")]
        reqs += [f'sif "{q}" {field}_extra 0' for field in ("atime", "mtime", "ctime", "crtime")]
    debugfs(target, *reqs, write=True, env=env)


def debugfs(target: Target, *requests: str, write: bool = False, catastrophic: bool = False,
            env: dict[str, str] | None = None) -> str:
    """Run debugfs requests; raise ToolError if debugfs reports a failure.

    ``catastrophic`` (``debugfs -c``, read-only) does not read the allocation
    bitmaps: file reads still work on a file system whose bitmaps are
    inconsistent (an interrupted update).
    """
    cmd = ["debugfs"]
    if write:
        cmd.append("-w")
    elif catastrophic:
        cmd.append("-c")
    with tempfile.NamedTemporaryFile("w", suffix=".cmds", delete=False) as f:
        f.write("\n".join(requests) + "\n")
        script = f.name
    try:
        res = run([*cmd, "-f", script, target.spec], env=env, what=f"debugfs on {target.label}")
    finally:
        os.unlink(script)
    err = res.stderr.decode(errors="replace")
    lines = [l for l in err.splitlines() if l and not l.startswith("debugfs ")]
    bad = [l for l in lines if any(m in l for m in _DEBUGFS_ERRORS)]
    if bad:
        text = " / ".join(bad[:3])
        if "Could not allocate" in text or "No free space" in text:
            raise SpaceError(f"{target.label}: file system is full ({text})")
        raise ToolError(f"debugfs on {target.label}: {text}", output=err)
    return res.stdout.decode(errors="replace")


def read_file(target: Target, path: str, *, catastrophic: bool = False) -> bytes:
    """The contents of ``path`` inside the file system."""
    with tempfile.TemporaryDirectory() as d:
        out = Path(d) / "out"
        debugfs(target, f'dump "{path}" "{out}"', catastrophic=catastrophic)
        if not out.exists():
            raise ToolError(f"{target.label}: cannot read {path}")
        return out.read_bytes()


def listdir(target: Target, path: str = "/") -> list[str]:
    """Names in a directory (without . and ..)."""
    out = debugfs(target, f'ls -p "{path}"')
    names = []
    for line in out.splitlines():
        parts = line.strip().split("/")
        if len(parts) >= 6 and parts[5] not in (".", "..", ""):
            names.append(parts[5])
    return names


def exists(target: Target, path: str) -> bool:
    try:
        debugfs(target, f'stat "{path}"')
        return True
    except ToolError:
        return False


def write_file(target: Target, local: str | os.PathLike[str], path: str, *, replace: bool = False) -> None:
    """Copy a local file into the file system at ``path`` (directories must exist)."""
    parent, name = os.path.split(path.rstrip("/"))
    reqs = [f'cd "{parent or "/"}"']
    if replace and exists(target, path):
        reqs.append(f'rm "{name}"')
    reqs.append(f'write "{local}" "{name}"')
    debugfs(target, *reqs, write=True)


def mkdir(target: Target, path: str) -> None:
    if not exists(target, path):
        debugfs(target, f'mkdir "{path}"', write=True)


def remove(target: Target, path: str) -> None:
    debugfs(target, f'rm "{path}"', write=True)


def rename(target: Target, old: str, new: str) -> None:
    """Atomic-enough rename inside one directory: link the new name, then unlink the old."""
    reqs = []
    if exists(target, new):
        reqs.append(f'unlink "{new}"')
    reqs += [f'ln "{old}" "{new}"', f'unlink "{old}"']
    debugfs(target, *reqs, write=True)


def fsck(target: Target) -> tuple[bool, str]:
    """``e2fsck -fn``: (clean?, output)."""
    res = run(["e2fsck", "-fn", target.spec], check=False, what=f"e2fsck on {target.label}")
    out = (res.stdout + res.stderr).decode(errors="replace")
    return res.returncode == 0, out
