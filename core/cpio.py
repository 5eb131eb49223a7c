"""Reproducible newc cpio archives (the initramfs format), written in Python.

``busybox cpio -o -H newc`` (and GNU cpio without ``--reproducible``) put
each file's inode number, the device numbers of the file system the tree
sits on, the owner of the files and the directory's own time stamp into the
archive, so the same tree packed twice gives different bytes.  ``newc``
here writes the same tree the same way every time, as the kernel's
``gen_init_cpio`` does: entries sorted by path, inode numbers counted from
1, device numbers 0, owner root:root, one fixed mtime, hard links stored as
separate files.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

TRAILER = "TRAILER!!!"


def _pad(n: int) -> bytes:
    return b"\0" * (-n % 4)


def _entry(name: str, *, ino: int, mode: int, nlink: int, mtime: int, data: bytes = b"",
           rdev: int = 0) -> bytes:
    raw = name.encode() + b"\0"
    fields = (ino, mode, 0, 0, nlink, mtime, len(data), 0, 0,
              os.major(rdev) if rdev else 0, os.minor(rdev) if rdev else 0, len(raw), 0)
    head = b"070701" + b"".join(b"%08X" % f for f in fields)
    return head + raw + _pad(len(head) + len(raw)) + data + _pad(len(data))


def newc(root: str | os.PathLike[str], *, mtime: int) -> bytes:
    """The tree under ``root`` as a newc cpio archive (``.`` first, then every path sorted).

    Permission bits, file contents, symlink targets and device numbers of
    device nodes come from the tree; everything else is fixed, so the same
    tree (same names, modes and contents) gives the same bytes anywhere.
    """
    root = Path(root)
    paths = [root]
    for dirpath, dirnames, filenames in os.walk(root):
        paths += [Path(dirpath) / n for n in dirnames + filenames]
    names = sorted("." if p == root else "./" + p.relative_to(root).as_posix() for p in paths)
    out = bytearray()
    for ino, name in enumerate(names, start=1):
        p = root / name
        st = os.lstat(p)
        mode = stat.S_IFMT(st.st_mode) | stat.S_IMODE(st.st_mode)
        arc = name[2:] if name.startswith("./") else name
        if stat.S_ISREG(st.st_mode):
            out += _entry(arc, ino=ino, mode=mode, nlink=1, mtime=mtime, data=p.read_bytes())
        elif stat.S_ISLNK(st.st_mode):
            out += _entry(arc, ino=ino, mode=mode, nlink=1, mtime=mtime, data=os.readlink(p).encode())
        elif stat.S_ISDIR(st.st_mode):
            subdirs = sum(1 for e in os.scandir(p) if e.is_dir(follow_symlinks=False))
            out += _entry(arc, ino=ino, mode=mode, nlink=2 + subdirs, mtime=mtime)
        elif stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode):
            out += _entry(arc, ino=ino, mode=mode, nlink=1, mtime=mtime, rdev=st.st_rdev)
        else:                                       # fifo, socket
            out += _entry(arc, ino=ino, mode=mode, nlink=1, mtime=mtime)
    out += _entry(TRAILER, ino=0, mode=0, nlink=1, mtime=0)
    return bytes(out)
