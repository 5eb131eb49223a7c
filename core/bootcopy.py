"""Boot copies: the maintenance boot image on every boot disk of an install VG.

Design (docs/ARCHITECTURE.md, "Boot copies"):

* ``bootlv`` is a **raid1 LV with one leg per boot disk** (a linear LV when
  there is only one boot disk), so LVM itself knows the copies are mirrors.
  Every leg holds the same boot-image bytes (an ext2 image, core.bootimage)
  from the leg's first byte; the rest of the leg is unused.
* The engine's **record** lives in the VG metadata as LV tags on ``bootlv``
  (committed with the VG's crash-safe protocol, on every PV, visible with
  ``lvs -o tags``)::

      sanbos.bootimage=<size>:<sha256>        the current image
      sanbos.copy.<N>=<PV UUID>:<sha256>      copy N (1 = first in the
                                              fallback order) on that PV

  The order of the ``N`` is the boot order the operator chose; each disk's
  GRUB tries its own copy first, then the others in this order.
* ``verify`` reads every copy in full and hashes it (never trusting that one
  good write means all were written); ``repair`` rewrites bad or stale
  copies from a copy that matches the image record and re-reads them.
* GRUB (BIOS core.img + boot.img, UEFI BOOTX64.EFI) is installed on every
  boot disk with that disk's own config (core.grub).

Every function takes ``progress(message, fraction)`` for progress bars.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Sequence

from . import bootimage, ext4, grub, gpt
from . import vg as vgmod
from .disk import Disk, DiskRef
from .errors import DiskError, FormatError, LVMError, NotFoundError, SanbosError, SpaceError, UsageError
from .lvm import alloc
from .lvm import uuid as lvmuuid
from .lvm.model import Segment, new_lv
from .units import MiB, align_up, human

BOOT_LV = "bootlv"
TAG_IMAGE = "sanbos.bootimage="
TAG_COPY = "sanbos.copy."
#: default bootlv size: room for a replacement image up to this big
DEFAULT_MIN_SIZE = 32 * MiB
CHUNK = 4 * MiB

Progress = Callable[[str, float], None]


def _noprogress(message: str, fraction: float) -> None:
    pass


# -- the record ---------------------------------------------------------------

@dataclass
class Record:
    """What the VG metadata says about the boot copies."""

    size: int = 0
    sha256: str = ""
    copies: list[tuple[str, str]] = field(default_factory=list)   # (raw PV UUID, sha256) in boot order

    def tags(self) -> list[str]:
        out = [f"{TAG_IMAGE}{self.size}:{self.sha256}"]
        out += [f"{TAG_COPY}{n}={pv}:{sha}" for n, (pv, sha) in enumerate(self.copies, 1)]
        return out

    @classmethod
    def from_tags(cls, tags: Iterable[str], where: str) -> "Record":
        rec = cls()
        numbered = []
        for t in tags:
            if t.startswith(TAG_IMAGE):
                size, _, sha = t[len(TAG_IMAGE):].partition(":")
                try:
                    rec.size = int(size)
                except ValueError:
                    raise FormatError(f"{where}: boot image record {t!r} is damaged") from None
                rec.sha256 = sha
            elif t.startswith(TAG_COPY):
                num, _, rest = t[len(TAG_COPY):].partition("=")
                pv, _, sha = rest.partition(":")
                try:
                    numbered.append((int(num), pv, sha))
                except ValueError:
                    raise FormatError(f"{where}: boot copy record {t!r} is damaged") from None
        rec.copies = [(pv, sha) for _, pv, sha in sorted(numbered)]
        return rec


def _other_tags(lv) -> list[str]:
    return [t for t in lv.extra.get("tags", []) if not (t.startswith(TAG_IMAGE) or t.startswith(TAG_COPY))]


def _set_record(lv, rec: Record) -> None:
    lv.extra["tags"] = _other_tags(lv) + rec.tags()


# -- reports ------------------------------------------------------------------

@dataclass
class CopyHealth:
    """One boot copy's health, by disk ID."""

    order: int                 # 1-based position in the boot order
    disk_id: str               # the disk's unique ID ("" when the PV is missing)
    pv_uuid: str               # dashed
    grub_device: str = ""      # e.g. lvm/instvg-bootlv_rimage_0
    status: str = "ok"         # ok | bad | stale | missing
    sha256: str = ""           # what was read ("" when not read)
    expected: str = ""         # the record for this copy
    detail: str = ""
    grub_bios: bool | None = None
    grub_uefi: bool | None = None

    def to_json(self) -> dict:
        return dict(self.__dict__)


@dataclass
class Report:
    vg: str
    image_size: int
    image_sha256: str
    copies: list[CopyHealth]
    actions: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(c.status == "ok" for c in self.copies)

    def health(self) -> dict[str, str]:
        """disk ID -> status."""
        return {c.disk_id or c.pv_uuid: c.status for c in self.copies}

    def to_json(self) -> dict:
        return {"vg": self.vg, "ok": self.ok, "image_size": self.image_size, "image_sha256": self.image_sha256,
                "copies": [c.to_json() for c in self.copies], "actions": list(self.actions)}

    def __str__(self) -> str:
        lines = [f"VG {self.vg}: boot image {human(self.image_size)} sha256 {self.image_sha256[:16]}..., "
                 f"{len(self.copies)} cop{'y' if len(self.copies) == 1 else 'ies'}: "
                 + ("all good" if self.ok else "PROBLEMS")]
        for c in self.copies:
            lines.append(f"  {c.order}. {c.disk_id or '(missing disk)':<40} {c.status.upper():<7} "
                         f"{c.detail}")
        lines += [f"  done: {a}" for a in self.actions]
        return "\n".join(lines)


