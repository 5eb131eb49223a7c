#!/usr/bin/env bash
# Fetch the real Debian parts sanbos boots (kernel, busybox-static) into the
# cache ($SANBOS_CACHE or <repo>/cache) without installing them. Idempotent.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"
PY=.venv/bin/python
[ -x "$PY" ] || PY=python3
"$PY" - <<'PYEOF'
from core import debparts
k = debparts.kernel()
print(f"kernel {k.version}: {k.vmlinuz}")
print(f"busybox: {debparts.busybox()}")
PYEOF
