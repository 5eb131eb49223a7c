#!/usr/bin/env bash
# Set everything up (idempotent), build the demo fabric once, start the console on it.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"
bash scripts/setup.sh
DEMO=${SANBOS_DEMO_DIR:-$here/demo}
if [ ! -f "$DEMO/fabric.toml" ]; then
  .venv/bin/sanbos fabric create "$DEMO" --demo --disks 4 --size 256M --targets 2
fi
exec .venv/bin/sanbos console --fabric "$DEMO" "$@"
