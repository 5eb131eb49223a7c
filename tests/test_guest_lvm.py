"""Proof with a real kernel: a QEMU guest activates sanbos's volume groups.

This host has no device-mapper.  ``core.guest`` boots the Debian kernel
(TCG) with busybox, the kernel's own modules and the host's ``lvm`` and
``e2fsck``; the guest runs real LVM2 activation (raid1 included) on the
disks sanbos wrote, mounts the repository read-only, and reports.  The test
compares the guest's report with what sanbos itself says.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
from pathlib import Path

import pytest

from core import guest

pytestmark = [pytest.mark.qemu, pytest.mark.slow]

MiB = 1024 * 1024


@pytest.fixture(scope="session")
def kparts():
    if shutil.which("qemu-system-x86_64") is None:
        pytest.skip("qemu-system-x86_64 is not installed (scripts/setup.sh installs it)")
    for tool in ("apt-get", "dpkg-deb", "depmod", "modprobe", "lvm", "e2fsck"):
        try:
            guest.which(tool)
        except guest.SanbosError as e:
            pytest.skip(str(e))
    try:
        return guest.kernel_parts()
    except guest.SanbosError as e:
        pytest.skip(f"the Debian kernel cannot be fetched here: {e}")


# --------------------------------------------------------------------------
# helpers: the guest's report


def lvm_json(text: str, kind: str) -> list[dict]:
    """Rows of an ``lvm ... --reportformat json`` output (``kind``: lv, pv, vg, seg)."""
    start = text.find("{")
    if start < 0:
        raise AssertionError(f"no JSON report in guest output:\n{text}")
    data = json.loads(text[start:text.rfind("}") + 1])
    rows = []
    for rep in data["report"]:
        rows += rep.get(kind, [])
    return rows


def kv_lines(text: str) -> dict[str, str]:
    out = {}
    for line in text.splitlines():
        if "=" in line:
            k, v = line.split("=", 1)
            out[k.strip()] = v.strip()
    return out


def sha_lines(text: str) -> dict[str, str]:
    """``sha256sum`` output -> {path without ./: hex}."""
    out = {}
    for line in text.splitlines():
        m = re.match(r"^([0-9a-f]{64})\s+\*?(?:\./)?(.+)$", line.strip())
        if m:
            out[m.group(2)] = m.group(1)
    return out


REPORT_SCRIPT = r"""
VG={vg}
echo "==disks=="
for d in /sys/block/vd*; do n=${{d##*/}}; echo "$n $(cat $d/serial 2>/dev/null) $(cat $d/size)"; done
echo "==pvs=="
lvm pvs --reportformat json -o pv_name,pv_uuid,vg_name,pv_attr --units b
echo "==import=="
attr=$(lvm vgs --noheadings -o vg_attr $VG 2>/dev/null | tr -d ' ')
echo "attr_before=$attr"
case "$attr" in ??x*) lvm vgimport $VG >/dev/null; echo "vgimport=$?";; *) echo "vgimport=skipped";; esac
echo "==activate=="
lvm vgchange -ay {activation} $VG >&2
echo "vgchange=$?"
lvm vgmknodes $VG >&2
echo "vgmknodes=$?"
echo "==lvs=="
lvm lvs -a --reportformat json --units b -o lv_name,vg_name,segtype,lv_size,lv_attr,lv_uuid,copy_percent,seg_start_pe,seg_size_pe,seg_pe_ranges,devices $VG
echo "==dmtable=="
dmsetup table | sort
echo "==mapper=="
ls /dev/mapper
{extra}
echo "==end=="
"""

FS_SCRIPT = r"""
echo "==fsck:{lv}=="
e2fsck -fn /dev/mapper/$VG-{lv} >/dev/null 2>&1
echo "e2fsck=$?"
mkdir -p /mnt/{lv}
mount -t ext4 -o ro /dev/mapper/$VG-{lv} /mnt/{lv}
echo "mount=$?"
echo "==sha256:{lv}=="
cd /mnt/{lv} && find . -type f | sort | while read -r f; do sha256sum "$f"; done
cd /
umount /mnt/{lv}
"""


def guest_script(vg: str, fs_lvs: list[str], activation: str = "") -> str:
    extra = "".join(FS_SCRIPT.format(lv=lv) for lv in fs_lvs)
    return REPORT_SCRIPT.format(vg=vg, activation=activation, extra=extra)


# --------------------------------------------------------------------------
# the guest itself


def test_guest_sees_gpt_partitions_and_device_mapper(kparts, make_fabric, tmp_path):
    """The Debian guest kernel reads GPT (this host's cannot) and has dm-raid."""
    from core import gpt
    from core.disk import Disk

    fab = make_fabric(disks=2, size=96 * MiB)
    for lun in fab.luns:
        with Disk(lun.path, writable=True, lock="exclusive") as d:
            gpt.apply_layout(d)
    script = r"""
for d in /sys/block/vd*; do n=${d##*/}
  echo "disk $n serial=$(cat $d/serial) size=$(cat $d/size)"
  for p in $d/${n}[0-9]*; do echo "part ${p##*/} start=$(cat $p/start) size=$(cat $p/size)"; done
done
echo "control=$(test -c /dev/mapper/control && echo yes || echo no)"
dmsetup targets | sed 's/^/target /'
"""
    r = guest.run_lvm_guest([guest.GuestDisk(l.path, l.serial) for l in fab.luns], script, 240,
                            kernel=kparts, workdir=tmp_path / "guest")
    assert r.rc == 0, r.console
    lines = r.report.splitlines()
    for i, lun in enumerate(fab.luns):
        name = f"vd{'ab'[i]}"
        assert f"disk {name} serial={lun.serial} size={lun.size // 512}" in lines
        for p in gpt.plan_layout(lun.size):
            assert f"part {name}{p.number} start={p.start // 512} size={p.size // 512}" in lines, r.report
    assert "control=yes" in lines
    targets = {l.split()[1] for l in lines if l.startswith("target ")}
    assert {"raid", "mirror", "linear", "striped"} <= targets, r.report
    assert r.seconds < 120
