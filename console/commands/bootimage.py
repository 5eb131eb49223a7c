"""``sanbos bootimage build|demo|inspect``: the maintenance boot image."""

from __future__ import annotations

import argparse
import json
import sys

from core import bootimage
from core.errors import UsageError
from core.units import human


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("bootimage", help="build and inspect the maintenance boot image")
    bsub = p.add_subparsers(dest="bootimage_cmd", metavar="ACTION", required=True)

    b = bsub.add_parser("build", help="pack a kernel and an initramfs into a boot image")
    b.add_argument("--kernel", metavar="VMLINUZ", help="an x86 Linux bzImage")
    b.add_argument("--initrd", metavar="INITRD", help="an initramfs (gzip/xz/zstd or plain cpio)")
    b.add_argument("--from-iso", metavar="ISO", help="take kernel and initramfs from a bootable Linux ISO")
    b.add_argument("--maintenance", action="store_true",
                   help="the generic maintenance image: Debian kernel + an initramfs with Python and sanbos "
                        "that starts 'sanbos console' on the serial console and on tty1")
    b.add_argument("--cmdline", default=None,
                   help=f"kernel command line (default: {bootimage.DEFAULT_CMDLINE!r})")
    b.add_argument("-o", "--output", required=True, metavar="IMAGE")
    b.add_argument("--json", action="store_true")
    b.set_defaults(func=_build)

    d = bsub.add_parser("demo", help="build the demo image: Debian kernel + busybox banner initramfs")
    d.add_argument("-o", "--output", required=True, metavar="IMAGE")
    d.add_argument("--cmdline", default=None)
    d.add_argument("--json", action="store_true")
    d.set_defaults(func=_demo)

    i = bsub.add_parser("inspect", help="show a boot image's manifest and check its files")
    i.add_argument("image")
    i.add_argument("--json", action="store_true")
    i.set_defaults(func=_inspect)


def _show(info: bootimage.ImageInfo, as_json: bool) -> int:
    if as_json:
        print(json.dumps(info.to_json(), indent=2))
        return 0 if info.ok else 1
    m = info.manifest
    print(f"boot image {info.path}: {human(info.size)}, sha256 {info.sha256}")

    def part(key: str) -> dict:   # a damaged manifest is listed under PROBLEM, and still printed
        v = m.get(key)
        return v if isinstance(v, dict) else {}

    def size(d: dict) -> str:
        return human(d["size"]) if isinstance(d.get("size"), int) else "?"
    k, r = part("kernel"), part("initrd")
    if k:
        print(f"  kernel  {k.get('version') or '?'}  {size(k)}  {k.get('sha256', '')}")
    if r:
        print(f"  initrd  {r.get('format', '?')}  {size(r)}  {r.get('sha256', '')}")
    print(f"  cmdline {m.get('cmdline', '')}")
    if m.get("source"):
        print(f"  source  {m['source']}")
    c = part("contents")
    if isinstance(c.get("debian_packages"), dict):
        debs = c["debian_packages"]
        print(f"  root    {c.get('files_from_packages', '?')} files from {len(debs)} Debian packages: "
              + ", ".join(f"{n} {v}" for n, v in sorted(debs.items())))
    if isinstance(c.get("python_distributions"), dict):
        print("  python  " + ", ".join(f"{n} {v}" for n, v in sorted(c["python_distributions"].items())))
    for p in info.problems:
        print(f"  PROBLEM {p}", file=sys.stderr)
    return 0 if info.ok else 1


def _progress(msg: str, frac: float) -> None:
    print(f"[{int(frac * 100):3d}%] {msg}", file=sys.stderr, flush=True)


def _build(args: argparse.Namespace) -> int:
    if args.maintenance:
        if args.kernel or args.initrd or args.from_iso:
            raise UsageError("--maintenance builds its own kernel and initramfs; leave out --kernel/--initrd/--from-iso")
        from core import guest
        kwargs = {"cmdline": args.cmdline} if args.cmdline else {}
        info = guest.build_maintenance_image(args.output, progress=None if args.json else _progress, **kwargs)
    elif args.from_iso:
        if args.kernel or args.initrd:
            raise UsageError("give either --from-iso or --kernel and --initrd, not both")
        info = bootimage.build_from_iso(args.from_iso, args.cmdline, args.output)
    else:
        if not (args.kernel and args.initrd):
            raise UsageError("bootimage build needs --kernel and --initrd (or --from-iso)")
        info = bootimage.build(args.kernel, args.initrd, args.cmdline, args.output)
    return _show(info, args.json)


def _demo(args: argparse.Namespace) -> int:
    info = bootimage.demo(args.output, cmdline=args.cmdline, progress=None if args.json else _progress)
    return _show(info, args.json)


def _inspect(args: argparse.Namespace) -> int:
    return _show(bootimage.inspect(args.image), args.json)
