"""GRUB 2 for boot disks: images built with ``grub-mkimage``, installed by hand.

Per boot disk sanbos builds two GRUB images carrying the same script:

* BIOS: an ``i386-pc`` core image (``core.img``) written into the disk's
  bios_grub partition, and GRUB's ``boot.img`` written into the protective
  MBR (code area only: the disk signature and partition table, bytes
  440-511, are kept), patched the way ``grub-bios-setup`` patches it: the
  64-bit LBA of core.img's first sector at 0x5C, boot drive 0xFF ("the drive
  the BIOS booted") at 0x64, the floppy-probe jump at 0x66 replaced by two
  NOPs for hard disks, and core.img's first-sector block list (last 12 bytes
  of that sector: start LBA u64, sector count u16, load segment u16) pointed
  at the sectors that follow it in the partition.
* UEFI: an ``x86_64-efi`` image written as ``EFI/BOOT/BOOTX64.EFI`` (the
  removable-media path every firmware tries) in a FAT16 ESP made with
  ``mkfs.fat --offset`` and filled with mtools (``-i IMG@@OFFSET``): no
  mount, no root.

Both images carry their ``grub.cfg`` in a memdisk (a tar) and the one-line
early config ``configfile (memdisk)/grub.cfg`` so the normal parser (with
``if``) runs it under BIOS and UEFI alike.  The generated script boots the
copy on the disk's own PV first after ``hashsum --check`` against the copy's
``SHA256SUMS``, and falls back to the other copies in the recorded order.

UEFI failover past a disk whose GRUB finds no good copy (``handover``): GRUB
2.06's ``exit`` returns EFI_SUCCESS, and OVMF (edk2 2022.11) then starts its
boot manager menu, not the next boot option.  So the UEFI script of a boot
disk made with ``handover`` hands over itself: its ESP gets a FAT volume ID
derived from the disk ID (``volume_id``, ``mkfs.fat -i``) that the script
knows; the script finds the highest-numbered ``(hdN,gpt2)`` carrying that ID
(its own ESP) and chainloads ``EFI/BOOT/BOOTX64.EFI`` from the first ESP
after it (``hd0``..``hd{HANDOVER_DISKS - 1}``, numeric order).  Every
handover goes to a strictly higher disk number than the disk that was
loaded, so a chain of handovers ends; only when no later loader is left
does it ``exit`` to the firmware.
"""

from __future__ import annotations

import hashlib
import os
import re
import shlex
import struct
import tempfile
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from .disk import Disk
from .errors import FormatError, SpaceError, ToolError, UsageError
from .tools import run

GRUB_LIB = Path("/usr/lib/grub")
PLATFORMS = ("i386-pc", "x86_64-efi")

COMMON_MODULES = ["part_gpt", "part_msdos", "lvm", "diskfilter", "ext2", "linux", "normal", "echo",
                  "hashsum", "gcry_sha256", "test", "serial", "terminal", "memdisk", "tar", "configfile",
                  "sleep", "halt", "reboot", "ls", "cat", "true"]
# x86_64-efi: minicmd holds ``exit`` (command.lst), which the UEFI config ends with, ``probe`` finds the
# disk's own ESP by its FAT volume ID and ``chain`` holds ``chainloader`` (the handover to the next disk's
# loader); the EFI image has no module directory to load anything from later, so every command the config
# uses must be built in
PLATFORM_MODULES = {"i386-pc": ["biosdisk"], "x86_64-efi": ["fat", "efi_gop", "minicmd", "probe", "chain"]}
#: the UEFI handover looks at (hd0,gpt2) .. (hdN-1,gpt2), in numeric order
HANDOVER_DISKS = 32
#: where the ESP is in the install-VG layout (GRUB's name) and the loader every firmware tries on it
ESP_PART = "gpt2"
ESP_LOADER = "/EFI/BOOT/BOOTX64.EFI"
#: commands GRUB's kernel itself registers (kern/corecmd.c): not in command.lst
KERNEL_COMMANDS = {"set", "unset", "insmod", "ls"}
#: words the normal parser reads as script syntax, not commands
SCRIPT_KEYWORDS = {"if", "then", "elif", "else", "fi", "for", "in", "do", "done", "while", "until",
                   "function", "!", "{", "}"}

