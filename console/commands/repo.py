"""``sanbos repo ...`` and ``sanbos bos add``: the install repository on instlv."""

from __future__ import annotations

import argparse
import json
import sys

from core import repo
from core import vg as vgops
from core.units import human, parse_size

from .opp import progress


def register(sub: argparse._SubParsersAction) -> None:
    from console.cli import fabric_arg
    p = sub.add_parser("repo", help="the install repository (instlv): create, verify, toc, mount")
    rsub = p.add_subparsers(dest="repo_cmd", metavar="ACTION", required=True)

    c = rsub.add_parser("create", help="create instlv (raid1 over the boot disks) with an empty repository")
    fabric_arg(c)
    c.add_argument("vg", metavar="VG")
    c.add_argument("--size", default="128M", help="file-system size (default 128M)")
    c.add_argument("--disk", action="append", default=[], metavar="ID",
                   help="boot disk for a leg (repeat; default: every disk of the VG)")
    c.add_argument("--opp", action="append", default=[], metavar="FILE", help="OPP to include from the start")
    c.set_defaults(func=_create)

    v = rsub.add_parser("verify", help="check every image against the TOC on every leg; e2fsck -fn each leg")
    fabric_arg(v)
    v.add_argument("vg", metavar="VG")
    v.add_argument("--json", action="store_true")
    v.set_defaults(func=_verify)

    rp = rsub.add_parser("repair", help="rewrite bad copies (repository legs, raw BOS LV legs) from a good one")
    fabric_arg(rp)
    rp.add_argument("vg", metavar="VG")
    rp.set_defaults(func=_repair)

    t = rsub.add_parser("toc", help="print the table of contents")
    fabric_arg(t)
    t.add_argument("vg", metavar="VG")
    t.add_argument("--json", action="store_true", help="the TOC file itself")
    t.set_defaults(func=_toc)

    m = rsub.add_parser("mount", help="(root) mount one leg read-only on DIR for browsing")
    fabric_arg(m)
    m.add_argument("vg", metavar="VG")
    m.add_argument("dir", metavar="DIR")
    m.set_defaults(func=_mount)

    u = rsub.add_parser("umount", help="unmount DIR and detach its loop device")
    u.add_argument("dir", metavar="DIR")
    u.set_defaults(func=_umount)

    b = sub.add_parser("bos", help="BOS images in the install repository")
    bsub = b.add_subparsers(dest="bos_cmd", metavar="ACTION", required=True)
    a = bsub.add_parser("add", help="add a BOS root file-system tarball, or --raw an ext4 image (LV bos_<name>)")
    fabric_arg(a)
    a.add_argument("vg", metavar="VG")
    a.add_argument("file", metavar="FILE")
    a.add_argument("--raw", action="store_true", help="FILE is a raw ext2/3/4 image, kept as LV bos_<name>")
    a.add_argument("--name")
    a.add_argument("--version")
    a.set_defaults(func=_bos_add)
    r = bsub.add_parser("remove", help="remove a BOS (both formats unless --raw / --tar)")
    fabric_arg(r)
    r.add_argument("vg", metavar="VG")
    r.add_argument("name", metavar="NAME")
    g = r.add_mutually_exclusive_group()
    g.add_argument("--raw", action="store_true")
    g.add_argument("--tar", action="store_true")
    r.set_defaults(func=_bos_remove)


def _disks(args: argparse.Namespace):
    from console.commands.vg import all_disks
    return all_disks(args.fabric)


def _create(args: argparse.Namespace) -> int:
    disks = _disks(args)
    boot = None
    if args.disk:
        from console.commands.vg import resolve
        boot = [d.id for d in resolve(args.disk, args.fabric)]
    toc = repo.create_repo(args.vg, disks, parse_size(args.size), boot_disks=boot, images=args.opp,
                           progress=progress)
    print(f"VG {args.vg}: repository {repo.REPO_LV} created ({human(parse_size(args.size))}, "
          f"{len(toc.images)} image(s))")
    return 0


def _verify(args: argparse.Namespace) -> int:
    with vgops.open_vg(args.vg, _disks(args), write=False) as vg:
        rep = repo.verify(vg, progress=progress)
    if args.json:
        print(json.dumps({
            "vg": rep.vg, "ok": rep.ok,
            "legs": [{"leg": h.leg.index, "disk": h.leg.disk, "state": (
                "clean" if h.record and h.record.clean else "dirty" if h.record else "none"),
                "generation": h.record.generation if h.record else None, "problems": h.problems}
                for h in rep.legs],
            "images": [{"name": e.name, "kind": e.kind, "format": e.format, "where": w, "status": s}
                       for e, w, s in rep.images]}, indent=2))
        return 0 if rep.ok else 1
    for h in rep.legs:
        state = "ok" if h.ok else "BAD"
        print(f"{h.leg.label}: {state}" + "".join(f"\n    {p}" for p in h.problems))
    bad = [(e, w, s) for e, w, s in rep.images if s != "ok"]
    print(f"{len(rep.images) - len(bad)} of {len(rep.images)} image copies match the TOC")
    for e, w, s in bad:
        print(f"  BAD {e.label} on {w}: {s}")
    print(f"VG {args.vg}: repository " + ("OK" if rep.ok else f"has {len(rep.problems())} problem(s)"))
    return 0 if rep.ok else 1


def _repair(args: argparse.Namespace) -> int:
    done = repo.repair(args.vg, _disks(args), progress=progress)
    for line in done:
        print(line)
    print(f"VG {args.vg}: " + (f"{len(done)} copies rewritten" if done else "nothing to repair"))
    return 0


def _toc(args: argparse.Namespace) -> int:
    with vgops.open_vg(args.vg, _disks(args), write=False) as vg:
        toc = repo.toc(vg)
    if args.json:
        sys.stdout.write(toc.pack().decode())
        return 0
    print(f"VG {args.vg}: table of contents seqno {toc.seqno}, updated {toc.updated}, {len(toc.images)} image(s)")
    print(f"{'KIND':<4} {'NAME':<26} {'VERSION':<9} {'FORMAT':<6} {'SIZE':>7}  {'WHERE':<44} SHA256")
    for e in toc.images:
        print(f"{e.kind:<4} {e.name:<26} {e.version:<9} {e.format:<6} {human(e.size):>7}  "
              f"{(e.file or 'LV ' + str(e.lv)):<44} {e.sha256[:16]}")
    return 0


def _mount(args: argparse.Namespace) -> int:
    with vgops.open_vg(args.vg, _disks(args), write=False) as vg:
        dev = repo.mount(vg, args.dir)
    print(f"VG {args.vg}: repository mounted read-only on {args.dir} ({dev}); "
          f"'sanbos repo umount {args.dir}' releases it")
    return 0


def _umount(args: argparse.Namespace) -> int:
    dev = repo.umount(args.dir)
    print(f"{args.dir} unmounted, {dev} detached")
    return 0


def _bos_add(args: argparse.Namespace) -> int:
    e = repo.add_bos(args.vg, _disks(args), args.file, raw=args.raw, name=args.name, version=args.version,
                     progress=progress)
    print(f"added BOS {e.name} {e.version} ({e.format}, {human(e.size)}) as {e.file or 'LV ' + str(e.lv)}")
    return 0


def _bos_remove(args: argparse.Namespace) -> int:
    raw = True if args.raw else (False if args.tar else None)
    for e in repo.remove_bos(args.vg, _disks(args), args.name, raw=raw, progress=progress):
        print(f"removed BOS {e.name} {e.version} ({e.format})")
    return 0
