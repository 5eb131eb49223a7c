"""``sanbos fabric create|show|add``: the demo SAN fabric."""

from __future__ import annotations

import argparse
import json

from core.units import human, parse_size


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("fabric", help="create and inspect a demo SAN fabric of disk images")
    fsub = p.add_subparsers(dest="fabric_cmd", metavar="ACTION", required=True)

    c = fsub.add_parser("create", help="make a fabric directory of sparse disk images")
    c.add_argument("dir")
    c.add_argument("--disks", type=int, default=4)
    c.add_argument("--size", default="256M")
    c.add_argument("--demo", action="store_true",
                   help="also build a ready install VG with boot copies and a repository")
    c.add_argument("--targets", type=int, default=2, help="with --demo: blank target disks to add")
    c.set_defaults(func=_create)

    s = fsub.add_parser("show", help="list the LUNs of a fabric")
    s.add_argument("dir")
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=_show)

    a = fsub.add_parser("add", help="add blank disks, or adopt an image file, into a fabric")
    a.add_argument("dir")
    a.add_argument("--disks", type=int, default=1)
    a.add_argument("--size", default="256M")
    a.add_argument("--image", action="append", default=[], metavar="FILE")
    a.set_defaults(func=_add)


def _create(args: argparse.Namespace) -> int:
    from core import fabric as fab
    if args.demo:
        from core import demo  # the demo builder lives with the engine
        f = demo.create_demo(args.dir, disks=args.disks, size=parse_size(args.size), targets=args.targets,
                             progress=lambda msg: print(msg, flush=True))
    else:
        f = fab.create(args.dir, args.disks, parse_size(args.size))
    print(f"fabric {f.root}: {len(f.luns)} LUNs")
    return 0


def _show(args: argparse.Namespace) -> int:
    from core import fabric as fab
    f = fab.load(args.dir)
    if args.json:
        print(json.dumps({"name": f.name, "root": str(f.root), "luns": [
            {"file": l.file, "wwn": l.wwn, "serial": l.serial, "address": l.address, "size": l.size}
            for l in f.luns]}, indent=2))
        return 0
    print(f"fabric {f.name} ({f.root}), {len(f.luns)} LUNs")
    print(f"{'FILE':<14} {'WWN':<38} {'SERIAL':<16} {'SIZE':>6}  ADDRESS")
    for l in f.luns:
        print(f"{l.file:<14} {l.wwn:<38} {l.serial:<16} {human(l.size):>6}  {l.address}")
    return 0


def _add(args: argparse.Namespace) -> int:
    from core import fabric as fab
    f = fab.load(args.dir)
    new = [fab.adopt(f, img) for img in args.image]
    if not args.image:
        new = fab.add(f, args.disks, parse_size(args.size))
    for l in new:
        print(f"added {l.file} {l.wwn} {l.address}")
    return 0
