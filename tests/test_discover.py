"""Discovery of block devices: pyudev + sysfs fallbacks; loop devices over fabric images; multipath.

With root, real loop devices attached to fabric images are found through
pyudev/sysfs with their backing file, offset and size, and after the image is
labelled the listing shows its partitions.  Multipath grouping and the
fallback rules are checked against a fake sysfs/procfs tree (the functions
take their roots as parameters), since this machine has no SCSI paths.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT
from core import discover, gpt, inventory
from core.disk import Disk

MiB = 1024 * 1024
NAA = "naa.600a0b800011223344556677889900aa"


# ---------------------------------------------------------------------------
# a fake sysfs


class FakeSys:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.sys = root / "sys"
        self.proc = root / "proc"
        (self.sys / "class" / "block").mkdir(parents=True)
        (self.proc / "self").mkdir(parents=True)
        (self.proc / "self" / "mountinfo").write_text(
            "22 27 0:21 / /proc rw,relatime - proc proc rw\n")
        (self.proc / "swaps").write_text("Filename\tType\tSize\tUsed\tPriority\n")

    def disk(self, name: str, devpath: str, dev: str, size: int, *, ro: bool = False,
             files: dict[str, str] | None = None, device_files: dict[str, str] | None = None,
             partitions: dict[str, str] | None = None, holders: tuple[str, ...] = (),
             slaves: tuple[str, ...] = ()) -> Path:
        d = self.sys / "devices" / devpath / "block" / name
        d.mkdir(parents=True)
        (d / "dev").write_text(dev + "\n")
        (d / "size").write_text(f"{size // 512}\n")
        (d / "ro").write_text("1\n" if ro else "0\n")
        (d / "holders").mkdir()
        (d / "slaves").mkdir()
        for h in holders:
            (d / "holders" / h).mkdir()
        for s in slaves:
            (d / "slaves" / s).mkdir()
        for rel, text in (files or {}).items():
            (d / rel).parent.mkdir(parents=True, exist_ok=True)
            (d / rel).write_text(text + "\n")
        if device_files is not None:
            dev_dir = d.parent.parent        # .../2:0:0:1
            for rel, text in device_files.items():
                (dev_dir / rel).write_text(text + "\n")
            (d / "device").symlink_to(os.path.relpath(dev_dir, d))
        for pname, pdev in (partitions or {}).items():
            p = d / pname
            p.mkdir()
            (p / "partition").write_text("1\n")
            (p / "dev").write_text(pdev + "\n")
            (p / "holders").mkdir()
            (self.sys / "class" / "block" / pname).symlink_to(os.path.relpath(p, self.sys / "class" / "block"))
        (self.sys / "class" / "block" / name).symlink_to(os.path.relpath(d, self.sys / "class" / "block"))
        return d

    def mount(self, devnum: str, where: str) -> None:
        with open(self.proc / "self" / "mountinfo", "a") as f:
            f.write(f"40 27 {devnum} / {where} rw,relatime - ext4 /dev/x rw\n")

    def list(self):
        return discover.list_block_disks(sysfs=str(self.sys), proc=str(self.proc))


def scsi(host: int) -> str:
    return f"pci0000:00/0000:00:1f.2/host{host}/target{host}:0:0/{host}:0:0:1"


def test_multipath_paths_without_a_map_are_one_disk(tmp_path: Path) -> None:
    fs = FakeSys(tmp_path)
    fs.disk("sda", scsi(2), "8:0", 10 * MiB * 1024, device_files={"wwid": NAA})
    fs.disk("sdb", scsi(3), "8:16", 10 * MiB * 1024, device_files={"wwid": NAA.upper()})
    disks = fs.list()
    assert len(disks) == 1
    d = disks[0]
    assert d.id == NAA and d.wwn == NAA and d.kind == "multipath"
    assert d.addresses == ["pci-0000:00:1f.2-scsi-2:0:0:1", "pci-0000:00:1f.2-scsi-3:0:0:1"]
    assert d.paths == ["/dev/sda", "/dev/sdb"] and str(d.path) == "/dev/sda"
    assert d.size == 10 * 1024 * MiB and d.in_use is None


def test_multipath_map_is_the_device_and_its_paths_are_not_in_use(tmp_path: Path) -> None:
    fs = FakeSys(tmp_path)
    fs.disk("sda", scsi(2), "8:0", 4 * 1024 * MiB, device_files={"wwid": NAA}, holders=("dm-0",))
    fs.disk("sdb", scsi(3), "8:16", 4 * 1024 * MiB, device_files={"wwid": NAA}, holders=("dm-0",))
    fs.disk("dm-0", "virtual", "254:0", 4 * 1024 * MiB, slaves=("sda", "sdb"),
            files={"dm/uuid": "mpath-3" + NAA[4:], "dm/name": "mpatha"})
    fs.disk("dm-1", "virtual", "254:1", MiB, files={"dm/uuid": "LVM-abcdef", "dm/name": "vg-lv"})
    disks = fs.list()
    assert [d.id for d in disks] == [NAA]
    d = disks[0]
    assert str(d.path) == "/dev/dm-0" and d.kind == "multipath"
    assert d.paths == ["/dev/sda", "/dev/sdb"] and len(d.addresses) == 2
    assert d.in_use is None


def test_fallback_ids_flags_and_skips(tmp_path: Path) -> None:
    fs = FakeSys(tmp_path)
    # an ATA disk: a t10 wwid is no WWN, so the serial is the ID; a partition is mounted
    fs.disk("sdc", "pci0000:00/0000:00:1f.2/ata3/host4/target4:0:0/4:0:0:0", "8:32", 64 * MiB,
            device_files={"wwid": "t10.ATA     QEMU HARDDISK   QM00005", "serial": "QM00005"},
            partitions={"sdc1": "8:33"})
    fs.mount("8:33", "/data")
    # virtio with a serial; virtio without anything, read-only, held by md0
    fs.disk("vdb", "pci0000:00/0000:00:05.0/virtio3", "254:16", 32 * MiB, files={"serial": "VSER1"})
    fs.disk("vdc", "pci0000:00/0000:00:06.0/virtio4", "254:32", 32 * MiB, ro=True, holders=("md0",))
    # an NVMe namespace: wwid on the block device itself
    fs.disk("nvme0n1", "pci0000:00/0000:00:07.0/nvme/nvme0", "259:0", 128 * MiB,
            files={"wwid": "eui.0025388b71b13c5a"})
    # a loop device with a backing file and offset; an unattached one; ram and zram
    fs.disk("loop0", "virtual", "7:0", 16 * MiB,
            files={"loop/backing_file": "/images/lun00.img", "loop/offset": "1048576", "loop/sizelimit": "0"})
    fs.disk("loop1", "virtual", "7:1", 0)
    fs.disk("ram0", "virtual", "1:0", 16 * MiB)
    fs.disk("zram0", "virtual", "252:0", 16 * MiB)
    by = {str(d.path): d for d in fs.list()}
    assert sorted(by) == ["/dev/loop0", "/dev/nvme0n1", "/dev/sdc", "/dev/vdb", "/dev/vdc"]
    sdc = by["/dev/sdc"]
    assert sdc.id == "serial:QM00005" and sdc.wwn is None and sdc.serial == "QM00005"
    assert sdc.in_use == "/dev/sdc1 is mounted on /data"
    assert sdc.addresses == ["pci-0000:00:1f.2-scsi-4:0:0:0"]
    vdb = by["/dev/vdb"]
    assert vdb.id == "serial:VSER1" and vdb.addresses == ["pci-0000:00:05.0"] and not vdb.read_only
    vdc = by["/dev/vdc"]
    assert vdc.id == "path:/dev/vdc" and vdc.read_only and vdc.in_use == "held by md0"
    assert by["/dev/nvme0n1"].id == "eui.0025388b71b13c5a"
    lo = by["/dev/loop0"]
    assert lo.kind == "loop" and lo.backing_file == "/images/lun00.img" and lo.backing_offset == MiB
    assert lo.id == "path:/dev/loop0" and lo.size == 16 * MiB
    assert lo.addresses == ["loop-/images/lun00.img@1048576"]


def test_scsi_serial_from_vpd_page_80(tmp_path: Path) -> None:
    fs = FakeSys(tmp_path)
    d = fs.disk("sde", scsi(6), "8:64", 64 * MiB, device_files={})
    serial = b"SB2CE5F7000003"
    (d / "device" / "vpd_pg80").write_bytes(bytes([0, 0x80, 0, len(serial)]) + serial)
    e = fs.disk("sdf", scsi(7), "8:80", 64 * MiB, device_files={})
    (e / "device" / "vpd_pg80").write_bytes(b"\x00\x83\x00\x04abcd")  # not page 0x80: ignored
    by = {str(x.path): x for x in fs.list()}
    assert by["/dev/sde"].serial == "SB2CE5F7000003" and by["/dev/sde"].id == "serial:SB2CE5F7000003"
    assert by["/dev/sdf"].serial is None


def test_udev_properties_win_over_sysfs(tmp_path: Path, monkeypatch) -> None:
    fs = FakeSys(tmp_path)
    d = fs.disk("sdd", scsi(5), "8:48", 64 * MiB, device_files={"wwid": "naa.1111111111111111"})
    dev = discover._Dev("sdd", d, "/dev/sdd", {"ID_WWN_WITH_EXTENSION": "0x5000c500a1b2c3d4",
                                                "ID_SERIAL_SHORT": "ZA1", "ID_PATH": "pci-0000:00:1f.2-ata-5"})
    info = discover._probe(dev, str(fs.sys), str(fs.proc))
    assert info.wwn == "naa.5000c500a1b2c3d4" and info.serial == "ZA1"
    assert info.addresses == ["pci-0000:00:1f.2-ata-5"]


# ---------------------------------------------------------------------------
# real loop devices over fabric images (root)


def _find(disks, dev: str):
    hits = [d for d in disks if str(d.path) == dev]
    assert len(hits) == 1, [str(d.path) for d in disks]
    return hits[0]


def test_loop_devices_over_fabric_images(make_fabric, loopdev) -> None:
    f = make_fabric(disks=2, size=96 * MiB)
    a, b = f.luns
    dev_a = loopdev(a.path)
    dev_b = loopdev(b.path, offset=MiB)
    found = discover.list_block_disks()
    la, lb = _find(found, dev_a), _find(found, dev_b)
    assert la.kind == "loop" and la.backing_file == str(a.path) and la.backing_offset == 0
    assert la.size == 96 * MiB and la.id == f"path:{dev_a}"
    assert lb.backing_file == str(b.path) and lb.backing_offset == MiB and lb.size == 95 * MiB
    # pyudev enumerates it (no udev daemon here: no ID_* properties), and the
    # plain sysfs walk finds exactly the same
    import pyudev
    names = {d.device_node for d in pyudev.Context().list_devices(subsystem="block", DEVTYPE="disk")}
    assert dev_a in names and dev_b in names
    walk = discover.list_block_disks(udev=False)
    assert _find(walk, dev_a) == la and _find(walk, dev_b) == lb
    # the full listing reads the devices: blank before labelling
    before = _find(inventory.list_disks(), dev_a)
    assert before.membership == "free" and before.partitions == [] and before.layout == "-"
    # label the image file itself (not through the loop device); the listing sees it
    with Disk(a.path, writable=True, lock="exclusive") as d:
        plan = gpt.apply_layout(d)
    after = _find(inventory.list_disks(), dev_a)
    assert [(p.number, p.name, p.start, p.size, p.kind) for p in after.partitions] == \
           [(p.number, p.name, p.start, p.size, p.kind) for p in plan]
    assert after.membership == "labelled" and after.layout == "bios 1M,esp 32M,lvm 61M"
    # the fabric view of the same image says it is in use by the loop device
    fl = {d.id: d for d in inventory.list_disks(f.root)}
    assert fl[a.wwn].in_use == f"attached to {dev_a}" and fl[a.wwn].membership == "labelled"
    assert fl[b.wwn].in_use == f"attached to {dev_b} at offset {MiB}"
    # and the CLI shows the loop devices with their backing files
    r = subprocess.run([sys.executable, "-m", "console.cli", "disks", "--json"], capture_output=True, text=True,
                       cwd=ROOT, env={k: v for k, v in dict(os.environ, PYTHONPATH=str(ROOT)).items()
                                      if k != "SANBOS_FABRIC"})
    assert r.returncode == 0, r.stderr
    j = {d["path"]: d for d in json.loads(r.stdout)}
    assert j[dev_a]["backing_file"] == str(a.path) and j[dev_a]["partitions"][2]["kind"] == "lvm"
    assert j[dev_b]["backing_offset"] == MiB


def test_pv_uuid_seen_through_loop_device(make_fabric, loopdev) -> None:
    from conftest import lvm_cmd
    f = make_fabric(disks=1, size=96 * MiB)
    lun = f.luns[0]
    with Disk(lun.path, writable=True, lock="exclusive") as d:
        p3 = gpt.apply_layout(d)[2]
    pv = loopdev(lun.path, offset=p3.start, size=p3.size)
    lvm_cmd("vgcreate", "-q", "discvg", pv, devices=[pv])
    real = lvm_cmd("pvs", "--noheadings", "-o", "pv_uuid,vg_name", pv, devices=[pv]).stdout.split()
    whole = loopdev(lun.path)
    listing = inventory.list_disks()
    w = _find(listing, whole)
    assert (w.pv_uuid, w.vg_name, w.membership) == (real[0], "discvg", "pv:discvg")
    # the PV range itself (a loop device over just partition 3) is a whole-disk PV
    p = _find(listing, pv)
    assert (p.pv_uuid, p.vg_name) == (real[0], "discvg")
    # one PV seen on two devices is reported, not silently picked
    for d in (w, p):
        assert any(f"PV {real[0]} appears on more than one disk" in x for x in d.problems), d.problems
    # and on the fabric too, without root tools
    fl = inventory.list_disks(f.root)
    assert (fl[0].pv_uuid, fl[0].vg_name) == (real[0], "discvg")
    assert inventory.find(fl, real[0].replace("-", "")[:10]).id == lun.wwn


def test_cli_labels_a_loop_device_by_id(make_fabric, loopdev) -> None:
    f = make_fabric(disks=1, size=64 * MiB)
    dev = loopdev(f.luns[0].path)
    env = {k: v for k, v in dict(os.environ, PYTHONPATH=str(ROOT)).items() if k != "SANBOS_FABRIC"}
    r = subprocess.run([sys.executable, "-m", "console.cli", "disk", "label", f"path:{dev}"],
                       capture_output=True, text=True, cwd=ROOT, env=env)
    assert r.returncode == 0, r.stderr
    assert f"disk path:{dev} ({dev}) labelled" in r.stdout
    v = subprocess.run(["sgdisk", "-v", dev], capture_output=True, text=True)
    assert "No problems found" in v.stdout
    r = subprocess.run([sys.executable, "-m", "console.cli", "disk", "label", f"path:{dev}"],
                       capture_output=True, text=True, cwd=ROOT, env=env)
    assert r.returncode == 1
    assert f"disk path:{dev} ({dev}) is not blank: carries a GPT partition table; " \
           f"if you are sure, force with --force path:{dev}" in r.stderr