# -- helpers ------------------------------------------------------------------

def _legs(vgo: vgmod.VolumeGroup) -> dict[str, tuple[int, str]]:
    """raw PV UUID -> (leg index, GRUB device) for bootlv."""
    lv = vgo.lv(BOOT_LV)
    seg = lv.segments[0]
    out = {}
    if seg.base_type == "raid1":
        for k, img in enumerate(seg.images):
            sub = vgo.vg.lv(img)
            if sub is None or not sub.segments:
                continue
            pvs = {p for s in sub.segments for p, _ in s.stripes}
            if len(pvs) != 1:
                raise LVMError(f"VG {vgo.name}: {img} spans {len(pvs)} PVs; a boot copy must be on one disk")
            out[vgo.vg.pv(pvs.pop()).id] = (k, grub.lvm_device(vgo.name, img))
    elif seg.base_type == "striped":
        pvs = {p for s in lv.segments for p, _ in s.stripes}
        if len(pvs) != 1:
            raise LVMError(f"VG {vgo.name}: {BOOT_LV} spans {len(pvs)} PVs; a boot copy must be on one disk")
        out[vgo.vg.pv(pvs.pop()).id] = (0, grub.lvm_device(vgo.name, BOOT_LV))
    else:
        raise LVMError(f"VG {vgo.name}: {BOOT_LV} is a {seg.type} LV, not raid1 or linear")
    return out


def _record(vgo: vgmod.VolumeGroup) -> Record:
    lv = vgo.lv(BOOT_LV)
    rec = Record.from_tags(lv.extra.get("tags", []), f"VG {vgo.name} LV {BOOT_LV}")
    if not rec.sha256 or not rec.copies:
        raise FormatError(f"VG {vgo.name}: {BOOT_LV} carries no sanbos boot copy record (tags); "
                          "was it made by 'sanbos bootcopy mirror'?")
    return rec


def _disk_id(vgo: vgmod.VolumeGroup, raw_pv: str) -> str:
    loc = vgo.info.pvs.get(raw_pv)
    return loc.ref.id if loc else ""


def boot_order(vgo: vgmod.VolumeGroup) -> list[str]:
    """The boot disks' IDs in boot order, from the VG's boot copy record; ``[]`` when
    the VG has no ``bootlv`` or no record.  A copy whose PV has no disk here is
    named ``PV <uuid>``."""
    if vgo.vg.lv(BOOT_LV) is None:
        return []
    try:
        rec = _record(vgo)
    except FormatError:
        return []
    return [_disk_id(vgo, pv) or f"PV {pv}" for pv, _ in rec.copies]


def _hash_leg(vgo: vgmod.VolumeGroup, leg: int, size: int, progress: Progress, base: float, span: float,
              label: str) -> str:
    f = vgo.lv_io(BOOT_LV, leg=leg)
    h = hashlib.sha256()
    off = 0
    while off < size:
        n = min(CHUNK, size - off)
        h.update(f.pread(off, n))
        off += n
        progress(f"reading {label}", base + span * off / max(size, 1))
    return h.hexdigest()


def _write_leg(vgo: vgmod.VolumeGroup, leg: int, src, size: int, progress: Progress, base: float,
               span: float, label: str) -> None:
    """Write ``size`` bytes from ``src(off, n)`` into one leg, then fsync its disk.

    A file source (``_file_src``) is copied inside the kernel (copy_file_range) straight
    into the leg's pieces on disk, in large pieces."""
    pieces = vgo.lv_ranges(BOOT_LV, leg=leg)
    disks = [d for _, d in vgo._disks.values() if d.writable and str(d.path) in {p for p, _, _ in pieces}]
    if getattr(src, "fd", None) is not None:
        _kcopy_into_leg(vgo, pieces, src, size, progress, base, span, label)
    else:
        f = vgo.lv_io(BOOT_LV, leg=leg)
        off = 0
        while off < size:
            n = min(CHUNK, size - off)
            f.pwrite(off, src(off, n))
            off += n
            progress(f"writing {label}", base + span * off / max(size, 1))
    for d in disks:
        d.fsync()


KCOPY_CHUNK = 64 * MiB


