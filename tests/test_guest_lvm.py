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
import subprocess
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
echo "==sync=="
n=0
while lvm lvs --noheadings -o copy_percent $VG 2>/dev/null | grep '[0-9]' | grep -qv '100.00' && [ $n -lt 600 ]; do
    sleep 0.2; n=$((n + 1))
done
echo "waited_tenths=$((n * 2))"
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
e2fsck -fn /dev/$VG/{lv} >/dev/null 2>&1
echo "e2fsck=$?"
mkdir -p /mnt/{lv}
mount -t ext4 -o ro /dev/$VG/{lv} /mnt/{lv}
echo "mount=$?"
echo "==sha256:{lv}=="
cd /mnt/{lv} && find . -type f | sort | while read -r f; do sha256sum "$f"; done
cd /
umount /mnt/{lv}
"""


LEGS_SCRIPT = r"""
echo "==legs:{lv}=="
for d in /dev/mapper/{dm}_rimage_*; do sha256sum "$d"; done
"""


def dm_name(vg: str, lv: str) -> str:
    """The device-mapper name LVM2 gives VG/LV (dashes doubled)."""
    return f"{vg.replace('-', '--')}-{lv.replace('-', '--')}"


PREFIX_SCRIPT = r"""
echo "==prefix:{name}=="
for d in {devs}; do
    if [ "$(head -c 1 "$d" 2>/dev/null | wc -c)" = 1 ]; then
        echo "$(head -c {size} "$d" | sha256sum | cut -d' ' -f1) $d"
    else
        echo "unreadable $d"
    fi
done
"""


def prefix_check(name: str, devs: str, size: int) -> str:
    """Report the SHA-256 of the first ``size`` bytes of each device in ``devs`` (a glob)."""
    return PREFIX_SCRIPT.format(name=name, devs=devs, size=size)


def prefix_shas(text: str) -> dict[str, str]:
    """{device: sha256 or 'unreadable'} from a ``prefix_check`` section."""
    out = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 2 and "-missing_" not in parts[1]:   # LVM2's error-target stand-in
            out[parts[1]] = parts[0]
    return out


def readable(shas: dict[str, str]) -> dict[str, str]:
    return {d: h for d, h in shas.items() if h != "unreadable"}


def guest_script(vg: str, fs_lvs: list[str], activation: str = "", leg_lvs: list[str] = (),
                 more: str = "") -> str:
    extra = "".join(FS_SCRIPT.format(lv=lv) for lv in fs_lvs) + more
    extra += "".join(LEGS_SCRIPT.format(lv=lv, dm=dm_name(vg, lv)) for lv in leg_lvs)
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
    print(f"guest boot to report: {r.seconds:.1f} s")


# --------------------------------------------------------------------------
# a 4-disk install VG made by sanbos, activated by real LVM2 in the guest

VG = "sanbosvg"
DISK_SIZE = 128 * MiB


def _repo_files(root: Path, seed: int) -> dict[str, str]:
    """Known files for a repository file system; returns {relative path: sha256}."""
    import random

    rnd = random.Random(seed)
    files = {
        "TOC.json": None,
        "bos/base-1.0.tar": 1_500_000,
        "opp/tools-2.1.bff": 700_000,
        "opp/docs-1.0.bff": 123_457,
        "opp/empty.bff": 0,
    }
    out = {}
    for rel, size in files.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        if size is None:
            continue
        data = rnd.randbytes(size)
        p.write_bytes(data)
        out[rel] = hashlib.sha256(data).hexdigest()
    toc = json.dumps({"images": [{"path": k, "sha256": v} for k, v in sorted(out.items())]}, indent=1).encode()
    (root / "TOC.json").write_bytes(toc)
    out["TOC.json"] = hashlib.sha256(toc).hexdigest()
    return out


def _write_fs_on_every_leg(vgo, lv: str, src: Path, label: str) -> int:
    """An ext4 made by e2fsprogs at leg 0's byte range, copied leg by leg
    through sanbos's LV I/O, so every raid1 leg holds the same bytes."""
    from core import ext4
    from core.lvm.lvio import legs

    n = legs(vgo.vg, vgo.lv(lv))
    ranges = vgo.lv_ranges(lv, 0)
    assert len(ranges) == 1, f"{lv} leg 0 is not contiguous: {ranges}"
    path, off, size = ranges[0]
    ext4.make(ext4.Target(Path(path), off, size, f"{lv} leg 0"), src, label=label, timestamp=1_700_000_000)
    data = vgo.lv_io(lv, leg=0).pread(0, size)
    for leg in range(1, n):
        vgo.lv_io(lv, leg=leg).pwrite(0, data)
    for leg in range(n):
        (path, off, size), = vgo.lv_ranges(lv, leg)
        ok, out = ext4.fsck(ext4.Target(Path(path), off, size))
        assert ok, out
    return n