# boot.img fields (GRUB's i386-pc boot sector layout)
BOOT_KERNEL_SECTOR = 0x5C
BOOT_DRIVE = 0x64
BOOT_DRIVE_CHECK = 0x66
BOOT_KEEP_FROM = 0x1B8      # disk signature + partition table + 0x55AA stay as they are
BOOT_BPB = (0x03, 0x5A)     # a BIOS parameter block, kept from the existing sector
BLOCKLIST_SIZE = 12         # start u64, len u16, segment u16 at the end of core.img's sector 0
SECTOR = 512

EARLY_CFG = "configfile (memdisk)/grub.cfg\n"


def lvm_device(vg: str, lv: str) -> str:
    """GRUB's name for an LV: ``lvm/VG-LV`` with every ``-`` inside a name doubled."""
    return f"lvm/{vg.replace('-', '--')}-{lv.replace('-', '--')}"


@dataclass(frozen=True)
class Copy:
    """One boot copy the script may boot: the disk it is on and its GRUB device."""

    disk_id: str
    device: str   # e.g. lvm/instvg-bootlv_rimage_0


_SAFE = re.compile(r"^[A-Za-z0-9._:/+=,@-]+$")


def _check_word(what: str, s: str) -> None:
    if not _SAFE.match(s):
        raise UsageError(f"{what} {s!r}: only letters, digits and . _ : / + = , @ - can go into a GRUB script")


def volume_id(disk_id: str) -> str:
    """The FAT volume ID (8 hex digits, for ``mkfs.fat -i``) of the ESP of boot disk ``disk_id``.

    Deterministic, and digits only, so GRUB's ``XXXX-XXXX`` spelling of it
    (:func:`fs_uuid`) is the same whichever letter case a GRUB version uses.
    """
    n = int.from_bytes(hashlib.sha256(b"sanbos-esp:" + disk_id.encode()).digest()[:8], "big") % 10 ** 8
    return f"{n or 1:08d}"


def fs_uuid(vol_id: str) -> str:
    """GRUB's name for a FAT volume ID (what ``probe --fs-uuid`` sets): ``1234-5678``."""
    return f"{vol_id[:4]}-{vol_id[4:]}".lower()


def read_volume_id(disk: str | os.PathLike[str], part_start: int) -> str:
    """The volume ID in the FAT16 boot sector of the ESP at ``part_start`` (8 hex digits)."""
    with Disk(disk) as d:
        bs = d.read(part_start, SECTOR)
    if bs[510:512] != b"\x55\xaa" or bs[0x26] != 0x29:
        raise FormatError(f"{disk}: no FAT16 boot sector with a volume ID at byte {part_start}")
    vid, = struct.unpack_from("<I", bs, 0x27)
    return f"{vid:08x}"


