"""LVM2 format code: CRC vectors, label/mda round trips, text round trips,
and corrupt input never raising anything but sanbos' own errors."""

from __future__ import annotations

import random
import struct
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core.disk import DiskRef
from core.errors import MetadataError, SanbosError, SpaceError, UsageError
from core.lvm import text as lvmtext
from core.lvm import uuid as lvmuuid
from core.lvm.crc import calc_crc
from core.lvm.label import DiskLocn, PVLabel, find_label
from core.lvm.mda import MDAHeader, RawLocn, place_text, read_text
from core.lvm.model import LV, PV, VG, Segment, check_name, parse_vg
from core.lvm.scan import scan
from core import vg as vgops

REF_UUID = "FxTyLwaqp7p7iNgkq6zTLy4HnhY9r7Hy"


# -- CRC and binary structures ------------------------------------------------------
def test_crc_vectors():
    assert calc_crc(b"") == 0xF597A6CF
    assert calc_crc(b"123456789") == 0x4991CF02
    assert calc_crc(b"6789", calc_crc(b"12345")) == 0x4991CF02


def test_empty_mda_header_crc_matches_pvcreate():
    raw = MDAHeader(start=4096, size=1044480).pack()
    assert struct.unpack_from("<I", raw)[0] == 0xDB8ED616
    assert raw[4:20] == b" LVM2 x[5A%r0N*>"


@pytest.mark.parametrize("flags,crc", [(0, 0x9BA1D62A), (1, 0x9AE823C4)])
def test_label_crc_matches_pvcreate(flags, crc):
    lab = PVLabel(REF_UUID, 64 << 20, [DiskLocn(1 << 20, 0)], [DiskLocn(4096, 1044480)], [], 2, flags)
    raw = lab.pack()
    assert struct.unpack_from("<I", raw, 0x10)[0] == crc
    assert raw[0:8] == b"LABELONE" and raw[0x18:0x20] == b"LVM2 001"
    # byte positions as pvck --dump headers shows them (label in sector 1: +512)
    assert struct.unpack_from("<QQ", raw, 616 - 512) == (4096, 1044480)
    assert struct.unpack_from("<II", raw, 648 - 512) == (2, flags)


def test_label_round_trip_with_two_mdas_and_bootloader_area():
    lab = PVLabel(lvmuuid.generate(), 1 << 30, [DiskLocn(2 << 20, 0)],
                  [DiskLocn(4096, 1044480), DiskLocn((1 << 30) - (1 << 20), 1 << 20)],
                  [DiskLocn(1 << 20, 1 << 20)], 2, 1, sector=1)
    raw = lab.pack()
    back = PVLabel.parse(raw, 1)
    back.crc = 0
    assert back == lab
    assert back.pack() == raw
    # layout facts from the reference: mda2 at 0x278, ext at 0x298, ba at 0x2A0 (label at 0x200)
    assert struct.unpack_from("<Q", raw, 0x278 - 0x200)[0] == (1 << 30) - (1 << 20)
    assert struct.unpack_from("<I", raw, 0x298 - 0x200)[0] == 2
    assert struct.unpack_from("<Q", raw, 0x2A0 - 0x200)[0] == 1 << 20


def test_mda_header_round_trip():
    h = MDAHeader(4096, 1044480, RawLocn(3072, 1538, 0x50469E5D, 0), RawLocn(5120, 1600, 7, 0))
    raw = h.pack()
    back = MDAHeader.parse(raw, 4096)
    assert back.pack() == raw
    assert back.slot0 == h.slot0 and back.slot1 == h.slot1


def test_label_defects_named():
    raw = bytearray(PVLabel(REF_UUID, 64 << 20, [DiskLocn(1 << 20, 0)], [DiskLocn(4096, 1044480)]).pack())
    raw[500] ^= 1
    head = bytes(512) + bytes(raw) + bytes(1024)
    lab, defects = find_label(head, "naa.X")
    assert lab is None and defects and "naa.X" in defects[0] and "checksum" in defects[0]
    with pytest.raises(MetadataError, match="claims sector"):
        PVLabel.parse(PVLabel(REF_UUID, 1, [DiskLocn(1 << 20, 0)], [], sector=1).pack(), 2, "d")


# -- circular buffer -------------------------------------------------------------------
def _buf(size):
    mem = bytearray(size)

    def rd(off, n):
        return bytes(mem[off:off + n])
    return mem, rd


