"""GPT layout with pyparted, checked by sgdisk and parted; every safety refusal.

The layout is verified by the real tools (``sgdisk -v``, ``sgdisk -i N``,
``parted -s IMG unit s print``), not by our own reader alone.  Refusals are
driven through ``sanbos disk label`` as an operator would meet them, with real
signatures made by real tools (mke2fs, mkfs.fat, mkswap, LVM2's pvcreate).
"""

from __future__ import annotations

import hashlib
import os
import re
import struct
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from conftest import ROOT, lvm_cmd, require_root, require_tool
from core import gpt, safety
from core.disk import Disk, DiskRef
from core.errors import DiskError, FormatError, SpaceError, UnsafeDiskError

MiB = 1024 * 1024


def sanbos(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "console.cli", *args], capture_output=True, text=True,
                          cwd=ROOT, env=dict(os.environ, PYTHONPATH=str(ROOT)))


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def label(path: Path) -> list[gpt.Partition]:
    with Disk(path, writable=True, lock="exclusive") as d:
        return gpt.apply_layout(d)


def parted_print(path: Path | str) -> dict[int, dict]:
    require_tool("parted")
    out = subprocess.run(["parted", "-s", str(path), "unit", "s", "print"], capture_output=True,
                         text=True, check=True).stdout
    assert "Partition Table: gpt" in out, out
    rows = {}
    for line in out.splitlines():
        m = re.match(r"\s*(\d+)\s+(\d+)s\s+(\d+)s\s+(\d+)s\s+(.*)$", line)
        if m:
            rows[int(m.group(1))] = {"start": int(m.group(2)), "end": int(m.group(3)),
                                     "size": int(m.group(4)), "rest": m.group(5)}
    return rows


def sgdisk_type(path: Path | str, n: int) -> str:
    out = subprocess.run(["sgdisk", "-i", str(n), str(path)], capture_output=True, text=True, check=True).stdout
    m = re.search(r"Partition GUID code: ([0-9A-F-]{36})", out)
    assert m, out
    return m.group(1)


