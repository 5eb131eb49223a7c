"""BOS install (the seed's Figure 4) and later product installs (paragraph 0056).

``install(from_vg, bos, target, opps)``:

1. import the install VG **read-only** (shared locks on its disks: many
   machines may install from it at once) and open its repository;
2. check everything before writing anything: the BOS and OPP names exist in
   the TOC, every OPP dependency is met (by another chosen OPP, which is then
   added, or by the TOC, which adds it too) and the target disk is safe
   (``core.safety``: not too small, holds no other VG or data, not a member
   of the install VG itself);
3. create the root VG on the target: the same GPT layout as an install-VG
   disk (bios_grub, ESP, LVM partition) and a VG (default ``rootvg``) with a
   boot LV (``bootlv``, ext2, kernel + initramfs + SHA256SUMS, like AIX's
   hd5) and a root LV (``rootlv``, ext4);
4. lay down the BOS: a tarball is unpacked into a staging directory and the
   chosen OPPs with it, then ``mke2fs -d`` writes the root LV in one pass; a
   raw BOS LV is copied block for block into the root LV and grown with
   ``resize2fs`` (at the LV's byte offset), and the OPPs are then written in
   with debugfs;
5. record every installed OPP in the installed system:
   ``/var/lib/sanbos/opps/<name>`` (first line ``VERSION SUMMARY``: what the
   installed system's banner prints) and ``/var/lib/sanbos/info/<name>.control``
   / ``.list`` (the package's control fields and its files);
6. build the target's boot image ("bosboot") from the kernel the BOS carries
   in ``/boot`` or, for a BOS without one, the install VG's maintenance
   kernel, plus an initramfs that activates the root VG with real LVM2 and
   device-mapper, mounts the root LV and ``switch_root``s into the BOS's
   ``/sbin/init``; write it to the boot LV and install GRUB (BIOS: MBR +
   bios_grub; UEFI: ``EFI/BOOT/BOOTX64.EFI`` on the ESP), which checks the
   boot image with ``hashsum`` before booting it;
7. record the boot side's checksums in ``/var/lib/sanbos/boot.json`` (what
   ``core.recover.check_rootvg`` compares against) and release the install
   VG (it was never imported for writing, so nothing of it changes).

Every long function takes ``progress(message, fraction)``.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import queue
import re
import shutil
import subprocess
import tempfile
import threading
import time
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Iterator, Sequence

from . import cpio, ext4
from .checksum import sha256_bytes, sha256_file
from .disk import data_extents
from .errors import (DiskError, FormatError, LVMError, NotFoundError, SanbosError, SpaceError, ToolError,
                     UnsafeDiskError, UsageError)
from .initscript import busybox_init
from .tools import run
from .units import MiB, align_up, human

Progress = Callable[[str, "float | None"], None]

ROOT_VG = "rootvg"
BOOT_LV = "bootlv"
ROOT_LV = "rootlv"
BOOT_LV_SIZE = 64 * MiB
MIN_ROOT_SIZE = 32 * MiB
STATE_DIR = "/var/lib/sanbos"
OPP_DIR = STATE_DIR + "/opps"
INFO_DIR = STATE_DIR + "/info"
BOOT_RECORD = STATE_DIR + "/boot.json"
INSTALL_RECORD = STATE_DIR + "/install.json"
#: what the installed system prints when it is up (the demo BOS's init)
READY_RE = r"SANBOS-BOS-READY"


class DependencyError(SanbosError):
    """An OPP's dependencies cannot be met from the repository or the target."""


def _noprogress(message: str, fraction: float | None = None) -> None:
    pass


# ---------------------------------------------------------------------------
# OPP dependencies (Debian ``Depends`` syntax)

_DEP_RE = re.compile(r"^\s*([a-z0-9][a-z0-9+.-]*)(?::[a-z0-9-]+)?\s*(?:\(\s*(<<|<=|=|>=|>>|<|>)\s*([^)\s]+)\s*\))?\s*$")


@dataclass(frozen=True)
class Requirement:
    name: str
    op: str | None = None
    version: str | None = None

    def __str__(self) -> str:
        return f"{self.name} ({self.op} {self.version})" if self.op else self.name


def parse_depends(text: str | Iterable[str]) -> list[list[Requirement]]:
    """``"a (>= 1), b | c"`` -> ``[[a>=1], [b, c]]`` (each inner list: alternatives)."""
    clauses = text.split(",") if isinstance(text, str) else list(text)
    out: list[list[Requirement]] = []
    for clause in clauses:
        if not clause.strip():
            continue
        alts = []
        for alt in clause.split("|"):
            m = _DEP_RE.match(alt.strip().lower())
            if not m:
                raise DependencyError(f"cannot read the dependency {alt.strip()!r}")
            alts.append(Requirement(m.group(1), m.group(2), m.group(3)))
        out.append(alts)
    return out


def version_ok(have: str, op: str | None, want: str | None) -> bool:
    """Debian version comparison (``dpkg --compare-versions``)."""
    if not op or not want:
        return True
    dop = {"<": "le", ">": "ge", "<<": "lt", ">>": "gt", "<=": "le", ">=": "ge", "=": "eq"}[op]
    res = subprocess.run(["dpkg", "--compare-versions", have, dop, want], capture_output=True)
    return res.returncode == 0


@dataclass
class OppChoice:
    name: str
    version: str
    reason: str = "requested"     # "requested", "dependency of X"
    entry: object = None          # the repository's TOC entry

    def __str__(self) -> str:
        return f"{self.name} {self.version}" + ("" if self.reason == "requested" else f" ({self.reason})")


def resolve_opps(available: dict[str, tuple[str, list[str] | str]], wanted: Sequence[str],
                 installed: dict[str, str] | None = None, *, entries: dict[str, object] | None = None,
                 where: str = "the repository") -> list[OppChoice]:
    """Choose the OPPs to install: ``wanted`` plus what they need, in install order.

    ``available``: name -> (version, depends) from the TOC; ``installed``:
    name -> version already on the target.  A dependency met by neither is a
    :class:`DependencyError` naming the OPP and what it lacks; an unknown
    name is a :class:`NotFoundError`.  Dependencies come before dependants.
    """
    installed = dict(installed or {})
    entries = entries or {}
    for n in wanted:
        if n not in available:
            known = ", ".join(sorted(available)) or "none"
            raise NotFoundError(f"OPP {n!r} is not in {where} (its TOC lists: {known})")
    chosen: dict[str, OppChoice] = {}
    order: list[str] = []
    missing: list[str] = []

    def visit(name: str, reason: str, stack: tuple[str, ...]) -> None:
        if name in chosen or name in stack:
            return
        version, deps = available[name]
        for clause in parse_depends(deps):
            ok = False
            for req in clause:
                if req.name in installed and version_ok(installed[req.name], req.op, req.version):
                    ok = True
                    break
                if req.name in chosen and version_ok(chosen[req.name].version, req.op, req.version):
                    ok = True
                    break
            if ok:
                continue
            for req in clause:
                if req.name in available and version_ok(available[req.name][0], req.op, req.version):
                    visit(req.name, f"dependency of {name}", stack + (name,))
                    ok = True
                    break
            if not ok:
                alts = " | ".join(str(r) for r in clause)
                missing.append(f"{name} {version} needs {alts}, which is neither in {where} "
                               "nor installed on the target")
        chosen[name] = OppChoice(name, version, reason, entries.get(name))
        order.append(name)

    for n in wanted:
        if n in installed and n not in chosen:
            pass  # reinstall on request: still resolved
        visit(n, "requested", ())
    if missing:
        raise DependencyError("cannot install: " + "; ".join(missing) + "; nothing was written")
    return [chosen[n] for n in order]


# ---------------------------------------------------------------------------
# OPP packages into a root directory

def _deb_fields(deb: Path) -> dict[str, str]:
    res = run(["dpkg-deb", "-f", str(deb)], what=f"dpkg-deb -f {deb.name}")
    fields: dict[str, str] = {}
    key = None
    for line in res.stdout.decode(errors="replace").splitlines():
        if line[:1] in (" ", "\t") and key:
            fields[key] += "\n" + line
        elif ":" in line:
            key, _, val = line.partition(":")
            key = key.strip()
            fields[key] = val.strip()
    return fields