def _kcopy_into_leg(vgo: vgmod.VolumeGroup, pieces: list[tuple[str, int, int]], src, size: int,
                    progress: Progress, base: float, span: float, label: str) -> None:
    """The first ``size`` bytes of the source file into the leg's on-disk pieces (in LV order)."""
    by_path = {str(d.path): d for _, d in vgo._disks.values() if d.writable}
    lv_pos = 0
    for path, disk_off, length in pieces:
        if lv_pos >= size:
            break
        d = by_path.get(str(path))
        if d is None:
            raise LVMError(f"VG {vgo.name}: {BOOT_LV} lies on {path}, which is not open for writing")
        n_piece = min(length, size - lv_pos)
        if disk_off < 0 or disk_off + n_piece > d.size:
            raise DiskError(f"{d.name}: access at byte {disk_off} (+{n_piece}) is beyond the end "
                            f"of the disk ({d.size} bytes)")
        done = 0
        while done < n_piece:
            n = min(KCOPY_CHUNK, n_piece - done)
            k = _kcopy(src, d, n, lv_pos + done, disk_off + done)
            done += k
            progress(f"writing {label}", base + span * (lv_pos + done) / max(size, 1))
        lv_pos += n_piece


def _kcopy(src, d: Disk, n: int, src_off: int, dst_off: int) -> int:
    """Copy up to ``n`` bytes of the source file to the disk inside the kernel (copy_file_range);
    read/write where that does not work (e.g. another file system on an old kernel)."""
    try:
        k = os.copy_file_range(src.fd, d.fd, n, src_off, dst_off)
        if k > 0:
            return k
    except OSError:
        pass
    try:
        data = os.pread(src.fd, min(n, CHUNK), src_off)
    except OSError as e:
        raise DiskError(f"boot image {src.path}: read error at byte {src_off}: {e.strerror}") from None
    if not data:
        raise FormatError(f"boot image {src.path}: ends at byte {src_off}, before the size it was checked at")
    d.write(dst_off, data)
    return len(data)


def _read_back(vgo: vgmod.VolumeGroup, legs: list[int], src, info: bootimage.ImageInfo,
               progress: Progress, base: float, span: float) -> list[str]:
    """Read every leg back in full once, compared with the image file read once alongside and
    hashed: the image must still hash to ``info.sha256`` (else nothing can be trusted) and a leg
    whose bytes all equal it therefore hashes to that too.  Returns each leg's SHA-256 (a leg that
    differs is hashed on its own, for the message)."""
    size = info.size
    files = [vgo.lv_io(BOOT_LV, leg=leg) for leg in legs]
    h = hashlib.sha256()
    bad: set[int] = set()
    off = 0
    while off < size:
        n = min(CHUNK, size - off)
        want = os.pread(src.fd, n, off)
        h.update(want)
        for k, f in enumerate(files):
            if k not in bad and f.pread(off, n) != want:
                bad.add(k)
        off += n
        progress(f"reading back {len(legs)} cop{'y' if len(legs) == 1 else 'ies'}",
                 base + span * off / max(size, 1))
    if h.hexdigest() != info.sha256:
        raise FormatError(f"boot image {src.path} changed while it was being written "
                          f"(sha256 now {h.hexdigest()[:16]}..., was {info.sha256[:16]}...); nothing recorded")
    return [_hash_leg(vgo, leg, size, _noprogress, 0, 0, "") if k in bad else info.sha256
            for k, leg in enumerate(legs)]


def _file_src(path: Path):
    fh = open(path, "rb")

    def src(off: int, n: int) -> bytes:
        fh.seek(off)
        return fh.read(n)
    src.close = fh.close  # type: ignore[attr-defined]
    src.fd = fh.fileno()  # type: ignore[attr-defined]
    src.path = path  # type: ignore[attr-defined]
    return src


def _leg_src(vgo: vgmod.VolumeGroup, leg: int):
    f = vgo.lv_io(BOOT_LV, leg=leg)
    return lambda off, n: f.pread(off, n)


def _partitions(ref: DiskRef) -> grub.DiskParts:
    with Disk(ref.path, name=ref.id) as d:
        parts = gpt.read_table(d)
    if not parts:
        raise UsageError(f"disk {ref.id}: no GPT; a boot disk needs the install-VG layout "
                         "(bios_grub + ESP + LVM partitions)")
    kinds = {p.kind: p for p in parts}
    if "bios_grub" not in kinds or "esp" not in kinds:
        raise UsageError(f"disk {ref.id}: no bios_grub and ESP partitions; it cannot be a boot disk "
                         "(create the VG with the GPT layout)")
    b, e = kinds["bios_grub"], kinds["esp"]
    return grub.DiskParts(b.start, b.size, e.start, e.size)


def _leg_target(vgo: vgmod.VolumeGroup, leg: int, size: int, label: str) -> ext4.Target | None:
    pieces = vgo.lv_ranges(BOOT_LV, leg=leg)
    if pieces and pieces[0][2] >= size:
        return ext4.Target(Path(pieces[0][0]), pieces[0][1], size, name=label)
    return None


def _cmdline_of(vgo: vgmod.VolumeGroup, leg: int, size: int) -> str:
    t = _leg_target(vgo, leg, size, f"VG {vgo.name} boot copy {leg}")
    if t is not None:
        data = ext4.read_file(t, "/" + bootimage.CMDLINE)
    else:
        with tempfile.NamedTemporaryFile(prefix="sanbos-bootcopy.") as tmp:
            tmp.write(_leg_src(vgo, leg)(0, size))
            tmp.flush()
            data = ext4.read_file(ext4.Target(Path(tmp.name), 0, size), "/" + bootimage.CMDLINE)
    return data.decode(errors="replace").strip()


