"""Benchmark of the QEMU guests (TCG): the real-LVM2 guest and the maintenance image.

Prints:
- the LVM guest's initramfs size and the time from QEMU start to its report
  after real LVM2 activated a 4-disk sanbos VG with raid1 LVs (boot, load
  modules, scan, vgchange -ay, lvs, power off);
- the maintenance image's initramfs and boot-image sizes, and the time from
  QEMU start to the first screen of ``sanbos console`` on the serial line
  (direct kernel boot, and through SeaBIOS + GRUB + hashsum from an
  install-VG disk's boot copy);
- the same BOS install on the host and inside the maintenance guest.

    .venv/bin/python bench/guest.py [--runs N] [--kvm] [--no-console] [--no-install]
"""

from __future__ import annotations

import argparse
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from core import guest  # noqa: E402
from core.errors import SanbosError  # noqa: E402

MiB = 1 << 20


def lvm_guest(k, tmp: Path, runs: int, kvm: bool) -> None:
    from core import fabric as fab
    from core import vg as vgmod
    from core.disk import DiskRef

    f = fab.create(tmp / "fabric", 4, 128 * MiB)
    refs = [DiskRef(l.wwn, l.path) for l in f.luns]
    vgmod.create("benchvg", refs)
    vgmod.lv_create("benchvg", refs, "bootlv", 8 * MiB, type="raid1", pvs=[r.id for r in refs])
    vgmod.lv_create("benchvg", refs, "instlv", 40 * MiB, type="raid1", pvs=[r.id for r in refs[:2]])
    script = ("lvm vgchange -ay benchvg >&2 && lvm vgmknodes benchvg >&2 && "
              "lvm lvs --noheadings -o lv_name,copy_percent benchvg")
    times, size = [], 0
    for i in range(runs):
        r = guest.run_lvm_guest([guest.GuestDisk(l.path, l.serial) for l in f.luns], script, 300, kernel=k,
                                kvm=kvm, workdir=tmp / f"lvm{i}")
        if r.rc != 0 or "instlv" not in r.report:
            raise SanbosError(f"LVM guest run {i} failed: {r.console[-500:]}")
        times.append(r.seconds)
        size = r.initrd_size
    print(f"LVM guest initrd: {size / MiB:.2f} MiB")
    print(f"LVM guest, QEMU start to report after real raid1 activation ({'KVM' if kvm else 'TCG'}): "
          f"median {statistics.median(times):.2f} s, min {min(times):.2f} s over {runs} run(s)")


def _first_screen(argv: list[str], want: str, timeout: float = 400) -> float:
    import pexpect

    t0 = time.monotonic()
    child = pexpect.spawn(argv[0], argv[1:], timeout=timeout, dimensions=(30, 100))
    try:
        buf = b""
        esc = re.compile(rb"\x1b\[[0-9;?<>=$]*[ -/]*[@-~]")
        while want.encode() not in esc.sub(b"", buf):
            buf += child.read_nonblocking(65536, timeout=timeout)
        return time.monotonic() - t0
    finally:
        child.terminate(force=True)     # this QEMU's PID only
        child.close(force=True)


