"""Boot copies: mirror, verify, repair, replace, add, remove; real LVM2 accepts the VG after each."""

from __future__ import annotations

import hashlib
import os
import json
import subprocess
from pathlib import Path

import pytest

from boothelp import VG, demo_image, flip_byte, install_vg, leg_range, partitions
from conftest import lvm_cmd, require_tool
from core import bootcopy, bootimage, debparts, ext4, grub
from core import vg as vgmod
from core.errors import FormatError, LVMError, SpaceError, UsageError

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def image(tmp_path_factory) -> Path:
    require_tool("grub-mkimage", "mkfs.fat", "mcopy")
    return demo_image(tmp_path_factory.mktemp("img") / "boot.img")


@pytest.fixture
def vg4(tmp_path, image):
    f, refs = install_vg(tmp_path / "fabric", image)
    return {"fabric": f, "refs": refs, "image": image}


def real_lvm_accepts(refs, loopdev) -> str:
    """vgck + lvs -a through real LVM2 on loop devices over each LVM partition."""
    devs = []
    for r in refs:
        p = partitions(r.path)["lvm"]
        devs.append(loopdev(r.path, p.start, p.size))
    lvm_cmd("vgck", VG, devices=devs)
    out = lvm_cmd("lvs", "-a", "--noheadings", "-o", "lv_name,segtype,devices,lv_tags", VG, devices=devs).stdout
    assert "bootlv" in out
    return out


def leg_sha(refs, k, size) -> str:
    path, off, _ = leg_range(refs, k)
    with open(path, "rb") as f:
        f.seek(off)
        return hashlib.sha256(f.read(size)).hexdigest()


def test_mirror_records_every_copy(vg4, loopdev):
    refs, image = vg4["refs"], vg4["image"]
    rep = bootcopy.verify(VG, refs)
    assert rep.ok and [c.disk_id for c in rep.copies] == [r.id for r in refs]
    sha = hashlib.sha256(image.read_bytes()).hexdigest()
    assert rep.image_sha256 == sha and all(c.sha256 == sha for c in rep.copies)
    assert all(c.grub_bios and c.grub_uefi for c in rep.copies)
    with vgmod.open_vg(VG, refs, write=False) as vgo:
        lv = vgo.lv("bootlv")
        assert lv.segments[0].type == "raid1" and len(lv.segments[0].images) == 4
        tags = lv.extra["tags"]
    assert f"sanbos.bootimage={image.stat().st_size}:{sha}" in tags
    out = real_lvm_accepts(refs, loopdev)
    assert out.count("[bootlv_rimage_") == 4 and "raid1" in out and "sanbos.copy.4=" in out
    with vgmod.open_vg(VG, refs, write=False) as vgo:
        assert bootcopy.boot_order(vgo) == [r.id for r in refs]


def test_boot_order_follows_the_record_and_names_missing_disks(vg4):
    """boot_order reads the record the mirror wrote: after removing the first boot
    disk's copy the order is the other three; a copy on a disk that is not here is
    named by its PV UUID."""
    refs = vg4["refs"]
    bootcopy.remove(VG, refs, [refs[0].id])
    with vgmod.open_vg(VG, refs, write=False) as vgo:
        assert bootcopy.boot_order(vgo) == [r.id for r in refs[1:]]
    with vgmod.open_vg(VG, refs[:3], write=False, allow_missing=True) as vgo:
        order = bootcopy.boot_order(vgo)
    assert order[:2] == [refs[1].id, refs[2].id] and order[2].startswith("PV "), order


