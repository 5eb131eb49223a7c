"""Discovery of the machine's block devices: pyudev plus sysfs fallbacks.

blivet-style helpers read each property from udev when a udev database
exists and from sysfs otherwise (there is no udev daemon on many
maintenance systems, and none on our CI machines):

* WWN: ``ID_WWN_WITH_EXTENSION``/``ID_WWN``, else sysfs ``wwid`` or
  ``device/wwid`` (``naa.``/``eui.`` identifiers);
* serial: ``ID_SERIAL_SHORT``, else sysfs ``device/serial`` or ``serial``, else SCSI VPD page 0x80;
* SAN address: ``ID_PATH``, else an address built from the sysfs device path
  (``pci-0000:00:04.0-scsi-2:0:0:1``) or, for a loop device, its backing file;
* size, read-only flag, holders, mounted partitions (``/proc/self/mountinfo``),
  active swap (``/proc/swaps``), loop ``backing_file`` and ``offset``.

Multipath: every path of one LUN reports the same WWN; those paths are one
disk with several addresses (and the dm multipath map, when there is one, is
the device used).  Unattached loop devices, ram and zram devices are skipped.

Every function takes ``sysfs``/``proc`` roots so tests can run it against a
fake tree.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from .inventory import DiskInfo

SYS = "/sys"
PROC = "/proc"
DEV = "/dev"

_SKIP_RE = re.compile(r"^(ram|zram|fd|sr|nbd)\d+")


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except (OSError, UnicodeDecodeError):
        return None


def _vpd_serial(path: Path) -> str | None:
    """The unit serial number from a SCSI VPD page 0x80 (sysfs ``device/vpd_pg80``)."""
    try:
        page = path.read_bytes()
    except OSError:
        return None
    if len(page) < 4 or page[1] != 0x80:
        return None
    length = int.from_bytes(page[2:4], "big")
    text = page[4:4 + length].decode("ascii", errors="replace").strip(" \x00")
    return text or None


def _names(d: Path) -> list[str]:
    """Sorted entries of a sysfs directory; [] when it is absent or unreadable."""
    try:
        return sorted(os.listdir(d))
    except OSError:
        return []


# ---------------------------------------------------------------------------
# small sysfs / procfs helpers (also used by core.safety)

def mounted_devnums(proc: str = PROC) -> dict[str, str]:
    """``"MAJ:MIN" -> mount point`` for every mounted block device."""
    out: dict[str, str] = {}
    text = _read(Path(proc) / "self" / "mountinfo") or ""
    for line in text.splitlines():
        f = line.split()
        if len(f) > 4 and ":" in f[2] and not f[2].startswith("0:"):
            out.setdefault(f[2], f[4])
    return out


def active_swaps(proc: str = PROC) -> set[str]:
    """Device paths of active swap areas."""
    text = _read(Path(proc) / "swaps") or ""
    return {line.split()[0] for line in text.splitlines()[1:] if line.strip()}


@dataclass
class LoopInfo:
    name: str            # loop3
    backing_file: str
    offset: int
    sizelimit: int


def loop_devices(sysfs: str = SYS) -> list[LoopInfo]:
    """Attached loop devices with their backing files."""
    out = []
    base = Path(sysfs) / "block"
    for name in _names(base):
        if not name.startswith("loop"):
            continue
        lp = base / name / "loop"
        bf = _read(lp / "backing_file")
        if not bf:
            continue
        out.append(LoopInfo(name, bf, int(_read(lp / "offset") or 0), int(_read(lp / "sizelimit") or 0)))
    return out


def loops_over(path: str | os.PathLike[str], sysfs: str = SYS) -> list[LoopInfo]:
    """Loop devices whose backing file is ``path``."""
    want = os.path.realpath(path)
    res = []
    for lo in loop_devices(sysfs):
        bf = lo.backing_file
        if bf.endswith(" (deleted)"):
            continue
        if os.path.realpath(bf) == want:
            res.append(lo)
    return res


def sysfs_dir_of(devnode: str | os.PathLike[str], sysfs: str = SYS) -> Path | None:
    """The sysfs directory of a block device node (via its major:minor)."""
    try:
        st = os.stat(devnode)
    except OSError:
        return None
    import stat as _stat
    if not _stat.S_ISBLK(st.st_mode):
        return None
    p = Path(sysfs) / "dev" / "block" / f"{os.major(st.st_rdev)}:{os.minor(st.st_rdev)}"
    try:
        return Path(os.path.realpath(p))
    except OSError:
        return None


def partitions_of(sysdir: Path) -> list[Path]:
    """sysfs directories of a disk's kernel partitions."""
    return [sysdir / e for e in _names(sysdir) if (sysdir / e / "partition").exists()]