def maintenance(k, tmp: Path, kvm: bool) -> None:
    from core import bootcopy, qemu
    from core import fabric as fab
    from core import vg as vgmod
    from core.disk import DiskRef

    t0 = time.monotonic()
    info = guest.build_maintenance_image(tmp / "maintenance.img", kernel=k)
    print(f"maintenance boot image: {info.size / MiB:.1f} MiB (initrd {info.files['initrd.img'] / MiB:.1f} MiB, "
          f"kernel {info.files['vmlinuz'] / MiB:.1f} MiB), built in {time.monotonic() - t0:.1f} s "
          "(the initramfs archive is cached per source tree)")
    f = fab.create(tmp / "mfabric", 4, 256 * MiB)
    refs = [DiskRef(l.wwn, l.path) for l in f.luns]
    vgmod.create("instvg", refs)
    bootcopy.mirror("instvg", refs, tmp / "maintenance.img")
    disks = [guest.GuestDisk(l.path, l.serial) for l in f.luns]
    initrd = guest.build_maintenance_initrd(k, tmp / "maint-initrd.img")
    want = f"serial:{f.luns[3].serial}"
    s = _first_screen(guest.console_argv(k, initrd, disks, kvm=kvm), want)
    print(f"maintenance image, QEMU start to sanbos console's first screen, direct kernel boot "
          f"({'KVM' if kvm else 'TCG'}): {s:.1f} s")
    drives = [qemu.Drive(str(l.path), serial=l.serial, readonly=True, bootindex=1 if i == 2 else None)
              for i, l in enumerate(f.luns)]
    marker = tmp / "unused.log"
    argv = qemu.command(drives, marker, qemu.Options(memory=1536, kvm=kvm, cpus=guest.MAINTENANCE_CPUS))
    argv[argv.index(f"file:{marker}")] = "stdio"
    s = _first_screen(argv, want)
    print(f"maintenance image, QEMU start to sanbos console's first screen, SeaBIOS + GRUB (hashsum of the "
          f"copy) from install-VG disk 2 ({'KVM' if kvm else 'TCG'}): {s:.1f} s")


def installs(k, tmp: Path, kvm: bool, in_guest: bool) -> None:
    """The same BOS install (demo BOS tarball + 2 OPPs + GRUB) on the host and inside the guest."""

    from core import demo, install
    from core import fabric as fab

    f = demo.create_demo(tmp / "demo", disks=4, size=256 * MiB, targets=2, progress=None)
    t0 = time.monotonic()
    install.install("instvg", "sanbos-demo-bos:tar", f.luns[4].wwn, ["sanbos-demo-tools"], fabric=f.root)
    print(f"BOS install on the host (demo BOS + 2 OPPs + GRUB): {time.monotonic() - t0:.1f} s")
    if not in_guest:
        return
    g = fab.load(f.root)
    target = g.luns[5]
    disks = [guest.GuestDisk(l.path, l.serial, snapshot=(i < 4)) for i, l in enumerate(g.luns) if i != 4]
    script = (f"read a _ < /proc/uptime; sanbos install --from instvg --bos sanbos-demo-bos:tar "
              f"--target serial:{target.serial} --opp sanbos-demo-tools -q >&2; rc=$?; "
              f"read b _ < /proc/uptime; echo \"rc=$rc start=$a end=$b\"")
    r = guest.run_maintenance_guest(disks, script, 900, kernel=k, kvm=kvm, workdir=tmp / "ginstall")
    m = re.search(r"rc=(\d+) start=([\d.]+) end=([\d.]+)", r.report)
    if not m or m.group(1) != "0":
        raise SanbosError(f"the in-guest install failed: {r.console[-600:]}")
    print(f"the same BOS install inside the maintenance guest ({'KVM' if kvm else 'TCG'}): "
          f"{float(m.group(3)) - float(m.group(2)):.1f} s (guest clock)")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--kvm", action="store_true", help="use KVM (hangs the Debian kernel on some hosts)")
    ap.add_argument("--no-console", action="store_true", help="skip the maintenance image")
    ap.add_argument("--no-install", action="store_true", help="skip the host install")
    args = ap.parse_args()
    try:
        t0 = time.monotonic()
        k = guest.kernel_parts()
        t1 = time.monotonic()
        base = guest.build_base_initrd(k)
        t2 = time.monotonic()
        print(f"kernel {k.version}: fetched/unpacked in {t1 - t0:.1f} s (cached after the first run)")
        print(f"LVM guest base initrd {base.stat().st_size / MiB:.2f} MiB, built in {t2 - t1:.1f} s (cached)")
        with tempfile.TemporaryDirectory(prefix="bench-guest.") as tmp:
            tmp = Path(tmp)
            lvm_guest(k, tmp, args.runs, args.kvm)
            if not args.no_console:
                maintenance(k, tmp, args.kvm)
            if not args.no_install:
                installs(k, tmp, args.kvm, not args.no_console)
    except SanbosError as e:
        print(f"bench/guest.py: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
