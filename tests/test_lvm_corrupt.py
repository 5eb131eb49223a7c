"""Flipped bytes in the label, pv_header, mda header and text: detected, named,
and repaired by ``check --repair`` from the good copies; real LVM2 agrees."""

from __future__ import annotations

import pytest

from conftest import lvm_cmd
from lvm_helpers import attach_pvs, clean_output, lvs_rows, refs_of

from core import vg as vgops
from core.lvm.scan import scan


def flip(path, offset: int, mask: int = 0x5A) -> None:
    with open(path, "r+b") as f:
        f.seek(offset)
        b = f.read(1)
        f.seek(offset)
        f.write(bytes([b[0] ^ mask]))


def _vg(make_fabric):
    f = make_fabric(disks=3, size=128 << 20)
    refs = refs_of(f)
    vgops.create("cvg", refs)
    vgops.lv_create("cvg", refs, "lv1", "8M", pvs=[refs[0].id])
    vgops.lv_create("cvg", refs, "boot", "4M", type="raid1", pvs=[r.id for r in refs])
    res = scan(refs)
    locs = {l.ref.id: l for l in res.vgs["cvg"].pvs.values()}
    return refs, locs


def _text_offset(loc) -> int:
    m = loc.mdas[0]
    return loc.offset + m.start + m.header.slot0.offset + 40


CASES = {
    # name: (where to flip, relative to the PV start, words the report must contain)
    "label_header": (lambda loc: loc.offset + 512 + 0x1F0, ["label checksum"]),
    "pv_header_size": (lambda loc: loc.offset + 512 + 0x41, ["label checksum"]),
    "pv_header_uuid": (lambda loc: loc.offset + 512 + 0x23, ["label"]),
    "mda_header": (lambda loc: loc.offset + 4096 + 0x30, ["metadata area header"]),
    "mda_magic": (lambda loc: loc.offset + 4096 + 0x08, ["metadata area header"]),
    "text": (_text_offset, ["metadata text checksum"]),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_flipped_byte_detected_named_repaired(make_fabric, case):
    refs, locs = _vg(make_fabric)
    victim = refs[1]
    where, words = CASES[case]
    flip(victim.path, where(locs[victim.id]))
    rep = vgops.check("cvg", refs)
    assert not rep.clean
    text = "\n".join(rep.problems)
    assert victim.id in text, text
    for w in words:
        assert w in text, text
    fixed = vgops.check("cvg", refs, repair=True)
    assert fixed.clean, str(fixed)
    assert fixed.repaired
    info = scan(refs).vgs["cvg"]
    assert info.healthy and len(info.pvs) == 3
    # data mapping unchanged
    assert [l.name for l in info.vg.lvs if l.visible] == ["lv1", "boot"]


def test_several_defects_at_once_and_real_lvm_agrees(make_fabric, loopdev):
    refs, locs = _vg(make_fabric)
    devmap = attach_pvs(loopdev, refs)
    devs = list(devmap.values())
    before = lvs_rows(devs)
    flip(refs[0].path, locs[refs[0].id].offset + 4096 + 0x30)      # mda header
    flip(refs[1].path, _text_offset(locs[refs[1].id]))               # text
    flip(refs[2].path, locs[refs[2].id].offset + 512 + 0x1F0)        # label
    rep = vgops.check("cvg", refs)
    assert len(rep.problems) >= 3 and all(r.id in "\n".join(rep.problems) for r in refs)
    # LVM2 sees trouble too
    ck = lvm_cmd("vgck", "cvg", devices=devs, check=False)
    assert ck.returncode != 0 or clean_output(ck.stdout + ck.stderr)
    assert vgops.check("cvg", refs, repair=True).clean
    ck = lvm_cmd("vgck", "cvg", devices=devs)
    assert clean_output(ck.stdout + ck.stderr) == []
    assert lvs_rows(devs) == before
    for dev in devs:
        d = lvm_cmd("pvck", "--dump", "headers", dev, devices=None)
        assert "CHECK" not in d.stdout + d.stderr


def test_stale_copy_detected_and_caught_up(make_fabric, loopdev):
    refs, locs = _vg(make_fabric)
    loc = locs[refs[2].id]
    with open(refs[2].path, "rb") as f:
        f.seek(loc.offset)
        saved = f.read(1 << 20)
    vgops.lv_create("cvg", refs, "newer", "4M", pvs=[refs[0].id])
    with open(refs[2].path, "r+b") as f:     # roll disk 3's metadata back
        f.seek(loc.offset)
        f.write(saved)
    rep = vgops.check("cvg", refs)
    assert any("stale" in p and refs[2].id in p for p in rep.problems), rep.problems
    info = scan(refs).vgs["cvg"]
    assert info.vg.lv("newer") is not None        # the newest copy wins
    devs = list(attach_pvs(loopdev, refs).values())
    ck = lvm_cmd("vgck", "cvg", devices=devs, check=False)
    assert "ignoring metadata seqno" in (ck.stdout + ck.stderr).lower() or ck.returncode != 0
    assert vgops.check("cvg", refs, repair=True).clean
    ck = lvm_cmd("vgck", "cvg", devices=devs)
    assert clean_output(ck.stdout + ck.stderr) == []


def test_duplicate_pv_uuid_names_both_disks_and_refuses(make_fabric):
    refs, locs = _vg(make_fabric)
    f2 = make_fabric(disks=1, size=128 << 20)
    clone = refs_of(f2)[0]
    with open(refs[1].path, "rb") as src, open(clone.path, "r+b") as dst:
        dst.write(src.read())
    allrefs = refs + [clone]
    res = scan(allrefs)
    msg = "\n".join(res.problems)
    assert refs[1].id in msg and clone.id in msg and "more than one disk" in msg
    with pytest.raises(Exception, match="cloned LUN"):
        vgops.lv_create("cvg", allrefs, "x", "4M")


def test_same_named_vgs_reported(make_fabric):
    f = make_fabric(disks=2, size=128 << 20)
    refs = refs_of(f)
    vgops.create("twin", [refs[0]])
    vgops.create("twin", [refs[1]])
    res = scan(refs)
    assert any("two different VGs are named twin" in p for p in res.problems)
    with pytest.raises(Exception, match="two different VGs"):
        vgops.open_vg("twin", refs, write=False)
    with vgops.open_vg("twin", [refs[0]], write=False) as g:
        assert g.name == "twin"


def test_missing_pv_reported_and_write_refused(make_fabric):
    refs, locs = _vg(make_fabric)
    rep = vgops.check("cvg", refs[:2])
    assert any("missing" in p for p in rep.problems)
    with pytest.raises(Exception, match="not found on the disks given"):
        vgops.lv_create("cvg", refs[:2], "x", "4M")
    # readable without it
    with vgops.open_vg("cvg", refs[:2], write=False) as g:
        assert len(g.lv_io("lv1").read(4096)) == 4096


@pytest.mark.parametrize("value", [b"$", b"\0", b"\xff"])
def test_label_uuid_byte_unreadable_still_placed_and_repaired(make_fabric, value):
    refs, locs = _vg(make_fabric)
    victim = refs[2]
    with open(victim.path, "r+b") as f:
        f.seek(locs[victim.id].offset + 512 + 0x20 + 5)
        f.write(value)
    rep = vgops.check("cvg", refs)
    assert any(victim.id in p and "label" in p for p in rep.problems), rep.problems
    assert vgops.check("cvg", refs, repair=True).clean
    info = scan(refs).vgs["cvg"]
    assert info.healthy and {l.ref.id for l in info.pvs.values()} == {r.id for r in refs}