def holders_of(sysdir: Path) -> list[str]:
    """Holders of the disk and of its partitions (dm maps, md arrays...)."""
    return [h for d in [sysdir, *partitions_of(sysdir)] for h in _names(d / "holders")]


def usage(sysdir: Path, devnode: str, proc: str = PROC) -> tuple[list[str], list[str]]:
    """``(mounted, busy)``: why a block device is mounted, and other in-use reasons."""
    mounts = mounted_devnums(proc)
    swaps = active_swaps(proc)
    mounted, busy = [], []
    for d in [sysdir, *partitions_of(sysdir)]:
        dev = _read(d / "dev")
        node = f"{DEV}/{d.name}" if d != sysdir else devnode
        if dev and dev in mounts:
            mounted.append(f"{node} is mounted on {mounts[dev]}")
        if node in swaps:
            mounted.append(f"{node} is an active swap area")
    hs = holders_of(sysdir)
    if hs:
        busy.append(f"held by {', '.join(hs)}")
    return mounted, busy


# ---------------------------------------------------------------------------
# per-device properties

def _norm_wwn(value: str | None) -> str | None:
    if not value:
        return None
    v = value.strip().lower()
    if v.startswith("0x"):
        return "naa." + v[2:]
    if v.startswith(("naa.", "eui.")):
        return v.replace(" ", "")
    if v.startswith("nvme.") or v.startswith("uuid."):
        return v
    return None   # t10./vendor strings are not world-wide names


def _address_from_sysfs(sysdir: Path) -> str:
    """A by-path style address from the device's sysfs location."""
    parts = str(sysdir).split("/")
    pci = [p for p in parts if re.fullmatch(r"[0-9a-f]{4}:[0-9a-f]{2}:[0-9a-f]{2}\.[0-7]", p)]
    scsi = [p for p in parts if re.fullmatch(r"\d+:\d+:\d+:\d+", p)]
    bits = []
    if pci:
        bits.append(f"pci-{pci[-1]}")
    if scsi:
        bits.append(f"scsi-{scsi[-1]}")
    if not bits:
        return f"virtual-{sysdir.name}"
    return "-".join(bits)


@dataclass
class _Dev:
    name: str
    sysdir: Path
    devnode: str
    props: dict = field(default_factory=dict)


def _enumerate(sysfs: str, udev: bool = True) -> list[_Dev]:
    """Whole-disk block devices: pyudev when looking at the real /sys, else a sysfs walk."""
    devs: list[_Dev] = []
    if udev and sysfs == SYS:
        try:
            import pyudev
            ctx = pyudev.Context()
            for d in ctx.list_devices(subsystem="block", DEVTYPE="disk"):
                props = {k: d.properties.get(k) for k in
                         ("ID_WWN", "ID_WWN_WITH_EXTENSION", "ID_SERIAL_SHORT", "ID_SERIAL",
                          "ID_PATH", "DM_UUID", "DM_NAME")}
                devs.append(_Dev(d.sys_name, Path(d.sys_path), d.device_node or f"{DEV}/{d.sys_name}",
                                 {k: v for k, v in props.items() if v}))
            return devs
        except Exception:   # no libudev: fall back to sysfs
            devs = []
    base = Path(sysfs) / "class" / "block"
    if not base.is_dir():
        base = Path(sysfs) / "block"
    for name in _names(base):
        d = base / name
        if (d / "partition").exists():
            continue
        devs.append(_Dev(name, Path(os.path.realpath(d)), f"{DEV}/{name}"))
    return devs