@pytest.fixture
def install_vg(make_fabric, tmp_path):
    """A 4-disk install VG: GPT + PV in partition 3; raid1 bootlv on all four
    disks, raid1 instlv (the repository) on disks 0 and 1, a linear raw BOS LV
    on disk 2; ext4 file systems with known files in the raid1 LVs."""
    from core import vg as vgmod
    from core.disk import DiskRef

    fab = make_fabric(disks=4, size=DISK_SIZE)
    refs = [DiskRef(l.wwn, l.path) for l in fab.luns]
    vgmod.create(VG, refs)
    ids = [r.id for r in refs]
    vgmod.lv_create(VG, refs, "bootlv", 8 * MiB, type="raid1", pvs=ids)
    vgmod.lv_create(VG, refs, "instlv", 40 * MiB, type="raid1", pvs=ids[:2])
    vgmod.lv_create(VG, refs, "bos_demo", 12 * MiB, type="linear", pvs=[ids[2]])
    expected = {}
    with vgmod.open_vg(VG, refs, write=True) as vgo:
        for lv, seed in (("instlv", 1), ("bootlv", 2)):
            src = tmp_path / f"src-{lv}"
            expected[lv] = _repo_files(src, seed) if lv == "instlv" else _boot_files(src)
            _write_fs_on_every_leg(vgo, lv, src, lv)
    return fab, refs, expected


def _boot_files(root: Path) -> dict[str, str]:
    root.mkdir(parents=True, exist_ok=True)
    out = {}
    for name, data in (("vmlinuz", b"not a kernel\n" * 1000), ("initrd.img", bytes(range(256)) * 999),
                       ("SHA256SUMS", b"")):
        (root / name).write_bytes(data)
        out[name] = hashlib.sha256(data).hexdigest()
    return out


def _guest_disks(fab, skip: int | None = None):
    return [guest.GuestDisk(l.path, l.serial) for i, l in enumerate(fab.luns) if i != skip]