def _is_deb(package: Path) -> bool:
    with open(package, "rb") as fh:
        magic = fh.read(8)
    return package.name.endswith(".deb") or magic == b"!<arch>\n"


def unpack_opp(package: str | os.PathLike[str], root: str | os.PathLike[str], *,
               source: str = "", fields: dict[str, str] | None = None) -> dict:
    """Unpack one OPP (a .deb, or a tarball OPP) into ``root`` and record it there.

    ``fields``: the .deb's control fields when the caller has already read them
    (``dpkg-deb -f``).  Returns the record: name, version, summary, depends, files.
    """
    package, root = Path(package), Path(root)
    if _is_deb(package):
        fields = fields if fields is not None else _deb_fields(package)
        res = run(["dpkg-deb", "--vextract", str(package), str(root)], what=f"dpkg-deb -x {package.name}")
        files = [l.strip()[1:] if l.strip().startswith(".") else l.strip()
                 for l in res.stdout.decode(errors="replace").splitlines() if l.strip()]
        files = [f for f in files if f and f != "/"]
        rec = {"name": fields.get("Package", package.stem.split("_")[0]),
               "version": fields.get("Version", "0"),
               "summary": fields.get("Description", "").split("\n")[0].strip(),
               "depends": fields.get("Depends", ""), "format": "deb", "control": fields}
    else:
        import tarfile
        import tomllib
        with tarfile.open(package) as tf:
            meta = {}
            try:
                m = tf.extractfile("sanbos-opp.toml")
                meta = tomllib.loads(m.read().decode()) if m else {}
            except KeyError:
                pass
        res = run(["tar", "-x", "-v", "-f", str(package), "-C", str(root), "--exclude=sanbos-opp.toml",
                   "--no-same-owner" if os.geteuid() else "--same-owner"], what=f"tar -x {package.name}")
        files = ["/" + l.strip().lstrip("./") for l in res.stdout.decode(errors="replace").splitlines()
                 if l.strip() and l.strip() not in (".", "./")]
        deps = meta.get("dependencies", [])
        rec = {"name": meta.get("name", package.name.split("_")[0]), "version": str(meta.get("version", "0")),
               "summary": meta.get("description", ""), "depends": ", ".join(deps) if isinstance(deps, list)
               else str(deps), "format": "tar", "control": {}}
    rec["files"] = files
    rec["source"] = source or package.name
    rec["installed"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    write_opp_record(root, rec)
    return rec


def write_opp_record(root: str | os.PathLike[str], rec: dict) -> None:
    """``/var/lib/sanbos/opps/<name>`` + ``/var/lib/sanbos/info/<name>.{control,list}`` under ``root``."""
    root = Path(root)
    opps = root / OPP_DIR.lstrip("/")
    info = root / INFO_DIR.lstrip("/")
    opps.mkdir(parents=True, exist_ok=True)
    info.mkdir(parents=True, exist_ok=True)
    name = rec["name"]
    (opps / name).write_text(f"{rec['version']} {rec.get('summary', '')}".rstrip() + "\n"
                             f"source: {rec.get('source', '')}\ninstalled: {rec.get('installed', '')}\n")
    control = dict(rec.get("control") or {})
    control.setdefault("Package", name)
    control.setdefault("Version", rec["version"])
    if rec.get("depends"):
        control.setdefault("Depends", rec["depends"])
    control["Sanbos-Source"] = rec.get("source", "")
    control["Sanbos-Installed"] = rec.get("installed", "")
    (info / f"{name}.control").write_text("".join(f"{k}: {v}\n" for k, v in control.items()))
    (info / f"{name}.list").write_text("".join(f + "\n" for f in rec.get("files", [])))


def _parse_control(text: str) -> dict[str, str]:
    fields: dict[str, str] = {}
    key = None
    for line in text.splitlines():
        if line[:1] in (" ", "\t") and key:
            fields[key] += "\n" + line
        elif ":" in line:
            key, _, val = line.partition(":")
            key = key.strip()
            fields[key] = val.strip()
    return fields


# ---------------------------------------------------------------------------
# writing a directory tree into an existing ext4 (no mount): debugfs

def _q(s: str) -> str:
    if '"' in s or "\n" in s:
        raise UsageError(f"file name {s!r}: quotes and newlines are not supported in OPP files")
    return f'"{s}"'


def copy_tree_into(target: ext4.Target, src: str | os.PathLike[str], *, progress: Progress = _noprogress) -> int:
    """Copy every file under ``src`` into the file system at the same paths.

    Existing directories are kept, existing files replaced.  Modes, owners
    and times are kept.  One debugfs run; returns the number of entries.
    """
    src = Path(src)
    reqs: list[str] = []
    count = 0
    for dirpath, dirnames, filenames in os.walk(src):
        rel_dir = "/" + os.path.relpath(dirpath, src) if dirpath != str(src) else "/"
        rel_dir = rel_dir.replace("/./", "/").rstrip("/") or "/"
        entries = sorted(dirnames) + sorted(filenames)
        for name in entries:
            local = os.path.join(dirpath, name)
            dest = (rel_dir.rstrip("/") + "/" + name)
            st = os.lstat(local)
            if os.path.isdir(local) and not os.path.islink(local):
                reqs.append(f"mkdir {_q(dest)}")
            elif os.path.islink(local):
                reqs.append(f"rm {_q(dest)}")
                reqs.append(f"symlink {_q(dest)} {_q(os.readlink(local))}")
            elif os.path.isfile(local):
                reqs.append(f"rm {_q(dest)}")
                reqs.append(f"cd {_q(rel_dir)}")
                reqs.append(f"write {_q(local)} {_q(name)}")
            else:
                continue  # device nodes and FIFOs are not OPP content
            count += 1
            if not os.path.islink(local):
                reqs.append(f"sif {_q(dest)} mode 0{st.st_mode:o}")
            if st.st_uid or st.st_gid:
                reqs.append(f"sif {_q(dest)} uid {st.st_uid}")
                reqs.append(f"sif {_q(dest)} gid {st.st_gid}")
            reqs.append(f"sif {_q(dest)} mtime {int(st.st_mtime)}")
    if not reqs:
        return 0
    with tempfile.NamedTemporaryFile("w", suffix=".debugfs", delete=False) as f:
        f.write("\n".join(reqs) + "\n")
        script = f.name
    try:
        res = run(["debugfs", "-w", "-f", script, target.spec], what=f"debugfs on {target.label}")
    finally:
        os.unlink(script)
    bad = []
    for line in res.stderr.decode(errors="replace").splitlines():
        if not line.strip() or line.startswith("debugfs "):
            continue
        if "already exists" in line and ("mkdir" in line):
            continue
        if line.startswith("rm:") and "File not found" in line:
            continue
        if line.startswith("symlink:") and "already exists" in line:
            bad.append(line)
            continue
        if "Allocated inode" in line:
            continue
        bad.append(line)
    if bad:
        text = " / ".join(bad[:3])
        if "No free space" in text or "Could not allocate" in text:
            raise SpaceError(f"{target.label}: the root file system is full ({text})")
        raise ToolError(f"debugfs on {target.label}: {text}")
    progress(f"wrote {count} entries into {target.label}", None)
    return count


# ---------------------------------------------------------------------------
# sizes

def tree_size(path: str | os.PathLike[str]) -> tuple[int, int]:
    """(bytes rounded to 4 KiB blocks, number of inodes) of a directory tree."""
    total, inodes = 0, 0
    for dirpath, dirnames, filenames in os.walk(path):
        for n in dirnames + filenames:
            inodes += 1
            try:
                st = os.lstat(os.path.join(dirpath, n))
            except OSError:
                continue
            total += align_up(st.st_size, 4096) if st.st_size else 0
        total += 4096
    return total, inodes


def root_lv_size(content: int, free: int, requested: int | None = None) -> int:
    """A sensible root LV size: twice the content (at least content + 128 MiB
    and 256 MiB), never more than the free space, never less than the content
    needs (content + 25 % + 16 MiB for file-system overhead)."""
    need = max(MIN_ROOT_SIZE, align_up(content + content // 4 + 16 * MiB, MiB))
    if requested:
        if requested < need:
            raise SpaceError(f"root LV of {human(requested)} is too small for the BOS and OPPs "
                             f"({human(content)}): it needs at least {human(need)}")
        want = requested
    else:
        want = max(need, 2 * content, content + 128 * MiB, 256 * MiB)
    return min(want, free) if free >= need else need


# ---------------------------------------------------------------------------
# the installed system's boot image ("bosboot")

#: modules the root-VG initramfs loads (dependencies come from modprobe)
ROOT_MODULES = ("virtio_pci", "virtio_scsi", "sd_mod", "virtio_blk", "crc32c_generic", "dm_mod", "ext4")
ROOT_BINARIES = ("/usr/sbin/lvm",)
KERNEL_PATH = "/boot/vmlinuz"
INITRD_PATH = "/boot/initrd.img"

ROOT_INIT = busybox_init(r"""
vg=rootvg; lv=rootlv; vguuid=
for w in $(cat /proc/cmdline); do
    case "$w" in
        sanbos.vg=*) vg="${w#sanbos.vg=}" ;;
        sanbos.lv=*) lv="${w#sanbos.lv=}" ;;
        sanbos.vguuid=*) vguuid="${w#sanbos.vguuid=}" ;;
    esac
done
echo "sanbos: bosboot: activating root VG $vg ($vguuid), LV $lv"
while read -r m; do
    insmod "$m" >/dev/null 2>&1
done < /etc/sanbos/modules
dm="/dev/mapper/$(echo "$vg" | sed 's/-/--/g')-$(echo "$lv" | sed 's/-/--/g')"
n=0
while [ $n -lt 60 ]; do
    if [ -n "$vguuid" ]; then
        lvm vgchange -ay --select "vg_uuid=$vguuid" >/tmp/vgchange.log 2>&1
    else
        lvm vgchange -ay "$vg" >/tmp/vgchange.log 2>&1
    fi
    lvm vgmknodes >/dev/null 2>&1
    [ -b "$dm" ] && break
    sleep 0.25; n=$((n + 1))
done
if [ ! -b "$dm" ]; then
    echo "sanbos: bosboot: root LV $vg/$lv not found; LVM said:"; cat /tmp/vgchange.log
    echo "SANBOS-BOSBOOT-FAILED"; poweroff -f
fi
if ! mount -t ext4 -o ro "$dm" /newroot; then
    echo "sanbos: bosboot: cannot mount $dm"; echo "SANBOS-BOSBOOT-FAILED"; poweroff -f
fi
echo "sanbos: bosboot: root file system $dm mounted; starting /sbin/init"
for m in dev proc sys; do
    mount --move /$m /newroot/$m 2>/dev/null || umount /$m 2>/dev/null
done
exec switch_root /newroot /sbin/init
""", dirs=["/newroot"], comment="sanbos bosboot initramfs: activate the root VG with real LVM2, mount the\n"
                                "root LV read-only and switch to the installed system's /sbin/init.")


def _pack_cpio(src: Path, out_fh) -> None:
    """``src`` as a gzipped newc archive (``core.cpio``: the same tree gives the same bytes)."""
    out_fh.write(gzip.compress(cpio.newc(src, mtime=0), compresslevel=6, mtime=0))


def kernel_for(staging: Path | None = None, progress: Progress = _noprogress):
    """The kernel the installed system boots, with its modules tree.

    The BOS's own (``/boot/vmlinuz-*`` with ``/lib/modules/<version>``) when it
    carries one; else the Debian kernel the maintenance boot image is built
    from (``core.guest.kernel_parts``: the cached parts).
    """
    from . import guest
    from .debparts import KernelParts
    if staging is not None:
        cands = sorted((staging / "boot").glob("vmlinuz-*")) if (staging / "boot").is_dir() else []
        for k in reversed(cands):
            ver = k.name[len("vmlinuz-"):]
            mods = staging / "lib/modules" / ver
            if mods.is_dir():
                if not (mods / "modules.dep").exists():
                    run(["depmod", "-b", str(staging), ver], what=f"depmod for the BOS kernel {ver}")
                progress(f"kernel: the BOS's own {ver}", None)
                return KernelParts(vmlinuz=k, modules_dir=mods, version=ver, package="BOS")
    kp = _cached_kernel() or guest.kernel_parts()
    progress(f"kernel: {kp.version} (the maintenance image's Debian kernel; the BOS has none)", None)
    return kp


def _cached_kernel():
    """The Debian kernel already unpacked (and depmod'ed) in the parts cache, without asking apt."""
    from . import debparts
    from .debparts import KernelParts
    root = debparts.cache_dir() / "kernel"
    best = None
    if root.is_dir():
        for d in sorted(root.iterdir()):
            if not (d / ".complete").exists():
                continue
            for k in sorted((d / "boot").glob("vmlinuz-*")):
                ver = k.name[len("vmlinuz-"):]
                mods = d / "lib/modules" / ver
                if (mods / "modules.dep").exists():
                    best = KernelParts(vmlinuz=k, modules_dir=mods, version=ver, package=d.name)
    return best


def build_root_initrd(kparts, out: str | os.PathLike[str]) -> Path:
    """The root-VG initramfs: busybox, LVM2 + libraries, the disk/dm/ext4 modules, ROOT_INIT."""
    from . import guest
    base = guest.build_base_initrd(kparts, modules=ROOT_MODULES, binaries=ROOT_BINARIES)
    out = Path(out)
    with tempfile.TemporaryDirectory(prefix="sanbos-rootinit.") as tmp:
        root = Path(tmp)
        (root / "init").write_text(ROOT_INIT)
        (root / "init").chmod(0o755)
        with open(out, "wb") as fh:
            with open(base, "rb") as b:
                shutil.copyfileobj(b, fh)
            _pack_cpio(root, fh)
    return out


def root_cmdline(vg_name: str, vg_uuid: str, lv: str = ROOT_LV) -> str:
    return f"console=ttyS0,115200 panic=-1 ro sanbos.vg={vg_name} sanbos.vguuid={vg_uuid} sanbos.lv={lv}"


# ---------------------------------------------------------------------------
# the boot side of a root VG disk: boot LV + GRUB + record

def _parts(disk_path: Path, disk_id: str) -> dict:
    from . import gpt
    from .disk import Disk
    with Disk(disk_path, name=disk_id) as d:
        table = gpt.read_table(d)
    if not table:
        raise DiskError(f"{disk_id}: no GPT partition table (not a sanbos root VG disk)")
    by = {p.kind: p for p in table}
    for k in ("bios_grub", "esp", "lvm"):
        if k not in by:
            raise DiskError(f"{disk_id}: its GPT has no {k} partition (not a sanbos root VG disk)")
    return by


def _write_image(img: Path, d, offset: int) -> int:
    """Write the image file ``img`` at ``offset`` of the open Disk ``d`` (no fsync); returns its size.

    Only the image's data is copied (its holes are zeros); where the image has a
    hole the disk is zeroed only if it holds anything there (a fresh LV on a
    sparse image file holds nothing), so the result is byte for byte the image."""
    size = img.stat().st_size
    chunk = 4 << 20
    buf = bytearray(chunk)
    with open(img, "rb") as f:
        fd = f.fileno()
        pos = 0
        for a, b in data_extents(fd, 0, size) + [(size, size)]:
            n = b - a
            if a > pos:   # a hole in the image: zero what the disk holds there
                for ds, de in data_extents(d.fd, offset + pos, a - pos):
                    da, dn = offset + pos + ds, de - ds
                    done = 0
                    while done < dn:
                        m = min(chunk, dn - done)
                        if d.read(da + done, m).count(0) != m:
                            d.write(da + done, bytes(m))
                        done += m
            done = 0
            while done < n:
                m = os.preadv(fd, [memoryview(buf)[:min(chunk, n - done)]], a + done)
                if m <= 0:
                    raise DiskError(f"{img}: short read at byte {a + done}")
                d.write(offset + a + done, memoryview(buf)[:m])
                done += m
            pos = a + n
    return size


def write_boot_side(disk_id: str, disk_path: Path, vg_name: str, vg_uuid: str, boot_range: tuple[str, int, int],
                    kernel: Path, initrd: Path, *, progress: Progress = _noprogress,
                    bios: bool = True, uefi: bool = True) -> dict:
    """Boot image into the boot LV, GRUB into MBR/bios_grub/ESP; returns the boot record."""
    from . import bootimage, grub
    from .disk import Disk
    path, offset, length = boot_range
    cmdline = root_cmdline(vg_name, vg_uuid)
    parts = _parts(disk_path, disk_id)
    dev = grub.lvm_device(vg_name, BOOT_LV)
    copies = [grub.Copy(disk_id, dev)]

    # GRUB's images (grub-mkimage, the slow part of the GRUB install) are built into grub's
    # in-process cache while the boot image is built; an error there comes again from grub.install
    def prebuild() -> None:
        try:
            grub.prebuild(copies, cmdline, this_disk=disk_id, bios=bios, uefi=uefi)
        except SanbosError:
            pass
    pre = threading.Thread(target=prebuild, name="sanbos-grub-prebuild", daemon=True)
    pre.start()
    try:
        with tempfile.TemporaryDirectory(prefix="sanbos-bosboot.") as tmp:
            img = Path(tmp) / "boot.img"
            progress(f"{disk_id}: building the boot image (kernel + root-VG initramfs)", None)
            info = bootimage.build(kernel, initrd, cmdline, img, source=f"sanbos bosboot for {vg_name}", size=length)
            size = img.stat().st_size
            if size > length:
                raise SpaceError(f"{disk_id}: boot image ({size} bytes) is larger than {vg_name}/{BOOT_LV} "
                                 f"({length} bytes)")
            with Disk(path, writable=True, name=disk_id) as d:
                _write_image(img, d, offset)
                # with BIOS GRUB next, its install flushes this file (the boot image with it)
                # before the MBR is pointed at GRUB: no flush of its own needed here
                if not bios:
                    d.fsync()
    finally:
        pre.join()
    progress(f"{disk_id}: boot image written to {vg_name}/{BOOT_LV} ({human(size)})", None)
    cfgs = grub.install(disk_path, grub.DiskParts(parts["bios_grub"].start, parts["bios_grub"].size,
                                                  parts["esp"].start, parts["esp"].size),
                        copies, cmdline, name=disk_id, this_disk=disk_id, bios=bios, uefi=uefi)
    progress(f"{disk_id}: GRUB installed ({', '.join(cfgs)})", None)
    return boot_record(disk_id, disk_path, parts, info.manifest, size)


def boot_record(disk_id: str, disk_path: Path, parts: dict, manifest: dict, image_size: int,
                image: bytes | None = None) -> dict:
    """Checksums of everything on the boot side, as ``/var/lib/sanbos/boot.json`` keeps them."""
    from . import grub
    from .disk import Disk
    bp, ep = parts["bios_grub"], parts["esp"]
    with Disk(disk_path, name=disk_id) as d:
        mbr = d.read(0, 512)
        bios_area = d.read(bp.start, bp.size)
    core_len = len(bios_area.rstrip(b"\0"))
    core_len += -core_len % 512
    try:
        efi = grub.esp_read(disk_path, ep.start)
        efi_sha = sha256_bytes(efi)
    except ToolError:
        efi_sha = None
    return {
        "format": "sanbos-boot-record", "version": 1, "disk": disk_id,
        "mbr_code_sha256": sha256_bytes(mbr[:440]),
        "bios_grub": {"start": bp.start, "size": bp.size, "core_bytes": core_len,
                      "sha256": sha256_bytes(bios_area[:core_len])},
        "esp": {"start": ep.start, "size": ep.size, "bootx64_sha256": efi_sha},
        # the boot image's own SHA-256 is not kept: its manifest names the temporary paths the
        # parts came from; its contents (kernel, initrd) are recorded below
        "bootlv": {"size": image_size},
        "kernel": {"sha256": manifest.get("kernel", {}).get("sha256"), "version": manifest.get("kernel", {}).get("version")},
        "initrd": {"sha256": manifest.get("initrd", {}).get("sha256")},
        "cmdline": manifest.get("cmdline"),
        "written": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


# ---------------------------------------------------------------------------
# plan and install

@dataclass
class InstallPlan:
    """What ``install`` will do (``str()`` prints it)."""

    from_vg: str
    install_disks: list[str]
    bos: str
    bos_format: str
    bos_version: str
    bos_size: int
    target: str
    target_path: str
    target_size: int
    root_vg: str
    boot_lv_size: int
    root_lv_size: int
    opps: list[OppChoice]
    content_size: int
    forced: list[str] = field(default_factory=list)
    bos_ref: str = ""     # NAME:tar or NAME:raw, unambiguous in the repository

    def __str__(self) -> str:
        lines = [f"install plan (nothing written yet):",
                 f"  source     install VG {self.from_vg} (read-only, shared) on {len(self.install_disks)} disk(s): "
                 f"{', '.join(self.install_disks)}",
                 f"  BOS        {self.bos} {self.bos_version} ({self.bos_format}, {human(self.bos_size)})",
                 f"  target     {self.target} ({self.target_path}, {human(self.target_size)})"]
        for f in self.forced:
            lines.append(f"             forced over: {f}")
        lines += [f"  layout     GPT: bios_grub 1 MiB, ESP 32 MiB, LVM partition (PV of {self.root_vg})",
                  f"  root VG    {self.root_vg}: {BOOT_LV} {human(self.boot_lv_size)} (ext2, kernel + initramfs), "
                  f"{ROOT_LV} {human(self.root_lv_size)} (ext4; content about {human(self.content_size)})",
                  f"  OPPs       {', '.join(str(o) for o in self.opps) if self.opps else '(none)'}",
                  "  boot       GRUB for BIOS (MBR + bios_grub) and UEFI (ESP EFI/BOOT/BOOTX64.EFI), "
                  "checking the boot image with hashsum",
                  f"  finally    release install VG {self.from_vg} (it is only read)"]
        return "\n".join(lines)


@dataclass
class InstallResult:
    plan: InstallPlan
    root_vg_uuid: str
    opps: list[dict]
    boot: dict
    seconds: float

    def __str__(self) -> str:
        names = ", ".join(f"{o['name']} {o['version']}" for o in self.opps) or "no OPPs"
        return (f"installed {self.plan.bos} onto {self.plan.target}: root VG {self.plan.root_vg} "
                f"({self.root_vg_uuid}), {names}; boot loader installed; {self.seconds:.1f} s")


def _disks(fabric):
    from . import inventory
    return inventory.list_disks(fabric)


def _find_disk(disks, wanted: str, what: str = "target disk"):
    from . import inventory
    try:
        return inventory.find(disks, wanted)
    except NotFoundError as e:
        raise NotFoundError(f"{what} {wanted!r}: {e}") from None


def install_vg_disks(from_vg: str, disks) -> list:
    """The DiskInfos whose PVs belong to VG ``from_vg`` (found by a scan, no locks)."""
    from .lvm.scan import scan
    res = scan([d.ref for d in disks])
    info = res.vgs.get(from_vg)
    if info is None:
        known = ", ".join(sorted(res.vgs)) or "none"
        raise NotFoundError(f"install VG {from_vg!r} not found on the disks (VGs found: {known})")
    ids = {loc.ref.id for loc in info.pvs.values()}
    return [d for d in disks if d.id in ids]


@contextmanager
def open_install_vg(from_vg: str, disks) -> Iterator[tuple[object, object]]:
    """Import the install VG read-only (shared locks) and open its repository."""
    from . import repo, vg
    members = install_vg_disks(from_vg, disks)
    vgo = vg.import_(from_vg, [d.ref for d in members], readonly=True)
    try:
        r = repo.open_repo(vgo, readonly=True)
        try:
            yield vgo, r
        finally:
            close = getattr(r, "close", None)
            if close:
                close()
    finally:
        vgo.close()


# ---------------------------------------------------------------------------
# where the BOS and OPPs come from: the install VG's repository

@dataclass
class BosInfo:
    name: str
    format: str          # "tarball" or "raw"
    version: str
    size: int            # tarball bytes, or the raw file system's bytes
    content: int         # estimated bytes once installed


class Source:
    """The BOS and OPP images an install reads (the install VG's repository)."""

    where = "the repository"

    def bos(self, name: str) -> BosInfo:
        raise NotImplementedError

    def bos_tarball(self, name: str, dest: Path) -> Path:
        raise NotImplementedError

    def bos_raw_image(self, name: str, dest: Path) -> int:
        """Copy a raw BOS file system block for block into ``dest``; its size in bytes."""
        raise NotImplementedError

    def opps(self) -> dict[str, tuple[str, str]]:
        """name -> (version, depends)."""
        raise NotImplementedError

    def opp_size(self, name: str) -> int:
        return 0

    def fetch_opp(self, name: str, dest_dir: Path) -> Path:
        raise NotImplementedError


def _root_target(vgo, lv: str = ROOT_LV) -> ext4.Target:
    ranges = vgo.lv_ranges(lv)
    if len(ranges) != 1:
        raise LVMError(f"VG {vgo.name}: LV {lv} is in {len(ranges)} pieces; sanbos needs it contiguous")
    path, off, length = ranges[0]
    return ext4.Target(Path(path), off, length, name=f"{vgo.name}/{lv}")


def _copy_range(src: tuple[str, int], dst: tuple[str, int], length: int,
                progress: Progress = _noprogress, what: str = "", dst_zero: bool = False) -> None:
    """Copy bytes; all-zero chunks are skipped (sparse), or with ``dst_zero``
    written only where the destination is not already zero."""
    chunk = 4 << 20
    with open(src[0], "rb") as fi, open(dst[0], "r+b") as fo:
        done = 0
        while done < length:
            n = min(chunk, length - done)
            fi.seek(src[1] + done)
            b = fi.read(n)
            if len(b) != n:
                raise DiskError(f"{src[0]}: short read at byte {src[1] + done}")
            if b.count(0) != n:   # keep image files sparse
                fo.seek(dst[1] + done)
                fo.write(b)
            elif dst_zero:
                fo.seek(dst[1] + done)
                if fo.read(n).count(0) != n:
                    fo.seek(dst[1] + done)
                    fo.write(b)
            done += n
            if done % (64 << 20) < chunk:
                progress(f"{what}: {human(done)} of {human(length)}", None)
        fo.flush()
        os.fsync(fo.fileno())


_EXTENT_RE = re.compile(r"^\s*\d+/\s*\d+\s+\d+/\s*\d+\s+(\d+)\s*-\s*(\d+)\s+(\d+)\s*-\s*(\d+)\s+(\d+)\s*(\w*)")


def _file_runs(t: ext4.Target, path: str, size: int) -> list[tuple[int | None, int]]:
    """A file's data as ``(absolute byte offset or None for a hole, length)`` runs, in order
    (from its extent tree: ``debugfs ex``)."""
    stats = ext4.debugfs(t, "stats")
    m = re.search(r"Block size:\s+(\d+)", stats)
    if not m:
        raise FormatError(f"{t.label}: cannot read the block size")
    bs = int(m.group(1))
    extents = []
    for line in ext4.debugfs(t, f'ex "{path}"').splitlines():
        x = _EXTENT_RE.match(line)
        if x:
            lstart, lend, pstart, _pend, _n, flags = x.groups()
            extents.append((int(lstart), int(lend), int(pstart), flags.lower().startswith("uninit")))
    if not extents and size:
        raise FormatError(f"{t.label}: {path} has no extent tree (not ext4 extents)")
    extents.sort()
    runs: list[tuple[int | None, int]] = []
    pos = 0   # logical block
    for lstart, lend, pstart, uninit in extents:
        if lstart > pos:
            runs.append((None, (lstart - pos) * bs))
        n = lend - lstart + 1
        runs.append((None if uninit else t.offset + pstart * bs, n * bs))
        pos = lend + 1
    total = pos * bs
    if total < size:
        runs.append((None, size - total))
    out, left = [], size
    for off, length in runs:
        length = min(length, left)
        if length <= 0:
            break
        out.append((off, length))
        left -= length
    return out


#: the BOS tarball goes from the repository leg to tar -x in chunks of this size, through this many
#: reused buffers (read, hashed in a second thread, written into the pipe)
_STREAM_CHUNK = 1 << 20
_STREAM_BUFFERS = 8

TAR_X = ["--numeric-owner", "--same-permissions", "--same-owner" if os.geteuid() == 0 else "--no-same-owner"]
_TAR_Z = {"gzip": ["-z"], "xz": ["-J"], "bzip2": ["-j"], "zstd": ["--zstd"], "none": [], "": []}


def _sniff_tar(path: Path) -> list[str]:
    with open(path, "rb") as f:
        head = f.read(6)
    if head[:2] == b"\x1f\x8b":
        return ["-z"]
    if head[:6] == b"\xfd7zXZ\x00":
        return ["-J"]
    if head[:4] == b"\x28\xb5\x2f\xfd":
        return ["--zstd"]
    if head[:3] == b"BZh":
        return ["-j"]
    return []


def plan_install(from_vg: str, bos: str, target: str, opps: Sequence[str] = (), *,
                 fabric: str | os.PathLike[str] | None = None, force_ids: Sequence[str] = (),
                 root_vg: str = ROOT_VG, root_size: int | None = None,
                 source: Source | None = None) -> InstallPlan:
    """Check everything and return the plan; nothing is written."""
    with _prepared(from_vg, bos, target, opps, fabric=fabric, force_ids=force_ids, root_vg=root_vg,
                   root_size=root_size, source=source) as (plan, _src, _tgt, _members):
        return plan


@contextmanager
def _prepared(from_vg, bos, target, opps, *, fabric, force_ids, root_vg, root_size, source):
    from . import gpt, safety
    from .lvm.model import check_name
    check_name(root_vg, "VG")
    disks = _disks(fabric)
    tgt = _find_disk(disks, target)
    with ExitStack() as stack:
        if source is None:
            members = install_vg_disks(from_vg, disks)
            if tgt.id in {m.id for m in members}:
                raise UnsafeDiskError(f"disk {tgt.id} ({tgt.path}) is a member of the install VG {from_vg}; "
                                      "installing onto it would destroy the install VG: choose another target")
            vgo, repo_obj = stack.enter_context(open_install_vg(from_vg, disks))
            src: Source = RepoSource(vgo, repo_obj)
            member_ids = [m.id for m in members]
        else:
            src, member_ids = source, []
        b = src.bos(bos)
        avail = src.opps()
        choices = resolve_opps(avail, list(opps), {}, where=src.where)
        opp_bytes = sum(src.opp_size(o.name) for o in choices)
        content = b.content + opp_bytes + 40 * MiB   # kernel + initramfs kept in /boot as well
        # sizes: GPT layout + metadata + boot LV + root LV
        # the smallest root LV the content fits in (or the size asked for)
        need_root = root_size or max(MIN_ROOT_SIZE, align_up(content + content // 4 + 16 * MiB, MiB))
        if root_size:
            root_lv_size(content, root_size, root_size)   # refuses a size too small for the content
        min_disk = gpt.LVM_START + 4 * MiB + BOOT_LV_SIZE + need_root + 8 * MiB
        forced = safety.require_safe(tgt.ref, list(force_ids), min_size=min_disk)
        free = align_down_mib(tgt.size - gpt.LVM_START - 2 * MiB - 4 * MiB) - BOOT_LV_SIZE - 8 * MiB
        plan = InstallPlan(from_vg=from_vg, install_disks=member_ids, bos=b.name, bos_format=b.format,
                           bos_version=b.version, bos_size=b.size, target=tgt.id, target_path=str(tgt.path),
                           target_size=tgt.size, root_vg=root_vg, boot_lv_size=BOOT_LV_SIZE,
                           root_lv_size=root_lv_size(content, free, root_size), opps=choices,
                           content_size=content, forced=forced,
                           bos_ref=f"{b.name}:{'raw' if b.format == 'raw' else 'tar'}")
        yield plan, src, tgt, member_ids


def align_down_mib(n: int) -> int:
    return n - n % MiB


def install(from_vg: str, bos: str, target: str, opps: Sequence[str] = (), *,
            fabric: str | os.PathLike[str] | None = None, force_ids: Sequence[str] = (),
            dry_run: bool = False, root_vg: str = ROOT_VG, root_size: int | None = None,
            bios: bool = True, uefi: bool = True, source: Source | None = None,
            progress: Progress | None = None) -> InstallPlan | InstallResult:
    """Figure 4: BOS + OPPs + boot loader onto ``target``.  See the module doc.

    Everything is checked before the first write; an error after it says the
    target is partly written (and how to redo the install)."""
    state: dict = {"writing": None}
    try:
        return _install(from_vg, bos, target, opps, fabric=fabric, force_ids=force_ids, dry_run=dry_run,
                        root_vg=root_vg, root_size=root_size, bios=bios, uefi=uefi, source=source,
                        progress=progress, _state=state)
    except SanbosError as e:
        if not state["writing"]:
            raise
        disk = state["writing"]
        msg = (f"{e}; the install stopped after it had begun writing {disk}: the disk is partly written, "
               f"run the install again with --force {disk}")
        try:
            err = type(e)(msg)
        except TypeError:
            err = SanbosError(msg)
        raise err from None


def _install(from_vg: str, bos: str, target: str, opps: Sequence[str] = (), *,
            fabric: str | os.PathLike[str] | None = None, force_ids: Sequence[str] = (),
            dry_run: bool = False, root_vg: str = ROOT_VG, root_size: int | None = None,
            bios: bool = True, uefi: bool = True, source: Source | None = None,
            progress: Progress | None = None, _state: dict | None = None) -> InstallPlan | InstallResult:
    _state = _state if _state is not None else {}
    from . import vg
    progress = progress or _noprogress
    t0 = time.monotonic()
    with _prepared(from_vg, bos, target, opps, fabric=fabric, force_ids=force_ids, root_vg=root_vg,
                   root_size=root_size, source=source) as (plan, src, tgt, _members):
        if dry_run:
            return plan
        progress(f"install VG {from_vg} imported read-only; target {tgt.id} checked", 0.02)
        with tempfile.TemporaryDirectory(prefix="sanbos-install.", dir=os.environ.get("SANBOS_TMP")) as tmp, \
                ExitStack() as jobs:
            tmp = Path(tmp)
            staging = tmp / "root"
            staging.mkdir()
            os.chmod(staging, 0o755)
            # 1. fetch what we need from the repository (before touching the target); the OPP
            # images and their control fields (one dpkg-deb each) are read in a second thread
            # while the BOS is unpacked
            debs = tmp / "opps"
            debs.mkdir()
            from concurrent.futures import ThreadPoolExecutor
            opp_pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sanbos-opps")
            jobs.callback(opp_pool.shutdown, wait=True, cancel_futures=True)   # before tmp goes

            def fetch_opps() -> list[tuple[OppChoice, Path, dict | None]]:
                out = []
                for o in plan.opps:
                    f = src.fetch_opp(o.name, debs)
                    out.append((o, f, _deb_fields(f) if _is_deb(f) else None))
                return out
            fetch_job = opp_pool.submit(fetch_opps)

            def unpack_opps(files) -> list[dict]:
                return [unpack_opp(f, staging, source=f"{from_vg}:{f.name}", fields=fields)
                        for _o, f, fields in files]
            if plan.bos_format == "tarball" and hasattr(src, "bos_tar_into"):
                progress(f"BOS {plan.bos}: unpacking the tarball (streamed from the repository, checked)", 0.12)
                src.bos_tar_into(plan.bos_ref, staging)
            elif plan.bos_format == "tarball":
                tarball = src.bos_tarball(plan.bos_ref, tmp / "bos.tar")
                progress(f"BOS {plan.bos}: unpacking the tarball", 0.12)
                run(["tar", "-x", *_sniff_tar(tarball), "-f", str(tarball), "-C", str(staging), *TAR_X],
                    what=f"tar -x of BOS {plan.bos}")
                if tmp in tarball.parents:
                    tarball.unlink()
            files = fetch_job.result()
            progress(f"{len(files)} OPP image(s) read from {src.where}", 0.2)
            kparts = kernel_for(staging if plan.bos_format == "tarball" else None, progress)
            # the OPPs go into the staging tree (over the BOS's files) while the initramfs is
            # built; not while the root VG is made: a child forked for dpkg-deb holds copies of
            # our descriptors until it execs, and would be seen as another user of the target
            unpack_job = opp_pool.submit(unpack_opps, files)
            initrd = build_root_initrd(kparts, tmp / "initrd.img")
            records = unpack_job.result()
            progress(f"root-VG initramfs built; {len(records)} OPP(s) unpacked", 0.25)
            # 2. the target: GPT + root VG + LVs
            progress(f"{tgt.id}: writing GPT and creating VG {root_vg}", 0.3)
            _state["writing"] = tgt.id
            vg.create(root_vg, [tgt.ref], force_ids=list(force_ids),
                      description=f"sanbos install {plan.bos} from {from_vg}")
            vg.lv_create(root_vg, [tgt.ref], BOOT_LV, BOOT_LV_SIZE)
            vg.lv_create(root_vg, [tgt.ref], ROOT_LV, plan.root_lv_size)
            with vg.open_vg(root_vg, [tgt.ref], write=True) as rvg:
                vg_uuid = rvg.uuid
                root_t = _root_target(rvg)
                boot_range = rvg.lv_ranges(BOOT_LV)
                if len(boot_range) != 1:
                    raise LVMError(f"VG {root_vg}: LV {BOOT_LV} is not contiguous")
                boot_range = boot_range[0]
                # 3. the boot side (boot LV, MBR, bios_grub, ESP) is written in a second
                # thread while the root LV is filled: disjoint byte ranges of the target
                from concurrent.futures import ThreadPoolExecutor
                bootdir = tmp / "bootparts"
                bootdir.mkdir()
                _place_boot_files(bootdir, kparts.vmlinuz, initrd)
                pool = ThreadPoolExecutor(max_workers=1)
                boot_job = pool.submit(write_boot_side, tgt.id, Path(tgt.path), root_vg, vg_uuid, boot_range,
                                       bootdir / KERNEL_PATH.lstrip("/"), bootdir / INITRD_PATH.lstrip("/"),
                                       progress=progress, bios=bios, uefi=uefi)
                try:
                    if plan.bos_format == "tarball":
                        _place_boot_files(staging, kparts.vmlinuz, initrd)
                        _write_install_record(staging, plan, vg_uuid, records)
                        progress(f"{root_vg}/{ROOT_LV}: mke2fs -d ({human(plan.root_lv_size)})", 0.45)
                        ext4.make(root_t, staging, label="sanbos-root", fstype="ext4")
                    else:
                        # block for block into a work image, grown there with resize2fs (resize2fs
                        # truncates image files to the new size, so it never runs on the disk itself)
                        work = tmp / "rawbos.img"
                        with open(work, "wb"):
                            pass
                        fs_size = src.bos_raw_image(plan.bos_ref, work)
                        if fs_size > root_t.size:
                            raise SpaceError(f"raw BOS {plan.bos} ({human(fs_size)}) is larger than "
                                             f"{root_vg}/{ROOT_LV} ({human(root_t.size)})")
                        progress(f"raw BOS {plan.bos}: copied block for block; growing it to "
                                 f"{human(root_t.size)}", 0.4)
                        grow_fs(ext4.Target(work, 0, root_t.size, name=f"raw BOS {plan.bos}"), fs_size)
                        _copy_range((str(work), 0), (str(root_t.path), root_t.offset), root_t.size,
                                    progress=progress, what=f"{root_vg}/{ROOT_LV}", dst_zero=True)
                        work.unlink()
                        _place_boot_files(staging, kparts.vmlinuz, initrd)
                        _write_install_record(staging, plan, vg_uuid, records)
                        copy_tree_into(root_t, staging, progress=progress)
                    # the staging tree is no longer needed: it goes while the boot side and the
                    # check finish (joined before the install returns or the temporary directory goes)
                    cleanup = threading.Thread(target=shutil.rmtree, args=(staging,), kwargs={"ignore_errors": True},
                                               name="sanbos-staging-rm", daemon=True)
                    cleanup.start()
                    jobs.callback(cleanup.join)
                    progress(f"{root_vg}/{ROOT_LV}: BOS and {len(records)} OPP(s) in place", 0.7)
                    boot = boot_job.result()
                finally:
                    pool.shutdown(wait=True)
                rec = tmp / "boot.json"
                rec.write_text(json.dumps(boot, indent=2, sort_keys=True) + "\n")
                ext4.write_file(root_t, rec, BOOT_RECORD, replace=True)
                ok, out = ext4.fsck(root_t)
                if not ok:
                    raise ToolError(f"{root_vg}/{ROOT_LV} on {tgt.id}: e2fsck found problems after the install: "
                                    + " / ".join(out.strip().splitlines()[-3:]))
        progress(f"install VG {from_vg} released; {tgt.id} is ready to boot", 1.0)
        return InstallResult(plan=plan, root_vg_uuid=vg_uuid, opps=records, boot=boot,
                             seconds=time.monotonic() - t0)


def _place_boot_files(staging: Path, kernel: Path, initrd: Path) -> None:
    """The kernel and initramfs in the root FS's /boot (recover rebuilds the boot LV from them)."""
    boot = staging / "boot"
    boot.mkdir(exist_ok=True)
    k, i = staging / KERNEL_PATH.lstrip("/"), staging / INITRD_PATH.lstrip("/")
    if k.resolve() != Path(kernel).resolve():
        shutil.copyfile(kernel, k)
    shutil.copyfile(initrd, i)
    os.chmod(k, 0o644)
    os.chmod(i, 0o600)


def _write_install_record(staging: Path, plan: InstallPlan, vg_uuid: str, records: list[dict]) -> None:
    d = staging / STATE_DIR.lstrip("/")
    d.mkdir(parents=True, exist_ok=True)
    (d / "install.json").write_text(json.dumps({
        "bos": plan.bos, "bos_version": plan.bos_version, "bos_format": plan.bos_format,
        "from_vg": plan.from_vg, "install_disks": plan.install_disks, "target": plan.target,
        "root_vg": plan.root_vg, "root_vg_uuid": vg_uuid,
        "opps": [{"name": r["name"], "version": r["version"]} for r in records],
        "installed": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }, indent=2, sort_keys=True) + "\n")


def grow_fs(t: ext4.Target, fs_size: int) -> None:
    """Grow a copied ext2/3/4 file system to fill its LV: ``resize2fs`` at the byte offset."""
    if t.size <= fs_size:
        return
    if t.offset:
        raise UsageError("grow_fs works on a whole image file (resize2fs truncates files to the new size)")
    with open(t.path, "r+b") as f:
        f.truncate(t.size)
    # resize2fs wants a freshly checked file system
    run(["e2fsck", "-fy", t.spec], check=False, what=f"e2fsck on {t.label}")
    run(["resize2fs", "-f", t.spec, f"{t.size // 1024}K"], what=f"resize2fs on {t.label}")


class DirSource(Source):
    """BOS and OPP images in a plain directory (``*.tar[.gz]``/``*.img`` BOS, ``*.deb`` OPPs).

    For tests and benchmarks of the install mechanics without an install VG.
    """

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)
        self.where = f"directory {self.root}"

    def _bos_file(self, name: str) -> Path:
        name = name.split(":")[0]
        for ext in (".tar", ".tar.gz", ".tgz", ".tar.xz", ".img"):
            p = self.root / f"{name}{ext}"
            if p.is_file():
                return p
        raise NotFoundError(f"BOS {name!r} is not in {self.where}")

    def bos(self, name: str) -> BosInfo:
        p = self._bos_file(name)
        size = p.stat().st_size
        name = name.split(":")[0]
        if p.suffix == ".img":
            return BosInfo(name, "raw", "", size, size)
        content = size if not _sniff_tar(p) else size * 3
        return BosInfo(name, "tarball", "", size, content)

    def bos_tarball(self, name: str, dest: Path) -> Path:
        return self._bos_file(name)

    def bos_raw_image(self, name: str, dest: Path) -> int:
        p = self._bos_file(name)
        _copy_range((str(p), 0), (str(dest), 0), p.stat().st_size)
        return p.stat().st_size

    def _debs(self) -> dict[str, Path]:
        out = {}
        for p in sorted(self.root.glob("*.deb")):
            out[p.name.split("_")[0]] = p
        return out

    def opps(self) -> dict[str, tuple[str, str]]:
        out = {}
        for n, p in self._debs().items():
            f = _deb_fields(p)
            out[n] = (f.get("Version", "0"), f.get("Depends", ""))
        return out

    def opp_size(self, name: str) -> int:
        return self._debs()[name].stat().st_size * 3

    def fetch_opp(self, name: str, dest_dir: Path) -> Path:
        return self._debs()[name]


class RepoSource(Source):
    """The install VG's repository (``core.repo``): BOS tarballs, raw BOS LVs, OPPs."""

    def __init__(self, vgo, repo_obj) -> None:
        self.vg = vgo
        self.repo = repo_obj
        self.toc = repo_obj.toc()
        self.where = f"the repository of install VG {vgo.name}"

    def _bos_entry(self, name: str):
        fmt = None
        if ":" in name:
            name, fmt = name.rsplit(":", 1)
            fmt = {"raw": "raw-lv", "tarball": "tar", "tar": "tar", "raw-lv": "raw-lv"}.get(fmt)
            if fmt is None:
                raise UsageError(f"BOS {name}: say NAME, NAME:tar or NAME:raw")
        hits = [e for e in self.toc.bos if e.name == name and (fmt is None or e.format == fmt)]
        if not hits:
            known = ", ".join(sorted({f"{e.name} ({e.format})" for e in self.toc.bos})) or "none"
            raise NotFoundError(f"BOS {name!r} is not in {self.where} (BOS images: {known})")
        if len(hits) > 1:
            raise UsageError(f"BOS {name} is in {self.where} as a tarball and as a raw LV: "
                             f"say {name}:tar or {name}:raw")
        return hits[0]

    def bos(self, name: str) -> BosInfo:
        e = self._bos_entry(name)
        if e.format == "raw-lv":
            return BosInfo(e.name, "raw", e.version, e.size, e.size)
        factor = 3 if (e.compression or "none") != "none" else 1.1
        return BosInfo(e.name, "tarball", e.version, e.size, int(e.size * factor))

    def bos_tarball(self, name: str, dest: Path) -> Path:
        return self.repo.read_image(self._bos_entry(name), dest)

    def bos_tar_into(self, name: str, dest: Path) -> None:
        """Stream a BOS tarball out of the repository into ``tar -x``, checking its SHA-256
        on the way (a copy that does not match is refused, and the next good leg tried)."""
        import subprocess as sp
        e = self._bos_entry(name)
        errors = []
        for leg in self.repo.good_legs():
            for child in dest.iterdir():
                shutil.rmtree(child) if child.is_dir() and not child.is_symlink() else child.unlink()
            # the file's blocks read straight from the leg (page-cache speed) into tar -x,
            # hashed on the way (hashlib with SHA-NI is far faster than tar); -B -b 2048: tar reads
            # the pipe in 1 MiB records instead of 10 KiB ones
            tar_cmd = ["tar", "-x", "-B", "-b", "2048", *_TAR_Z.get(e.compression or "none", []), "-f", "-", "-C", str(dest), *TAR_X]
            try:
                runs = _file_runs(leg.target, "/" + e.file, e.size)
            except SanbosError as ex:
                errors.append(f"{leg.label}: {ex}")
                continue
            h = hashlib.sha256()
            pipe = sp.Popen([shutil.which("tar") or "tar", *tar_cmd[1:]], stdin=sp.PIPE, stderr=sp.PIPE)
            try:
                import fcntl
                fcntl.fcntl(pipe.stdin.fileno(), 1031, 1 << 20)   # F_SETPIPE_SZ: fewer wake-ups
            except OSError:
                pass
            # every chunk is hashed in a second thread while the next one goes down the pipe
            # (hashlib and pipe writes both release the GIL): tar is never kept waiting for the hash;
            # the hash still covers every byte tar was given before the result is trusted.
            # The chunks are read from the leg into a few reused buffers (no new 4 MiB object
            # per chunk); a buffer goes back to the free list once it is hashed, and is only
            # taken again after the main thread has written it into the pipe
            chunk = _STREAM_CHUNK
            free: queue.Queue = queue.Queue()
            for _ in range(_STREAM_BUFFERS):
                free.put(bytearray(chunk))
            hq: queue.Queue = queue.Queue()

            def hasher() -> None:
                while (item := hq.get()) is not None:
                    buf, n = item
                    h.update(memoryview(buf)[:n])
                    free.put(buf)
            ht = threading.Thread(target=hasher, name="sanbos-bos-sha256", daemon=True)
            ht.start()
            wfd = pipe.stdin.fileno()
            try:
                fd = os.open(leg.target.path, os.O_RDONLY)
                try:
                    for off, length in runs:
                        pos = 0
                        while pos < length:
                            n = min(chunk, length - pos)
                            buf = free.get()
                            view = memoryview(buf)[:n]
                            if off is None:   # a hole in the file: zeros
                                view[:] = bytes(n)
                            else:
                                got = 0
                                while got < n:
                                    m = os.preadv(fd, [view[got:]], off + pos + got)
                                    if m <= 0:
                                        raise DiskError(f"{leg.label}: short read at byte {off + pos + got}")
                                    got += m
                            hq.put((buf, n))
                            done = 0
                            while done < n:
                                done += os.write(wfd, view[done:])
                            pos += n
                finally:
                    os.close(fd)
            except BrokenPipeError:
                pass
            except BaseException:
                pipe.kill()
                pipe.wait()
                raise
            finally:
                hq.put(None)
                ht.join()
                try:
                    pipe.stdin.close()
                except BrokenPipeError:
                    pass
            err_text = pipe.stderr.read()
            pipe.wait()
            res = sp.CompletedProcess(pipe.args, pipe.returncode, b"", err_text)
            got = h.hexdigest()
            trc, err = res.returncode, res.stderr.decode(errors="replace").strip()
            if got != e.sha256:
                errors.append(f"{leg.label}: checksum mismatch")
                continue
            if trc != 0:
                raise ToolError(f"tar -x of BOS {e.name} failed: {' / '.join(err.splitlines()[-2:])}")
            return
        raise FormatError(f"VG {self.vg.name}: no good copy of {e.label}: " + "; ".join(errors))

    def bos_raw_image(self, name: str, dest: Path) -> int:
        e = self._bos_entry(name)
        self.repo.read_image(e, dest)
        return e.size

    def _opp_entries(self) -> dict:
        return {e.name: e for e in self.toc.opps}

    def opps(self) -> dict[str, tuple[str, str]]:
        return {n: (e.version, ", ".join(e.dependencies)) for n, e in self._opp_entries().items()}

    def opp_size(self, name: str) -> int:
        return self._opp_entries()[name].size * 3

    def fetch_opp(self, name: str, dest_dir: Path) -> Path:
        e = self._opp_entries()[name]
        return self.repo.read_image(e, Path(dest_dir) / Path(e.file).name)


# ---------------------------------------------------------------------------
# products on an installed system (seed paragraph 0056)

def _installed(root: ext4.Target) -> dict[str, dict]:
    out: dict[str, dict] = {}
    try:
        names = ext4.listdir(root, OPP_DIR)
    except SanbosError:
        return out
    for n in sorted(names):
        try:
            first = ext4.read_file(root, f"{OPP_DIR}/{n}").decode(errors="replace").splitlines()
        except SanbosError:
            continue
        version, _, summary = (first[0] if first else "").partition(" ")
        rec = {"name": n, "version": version, "summary": summary.strip()}
        for line in first[1:]:
            k, _, v = line.partition(":")
            if k.strip() in ("source", "installed"):
                rec[k.strip()] = v.strip()
        try:
            ctl = _parse_control(ext4.read_file(root, f"{INFO_DIR}/{n}.control").decode(errors="replace"))
            rec["depends"] = ctl.get("Depends", "")
        except SanbosError:
            rec["depends"] = ""
        out[n] = rec
    return out


def installed_opps(target: str, *, fabric: str | os.PathLike[str] | None = None) -> list[dict]:
    """The OPPs recorded in the installed system on root VG disk ``target``."""
    from . import vg
    from .recover import find_root_vg
    d, name = find_root_vg(target, fabric)
    with vg.open_vg(name, [d.ref], write=False, allow_exported=True) as rvg:
        return list(_installed(_root_target(rvg)).values())


@dataclass
class OppInstallResult:
    target: str
    root_vg: str
    installed: list[dict]
    skipped: list[str]

    def __str__(self) -> str:
        done = ", ".join(f"{r['name']} {r['version']}" for r in self.installed) or "nothing new"
        skip = f"; already installed: {', '.join(self.skipped)}" if self.skipped else ""
        return f"{self.target} ({self.root_vg}): installed {done}{skip}"


def opp_install(from_vg: str, target: str, names: Sequence[str], *,
                fabric: str | os.PathLike[str] | None = None, dry_run: bool = False,
                progress: Progress | None = None) -> OppInstallResult | list[OppChoice]:
    """Install more products onto an installed system: import the install VG
    (read-only), install ``names`` (and what they need) into the target's root
    VG, release the install VG.  Dependencies are checked before anything is
    written; a dry run returns the chosen OPPs."""
    from . import vg
    from .recover import find_root_vg
    progress = progress or _noprogress
    if not names:
        raise UsageError("name at least one OPP to install")
    disks = _disks(fabric)
    d, rvg_name = find_root_vg(target, fabric)
    with open_install_vg(from_vg, disks) as (ivg, repo_obj):
        src = RepoSource(ivg, repo_obj)
        progress(f"install VG {from_vg} imported read-only", 0.05)
        with vg.open_vg(rvg_name, [d.ref], write=not dry_run, allow_exported=True) as rvg:
            root = _root_target(rvg)
            have = _installed(root)
            want = [n for n in names if not (n in have and n in src.opps() and have[n]["version"] == src.opps()[n][0])]
            skipped = [n for n in names if n not in want]
            for n in names:
                if n not in src.opps():
                    resolve_opps(src.opps(), [n], {}, where=src.where)  # raises NotFoundError naming it
            choices = resolve_opps(src.opps(), want, {k: v["version"] for k, v in have.items()},
                                   where=src.where) if want else []
            if dry_run:
                return choices
            records = []
            with tempfile.TemporaryDirectory(prefix="sanbos-oppinst.") as tmp:
                tmp = Path(tmp)
                staging = tmp / "root"
                staging.mkdir()
                (tmp / "opps").mkdir()
                for i, o in enumerate(choices):
                    f = src.fetch_opp(o.name, tmp / "opps")
                    records.append(unpack_opp(f, staging, source=f"{from_vg}:{f.name}"))
                    progress(f"{o.name} {o.version} unpacked", 0.1 + 0.5 * (i + 1) / max(1, len(choices)))
                if records:
                    copy_tree_into(root, staging, progress=progress)
            ok, out = ext4.fsck(root)
            if not ok:
                raise ToolError(f"{rvg_name}/{ROOT_LV} on {d.id}: e2fsck found problems after the OPP install: "
                                + " / ".join(out.strip().splitlines()[-3:]))
    progress(f"install VG {from_vg} released", 1.0)
    return OppInstallResult(d.id, rvg_name, records, skipped)