def _probe(dev: _Dev, sysfs: str, proc: str) -> DiskInfo | None:
    sd = dev.sysdir
    name = dev.name
    if _SKIP_RE.match(name):
        return None
    backing = offset = None
    if name.startswith("loop"):
        backing = _read(sd / "loop" / "backing_file")
        if not backing:
            return None          # unattached loop device
        offset = int(_read(sd / "loop" / "offset") or 0)
    size = int(_read(sd / "size") or 0) * 512
    if size == 0 and not backing:
        return None              # empty slot (no medium)
    p = dev.props
    wwn = (_norm_wwn(p.get("ID_WWN_WITH_EXTENSION")) or _norm_wwn(p.get("ID_WWN"))
           or _norm_wwn(_read(sd / "wwid")) or _norm_wwn(_read(sd / "device" / "wwid")))
    serial = (p.get("ID_SERIAL_SHORT") or _read(sd / "device" / "serial") or _read(sd / "serial")
              or _vpd_serial(sd / "device" / "vpd_pg80") or None)
    address = p.get("ID_PATH")
    if not address:
        address = f"loop-{backing}" + (f"@{offset}" if offset else "") if backing else _address_from_sysfs(sd)
    mounted, busy = usage(sd, dev.devnode, proc)
    in_use = "; ".join(mounted + busy) or None
    kind = "loop" if backing else "disk"
    dm_uuid = p.get("DM_UUID") or _read(sd / "dm" / "uuid")
    if name.startswith("dm-"):
        if dm_uuid and dm_uuid.startswith("mpath-"):
            kind = "multipath"
            if not wwn:   # mpath-3<naa hex>: the SCSI "3" prefix means NAA
                wid = dm_uuid[6:]
                wwn = _norm_wwn("naa." + wid[1:]) if wid.startswith("3") else None
        else:
            return None          # LVM/crypt maps are not disks of their own
    if wwn:
        ident = wwn
    elif serial:
        ident = f"serial:{serial}"
    else:
        ident = f"path:{dev.devnode}"
    info = DiskInfo(id=ident, path=Path(dev.devnode), size=size, wwn=wwn, serial=serial,
                    addresses=[address], kind=kind,
                    read_only=(_read(sd / "ro") == "1"), in_use=in_use,
                    backing_file=backing, backing_offset=offset)
    return info


def _group_multipath(disks: list[DiskInfo], slaves: dict[str, list[str]]) -> list[DiskInfo]:
    """One disk per WWN: paths of the same LUN become addresses of one disk."""
    by_wwn: dict[str, list[DiskInfo]] = {}
    order: list[object] = []
    for d in disks:
        if d.wwn:
            if d.wwn not in by_wwn:
                by_wwn[d.wwn] = []
                order.append(d.wwn)
            by_wwn[d.wwn].append(d)
        else:
            order.append(d)
    out = []
    for key in order:
        if isinstance(key, DiskInfo):
            out.append(key)
            continue
        group = by_wwn[key]
        if len(group) == 1:
            out.append(group[0])
            continue
        maps = [d for d in group if d.kind == "multipath"]
        paths = [d for d in group if d.kind != "multipath"]
        head = maps[0] if maps else paths[0]
        addresses = []
        for d in paths or group:
            for a in d.addresses:
                if a not in addresses:
                    addresses.append(a)
        uses = [d.in_use for d in group if d.in_use]
        merged = DiskInfo(
            id=head.id, path=head.path, size=head.size, wwn=head.wwn,
            serial=head.serial or next((d.serial for d in group if d.serial), None),
            addresses=addresses, kind="multipath",
            read_only=any(d.read_only for d in group),
            in_use="; ".join(dict.fromkeys(uses)) or None,
            paths=[str(d.path) for d in paths])
        out.append(merged)
    return out


def list_block_disks(sysfs: str = SYS, proc: str = PROC, *, udev: bool = True) -> list[DiskInfo]:
    """The machine's disks (without partition/LVM details; see core.inventory).

    ``udev=False`` walks sysfs only (what happens anyway when libudev is
    missing or ``sysfs`` is not the real /sys).
    """
    found = []
    slaves: dict[str, list[str]] = {}
    for dev in _enumerate(sysfs, udev):
        info = _probe(dev, sysfs, proc)
        if info is None:
            continue
        if info.kind == "multipath":
            slaves[dev.name] = _names(dev.sysdir / "slaves")
        found.append(info)
    # paths claimed by a multipath map are in use by it; that is expected
    claimed = {s for v in slaves.values() for s in v}
    for d in found:
        if d.path.name in claimed and d.in_use and d.in_use.startswith("held by dm-"):
            d.in_use = None
    return _group_multipath(found, slaves)
