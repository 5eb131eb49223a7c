"""``sanbos opp install --from VG --target ID NAME...`` and ``sanbos opp list --target ID``.

Products onto an installed system (the seed's paragraph 0056).  These are
sub-commands of ``sanbos opp`` (console/commands/opp.py calls
``register_opp``); this module has no ``register`` of its own.
"""

from __future__ import annotations

import argparse
import json

from core import install as inst

from .install import progress


def register_opp(osub: argparse._SubParsersAction) -> None:
    from console.cli import fabric_arg
    i = osub.add_parser("install", help="install OPPs from an install VG into an installed system's root VG")
    i.add_argument("--from", dest="from_vg", required=True, metavar="VG")
    i.add_argument("--target", required=True, metavar="ID", help="the installed system's root VG disk")
    i.add_argument("names", nargs="+", metavar="NAME")
    i.add_argument("--dry-run", action="store_true")
    i.add_argument("--quiet", "-q", action="store_true")
    fabric_arg(i)
    i.set_defaults(func=opp_install)


def opp_install(args: argparse.Namespace) -> int:
    res = inst.opp_install(args.from_vg, args.target, args.names, fabric=args.fabric, dry_run=args.dry_run,
                           progress=(lambda m, f=None: None) if args.quiet else progress)
    if args.dry_run:
        print("would install: " + (", ".join(str(o) for o in res) or "nothing (all installed)"))
    else:
        print(res)
    return 0


def list_target(args: argparse.Namespace) -> int:
    opps = inst.installed_opps(args.target, fabric=args.fabric)
    if getattr(args, "json", False):
        print(json.dumps(opps, indent=2))
        return 0
    if not opps:
        print(f"{args.target}: no OPPs installed")
        return 0
    print(f"{'NAME':<28} {'VERSION':<10} {'INSTALLED':<21} {'DEPENDS':<30} SUMMARY")
    for o in opps:
        print(f"{o['name']:<28} {o['version']:<10} {o.get('installed', ''):<21} {o.get('depends') or '-':<30} "
              f"{o.get('summary', '')}")
    return 0