def _compare_with_sanbos(r: guest.GuestRun, fab, refs, *, missing: int | None = None,
                         vg: str = VG) -> dict[str, dict]:
    """Assert that the guest's lvs/pvs report agrees with sanbos's own scan."""
    from core import vg as vgmod
    from core.lvm import uuid as lvmuuid

    serial_of_dev = {}
    for line in r.section("disks").splitlines():
        name, serial, _ = line.split()
        serial_of_dev[f"/dev/{name}"] = serial
    lun_by_serial = {l.serial: l for l in fab.luns}
    guest_pvs = {row["pv_uuid"]: row for row in lvm_json(r.section("pvs"), "pv") if row["vg_name"] == vg}

    with vgmod.open_vg(vg, refs, write=False, allow_exported=True) as vgo:
        model = vgo.vg
        ext = model.extent_bytes
        dev_of_pv = {}
        for pv in model.pvs:
            u = lvmuuid.dashed(pv.id)
            if missing is not None and vgo.disk_of(pv.name).id == fab.luns[missing].wwn:
                row = guest_pvs.get(u)
                assert row is not None and row["pv_name"] == "[unknown]" and row["pv_attr"][2] == "m", row
                continue
            row = guest_pvs.get(u)
            assert row is not None, f"guest LVM2 does not see PV {u} ({pv.name}): {r.section('pvs')}"
            dev = row["pv_name"]
            assert dev.endswith("3"), f"PV {u} should be partition 3, guest says {dev}"
            disk = dev[:-1]
            # the same physical disk: the guest's virtio serial is the LUN's serial
            assert lun_by_serial[serial_of_dev[disk]].wwn == vgo.disk_of(pv.name).id
            dev_of_pv[pv.name] = dev

        rows = lvm_json(r.section("lvs"), "lv")
        by_lv: dict[str, list[dict]] = {}
        for row in rows:
            by_lv.setdefault(row["lv_name"].strip("[]"), []).append(row)
        ours = {lv.name: lv for lv in model.lvs}
        assert set(by_lv) == set(ours), (sorted(by_lv), sorted(ours))
        for name, lv in ours.items():
            segs = sorted(by_lv[name], key=lambda x: int(x["seg_start_pe"]))
            assert len(segs) == len(lv.segments), (name, segs)
            for row, seg in zip(segs, lv.segments):
                assert int(row["lv_size"].rstrip("B")) == lv.extents * ext, (name, row)
                assert int(row["seg_start_pe"]) == seg.start_extent
                assert int(row["seg_size_pe"]) == seg.extent_count
                want_type = "linear" if seg.base_type == "striped" and seg.stripe_count == 1 else seg.type
                assert row["segtype"] == want_type, (name, row)
                if seg.base_type == "striped":
                    want = [f"{dev_of_pv.get(pvn, 'unknown device')}:{pe}-{pe + seg.extent_count - 1}"
                            for pvn, pe in seg.stripes]
                    if not any(pvn not in dev_of_pv for pvn, _ in seg.stripes):
                        assert row["seg_pe_ranges"].split() == want, (name, row, want)
                else:
                    got = [d.split("(")[0] for d in row["devices"].split(",") if d]
                    assert got == seg.images, (name, row)
    return {name: segs[0] for name, segs in by_lv.items()}


def test_install_vg_activates_in_real_lvm2_guest(kparts, install_vg, tmp_path):
    """Exported install VG: real vgimport + vgchange -ay (raid1 too), repository
    mounted read-only, every file's SHA-256 and e2fsck -fn as sanbos expects."""
    from core import vg as vgmod

    fab, refs, expected = install_vg
    vgmod.export(VG, refs)
    r = guest.run_lvm_guest(_guest_disks(fab), guest_script(VG, ["instlv", "bootlv"], leg_lvs=["instlv"]), 300,
                            kernel=kparts, workdir=tmp_path / "guest")
    assert r.rc == 0, r.console[-3000:]
    st = kv_lines(r.section("import"))
    assert st["attr_before"][2] == "x", f"sanbos's export is not seen by LVM2: {st}"
    assert st["vgimport"] == "0", r.console[-2000:]
    assert kv_lines(r.section("activate")) == {"vgchange": "0", "vgmknodes": "0"}, r.console[-2000:]
    lvs = _compare_with_sanbos(r, fab, refs)
    for name in ("bootlv", "instlv", "bos_demo"):
        attr = lvs[name]["lv_attr"]
        assert attr[4] == "a", f"{name} not active in the guest: {attr}"
        assert attr[8] == "-", f"{name} health in the guest: {attr}"
    for name in ("bootlv", "instlv"):
        assert float(lvs[name]["copy_percent"]) == 100.0, lvs[name]
    mapper = r.section("mapper").split()
    assert {f"{VG}-instlv", f"{VG}-bootlv", f"{VG}-bos_demo"} <= set(mapper)
    for lv in ("instlv", "bootlv"):
        fs = kv_lines(r.section(f"fsck:{lv}"))
        assert fs == {"e2fsck": "0", "mount": "0"}, (lv, fs, r.console[-2000:])
        assert sha_lines(r.section(f"sha256:{lv}")) == expected[lv]
    # each leg, read through device-mapper, is byte for byte what sanbos wrote at lv_ranges(leg)
    from core import vg as vgmod2
    with vgmod2.open_vg(VG, refs, write=False, allow_exported=True) as vgo:
        for leg in range(2):
            (path, off, size), = vgo.lv_ranges("instlv", leg)
            h = hashlib.sha256()
            with open(path, "rb") as f:
                f.seek(off)
                h.update(f.read(size))
            assert sha_lines(r.section("legs:instlv")).get(f"/dev/mapper/{VG}-instlv_rimage_{leg}") == h.hexdigest()
    toc = {e["path"]: e["sha256"] for e in json.loads((tmp_path / "src-instlv" / "TOC.json").read_text())["images"]}
    got = sha_lines(r.section("sha256:instlv"))
    assert all(got[p] == h for p, h in toc.items())


