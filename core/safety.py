"""Is a disk blank and safe to write?  Reasons it is not, and the --force rule.

``assess(ref)`` lists every reason a disk must not be written without
forcing: a partition table (GPT or MBR), an LVM label (``LABELONE`` in
sectors 0-3 of the disk or of any partition), a file-system or RAID
signature (ext2/3/4, XFS, FAT, NTFS, swap, btrfs, LUKS, md, ISO 9660, plus
whatever ``blkid -p`` recognises), non-zero bytes none of these explain
(data sanbos does not recognise: a blank disk reads as zeros), mounted or in use (mounted partitions,
active swap, holders, a loop device over an image file, another process's
lock), read-only, too small.

``require_safe(ref, force_ids, min_size)`` raises ``UnsafeDiskError`` naming
the disk ID and every reason, unless the caller forces that disk by its full
ID.  Too small, mounted and read-only can never be forced.

The signature checks themselves (``probe``) are pure functions over a few
bytes read at the start and end of a range, so ``core.inventory`` can use
them on thousands of disks.
"""

from __future__ import annotations

import errno
import os
import stat
import struct
from dataclasses import dataclass
from typing import Callable, Iterable

from . import gpt
from .disk import Disk, DiskRef, describe_pids, lock_holders, read_only_image
from .errors import FormatError, ToolError, UnsafeDiskError
from .lvm.crc import calc_crc
from .lvm.uuid import dashed as dash_uuid
from .units import human

#: bytes read at the start of a range: covers btrfs (64 KiB + 0x40), swap
#: with 64 KiB pages, LUKS2's second header, ISO 9660, the GPT entry array
HEAD = 72 * 1024
#: bytes read at the end of a range: md 0.90 / 1.0 superblocks, backup GPT
TAIL = 128 * 1024

_MD_MAGIC = 0xA92B4EFC


@dataclass
class Signature:
    """Something found on a disk or partition."""

    kind: str        # "gpt", "mbr", "lvm2", "ext4", "xfs", "vfat", "swap", ...
    offset: int      # byte offset within the probed range
    detail: str      # words for an operator
    pv_uuid: str | None = None   # lvm2: the dashed PV UUID


def lvm_label(head: bytes) -> Signature | None:
    """An LVM2 label in sectors 0-3 of ``head`` (a PV's first 2 KiB), or None."""
    for sector in range(4):
        s = head[sector * 512:(sector + 1) * 512]
        if len(s) < 512:
            break
        if s[:8] == b"LABELONE" and s[24:32] == b"LVM2 001":
            raw = s[32:64].decode("ascii", errors="replace")
            xl, crc = struct.unpack_from("<QI", s, 8)
            ok = xl == sector and crc == calc_crc(s[20:512])
            u = dash_uuid(raw)
            detail = f"an LVM2 physical volume label (PV UUID {u})" if ok else \
                f"a damaged LVM2 physical volume label in sector {sector} (PV UUID {u}?)"
            return Signature("lvm2", sector * 512, detail, pv_uuid=u)
    return None


def _ext(head: bytes) -> Signature | None:
    sb = head[1024:2048]
    if len(sb) < 0x88 or sb[0x38:0x3A] != b"\x53\xef":
        return None
    compat, incompat, ro = struct.unpack_from("<III", sb, 0x5C)
    if incompat & 0x8:
        kind = "jbd"
    elif incompat & (0x40 | 0x80 | 0x200) or ro & (0x8 | 0x10 | 0x20 | 0x40 | 0x400):
        kind = "ext4"
    elif compat & 0x4:
        kind = "ext3"
    else:
        kind = "ext2"
    label = sb[0x78:0x88].split(b"\0", 1)[0].decode(errors="replace")
    return Signature(kind, 1024, f"an {kind} file system" + (f" (label {label!r})" if label else ""))


def _fat(head: bytes) -> Signature | None:
    b = head[:512]
    if len(b) < 512 or b[510:512] != b"\x55\xaa" or b[0] not in (0xEB, 0xE9):
        return None
    bps, spc, reserved, nfats = struct.unpack_from("<HBHB", b, 11)
    if bps not in (512, 1024, 2048, 4096) or spc == 0 or spc & (spc - 1) or reserved == 0 or nfats not in (1, 2):
        return None
    if b[0x52:0x57] == b"FAT32":
        kind = "FAT32"
    elif b[0x36:0x39] == b"FAT":
        kind = b[0x36:0x3E].decode(errors="replace").strip() or "FAT"
    else:
        kind = "FAT"
    return Signature("vfat", 0, f"a {kind} file system")


