"""core.inventory on a fabric: layout, membership, PV/VG identity, problems, in-use; the CLI listing.

PVs and VGs here are made by real LVM2 (through an offset loop device over the
LVM partition) so the listing is checked against what ``pvs`` says.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT, lvm_cmd
from core import gpt, inventory
from core.disk import Disk

MiB = 1024 * 1024


def sanbos(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "console.cli", *args], capture_output=True, text=True,
                          cwd=ROOT, env=dict(os.environ, PYTHONPATH=str(ROOT)))


def label(path: Path) -> list[gpt.Partition]:
    with Disk(path, writable=True, lock="exclusive") as d:
        return gpt.apply_layout(d)


def test_membership_without_lvm(make_fabric) -> None:
    f = make_fabric(disks=4)
    blank, labelled, ext4, foreign = f.luns
    label(labelled.path)
    subprocess.run(["mke2fs", "-q", "-F", "-t", "ext4", str(ext4.path)], check=True)
    subprocess.run(["parted", "-s", str(foreign.path), "mklabel", "gpt", "mkpart", "data", "1MiB", "20MiB"],
                   check=True)
    for scan in (True, False):
        by = {d.id: d for d in inventory.list_disks(f.root, lvm_scan=scan)}
        assert by[blank.wwn].membership == "free" and by[blank.wwn].signatures == []
        assert by[labelled.wwn].membership == "labelled" and by[labelled.wwn].table == "gpt"
        assert by[labelled.wwn].layout == "bios 1M,esp 32M,lvm 29M"
        assert [p.kind for p in by[labelled.wwn].partitions] == ["bios_grub", "esp", "lvm"]
        assert by[ext4.wwn].membership == "data" and by[ext4.wwn].signatures == ["an ext4 file system"]
        assert by[foreign.wwn].membership == "data" and by[foreign.wwn].layout == "other 19M"
        assert all(d.pv_uuid is None and d.problems == [] for d in by.values())


def test_pv_in_vg_orphan_and_damaged(make_fabric, loopdev) -> None:
    f = make_fabric(disks=3)
    ids = {}
    for lun in f.luns:
        p3 = label(lun.path)[2]
        dev = loopdev(lun.path, offset=p3.start, size=p3.size)
        ids[lun.wwn] = (dev, p3)
    (d0, _), (d1, _), (d2, p2) = ids.values()
    lvm_cmd("vgcreate", "-q", "invvg", d0, devices=[d0])
    lvm_cmd("pvcreate", "-q", d1, devices=[d1])
    lvm_cmd("pvcreate", "-q", d2, devices=[d2])
    uuids = {}
    for wwn, (dev, _) in ids.items():
        uuids[wwn] = lvm_cmd("pvs", "--noheadings", "-o", "pv_uuid", dev, devices=[dev]).stdout.strip()
    vg_uuid = lvm_cmd("vgs", "--noheadings", "-o", "vg_uuid", "invvg", devices=[d0]).stdout.strip()
    for dev, _ in ids.values():
        subprocess.run(["losetup", "-d", dev], check=True)
    a, b, c = f.luns
    # damage the third PV's label (a byte under its CRC)
    with Disk(c.path, writable=True) as d:
        off = p2.start + 512 + 500
        d.write(off, bytes([d.read(off, 1)[0] ^ 0xFF]))
    for scan in (True, False):
        by = {d.id: d for d in inventory.list_disks(f.root, lvm_scan=scan)}
        assert (by[a.wwn].membership, by[a.wwn].vg_name, by[a.wwn].vg_uuid, by[a.wwn].pv_uuid) == \
               ("pv:invvg", "invvg", vg_uuid, uuids[a.wwn]), scan
        assert (by[b.wwn].membership, by[b.wwn].vg_name, by[b.wwn].pv_uuid) == ("orphan-pv", None, uuids[b.wwn])
        assert by[c.wwn].membership == "damaged-pv" and by[c.wwn].pv_uuid == uuids[c.wwn]
    # select by PV UUID, with or without dashes
    disks = inventory.list_disks(f.root)
    assert inventory.find(disks, uuids[a.wwn]).id == a.wwn
    assert inventory.find(disks, uuids[b.wwn].replace("-", "")[:8]).id == b.wwn
    # the CLI table shows them
    r = sanbos("disks", "--fabric", str(f.root))
    assert r.returncode == 0
    lines = {ln.split()[0]: ln for ln in r.stdout.splitlines()[1:]}
    assert "pv:invvg" in lines[a.wwn] and uuids[a.wwn] in lines[a.wwn]
    assert "orphan-pv" in lines[b.wwn] and "damaged-pv" in lines[c.wwn]


def test_damaged_gpt_is_a_problem_not_a_crash(make_fabric) -> None:
    f = make_fabric(disks=1)
    lun = f.luns[0]
    label(lun.path)
    with Disk(lun.path, writable=True) as d:
        for off in (512 + 40, d.size - 512 + 40):
            d.write(off, bytes([d.read(off, 1)[0] ^ 0xFF]))
    [info] = inventory.list_disks(f.root)
    assert info.membership == "data" and info.table == "gpt"
    assert info.problems and "both GPT headers are damaged" in info.problems[0]
    assert lun.wwn in info.problems[0]
    r = sanbos("disks", "--fabric", str(f.root), "--json")
    assert r.returncode == 0 and "both GPT headers are damaged" in json.loads(r.stdout)[0]["problems"][0]


def test_in_use_by_a_lock_holder(make_fabric) -> None:
    f = make_fabric(disks=2)
    holder = subprocess.Popen([sys.executable, "-c",
                               f"import sys; sys.path.insert(0, {str(ROOT)!r}); from core.disk import Disk; "
                               f"d = Disk({str(f.luns[1].path)!r}, writable=True, lock='exclusive'); "
                               "print('ok', flush=True); sys.stdin.readline()"],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "ok"
        by = {d.id: d for d in inventory.list_disks(f.root)}
        assert by[f.luns[0].wwn].in_use is None
        assert by[f.luns[1].wwn].in_use == f"locked by PID {holder.pid} (write)"
        r = sanbos("disks", "--fabric", str(f.root))
        assert "free [in use]" in r.stdout
    finally:
        holder.stdin.write("\n")
        holder.stdin.flush()
        holder.wait(timeout=10)


def test_json_is_complete(make_fabric) -> None:
    f = make_fabric(disks=2)
    label(f.luns[0].path)
    r = sanbos("disks", "--fabric", str(f.root), "--json")
    assert r.returncode == 0, r.stderr
    rows = json.loads(r.stdout)
    assert [x["id"] for x in rows] == [l.wwn for l in f.luns]
    x = rows[0]
    assert x["wwn"] == f.luns[0].wwn and x["serial"] == f.luns[0].serial
    assert x["addresses"] == [f.luns[0].address] and x["size"] == 64 * MiB
    assert x["partitions"][2] == {"number": 3, "name": "sanbos-lvm", "start": 34 * MiB, "size": 29 * MiB,
                                  "kind": "lvm", "type_guid": gpt.LVM_GUID}
    for key in ("pv_uuid", "vg_name", "vg_uuid", "membership", "in_use", "read_only", "layout", "problems"):
        assert key in x
    r = sanbos("disks", "--fabric", str(f.root))
    head = r.stdout.splitlines()[0].split()
    assert head[:3] == ["ID", "WWN", "SAN"] and "MEMBERSHIP" in head and head[-2:] == ["PV", "UUID"]