FIRST_ACTIVATION = r"""
lvm vgchange -ay sanbosvg >&2; echo "vgchange=$?"
lvm lvs -a --noheadings -o lv_name,copy_percent sanbosvg
lvm vgchange -an sanbosvg >&2; echo "deactivate=$?"
"""


def _degraded_run(kparts, fab, tmp_path, name):
    return guest.run_lvm_guest(_guest_disks(fab, skip=0),
                               guest_script(VG, ["instlv", "bootlv"], "--activationmode degraded"), 300,
                               kernel=kparts, workdir=tmp_path / name)


def test_install_vg_with_a_disk_missing_activates_degraded(kparts, install_vg, tmp_path):
    """After the VG's first real activation (the kernel writes the dm-raid
    superblocks into the rmeta sub-LVs), disk 0 (legs of bootlv and instlv)
    goes missing: real LVM2 activates the raid1 LVs degraded and the
    repository still reads back intact."""
    fab, refs, expected = install_vg
    first = guest.run_lvm_guest([guest.GuestDisk(l.path, l.serial, snapshot=False) for l in fab.luns],
                                FIRST_ACTIVATION, 300, kernel=kparts, workdir=tmp_path / "first")
    assert kv_lines(first.report) == {"vgchange": "0", "deactivate": "0"}, first.console[-2000:]
    r = _degraded_run(kparts, fab, tmp_path, "degraded")
    assert r.rc == 0, r.console[-3000:]
    assert kv_lines(r.section("activate"))["vgchange"] == "0", r.console[-2000:]
    lvs = _compare_with_sanbos(r, fab, refs, missing=0)
    for name in ("bootlv", "instlv", "bos_demo"):
        assert lvs[name]["lv_attr"][4] == "a", (name, lvs[name], r.console[-2000:])
    for name in ("bootlv", "instlv"):
        assert lvs[name]["lv_attr"][8] == "p", lvs[name]      # partial: a leg is missing
    assert lvs["bos_demo"]["lv_attr"][8] == "-"
    for lv in ("instlv", "bootlv"):
        fs = kv_lines(r.section(f"fsck:{lv}"))
        assert fs == {"e2fsck": "0", "mount": "0"}, (lv, fs, r.console[-2000:])
        assert sha_lines(r.section(f"sha256:{lv}")) == expected[lv]


def test_never_activated_install_vg_with_a_disk_missing_activates_degraded(kparts, install_vg, tmp_path):
    """A raid1 LV that real LVM2 never activated (its rmeta holds the dm-raid
    superblocks and bitmaps sanbos wrote), with disk 0 missing: activates
    degraded, and the repository reads back intact."""
    fab, refs, expected = install_vg
    r = _degraded_run(kparts, fab, tmp_path, "degraded")
    assert r.rc == 0, r.console[-3000:]
    assert kv_lines(r.section("activate"))["vgchange"] == "0", r.console[-2000:]
    lvs = _compare_with_sanbos(r, fab, refs, missing=0)
    for name in ("bootlv", "instlv"):
        assert lvs[name]["lv_attr"][4] == "a" and lvs[name]["lv_attr"][8] == "p", lvs[name]
    assert "Invalid superblocks" not in r.console
    for lv in ("instlv", "bootlv"):
        assert kv_lines(r.section(f"fsck:{lv}")) == {"e2fsck": "0", "mount": "0"}, r.console[-2000:]
        assert sha_lines(r.section(f"sha256:{lv}")) == expected[lv]


