#!/usr/bin/env bash
# Build the maintenance boot image (Debian kernel + an initramfs holding
# python3.11, sanbos and the tools it runs; it starts `sanbos console` on the
# serial console) with core.guest.build_maintenance_image.
#   scripts/guest-maintenance.sh OUT.img           build it
#   scripts/guest-maintenance.sh --run [DISK...]   boot it directly (TCG) with
#                                                  the disks (read-only snapshots)
#                                                  on this terminal
# (`sanbos bootimage build --maintenance -o OUT` is the CLI form once the
# bootimage command calls core.guest.build_maintenance_image.)
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
PY=$here/.venv/bin/python
[ -x "$PY" ] || PY=python3
if [ "${1:-}" = "--run" ]; then
  shift
  cd "$here"
  exec "$PY" - "$@" <<'PYEOF'
import os, sys, tempfile
sys.path.insert(0, os.getcwd())
from pathlib import Path
from core import guest
from core.errors import SanbosError
try:
    k = guest.kernel_parts()
    tmp = tempfile.mkdtemp(prefix="sanbos-maint-run.")
    initrd = guest.build_maintenance_initrd(k, Path(tmp) / "initrd.img")
    disks = [guest.GuestDisk(Path(p), serial=f"SANBOS{i:02d}") for i, p in enumerate(sys.argv[1:])]
    argv = guest.console_argv(k, initrd, disks)
except SanbosError as e:
    print(f"guest-maintenance: {e}", file=sys.stderr)
    sys.exit(1)
os.execv(argv[0], argv)
PYEOF
fi
out=${1:?usage: scripts/guest-maintenance.sh OUT.img | --run [DISK...]}
cd "$here"
exec "$PY" - "$out" <<'PYEOF'
import sys
from core import guest
from core.errors import SanbosError
try:
    info = guest.build_maintenance_image(sys.argv[1], progress=lambda m, f=None: print(m))
except SanbosError as e:
    print(f"guest-maintenance: {e}", file=sys.stderr)
    sys.exit(1)
print(f"{info.path}: {info.size} bytes, sha256 {info.sha256}")
PYEOF
