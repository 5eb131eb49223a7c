"""``sanbos install``: BOS + OPPs + boot loader onto a target disk (the seed's Figure 4).

    sanbos install --from instvg --bos sanbos-demo-bos:tar --target naa.6... --opp sanbos-demo-tools
    sanbos install ... --dry-run          # print the plan, write nothing
"""

from __future__ import annotations

import argparse
import sys

from core import install as inst
from core.units import parse_size


def progress(msg: str, frac: float | None = None) -> None:
    pct = "    " if frac is None else f"{int(frac * 100):3d}%"
    print(f"[{pct}] {msg}", file=sys.stderr, flush=True)


def register(sub: argparse._SubParsersAction) -> None:
    from console.cli import fabric_arg
    p = sub.add_parser("install", help="install a BOS (and OPPs, and the boot loader) from an install VG onto a disk")
    p.add_argument("--from", dest="from_vg", required=True, metavar="VG", help="the install VG (read-only, shared)")
    p.add_argument("--bos", required=True, metavar="NAME",
                   help="BOS image in the repository (NAME, or NAME:tar / NAME:raw when both exist)")
    p.add_argument("--target", required=True, metavar="ID", help="target disk: unique ID or unique prefix")
    p.add_argument("--opp", action="append", default=[], metavar="NAME",
                   help="OPP to install (repeat); their dependencies come along from the TOC")
    p.add_argument("--force", action="append", default=[], metavar="ID",
                   help="write over a target that is not blank (give its full unique ID)")
    p.add_argument("--dry-run", action="store_true", help="print the plan; write nothing")
    p.add_argument("--root-vg", default=inst.ROOT_VG, metavar="NAME", help="name of the new root VG (default rootvg)")
    p.add_argument("--root-size", metavar="SIZE", help="root LV size (default: sized from the content)")
    p.add_argument("--quiet", "-q", action="store_true")
    fabric_arg(p)
    p.set_defaults(func=_install)


def _install(args: argparse.Namespace) -> int:
    res = inst.install(args.from_vg, args.bos, args.target, args.opp, fabric=args.fabric,
                       force_ids=args.force, dry_run=args.dry_run, root_vg=args.root_vg,
                       root_size=parse_size(args.root_size) if args.root_size else None,
                       progress=(lambda m, f=None: None) if args.quiet else progress)
    print(res)
    return 0
