"""dm-raid metadata in the raid1 ``_rmeta_`` sub-LVs.

The unit test holds bytes the Debian 6.1 kernel's dm-raid wrote into the
rmeta LVs of a 2-leg, 8 MiB raid1 LV made by sanbos (region 4096 sectors),
after a real activation in a QEMU guest; our writer must produce the same
bytes.  The guest tests (slow, QEMU TCG) prove that real LVM2 + dm-raid
activate our raid1 LVs in sync, and degraded with a disk missing, without
the LV ever having been activated before.
"""

from __future__ import annotations

import hashlib
import os
import shutil

import pytest

from core.lvm.dmraid import BitmapSuperblock, DmRaidSuperblock, clean_bits, rmeta_image

# what the kernel wrote (events 19), leg 1: dm-raid superblock (160 bytes) and bitmap superblock (80 bytes)
KERNEL_SB1 = bytes.fromhex(
    "446d526401000000020000000100000013000000000000000000000000000000ffffffffffffffffffffffffffffffff"
    "01000000000000000000000000000000ffffffffffffffff010000000000000000000000000000000040000000000000"
    "000000000000000000000000000000000040000000000000000000000000000000000000000000000000000000000000"
    "00000000000000000000000000000000")
KERNEL_BM = bytes.fromhex(
    "6269746d0400000000000000000000000000000000000000130000000000000001000000000000000040000000000000"
    "0000000000002000050000000000000000000000000000000000000000000000")


def test_rmeta_matches_what_the_kernel_wrote():
    img = rmeta_image(2, 1, 16384, 4096, events=19)
    assert img[:160] == KERNEL_SB1
    assert img[160:4096] == bytes(4096 - 160)
    assert img[4096:4096 + 80] == KERNEL_BM
    assert img[4096 + 80:4096 + 256] == bytes(176)
    assert img[4096 + 256:4096 + 512] == b"\xf0" + b"\xff" * 255        # 4 clean regions
    leg0 = rmeta_image(2, 0, 16384, 4096, events=19)
    assert leg0[12:16] == b"\0\0\0\0" and leg0[:12] == img[:12] and leg0[16:] == img[16:]


def test_superblock_round_trip_and_bits():
    sb = DmRaidSuperblock(num_devices=3, array_position=2, events=7, sectors=99, array_sectors=99)
    assert DmRaidSuperblock.parse(sb.pack()) == sb
    bm = BitmapSuperblock(sync_size=99, chunksize=1 << 21, events=7)
    assert BitmapSuperblock.parse(bm.pack()) == bm
    assert clean_bits(4) == b"\xf0" + b"\xff" * 255
    assert clean_bits(2048 * 8 + 1)[:2048] == bytes(2048) and clean_bits(2048 * 8 + 1)[2048] == 0xFE
    assert (256 + len(clean_bits(5000))) % 512 == 0


# -- real dm-raid in a guest ---------------------------------------------------------------
GUEST_SCRIPT = r"""
lvm vgchange -ay {mode} gvg >&2; echo "vgchange=$?"
lvm vgmknodes gvg >&2
echo "==lvs=="
lvm lvs -a --noheadings -o lv_name,copy_percent,lv_attr gvg
echo "==status=="
dmsetup status gvg-r1
echo "==sha=="
sha256sum /dev/mapper/gvg-r1 | cut -d' ' -f1
echo "==end=="
lvm vgchange -an gvg >&2; echo "deactivate=$?"
"""


@pytest.fixture(scope="module")
def kparts():
    if shutil.which("qemu-system-x86_64") is None:
        pytest.skip("qemu-system-x86_64 is not installed (scripts/setup.sh installs it)")
    from core import guest
    try:
        return guest.kernel_parts()
    except guest.SanbosError as e:
        pytest.skip(f"the Debian kernel for the guest cannot be fetched here: {e}")


def _raid_fabric(make_fabric, legs: int = 2):
    from core import vg as vgops
    from core.disk import DiskRef
    f = make_fabric(disks=3, size=128 << 20)
    refs = [DiskRef(l.wwn, l.path) for l in f.luns]
    vgops.create("gvg", refs)
    vgops.lv_create("gvg", refs, "r1", "8M", type="raid1", pvs=[r.id for r in refs[:legs]])
    data = os.urandom(8 << 20)
    with vgops.open_vg("gvg", refs, write=True) as g:
        g.lv_io("r1").write(data)
    return f, refs, hashlib.sha256(data).hexdigest()


def _run(kparts, f, skip, mode, tmp_path, name):
    from core import guest
    disks = [guest.GuestDisk(l.path, l.serial) for i, l in enumerate(f.luns) if i != skip]
    return guest.run_lvm_guest(disks, GUEST_SCRIPT.format(mode=mode), 300, kernel=kparts,
                               workdir=tmp_path / name)


@pytest.mark.slow
def test_never_activated_raid1_is_in_sync_and_activates_degraded(kparts, make_fabric, tmp_path):
    f, refs, sha = _raid_fabric(make_fabric)
    r = _run(kparts, f, None, "", tmp_path, "all")
    assert "vgchange=0" in r.report, r.console[-2000:]
    assert "100.00" in r.section("lvs") and " AA " in r.section("status"), r.report
    assert r.section("sha").strip() == sha
    for missing in (0, 1):
        r = _run(kparts, f, missing, "--activationmode degraded", tmp_path, f"miss{missing}")
        assert "vgchange=0" in r.report, r.console[-2000:]
        assert r.section("sha").strip() == sha, (missing, r.report, r.console[-1500:])


@pytest.mark.slow
def test_leg_added_and_removed_then_degraded(kparts, make_fabric, tmp_path):
    from core import vg as vgops
    f, refs, sha = _raid_fabric(make_fabric)
    vgops.raid1_add_leg("gvg", refs, "r1", refs[2].id)
    vgops.raid1_remove_leg("gvg", refs, "r1", refs[0].id)
    r = _run(kparts, f, 1, "--activationmode degraded", tmp_path, "after")
    assert "vgchange=0" in r.report, r.console[-2000:]
    assert r.section("sha").strip() == sha, (r.report, r.console[-1500:])
