"""Failure recovery (the seed's Figure 5): check and rebuild a root VG disk's boot side.

A root VG disk written by ``core.install`` has, on its boot side:

- the MBR boot code (GRUB's ``boot.img``) and GRUB's ``core.img`` in the
  bios_grub partition (BIOS);
- the ESP: FAT16 with ``EFI/BOOT/BOOTX64.EFI`` (UEFI);
- the boot LV ``bootlv``: an ext2 boot image (kernel, initramfs, cmdline,
  SHA256SUMS, manifest);
- in the root file system: ``/boot/vmlinuz`` and ``/boot/initrd.img`` (what
  the boot LV is rebuilt from) and ``/var/lib/sanbos/boot.json``, the
  checksums of everything above as the install (or the last recover) wrote it.

``check_rootvg(disk)`` compares each against the record and names every
defect; it reads only (shared locks).  ``recover(from_vg, disk)`` imports the
root VG, rebuilds the boot image from the root file system's own ``/boot``
(or, when those files are missing or do not match their recorded
checksums, from the install VG: the maintenance kernel of its boot copies,
with a fresh root-VG initramfs, and puts them back into ``/boot``), rewrites
the boot LV and GRUB for BIOS and UEFI, and checks again.  The root LV is
written only where ``/boot`` or ``boot.json`` must change: user data is
never touched.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from . import ext4
from .errors import DiskError, FormatError, NotFoundError, SanbosError, ToolError, UsageError

Progress = Callable[[str, "float | None"], None]


def _noprogress(message: str, fraction: float | None = None) -> None:
    pass


@dataclass
class Defect:
    kind: str      # mbr, bios_grub, esp, bootlv, kernel, initrd, rootfs_kernel, rootfs_initrd, record
    disk: str
    message: str

    def __str__(self) -> str:
        return f"{self.disk}: {self.kind}: {self.message}"

    def to_json(self) -> dict:
        return {"kind": self.kind, "disk": self.disk, "message": self.message}


def _sha(b: bytes) -> str:
    return hashlib.sha256(b).hexdigest()


def find_root_vg(disk_id: str, fabric: str | os.PathLike[str] | None = None):
    """(DiskInfo, VG name) of the root VG on a disk named by unique ID or prefix."""
    from . import inventory
    from .lvm.scan import scan
    disks = inventory.list_disks(fabric)
    try:
        d = inventory.find(disks, disk_id)
    except NotFoundError as e:
        raise NotFoundError(f"root VG disk {disk_id!r}: {e}") from None
    res = scan([d.ref])
    names = sorted(res.vgs)
    if not names:
        raise NotFoundError(f"disk {d.id} ({d.path}) holds no volume group: it is not a root VG disk"
                            + (f" ({'; '.join(res.problems)})" if res.problems else ""))
    if len(names) > 1:
        raise FormatError(f"disk {d.id} holds several VGs ({', '.join(names)}); sanbos root VGs have one")
    name = names[0]
    info = res.vgs[name]
    if info.vg.lv("bootlv") is None or info.vg.lv("rootlv") is None:
        from .install import BOOT_LV, ROOT_LV
        raise NotFoundError(f"disk {d.id}: VG {name} has no {BOOT_LV}/{ROOT_LV}; it is not a root VG "
                            "written by sanbos install (an install VG? use 'sanbos bootcopy verify')")
    return d, name


def _lv_target(vgo, lv: str) -> ext4.Target:
    ranges = vgo.lv_ranges(lv)
    if len(ranges) != 1:
        raise FormatError(f"VG {vgo.name}: LV {lv} is not contiguous")
    p, off, n = ranges[0]
    return ext4.Target(Path(p), off, n, name=f"{vgo.name}/{lv}")


def _read_record(root: ext4.Target) -> dict | None:
    from .install import BOOT_RECORD
    try:
        return json.loads(ext4.read_file(root, BOOT_RECORD))
    except (SanbosError, ValueError):
        return None


def _check(d, vgo) -> tuple[list[Defect], dict | None]:
    from . import bootimage, gpt, grub
    from .disk import Disk
    from .install import INITRD_PATH, KERNEL_PATH
    out: list[Defect] = []
    did = d.id
    root = _lv_target(vgo, "rootlv")
    rec = _read_record(root)
    if rec is None:
        out.append(Defect("record", did, "the root file system has no readable /var/lib/sanbos/boot.json; "
                          "checks fall back to structure only"))
    with Disk(d.path, name=did) as disk:
        table = gpt.read_table(disk)
        parts = {p.kind: p for p in (table or [])}
        mbr = disk.read(0, 512)
        bios = disk.read(parts["bios_grub"].start, parts["bios_grub"].size) if "bios_grub" in parts else b""
    # MBR boot code
    if not any(mbr[:440]):
        out.append(Defect("mbr", did, "the MBR boot code is blank (BIOS firmware cannot boot this disk)"))
    elif rec and _sha(mbr[:440]) != rec.get("mbr_code_sha256"):
        out.append(Defect("mbr", did, "the MBR boot code differs from GRUB's boot.img as installed (corrupt)"))
    elif mbr[510:512] != b"\x55\xaa":
        out.append(Defect("mbr", did, "the MBR has no 0x55AA boot signature"))
    # bios_grub
    if "bios_grub" not in parts:
        out.append(Defect("bios_grub", did, "no bios_grub partition in the GPT"))
    elif not any(bios):
        out.append(Defect("bios_grub", did, "the bios_grub partition is wiped (no GRUB core.img)"))
    elif rec:
        n = rec.get("bios_grub", {}).get("core_bytes", 0)
        if _sha(bios[:n]) != rec.get("bios_grub", {}).get("sha256"):
            out.append(Defect("bios_grub", did, "GRUB's core.img in the bios_grub partition is corrupt "
                                                "(SHA-256 differs from the install record)"))
    # ESP
    if "esp" not in parts:
        out.append(Defect("esp", did, "no ESP in the GPT"))
    else:
        ep = parts["esp"]
        ok, text = grub.esp_fsck(d.path, ep.start, ep.size)
        if not ok:
            first = next((l for l in text.splitlines() if l.strip() and "fsck.fat" not in l), "fsck.fat failed")
            out.append(Defect("esp", did, f"the ESP has no valid FAT file system ({first.strip()})"))
        else:
            try:
                efi = grub.esp_read(d.path, ep.start)
                want = (rec or {}).get("esp", {}).get("bootx64_sha256")
                if want and _sha(efi) != want:
                    out.append(Defect("esp", did, "EFI/BOOT/BOOTX64.EFI on the ESP is corrupt "
                                                  "(SHA-256 differs from the install record)"))
            except ToolError:
                out.append(Defect("esp", did, "EFI/BOOT/BOOTX64.EFI is missing from the ESP"))
    # boot LV: the boot image
    boot = _lv_target(vgo, "bootlv")
    try:
        info = bootimage.inspect(boot)
        names = set(info.files)
        for p in info.problems:
            kind = "kernel" if p.startswith("vmlinuz") else "initrd" if p.startswith("initrd") else "bootlv"
            word = {"kernel": "kernel", "initrd": "initramfs", "bootlv": "boot image"}[kind]
            out.append(Defect(kind, did, f"{word} in {vgo.name}/bootlv: {p}"))
        if rec and not info.problems:
            kh = info.manifest.get("kernel", {}).get("sha256")
            ih = info.manifest.get("initrd", {}).get("sha256")
            if kh != rec.get("kernel", {}).get("sha256"):
                out.append(Defect("kernel", did, f"the kernel in {vgo.name}/bootlv is not the recorded one"))
            if ih != rec.get("initrd", {}).get("sha256"):
                out.append(Defect("initrd", did, f"the initramfs in {vgo.name}/bootlv is not the recorded one"))
    except (SanbosError, ValueError) as e:
        out.append(Defect("bootlv", did, f"{vgo.name}/bootlv holds no readable boot image ({e})"))
    # the root file system's /boot (what recover rebuilds from)
    for kind, path, key in (("rootfs_kernel", KERNEL_PATH, "kernel"), ("rootfs_initrd", INITRD_PATH, "initrd")):
        try:
            data = ext4.read_file(root, path)
        except SanbosError:
            out.append(Defect(kind, did, f"{path} is missing from the root file system"))
            continue
        want = (rec or {}).get(key, {}).get("sha256")
        if want and _sha(data) != want:
            out.append(Defect(kind, did, f"{path} in the root file system does not match its recorded SHA-256"))
    return out, rec


def check_rootvg(target: str, *, fabric: str | os.PathLike[str] | None = None) -> list[Defect]:
    """Every boot-side defect of the root VG disk ``target`` (empty: all good).  Reads only."""
    from . import vg
    d, name = find_root_vg(target, fabric)
    with vg.open_vg(name, [d.ref], write=False, allow_exported=True) as vgo:
        defects, _ = _check(d, vgo)
    return defects


@dataclass
class RecoverResult:
    disk: str
    vg: str
    before: list[Defect]
    after: list[Defect]
    source: str          # where the kernel and initramfs came from

    def __str__(self) -> str:
        fixed = "\n".join(f"  fixed: {x}" for x in self.before if x.kind != "record") or "  nothing was damaged"
        return (f"recovered root VG {self.vg} on {self.disk} (kernel and initramfs from {self.source})\n{fixed}")


def _kernel_from_install_vg(from_vg: str, fabric, dest: Path, progress: Progress) -> tuple[Path, Path, str]:
    """The maintenance kernel from a boot copy of the install VG, plus a new root-VG initramfs."""
    from . import bootimage, guest, inventory, vg
    from .install import build_root_initrd, install_vg_disks
    disks = inventory.list_disks(fabric)
    members = install_vg_disks(from_vg, disks)
    from .lvm.lvio import legs as lv_legs
    kernel = dest / "vmlinuz"
    version = None
    errors = []
    with vg.open_vg(from_vg, [m.ref for m in members], write=False, allow_exported=True) as ivg:
        try:
            lv = ivg.lv("bootlv")
        except NotFoundError:
            raise NotFoundError(f"install VG {from_vg} has no boot copies (bootlv); cannot take a kernel from it")
        for k in range(lv_legs(ivg.vg, lv)):
            ranges = ivg.lv_ranges("bootlv", leg=k)
            if len(ranges) != 1:
                continue
            p, off, n = ranges[0]
            t = ext4.Target(Path(p), off, n, name=f"{from_vg}/bootlv leg {k}")
            try:
                info = bootimage.inspect(t)
                if info.problems:
                    errors.append(f"leg {k}: {'; '.join(info.problems)}")
                    continue
                kernel.write_bytes(ext4.read_file(t, "/vmlinuz"))
                version = info.manifest.get("kernel", {}).get("version")
                progress(f"kernel {version} taken from {from_vg}/bootlv leg {k}", None)
                break
            except SanbosError as e:
                errors.append(f"leg {k}: {e}")
    if version is None:
        raise FormatError(f"install VG {from_vg}: no good boot copy to take a kernel from ({'; '.join(errors)})")
    kp = guest.kernel_parts()
    if not version.startswith(kp.version):
        raise NotFoundError(f"install VG {from_vg}: its kernel is {version} but the module cache has "
                            f"{kp.version}; cannot build a matching root-VG initramfs")
    initrd = build_root_initrd(kp, dest / "initrd.img")
    return kernel, initrd, f"install VG {from_vg} (boot copy kernel {version})"


def recover(from_vg: str | None, rootvg_disk: str, *, fabric: str | os.PathLike[str] | None = None,
            bios: bool = True, uefi: bool = True, progress: Progress | None = None) -> RecoverResult:
    """Rebuild the boot side of a root VG disk; see the module doc."""
    from . import vg
    from .install import (BOOT_LV, BOOT_RECORD, INITRD_PATH, KERNEL_PATH, boot_record, write_boot_side)
    progress = progress or _noprogress
    d, name = find_root_vg(rootvg_disk, fabric)
    progress(f"{d.id}: importing root VG {name}", 0.05)
    with vg.open_vg(name, [d.ref], write=True, allow_exported=True) as vgo:
        before, rec = _check(d, vgo)
        root = _lv_target(vgo, "rootlv")
        boot_range = vgo.lv_ranges(BOOT_LV)[0]
        vg_uuid = vgo.uuid
        for x in before:
            progress(f"defect: {x}", None)
        with tempfile.TemporaryDirectory(prefix="sanbos-recover.") as tmp:
            tmp = Path(tmp)
            own_bad = any(x.kind in ("rootfs_kernel", "rootfs_initrd") for x in before)
            if not own_bad:
                kernel, initrd = tmp / "vmlinuz", tmp / "initrd.img"
                kernel.write_bytes(ext4.read_file(root, KERNEL_PATH))
                initrd.write_bytes(ext4.read_file(root, INITRD_PATH))
                source = f"the root file system's /boot ({name}/rootlv)"
            else:
                if not from_vg:
                    raise UsageError(f"{d.id}: the root file system's own kernel/initramfs are damaged too; "
                                     "give the install VG (--from VG) to take them from")
                kernel, initrd, source = _kernel_from_install_vg(from_vg, fabric, tmp, progress)
                ext4.mkdir(root, "/boot")
                ext4.write_file(root, kernel, KERNEL_PATH, replace=True)
                ext4.write_file(root, initrd, INITRD_PATH, replace=True)
                progress(f"{name}/rootlv: /boot kernel and initramfs restored from {from_vg}", None)
            progress(f"{d.id}: rebuilding the boot image and GRUB from {source}", 0.4)
            new = write_boot_side(d.id, Path(d.path), name, vg_uuid, boot_range, kernel, initrd,
                                  progress=progress, bios=bios, uefi=uefi)
            same = rec is not None and all(rec.get(k) == new.get(k) for k in new if k != "written")
            if not same:
                f = tmp / "boot.json"
                f.write_text(json.dumps(new, indent=2, sort_keys=True) + "\n")
                ext4.write_file(root, f, BOOT_RECORD, replace=True)
        after, _ = _check(d, vgo)
    if after:
        raise FormatError(f"{d.id}: recover finished but defects remain: " + "; ".join(str(x) for x in after))
    progress(f"{d.id}: boot side rebuilt; no defects remain", 1.0)
    return RecoverResult(d.id, name, before, after, source)
