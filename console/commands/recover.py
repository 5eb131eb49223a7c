"""``sanbos check --rootvg ID`` and ``sanbos recover --from VG --rootvg ID`` (the seed's Figure 5)."""

from __future__ import annotations

import argparse
import json

from core import recover as rec

from .install import progress


def register(sub: argparse._SubParsersAction) -> None:
    from console.cli import fabric_arg
    c = sub.add_parser("check", help="name every boot-side defect of a root VG disk (reads only)")
    c.add_argument("--rootvg", required=True, metavar="ID", help="the root VG disk: unique ID or unique prefix")
    c.add_argument("--json", action="store_true")
    fabric_arg(c)
    c.set_defaults(func=_check)

    r = sub.add_parser("recover", help="rebuild a root VG disk's boot image and boot loader")
    r.add_argument("--from", dest="from_vg", metavar="VG",
                   help="the install VG (used when the root file system's own kernel is gone too)")
    r.add_argument("--rootvg", required=True, metavar="ID", help="the root VG disk: unique ID or unique prefix")
    r.add_argument("--quiet", "-q", action="store_true")
    fabric_arg(r)
    r.set_defaults(func=_recover)


def _check(args: argparse.Namespace) -> int:
    defects = rec.check_rootvg(args.rootvg, fabric=args.fabric)
    if args.json:
        print(json.dumps([d.to_json() for d in defects], indent=2))
    elif not defects:
        print(f"{args.rootvg}: boot side OK (MBR, bios_grub, ESP, boot image, /boot match the record)")
    else:
        for d in defects:
            print(d)
    return 1 if defects else 0


def _recover(args: argparse.Namespace) -> int:
    res = rec.recover(args.from_vg, args.rootvg, fabric=args.fabric,
                      progress=(lambda m, f=None: None) if args.quiet else progress)
    print(res)
    return 0