def _handover(esp_id: str) -> list[str]:
    """UEFI: chainload the loader on the first ESP after this disk's own, else ``exit``."""
    uuid = fs_uuid(esp_id)
    disks = " ".join(str(n) for n in range(HANDOVER_DISKS))
    esp = f"(hd$n,{ESP_PART})"
    return [
        "# no good copy: hand over to the loader on the next disk's ESP, only ever to a higher hd number",
        f"# than this disk's own ESP (FAT volume ID {uuid}; the last disk carrying it), so a chain ends",
        "set sanbos_own=",
        f"for n in {disks}; do",
        f"  if [ -f {esp}{ESP_LOADER} ]; then",
        "    set sanbos_id=",
        f"    probe --set=sanbos_id --fs-uuid {esp}",
        f'    if [ "$sanbos_id" = "{uuid}" ]; then set sanbos_own=$n; fi',
        "  fi",
        "done",
        'if [ -z "$sanbos_own" ]; then',
        f'  echo "sanbos: this disk\'s ESP (FAT volume ID {uuid}) is not among (hd0,{ESP_PART})..'
        f'(hd{HANDOVER_DISKS - 1},{ESP_PART}); no handover"',
        "else",
        f"  for n in {disks}; do",
        "    if [ $n -gt $sanbos_own ]; then",
        f"      if [ -f {esp}{ESP_LOADER} ]; then",
        f'        echo "sanbos: no good boot copy on this disk\'s list; handing over to the loader on {esp}"',
        # chainloader takes the device path it gives the loaded image from $root, not from its
        # file name argument ("error: not a valid root device" with root=(memdisk))
        f"        set root={esp}",
        f"        if chainloader {esp}{ESP_LOADER}; then",
        "          boot",
        # the loader ran and came back: a sanbos GRUB there has already tried every disk after it
        f'          echo "sanbos: the loader on {esp} returned; returning to the firmware"',
        "          sleep 2",
        "          exit",
        "        fi",
        f'        echo "sanbos: cannot load the loader on {esp}; trying the next disk"',
        "      fi",
        "    fi",
        "  done",
        "fi",
        'echo "sanbos: no good boot copy on this disk\'s list and no later disk\'s loader; returning to the firmware"',
    ]


def config(copies: Sequence[Copy], cmdline: str, *, platform: str = "i386-pc", this_disk: str = "",
           title: str = "sanbos maintenance boot", esp_id: str = "") -> str:
    """The grub.cfg of one boot disk: try ``copies`` in order (its own first).

    For each copy: if its SHA256SUMS exists and ``hashsum --check`` passes,
    boot its kernel with ``cmdline sanbos.copy=<disk id>``; else say why and
    go on.  When no copy is good, BIOS stops at the GRUB prompt; UEFI returns
    to the firmware (``exit``, from the ``minicmd`` module).  GRUB 2.06's
    ``exit`` returns EFI_SUCCESS, and by UEFI 2.x section 3.1.1 a firmware
    with a boot manager menu may then show that menu instead of trying its
    next boot entry: OVMF (edk2 2022.11) does exactly that (it starts
    "UiApp").  So with ``esp_id`` (the volume ID of this disk's own ESP, see
    :func:`volume_id`) the UEFI script first hands over to the loader on the
    next disk's ESP (``chainloader`` + ``boot``, only to disks numbered after
    its own ESP) and exits only when there is none; tests/test_boot_qemu.py
    proves both under OVMF.  Without ``esp_id`` it exits at once.
    """
    if platform not in PLATFORMS:
        raise UsageError(f"GRUB platform {platform!r}: choose one of {', '.join(PLATFORMS)}")
    if not copies:
        raise UsageError("a GRUB boot config needs at least one boot copy")
    if any(ord(c) < 32 or ord(c) == 127 for c in cmdline):
        raise UsageError(f"kernel command line {cmdline[:60]!r} has control characters (a newline would start "
                         "a GRUB command)")
    for word in cmdline.split():
        if any(c in word for c in "\"'$;{}\\`"):
            raise UsageError(f"kernel command line word {word!r} has characters GRUB would interpret")
    lines = [
        "# sanbos: generated, do not edit; one per boot disk",
        "serial --unit=0 --speed=115200",
        "terminal_input serial console",
        "terminal_output serial console",
        "set timeout=0",
        f'echo "{title}: GRUB on disk {this_disk or copies[0].disk_id} ({platform})"',
    ]
    for i, c in enumerate(copies, 1):
        _check_word("disk id", c.disk_id)
        _check_word("GRUB device", c.device)
        dev = f"({c.device})"
        lines += [
            f"# copy {i}: disk {c.disk_id}",
            f"if [ -f {dev}/SHA256SUMS ]; then",
            f'  echo "sanbos: checking copy {i} on disk {c.disk_id}"',
            f"  if hashsum --hash sha256 --check {dev}/SHA256SUMS --prefix {dev}; then",
            f'    echo "sanbos: booting copy {i} from disk {c.disk_id}"',
            f"    linux {dev}/vmlinuz {cmdline} sanbos.copy={c.disk_id}",
            f"    initrd {dev}/initrd.img",
            "    boot",
            "  else",
            f'    echo "sanbos: copy {i} on disk {c.disk_id} is corrupt (SHA-256 mismatch); trying the next copy"',
            "  fi",
            "else",
            f'  echo "sanbos: copy {i} on disk {c.disk_id} is missing; trying the next copy"',
            "fi",
        ]
    if platform == "x86_64-efi" and esp_id:
        if not re.fullmatch(r"[0-9a-fA-F]{8}", esp_id):
            raise UsageError(f"ESP volume ID {esp_id!r}: 8 hex digits")
        lines += _handover(esp_id)
    else:
        lines.append('echo "sanbos: no good boot copy on any disk"')
    if platform == "x86_64-efi":
        lines += ["sleep 2", "exit"]
    return "\n".join(lines) + "\n"


