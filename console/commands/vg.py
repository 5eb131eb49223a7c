"""``sanbos vg ...``: volume groups on the fabric's (or machine's) disks."""

from __future__ import annotations

import argparse
import json

from core.units import human

# The engine (core.vg, core.lvm, core.inventory) is imported by the handlers, not here:
# `sanbos vg --help` and usage errors do not pay for it.


def all_disks(fabric) -> list:
    """Every disk to look at (``DiskRef``s): the fabric's LUNs, else the machine's block devices."""
    from core.disk import DiskRef
    if fabric:
        from core import fabric as fab
        return [DiskRef(l.wwn, l.path) for l in fab.load(fabric).luns]
    from core import inventory
    return [d.ref for d in inventory.list_disks(None, lvm_scan=False)]


def resolve(ids: list[str], fabric) -> list:
    from core import inventory
    return [d.ref for d in inventory.resolve(ids, fabric)]


def _named(args: argparse.Namespace) -> tuple[list, list, list[str]]:
    """One disk listing for a write command: (every disk, the --disk refs, the --force IDs)."""
    from core import inventory
    listed = inventory.list_disks(args.fabric)
    return (listed, [inventory.find(listed, i).ref for i in args.disk],
            [inventory.find(listed, i).id for i in args.force])


def report(r, what: str) -> int:
    """Print a dry run's plan, else ``what`` with the new seqno."""
    from core import vg as vgops
    print(r if isinstance(r, vgops.Plan) else f"{what}, seqno {r}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    from console.cli import fabric_arg
    p = sub.add_parser("vg", help="create, inspect, change, export and import volume groups")
    vs = p.add_subparsers(dest="vg_cmd", metavar="ACTION", required=True)

    def add(name: str, func, help: str, vgname: bool = True) -> argparse.ArgumentParser:
        c = vs.add_parser(name, help=help)
        fabric_arg(c)
        if vgname:
            c.add_argument("name", metavar="VG")
        c.set_defaults(func=func)
        return c

    c = add("create", _create, "create a VG over chosen disks (GPT layout + PV on partition 3)")
    c.add_argument("--disk", action="append", required=True, metavar="ID", help="disk ID or unique prefix (repeat)")
    c.add_argument("--force", action="append", default=[], metavar="ID", help="write this disk even if not blank")
    c.add_argument("--whole-disk", action="store_true", help="PV on the whole disk, no partition table")
    c.add_argument("--extent-size", default="4M")
    c.add_argument("--dry-run", action="store_true")

    c = add("list", _list, "list VGs found on the disks", vgname=False)
    c.add_argument("--json", action="store_true")

    c = add("show", _show, "a VG's PVs (with disk IDs) and LVs (with segments and PE ranges)")
    c.add_argument("--json", action="store_true")

    c = add("extend", _extend, "add disks to a VG")
    c.add_argument("--disk", action="append", required=True, metavar="ID")
    c.add_argument("--force", action="append", default=[], metavar="ID")
    c.add_argument("--whole-disk", action="store_true")
    c.add_argument("--dry-run", action="store_true")

    c = add("reduce", _reduce, "remove empty PVs from a VG")
    c.add_argument("--disk", action="append", required=True, metavar="ID")
    c.add_argument("--dry-run", action="store_true")

    c = add("change", _change, "change VG tags (one metadata commit)")
    c.add_argument("--addtag", action="append", default=[])
    c.add_argument("--deltag", action="append", default=[])
    c.add_argument("--dry-run", action="store_true")

    c = add("export", _export, "mark a VG EXPORTED (and clear its system ID)")
    c.add_argument("--dry-run", action="store_true")

    c = add("import", _import, "clear EXPORTED; --readonly only reads (shared locks)")
    c.add_argument("--readonly", action="store_true")
    c.add_argument("--dry-run", action="store_true")

    c = add("check", _check, "check labels, headers and metadata copies; --repair rewrites bad ones")
    c.add_argument("--repair", action="store_true")
    c.add_argument("--dry-run", action="store_true")


def _create(args: argparse.Namespace) -> int:
    from core import vg as vgops
    from core.errors import LVMError
    listed, disks, force = _named(args)
    existing = [d.id for d in listed if d.membership == f"pv:{args.name}"]
    if existing:
        raise LVMError(f"a VG named {args.name} already exists (on {', '.join(existing)}); choose another name")
    r = vgops.create(args.name, disks, force_ids=force, dry_run=args.dry_run,
                     layout="whole" if args.whole_disk else "gpt", extent_size=args.extent_size)
    if isinstance(r, vgops.Plan):
        print(r)
    else:
        print(f"VG {r.name} ({r.uuid}) created on {len(disks)} disk(s), seqno {r.seqno}")
    return 0


def _list(args: argparse.Namespace) -> int:
    from core import vg as vgops
    from core.lvm.uuid import dashed
    res = vgops.list_vgs(all_disks(args.fabric))
    rows = []
    for info in res.by_uuid.values():
        v = info.vg
        ext = v.extent_bytes
        size = sum(p.pe_count for p in v.pvs) * ext
        free = sum(v.free_extents(p.name) for p in v.pvs) * ext
        rows.append({"name": v.name, "uuid": dashed(v.id), "pvs": len(v.pvs),
                     "lvs": len([l for l in v.lvs if l.visible]), "seqno": v.seqno, "size": size, "free": free,
                     "exported": v.exported, "missing": info.missing,
                     "disks": sorted(l.where for l in info.pvs.values())})
    if args.json:
        print(json.dumps({"vgs": rows, "orphans": [o.where for o in res.orphans], "problems": res.problems},
                         indent=2))
        return 0
    print(f"{'VG':<16} {'#PV':>3} {'#LV':>3} {'SEQ':>5} {'SIZE':>7} {'FREE':>7}  ATTR      UUID")
    for r in rows:
        attr = ("x" if r["exported"] else "-") + ("p" if r["missing"] else "-")
        print(f"{r['name']:<16} {r['pvs']:>3} {r['lvs']:>3} {r['seqno']:>5} {human(r['size']):>7} "
              f"{human(r['free']):>7}  {attr:<8}  {r['uuid']}")
    for p in res.problems:
        print(f"problem: {p}")
    return 0


def _show(args: argparse.Namespace) -> int:
    from core import vg as vgops
    with vgops.open_vg(args.name, all_disks(args.fabric), write=False) as g:
        d = g.describe()
    if args.json:
        print(json.dumps(d, indent=2))
        return 0
    print(f"VG {d['name']}  uuid {d['uuid']}  seqno {d['seqno']}  extent {human(d['extent_size'])}"
          f"{'  EXPORTED' if d['exported'] else ''}")
    print("PVs:")
    for p in d["pvs"]:
        where = p["disk"] or "MISSING"
        if p["partition"]:
            where += f" partition {p['partition']}"
        print(f"  {p['name']:<5} {where:<44} {p['uuid']}  {p['pe_count']} PE, {p['pe_free']} free")
    print("LVs:")
    for l in d["lvs"]:
        name = l["name"] if l["visible"] else f"[{l['name']}]"
        segs = []
        for s in l["segments"]:
            segs.append(" ".join(s.get("pe_ranges") or s.get("images") or []))
        print(f"  {name:<22} {l['type']:<8} {human(l['size']):>7}  {'; '.join(segs)}")
    for p in d["problems"]:
        print(f"problem: {p}")
    return 0


def _extend(args: argparse.Namespace) -> int:
    from core import vg as vgops
    listed, new, force = _named(args)
    r = vgops.extend(args.name, [d.ref for d in listed], new, force_ids=force, dry_run=args.dry_run,
                     layout="whole" if args.whole_disk else "gpt")
    return report(r, f"VG {args.name} extended")


def _reduce(args: argparse.Namespace) -> int:
    from core import vg as vgops
    return report(vgops.reduce(args.name, all_disks(args.fabric), args.disk, dry_run=args.dry_run),
                 f"VG {args.name} reduced")


def _change(args: argparse.Namespace) -> int:
    from core import vg as vgops
    return report(vgops.change_tags(args.name, all_disks(args.fabric), args.addtag, args.deltag,
                                   dry_run=args.dry_run), f"VG {args.name} changed")


def _export(args: argparse.Namespace) -> int:
    from core import vg as vgops
    return report(vgops.export(args.name, all_disks(args.fabric), dry_run=args.dry_run), f"VG {args.name} exported")


def _import(args: argparse.Namespace) -> int:
    from core import vg as vgops
    r = vgops.import_(args.name, all_disks(args.fabric), readonly=args.readonly, dry_run=args.dry_run)
    if isinstance(r, vgops.Plan):
        print(r)
    elif isinstance(r, vgops.VolumeGroup):
        with r:
            lvs = [l.name for l in r.lvs if l.visible]
            print(f"VG {r.name} readable (read-only, shared locks, nothing written): seqno {r.seqno}, "
                  f"LVs {', '.join(lvs) or 'none'}{', EXPORTED' if r.vg.exported else ''}")
    else:
        print(f"VG {args.name} imported, seqno {r}")
    return 0


def _check(args: argparse.Namespace) -> int:
    from core import vg as vgops
    r = vgops.check(args.name, all_disks(args.fabric), repair=args.repair, dry_run=args.dry_run)
    print(r)
    if isinstance(r, vgops.Plan):
        return 0
    return 0 if r.clean else 1