def _install_grub(vgo: vgmod.VolumeGroup, rec: Record, cmdline: str, progress: Progress, base: float,
                  span: float, only: Sequence[str] | None = None) -> list[str]:
    """GRUB on every boot disk (or ``only`` those raw PV UUIDs), each with its own copy first."""
    done = []
    todo = _grub_plan(vgo, rec, only)
    for i, (ref, copies) in enumerate(todo):
        progress(f"installing GRUB on {ref.id}", base + span * i / max(len(todo), 1))
        grub.install(ref.path, _partitions(ref), copies, cmdline, name=ref.id, this_disk=ref.id,
                     handover=True)
        done.append(f"GRUB (BIOS + UEFI) installed on {ref.id}")
    progress("GRUB installed", base + span)
    return done


def _grub_plan(vgo: vgmod.VolumeGroup, rec: Record,
               only: Sequence[str] | None = None) -> list[tuple[DiskRef, list[grub.Copy]]]:
    """(disk, its GRUB's copies: its own first, then the others in record order) per boot disk."""
    legs = _legs(vgo)
    order = [(pv, legs[pv][1]) for pv, _ in rec.copies if pv in legs]
    out = []
    for pv in [pv for pv, _ in order if (only is None or pv in only) and pv in vgo.info.pvs]:
        ref = vgo.info.pvs[pv].ref
        own = [grub.Copy(ref.id, legs[pv][1])]
        others = [grub.Copy(_disk_id(vgo, p) or lvmuuid.dashed(p), dev) for p, dev in order if p != pv]
        out.append((ref, own + others))
    return out


class _Prebuild:
    """Every boot disk's GRUB images (grub-mkimage: CPU-bound, lzma for BIOS) built by two
    threads while the copies are written; ``_install_grub`` then installs them from core.grub's
    build cache.  Nothing is written to any disk here; a failure is left for ``_install_grub``
    to meet (it builds the image again) and report."""

    WORKERS = 2

    def __init__(self, vgo: vgmod.VolumeGroup, rec: Record, cmdline: str) -> None:
        self.todo = list(_grub_plan(vgo, rec))
        self.cmdline = cmdline
        self.lock = threading.Lock()
        self.failed = False
        self.threads = [threading.Thread(target=self._work, name=f"sanbos-grub-prebuild-{k}", daemon=True)
                        for k in range(self.WORKERS)]
        for t in self.threads:
            t.start()

    def _work(self) -> None:
        while True:
            with self.lock:
                if not self.todo or self.failed:
                    return
                ref, copies = self.todo.pop(0)
            try:
                grub.prebuild(copies, self.cmdline, this_disk=ref.id, handover=True)
            except Exception:  # noqa: BLE001 - install builds (and reports) it again
                self.failed = True

    def join(self) -> None:
        for t in self.threads:
            t.join()


def _prebuild_grub(vgo: vgmod.VolumeGroup, rec: Record, cmdline: str) -> _Prebuild:
    return _Prebuild(vgo, rec, cmdline)


def _grub_state(ref: DiskRef, own_device: str) -> tuple[bool, bool]:
    """(BIOS GRUB in place, UEFI GRUB in place and made for this disk: its own copy first, and
    its ESP's FAT volume ID the one its script hands over from, ``grub.volume_id(disk id)``)."""
    try:
        parts = _partitions(ref)
        bios = grub.read_bios(ref.path, parts.bios_start)["grub_boot"]
    except (SanbosError, OSError):
        return False, False
    try:
        efi = grub.esp_read(ref.path, parts.esp_start)
        # the EFI image's memdisk is stored uncompressed: its script must try this disk's copy first
        first = efi.find(b"hashsum --hash sha256 --check (")
        uefi = first >= 0 and efi[first:first + 200].find(f"({own_device})/".encode()) > 0
        # the UEFI handover finds this disk's ESP by that ID: a disk without it (or with an ESP
        # copied from another disk) would not hand over, or would hand over from the wrong place
        vid = grub.volume_id(ref.id)
        uefi = (uefi and grub.read_volume_id(ref.path, parts.esp_start) == vid
                and f'"$sanbos_id" = "{grub.fs_uuid(vid)}"'.encode() in efi)
    except SanbosError:
        uefi = False
    return bool(bios), uefi


def _check_image(image: str | os.PathLike[str]) -> bootimage.ImageInfo:
    info = bootimage.check(image)
    if not info.cmdline:
        raise FormatError(f"boot image {image}: its manifest has no kernel command line")
    return info


# -- operations ---------------------------------------------------------------

