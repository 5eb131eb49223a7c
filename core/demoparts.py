"""Demo fixtures built from real parts: a busybox BOS and two Debian-package OPPs.

* ``bos_tree(dir)``: a small root file system: ``/bin/busybox`` (busybox-static,
  from ``core.debparts.busybox``) with one symlink per applet, ``/etc``
  (passwd, group, hostname, os-release, fstab), and ``/init`` +
  ``/sbin/init``: a shell script that prints an *installed system* banner
  listing ``/var/lib/sanbos/opps`` (one file per installed OPP) and powers off.
* ``bos_tarball(out)``: that tree as a POSIX tar (gzip if ``out`` ends .gz),
  owned by root, reproducible (sorted, fixed modes and mtimes, gzip header
  without name or time: the same busybox gives the same bytes).
* ``bos_raw_image(out)``: that tree as a raw ext4 image (``mke2fs -d``),
  reproducible too (fixed time, UUID and hash seed).
* ``opp_deb(out_dir, name, version, depends, description)``: a real Debian
  package built with ``dpkg-deb --build --root-owner-group``; it installs
  ``/var/lib/sanbos/opps/<name>`` (the banner lists it) and
  ``/usr/share/sanbos/<name>/README``.
* ``demo_opps(out_dir)``: the two demo OPPs, ``sanbos-demo-tools`` depending
  on ``sanbos-demo-base``.
* ``opp_tarball(out, name, ...)``: an OPP in the tarball format: a tar with a
  ``sanbos-opp.toml`` member describing it.

All builders take a ``progress(message, fraction)`` callback where they run
long enough to need one.
"""

from __future__ import annotations

import contextlib
import gzip
import io
import os
import shutil
import subprocess
import tarfile
import tempfile
import uuid as uuidlib
from pathlib import Path
from typing import Callable

from . import debparts, ext4
from .errors import ToolError
from .tools import run

Progress = Callable[[str, "float | None"], None]

#: fixed timestamp (2024-01-01) so the fixtures are reproducible
EPOCH = 1704067200

BOS_NAME = "sanbos-demo-bos"
BOS_VERSION = "1.0"
OPP_BASE = "sanbos-demo-base"
OPP_TOOLS = "sanbos-demo-tools"
BANNER = "SANBOS INSTALLED SYSTEM"

INIT_SCRIPT = f"""#!/bin/sh
# sanbos demo BOS: the installed system's init.
PATH=/sbin:/bin:/usr/sbin:/usr/bin
export PATH
mount -t proc proc /proc 2>/dev/null
mount -t sysfs sysfs /sys 2>/dev/null
mount -t devtmpfs devtmpfs /dev 2>/dev/null
echo "=================================================="
echo "{BANNER}: $(cat /etc/sanbos-bos 2>/dev/null)"
echo "host: $(cat /etc/hostname 2>/dev/null)"
echo "installed OPPs (/var/lib/sanbos/opps):"
if [ -d /var/lib/sanbos/opps ] && [ -n "$(ls /var/lib/sanbos/opps 2>/dev/null)" ]; then
    for f in /var/lib/sanbos/opps/*; do
        echo "  $(basename "$f"): $(head -n 1 "$f")"
    done
else
    echo "  (none)"
fi
echo "=================================================="
echo "SANBOS-BOS-READY"
sync
if [ "$$" = 1 ]; then
    poweroff -f
fi
"""


def _noprogress(message: str, fraction: float | None = None) -> None:
    pass


