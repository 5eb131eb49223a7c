#!/usr/bin/env bash
# Install everything sanbos needs on a Debian 12 machine (as root). Idempotent.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"

APT_PACKAGES=(
  lvm2 e2fsprogs parted libparted-dev pkg-config gdisk dosfstools mtools
  grub-pc-bin grub-efi-amd64-bin grub-common grub2-common
  qemu-system-x86 qemu-utils ovmf busybox-static xorriso kmod cpio
  tmux udev chromium wrk console-setup-linux
  python3.11 libparted2 zstd xz-utils dpkg
)
missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update
  apt-get install -y --no-install-recommends "${missing[@]}"
fi

PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null 2>&1 || PY=python3
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet -e '.[test]'
# byte-compile sanbos itself: with PYTHONDONTWRITEBYTECODE set (as on some build machines)
# every CLI run would otherwise compile its modules again (~20 ms of each command's start-up)
.venv/bin/python -m compileall -q core console >/dev/null

# Real Debian kernel + busybox for boot images and QEMU tests (cached).
scripts/fetch-parts.sh