# --------------------------------------------------------------------------
# the ready demo fabric (core.demo): boot copies, repository, raw BOS LV


def _copy_fabric(f, dest: Path):
    """A private copy (sparse) of a fabric, for runs that write to the disks."""
    from core import fabric as fabmod

    dest.mkdir(parents=True)
    for item in f.root.iterdir():
        if item.is_file():
            subprocess.run(["cp", "--sparse=always", str(item), str(dest / item.name)], check=True)
    return fabmod.load(dest)


@pytest.fixture(scope="module")
def demo_fabric(tmp_path_factory):
    from core import demo

    if shutil.which("qemu-system-x86_64") is None:
        pytest.skip("qemu-system-x86_64 is not installed")
    return demo.create_demo(tmp_path_factory.mktemp("guestdemo") / "fabric", disks=4, size=256 * MiB,
                            targets=1, progress=None)


def _demo_expectations(f):
    """What sanbos says about the demo install VG: TOC, boot record, refs."""
    from core import bootcopy, repo
    from core import vg as vgmod
    from core.demo import DEMO_VG
    from core.disk import DiskRef

    refs = [DiskRef(l.wwn, l.path) for l in f.luns[:4]]
    with vgmod.open_vg(DEMO_VG, refs, write=False, allow_exported=True) as vgo:
        toc = repo.toc(vgo)
        rec = bootcopy.Record.from_tags(vgo.lv("bootlv").extra.get("tags", []), "bootlv")
        boot_legs = len(vgo.lv_ranges("bootlv", 0)) and bootcopy_legs(vgo)
    return refs, toc, rec, boot_legs


def bootcopy_legs(vgo) -> int:
    from core.lvm.lvio import legs
    return legs(vgo.vg, vgo.lv("bootlv"))


def _demo_script(vg: str, toc, rec, activation: str = "") -> str:
    more = prefix_check("bootlv", f"/dev/mapper/{dm_name(vg, 'bootlv')}_rimage_*", rec.size)
    more += (r'mkdir -p /mnt/boot; mount -t ext4 -o ro /dev/$VG/bootlv /mnt/boot && '
             r'(cd /mnt/boot && echo "==sumcheck:bootlv==" && sha256sum -c SHA256SUMS; echo "check=$?"); '
             r'umount /mnt/boot' "\n")
    for e in toc.bos:
        if e.format == "raw-lv":
            more += prefix_check(e.lv, f"/dev/{vg}/{e.lv} /dev/mapper/{dm_name(vg, e.lv)}_rimage_*", e.size)
            more += f'echo "==fsck-raw:{e.lv}=="\ne2fsck -fn /dev/{vg}/{e.lv} >/dev/null 2>&1; echo "e2fsck=$?"\n'
    more += 'echo "==toc=="\nmount -t ext4 -o ro /dev/$VG/instlv /mnt/instlv && cat /mnt/instlv/TOC.json; umount /mnt/instlv\n'
    return guest_script(vg, ["instlv"], activation, more=more)