def commands(cfg: str) -> list[str]:
    """The command names a GRUB script runs (first word of every simple command), in order, once each."""
    out: list[str] = []
    for line in cfg.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        lex = shlex.shlex(line, posix=True, punctuation_chars=";")
        lex.whitespace_split = True
        lex.commenters = ""
        first = True
        header = False     # "for VAR in WORDS": no command until the ";" before "do"
        for tok in lex:
            if tok == ";":
                first, header = True, False
                continue
            if not first or header:
                continue
            if tok == "for":
                header = True
                continue
            if tok in SCRIPT_KEYWORDS:
                continue       # "if [ ... ]": the command after the keyword
            first = False
            if tok not in out:
                out.append(tok)
    return out


def _lst(path: Path) -> dict[str, list[str]]:
    out = {}
    for line in path.read_text().splitlines():
        name, sep, rest = line.partition(":")
        if sep:
            out[name.strip().lstrip("*")] = rest.split()
    return out


def missing_commands(cfg: str, platform: str, modules: Sequence[str]) -> dict[str, str]:
    """Commands ``cfg`` uses that an image of ``modules`` (and their dependencies) would not have.

    {command: module that has it, or "" when no module of ``platform`` does} (command.lst, moddep.lst).
    """
    moddir = GRUB_LIB / platform
    cmds = _lst(moddir / "command.lst")
    deps = _lst(moddir / "moddep.lst")
    have: set[str] = set()
    todo = list(modules)
    while todo:
        m = todo.pop()
        if m not in have:
            have.add(m)
            todo += deps.get(m, [])
    out = {}
    for c in commands(cfg):
        if c in KERNEL_COMMANDS:
            continue
        mod = cmds.get(c)
        if mod is None:
            out[c] = ""
        elif mod[0] not in have:
            out[c] = mod[0]
    return out