def assert_layout_by_tools(path: Path | str, size: int) -> None:
    require_tool("sgdisk", "parted")
    v = subprocess.run(["sgdisk", "-v", str(path)], capture_output=True, text=True)
    assert v.returncode == 0 and "No problems found" in v.stdout, v.stdout + v.stderr
    rows = parted_print(path)
    assert sorted(rows) == [1, 2, 3]
    assert (rows[1]["start"], rows[1]["size"]) == (2048, 2048)
    assert "sanbos-bios" in rows[1]["rest"] and "bios_grub" in rows[1]["rest"]
    assert (rows[2]["start"], rows[2]["size"]) == (4096, 65536)
    assert "sanbos-esp" in rows[2]["rest"] and "boot, esp" in rows[2]["rest"]
    lvm_end_sector = ((size - 33 * 512) // MiB * MiB) // 512   # last 1 MiB boundary before the backup GPT
    assert rows[3]["start"] == 69632 and rows[3]["end"] == lvm_end_sector - 1
    assert rows[3]["start"] % 2048 == 0 and (rows[3]["end"] + 1) % 2048 == 0
    assert "sanbos-lvm" in rows[3]["rest"] and "lvm" in rows[3]["rest"]
    assert sgdisk_type(path, 1) == gpt.BIOS_GRUB_GUID
    assert sgdisk_type(path, 2) == gpt.ESP_GUID
    assert sgdisk_type(path, 3) == "E6D6D379-F507-44C2-A23C-238F2A3DF928"


# ---------------------------------------------------------------------------
# the plan and the table


def test_plan_layout_numbers() -> None:
    p = gpt.plan_layout(64 * MiB)
    assert [(x.number, x.name, x.kind) for x in p] == [
        (1, "sanbos-bios", "bios_grub"), (2, "sanbos-esp", "esp"), (3, "sanbos-lvm", "lvm")]
    assert [(x.start, x.size) for x in p] == [(1 * MiB, 1 * MiB), (2 * MiB, 32 * MiB), (34 * MiB, 29 * MiB)]
    assert p[2].type_guid == "E6D6D379-F507-44C2-A23C-238F2A3DF928"
    big = gpt.plan_layout(10 * 1024 * MiB + 512 * 7)
    assert big[2].start == 34 * MiB and big[2].end == 10 * 1024 * MiB - MiB
    assert all(x.start % MiB == 0 and x.size % MiB == 0 for x in big)


def test_plan_layout_too_small() -> None:
    assert gpt.plan_layout(gpt.MIN_DISK_SIZE)[2].size == gpt.MIN_LVM_SIZE
    with pytest.raises(SpaceError, match=r"too small.*needs at least 43M"):
        gpt.plan_layout(gpt.MIN_DISK_SIZE - 512)


def test_apply_layout_on_image_checked_by_sgdisk_and_parted(make_fabric) -> None:
    f = make_fabric(disks=1, size=64 * MiB)
    path = f.luns[0].path
    parts = label(path)
    assert parts == gpt.plan_layout(64 * MiB)
    assert_layout_by_tools(path, 64 * MiB)
    with Disk(path) as d:
        assert gpt.read_table(d) == parts
        assert gpt.lvm_partition(d) == parts[2]
    # the image stays sparse: only the tables were written
    assert os.stat(path).st_blocks * 512 < 1 * MiB


def test_apply_layout_odd_size(tmp_path: Path) -> None:
    img = tmp_path / "odd.img"
    size = 200 * MiB + 512 * 13
    with open(img, "wb") as f:
        f.truncate(size)
    label(img)
    assert_layout_by_tools(img, size)


def test_apply_layout_on_loop_block_device(make_fabric, loopdev) -> None:
    f = make_fabric(disks=1, size=96 * MiB)
    dev = loopdev(f.luns[0].path)
    with Disk(dev, writable=True, lock="exclusive") as d:
        assert d.is_block
        parts = gpt.apply_layout(d)
    assert parts == gpt.plan_layout(96 * MiB)
    assert_layout_by_tools(dev, 96 * MiB)
    assert_layout_by_tools(f.luns[0].path, 96 * MiB)   # through the loop device onto the image


def test_apply_layout_needs_writable_exclusive(make_fabric) -> None:
    f = make_fabric(disks=1)
    path = f.luns[0].path
    with Disk(path, name="naa.x") as d:
        with pytest.raises(DiskError, match="naa.x: opened read-only"):
            gpt.apply_layout(d)
    with Disk(path, writable=True, lock="shared", name="naa.x") as d:
        with pytest.raises(DiskError, match="naa.x: not locked for writing"):
            gpt.apply_layout(d)
    with Disk(path) as d:
        assert gpt.read_table(d) is None


def test_read_table_uses_backup_and_reports_corruption(make_fabric) -> None:
    f = make_fabric(disks=1)
    path = f.luns[0].path
    parts = label(path)
    with Disk(path, writable=True, lock="exclusive", name="naa.bad") as d:
        hdr = bytearray(d.read(512, 512))
        hdr[40] ^= 0xFF                   # damage the primary header (its CRC no longer matches)
        d.write(512, bytes(hdr))
        assert gpt.read_table(d) == parts  # read from the backup header
        # sgdisk agrees: main header bad, backup good
        v = subprocess.run(["sgdisk", "-v", str(path)], capture_output=True, text=True)
        assert "Main header: ERROR" in v.stderr and "Backup header: OK" in v.stderr, v.stderr
        last = d.size - 512
        b = bytearray(d.read(last, 512))
        b[40] ^= 0xFF
        d.write(last, bytes(b))
        with pytest.raises(FormatError, match=r"naa.bad: both GPT headers are damaged"):
            gpt.read_table(d)
    # sgdisk finds no usable GPT either: it starts a new one in memory
    v = subprocess.run(["sgdisk", "-v", str(path)], capture_output=True, text=True)
    assert "Creating new GPT entries in memory" in v.stdout, v.stdout


def test_read_table_entry_crc(make_fabric) -> None:
    f = make_fabric(disks=1)
    path = f.luns[0].path
    label(path)
    with Disk(path, writable=True, lock="exclusive", name="naa.ent") as d:
        d.write(1024 + 56, b"X")          # a name byte of entry 1 (primary array)
        # primary entries fail; the backup header and entries are still good
        assert [p.name for p in gpt.read_table(d)] == ["sanbos-bios", "sanbos-esp", "sanbos-lvm"]


def test_pyparted_reads_what_read_table_reads(make_fabric) -> None:
    import parted
    f = make_fabric(disks=1, size=80 * MiB)
    path = f.luns[0].path
    ours = label(path)
    dev = parted.getDevice(str(path))
    try:
        pd = parted.newDisk(dev)
        theirs = [(p.number, p.geometry.start * 512, p.geometry.length * 512, p.name) for p in pd.partitions]
    finally:
        dev.removeFromCache()
    assert theirs == [(p.number, p.start, p.size, p.name) for p in ours]


# ---------------------------------------------------------------------------
# safety: what assess() finds, with real tools


def test_assess_blank_and_labelled(make_fabric) -> None:
    f = make_fabric(disks=2)
    a, b = (DiskRef(l.wwn, l.path) for l in f.luns)
    assert safety.assess(a) == []
    label(b.path)
    assert safety.assess(b) == ["carries a GPT partition table"]


def test_assess_signatures_made_by_real_tools(make_fabric) -> None:
    require_tool("mke2fs", "mkfs.fat", "mkswap")
    f = make_fabric(disks=4)
    e, fat, swap, part = (DiskRef(l.wwn, l.path) for l in f.luns)
    subprocess.run(["mke2fs", "-q", "-F", "-t", "ext4", "-L", "old", str(e.path)], check=True)
    subprocess.run(["mkfs.fat", "-F", "32", str(fat.path)], check=True, capture_output=True)
    subprocess.run(["mkswap", str(swap.path)], check=True, capture_output=True)
    label(part.path)
    # an ext4 file system inside the LVM partition, at its byte offset
    subprocess.run(["mke2fs", "-q", "-F", "-t", "ext4", "-E", f"offset={34 * MiB}", str(part.path), "16M"],
                   check=True)
    assert safety.assess(e) == ["carries an ext4 file system (label 'old')"]
    assert safety.assess(fat) == ["carries a FAT32 file system"]
    assert safety.assess(swap) == ["carries a swap area"]
    assert safety.assess(part) == ["carries a GPT partition table",
                                   "partition 3 (sanbos-lvm) carries an ext4 file system"]


def test_assess_mbr_and_md_and_lvm_whole_disk(make_fabric) -> None:
    require_tool("parted")
    f = make_fabric(disks=2)
    mbr, md = (DiskRef(l.wwn, l.path) for l in f.luns)
    subprocess.run(["parted", "-s", str(mbr.path), "mklabel", "msdos", "mkpart", "primary", "1MiB", "20MiB"],
                   check=True)
    subprocess.run(["mkfs.fat", "-F", "16", "--offset", "2048", str(mbr.path), str(19 * 1024)],
                   check=True, capture_output=True)
    r = safety.assess(mbr)
    assert r[0] == "carries an MBR (DOS) partition table with 1 partition(s)"
    assert "MBR partition 1 carries a FAT16 file system" in r
    # an md 1.2 superblock (magic a92b4efc at 4 KiB), as mdadm writes it
    with Disk(md.path, writable=True) as d:
        d.write(4096, struct.pack("<II", 0xA92B4EFC, 1))
    assert safety.assess(md, use_blkid=False) == ["carries an md RAID member superblock (1.2)"]


def test_assess_real_lvm_pv_in_partition(make_fabric, loopdev) -> None:
    f = make_fabric(disks=1)
    ref = DiskRef(f.luns[0].wwn, f.luns[0].path)
    p3 = label(ref.path)[2]
    dev = loopdev(ref.path, offset=p3.start, size=p3.size)
    lvm_cmd("pvcreate", "-q", dev, devices=[dev])
    subprocess.run(["losetup", "-d", dev], check=True)
    reasons = safety.assess(ref)
    assert reasons[0] == "carries a GPT partition table"
    assert re.fullmatch(r"partition 3 \(sanbos-lvm\) carries an LVM2 physical volume label "
                        r"\(PV UUID \w{6}(-\w{4}){5}-\w{6}\)", reasons[1]), reasons


# ---------------------------------------------------------------------------
# refusals through the CLI, --force and --dry-run


def lun_ids(f) -> list[str]:
    return [l.wwn for l in f.luns]


def test_cli_label_blank_disk_by_prefix(make_fabric) -> None:
    f = make_fabric(disks=2)
    wwn = f.luns[1].wwn
    r = sanbos("disk", "label", wwn[:-2], "--fabric", str(f.root))
    assert r.returncode == 0, r.stderr
    assert f"disk {wwn} ({f.luns[1].path}) labelled" in r.stdout
    assert_layout_by_tools(f.luns[1].path, f.luns[1].size)


def test_cli_refuses_existing_table_then_force(make_fabric) -> None:
    f = make_fabric(disks=2)
    lun = f.luns[0]
    label(lun.path)
    r = sanbos("disk", "label", lun.wwn, "--fabric", str(f.root))
    assert r.returncode == 1
    assert r.stderr.strip() == (f"sanbos: disk {lun.wwn} ({lun.path}) is not blank: carries a GPT partition "
                                f"table; if you are sure, force with --force {lun.wwn}")
    assert "Traceback" not in r.stderr
    # forcing another disk does not force this one
    r = sanbos("disk", "label", lun.wwn, "--fabric", str(f.root), "--force", f.luns[1].wwn)
    assert r.returncode == 1 and "force with --force" in r.stderr
    r = sanbos("disk", "label", lun.wwn, "--fabric", str(f.root), "--force", lun.wwn)
    assert r.returncode == 0, r.stderr
    assert "forced: overwrote what disk" in r.stdout
    assert_layout_by_tools(lun.path, lun.size)


def test_cli_refuses_ext4_and_force_wipes_it(make_fabric) -> None:
    require_tool("mke2fs", "blkid")
    f = make_fabric(disks=1)
    lun = f.luns[0]
    subprocess.run(["mke2fs", "-q", "-F", "-t", "ext4", str(lun.path)], check=True)
    r = sanbos("disk", "label", lun.wwn, "--fabric", str(f.root))
    assert r.returncode == 1
    assert f"disk {lun.wwn}" in r.stderr and "carries an ext4 file system" in r.stderr
    assert f"force with --force {lun.wwn}" in r.stderr
    r = sanbos("disk", "label", lun.wwn, "--fabric", str(f.root), "--force", lun.wwn)
    assert r.returncode == 0, r.stderr
    # only the GPT is left: blkid finds no file system on the disk any more
    b = subprocess.run(["blkid", "-p", "-o", "export", str(lun.path)], capture_output=True, text=True)
    assert "PTTYPE=gpt" in b.stdout and "TYPE=ext4" not in b.stdout, b.stdout
    assert_layout_by_tools(lun.path, lun.size)


def test_cli_refuses_fat(make_fabric) -> None:
    require_tool("mkfs.fat")
    f = make_fabric(disks=1)
    lun = f.luns[0]
    subprocess.run(["mkfs.fat", "-F", "16", str(lun.path)], check=True, capture_output=True)
    r = sanbos("disk", "label", lun.wwn, "--fabric", str(f.root))
    assert r.returncode == 1 and "carries a FAT16 file system" in r.stderr, r.stderr


def test_cli_refuses_lvm_label(make_fabric, loopdev) -> None:
    f = make_fabric(disks=1)
    lun = f.luns[0]
    dev = loopdev(lun.path)
    lvm_cmd("pvcreate", "-q", dev, devices=[dev])
    subprocess.run(["losetup", "-d", dev], check=True)
    r = sanbos("disk", "label", lun.wwn, "--fabric", str(f.root))
    assert r.returncode == 1
    assert "carries an LVM2 physical volume label (PV UUID" in r.stderr, r.stderr
    r = sanbos("disk", "label", lun.wwn, "--fabric", str(f.root), "--force", lun.wwn)
    assert r.returncode == 0, r.stderr
    with Disk(lun.path) as d:          # the old label is gone, not just hidden behind the GPT
        assert safety.lvm_label(d.read(0, 2048)) is None
        assert b"LABELONE" not in d.read(0, 1 * MiB)


def test_cli_refuses_in_use_loop_device(make_fabric, loopdev) -> None:
    f = make_fabric(disks=1)
    lun = f.luns[0]
    dev = loopdev(lun.path)
    r = sanbos("disk", "label", lun.wwn, "--fabric", str(f.root))
    assert r.returncode == 1
    assert f"in use: attached to loop device {dev}" in r.stderr, r.stderr
    assert f"force with --force {lun.wwn}" in r.stderr


def test_cli_refuses_mounted_even_forced(make_fabric, loopdev, tmp_path: Path) -> None:
    require_root()
    require_tool("mke2fs", "mount", "umount")
    f = make_fabric(disks=1)
    lun = f.luns[0]
    subprocess.run(["mke2fs", "-q", "-F", "-t", "ext4", str(lun.path)], check=True)
    dev = loopdev(lun.path)
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    m = subprocess.run(["mount", "-o", "ro", dev, str(mnt)], capture_output=True, text=True)
    if m.returncode != 0:
        pytest.skip(f"cannot mount a loop device here: {m.stderr.strip()}")
    try:
        r = sanbos("disk", "label", lun.wwn, "--fabric", str(f.root), "--force", lun.wwn)
        assert r.returncode == 1
        assert f"attached to loop device {dev}, and {dev} is mounted on {mnt}" in r.stderr, r.stderr
        assert "--force cannot override" in r.stderr
        # the block device itself, named directly
        with pytest.raises(UnsafeDiskError, match=f"{dev} is mounted on {mnt}"):
            safety.require_safe(DiskRef("path:" + dev, Path(dev)), force_ids=["path:" + dev])
    finally:
        subprocess.run(["umount", str(mnt)], check=True)


def test_cli_refuses_too_small_even_forced(make_fabric) -> None:
    f = make_fabric(disks=1, size=40 * MiB)
    lun = f.luns[0]
    before = sha256(lun.path)
    r = sanbos("disk", "label", lun.wwn, "--fabric", str(f.root), "--force", lun.wwn)
    assert r.returncode == 1
    assert f"disk {lun.wwn} ({lun.path}) cannot be written: too small: 40M" in r.stderr
    assert "--force cannot override" in r.stderr
    assert sha256(lun.path) == before


def test_cli_refuses_disk_locked_by_another_writer(make_fabric) -> None:
    f = make_fabric(disks=1)
    lun = f.luns[0]
    with Disk(lun.path, writable=True, lock="exclusive"):
        r = sanbos("disk", "label", lun.wwn, "--fabric", str(f.root))
    assert r.returncode == 1
    assert f"{lun.wwn}: busy, cannot write: held by {os.getpid()}" in r.stderr, r.stderr


def test_dry_run_writes_nothing(make_fabric) -> None:
    require_tool("mke2fs")
    f = make_fabric(disks=2)
    blank, used = f.luns
    subprocess.run(["mke2fs", "-q", "-F", "-t", "ext4", str(used.path)], check=True)
    sums = {l.file: sha256(l.path) for l in f.luns}
    r = sanbos("disk", "label", blank.wwn, "--fabric", str(f.root), "--dry-run")
    assert r.returncode == 0, r.stderr
    assert "plan (dry run, nothing written)" in r.stdout
    assert "sanbos-lvm" in r.stdout and "E6D6D379-F507-44C2-A23C-238F2A3DF928" in r.stdout
    assert "the disk is blank" in r.stdout
    r = sanbos("disk", "label", used.wwn, "--fabric", str(f.root), "--dry-run")
    assert r.returncode == 1 and "carries an ext4 file system" in r.stderr
    r = sanbos("disk", "label", used.wwn, "--fabric", str(f.root), "--dry-run", "--force", used.wwn)
    assert r.returncode == 0 and "would overwrite: carries an ext4 file system" in r.stdout
    assert {l.file: sha256(l.path) for l in f.luns} == sums


def test_cli_usage_errors(make_fabric) -> None:
    f = make_fabric(disks=2)
    r = sanbos("disk", "label")
    assert r.returncode == 2 and "required: ID" in r.stderr
    r = sanbos("disk", "label", "naa.nothing", "--fabric", str(f.root))
    assert r.returncode == 1 and "no disk matches 'naa.nothing'" in r.stderr
    r = sanbos("disk", "label", "naa.", "--fabric", str(f.root))
    assert r.returncode == 1 and "is ambiguous" in r.stderr


def test_require_safe_api(make_fabric) -> None:
    f = make_fabric(disks=1)
    lun = f.luns[0]
    ref = DiskRef(lun.wwn, lun.path)
    assert safety.require_safe(ref) == []
    label(ref.path)
    with pytest.raises(UnsafeDiskError) as e:
        safety.require_safe(ref, force_ids=[lun.wwn[:-1]])     # a prefix is not the ID
    assert str(e.value).endswith(f"force with --force {lun.wwn}")
    assert safety.require_safe(ref, force_ids=[lun.wwn.upper()]) == ["carries a GPT partition table"]
    with pytest.raises(UnsafeDiskError, match="too small"):
        safety.require_safe(ref, force_ids=[lun.wwn], min_size=1 << 40)


def test_4k_sector_device(make_fabric) -> None:
    """A 4Kn disk (loop device with 4096-byte logical sectors): same byte layout, 4 KiB LBAs."""
    from core import inventory
    require_root()
    f = make_fabric(disks=1, size=100 * MiB + 16 * 1024)
    cmd = ["losetup", "-f", "--show", "--sector-size", "4096", str(f.luns[0].path)]
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"losetup cannot make a 4096-byte-sector loop device here: {r.stderr.strip()}")
    dev = r.stdout.strip()
    try:
        with Disk(dev, writable=True, lock="exclusive") as d:
            assert gpt.sector_size(d) == 4096
            parts = gpt.apply_layout(d)
            assert gpt.read_table(d) == parts
        assert parts == gpt.plan_layout(100 * MiB + 16 * 1024, 4096)
        assert [(p.start, p.size) for p in parts] == [(MiB, MiB), (2 * MiB, 32 * MiB), (34 * MiB, 65 * MiB)]
        v = subprocess.run(["sgdisk", "-v", dev], capture_output=True, text=True)
        assert "No problems found" in v.stdout, v.stdout
        rows = parted_print(dev)
        assert [(rows[n]["start"], rows[n]["size"]) for n in (1, 2, 3)] == [(256, 256), (512, 8192), (8704, 16640)]
        info = [x for x in inventory.list_disks() if str(x.path) == dev][0]
        assert info.membership == "labelled" and [p.kind for p in info.partitions] == ["bios_grub", "esp", "lvm"]
        assert safety.assess(DiskRef("path:" + dev, Path(dev)))[0] == "carries a GPT partition table"
    finally:
        subprocess.run(["losetup", "-d", dev], check=False)


