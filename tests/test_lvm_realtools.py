"""Real LVM2 is the judge: our VGs on loop devices, and VGs that LVM2 made, read by us."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from conftest import lvm_cmd, require_root, require_tool
from lvm_helpers import (attach_pvs, clean_output, dashed, image, lvs_rows, make_fabric_vg, our_rows,
                         pvs_table, vg_field)

from core import vg as vgops
from core.disk import DiskRef
from core.errors import LVMError
from core.lvm import text as lvmtext
from core.lvm.model import Segment, VG, new_lv
from core.lvm.scan import scan

pytestmark = pytest.mark.usefixtures("_root")


@pytest.fixture
def _root():
    require_root()
    require_tool("lvm")


def test_our_vg_is_clean_for_real_lvm(make_fabric, loopdev):
    f, refs = make_fabric_vg(make_fabric, "ourvg", disks=2)
    vgops.lv_create("ourvg", refs, "inst", "20M", pvs=[refs[1].id])
    vgops.lv_create("ourvg", refs, "bootlv", "8M", type="raid1", pvs=[r.id for r in refs])
    vgops.lv_create("ourvg", refs, "spread", "300M")       # spans both PVs: two segments
    devmap = attach_pvs(loopdev, refs)
    devs = list(devmap.values())
    res = scan(refs)
    info = res.vgs["ourvg"]

    pvs = pvs_table(devs)
    assert {u for u, _ in pvs.values()} == {dashed(u) for u in info.pvs}
    assert {v for _, v in pvs.values()} == {"ourvg"}
    assert vg_field(devs, "ourvg", "vg_uuid") == dashed(info.uuid)
    assert int(vg_field(devs, "ourvg", "seqno")) == info.seqno == 4
    assert lvs_rows(devs) == our_rows(res, devmap)
    assert any(r[1] == "bootlv_rmeta_1" for r in lvs_rows(devs))

    ck = lvm_cmd("vgck", "ourvg", devices=devs)
    assert clean_output(ck.stdout + ck.stderr) == []
    for dev in devs:
        d = lvm_cmd("pvck", "--dump", "headers", dev, devices=None)
        out = d.stdout + d.stderr
        assert "CHECK" not in out, out
        assert f"vgname ourvg seqno {info.seqno}" in out
        m = re.search(r"pv_header.pv_uuid (\S+)", out)
        assert m and m.group(1) in info.pvs
        assert "pv_header_extension.flags 1" in out
        md = lvm_cmd("pvck", "--dump", "metadata_all", dev, devices=None)
        assert "unexpected" not in (md.stdout + md.stderr).lower()


def test_real_vgexport_vgimport_and_ours(make_fabric, loopdev):
    f, refs = make_fabric_vg(make_fabric, "xvg", disks=2)
    vgops.lv_create("xvg", refs, "data", "12M")
    devs = list(attach_pvs(loopdev, refs).values())
    lvm_cmd("vgexport", "xvg", devices=devs)
    info = scan(refs).vgs["xvg"]
    assert info.vg.exported and all("EXPORTED" in p.status for p in info.vg.pvs)
    with pytest.raises(LVMError, match="exported"):
        vgops.lv_create("xvg", refs, "more", "4M")
    lvm_cmd("vgimport", "xvg", devices=devs)
    assert not scan(refs).vgs["xvg"].vg.exported
    # ours -> real
    vgops.export("xvg", refs)
    assert vg_field(devs, "xvg", "vg_attr")[2] == "x"
    pv_attr = lvm_cmd("pvs", "--noheadings", "-o", "pv_attr", devices=devs).stdout.split()
    assert all(a[1] == "x" for a in pv_attr), pv_attr
    lvm_cmd("vgimport", "xvg", devices=devs)
    assert vg_field(devs, "xvg", "vg_attr")[2] == "-"
    vgops.export("xvg", refs)
    vgops.import_("xvg", refs)
    ck = lvm_cmd("vgck", "xvg", devices=devs)
    assert clean_output(ck.stdout + ck.stderr) == []
    assert vg_field(devs, "xvg", "vg_attr")[2] == "-"


def test_we_read_what_real_lvm_changed(make_fabric, loopdev):
    f, refs = make_fabric_vg(make_fabric, "chvg", disks=2)
    vgops.lv_create("chvg", refs, "first", "8M")
    devmap = attach_pvs(loopdev, refs)
    devs = list(devmap.values())
    lvm_cmd("lvcreate", "--driverloaded", "n", "-an", "-Zn", "-L", "16m", "-n", "theirs", "chvg", devices=devs)
    lvm_cmd("vgrename", "chvg", "renamed", devices=devs)
    res = scan(refs)
    assert "renamed" in res.vgs and "chvg" not in res.vgs
    assert res.vgs["renamed"].healthy, res.problems
    assert lvs_rows(devs) == our_rows(res, devmap)
    # and we can keep committing on top of LVM's copy
    seq = vgops.lv_create("renamed", refs, "ours2", "4M")
    assert int(vg_field(devs, "renamed", "seqno")) == seq
    assert lvs_rows(devs) == our_rows(scan(refs), devmap)
    ck = lvm_cmd("vgck", "renamed", devices=devs)
    assert clean_output(ck.stdout + ck.stderr) == []


def _real_vg(tmp_path: Path, loopdev, mdasize: str | None = None):
    a = image(tmp_path / "ra.img", 64 << 20)
    b = image(tmp_path / "rb.img", 64 << 20)
    da, db = loopdev(a), loopdev(b)
    devs = [da, db]
    extra = ["--metadatasize", mdasize, "--dataalignment", "64k"] if mdasize else []
    lvm_cmd("pvcreate", "--pvmetadatacopies", "2", *extra, da, devices=devs)
    lvm_cmd("pvcreate", "--bootloaderareasize", "1m", *extra, db, devices=devs)
    lvm_cmd("vgcreate", "realvg", da, db, devices=devs)
    refs = [DiskRef("naa.ra", a), DiskRef("naa.rb", b)]
    devmap = {(str(a), 0): da, (str(b), 0): db}
    return refs, devs, devmap


def test_real_lvm_vg_with_two_mdas_ba_raid1_and_mirror(tmp_path, loopdev):
    refs, devs, devmap = _real_vg(tmp_path, loopdev)
    lvm_cmd("lvcreate", "--driverloaded", "n", "-an", "-Zn", "-L", "8m", "-n", "lin", "realvg", devs[0],
            devices=devs)
    lvm_cmd("lvcreate", "--driverloaded", "n", "-an", "-Zn", "-i", "2", "-I", "64k", "-L", "8m", "-n", "str",
            "realvg", devices=devs)
    # raid1 and mirror LVs cannot be made without device-mapper: write them into a backup file
    bk = tmp_path / "bk"
    lvm_cmd("vgcfgbackup", "-f", str(bk), "realvg", devices=devs)
    tree = lvmtext.parse(bk.read_bytes(), "backup")
    vg = VG.from_tree(tree, "backup")
    from core.lvm import alloc
    subs = []
    for k, pv in enumerate(["pv0", "pv1"]):
        m = new_lv(f"r1_rmeta_{k}", alloc.allocate(vg, 1, [pv]), visible=False)
        vg.lvs.append(m)
        i = new_lv(f"r1_rimage_{k}", alloc.allocate(vg, 2, [pv]), visible=False)
        vg.lvs.append(i)
        subs += [m, i]
    vg.lvs.append(new_lv("r1", [Segment(0, 2, "raid1", raids=[s.name for s in subs], region_size=4096)]))
    mims = []
    for k, pv in enumerate(["pv0", "pv1"]):
        mi = new_lv(f"m1_mimage_{k}", alloc.allocate(vg, 1, [pv]), visible=False)
        vg.lvs.append(mi)
        mims.append(mi)
    vg.lvs.append(new_lv("m1", [Segment(0, 1, "mirror", mirrors=[(m.name, 0) for m in mims], region_size=1024)]))
    bk.write_bytes(vg.to_text("test").rstrip(b"\0"))
    lvm_cmd("vgcfgrestore", "-f", str(bk), "realvg", devices=devs)

    res = scan(refs)
    info = res.vgs["realvg"]
    assert info.healthy, res.problems
    assert len(info.pvs) == 2 and sum(len(l.mdas) for l in info.pvs.values()) == 3
    assert lvs_rows(devs) == our_rows(res, devmap)
    pvb = [p for p in info.vg.pvs if info.pvs[p.id].ref.id == "naa.rb"][0]
    assert pvb.ba_start == 2048 and pvb.ba_size == 2048
    assert info.pvs[pvb.id].label.bootloader_areas[0].offset == 1 << 20

    # data through our mapping: raid1 legs and mirror legs as LVM places them
    with vgops.open_vg("realvg", refs, write=True) as g:
        for name in ("lin", "str", "r1", "m1"):
            io = g.lv_io(name)
            payload = os.urandom(io.size)
            io.write(payload)
            for leg in range(2 if name in ("r1", "m1") else 1):
                assert g.lv_io(name, leg=leg).read() == payload
            if shutil.which("grub-fstest"):      # GRUB maps LVM's striped/raid1/mirror LVs as we do
                local = tmp_path / f"{name}.bin"
                local.write_bytes(payload)
                r = subprocess.run(["grub-fstest", "-c", "2", *[str(x.path) for x in refs], "cmp",
                                    f"(lvm/realvg-{name})0+{io.size // 512}", str(local)],
                                   capture_output=True, text=True)
                assert r.returncode == 0, r.stdout + r.stderr
        ranges = g.lv_ranges("r1", leg=1)
        assert ranges and all(p == str(refs[1].path) for p, _, _ in ranges)

    # our commit on LVM's VG keeps two mdas, the bootloader area and everything else
    vgops.lv_create("realvg", refs, "ours", "4M", pvs=["naa.rb"])
    ck = lvm_cmd("vgck", "realvg", devices=devs)
    assert clean_output(ck.stdout + ck.stderr) == []
    assert lvs_rows(devs) == our_rows(scan(refs), devmap)
    ba = lvm_cmd("pvs", "--noheadings", "-o", "pv_name,pv_ba_start,pv_ba_size", "--units", "b", devices=devs).stdout
    assert "1048576B" in ba
    d = lvm_cmd("pvck", "--dump", "headers", devs[0], devices=None)
    assert "CHECK" not in d.stdout + d.stderr
    assert (d.stdout + d.stderr).count("vgname realvg seqno") == 2


def test_wrapped_buffer_after_many_real_commits(tmp_path, loopdev):
    refs, devs, devmap = _real_vg(tmp_path, loopdev, mdasize="32k")
    lvm_cmd("lvcreate", "--driverloaded", "n", "-an", "-Zn", "-L", "4m", "-n", "w", "realvg", devices=devs)
    wrapped = False
    for i in range(80):
        lvm_cmd("vgchange", "--addtag", f"tag{i:03d}xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx", "realvg", devices=devs)
        res = scan(refs)
        for loc in res.vgs["realvg"].pvs.values():
            for m in loc.mdas:
                if m.header and m.header.slot0.offset + m.header.slot0.size > m.header.size:
                    wrapped = True
        if wrapped and i > 5:
            break
    assert wrapped, "the metadata buffer never wrapped"
    res = scan(refs)
    info = res.vgs["realvg"]
    assert info.healthy, res.problems
    assert info.seqno == int(vg_field(devs, "realvg", "seqno"))
    assert lvs_rows(devs) == our_rows(res, devmap)
    # our own commits keep wrapping correctly; LVM reads them
    for i in range(12):
        vgops.change_tags("realvg", refs, add=[f"ours{i:03d}yyyyyyyyyyyyyyyyyyyyyyyyyyyyy"])
    ck = lvm_cmd("vgck", "realvg", devices=devs)
    assert clean_output(ck.stdout + ck.stderr) == []
    assert int(vg_field(devs, "realvg", "seqno")) == scan(refs).vgs["realvg"].seqno


def test_real_vg_with_ignored_mda_and_pv_without_mda(tmp_path, loopdev):
    imgs = [image(tmp_path / f"m{i}.img", 64 << 20) for i in range(3)]
    devs = [loopdev(p) for p in imgs]
    lvm_cmd("pvcreate", "--pvmetadatacopies", "2", devs[0], devices=devs)
    lvm_cmd("pvcreate", devs[1], devices=devs)
    lvm_cmd("pvcreate", "--pvmetadatacopies", "0", devs[2], devices=devs)
    lvm_cmd("vgcreate", "ignvg", *devs, devices=devs)
    lvm_cmd("pvchange", "--metadataignore", "y", devs[1], devices=devs)
    lvm_cmd("lvcreate", "--driverloaded", "n", "-an", "-Zn", "-L", "8m", "-n", "a", "ignvg", devs[2], devices=devs)
    refs = [DiskRef(f"naa.m{i}", p) for i, p in enumerate(imgs)]
    devmap = {(str(p), 0): d for p, d in zip(imgs, devs)}
    res = scan(refs)
    info = res.vgs["ignvg"]
    assert info.healthy, (res.problems, info.stale)
    assert len(info.pvs) == 3 and info.seqno == int(vg_field(devs, "ignvg", "seqno"))
    assert any(m.ignored for l in info.pvs.values() for m in l.mdas)
    assert lvs_rows(devs) == our_rows(res, devmap)
    vgops.lv_create("ignvg", refs, "b", "4M", pvs=["naa.m2"])     # our commit skips the ignored mda
    ck = lvm_cmd("vgck", "ignvg", devices=devs)
    assert clean_output(ck.stdout + ck.stderr) == []
    assert lvs_rows(devs) == our_rows(scan(refs), devmap)
    mda_free = lvm_cmd("pvs", "--noheadings", "-o", "pv_name,pv_mda_count,pv_mda_used_count", devices=devs).stdout
    assert mda_free.split().count("0") >= 1
