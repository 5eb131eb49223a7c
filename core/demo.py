"""The ready demo fabric: ``sanbos fabric create DIR --demo``.

``create_demo(dir, disks=4, size=256 MiB, targets=2, progress)`` builds, from
real parts, in this order:

1. a fabric of ``disks`` LUNs (``core.fabric.create``);
2. the install VG ``instvg`` over all of them (GPT layout, PV on partition 3);
3. boot copies on every disk: the demo maintenance boot image
   (``core.bootimage.demo``: Debian kernel + busybox initramfs) mirrored by
   ``core.bootcopy.mirror`` (raid1 ``bootlv``, GRUB on every disk);
4. the install repository ``instlv`` (raid1 over every disk) holding the demo
   BOS as a root file-system tarball, the same BOS as a raw ext4 LV
   ``bos_sanbos-demo-bos``, and the two demo OPPs (real Debian packages,
   ``sanbos-demo-tools`` depends on ``sanbos-demo-base``), all built by
   ``core.demoparts``;
5. ``targets`` blank target disks (``core.fabric.add``), for installs.

The VG is left imported (not exported) so every tool can open it at once.
"""

from __future__ import annotations

import inspect
import os
import tempfile
from pathlib import Path
from typing import Any, Callable

from . import demoparts, repo
from . import fabric as fab
from . import vg as vgops
from .disk import DiskRef
from .units import MiB, align_down, human

DEMO_VG = "instvg"
BOS_RAW_SIZE = 16 * MiB
MAX_REPO = 128 * MiB


def _adapt(progress: Callable[..., Any] | None) -> Callable[[str, "float | None"], None]:
    """Accept ``progress(message)`` (e.g. print) as well as ``progress(message, fraction)``."""
    if progress is None:
        return lambda m, f=None: None
    try:
        params = [p for p in inspect.signature(progress).parameters.values()
                  if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD, p.VAR_POSITIONAL)]
        two = len(params) >= 2 or any(p.kind == p.VAR_POSITIONAL for p in params)
    except (TypeError, ValueError):
        two = False
    if two and progress is not print:
        return progress
    last = [""]

    def one(m: str, f: float | None = None) -> None:
        if m != last[0]:  # a message-only callback shows each step once
            last[0] = m
            progress(m)
    return one


def _stage(progress, lo: float, hi: float):
    return lambda m, f=None: progress(m, None if f is None else lo + (hi - lo) * max(0.0, min(1.0, f)))


def create_demo(directory: str | os.PathLike[str], disks: int = 4, size: int = 256 * MiB, targets: int = 2,
                progress: Callable[..., Any] | None = print, *, boot: bool = True) -> fab.Fabric:
    """Make a fabric with a ready install VG (boot copies, repository, demo BOS and OPPs)."""
    p = _adapt(progress)
    p(f"creating fabric {directory}: {disks} disks of {human(size)}", 0.0)
    f = fab.create(directory, disks, size)
    refs = [DiskRef(l.wwn, l.path) for l in f.luns]
    p(f"creating VG {DEMO_VG} on {len(refs)} disks", 0.03)
    vgops.create(DEMO_VG, refs, description="sanbos demo install VG")

    if boot:
        _boot_copies(refs, p)

    with tempfile.TemporaryDirectory(prefix="sanbos-demo-parts-") as d:
        d = Path(d)
        p("building the demo BOS (busybox-static root file system)", 0.55)
        tarball = demoparts.bos_tarball(d / "sanbos-demo-bos.tar.gz")
        raw = demoparts.bos_raw_image(d / "sanbos-demo-bos.img", size=BOS_RAW_SIZE)
        p("building the demo OPPs (dpkg-deb --build)", 0.6)
        opps = demoparts.demo_opps(d / "opps")
        with vgops.open_vg(DEMO_VG, refs, write=False) as vg:
            ext = vg.vg.extent_bytes
            free = min(vg.vg.free_extents(pv.name) for pv in vg.vg.pvs) * ext
        # per disk: instlv leg + rmeta, raw BOS leg + rmeta, some slack
        room = free - 2 * ext - (BOS_RAW_SIZE + ext) - 2 * ext
        repo_size = min(MAX_REPO, align_down(room - repo.RECORD_SIZE, ext))
        if repo_size < 16 * MiB:
            from .errors import SpaceError
            raise SpaceError(f"demo disks of {human(size)} leave only {human(max(room, 0))} for the repository; "
                             "use --size 256M or more")
        p(f"creating the repository {repo.REPO_LV} ({human(repo_size)}, raid1 over {len(refs)} disks)", 0.65)
        repo.create_repo(DEMO_VG, refs, repo_size, progress=_stage(p, 0.65, 0.75))
        p("adding the demo BOS tarball", 0.75)
        repo.add_bos(DEMO_VG, refs, tarball, progress=_stage(p, 0.75, 0.8))
        p(f"adding the demo BOS as raw LV {repo.RAW_LV_PREFIX}{demoparts.BOS_NAME}", 0.8)
        repo.add_bos(DEMO_VG, refs, raw, raw=True, progress=_stage(p, 0.8, 0.88))
        p("adding the demo OPPs", 0.88)
        repo.add_opps(DEMO_VG, refs, opps, progress=_stage(p, 0.88, 0.95))

    if targets:
        p(f"adding {targets} blank target disk(s)", 0.96)
        fab.add(f, targets, size)
    p(f"demo fabric ready: {f.root} (VG {DEMO_VG} on {disks} disks, {targets} target disk(s))", 1.0)
    return f


def _boot_copies(refs: list[DiskRef], p) -> None:
    """Boot image on every disk through the boot engineer's modules."""
    from . import bootcopy, bootimage
    with tempfile.TemporaryDirectory(prefix="sanbos-demo-boot-") as d:
        image = Path(d) / "demo-boot.img"
        p("building the demo maintenance boot image (Debian kernel + busybox initramfs)", 0.05)
        bootimage.demo(image, progress=_stage(p, 0.05, 0.3))
        p(f"mirroring the boot image onto {len(refs)} disks (bootlv + GRUB on each)", 0.3)
        bootcopy.mirror(DEMO_VG, refs, image, progress=_stage(p, 0.3, 0.55))