def test_read_table_reads_what_sgdisk_wrote(tmp_path: Path) -> None:
    """Our reader against a table made by another tool (sgdisk), with a foreign entry count and types."""
    require_tool("sgdisk")
    img = tmp_path / "sg.img"
    with open(img, "wb") as fh:
        fh.truncate(128 * MiB)
    subprocess.run(["sgdisk", "-o", "-S", "56",
                    "-n", "1:2048:+1M", "-t", "1:EF02", "-c", "1:grub",
                    "-n", "2:0:+32M", "-t", "2:EF00", "-c", "2:EFI system",
                    "-n", "5:0:+20M", "-t", "5:8300", "-c", "5:data ü",
                    "-n", "3:0:0", "-t", "3:8E00", "-c", "3:pv", str(img)], check=True, capture_output=True)
    with Disk(img, name="naa.sg") as d:
        parts = gpt.read_table(d)
        lvm = gpt.lvm_partition(d)
    assert [(p.number, p.name, p.kind) for p in parts] == [
        (1, "grub", "bios_grub"), (2, "EFI system", "esp"), (3, "pv", "lvm"), (5, "data ü", "other")]
    assert parts[3].type_guid == gpt.LINUX_DATA_GUID
    out = subprocess.run(["sgdisk", "-p", str(img)], capture_output=True, text=True, check=True).stdout
    for line in out.splitlines():
        m = re.match(r"\s+(\d+)\s+(\d+)\s+(\d+)\s", line)
        if m:
            n, first, last = map(int, m.groups())
            p = [x for x in parts if x.number == n][0]
            assert (p.start, p.size) == (first * 512, (last - first + 1) * 512)
    assert lvm.number == 3


