"""``sanbos machine ...``: machines of the SAN boot device registry and their device lists.

Also the shared ``--registry FILE`` / disk-check options of the registry
commands (``machine``, ``bootlist``, ``admin``, ``serve``).
"""

from __future__ import annotations

import argparse
import getpass
import json
import os

from core import registry as reg
from core.registry import BOOT_TYPES, LISTS, PLAIN_LISTS, Registry

LIST_CHOICES = list(LISTS) + ["non-essential"]


def registry_args(p: argparse.ArgumentParser, disks: bool = True) -> None:
    """``--registry FILE`` (and, for commands that edit lists, the known-disk check options)."""
    p.add_argument("--registry", metavar="FILE", default=None,
                   help=f"registry file (default: $SANBOS_REGISTRY, else {reg.DEFAULT_PATH})")
    if disks:
        from console.cli import fabric_arg
        fabric_arg(p)
        p.add_argument("--no-disk-check", action="store_true",
                       help="accept any well-formed disk ID (do not check against the fabric's or this machine's disks)")


def intermixed(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Let ``p`` take positionals after options (``set M --mode normal DEV DEV``), like AIX bootlist."""
    plain = p.parse_known_args
    busy = {"on": False}

    def parse_known_args(args=None, namespace=None):  # type: ignore[no-untyped-def]
        if busy["on"]:
            return plain(args, namespace)
        busy["on"] = True
        try:
            return p.parse_known_intermixed_args(args, namespace)
        finally:
            busy["on"] = False
    p.parse_known_args = parse_known_args  # type: ignore[method-assign]
    return p


def open_registry(args: argparse.Namespace, create: bool = True) -> Registry:
    """The registry the command names.  A registry given by path (--registry or
    $SANBOS_REGISTRY) must be in an existing directory (a mistyped path makes no
    new, empty registry); ``create=False`` (commands that only read) also
    refuses a registry file that does not exist yet."""
    from pathlib import Path

    from core.errors import NotFoundError
    path = Path(args.registry or reg.default_path())
    if not path.exists():
        if not create:
            raise NotFoundError(f"registry {path} does not exist (nothing is registered yet; "
                                "'sanbos machine add' or 'sanbos admin add' creates it)")
        if str(path) != reg.DEFAULT_PATH and not path.parent.is_dir():
            raise NotFoundError(f"registry {path}: directory {path.parent} does not exist; "
                                "create it first or give another --registry FILE")
    inventory = None
    if not getattr(args, "no_disk_check", True):
        inventory = reg.disk_inventory(getattr(args, "fabric", None))
    return Registry(path, inventory=inventory)


def actor() -> str:
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = str(os.getuid())
    return f"cli:{user}"


def print_machine(m: reg.Machine) -> None:
    print(f"machine {m.id}" + (f"  ({m.name})" if m.name else ""))
    print(f"boot type: {m.boot_type}")
    for mode in BOOT_TYPES:
        devs = m.lists["boot"][mode]
        mark = " (in use)" if mode == m.boot_type else ""
        print(f"boot list {mode}{mark}:" + ("" if devs else " -"))
        for i, d in enumerate(devs, 1):
            print(f"  {i:>2}. {d.line()}")
    for lst in PLAIN_LISTS:
        devs = m.lists[lst]
        print(f"{lst}:" + ("" if devs else " -"))
        for i, d in enumerate(devs, 1):
            print(f"  {i:>2}. {d.line()}")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("machine", help="machines of the SAN boot device registry: boot type and device lists")
    ms = p.add_subparsers(dest="machine_cmd", metavar="ACTION", required=True)

    a = ms.add_parser("add", help="add a machine by its unique ID (WWN or UUID)")
    a.add_argument("id")
    a.add_argument("--name", default="")
    a.add_argument("--type", dest="boot_type", choices=BOOT_TYPES, default="normal")
    registry_args(a, disks=False)
    a.set_defaults(func=_add)

    l = ms.add_parser("list", help="list machines")
    l.add_argument("--json", action="store_true")
    registry_args(l, disks=False)
    l.set_defaults(func=_list)

    s = ms.add_parser("show", help="a machine's boot type and all its lists")
    s.add_argument("id")
    s.add_argument("--json", action="store_true")
    registry_args(s, disks=False)
    s.set_defaults(func=_show)

    t = ms.add_parser("set-type", help="set the boot type: normal, install or maintenance")
    t.add_argument("id")
    t.add_argument("boot_type", choices=BOOT_TYPES)
    registry_args(t, disks=False)
    t.set_defaults(func=_set_type)

    rn = ms.add_parser("rename", help="change a machine's name")
    rn.add_argument("id")
    rn.add_argument("name")
    registry_args(rn, disks=False)
    rn.set_defaults(func=_rename)

    rm = ms.add_parser("remove", help="remove a machine and its lists")
    rm.add_argument("id")
    registry_args(rm, disks=False)
    rm.set_defaults(func=_remove)

    def list_opts(q: argparse.ArgumentParser) -> None:
        q.add_argument("id", help="machine ID")
        q.add_argument("list", choices=LIST_CHOICES, metavar="LIST", help=f"one of {', '.join(LISTS)}")
        q.add_argument("--mode", choices=BOOT_TYPES, help="boot list mode (boot list only)")

    da = ms.add_parser("dev-add", help="add a disk to a device list (checked against known disks)")
    list_opts(da)
    da.add_argument("device", help="disk unique ID or unique prefix")
    da.add_argument("--copy", help="boot copy on that disk")
    da.add_argument("--position", type=int, help="1 = first (default: last)")
    registry_args(da)
    da.set_defaults(func=_dev_add)

    dr = ms.add_parser("dev-remove", help="remove a disk (by position or ID) from a device list")
    list_opts(dr)
    dr.add_argument("which", help="position (1 = first) or disk ID")
    registry_args(dr, disks=False)
    dr.set_defaults(func=_dev_remove)

    dm = ms.add_parser("dev-move", help="move a disk within a device list")
    list_opts(dm)
    dm.add_argument("which", help="position (1 = first) or disk ID")
    dm.add_argument("to", help="new position, or up, down, top, bottom")
    registry_args(dm, disks=False)
    dm.set_defaults(func=_dev_move)

    ds = ms.add_parser("dev-set", help="replace a device list: DEVICE [attr=value...] ...")
    list_opts(ds)
    ds.add_argument("devices", nargs="*", metavar="DEVICE")
    registry_args(ds)
    intermixed(ds)
    ds.set_defaults(func=_dev_set)


def _add(args: argparse.Namespace) -> int:
    m = open_registry(args).add_machine(args.id, args.name, args.boot_type, actor=actor())
    print(f"added machine {m.id} (boot type {m.boot_type})")
    return 0


def _list(args: argparse.Namespace) -> int:
    ms = open_registry(args, create=False).list_machines()
    if args.json:
        print(json.dumps([m.to_dict() for m in ms], indent=2))
        return 0
    print(f"{'MACHINE':<40} {'TYPE':<12} NAME")
    for m in ms:
        print(f"{m.id:<40} {m.boot_type:<12} {m.name}")
    return 0


def _show(args: argparse.Namespace) -> int:
    m = open_registry(args, create=False).machine(args.id)
    if args.json:
        print(json.dumps(m.to_dict(), indent=2))
    else:
        print_machine(m)
    return 0


def _set_type(args: argparse.Namespace) -> int:
    m = open_registry(args).set_boot_type(args.id, args.boot_type, actor=actor())
    print(f"machine {m.id}: boot type {m.boot_type}")
    return 0


def _rename(args: argparse.Namespace) -> int:
    m = open_registry(args).rename_machine(args.id, args.name, actor=actor())
    print(f"machine {m.id}: name {m.name!r}")
    return 0


def _remove(args: argparse.Namespace) -> int:
    open_registry(args).remove_machine(args.id, actor=actor())
    print(f"removed machine {reg.check_machine_id(args.id)}")
    return 0


def _list_mode(r: Registry, args: argparse.Namespace) -> str | None:
    if reg.check_list(args.list) == "boot":
        return args.mode or r.machine(args.id).boot_type
    if args.mode:
        raise reg.UsageError(f"the {args.list} list has no modes; drop --mode")
    return None


def _print_list(args: argparse.Namespace, mode: str | None, devs: list[reg.Device]) -> None:
    what = f"{reg.check_list(args.list)}" + (f" ({mode})" if mode else "")
    print(f"machine {reg.check_machine_id(args.id)} {what}:" + ("" if devs else " empty"))
    for i, d in enumerate(devs, 1):
        print(f"  {i:>2}. {d.line()}")


def _dev_add(args: argparse.Namespace) -> int:
    r = open_registry(args)
    mode = _list_mode(r, args)
    devs = r.add_device(args.id, args.list, {"id": args.device, "copy": args.copy}, mode, args.position,
                        actor=actor())
    _print_list(args, mode, devs)
    return 0


def _which(s: str) -> int | str:
    return int(s) if s.isdigit() else s


def _dev_remove(args: argparse.Namespace) -> int:
    r = open_registry(args)
    mode = _list_mode(r, args)
    _print_list(args, mode, r.remove_device(args.id, args.list, _which(args.which), mode, actor=actor()))
    return 0


def _dev_move(args: argparse.Namespace) -> int:
    r = open_registry(args)
    mode = _list_mode(r, args)
    to: int | str = int(args.to) if args.to.isdigit() else args.to
    _print_list(args, mode, r.move_device(args.id, args.list, _which(args.which), to, mode, actor=actor()))
    return 0


def _dev_set(args: argparse.Namespace) -> int:
    r = open_registry(args)
    mode = _list_mode(r, args)
    devs = r.set_list(args.id, args.list, reg.parse_device_words(args.devices), mode, actor=actor())
    _print_list(args, mode, devs)
    return 0
