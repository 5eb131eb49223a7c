"""GRUB's lvm module reads our LVs byte for byte (grub-fstest, no root needed)."""

from __future__ import annotations

import os
import subprocess

from conftest import require_tool
from lvm_helpers import refs_of

from core import vg as vgops


def grub_cmp(images, device: str, local) -> subprocess.CompletedProcess:
    """``grub-fstest IMG... cmp '(lvm/VG-LV)0+N' LOCAL``: the whole LV as a GRUB blocklist."""
    sectors = os.path.getsize(local) // 512
    cmd = ["grub-fstest", "-c", str(len(images)), *map(str, images), "cmp", f"{device}0+{sectors}", str(local)]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120)


def test_grub_reads_linear_and_each_raid1_leg(make_fabric, tmp_path):
    require_tool("grub-fstest")
    f = make_fabric(disks=2, size=128 << 20)
    refs = refs_of(f)
    vgops.create("grubvg", refs)                      # GPT layout, PV in partition 3
    vgops.lv_create("grubvg", refs, "lin-ear", "12M", pvs=[refs[1].id])
    vgops.lv_create("grubvg", refs, "bootlv", "8M", type="raid1", pvs=[r.id for r in refs])
    payloads = {}
    with vgops.open_vg("grubvg", refs, write=True) as g:
        for name in ("lin-ear", "bootlv"):
            io = g.lv_io(name)
            payloads[name] = os.urandom(io.size)
            io.write(payloads[name])
        # each leg on its own disk holds the same bytes; a leg can be named by its disk
        for k, ref in enumerate(refs):
            assert g.leg_on("bootlv", ref.id) == k
            assert g.lv_io("bootlv", disk=ref.id).read() == payloads["bootlv"]
            assert all(p == str(ref.path) for p, _, _ in g.lv_ranges("bootlv", leg=k))
    imgs = [r.path for r in refs]
    for name, data in payloads.items():
        (tmp_path / name).write_bytes(data)
    # linear; '-' inside names is doubled in GRUB device names
    r = grub_cmp(imgs, "(lvm/grubvg-lin--ear)", tmp_path / "lin-ear")
    assert r.returncode == 0, r.stdout + r.stderr
    # the raid1 LV and each of its legs
    r = grub_cmp(imgs, "(lvm/grubvg-bootlv)", tmp_path / "bootlv")
    assert r.returncode == 0, r.stdout + r.stderr
    for k in range(2):
        r = grub_cmp(imgs, f"(lvm/grubvg-bootlv_rimage_{k})", tmp_path / "bootlv")
        assert r.returncode == 0, r.stdout + r.stderr
    # a boot disk alone is enough for GRUB to read the raid1 LV
    for img in imgs:
        r = grub_cmp([img], "(lvm/grubvg-bootlv)", tmp_path / "bootlv")
        assert r.returncode == 0, f"{img}: " + r.stdout + r.stderr
    # a changed byte is noticed (the comparison is real)
    bad = bytearray(payloads["lin-ear"])
    bad[12345] ^= 0xFF
    (tmp_path / "bad").write_bytes(bytes(bad))
    r = grub_cmp(imgs, "(lvm/grubvg-lin--ear)", tmp_path / "bad")
    assert r.returncode != 0 or "differ" in (r.stdout + r.stderr).lower()


def test_grub_reads_leg_added_later(make_fabric, tmp_path):
    require_tool("grub-fstest")
    f = make_fabric(disks=3, size=128 << 20)
    refs = refs_of(f)
    vgops.create("legvg", refs)
    vgops.lv_create("legvg", refs, "bootlv", "8M", type="raid1", pvs=[refs[0].id, refs[1].id])
    data = os.urandom(8 << 20)
    with vgops.open_vg("legvg", refs, write=True) as g:
        g.lv_io("bootlv").write(data)
    vgops.raid1_add_leg("legvg", refs, "bootlv", refs[2].id)
    vgops.raid1_remove_leg("legvg", refs, "bootlv", refs[0].id)
    (tmp_path / "d").write_bytes(data)
    imgs = [r.path for r in refs]
    for k in range(2):
        r = grub_cmp(imgs, f"(lvm/legvg-bootlv_rimage_{k})", tmp_path / "d")
        assert r.returncode == 0, r.stdout + r.stderr
    r = grub_cmp([refs[2].path], "(lvm/legvg-bootlv)", tmp_path / "d")
    assert r.returncode == 0, r.stdout + r.stderr