def _mbr(head: bytes) -> Signature | None:
    b = head[:512]
    if len(b) < 512 or b[510:512] != b"\x55\xaa":
        return None
    entries = [b[446 + 16 * i:462 + 16 * i] for i in range(4)]
    if any(e[0] not in (0, 0x80) for e in entries):
        return None
    types = [e[4] for e in entries if e[4]]
    if not types:
        return None
    if 0xEE in types:
        return Signature("pmbr", 0, "a protective MBR (GPT disk)")
    return Signature("mbr", 0, f"an MBR (DOS) partition table with {len(types)} partition(s)")


def probe(head: bytes, size: int, tail: bytes = b"", tail_offset: int = 0, sector: int = 512) -> list[Signature]:
    """Signatures in a range of ``size`` bytes from its first bytes and last bytes.

    ``head`` should be ``HEAD`` bytes (or the whole range if smaller);
    ``tail`` the last bytes, starting at ``tail_offset`` within the range;
    ``sector`` the logical sector size (where the GPT headers sit).
    """
    out: list[Signature] = []
    add = out.append

    def at(off: int, n: int) -> bytes:
        if off + n <= len(head):
            return head[off:off + n]
        if tail and tail_offset <= off and off + n <= tail_offset + len(tail):
            return tail[off - tail_offset:off - tail_offset + n]
        return b""

    if head[sector:sector + 8] == b"EFI PART":
        add(Signature("gpt", sector, "a GPT partition table"))
    elif tail and size >= 2 * sector and at(size - sector, 8) == b"EFI PART":
        add(Signature("gpt", size - sector, "a backup GPT header (primary GPT missing or damaged)"))
    lab = lvm_label(head[:2048])
    if lab:
        add(lab)
    fat = _fat(head)
    if fat:
        add(fat)
    elif head[3:11] == b"NTFS    ":
        add(Signature("ntfs", 0, "an NTFS file system"))
    else:
        m = _mbr(head)
        if m and not (m.kind == "pmbr" and out and out[0].kind == "gpt"):
            add(m)
    e = _ext(head)
    if e:
        add(e)
    if head[:4] == b"XFSB":
        add(Signature("xfs", 0, "an XFS file system"))
    if head[:6] == b"LUKS\xba\xbe" or at(0x4000, 6) == b"SKUL\xba\xbe":
        add(Signature("luks", 0, "a LUKS encrypted volume"))
    if at(0x10040, 8) == b"_BHRfS_M":
        add(Signature("btrfs", 0x10040, "a btrfs file system"))
    for ps in (4096, 8192, 16384, 32768, 65536):
        if at(ps - 10, 10) in (b"SWAPSPACE2", b"SWAP-SPACE"):
            add(Signature("swap", ps - 10, "a swap area"))
            break
    if at(0x8001, 5) == b"CD001":
        add(Signature("iso9660", 0x8001, "an ISO 9660 image"))
    # md RAID superblocks: 1.1 at 0, 1.2 at 4 KiB, 1.0 near the end, 0.90 in the last 64 KiB block
    sectors = size // 512
    md_places = [(0, "1.1"), (4096, "1.2")]
    if sectors > 16:
        md_places.append(((((sectors - 16) & ~7)) * 512, "1.0"))
    if sectors >= 256:
        md_places.append((((sectors & ~127) - 128) * 512, "0.90"))
    for off, ver in md_places:
        word = at(off, 4)
        if len(word) == 4 and _MD_MAGIC in (struct.unpack("<I", word)[0], struct.unpack(">I", word)[0]):
            add(Signature("md", off, f"an md RAID member superblock ({ver})"))
            break
    return out


def unrecognised(head: bytes, tail: bytes = b"", tail_offset: int = 0) -> Signature | None:
    """Non-zero bytes where ``probe`` found no signature: data sanbos does not
    recognise (random data, boot code, an unknown format).  None when all zero."""
    rest = head.lstrip(b"\0")
    if rest:
        off = len(head) - len(rest)
    else:
        rest = tail.lstrip(b"\0")
        if not rest:
            return None
        off = tail_offset + len(tail) - len(rest)
    return Signature("unknown", off, f"data sanbos does not recognise (non-zero bytes at byte {off}, "
                                     "no known signature)")


def probe_range(read: Callable[[int, int], bytes], size: int, sector: int = 512, *,
                unknown: bool = False) -> list[Signature]:
    """``probe`` a range through ``read(offset, length)``; ``unknown``: also
    report non-zero bytes no signature explains (``unrecognised``)."""
    head = read(0, min(size, HEAD))
    tail, toff = b"", 0
    if size > HEAD:
        toff = max(HEAD, size - TAIL)
        tail = read(toff, size - toff)
    sigs = probe(head, size, tail, toff, sector)
    if unknown and not sigs:
        u = unrecognised(head, tail, toff)
        if u is not None:
            sigs.append(u)
    return sigs