def bos_tree(dest: str | os.PathLike[str], *, name: str = BOS_NAME, version: str = BOS_VERSION,
             busybox: str | os.PathLike[str] | None = None) -> Path:
    """Populate ``dest`` (created, must be empty) with the demo root file system."""
    root = Path(dest)
    root.mkdir(parents=True, exist_ok=True)
    if any(root.iterdir()):
        raise ToolError(f"{root}: not empty; the demo BOS tree needs an empty directory")
    bb = Path(busybox) if busybox else debparts.busybox()
    for d in ("bin", "sbin", "usr/bin", "usr/sbin", "etc", "proc", "sys", "dev", "tmp", "root",
              "var/lib/sanbos/opps", "var/log", "mnt"):
        (root / d).mkdir(parents=True, exist_ok=True)
    shutil.copyfile(bb, root / "bin/busybox")
    os.chmod(root / "bin/busybox", 0o755)
    res = run([str(bb), "--list-full"], what=f"{bb} --list-full")
    for line in res.stdout.decode().split():
        rel = line.strip().lstrip("/")
        if not rel or rel == "bin/busybox":
            continue
        link = root / rel
        link.parent.mkdir(parents=True, exist_ok=True)
        if not link.exists() and not link.is_symlink():
            os.symlink(os.path.relpath("/bin/busybox", "/" + os.path.dirname(rel)), link)
    files = {
        "etc/passwd": "root:x:0:0:root:/root:/bin/sh\n",
        "etc/group": "root:x:0:\n",
        "etc/hostname": "sanbos-demo\n",
        "etc/fstab": "proc /proc proc defaults 0 0\n",
        "etc/sanbos-bos": f"{name} {version}\n",
        "etc/os-release": f'NAME="sanbos demo BOS"\nID=sanbos-demo\nVERSION_ID="{version}"\n'
                          f'PRETTY_NAME="{name} {version} (busybox)"\n',
        "init": INIT_SCRIPT,
    }
    for rel, text in files.items():
        (root / rel).write_text(text)
    os.chmod(root / "init", 0o755)
    sbin_init = root / "sbin/init"
    if sbin_init.exists() or sbin_init.is_symlink():
        sbin_init.unlink()
    os.symlink("../init", sbin_init)
    for p in root.rglob("*"):                   # modes as listed, not whatever the umask gave
        if p.is_dir() and not p.is_symlink():
            os.chmod(p, 0o755)
        elif p.is_file() and not p.is_symlink():
            os.chmod(p, 0o644)
    os.chmod(root, 0o755)
    os.chmod(root / "bin/busybox", 0o755)
    os.chmod(root / "init", 0o755)
    os.chmod(root / "tmp", 0o1777)
    for p in [root, *root.rglob("*")]:
        os.utime(p, (EPOCH, EPOCH), follow_symlinks=False)
    return root


def _tar_filter(info: tarfile.TarInfo) -> tarfile.TarInfo:
    info.uid = info.gid = 0
    info.uname = info.gname = "root"
    info.mtime = EPOCH
    return info


@contextlib.contextmanager
def _open_tar(out: Path):
    """A PAX tar writer for ``out``: plain, gzip (``.gz``/``.tgz``) or xz (``.xz``).

    The gzip header carries no file name and the fixed EPOCH (``gzip -n`` with
    SOURCE_DATE_EPOCH): tarfile's own ``w:gz`` writes the time of the run.
    """
    if out.name.endswith((".gz", ".tgz")):
        with open(out, "wb") as f, \
                gzip.GzipFile(filename="", fileobj=f, mode="wb", mtime=EPOCH, compresslevel=9) as gz, \
                tarfile.open(fileobj=gz, mode="w", format=tarfile.PAX_FORMAT) as tf:
            yield tf
    else:
        with tarfile.open(out, "w:xz" if out.name.endswith(".xz") else "w", format=tarfile.PAX_FORMAT) as tf:
            yield tf


def tar_tree(tree: str | os.PathLike[str], out: str | os.PathLike[str]) -> Path:
    """Pack ``tree`` as a root-owned POSIX tar (``.tar.gz``/``.tgz`` → gzip, ``.tar.xz`` → xz).

    Reproducible: entries sorted, owner root, mtimes EPOCH, gzip header without name or time.
    """
    out = Path(out)
    tree = Path(tree)
    with _open_tar(out) as tf:
        for p in sorted([tree, *tree.rglob("*")]):
            arc = "." if p == tree else "./" + str(p.relative_to(tree))
            tf.add(p, arcname=arc, recursive=False, filter=_tar_filter)
    return out


def bos_tarball(out: str | os.PathLike[str], *, name: str = BOS_NAME, version: str = BOS_VERSION,
                busybox: str | os.PathLike[str] | None = None) -> Path:
    """The demo BOS as a root file-system tarball."""
    with tempfile.TemporaryDirectory(prefix="sanbos-bos-") as d:
        tree = bos_tree(Path(d) / "root", name=name, version=version, busybox=busybox)
        return tar_tree(tree, out)