def mkimage(platform: str, cfg: str, out: str | os.PathLike[str], *,
            extra_modules: Sequence[str] = ()) -> Path:
    """Build a GRUB image for ``platform`` with ``cfg`` as (memdisk)/grub.cfg."""
    if platform not in PLATFORMS:
        raise UsageError(f"GRUB platform {platform!r}: choose one of {', '.join(PLATFORMS)}")
    moddir = GRUB_LIB / platform
    if not (moddir / "lvm.mod").exists():
        pkg = "grub-pc-bin" if platform == "i386-pc" else "grub-efi-amd64-bin"
        raise ToolError(f"GRUB modules for {platform} are missing ({moddir}); install {pkg} (scripts/setup.sh)")
    mods = COMMON_MODULES + PLATFORM_MODULES[platform] + list(extra_modules)
    out = Path(out)
    key = (platform, str(moddir), cfg, tuple(mods), _modules_stamp(moddir))
    with _BUILT_LOCK:
        data = _BUILT.get(key)
        if data is not None:
            _BUILT.move_to_end(key)
    if data is not None:   # built (and checked) before in this process: same inputs, same bytes
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_bytes(data)
        return out
    # the image has no module directory at boot: a command whose module is not built in is "unknown"
    missing = missing_commands(EARLY_CFG + cfg, platform, mods)
    if missing:
        raise UsageError(f"GRUB {platform} image: the config uses "
                         + ", ".join(f"{c!r} ({('module ' + m) if m else 'no such command'})"
                                     for c, m in missing.items())
                         + " that the image would not contain")
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="sanbos-grub.") as tmp:
        (Path(tmp) / "grub.cfg").write_text(cfg)
        (Path(tmp) / "early.cfg").write_text(EARLY_CFG)
        tar = Path(tmp) / "memdisk.tar"
        run(["tar", "-C", tmp, "--owner=0", "--group=0", "--mtime=@0", "-cf", str(tar), "grub.cfg"],
            what="tar (GRUB memdisk)")
        fmt = "i386-pc" if platform == "i386-pc" else "x86_64-efi"
        run(["grub-mkimage", "-O", fmt, "-d", str(moddir), "-o", str(out), "-p", "(memdisk)",
             "-m", str(tar), "-c", str(Path(tmp) / "early.cfg"), *mods], what=f"grub-mkimage -O {fmt}")
    data = out.read_bytes()
    with _BUILT_LOCK:
        _BUILT[key] = data
        while sum(len(v) for v in _BUILT.values()) > _BUILT_MAX_BYTES and len(_BUILT) > 1:
            _BUILT.popitem(last=False)
    return out


# -- build cache ----------------------------------------------------------------
# Images already built in this process, by (platform, config, modules, GRUB module directory
# stamp): installing several disks with the same config, or building a disk's images ahead of
# its install (``prebuild``), runs grub-mkimage once per distinct config.
_BUILT: "OrderedDict[tuple, bytes]" = OrderedDict()
_BUILT_LOCK = threading.Lock()
_BUILT_MAX_BYTES = 64 << 20


def _modules_stamp(moddir: Path) -> tuple:
    """Changes when GRUB's modules are upgraded (the directory and its kernel.img)."""
    try:
        d, k = os.stat(moddir), os.stat(moddir / "kernel.img")
    except OSError:
        return ()
    return (d.st_mtime_ns, k.st_mtime_ns, k.st_size, k.st_ino)


def _esp_id(this_disk: str, name: str | None, handover: bool) -> str:
    if not handover:
        return ""
    if not (this_disk or name):
        raise UsageError("a GRUB install with the UEFI handover needs the disk's ID (this_disk)")
    return volume_id(this_disk or str(name))


def prebuild(copies: Sequence[Copy], cmdline: str, *, this_disk: str = "", bios: bool = True,
             uefi: bool = True, handover: bool = False) -> None:
    """Build (into the cache) the images ``install`` will need for this disk, e.g. in a second
    thread while the boot copies are still being written; errors surface again in ``install``."""
    esp_id = _esp_id(this_disk, None, handover)
    with tempfile.TemporaryDirectory(prefix="sanbos-grubpre.") as tmp:
        for platform, wanted, name in (("i386-pc", bios, "core.img"), ("x86_64-efi", uefi, "BOOTX64.EFI")):
            if wanted:
                mkimage(platform, config(copies, cmdline, platform=platform, this_disk=this_disk,
                                         esp_id=esp_id if platform == "x86_64-efi" else ""),
                        Path(tmp) / name)


# -- BIOS ---------------------------------------------------------------------