# ---------------------------------------------------------------------------
# assessment


@dataclass
class Reason:
    text: str
    forceable: bool = True


def _blkid(path: str, offset: int = 0, size: int | None = None) -> dict[str, str] | str | None:
    """``blkid -p`` second opinion: its key=value output, or a sentence, or None."""
    cmd = ["blkid", "-p", "-o", "export"]
    if offset:
        cmd += ["-O", str(offset)]
    if size is not None:
        cmd += ["-S", str(size)]
    cmd.append(path)
    try:
        from .tools import run
        res = run(cmd, check=False, timeout=30)
    except ToolError:
        return None
    if res.returncode == 2:      # nothing found
        return {}
    if res.returncode == 8:
        return "several conflicting signatures (blkid: ambivalent result)"
    if res.returncode != 0:
        return None
    out = {}
    for line in res.stdout.decode(errors="replace").splitlines():
        if "=" in line:
            k, v = line.split("=", 1)
            out[k] = v
    return out


_BLKID_KIND = {"LVM2_member": "lvm2", "linux_raid_member": "md", "crypto_LUKS": "luks",
               "vfat": "vfat", "dos": "mbr", "gpt": "gpt", "PMBR": "pmbr"}


def _signature_reasons(sigs: list[Signature], where: str) -> list[Reason]:
    return [Reason(f"{where}carries {s.detail}") for s in sigs if s.kind != "pmbr"]


def _blkid_reasons(path: str, offset: int, size: int | None, known: set[str], where: str) -> list[Reason]:
    res = _blkid(path, offset, size)
    if isinstance(res, str):
        return [Reason(f"{where}carries {res}")]
    if not res:
        return []
    out = []
    for key in ("PTTYPE", "TYPE"):
        t = res.get(key)
        if not t:
            continue
        kind = _BLKID_KIND.get(t, t)
        if kind in known or (kind.startswith("ext") and known & {"ext2", "ext3", "ext4", "jbd"}) \
                or (kind == "pmbr"):
            continue
        out.append(Reason(f"{where}carries a {t} signature (found by blkid)"))
    return out


def _in_use(ref: DiskRef, disk: Disk) -> list[Reason]:
    from . import discover
    out: list[Reason] = []
    path = str(ref.path)
    if disk.is_block:
        sd = discover.sysfs_dir_of(path)
        if sd is not None:
            mounted, busy = discover.usage(sd, path)
            out += [Reason(m, forceable=False) for m in mounted]
            out += [Reason(f"in use: {b}") for b in busy]
        if not out:
            try:   # the kernel's own answer: O_EXCL fails while mounted or claimed
                fd = os.open(path, os.O_RDONLY | os.O_EXCL | os.O_CLOEXEC)
                os.close(fd)
            except OSError as e:
                if e.errno == errno.EBUSY:
                    out.append(Reason("in use: the kernel has it open exclusively (mounted or claimed)",
                                      forceable=False))
    else:
        for lo in discover.loops_over(path):
            dev = f"/dev/{lo.name}"
            sd = discover.sysfs_dir_of(dev)
            mounted, busy = discover.usage(sd, dev) if sd else ([], [])
            where = f" at offset {lo.offset}" if lo.offset else ""
            if mounted:
                out += [Reason(f"attached to loop device {dev}{where}, and {m}", forceable=False)
                        for m in mounted]
            else:
                extra = f" ({'; '.join(busy)})" if busy else ""
                out.append(Reason(f"in use: attached to loop device {dev}{where}{extra}"))
    pids = lock_holders(path)
    if pids:
        out.append(Reason(f"in use: locked by {describe_pids(pids)}"))
    others = [p for p in openers(path) if p not in pids]
    if others:
        out.append(Reason(f"in use: open in {describe_pids(others)}"))
    return out


def openers(path: str | os.PathLike[str]) -> list[int]:
    """PIDs of other processes that have ``path`` open (a running QEMU, a dd...).

    Walks ``/proc/*/fd`` like fuser(1); without root only our own processes
    are visible.  Used for single disks (assess), never for whole listings.
    """
    try:
        st = os.stat(path)
    except OSError:
        return []
    want = (st.st_rdev,) if stat.S_ISBLK(st.st_mode) else (st.st_dev, st.st_ino)
    me = os.getpid()
    found = []
    try:
        pids = [int(p) for p in os.listdir("/proc") if p.isdigit()]
    except OSError:
        return []
    for pid in pids:
        if pid == me:
            continue
        fdir = f"/proc/{pid}/fd"
        try:
            fds = os.listdir(fdir)
        except OSError:
            continue
        for fd in fds:
            try:
                fst = os.stat(f"{fdir}/{fd}")
            except OSError:
                continue
            key = (fst.st_rdev,) if stat.S_ISBLK(fst.st_mode) else (fst.st_dev, fst.st_ino)
            if key == want:
                found.append(pid)
                break
    return sorted(found)