def _check_demo_report(r, f, refs, toc, rec, *, missing: int | None = None) -> None:
    from core import repo
    from core.demo import DEMO_VG

    assert r.rc == 0, r.console[-3000:]
    assert kv_lines(r.section("activate"))["vgchange"] == "0", r.console[-2000:]
    lvs = _compare_with_sanbos(r, f, refs, missing=missing, vg=DEMO_VG)
    for name in ["bootlv", "instlv"] + [e.lv for e in toc.bos if e.lv]:
        assert lvs[name]["lv_attr"][4] == "a", (name, lvs[name], r.console[-2000:])
        assert lvs[name]["lv_attr"][8] == ("-" if missing is None else "p"), (name, lvs[name])
    # the repository, mounted read-only by the real kernel: TOC and every image
    fs = kv_lines(r.section("fsck:instlv"))
    assert fs == {"e2fsck": "0", "mount": "0"}, (fs, r.console[-2000:])
    assert repo.Toc.parse(r.section("toc").encode()).pack() == toc.pack()
    got = sha_lines(r.section("sha256:instlv"))
    files = [e for e in toc.images if e.file]
    assert files, "the demo TOC lists no files"
    for e in files:
        assert got.get(e.file) == e.sha256, f"{e.file}: guest {got.get(e.file)} TOC {e.sha256}"
    assert got.get("TOC.json")
    # raw BOS LV: the LV and each surviving leg hold the image the TOC records
    for e in toc.bos:
        if e.format == "raw-lv":
            shas = prefix_shas(r.section(f"prefix:{e.lv}"))
            assert list(shas.values()).count("unreadable") == (missing is not None), (e.lv, shas)
            assert f"/dev/{DEMO_VG}/{e.lv}" in readable(shas), shas
            assert set(readable(shas).values()) == {e.sha256}, (e.lv, shas)
            assert kv_lines(r.section(f"fsck-raw:{e.lv}")) == {"e2fsck": "0"}
    # boot copies: every surviving leg is the recorded image; the file system's sums check
    shas = prefix_shas(r.section("prefix:bootlv"))
    assert len(shas) == len(rec.copies), shas
    assert len(readable(shas)) == len(rec.copies) - (missing is not None), shas
    assert set(readable(shas).values()) == {rec.sha256}
    sums = r.section("sumcheck:bootlv")
    assert kv_lines(sums).get("check") == "0" and sums.count(": OK") >= 3, sums


def test_demo_install_vg_in_real_lvm2_guest(kparts, demo_fabric, tmp_path):
    """The demo install VG (core.demo), exported: the guest imports and
    activates it, and every image matches the TOC; boot copies match the record."""
    from core import vg as vgmod
    from core.demo import DEMO_VG

    f = _copy_fabric(demo_fabric, tmp_path / "fabric")
    refs, toc, rec, _ = _demo_expectations(f)
    vgmod.export(DEMO_VG, refs)
    r = guest.run_lvm_guest(_guest_disks_n(f, 4), _demo_script(DEMO_VG, toc, rec), 300,
                            kernel=kparts, workdir=tmp_path / "guest")
    st = kv_lines(r.section("import"))
    assert st["attr_before"][2] == "x" and st["vgimport"] == "0", (st, r.console[-2000:])
    _check_demo_report(r, f, refs, toc, rec)


def test_demo_install_vg_with_a_disk_missing(kparts, demo_fabric, tmp_path):
    """The demo VG, never activated by real LVM2, loses disk 0: real LVM2
    activates it degraded and the repository, raw BOS and boot copies still check."""
    from core.demo import DEMO_VG

    f = demo_fabric                      # read only: the guest's writes go to snapshots
    refs, toc, rec, _ = _demo_expectations(f)
    r = guest.run_lvm_guest(_guest_disks_n(f, 4, skip=0),
                            _demo_script(DEMO_VG, toc, rec, "--activationmode degraded"), 300,
                            kernel=kparts, workdir=tmp_path / "guest")
    _check_demo_report(r, f, refs, toc, rec, missing=0)


def _guest_disks_n(f, n: int, skip: int | None = None):
    return [guest.GuestDisk(l.path, l.serial) for i, l in enumerate(f.luns[:n]) if i != skip]


# --------------------------------------------------------------------------
# a root VG made by `sanbos install` (core.install) on a blank target disk


