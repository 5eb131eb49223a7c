"""``sanbos console [--fabric DIR]``: the full-screen maintenance console.

Textual is imported only when the console runs, after the Linux-console
environment (16 colours) is set, because Textual reads it at import time.
"""

from __future__ import annotations

import argparse

from core.errors import UsageError


def register(sub: argparse._SubParsersAction) -> None:
    from console.cli import fabric_arg

    p = sub.add_parser("console", help="the full-screen maintenance-mode boot menu and flows")
    fabric_arg(p)
    p.add_argument("--vt", dest="vt", action="store_true", default=None,
                   help="Linux console / serial mode: 16 colours, font-safe glyphs, no mouse "
                        "(default: on when TERM is linux or vt*)")
    p.add_argument("--no-vt", dest="vt", action="store_false", help="force the full-colour mode")
    p.add_argument("--light", action="store_true", help="start with the light theme (F4 toggles)")
    p.add_argument("--registry", metavar="FILE", default=None,
                   help="the SAN boot device registry for boot lists (default: $SANBOS_REGISTRY, "
                        "else /var/lib/sanbos/registry.db)")
    p.add_argument("--key", action="append", default=[], metavar="ID=KEY",
                   help="remap a key by its binding id (see the help screen, F1), e.g. app.help=f2")
    p.set_defaults(func=_run)


def parse_keymap(items: list[str]) -> dict[str, str]:
    keymap: dict[str, str] = {}
    for item in items:
        ident, sep, keys = item.partition("=")
        if not sep or not ident.strip() or not keys.strip():
            raise UsageError(f"--key {item!r}: expected ID=KEY, e.g. app.help=f2")
        keymap[ident.strip()] = keys.strip()
    return keymap


def _run(args: argparse.Namespace) -> int:
    from console.widgets.vt import prepare_environment, wants_vt  # no Textual import here

    vt = wants_vt() if args.vt is None else args.vt
    keymap = parse_keymap(args.key)
    prepare_environment(vt)
    from console.app import SanbosApp

    app = SanbosApp(args.fabric, vt=vt, keymap=keymap, light=args.light, registry=args.registry)
    app.run(mouse=not vt)
    return int(app.return_code or 0)
