"""``sanbos vm run MACHINE --mode MODE``: boot a machine in QEMU from its boot list.

The machine's disks come in the order of its boot list for MODE (firmware
``bootindex``); install-VG disks are exported read-only over NBD on
127.0.0.1 (one ``qemu-nbd -r`` per disk, stopped by PID on exit).
"""

from __future__ import annotations

import argparse

from core import vm

from .install import progress
from .machine import registry_args


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("vm", help="run machines in QEMU from their boot lists")
    vs = p.add_subparsers(dest="vm_cmd", metavar="ACTION", required=True)
    r = vs.add_parser("run", help="boot a machine (serial console on this terminal)")
    r.add_argument("machine", metavar="MACHINE")
    r.add_argument("--mode", "-m", choices=vm.MODES, required=True, help="which boot list drives the firmware")
    r.add_argument("--kvm", action="store_true", help="use KVM (default: TCG, which always works here)")
    r.add_argument("--uefi", action="store_true", help="OVMF instead of SeaBIOS")
    r.add_argument("--log", metavar="FILE", help="serial console to FILE instead of the terminal")
    r.add_argument("--memory", type=int, default=256, metavar="MiB")
    r.add_argument("--until", metavar="REGEX", help="stop the machine once the console shows REGEX")
    r.add_argument("--timeout", type=float, default=None, metavar="S")
    r.add_argument("--dry-run", action="store_true", help="show the disks and boot order; start nothing")
    registry_args(r, disks=False)
    from console.cli import fabric_arg
    fabric_arg(r)
    r.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    fw = "uefi" if args.uefi else "bios"
    if args.dry_run:
        print(vm.plan_machine(args.machine, args.mode, fabric=args.fabric, registry=args.registry, firmware=fw))
        return 0
    rc = vm.run_machine(args.machine, args.mode, fabric=args.fabric, registry=args.registry,
                        serial="log" if args.log else "stdio", serial_log=args.log, kvm=args.kvm,
                        firmware=fw, memory=args.memory, timeout=args.timeout, until=args.until,
                        progress=progress)
    return 0 if rc == 0 else 1