def _host_tree_shas(target, dest: Path) -> dict[str, str]:
    """SHA-256 of every regular file in an ext4, read by e2fsprogs (debugfs rdump)."""
    from core import ext4

    dest.mkdir(parents=True)
    ext4.debugfs(target, f'rdump / "{dest}"')
    out = {}
    for p in sorted(dest.rglob("*")):
        if p.is_file() and not p.is_symlink():
            out[str(p.relative_to(dest))] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def test_installed_root_vg_in_real_lvm2_guest(kparts, demo_fabric, tmp_path):
    """`sanbos install` (tarball BOS + OPPs) onto a blank disk: real LVM2 activates
    the root VG; root and boot LVs pass e2fsck; every file matches what sanbos wrote."""
    from core import ext4, install
    from core import vg as vgmod
    from core.disk import DiskRef

    f = _copy_fabric(demo_fabric, tmp_path / "fabric")
    lun = f.luns[4]
    res = install.install("instvg", "sanbos-demo-bos:tar", lun.wwn, ["sanbos-demo-tools"], fabric=f.root)
    rvg = res.plan.root_vg
    refs = [DiskRef(lun.wwn, lun.path)]
    with vgmod.open_vg(rvg, refs, write=False) as vgo:
        (path, off, size), = vgo.lv_ranges(install.ROOT_LV)
    root_t = ext4.Target(Path(path), off, size, "rootlv")
    want = _host_tree_shas(root_t, tmp_path / "rootfs")
    boot = res.boot["bootlv"]
    with vgmod.open_vg(rvg, refs, write=False) as vgo:
        (bpath, boff, _), = vgo.lv_ranges(install.BOOT_LV)
    with open(bpath, "rb") as fh:
        fh.seek(boff)
        boot_sha = hashlib.sha256(fh.read(boot["size"])).hexdigest()
    more = prefix_check("bootlv", f"/dev/{rvg}/{install.BOOT_LV}", boot["size"])
    more += (r'mkdir -p /mnt/boot; mount -t ext4 -o ro /dev/$VG/bootlv /mnt/boot && '
             r'(cd /mnt/boot && echo "==sumcheck:bootlv==" && sha256sum -c SHA256SUMS; echo "check=$?"; '
             r'echo "==bootfiles=="; sha256sum vmlinuz initrd.img); umount /mnt/boot' "\n")
    r = guest.run_lvm_guest([guest.GuestDisk(lun.path, lun.serial)],
                            guest_script(rvg, [install.ROOT_LV], more=more), 300,
                            kernel=kparts, workdir=tmp_path / "guest")
    assert r.rc == 0, r.console[-3000:]
    assert kv_lines(r.section("activate")) == {"vgchange": "0", "vgmknodes": "0"}, r.console[-2000:]
    lvs = _compare_with_sanbos(r, f, refs, vg=rvg)
    assert {install.ROOT_LV, install.BOOT_LV} <= set(lvs)
    for name in (install.ROOT_LV, install.BOOT_LV):
        assert lvs[name]["lv_attr"][4] == "a", lvs[name]
    fs = kv_lines(r.section(f"fsck:{install.ROOT_LV}"))
    assert fs == {"e2fsck": "0", "mount": "0"}, (fs, r.console[-2000:])
    got = sha_lines(r.section(f"sha256:{install.ROOT_LV}"))
    assert len(want) >= 5 and got == want, (sorted(set(got) ^ set(want)))
    assert any(p.startswith("var/lib/sanbos/opps/sanbos-demo-tools") for p in got)
    assert prefix_shas(r.section("prefix:bootlv")) == {f"/dev/{rvg}/{install.BOOT_LV}": boot_sha}
    files = sha_lines(r.section("bootfiles"))
    assert files == {"vmlinuz": res.boot["kernel"]["sha256"], "initrd.img": res.boot["initrd"]["sha256"]}
    sums = r.section("sumcheck:bootlv")
    assert kv_lines(sums).get("check") == "0" and sums.count(": OK") >= 3, sums


# --------------------------------------------------------------------------
# failures an operator (or CI) can meet


def test_missing_disk_image_is_named(kparts, tmp_path):
    with pytest.raises(guest.NotFoundError, match="no-such.img"):
        guest.run_lvm_guest([tmp_path / "no-such.img"], "true", 60, kernel=kparts)


def test_guest_that_does_not_finish_is_stopped_by_its_pid(kparts, tmp_path):
    """A script that never ends: GuestError after the timeout, and the QEMU
    process of this run (found by its unique work directory) is gone."""
    wd = tmp_path / "hang"
    with pytest.raises(guest.GuestError, match="did not finish within"):
        guest.run_lvm_guest([], "sleep 100000", 25, kernel=kparts, workdir=wd)
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                cmd = Path(f"/proc/{pid}/cmdline").read_bytes()
            except OSError:
                continue
            assert str(wd).encode() not in cmd, f"QEMU {pid} of this run is still running"
