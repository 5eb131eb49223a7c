"""The CLI shell: lazy command table, exit codes, no tracebacks."""

from __future__ import annotations

import subprocess
import sys

from console import cli


def test_command_table_matches_full_registration() -> None:
    full = cli.build_parser()
    action = next(a for a in full._actions if a.__class__.__name__ == "_SubParsersAction")
    registered = set(action.choices)
    assert registered == set(cli.COMMAND_MODULES), "update console.cli.COMMAND_MODULES"
    for name, module in cli.COMMAND_MODULES.items():
        one = cli.build_parser(module)
        sub = next(a for a in one._actions if a.__class__.__name__ == "_SubParsersAction")
        assert name in sub.choices


def test_usage_error_exit_2_without_traceback() -> None:
    res = subprocess.run([sys.executable, "-m", "console.cli", "vg", "frobnicate"],
                         capture_output=True, text=True)
    assert res.returncode == 2
    assert "Traceback" not in res.stderr and "invalid choice" in res.stderr


def test_refusal_exit_1_one_line(tmp_path) -> None:
    res = subprocess.run([sys.executable, "-m", "console.cli", "disks", "--fabric", str(tmp_path / "nope")],
                         capture_output=True, text=True)
    assert res.returncode == 1
    assert res.stderr.startswith("sanbos: ") and "not a fabric directory" in res.stderr
    assert "Traceback" not in res.stderr


def test_help_lists_every_command() -> None:
    res = subprocess.run([sys.executable, "-m", "console.cli", "--help"], capture_output=True, text=True)
    assert res.returncode == 0
    for name in cli.COMMAND_MODULES:
        assert name in res.stdout
