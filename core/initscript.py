"""The busybox ``/init`` prologue that every sanbos initramfs starts with.

The LVM guest, the maintenance image and an installed system's bosboot
initramfs all begin the same way: busybox installs its applets, the kernel's
pseudo file systems are mounted and ``/dev/mapper`` exists for LVM2.  Each
then goes on with its own body.
"""

from __future__ import annotations

from typing import Sequence

#: the directories every initramfs makes before anything else
BASE_DIRS = ("/proc", "/sys", "/dev", "/run/lock/lvm", "/tmp", "/usr/bin", "/usr/sbin", "/sbin")
DEFAULT_PATH = "/sbin:/usr/sbin:/bin:/usr/bin"


def busybox_init(body: str, *, dirs: Sequence[str] = (), path: str = DEFAULT_PATH, env: str = "",
                 comment: str = "") -> str:
    """A complete busybox ``/init``: the shared prologue, then ``body``.

    ``dirs`` are made along with :data:`BASE_DIRS`; ``env`` adds ``NAME=value``
    words to the ``export`` line; ``comment`` (lines without ``#``) goes under
    the ``#!`` line."""
    lines = ["#!/bin/busybox sh"]
    lines += [f"# {c}" if c else "#" for c in comment.splitlines()]
    lines += [
        "/bin/busybox mkdir -p " + " ".join(list(BASE_DIRS) + [d for d in dirs if d not in BASE_DIRS]),
        "/bin/busybox --install -s",
        f"export PATH={path} LVM_SUPPRESS_FD_WARNINGS=1" + (f" {env}" if env else ""),
        "mount -t proc proc /proc",
        "mount -t sysfs sysfs /sys",
        "mount -t devtmpfs devtmpfs /dev",
        "mkdir -p /dev/mapper",
    ]
    return "\n".join(lines) + "\n" + body.lstrip("\n")
