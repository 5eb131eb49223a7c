"""The ``sanbos`` command line.

Each module in ``console.commands`` defines ``register(subparsers)`` and adds
its sub-commands; handlers take the parsed ``args`` and return an exit code.
Errors from ``core`` become one line on stderr and exit code 1 (2 for usage
errors); no traceback reaches an operator.
"""

from __future__ import annotations

import argparse
import importlib
import os
import pkgutil
import sys

from core.errors import SanbosError

from . import commands


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # exit 2 with a one-line message
        self.print_usage(sys.stderr)
        print(f"sanbos: error: {message}", file=sys.stderr)
        raise SystemExit(2)


# Which module registers each top-level command.  Importing only the module
# a command needs keeps start-up short (engine modules are heavy to import);
# tests/test_cli.py checks this table against a full registration.
COMMAND_MODULES = {
    "admin": "admin", "bootcopy": "bootcopy", "bootimage": "bootimage", "bootlist": "bootlist",
    "console": "console", "disks": "disks", "disk": "disks", "fabric": "fabric",
    "install": "install", "lv": "lv", "machine": "machine", "opp": "opp", "check": "recover",
    "recover": "recover", "repo": "repo", "bos": "repo", "serve": "serve", "vg": "vg", "vm": "vm",
}


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The full parser, or (``only``) one holding just that module's commands."""
    parser = _Parser(prog="sanbos", description="Maintenance console and engine for SAN install volume groups.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    names = [only] if only else sorted(m.name for m in pkgutil.iter_modules(commands.__path__))
    for name in names:
        module = importlib.import_module(f"{commands.__name__}.{name}")
        if hasattr(module, "register"):
            module.register(sub)
    return parser


def _first_command(argv: list[str]) -> str | None:
    for arg in argv:
        if not arg.startswith("-"):
            return arg
        if arg in ("-h", "--help"):
            return None
    return None


def fabric_arg(parser: argparse.ArgumentParser) -> None:
    """Add the common ``--fabric DIR`` option (default: $SANBOS_FABRIC)."""
    parser.add_argument("--fabric", metavar="DIR", default=os.environ.get("SANBOS_FABRIC") or None,
                        help="work on a demo fabric directory (default: $SANBOS_FABRIC, else the machine's block devices)")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser(COMMAND_MODULES.get(_first_command(argv) or ""))
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except SanbosError as e:
        print(f"sanbos: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("sanbos: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0
    except OSError as e:  # an unexpected OS failure still gets one line, never a traceback
        where = f" ({e.filename})" if getattr(e, "filename", None) else ""
        print(f"sanbos: {e.strerror or e}{where}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