def install_bios(disk: str | os.PathLike[str], core_img: str | os.PathLike[str], part_start: int,
                 part_size: int, *, name: str | None = None) -> None:
    """Write ``core_img`` into the bios_grub partition and boot.img into the MBR.

    ``part_start``/``part_size`` are the bios_grub partition's bytes.  The
    MBR's bytes 440-511 (disk signature, protective partition table,
    signature) are kept exactly.
    """
    label = name or str(disk)
    core = bytearray(Path(core_img).read_bytes())
    if len(core) < SECTOR:
        raise FormatError(f"{core_img}: too small to be a GRUB core image")
    core += b"\0" * (-len(core) % SECTOR)
    if len(core) > part_size:
        raise SpaceError(f"{label}: GRUB core image ({len(core)} bytes) does not fit in the bios_grub "
                         f"partition ({part_size} bytes)")
    if part_start % SECTOR:
        raise UsageError(f"{label}: bios_grub partition start {part_start} is not sector aligned")
    first = part_start // SECTOR
    nsec = len(core) // SECTOR
    # core.img sector 0 is diskboot: its block list loads the rest
    bl = len(core[:SECTOR]) - BLOCKLIST_SIZE
    start, count, segment = struct.unpack_from("<QHH", core, bl)
    if count != nsec - 1:
        raise FormatError(f"{core_img}: not an i386-pc core image of {nsec} sectors (block list says {count + 1})")
    struct.pack_into("<QHH", core, bl, first + 1, nsec - 1, segment)
    boot = bytearray((GRUB_LIB / "i386-pc" / "boot.img").read_bytes())
    if len(boot) != SECTOR or boot[510:512] != b"\x55\xaa":
        raise FormatError(f"{GRUB_LIB / 'i386-pc' / 'boot.img'}: not a GRUB boot sector")
    with Disk(disk, writable=True, name=label) as d:
        mbr = d.read(0, SECTOR)
        if mbr[510:512] != b"\x55\xaa" or not any(mbr[446 + 16 * i + 4] == 0xEE for i in range(4)):
            raise FormatError(f"{label}: no protective MBR (GPT type 0xEE) in sector 0; partition the disk first")
        boot[BOOT_BPB[0]:BOOT_BPB[1]] = mbr[BOOT_BPB[0]:BOOT_BPB[1]]
        struct.pack_into("<Q", boot, BOOT_KERNEL_SECTOR, first)
        boot[BOOT_DRIVE] = 0xFF
        boot[BOOT_DRIVE_CHECK:BOOT_DRIVE_CHECK + 2] = b"\x90\x90"
        boot[BOOT_KEEP_FROM:] = mbr[BOOT_KEEP_FROM:]
        # core first (the MBR points at it only once it is complete)
        d.write(part_start, bytes(core))
        d.zero(part_start + len(core), part_size - len(core))
        d.fsync()
        d.write(0, bytes(boot))
        d.fsync()