def bos_raw_image(out: str | os.PathLike[str], *, size: int = 16 << 20, name: str = BOS_NAME,
                  version: str = BOS_VERSION, busybox: str | os.PathLike[str] | None = None) -> Path:
    """The demo BOS as a raw ext4 image of ``size`` bytes (label = name)."""
    out = Path(out)
    with tempfile.TemporaryDirectory(prefix="sanbos-bos-") as d:
        tree = bos_tree(Path(d) / "root", name=name, version=version, busybox=busybox)
        if out.exists():
            out.unlink()
        with open(out, "wb") as f:
            f.truncate(size)
        ids = [str(uuidlib.uuid5(uuidlib.NAMESPACE_URL, f"sanbos-demo-bos:{what}:{name}:{version}"))
               for what in ("fs", "hash-seed")]
        ext4.make(ext4.Target(out, 0, size, name=str(out)), tree, label=name[:16], timestamp=EPOCH,
                  uuid=ids[0], hash_seed=ids[1])
    return out


def opp_deb(out_dir: str | os.PathLike[str], name: str, version: str = "1.0", *,
            depends: list[str] | tuple[str, ...] = (), description: str = "",
            payload: dict[str, bytes] | None = None) -> Path:
    """Build a real Debian package with ``dpkg-deb --build``; return its path."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    summary = description or f"sanbos demo optional program product {name}"
    with tempfile.TemporaryDirectory(prefix="sanbos-deb-") as d:
        root = Path(d) / "pkg"
        (root / "DEBIAN").mkdir(parents=True)
        control = [f"Package: {name}", f"Version: {version}", "Architecture: all",
                   "Maintainer: sanbos demo <sanbos@example.invalid>", "Section: misc",
                   "Priority: optional"]
        if depends:
            control.append("Depends: " + ", ".join(depends))
        control.append(f"Description: {summary}")
        control.append(" Built by sanbos core.demoparts for the demo install volume group.")
        (root / "DEBIAN/control").write_text("\n".join(control) + "\n")
        marker = root / "var/lib/sanbos/opps" / name
        marker.parent.mkdir(parents=True)
        marker.write_text(f"{version} {summary}\n")
        doc = root / "usr/share/sanbos" / name / "README"
        doc.parent.mkdir(parents=True)
        doc.write_text(f"{name} {version}\n{summary}\n")
        for rel, data in (payload or {}).items():
            p = root / rel.lstrip("/")
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_bytes(data)
        for p in [root, *root.rglob("*")]:
            os.chmod(p, 0o755 if p.is_dir() else 0o644)     # dpkg-deb refuses a 0700 DEBIAN (umask 077)
            os.utime(p, (EPOCH, EPOCH), follow_symlinks=False)
        out = out_dir / f"{name}_{version}_all.deb"
        run(["dpkg-deb", "--root-owner-group", "-Zgzip", "--build", str(root), str(out)],
            env={"SOURCE_DATE_EPOCH": str(EPOCH)}, what=f"dpkg-deb --build {name}")
    return out


def demo_opps(out_dir: str | os.PathLike[str]) -> list[Path]:
    """The two demo OPPs: base, and tools (which depends on base)."""
    base = opp_deb(out_dir, OPP_BASE, "1.0", description="sanbos demo base support (device support)")
    tools = opp_deb(out_dir, OPP_TOOLS, "1.2", depends=[f"{OPP_BASE} (>= 1.0)"],
                    description="sanbos demo tools (needs the base support)")
    return [base, tools]


def opp_tarball(out: str | os.PathLike[str], name: str, version: str = "1.0", *,
                depends: list[str] | tuple[str, ...] = (), description: str = "") -> Path:
    """An OPP in the tarball format: files plus a ``sanbos-opp.toml`` member."""
    out = Path(out)
    summary = description or f"sanbos demo tarball OPP {name}"
    meta = (f'name = "{name}"\nversion = "{version}"\ndescription = "{summary}"\n'
            f'dependencies = [{", ".join(repr(d).replace(chr(39), chr(34)) for d in depends)}]\n')
    with _open_tar(out) as tf:
        for arc, data in (("sanbos-opp.toml", meta.encode()),
                          (f"var/lib/sanbos/opps/{name}", f"{version} {summary}\n".encode())):
            info = _tar_filter(tarfile.TarInfo(arc))
            info.size = len(data)
            info.mode = 0o644
            tf.addfile(info, io.BytesIO(data))
    return out


def dpkg_available() -> bool:
    try:
        subprocess.run(["dpkg-deb", "--version"], capture_output=True, check=True)
        return True
    except (OSError, subprocess.CalledProcessError):
        return False