def test_placement_sequence_and_wrap():
    size = 32 * 1024
    mem, rd = _buf(size)
    h = MDAHeader(0, size)
    offs = []
    texts = []
    for i in range(40):
        t = (f"v{i} " + "x" * (700 + 37 * i % 400)).encode() + b"\0"
        locn, writes = place_text(h, t)
        for off, data in writes:
            assert off + len(data) <= size
            mem[off:off + len(data)] = data
        h.slot0 = locn
        offs.append(locn.offset)
        texts.append(t)
        assert read_text(rd, h, locn) == t
    assert offs[0] == 512 and all(o % 512 == 0 and o >= 512 for o in offs)
    assert any(o + len(t) > size for o, t in zip(offs, texts)), "no copy wrapped"


def test_reference_placement_offsets():
    h = MDAHeader(4096, 1044480)
    assert h.next_offset() == 512
    h.slot0 = RawLocn(512, 1000, 0, 0)
    assert h.next_offset() == 1536
    h.slot0 = RawLocn(1536, 1100, 0, 0)
    assert h.next_offset() == 3072
    # 32 KiB mda: a copy at 31744 of 1194 bytes wraps, the next one starts at 1024
    h = MDAHeader(0, 32768, RawLocn(31744, 1194, 0, 0))
    assert h.pieces(h.slot0) == [(31744, 1024), (512, 170)]
    assert h.next_offset() == 1024


def test_text_too_big_for_mda():
    h = MDAHeader(4096, 32768)
    with pytest.raises(SpaceError, match="does not fit"):
        place_text(h, b"x" * 20000)


# -- text ----------------------------------------------------------------------------
SAMPLE = b'''fmtvg {
id = "B1m0vY-Cs8Y-S29U-dgai-p44N-jFOu-tr4TSt"
seqno = 3
format = "lvm2"
status = ["RESIZEABLE", "READ", "WRITE"]
flags = []
extent_size = 8192
max_lv = 0
max_pv = 0
metadata_copies = 0

physical_volumes {

pv0 {
id = "FxTyLw-aqp7-p7iN-gkq6-zTLy-4Hnh-Y9r7Hy"
device = "/dev/loop4"

status = ["ALLOCATABLE"]
flags = []
dev_size = 131072
pe_start = 2048
pe_count = 15
}

pv1 {
id = "AnidIk-ewNW-cwTv-zV87-iwgv-D2d4-0HxDLX"
device = "/dev/loop5"

status = ["ALLOCATABLE"]
flags = []
dev_size = 131072
pe_start = 2048
pe_count = 15
}
}

logical_volumes {

lin {
id = "5rIIOh-51md-PQcU-UtF1-CsIf-z1Oz-4mJ00k"
status = ["READ", "WRITE", "VISIBLE"]
flags = []
creation_time = 1795570413
creation_host = "vm"
segment_count = 1

segment1 {
start_extent = 0
extent_count = 2

type = "striped"
stripe_count = 1

stripes = [
"pv0", 0
]
}
}

str {
id = "Gdy74c-FGF8-zuWs-qR4N-Qh7j-Qonb-1wEEEv"
status = ["READ", "WRITE", "VISIBLE"]
flags = []
creation_time = 1795570413
creation_host = "vm"
segment_count = 1

segment1 {
start_extent = 0
extent_count = 2

type = "striped"
stripe_count = 2
stripe_size = 128

stripes = [
"pv0", 2,
"pv1", 0
]
}
}
}

}
# Generated by LVM2 version 2.03.16(2) (2022-05-18): Wed Nov 25 01:33:33 2026

contents = "Text Format Volume Group"
version = 1

description = "Write from lvcreate ... -n str fmtvg."

creation_host = "vm"\t# Linux vm 6.18.44-fc-v669 #1 SMP PREEMPT_DYNAMIC @0 x86_64
creation_time = 1795570413\t# Wed Nov 25 01:33:33 2026

\0'''


def test_lvm_written_text_reserialises_byte_for_byte():
    vg = parse_vg(SAMPLE)
    assert vg.name == "fmtvg" and vg.seqno == 3 and [l.name for l in vg.lvs] == ["lin", "str"]
    assert vg.lv("str").segments[0].stripes == [("pv0", 2), ("pv1", 0)]
    body = SAMPLE.split(b"# Generated")[0].decode()
    assert lvmtext.dump_section("fmtvg", vg.to_tree()) == body


def test_our_text_style_for_grub():
    vg = parse_vg(SAMPLE)
    out = vg.to_text("test")
    assert out.startswith(b"fmtvg {\nid = \"B1m0vY-Cs8Y-S29U-dgai-p44N-jFOu-tr4TSt\"\nseqno = 3\n")
    assert out.endswith(b"\n\n\0")
    assert b"}\n}\n" in out and b"\t" not in out.split(b"}\n# ")[0]
    assert parse_vg(out).to_tree() == vg.to_tree()


