"""Benchmark of the real-LVM2 maintenance guest (QEMU TCG).

Prints the initramfs size (base archive and with a script), the time to
build it, and the time from QEMU start to the guest's report (boot, load
modules, scan, activate a VG with real device-mapper, power off).

    .venv/bin/python bench/guest.py [--runs N] [--kvm]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from core import guest  # noqa: E402
from core.errors import SanbosError  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--kvm", action="store_true", help="use KVM (hangs the Debian kernel on some hosts)")
    args = ap.parse_args()
    try:
        t0 = time.monotonic()
        k = guest.kernel_parts()
        t1 = time.monotonic()
        base = guest.build_base_initrd(k)
        t2 = time.monotonic()
        print(f"kernel {k.version}: fetched/unpacked in {t1 - t0:.1f} s (cached after the first run)")
        print(f"base initrd {base.stat().st_size / 2**20:.2f} MiB, built in {t2 - t1:.1f} s (cached)")
        with tempfile.TemporaryDirectory(prefix="bench-guest.") as tmp:
            disk = Path(tmp) / "blank.img"
            with open(disk, "wb") as f:
                f.truncate(64 * 2**20)
            script = "lvm vgscan >/dev/null 2>&1; dmsetup targets; cat /proc/partitions"
            times = []
            size = 0
            for i in range(args.runs):
                r = guest.run_lvm_guest([disk], script, 300, kernel=k, kvm=args.kvm,
                                        workdir=Path(tmp) / f"run{i}")
                if r.rc != 0:
                    print(f"run {i}: the guest script failed (rc {r.rc})", file=sys.stderr)
                    return 1
                times.append(r.seconds)
                size = r.initrd_size
                print(f"run {i}: QEMU start to report and power-off {r.seconds:.2f} s")
        print(f"initrd with script {size / 2**20:.2f} MiB")
        print(f"guest boot-to-report ({'KVM' if args.kvm else 'TCG'}): median {statistics.median(times):.2f} s, "
              f"min {min(times):.2f} s over {len(times)} runs")
    except SanbosError as e:
        print(f"bench/guest.py: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
