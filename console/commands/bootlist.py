"""``sanbos bootlist show|set``: a machine's boot lists, in AIX ``bootlist -o`` / ``-f`` text.

    sanbos bootlist show MACHINE --mode maintenance          # one device per line
    sanbos bootlist set MACHINE --mode normal naa.6... copy=bootlv_rimage_0 naa.6...
    sanbos bootlist set MACHINE --mode normal -f FILE         # the text 'show' prints ('-' = stdin)
"""

from __future__ import annotations

import argparse
import json
import sys

from core import registry as reg
from core.errors import UsageError

from .machine import actor, intermixed, open_registry, registry_args


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("bootlist", help="show or set a machine's boot list per mode (AIX bootlist format)")
    bs = p.add_subparsers(dest="bootlist_cmd", metavar="ACTION", required=True)

    s = bs.add_parser("show", help="print a boot list, one device per line (like bootlist -m MODE -o)")
    s.add_argument("machine")
    s.add_argument("--mode", "-m", choices=reg.BOOT_TYPES, help="default: the machine's current boot type")
    s.add_argument("--json", action="store_true")
    registry_args(s, disks=False)
    s.set_defaults(func=_show)

    t = bs.add_parser("set", help="replace a boot list: DEVICE [attr=value...] ... or -f FILE")
    t.add_argument("machine")
    t.add_argument("--mode", "-m", choices=reg.BOOT_TYPES, required=True)
    t.add_argument("-f", "--file", metavar="FILE", help="read the list from FILE (bootlist -o text; '-' = stdin)")
    t.add_argument("devices", nargs="*", metavar="DEVICE", help="disk unique IDs in boot order, each optionally "
                   "followed by attr=value (copy=..., pathid=...)")
    registry_args(t)
    intermixed(t)
    t.set_defaults(func=_set)


def _show(args: argparse.Namespace) -> int:
    r = open_registry(args, create=False)
    m = r.machine(args.machine)
    mode = args.mode or m.boot_type
    devs = m.lists["boot"][mode]
    if args.json:
        print(json.dumps({"machine": m.id, "mode": mode, "current_boot_type": m.boot_type,
                          "devices": [d.to_dict() for d in devs]}, indent=2))
    else:
        sys.stdout.write(reg.format_bootlist(devs))
    return 0


def _set(args: argparse.Namespace) -> int:
    if args.file and args.devices:
        raise UsageError("give devices on the command line or -f FILE, not both")
    if args.file:
        from core.tools import input_file
        try:
            if args.file == "-":
                text = sys.stdin.read()
            else:
                text = input_file(args.file, "boot list file").read_text(encoding="utf-8")
        except OSError as e:
            raise UsageError(f"boot list file {args.file}: cannot read it: {e.strerror or e}") from None
        except UnicodeDecodeError:
            raise UsageError(f"boot list file {args.file}: not UTF-8 text") from None
        devs = reg.parse_bootlist(text)
    else:
        devs = reg.parse_device_words(args.devices)
    r = open_registry(args)
    stored = r.set_list(args.machine, "boot", devs, args.mode, actor=actor())
    print(f"machine {reg.check_machine_id(args.machine)} boot list {args.mode}: {len(stored)} device(s)",
          file=sys.stderr)
    sys.stdout.write(reg.format_bootlist(stored))
    return 0