def test_parser_details():
    t = lvmtext.parse(b"a = 010\nb = 0x10\nc = -5\nd = 1.5\ne = 'x\\y'\nf = \"q\\\"w\\\\\"\ng = [1 2, \"s\"]\n"
                      b"h = bare # comment\n\"sec\" { }\n\0junk {")
    assert t == {"a": 8, "b": 16, "c": -5, "d": 1.5, "e": "x\\y", "f": 'q"w\\', "g": [1, 2, "s"],
                 "h": "bare", "sec": {}}
    for bad in (b"a = ", b"a {", b"}", b"a = [1, 2", b'a = "x', b"= 3"):
        with pytest.raises(MetadataError):
            lvmtext.parse(bad, "t")


@pytest.mark.parametrize("name", ["", "-a", ".", "..", "a b", "a/b", "x" * 200, "é"])
def test_names_lvm_refuses(name):
    with pytest.raises(UsageError):
        check_name(name, "VG")


@pytest.mark.parametrize("name", ["lv_rimage_0", "snapshot1", "pvmove0", "a_mlog"])
def test_lv_names_lvm_reserves(name):
    with pytest.raises(UsageError):
        check_name(name, "LV")


# -- hypothesis ------------------------------------------------------------------------
names = st.from_regex(r"[A-Za-z][A-Za-z0-9_.+]{0,12}", fullmatch=True)
uuids = st.builds(lambda b: "".join(lvmuuid.ALPHABET[x % 62] for x in b), st.binary(min_size=32, max_size=32))
strings = st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=0x2FF, exclude_characters="\x7f"),
                  max_size=20)


@st.composite
def vgs(draw):
    npv = draw(st.integers(1, 4))
    pvs = [PV(f"pv{i}", draw(uuids), dev_size=draw(st.integers(4096, 1 << 40)), pe_start=2048,
              pe_count=draw(st.integers(10, 1000)), device=draw(st.none() | strings))
           for i in range(npv)]
    vg = VG(name=draw(names), id=draw(uuids), seqno=draw(st.integers(1, 2**32 - 1)),
            extent_size=draw(st.sampled_from([8, 128, 8192, 65536])), pvs=pvs)
    if draw(st.booleans()):
        vg.extra["tags"] = draw(st.lists(st.from_regex(r"[a-z0-9_]{1,8}", fullmatch=True), max_size=3))
    used = {p.name: 0 for p in pvs}
    lvnames = draw(st.lists(names.filter(lambda n: "_r" not in n and "_m" not in n and n not in ("r", "str")
                                         and not n.startswith(("snapshot", "pvmove"))),
                            max_size=4, unique=True))
    for n in lvnames:
        segs = []
        le = 0
        for _ in range(draw(st.integers(1, 3))):
            pv = draw(st.sampled_from(pvs))
            cnt = draw(st.integers(1, 3))
            if used[pv.name] + cnt > pv.pe_count:
                continue
            segs.append(Segment(le, cnt, "striped", stripes=[(pv.name, used[pv.name])]))
            used[pv.name] += cnt
            le += cnt
        if segs:
            vg.lvs.append(LV(n, draw(uuids), creation_time=draw(st.integers(0, 2**31)),
                             creation_host=draw(strings), segments=segs))
    # a 2-stripe LV, a raid1 LV with rmeta/rimage pairs and an old mirror LV, when space allows
    if len(pvs) >= 2 and all(used[p.name] + 4 <= p.pe_count for p in pvs[:2]):
        a, b = pvs[0].name, pvs[1].name
        vg.lvs.append(LV("str", draw(uuids), segments=[Segment(0, 2, "striped", stripes=[(a, used[a]), (b, used[b])],
                                                               stripe_size=draw(st.sampled_from([8, 128])))]))
        used[a] += 1
        used[b] += 1
        kind = draw(st.sampled_from(["raid1", "mirror"]))
        subs = []
        for k, pvn in enumerate((a, b)):
            if kind == "raid1":
                subs.append(LV(f"r_rmeta_{k}", draw(uuids), status=["READ", "WRITE"],
                               segments=[Segment(0, 1, "striped", stripes=[(pvn, used[pvn])])]))
                used[pvn] += 1
            subs.append(LV(f"r_{'rimage' if kind == 'raid1' else 'mimage'}_{k}", draw(uuids),
                           status=["READ", "WRITE"], segments=[Segment(0, 1, "striped", stripes=[(pvn, used[pvn])])]))
            used[pvn] += 1
        if kind == "raid1":
            top = Segment(0, 1, "raid1", raids=[s.name for s in subs], region_size=4096)
        else:
            top = Segment(0, 1, "mirror", mirrors=[(s.name, 0) for s in subs], region_size=1024)
        vg.lvs.append(LV("r", draw(uuids), segments=[top]))
        vg.lvs += subs
    return vg


