"""``sanbos opp add|list|remove``: OPP images in the install VG's repository (seed Figure 6)."""

from __future__ import annotations

import argparse
import json
import sys

from core import repo
from core import vg as vgops
from core.errors import UsageError
from core.units import human


def progress(msg: str, frac: float | None = None) -> None:
    pct = "    " if frac is None else f"{int(frac * 100):3d}%"
    print(f"[{pct}] {msg}", file=sys.stderr, flush=True)


def register(sub: argparse._SubParsersAction) -> None:
    from console.cli import fabric_arg
    p = sub.add_parser("opp", help="add, list and remove OPP images in an install VG's repository")
    osub = p.add_subparsers(dest="opp_cmd", metavar="ACTION", required=True)

    a = osub.add_parser("add", help="import the VG, write OPP images (.deb or OPP tarball), update the TOC, export")
    fabric_arg(a)
    a.add_argument("vg", metavar="VG")
    a.add_argument("files", nargs="+", metavar="FILE")
    a.add_argument("--quiet", "-q", action="store_true")
    a.set_defaults(func=_add)

    l = osub.add_parser("list", help="the OPPs in the repository's table of contents (or, with --target, "
                        "those installed on a system)")
    fabric_arg(l)
    l.add_argument("vg", metavar="VG", nargs="?")
    l.add_argument("--target", metavar="ID", help="list the OPPs installed in this root VG disk's system")
    l.add_argument("--json", action="store_true")
    l.set_defaults(func=_list)

    r = osub.add_parser("remove", help="drop an OPP from the TOC, then its file")
    fabric_arg(r)
    r.add_argument("vg", metavar="VG")
    r.add_argument("name", metavar="NAME")
    r.add_argument("--quiet", "-q", action="store_true")
    r.set_defaults(func=_remove)

    from console.commands import oppinstall   # sanbos opp install (products onto an installed system)
    oppinstall.register_opp(osub)


def _disks(args: argparse.Namespace):
    from console.commands.vg import all_disks
    return all_disks(args.fabric)


def _quiet(args: argparse.Namespace):
    return (lambda m, f=None: None) if getattr(args, "quiet", False) else progress


def _add(args: argparse.Namespace) -> int:
    added = repo.add_opps(args.vg, _disks(args), args.files, progress=_quiet(args))
    for e in added:
        print(f"added OPP {e.name} {e.version} ({e.format}, {human(e.size)}) as {e.file}")
    return 0


def _list(args: argparse.Namespace) -> int:
    if args.target:
        from console.commands import oppinstall
        return oppinstall.list_target(args)
    if not args.vg:
        raise UsageError("say which install VG (opp list VG), or --target ID for an installed system")
    with vgops.open_vg(args.vg, _disks(args), write=False) as vg:
        toc = repo.toc(vg)
    opps = toc.opps
    if args.json:
        print(json.dumps([e.to_dict() for e in opps], indent=2))
        return 0
    if not opps:
        print(f"VG {args.vg}: no OPPs in the repository (TOC seqno {toc.seqno})")
        return 0
    print(f"{'NAME':<28} {'VERSION':<10} {'FORMAT':<6} {'SIZE':>7}  {'DEPENDS':<30} DESCRIPTION")
    for e in opps:
        print(f"{e.name:<28} {e.version:<10} {e.format:<6} {human(e.size):>7}  "
              f"{', '.join(e.dependencies) or '-':<30} {e.description}")
    return 0


def _remove(args: argparse.Namespace) -> int:
    e = repo.remove_opp(args.vg, _disks(args), args.name, progress=_quiet(args))
    print(f"removed OPP {e.name} {e.version} ({e.file})")
    return 0
