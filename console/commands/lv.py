"""``sanbos lv ...``: logical volumes of a VG."""

from __future__ import annotations

import argparse
import json

from core.units import human

from .vg import all_disks, report


def register(sub: argparse._SubParsersAction) -> None:
    from console.cli import fabric_arg
    p = sub.add_parser("lv", help="create, list and remove logical volumes")
    ls = p.add_subparsers(dest="lv_cmd", metavar="ACTION", required=True)

    c = ls.add_parser("create", help="create a linear LV, or a raid1 LV with one leg per --disk")
    fabric_arg(c)
    c.add_argument("vg", metavar="VG")
    c.add_argument("name", metavar="LV")
    c.add_argument("--size", required=True)
    c.add_argument("--type", choices=["linear", "raid1"], default="linear")
    c.add_argument("--disk", action="append", default=None, metavar="ID", help="PV disk(s) to use (raid1: one leg each)")
    c.add_argument("--dry-run", action="store_true")
    c.set_defaults(func=_create)

    c = ls.add_parser("remove", help="remove an LV (and its hidden sub-LVs)")
    fabric_arg(c)
    c.add_argument("vg", metavar="VG")
    c.add_argument("name", metavar="LV")
    c.add_argument("--dry-run", action="store_true")
    c.set_defaults(func=_remove)

    c = ls.add_parser("list", help="list LVs (all VGs, or one)")
    fabric_arg(c)
    c.add_argument("vg", metavar="VG", nargs="?")
    c.add_argument("-a", "--all", action="store_true", help="include hidden sub-LVs")
    c.add_argument("--json", action="store_true")
    c.set_defaults(func=_list)

    for name, func, help in (("add-leg", _add_leg, "add a raid1 leg on a disk"),
                             ("remove-leg", _remove_leg, "remove the raid1 leg on a disk")):
        c = ls.add_parser(name, help=help)
        fabric_arg(c)
        c.add_argument("vg", metavar="VG")
        c.add_argument("name", metavar="LV")
        c.add_argument("--disk", required=True, metavar="ID")
        c.add_argument("--dry-run", action="store_true")
        c.set_defaults(func=func)


def _create(args: argparse.Namespace) -> int:
    from core import vg as vgops
    r = vgops.lv_create(args.vg, all_disks(args.fabric), args.name, args.size, type=args.type,
                        pvs=args.disk, dry_run=args.dry_run)
    return report(r, f"LV {args.vg}/{args.name} created")


def _remove(args: argparse.Namespace) -> int:
    from core import vg as vgops
    return report(vgops.lv_remove(args.vg, all_disks(args.fabric), args.name, dry_run=args.dry_run),
                 f"LV {args.vg}/{args.name} removed")


def _add_leg(args: argparse.Namespace) -> int:
    from core import vg as vgops
    return report(vgops.raid1_add_leg(args.vg, all_disks(args.fabric), args.name, args.disk, dry_run=args.dry_run),
                 f"LV {args.vg}/{args.name}: leg added on {args.disk}")


def _remove_leg(args: argparse.Namespace) -> int:
    from core import vg as vgops
    return report(vgops.raid1_remove_leg(args.vg, all_disks(args.fabric), args.name, args.disk,
                                        dry_run=args.dry_run),
                 f"LV {args.vg}/{args.name}: leg on {args.disk} removed")


def _list(args: argparse.Namespace) -> int:
    from core import vg as vgops
    disks = all_disks(args.fabric)
    if args.vg:
        with vgops.open_vg(args.vg, disks, write=False) as g:
            vgs = [g.describe()]
    else:
        vgs = vgops.describe_all(disks)     # one scan, not two per VG
    rows = [dict(l, vg=d["name"]) for d in vgs for l in d["lvs"] if l["visible"] or args.all]
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    print(f"{'VG':<14} {'LV':<22} {'TYPE':<8} {'SIZE':>7} {'LEGS':>4}  PE RANGES")
    for r in rows:
        name = r["name"] if r["visible"] else f"[{r['name']}]"
        rng = "; ".join(" ".join(s.get("pe_ranges") or s.get("images") or []) for s in r["segments"])
        print(f"{r['vg']:<14} {name:<22} {r['type']:<8} {human(r['size']):>7} {r['legs']:>4}  {rng}")
    return 0