@settings(max_examples=150, deadline=None)
@given(vgs(), strings)
def test_text_round_trip_property(vg, desc):
    raw = vg.to_text(desc)
    assert raw.endswith(b"\n\n\0") and raw.startswith(vg.name.encode() + b" {\n")
    back = parse_vg(raw)
    assert back.to_tree() == vg.to_tree()
    assert back.to_text(desc, now=0) == vg.to_text(desc, now=0)


def _image(tmp_path: Path, name="a.img") -> Path:
    p = tmp_path / name
    with open(p, "wb") as f:
        f.truncate(64 << 20)
    return p


@pytest.fixture(scope="module")
def pv_image(tmp_path_factory) -> bytes:
    tmp = tmp_path_factory.mktemp("pvimg")
    p = _image(tmp)
    ref = DiskRef("naa.test", p)
    vgops.create("propvg", [ref], layout="whole")
    vgops.lv_create("propvg", [ref], "lv1", "8M")
    with open(p, "rb") as f:
        return f.read(1 << 20)


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.tuples(st.integers(0, (1 << 20) - 1), st.integers(1, 255)), min_size=1, max_size=8))
def test_corruption_never_escapes_as_foreign_exception(pv_image, tmp_path, flips):
    img = bytearray(pv_image)
    for off, x in flips:
        # aim most flips at the structures (label, mda header, text)
        off = [off % 1024, 4096 + off % 512, 4096 + 512 + off % 3000, off][off % 4]
        img[off] ^= x
    p = tmp_path / "c.img"
    p.write_bytes(bytes(img) + bytes((64 << 20) - len(img)))
    try:
        res = scan([DiskRef("naa.c", p)])
    except SanbosError:
        return
    for v in res.vgs.values():
        assert v.name == "propvg"


def test_bad_inputs_give_clear_errors_and_write_nothing(tmp_path):
    rnd = tmp_path / "random.img"
    rnd.write_bytes(random.Random(1).randbytes(4 << 20))
    trunc = tmp_path / "trunc.img"
    trunc.write_bytes(b"\0" * 700)
    refs = [DiskRef("naa.rand", rnd), DiskRef("naa.trunc", trunc)]
    before = [p.read_bytes() for p in (rnd, trunc)]
    res = scan(refs)
    assert not res.vgs and not res.orphans
    with pytest.raises(SanbosError, match="no VG named x"):
        vgops.open_vg("x", refs, write=True)
    with pytest.raises(UsageError, match="invalid"):
        vgops.create("bad name", refs, layout="whole")
    with pytest.raises(SanbosError):
        vgops.create("ok", [DiskRef("naa.trunc", trunc)], layout="whole", force_ids=["naa.trunc"])
    assert [p.read_bytes() for p in (rnd, trunc)] == before


def test_filesystem_image_is_not_a_pv(tmp_path):
    import shutil
    import subprocess
    if shutil.which("mke2fs") is None and not Path("/sbin/mke2fs").exists():
        pytest.skip("mke2fs not installed")
    p = _image(tmp_path, "fs.img")
    subprocess.run(["mke2fs", "-q", "-F", "-t", "ext4", str(p)], check=True)
    before = p.read_bytes()
    res = scan([DiskRef("naa.fs", p)])
    assert not res.vgs and not res.orphans and not res.problems
    with pytest.raises(SanbosError, match="not blank|naa.fs"):
        vgops.create("fsvg", [DiskRef("naa.fs", p)], layout="whole")
    assert p.read_bytes() == before


def test_metadata_larger_than_mda_refused_nothing_written(tmp_path):
    p = _image(tmp_path)
    ref = DiskRef("naa.big", p)
    vgops.create("bigvg", [ref], layout="whole")
    before = p.read_bytes()
    with vgops.open_vg("bigvg", [ref], write=True) as g:
        g.vg.extra["tags"] = [f"t{i:06d}" + "x" * 200 for i in range(3000)]
        with pytest.raises(SpaceError, match="naa.big.*metadata"):
            g.commit("too big")
    assert p.read_bytes() == before