def _read_only(ref: DiskRef, disk: Disk) -> bool:
    if read_only_image(os.fstat(disk.fd)):
        return True
    if disk.is_block:
        import fcntl
        try:
            buf = fcntl.ioctl(disk.fd, 0x125E, b"\0" * 4)   # BLKROGET
            if struct.unpack("<i", buf)[0]:
                return True
        except OSError:
            pass
    try:
        fd = os.open(ref.path, os.O_WRONLY | os.O_CLOEXEC)
        os.close(fd)
    except OSError as e:
        return e.errno in (errno.EROFS, errno.EACCES, errno.EPERM)
    return False


def _assess(ref: DiskRef, min_size: int = 0, *, use_blkid: bool = True) -> list[Reason]:
    reasons: list[Reason] = []
    with Disk(ref.path, name=ref.id) as disk:
        need = max(min_size, gpt.MIN_DISK_SIZE)
        if disk.size < need:
            reasons.append(Reason(f"too small: {human(disk.size)} ({disk.size} bytes), "
                                  f"needs at least {human(need)} ({need} bytes)", forceable=False))
        if _read_only(ref, disk):
            reasons.append(Reason("read-only: it cannot be written", forceable=False))
        reasons += _in_use(ref, disk)
        ss = gpt.sector_size(disk)
        sigs = probe_range(disk.read, disk.size, ss, unknown=True)
        reasons += _signature_reasons(sigs, "")
        if use_blkid:
            reasons += _blkid_reasons(str(ref.path), 0, None, {s.kind for s in sigs}, "")
        # partitions: GPT, else MBR primaries
        parts: list[tuple[str, int, int]] = []
        try:
            table = gpt.read_table(disk)
        except FormatError as e:
            reasons.append(Reason(f"carries a damaged GPT ({e})"))
            table = None
        if table:
            parts = [(f"partition {p.number} ({p.name or p.kind}) ", p.start, p.size) for p in table]
        elif any(s.kind == "mbr" for s in sigs):
            head = disk.read(0, 512)
            for i in range(4):
                e = head[446 + 16 * i:462 + 16 * i]
                ptype = e[4]
                start, count = struct.unpack_from("<II", e, 8)
                if ptype and count and (start + count) * 512 <= disk.size and ptype not in (0x05, 0x0F, 0x85):
                    parts.append((f"MBR partition {i + 1} ", start * 512, count * 512))
        for where, start, size in parts:
            if size <= 0 or start + size > disk.size:
                continue
            psigs = probe_range(lambda o, n, s=start: disk.read(s + o, n), size, ss)
            reasons += _signature_reasons(psigs, where)
            if use_blkid:
                reasons += _blkid_reasons(str(ref.path), start, size, {s.kind for s in psigs}, where)
    return reasons


def assess(ref: DiskRef, min_size: int = 0, *, use_blkid: bool = True) -> list[str]:
    """Every reason the disk is not blank and safe to write (empty when it is).

    The size floor is ``max(min_size, gpt.MIN_DISK_SIZE)``: every install-VG
    disk gets the GPT layout, so a disk it does not fit on is never usable.
    """
    return [r.text for r in _assess(ref, min_size, use_blkid=use_blkid)]


def _norm(s: str) -> str:
    return s.strip().lower()


def require_safe(ref: DiskRef, force_ids: Iterable[str] = (), min_size: int = 0) -> list[str]:
    """Raise UnsafeDiskError unless the disk is blank or forced by its full ID.

    Returns the reasons that were overridden by forcing (empty for a blank
    disk), so callers can report them.  Too small, mounted and read-only are
    never overridden.
    """
    reasons = _assess(ref, min_size)
    if not reasons:
        return []
    forced = _norm(ref.id) in {_norm(f) for f in force_ids}
    hard = [r for r in reasons if not r.forceable]
    listing = "; ".join(r.text for r in reasons)
    if hard:
        raise UnsafeDiskError(
            f"disk {ref.id} ({ref.path}) cannot be written: {listing} "
            f"(--force cannot override a disk that is too small, mounted or read-only)")
    if forced:
        return [r.text for r in reasons]
    raise UnsafeDiskError(
        f"disk {ref.id} ({ref.path}) is not blank: {listing}; "
        f"if you are sure, force with --force {ref.id}")