def mirror(vg_name: str, disks: Sequence[DiskRef], image: str | os.PathLike[str], *,
           boot: Sequence[str] | None = None, size: int | None = None,
           progress: Progress | None = None) -> Report:
    """Put one copy of ``image`` on each boot disk (``boot``: IDs/prefixes in
    boot order; default every PV of the VG) and install GRUB on each.

    ``disks`` are all the disks to look at (every PV of the VG must be
    among them).  Refuses, before writing, a VG that already has boot copies,
    a disk without the GPT boot partitions, an image that is not a boot
    image, and too little space.
    """
    p = progress or _noprogress
    p("checking the boot image", 0.0)
    info = _check_image(image)
    leftover = False
    with vgmod.open_vg(vg_name, disks, write=False) as vgo:
        old = vgo.vg.lv(BOOT_LV)
        if old is not None:
            if Record.from_tags(old.extra.get("tags", []), f"VG {vg_name} LV {BOOT_LV}").copies:
                raise LVMError(f"VG {vg_name} already has boot copies ({BOOT_LV}); use 'bootcopy replace', "
                               "'bootcopy add' or 'bootcopy remove'")
            leftover = True   # an interrupted mirror: the LV exists but no copy was ever recorded
    if leftover:
        p(f"removing {BOOT_LV} left by an interrupted mirror", 0.02)
        vgmod.lv_remove(vg_name, list(disks), BOOT_LV)
    with vgmod.open_vg(vg_name, disks, write=False) as vgo:
        if boot:
            pvs = [vgo.pv_for_disk(w) for w in boot]
        else:
            pvs = list(vgo.vg.pvs)
        if len({pv.id for pv in pvs}) != len(pvs):
            twice = next(pv for pv in pvs if [q.id for q in pvs].count(pv.id) > 1)
            raise UsageError(f"boot disk {vgo.disk_of(twice.name).id} is named twice")
        if size is not None and size < info.size:
            raise UsageError(f"VG {vg_name}: {BOOT_LV} size {human(size)} ({size} bytes) is smaller than the boot image "
                             f"{image} ({human(info.size)}); give at least {human(info.size)} or leave --size out")
        ext = vgo.vg.extent_bytes
        want = align_up(size if size is not None else max(DEFAULT_MIN_SIZE, info.size + info.size // 2), ext)
        n = want // ext
        refs = []
        for pv in pvs:
            ref = vgo.disk_of(pv.name)
            _partitions(ref)
            free = vgo.vg.free_extents(pv.name)
            need = n + (1 if len(pvs) > 1 else 0)
            if free < need:
                raise SpaceError(f"disk {ref.id}: boot copy needs {human(need * ext)} but the PV has "
                                 f"{human(free * ext)} free (boot image {human(info.size)})")
            refs.append(ref)
    p(f"creating {BOOT_LV} ({'raid1, ' + str(len(refs)) + ' legs' if len(refs) > 1 else 'linear'})", 0.05)
    vgmod.lv_create(vg_name, list(disks), BOOT_LV, want, type="raid1" if len(refs) > 1 else "linear",
                    pvs=[r.id for r in refs])
    with vgmod.open_vg(vg_name, disks, write=True) as vgo:
        legs = _legs(vgo)
        rec = Record(size=info.size, sha256=info.sha256)
        prebuilt = _prebuild_grub(vgo, Record(copies=[(pv.id, "") for pv in pvs]), info.cmdline)
        src = _file_src(Path(image))
        try:
            n = len(pvs)
            for i, pv in enumerate(pvs):   # no record names any copy yet: write every leg, then read all back
                _write_leg(vgo, legs[pv.id][0], src, info.size, p, 0.1 + 0.25 * i / n, 0.25 / n,
                           f"copy {i + 1} on {vgo.disk_of(pv.name).id}")
            got = _read_back(vgo, [legs[pv.id][0] for pv in pvs], src, info, p, 0.35, 0.25)
            for pv, sha in zip(pvs, got):
                if sha != info.sha256:
                    raise FormatError(f"disk {vgo.disk_of(pv.name).id}: boot copy read back differs from what "
                                      f"was written (sha256 {sha[:16]}... != {info.sha256[:16]}...)")
                rec.copies.append((pv.id, sha))
        finally:
            src.close()
            prebuilt.join()
        _set_record(vgo.lv(BOOT_LV), rec)
        vgo.commit(f"sanbos bootcopy mirror {vg_name}")
        actions = [f"{BOOT_LV} left by an interrupted mirror removed"] if leftover else []
        actions.append(f"{len(pvs)} boot cop{'y' if len(pvs) == 1 else 'ies'} written and read back")
        actions += _install_grub(vgo, rec, info.cmdline, p, 0.6, 0.4)
    p("done", 1.0)
    rep = verify(vg_name, disks, _read_back=dict(rec.copies))
    rep.actions = actions
    return rep


def verify(vg_name: str, disks: Sequence[DiskRef], *, progress: Progress | None = None,
           check_grub: bool = True, _read_back: dict[str, str] | None = None) -> Report:
    """Read every boot copy in full and report each one's health by disk ID.

    (``_read_back``: raw PV UUID -> SHA-256 just read back by the caller under
    the same lock, so ``mirror`` does not read every copy a second time.)"""
    p = progress or _noprogress
    with vgmod.open_vg(vg_name, disks, write=False) as vgo:
        vgo.lv(BOOT_LV)
        rec = _record(vgo)
        legs = _legs(vgo)
        out = []
        n = len(rec.copies)
        for i, (pv, sha) in enumerate(rec.copies):
            did = _disk_id(vgo, pv)
            c = CopyHealth(order=i + 1, disk_id=did, pv_uuid=lvmuuid.dashed(pv), expected=sha)
            out.append(c)
            if pv not in vgo.info.pvs:
                c.status, c.detail = "missing", f"PV {lvmuuid.dashed(pv)} not found on the disks given"
                continue
            if pv not in legs:
                c.status, c.detail = "missing", f"{BOOT_LV} has no leg on disk {did}"
                continue
            leg, dev = legs[pv]
            c.grub_device = dev
            try:
                if _read_back is not None and pv in _read_back:
                    c.sha256 = _read_back[pv]
                else:
                    c.sha256 = _hash_leg(vgo, leg, rec.size, p, i / max(n, 1), 1 / max(n, 1),
                                         f"copy {i + 1} on {did}")
            except SanbosError as e:
                c.status, c.detail = "bad", f"cannot read: {e}"
                continue
            if c.sha256 != sha:
                c.status = "bad"
                c.detail = "SHA-256 differs from the record"
                t = _leg_target(vgo, leg, rec.size, f"boot copy on {did}")
                if t is not None:
                    try:
                        probs = bootimage.inspect(t).problems
                        if probs:
                            c.detail += ": " + "; ".join(probs)
                    except SanbosError as e:
                        c.detail += f": {e}"
            elif sha != rec.sha256:
                c.status, c.detail = "stale", "holds an older boot image"
            else:
                c.detail = "matches the record"
            if check_grub:
                c.grub_bios, c.grub_uefi = _grub_state(vgo.info.pvs[pv].ref, dev)
                if not (c.grub_bios and c.grub_uefi):
                    missing = [w for w, ok in (("BIOS", c.grub_bios), ("UEFI", c.grub_uefi)) if not ok]
                    c.detail += (f"; GRUB for {' and '.join(missing)} not installed or not made for this disk "
                                 "('sanbos bootcopy repair' installs it)")
                    if c.status == "ok":
                        c.status = "bad"
    p("verified", 1.0)
    return Report(vg_name, rec.size, rec.sha256, out)


def repair(vg_name: str, disks: Sequence[DiskRef], *, progress: Progress | None = None) -> Report:
    """Rewrite bad and stale copies from a good one (re-read after writing); reinstall GRUB where missing."""
    p = progress or _noprogress
    before = verify(vg_name, disks, progress=lambda m, f: p(m, 0.4 * f))
    if before.ok:
        before.actions.append("nothing to repair")
        return before
    good = [c for c in before.copies if c.status == "ok" or (c.status == "bad" and c.sha256 == before.image_sha256)]
    if not good:
        raise FormatError(f"VG {vg_name}: no boot copy matches the recorded image "
                          f"(sha256 {before.image_sha256[:16]}...); use 'bootcopy replace --image'")
    actions = []
    with vgmod.open_vg(vg_name, disks, write=True, allow_missing=True) as vgo:
        rec = _record(vgo)
        legs = _legs(vgo)
        src_pv = lvmuuid.normalize(good[0].pv_uuid)
        src_leg = legs[src_pv][0]
        src = _leg_src(vgo, src_leg)
        todo = [c for c in before.copies if c.status in ("bad", "stale") and c.sha256 != rec.sha256]
        fix_grub = [lvmuuid.normalize(c.pv_uuid) for c in before.copies
                    if c.status != "missing" and not (c.grub_bios and c.grub_uefi)]
        for i, c in enumerate(todo):
            pv = lvmuuid.normalize(c.pv_uuid)
            leg = legs[pv][0]
            _write_leg(vgo, leg, src, rec.size, p, 0.4 + 0.4 * i / len(todo), 0.2 / len(todo),
                       f"copy {c.order} on {c.disk_id} from {good[0].disk_id}")
            got = _hash_leg(vgo, leg, rec.size, p, 0.4 + 0.4 * i / len(todo) + 0.2 / len(todo),
                            0.2 / len(todo), f"copy {c.order} on {c.disk_id}")
            if got != rec.sha256:
                raise FormatError(f"disk {c.disk_id}: boot copy still differs after rewriting it; "
                                  "the disk may be failing")
            rec.copies = [(q, rec.sha256 if q == pv else s) for q, s in rec.copies]
            actions.append(f"copy {c.order} on {c.disk_id} rewritten from {good[0].disk_id}")
        if todo:
            _set_record(vgo.lv(BOOT_LV), rec)
            vgo.commit(f"sanbos bootcopy repair {vg_name}")
        if fix_grub:
            cmdline = _cmdline_of(vgo, src_leg, rec.size)
            actions += _install_grub(vgo, rec, cmdline, p, 0.8, 0.15, only=fix_grub)
    after = verify(vg_name, disks, progress=lambda m, f: p(m, 0.95 + 0.05 * f))
    after.actions = actions
    return after


def replace(vg_name: str, disks: Sequence[DiskRef], image: str | os.PathLike[str], *,
            progress: Progress | None = None) -> Report:
    """Write a new boot image onto every copy (one copy at a time, each
    recorded as soon as it is read back), then reinstall GRUB everywhere."""
    p = progress or _noprogress
    p("checking the new boot image", 0.0)
    info = _check_image(image)
    with vgmod.open_vg(vg_name, disks, write=True) as vgo:
        lv = vgo.lv(BOOT_LV)
        rec = _record(vgo)
        legs = _legs(vgo)
        room = lv.extents * vgo.vg.extent_bytes
        if info.size > room:
            raise SpaceError(f"VG {vg_name}: new boot image {image} ({human(info.size)}) is larger than the "
                             f"boot copy space ({BOOT_LV}: {human(room)}); nothing written")
        missing = [lvmuuid.dashed(pv) for pv, _ in rec.copies if pv not in legs]
        if missing:
            raise LVMError(f"VG {vg_name}: boot copies on PV(s) {', '.join(missing)} have no leg; repair first")
        rec.size, rec.sha256 = info.size, info.sha256
        prebuilt = _prebuild_grub(vgo, rec, info.cmdline)
        src = _file_src(Path(image))
        actions = []
        try:
            n = len(rec.copies)
            for i, (pv, _) in enumerate(list(rec.copies)):
                leg = legs[pv][0]
                did = _disk_id(vgo, pv)
                # mark this copy as being rewritten first: a crash leaves it "bad", never silently "ok"
                rec.copies[i] = (pv, "0" * 64)
                _set_record(lv, rec)
                vgo.commit(f"sanbos bootcopy replace {vg_name}: copy {i + 1} being written")
                _write_leg(vgo, leg, src, info.size, p, 0.05 + 0.6 * i / n, 0.3 / n, f"copy {i + 1} on {did}")
                got = _hash_leg(vgo, leg, info.size, p, 0.05 + 0.6 * i / n + 0.3 / n, 0.3 / n,
                                f"copy {i + 1} on {did}")
                if got != info.sha256:
                    raise FormatError(f"disk {did}: new boot copy read back differs from what was written")
                rec.copies[i] = (pv, got)
                actions.append(f"copy {i + 1} on {did} replaced")
        finally:
            src.close()
            prebuilt.join()
        _set_record(lv, rec)
        vgo.commit(f"sanbos bootcopy replace {vg_name}")
        actions += _install_grub(vgo, rec, info.cmdline, p, 0.7, 0.25)
    rep = verify(vg_name, disks, progress=lambda m, f: p(m, 0.95 + 0.05 * f))
    rep.actions = actions
    return rep


def _to_raid1(vgo: vgmod.VolumeGroup) -> None:
    """Turn a linear bootlv into a 1-leg raid1 (rmeta_0 + rimage_0) in the model."""
    vg = vgo.vg
    lv = vgo.lv(BOOT_LV)
    if lv.segments[0].base_type == "raid1":
        return
    pvn = lv.segments[0].stripes[0][0]
    meta = alloc.allocate(vg, 1, [pvn], what=f"LV {BOOT_LV} leg 0 metadata")
    mlv = new_lv(f"{BOOT_LV}_rmeta_0", meta, visible=False)
    ilv = new_lv(f"{BOOT_LV}_rimage_0", lv.segments, visible=False)
    n = lv.extents
    lv.segments = [Segment(0, n, "raid1", raids=[mlv.name, ilv.name], region_size=vgmod.RAID_REGION)]
    vg.lvs += [mlv, ilv]
    loc = vgo.pv_loc(pvn)
    disk = vgo._disks[loc.ref.id][1]
    disk.zero(loc.offset + vg.pv(pvn).pe_start * 512 + meta[0].stripes[0][1] * vg.extent_bytes, vg.extent_bytes)
    disk.fsync()


def add(vg_name: str, disks: Sequence[DiskRef], new: Sequence[str], *,
        progress: Progress | None = None) -> Report:
    """Make more disks boot disks: a new bootlv leg each (copied from a good
    copy and read back), appended to the boot order; GRUB on every boot disk."""
    p = progress or _noprogress
    with vgmod.open_vg(vg_name, disks, write=False) as vgo:
        rec = _record(vgo)
        targets = []
        for w in new:
            pv = vgo.pv_for_disk(w)
            ref = vgo.disk_of(pv.name)
            if pv.id in [q for q, _ in rec.copies]:
                raise UsageError(f"disk {ref.id} is already a boot disk of VG {vg_name}")
            _partitions(ref)
            need = vgo.lv(BOOT_LV).extents + 1
            if vgo.vg.free_extents(pv.name) < need:
                raise SpaceError(f"disk {ref.id}: a boot copy needs {human(need * vgo.vg.extent_bytes)}, "
                                 f"the PV has {human(vgo.vg.free_extents(pv.name) * vgo.vg.extent_bytes)} free")
            targets.append(ref.id)
    before = verify(vg_name, disks, check_grub=False, progress=lambda m, f: p(m, 0.2 * f))
    good = [c for c in before.copies if c.status == "ok"]
    if not good:
        raise FormatError(f"VG {vg_name}: no good boot copy to copy from; run 'bootcopy repair' first")
    with vgmod.open_vg(vg_name, disks, write=True) as vgo:
        if vgo.lv(BOOT_LV).segments[0].base_type != "raid1":
            p(f"converting {BOOT_LV} to raid1", 0.22)
            _to_raid1(vgo)
            vgo.commit(f"sanbos bootcopy add {vg_name}: {BOOT_LV} becomes raid1")
        # raid1_add_leg copies leg 0; make sure leg 0 is a good copy, else copy from a good one below
    actions = []
    for i, did in enumerate(targets):
        p(f"adding a boot copy on {did}", 0.25 + 0.4 * i / len(targets))
        vgmod.raid1_add_leg(vg_name, list(disks), BOOT_LV, did)
    with vgmod.open_vg(vg_name, disks, write=True) as vgo:
        rec = _record(vgo)
        legs = _legs(vgo)
        src_leg = legs[lvmuuid.normalize(good[0].pv_uuid)][0]
        src = _leg_src(vgo, src_leg)
        for did in targets:
            pv = vgo.pv_for_disk(did).id
            leg = legs[pv][0]
            got = _hash_leg(vgo, leg, rec.size, p, 0.65, 0.05, f"new copy on {did}")
            if got != rec.sha256:
                _write_leg(vgo, leg, src, rec.size, p, 0.7, 0.05, f"new copy on {did}")
                got = _hash_leg(vgo, leg, rec.size, p, 0.75, 0.05, f"new copy on {did}")
                if got != rec.sha256:
                    raise FormatError(f"disk {did}: new boot copy reads back wrong; the disk may be failing")
            rec.copies.append((pv, got))
            actions.append(f"boot copy {len(rec.copies)} added on {did}")
        _set_record(vgo.lv(BOOT_LV), rec)
        vgo.commit(f"sanbos bootcopy add {vg_name} " + " ".join(targets))
        cmdline = _cmdline_of(vgo, src_leg, rec.size)
        actions += _install_grub(vgo, rec, cmdline, p, 0.8, 0.15)
    rep = verify(vg_name, disks, progress=lambda m, f: p(m, 0.95 + 0.05 * f))
    rep.actions = actions
    return rep


def _wipe_grub(ref: DiskRef) -> None:
    """Take GRUB off a disk that is no longer a boot disk (MBR code, bios_grub, BOOTX64.EFI)."""
    parts = _partitions(ref)
    with Disk(ref.path, writable=True, name=ref.id) as d:
        mbr = bytearray(d.read(0, 512))
        mbr[:grub.BOOT_KEEP_FROM] = bytes(grub.BOOT_KEEP_FROM)
        d.write(0, bytes(mbr))
        d.zero(parts.bios_start, parts.bios_size)
        d.zero(parts.esp_start, min(parts.esp_size, MiB))
        d.fsync()


def remove(vg_name: str, disks: Sequence[DiskRef], gone: Sequence[str], *,
           progress: Progress | None = None) -> Report:
    """Stop using disks as boot disks: drop their legs and records, take
    GRUB off them, reinstall GRUB on the others (new fallback order)."""
    p = progress or _noprogress
    with vgmod.open_vg(vg_name, disks, write=False, allow_missing=True) as vgo:
        rec = _record(vgo)
        pvs = []
        for w in gone:
            pv = vgo.pv_for_disk(w)
            if pv.id not in [q for q, _ in rec.copies]:
                raise UsageError(f"disk {_disk_id(vgo, pv.id) or w} is not a boot disk of VG {vg_name}")
            pvs.append(pv)
        if len(pvs) >= len(rec.copies):
            raise UsageError(f"VG {vg_name}: that would remove every boot copy; keep at least one")
        refs = {pv.id: vgo.info.pvs[pv.id].ref for pv in pvs if pv.id in vgo.info.pvs}
    actions = []
    for i, pv in enumerate(pvs):
        p(f"removing boot copy on {refs.get(pv.id, DiskRef(lvmuuid.dashed(pv.id), Path('?'))).id}",
          0.1 + 0.4 * i / len(pvs))
        vgmod.raid1_remove_leg(vg_name, list(disks), BOOT_LV, lvmuuid.dashed(pv.id))
    with vgmod.open_vg(vg_name, disks, write=True, allow_missing=True) as vgo:
        rec = _record(vgo)
        drop = {pv.id for pv in pvs}
        rec.copies = [(q, s) for q, s in rec.copies if q not in drop]
        _set_record(vgo.lv(BOOT_LV), rec)
        vgo.commit(f"sanbos bootcopy remove {vg_name}")
        for pv in pvs:
            if pv.id in refs:
                _wipe_grub(refs[pv.id])
                actions.append(f"boot copy and GRUB removed from {refs[pv.id].id}")
        legs = _legs(vgo)
        src_leg = next(legs[q][0] for q, _ in rec.copies if q in legs)
        cmdline = _cmdline_of(vgo, src_leg, rec.size)
        actions += _install_grub(vgo, rec, cmdline, p, 0.6, 0.35)
    rep = verify(vg_name, disks, progress=lambda m, f: p(m, 0.95 + 0.05 * f))
    rep.actions = actions
    return rep


def status(vg_name: str, disks: Sequence[DiskRef]) -> dict[str, str]:
    """disk ID -> health (for the disk listing): a full read of every copy, without the GRUB check.

    Empty when the VG has no boot copies (no ``bootlv`` or no record)."""
    try:
        return verify(vg_name, disks, check_grub=False).health()
    except (NotFoundError, FormatError):
        return {}
