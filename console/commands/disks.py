"""``sanbos disks`` (the listing) and ``sanbos disk label`` (the install-VG GPT layout)."""

from __future__ import annotations

import argparse
import json
import sys

from console.cli import fabric_arg
from core.units import human


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("disks", help="list disks: unique ID, WWN, SAN address, size, layout, membership")
    fabric_arg(p)
    p.add_argument("--json", action="store_true", help="every detail as JSON")
    p.set_defaults(func=_list)

    d = sub.add_parser("disk", help="act on one disk (by unique ID or unique prefix)")
    dsub = d.add_subparsers(dest="disk_cmd", metavar="ACTION", required=True)
    lab = dsub.add_parser("label", help="write the install-VG GPT layout (bios_grub, ESP, LVM)")
    lab.add_argument("id", metavar="ID", help="the disk's unique ID or a unique prefix")
    lab.add_argument("--force", action="append", default=[], metavar="ID",
                     help="write even though the disk is not blank; repeat the disk's ID here")
    lab.add_argument("--dry-run", action="store_true", help="print the plan and the safety verdict; write nothing")
    fabric_arg(lab)
    lab.set_defaults(func=_label)


def _list(args: argparse.Namespace) -> int:
    from core import inventory
    disks = inventory.list_disks(args.fabric)
    if args.json:
        json.dump([d.to_json() for d in disks], sys.stdout, indent=1)
        sys.stdout.write("\n")
        return 0
    rows = [("ID", "WWN", "SAN ADDRESS", "SIZE", "LAYOUT", "MEMBERSHIP", "PV UUID")]
    for d in disks:
        addr = d.address + (f" (+{len(d.addresses) - 1})" if len(d.addresses) > 1 else "")
        member = d.membership + (" [in use]" if d.in_use else "") + (" [read-only]" if d.read_only else "")
        rows.append((d.id, d.wwn or "-", addr or "-", human(d.size), d.layout, member, d.pv_uuid or "-"))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    out = []
    for r in rows:
        out.append("  ".join(c.rjust(w) if i == 3 else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths))).rstrip())
    print("\n".join(out))
    if not disks:
        print("(no disks)")
    return 0


def _label(args: argparse.Namespace) -> int:
    from core import gpt, inventory, safety
    from core.errors import SanbosError, SpaceError, UnsafeDiskError
    disks = inventory.list_disks(args.fabric, lvm_scan=False)
    target = inventory.find(disks, args.id)
    # --force takes the full ID, or a prefix that names this very disk
    forced = []
    for f in args.force:
        try:
            forced.append(inventory.find(disks, f).id)
        except SanbosError:
            forced.append(f)
    ref = target.ref
    if args.dry_run:
        try:
            plan = gpt.plan_layout(target.size)
        except SpaceError:
            plan = []
        print(f"disk {ref.id} ({ref.path}), {human(target.size)}: plan (dry run, nothing written):")
        if plan:
            print(gpt.describe(plan))
        try:   # one assessment: the verdict, and what forcing would overwrite
            overridden = safety.require_safe(ref, forced)
        except UnsafeDiskError as e:
            print(f"sanbos: {e}", file=sys.stderr)
            return 1
        if overridden:
            print(f"forced with --force {ref.id}; would overwrite: " + "; ".join(overridden))
        else:
            print("the disk is blank: the layout would be written")
        return 0
    with ref.open(writable=True, lock="exclusive") as disk:
        overridden = safety.require_safe(ref, forced)
        parts = gpt.apply_layout(disk)
    if overridden:
        print(f"forced: overwrote what disk {ref.id} held: " + "; ".join(overridden))
    print(f"disk {ref.id} ({ref.path}) labelled:")
    print(gpt.describe(parts))
    return 0