def read_bios(disk: str | os.PathLike[str], part_start: int) -> dict:
    """What the MBR and bios_grub partition say (for checks and tests)."""
    with Disk(disk) as d:
        mbr = d.read(0, SECTOR)
        core0 = d.read(part_start, SECTOR)
    kernel_sector, = struct.unpack_from("<Q", mbr, BOOT_KERNEL_SECTOR)
    start, count, segment = struct.unpack_from("<QHH", core0, SECTOR - BLOCKLIST_SIZE)
    return {"kernel_sector": kernel_sector, "boot_drive": mbr[BOOT_DRIVE],
            "blocklist": (start, count, segment), "signature": mbr[510:512] == b"\x55\xaa",
            "grub_boot": kernel_sector == part_start // SECTOR}


# -- UEFI ---------------------------------------------------------------------

def _mtools_env() -> dict[str, str]:
    return {"MTOOLS_SKIP_CHECK": "1", "MTOOLS_NO_VFAT": "0"}


def install_esp(disk: str | os.PathLike[str], efi_img: str | os.PathLike[str], part_start: int,
                part_size: int, *, name: str | None = None, volume_id: str | None = None,
                label: str = "SANBOS-ESP") -> None:
    """Make a FAT16 file system in the ESP and put ``EFI/BOOT/BOOTX64.EFI`` in it."""
    who = name or str(disk)
    if part_start % SECTOR or part_size % 1024:
        raise UsageError(f"{who}: ESP at {part_start} (+{part_size}) is not sector aligned")
    efi = Path(efi_img)
    if efi.stat().st_size > part_size - 1024 * 1024:
        raise SpaceError(f"{who}: {efi.name} ({efi.stat().st_size} bytes) does not fit in the ESP")
    # -I: on a block device (/dev/vdX in the maintenance guest) mkfs.fat refuses a partitioned
    # whole disk unless told; --offset already confines it to the ESP
    cmd = ["mkfs.fat", "-I", "-F", "16", "-n", label[:11], "--offset", str(part_start // SECTOR)]
    if volume_id:
        cmd += ["-i", volume_id]
    cmd += [str(disk), str(part_size // 1024)]
    run(cmd, what=f"mkfs.fat on the ESP of {who}")
    img = f"{disk}@@{part_start}"
    env = _mtools_env()
    run(["mmd", "-i", img, "::/EFI", "::/EFI/BOOT"], env=env, what=f"mmd on the ESP of {who}")
    run(["mcopy", "-i", img, "-o", str(efi), "::/EFI/BOOT/BOOTX64.EFI"], env=env,
        what=f"mcopy BOOTX64.EFI to the ESP of {who}")


def esp_read(disk: str | os.PathLike[str], part_start: int, path: str = "/EFI/BOOT/BOOTX64.EFI") -> bytes:
    """A file from the ESP (mtools)."""
    res = run(["mtype", "-i", f"{disk}@@{part_start}", "::" + path], env=_mtools_env(),
              what=f"mtype {path} on the ESP of {disk}")
    return res.stdout


def esp_fsck(disk: str | os.PathLike[str], part_start: int, part_size: int) -> tuple[bool, str]:
    """``fsck.fat -n`` on a copy of the ESP's byte range: (clean?, output)."""
    with tempfile.NamedTemporaryFile(prefix="sanbos-esp.", suffix=".img") as tmp:
        with Disk(disk) as src:
            for b in src.range(part_start, part_size).chunks():
                tmp.write(b)
        tmp.flush()
        res = run(["fsck.fat", "-n", tmp.name], check=False, what="fsck.fat")
    out = (res.stdout + res.stderr).decode(errors="replace")
    return res.returncode == 0, out


# -- both ---------------------------------------------------------------------

@dataclass(frozen=True)
class DiskParts:
    """The byte ranges of a boot disk's GRUB partitions."""

    bios_start: int
    bios_size: int
    esp_start: int
    esp_size: int


def install(disk: str | os.PathLike[str], parts: DiskParts, copies: Sequence[Copy], cmdline: str, *,
            name: str | None = None, this_disk: str = "", bios: bool = True, uefi: bool = True,
            handover: bool = False) -> dict:
    """Build this disk's GRUB images and install them (BIOS and/or UEFI).

    ``handover``: the ESP gets the volume ID ``volume_id(this_disk)`` and the
    UEFI script hands over to the next disk's loader when no copy is good
    (see :func:`config`).  Returns the generated configs by platform.
    """
    esp_id = _esp_id(this_disk, name, handover)
    cfgs = {}
    with tempfile.TemporaryDirectory(prefix="sanbos-grubinst.") as tmp:
        if bios:
            cfg = config(copies, cmdline, platform="i386-pc", this_disk=this_disk)
            core = mkimage("i386-pc", cfg, Path(tmp) / "core.img")
            install_bios(disk, core, parts.bios_start, parts.bios_size, name=name)
            cfgs["i386-pc"] = cfg
        if uefi:
            cfg = config(copies, cmdline, platform="x86_64-efi", this_disk=this_disk, esp_id=esp_id)
            efi = mkimage("x86_64-efi", cfg, Path(tmp) / "BOOTX64.EFI")
            install_esp(disk, efi, parts.esp_start, parts.esp_size, name=name, volume_id=esp_id or None)
            cfgs["x86_64-efi"] = cfg
    return cfgs


def fstest(images: Sequence[str | os.PathLike[str]], *args: str) -> str:
    """Run ``grub-fstest`` over the given disk images (GRUB's own drivers)."""
    cmd = ["grub-fstest"]
    if len(images) > 1:
        cmd += ["-c", str(len(images))]
    cmd += [str(i) for i in images] + list(args)
    return run(cmd, what="grub-fstest").stdout.decode(errors="replace")
