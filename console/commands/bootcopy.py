"""``sanbos bootcopy mirror|verify|repair|replace|add|remove``: boot copies on the boot disks."""

from __future__ import annotations

import argparse
import json
import sys


def _disks(args: argparse.Namespace):
    from console.commands.vg import all_disks
    return all_disks(args.fabric)


def register(sub: argparse._SubParsersAction) -> None:
    from console.cli import fabric_arg

    p = sub.add_parser("bootcopy", help="boot copies of the maintenance boot image on every boot disk")
    bsub = p.add_subparsers(dest="bootcopy_cmd", metavar="ACTION", required=True)

    def add(name: str, func, help: str) -> argparse.ArgumentParser:
        c = bsub.add_parser(name, help=help)
        c.add_argument("vg", metavar="VG")
        fabric_arg(c)
        c.add_argument("--json", action="store_true", help="print the report as JSON")
        c.add_argument("--quiet", "-q", action="store_true", help="no progress lines")
        c.set_defaults(func=func)
        return c

    m = add("mirror", _mirror, "copy a boot image onto each boot disk and install GRUB (BIOS + UEFI)")
    m.add_argument("--image", required=True, help="the boot image (sanbos bootimage build/demo)")
    m.add_argument("--disk", action="append", default=[], metavar="ID",
                   help="a boot disk (ID or unique prefix), in boot order; repeat; default: every PV")
    m.add_argument("--size", default=None, help="bootlv size (default: 1.5x the image, at least 32M)")
    add("verify", _verify, "read every boot copy and report its health by disk ID")
    add("repair", _repair, "rewrite bad copies from a good one; reinstall missing GRUB")
    r = add("replace", _replace, "write a new boot image onto every copy")
    r.add_argument("--image", required=True)
    a = add("add", _add, "make more disks boot disks")
    a.add_argument("--disk", action="append", required=True, metavar="ID")
    d = add("remove", _remove, "stop using disks as boot disks")
    d.add_argument("--disk", action="append", required=True, metavar="ID")


def _progress(args: argparse.Namespace):
    if args.json or args.quiet:
        return None
    last = {"msg": None}

    def show(msg: str, frac: float) -> None:
        if msg != last["msg"]:
            last["msg"] = msg
            print(f"[{int(frac * 100):3d}%] {msg}", file=sys.stderr, flush=True)
    return show


def _out(args: argparse.Namespace, rep) -> int:
    """Print a ``core.bootcopy.Report``; exit 1 when a copy is not ok."""
    if args.json:
        print(json.dumps(rep.to_json(), indent=2))
    else:
        print(rep)
    return 0 if rep.ok else 1


def _mirror(args: argparse.Namespace) -> int:
    from core import bootcopy
    size = None
    if args.size:
        from core.units import parse_size
        size = parse_size(args.size)
    return _out(args, bootcopy.mirror(args.vg, _disks(args), args.image, boot=args.disk or None, size=size,
                                      progress=_progress(args)))


def _verify(args: argparse.Namespace) -> int:
    from core import bootcopy
    return _out(args, bootcopy.verify(args.vg, _disks(args), progress=_progress(args)))


def _repair(args: argparse.Namespace) -> int:
    from core import bootcopy
    return _out(args, bootcopy.repair(args.vg, _disks(args), progress=_progress(args)))


def _replace(args: argparse.Namespace) -> int:
    from core import bootcopy
    return _out(args, bootcopy.replace(args.vg, _disks(args), args.image, progress=_progress(args)))


def _add(args: argparse.Namespace) -> int:
    from core import bootcopy
    return _out(args, bootcopy.add(args.vg, _disks(args), args.disk, progress=_progress(args)))


def _remove(args: argparse.Namespace) -> int:
    from core import bootcopy
    return _out(args, bootcopy.remove(args.vg, _disks(args), args.disk, progress=_progress(args)))