def test_libparted_failure_is_a_disk_error(make_fabric, monkeypatch) -> None:
    import _ped
    import parted
    f = make_fabric(disks=1)

    def boom(*a, **k):
        raise _ped.DiskException("simulated libparted failure")
    monkeypatch.setattr(parted, "freshDisk", boom)
    with Disk(f.luns[0].path, writable=True, lock="exclusive", name="naa.boom") as d:
        with pytest.raises(DiskError, match="naa.boom: libparted failed to write the partition table: "
                                            "simulated libparted failure"):
            gpt.apply_layout(d)


def test_refuses_image_open_in_qemu(make_fabric) -> None:
    """A running QEMU process (qemu-io here) holding the image open counts as in use."""
    require_tool("qemu-io")
    f = make_fabric(disks=1)
    lun = f.luns[0]
    q = subprocess.Popen(["qemu-io", "-f", "raw", "-c", "sleep 20000", str(lun.path)],
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        ref = DiskRef(lun.wwn, lun.path)
        for _ in range(100):            # wait until it has the image open
            if safety.openers(lun.path):
                break
            import time
            time.sleep(0.05)
        assert safety.assess(ref) == [f"in use: open in {q.pid} (qemu-io)"]
        r = sanbos("disk", "label", lun.wwn, "--fabric", str(f.root))
        assert r.returncode == 1 and f"in use: open in {q.pid} (qemu-io)" in r.stderr, r.stderr
        # the listing sees QEMU's image lock (an OFD byte-range lock) without walking /proc
        from core import inventory
        [info] = inventory.list_disks(f.root)
        assert info.in_use == "byte-range locked (as a running QEMU locks its disk images)"
    finally:
        q.kill()
        q.wait(timeout=10)
    assert safety.assess(ref) == []