@pytest.mark.parametrize("k", [0, 1, 2, 3])
def test_verify_finds_one_flipped_byte_and_repair_restores(vg4, k, loopdev):
    refs, image = vg4["refs"], vg4["image"]
    size = image.stat().st_size
    path, off, _ = leg_range(refs, k)
    flip_byte(path, off + size // 2 + 1234 * (k + 1))
    rep = bootcopy.verify(VG, refs)
    assert not rep.ok
    assert rep.health() == {r.id: ("bad" if i == k else "ok") for i, r in enumerate(refs)}
    bad = rep.copies[k]
    assert bad.disk_id == refs[k].id and "SHA-256 differs" in bad.detail
    fixed = bootcopy.repair(VG, refs)
    assert fixed.ok, str(fixed)
    assert any(f"copy {k + 1} on {refs[k].id} rewritten" in a for a in fixed.actions)
    assert leg_sha(refs, k, size) == hashlib.sha256(image.read_bytes()).hexdigest()
    real_lvm_accepts(refs, loopdev)


def test_verify_names_the_damaged_file(vg4):
    refs, image = vg4["refs"], vg4["image"]
    kernel = ext4.read_file(ext4.Target(image, 0, image.stat().st_size), "/vmlinuz")
    path, off, _ = leg_range(refs, 2)
    with open(path, "rb") as f:
        f.seek(off)
        data = f.read(image.stat().st_size)
    flip_byte(path, off + data.find(kernel[0x3000:0x3040]) + 5)
    rep = bootcopy.verify(VG, refs)
    assert rep.copies[2].status == "bad" and "vmlinuz does not match" in rep.copies[2].detail


def test_repair_reinstalls_missing_grub(vg4):
    refs = vg4["refs"]
    esp = partitions(refs[3].path)["esp"]
    with open(refs[3].path, "r+b") as f:
        f.seek(esp.start)
        f.write(bytes(1024 * 1024))
    rep = bootcopy.verify(VG, refs)
    assert rep.health()[refs[3].id] == "bad" and "UEFI not installed" in rep.copies[3].detail
    fixed = bootcopy.repair(VG, refs)
    assert fixed.ok and any(f"installed on {refs[3].id}" in a for a in fixed.actions)


def test_replace_changes_every_copy(vg4, tmp_path, loopdev):
    refs, image = vg4["refs"], vg4["image"]
    k = debparts.kernel()
    initrd = bootimage.demo_initrd(tmp_path / "i2", title="replacement image")
    new = tmp_path / "new.img"
    info = bootimage.build(k.vmlinuz, initrd, "console=ttyS0,115200 panic=-1", new)
    old_sha = hashlib.sha256(image.read_bytes()).hexdigest()
    assert info.sha256 != old_sha
    rep = bootcopy.replace(VG, refs, new)
    assert rep.ok and rep.image_sha256 == info.sha256
    for i in range(4):
        assert leg_sha(refs, i, info.size) == info.sha256
    # GRUB was regenerated with the new command line
    esp = partitions(refs[0].path)["esp"]
    assert b"console=ttyS0,115200 panic=-1 sanbos.copy=" in grub.esp_read(refs[0].path, esp.start)
    real_lvm_accepts(refs, loopdev)


def test_replace_with_too_large_image_writes_nothing(vg4, tmp_path):
    refs = vg4["refs"]
    k = debparts.kernel()
    big_initrd = tmp_path / "big.img"
    # a valid gzip'd newc archive that is too large for bootlv (incompressible payload)
    import os, gzip
    payload = tmp_path / "payload"
    payload.mkdir()
    (payload / "blob").write_bytes(os.urandom(40 * 1024 * 1024))
    cpio = subprocess.run(f"cd {payload} && find . | {debparts.busybox()} cpio -o -H newc", shell=True,
                          capture_output=True, check=True).stdout
    big_initrd.write_bytes(gzip.compress(cpio, compresslevel=1))
    big = tmp_path / "big-boot.img"
    bootimage.build(k.vmlinuz, big_initrd, None, big)
    before = [leg_sha(refs, i, 4 << 20) for i in range(4)]
    seq = vgmod.open_vg(VG, refs, write=False)
    seqno = seq.seqno
    seq.close()
    with pytest.raises(SpaceError, match=r"larger than the boot copy space.*nothing written"):
        bootcopy.replace(VG, refs, big)
    assert [leg_sha(refs, i, 4 << 20) for i in range(4)] == before
    with vgmod.open_vg(VG, refs, write=False) as vgo:
        assert vgo.seqno == seqno


def test_not_a_boot_image_is_refused(vg4, tmp_path):
    junk = tmp_path / "junk.img"
    junk.write_bytes(b"\0" * (1 << 20))
    with pytest.raises(FormatError, match="not a readable ext2"):
        bootcopy.replace(VG, vg4["refs"], junk)


def test_mirror_refusals(tmp_path, image):
    from core import fabric as fab
    from core.disk import DiskRef
    f = fab.create(tmp_path / "small", 2, 48 * 1024 * 1024)
    refs = [DiskRef(l.wwn, l.path) for l in f.luns]
    vgmod.create("smallvg", refs)
    with pytest.raises(SpaceError, match=rf"disk {refs[0].id}: boot copy needs"):
        bootcopy.mirror("smallvg", refs, image)
    with vgmod.open_vg("smallvg", refs, write=False) as vgo:
        assert vgo.vg.lv("bootlv") is None
    with pytest.raises(UsageError, match="named twice"):
        bootcopy.mirror("smallvg", refs, image, boot=[refs[0].id, refs[0].id], size=4 << 20)


def test_mirror_twice_is_refused(vg4):
    with pytest.raises(LVMError, match="already has boot copies"):
        bootcopy.mirror(VG, vg4["refs"], vg4["image"])


def test_remove_and_add_boot_disks(vg4, loopdev):
    refs = vg4["refs"]
    rep = bootcopy.remove(VG, refs, [refs[1].id])
    assert rep.ok and [c.disk_id for c in rep.copies] == [refs[0].id, refs[2].id, refs[3].id]
    assert not grub.read_bios(refs[1].path, partitions(refs[1].path)["bios_grub"].start)["grub_boot"]
    real_lvm_accepts(refs, loopdev)
    with pytest.raises(UsageError, match="not a boot disk"):
        bootcopy.remove(VG, refs, [refs[1].id])
    rep = bootcopy.remove(VG, refs, [refs[2].id, refs[3].id])
    assert rep.ok and len(rep.copies) == 1
    with vgmod.open_vg(VG, refs, write=False) as vgo:
        assert vgo.lv("bootlv").seg_type == "linear"
    with pytest.raises(UsageError, match="every boot copy"):
        bootcopy.remove(VG, refs, [refs[0].id])
    rep = bootcopy.add(VG, refs, [refs[3].id, refs[1].id])
    assert rep.ok and [c.disk_id for c in rep.copies] == [refs[0].id, refs[3].id, refs[1].id]
    with pytest.raises(UsageError, match="already a boot disk"):
        bootcopy.add(VG, refs, [refs[0].id])
    out = real_lvm_accepts(refs, loopdev)
    assert out.count("[bootlv_rimage_") == 3
    paths = [str(r.path) for r in refs]
    for k in range(3):
        assert "vmlinuz" in grub.fstest(paths, "ls", f"({grub.lvm_device(VG, f'bootlv_rimage_{k}')})/")


def test_cli_verify_json_and_errors(vg4):
    py = str(ROOT / ".venv/bin/python")
    root = str(vg4["fabric"].root)
    res = subprocess.run([py, "-m", "console.cli", "bootcopy", "verify", VG, "--fabric", root, "--json"],
                         cwd=ROOT, capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    data = json.loads(res.stdout)
    assert data["ok"] and len(data["copies"]) == 4
    path, off, _ = leg_range(vg4["refs"], 0)
    flip_byte(path, off + 4096)
    res = subprocess.run([py, "-m", "console.cli", "bootcopy", "verify", VG, "--fabric", root],
                         cwd=ROOT, capture_output=True, text=True)
    assert res.returncode == 1 and "BAD" in res.stdout and vg4["refs"][0].id in res.stdout
    res = subprocess.run([py, "-m", "console.cli", "bootcopy", "repair", VG, "--fabric", root],
                         cwd=ROOT, capture_output=True, text=True)
    assert res.returncode == 0 and "rewritten" in res.stdout and "[" in res.stderr
    res = subprocess.run([py, "-m", "console.cli", "bootcopy", "add", VG, "--fabric", root, "--disk", "naa.ffff"],
                         cwd=ROOT, capture_output=True, text=True)
    assert res.returncode != 0 and "Traceback" not in res.stderr
    assert res.stderr.count("\n") == 1 and res.stderr.startswith("sanbos:") and "naa.ffff" in res.stderr


def test_mirror_resumes_after_an_interrupted_run(tmp_path, image, loopdev):
    """A kill after bootlv was created but before any copy was recorded: mirror starts over."""
    from core import fabric as fab
    from core.disk import DiskRef
    f = fab.create(tmp_path / "f", 2, 128 * 1024 * 1024)
    refs = [DiskRef(l.wwn, l.path) for l in f.luns]
    vgmod.create(VG, refs)
    vgmod.lv_create(VG, refs, "bootlv", 32 << 20, type="raid1", pvs=[r.id for r in refs])
    with pytest.raises(FormatError, match="no sanbos boot copy record"):
        bootcopy.verify(VG, refs)
    rep = bootcopy.mirror(VG, refs, image)
    assert rep.ok and "interrupted mirror removed" in rep.actions[0]
    real_lvm_accepts(refs, loopdev)


def test_cli_mirror_on_chosen_disks_in_chosen_order(tmp_path, image, loopdev):
    from core import fabric as fab
    from core.disk import DiskRef
    f = fab.create(tmp_path / "f", 4, 128 * 1024 * 1024)
    refs = [DiskRef(l.wwn, l.path) for l in f.luns]
    vgmod.create(VG, refs)
    py = str(ROOT / ".venv/bin/python")
    # boot disks 4 then 2, in that order
    res = subprocess.run([py, "-m", "console.cli", "bootcopy", "mirror", VG, "--fabric", str(f.root),
                          "--image", str(image), "--disk", refs[3].id, "--disk", refs[1].id, "--json"],
                         cwd=ROOT, capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    data = json.loads(res.stdout)
    assert [c["disk_id"] for c in data["copies"]] == [refs[3].id, refs[1].id]
    for i, r in enumerate(refs):
        st = grub.read_bios(r.path, partitions(r.path)["bios_grub"].start)
        assert st["grub_boot"] == (i in (1, 3))
    esp = partitions(refs[1].path)["esp"]
    cfg = grub.esp_read(refs[1].path, esp.start)
    own = cfg.find(f"sanbos.copy={refs[1].id}".encode())
    other = cfg.find(f"sanbos.copy={refs[3].id}".encode())
    assert 0 < own < other   # disk 2's GRUB tries its own copy first, then disk 4's
    real_lvm_accepts(refs, loopdev)


def test_verify_with_a_disk_absent(vg4):
    refs = vg4["refs"]
    rep = bootcopy.verify(VG, refs[1:])
    assert [c.status for c in rep.copies] == ["missing", "ok", "ok", "ok"]
    assert "not found on the disks given" in rep.copies[0].detail
    path, off, _ = leg_range(refs, 2)
    flip_byte(path, off + 99)
    fixed = bootcopy.repair(VG, refs[1:])
    assert [c.status for c in fixed.copies] == ["missing", "ok", "ok", "ok"]
    assert bootcopy.verify(VG, refs).ok


def test_verify_finds_grub_made_for_another_disk(vg4):
    refs = vg4["refs"]
    esp0, esp1 = partitions(refs[0].path)["esp"], partitions(refs[1].path)["esp"]
    with open(refs[1].path, "rb") as f:
        f.seek(esp1.start)
        other = f.read(esp1.size)
    with open(refs[0].path, "r+b") as f:
        f.seek(esp0.start)
        f.write(other)
    rep = bootcopy.verify(VG, refs)
    assert rep.health()[refs[0].id] == "bad" and rep.copies[0].grub_uefi is False
    assert bootcopy.repair(VG, refs).ok
