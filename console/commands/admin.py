"""``sanbos admin add|list|remove|passwd|audit``: web administrators and the audit log."""

from __future__ import annotations

import argparse
import getpass
import json
import sys

from core.errors import UsageError

from .machine import actor, open_registry, registry_args


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("admin", help="administrators of the SAN boot device web service; the audit log")
    s = p.add_subparsers(dest="admin_cmd", metavar="ACTION", required=True)

    a = s.add_parser("add", help="add an administrator (password from a prompt or --password-stdin)")
    a.add_argument("name")
    a.add_argument("--password-stdin", action="store_true", help="read the password from the first line of stdin")
    registry_args(a, disks=False)
    a.set_defaults(func=_add)

    pw = s.add_parser("passwd", help="set an administrator's password")
    pw.add_argument("name")
    pw.add_argument("--password-stdin", action="store_true")
    registry_args(pw, disks=False)
    pw.set_defaults(func=_passwd)

    l = s.add_parser("list", help="list administrators")
    registry_args(l, disks=False)
    l.set_defaults(func=_list)

    rm = s.add_parser("remove", help="remove an administrator (never the last one)")
    rm.add_argument("name")
    registry_args(rm, disks=False)
    rm.set_defaults(func=_remove)

    au = s.add_parser("audit", help="show the audit log of registry changes, newest first")
    au.add_argument("--limit", type=int, default=50)
    au.add_argument("--target", help="only changes of this target (machine ID, MACHINE/LIST[/MODE], admin:NAME)")
    au.add_argument("--json", action="store_true")
    registry_args(au, disks=False)
    au.set_defaults(func=_audit)


def _password(args: argparse.Namespace) -> str:
    if args.password_stdin:
        line = sys.stdin.readline()
        if not line:
            raise UsageError("--password-stdin: stdin is empty")
        return line.rstrip("\r\n")
    if not sys.stdin.isatty():
        raise UsageError("no terminal to ask for the password; use --password-stdin")
    first = getpass.getpass(f"password for {args.name}: ")
    if getpass.getpass("again: ") != first:
        raise UsageError("the two passwords differ; nothing changed")
    return first


def _add(args: argparse.Namespace) -> int:
    pw = _password(args)
    a = open_registry(args).add_admin(args.name, pw, actor=actor())
    print(f"administrator {a.name} added")
    return 0


def _passwd(args: argparse.Namespace) -> int:
    pw = _password(args)
    open_registry(args).set_password(args.name, pw, actor=actor())
    print(f"password of {args.name} changed (its open web sessions end)")
    return 0


def _list(args: argparse.Namespace) -> int:
    for a in open_registry(args, create=False).list_admins():
        print(f"{a.name:<24} since {a.created}")
    return 0


def _remove(args: argparse.Namespace) -> int:
    open_registry(args).remove_admin(args.name, actor=actor())
    print(f"administrator {args.name} removed")
    return 0


def _audit(args: argparse.Namespace) -> int:
    entries = open_registry(args, create=False).audit(limit=args.limit, target=args.target)
    if args.json:
        print(json.dumps([e.to_dict() for e in entries], indent=2))
        return 0
    for e in entries:
        before = json.dumps(e.before, sort_keys=True) if e.before is not None else "-"
        after = json.dumps(e.after, sort_keys=True) if e.after is not None else "-"
        print(f"{e.id:>6} {e.at} {e.actor:<16} {e.action:<18} {e.target}\n        before: {before}\n        after:  {after}")
    return 0
