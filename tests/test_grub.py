"""GRUB on boot disks: grub-mkimage images, boot.img/core.img in MBR + bios_grub, FAT ESP, read by GRUB's lvm."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from boothelp import VG, demo_image, install_vg, leg_range, partitions
from conftest import require_tool
from core import bootcopy, ext4, grub
from core.errors import FormatError, SpaceError, UsageError


@pytest.fixture(scope="module")
def vg4(tmp_path_factory):
    require_tool("grub-mkimage", "grub-fstest", "mkfs.fat", "mcopy", "fsck.fat")
    d = tmp_path_factory.mktemp("grub")
    image = demo_image(d / "boot.img")
    f, refs = install_vg(d / "fabric", image)
    return {"fabric": f, "refs": refs, "image": image}


def test_device_names_double_dashes():
    assert grub.lvm_device("inst-vg", "bootlv_rimage_0") == "lvm/inst--vg-bootlv_rimage_0"
    assert grub.lvm_device("a-b-c", "x-y") == "lvm/a--b--c-x--y"


def test_config_own_copy_first_then_fallbacks():
    copies = [grub.Copy("naa.1", "lvm/vg-bootlv_rimage_1"), grub.Copy("naa.0", "lvm/vg-bootlv_rimage_0")]
    cfg = grub.config(copies, "console=ttyS0 quiet", this_disk="naa.1")
    lines = cfg.splitlines()
    assert lines[1].startswith("serial ") and "terminal_output serial console" in cfg
    first = next(i for i, l in enumerate(lines) if "hashsum" in l)
    assert "--check (lvm/vg-bootlv_rimage_1)/SHA256SUMS --prefix (lvm/vg-bootlv_rimage_1)" in lines[first]
    boots = [l.strip() for l in lines if l.strip().startswith("linux ")]
    assert boots == ["linux (lvm/vg-bootlv_rimage_1)/vmlinuz console=ttyS0 quiet sanbos.copy=naa.1",
                     "linux (lvm/vg-bootlv_rimage_0)/vmlinuz console=ttyS0 quiet sanbos.copy=naa.0"]
    assert "exit" not in lines  # BIOS stays at the prompt
    assert grub.config(copies, "quiet", platform="x86_64-efi").splitlines()[-1] == "exit"
    with pytest.raises(UsageError):
        grub.config(copies, 'quiet "$(x)"')
    with pytest.raises(UsageError):
        grub.config([grub.Copy("naa.1; reboot", "lvm/vg-x")], "quiet")
    with pytest.raises(UsageError):
        grub.config([], "quiet")


def test_uefi_handover_config():
    copies = [grub.Copy("naa.1", "lvm/vg-bootlv_rimage_0"), grub.Copy("naa.2", "lvm/vg-bootlv_rimage_1")]
    vid = grub.volume_id("naa.1")
    assert vid == grub.volume_id("naa.1") != grub.volume_id("naa.2")
    assert len(vid) == 8 and vid.isdigit()          # GRUB's spelling of it has no letter case
    assert grub.fs_uuid(vid) == f"{vid[:4]}-{vid[4:]}"
    cfg = grub.config(copies, "quiet", platform="x86_64-efi", this_disk="naa.1", esp_id=vid)
    lines = [l.strip() for l in cfg.splitlines()]
    assert lines[-1] == "exit" and lines.index("exit") > lines.index("boot")
    # every copy is tried before the handover
    assert max(i for i, l in enumerate(lines) if l.startswith("linux ")) < lines.index("set sanbos_own=")
    assert f'if [ "$sanbos_id" = "{grub.fs_uuid(vid)}" ]; then set sanbos_own=$n; fi' in lines
    assert "if [ $n -gt $sanbos_own ]; then" in lines     # only disks after its own ESP
    assert lines.index("set root=(hd$n,gpt2)") + 1 == lines.index(
        "if chainloader (hd$n,gpt2)/EFI/BOOT/BOOTX64.EFI; then")
    loop = next(l for l in lines if l.startswith("for n in "))
    assert loop == "for n in " + " ".join(map(str, range(grub.HANDOVER_DISKS))) + "; do"
    assert grub.commands(cfg)[-5:] == ["boot", "probe", "chainloader", "sleep", "exit"]
    assert "n" not in grub.commands(cfg)                 # "for n in ...": no command "n"
    # BIOS: unchanged by the ESP ID; UEFI without it: exit at once, as before
    assert grub.config(copies, "quiet", esp_id=vid) == grub.config(copies, "quiet")
    plain = grub.config(copies, "quiet", platform="x86_64-efi")
    assert "chainloader" not in plain and plain.endswith('no good boot copy on any disk"\nsleep 2\nexit\n')
    with pytest.raises(UsageError):
        grub.config(copies, "quiet", platform="x86_64-efi", esp_id="12; boot")


def test_mkimage_both_platforms(tmp_path):
    require_tool("grub-mkimage")
    cfg = grub.config([grub.Copy("naa.1", "lvm/vg-bootlv")], "quiet")
    core = grub.mkimage("i386-pc", cfg, tmp_path / "core.img")
    efi = grub.mkimage("x86_64-efi", cfg, tmp_path / "BOOTX64.EFI")
    assert core.stat().st_size < 1024 * 1024
    assert efi.read_bytes()[:2] == b"MZ"
    # the memdisk carries the config verbatim
    assert b"sanbos.copy=naa.1" in core.read_bytes() or b"sanbos.copy=naa.1" in efi.read_bytes()


def test_mbr_and_bios_grub(vg4):
    boot_img = (grub.GRUB_LIB / "i386-pc" / "boot.img").read_bytes()
    for ref in vg4["refs"]:
        parts = partitions(ref.path)
        st = grub.read_bios(ref.path, parts["bios_grub"].start)
        assert st["grub_boot"] and st["signature"] and st["boot_drive"] == 0xFF
        start, count, _seg = st["blocklist"]
        assert start == parts["bios_grub"].start // 512 + 1 and count > 10
        mbr = Path(ref.path).read_bytes()[:512]
        assert mbr[0x1C2] == 0xEE  # protective MBR entry kept
        assert mbr[0x5A:0x5C] == boot_img[0x5A:0x5C] and mbr[0x68:0x1B8] == boot_img[0x68:0x1B8]
    require_tool("sgdisk")
    for ref in vg4["refs"]:
        res = subprocess.run(["sgdisk", "-v", str(ref.path)], capture_output=True, text=True)
        assert "No problems found" in res.stdout, res.stdout


def test_install_keeps_partition_table_bytes(vg4, tmp_path):
    ref = vg4["refs"][0]
    parts = partitions(ref.path)
    before = Path(ref.path).read_bytes()[:512]
    core = grub.mkimage("i386-pc", grub.config([grub.Copy(ref.id, "lvm/x-y")], "quiet"), tmp_path / "core.img")
    copy = tmp_path / "disk.img"
    subprocess.run(["cp", "--sparse=always", str(ref.path), str(copy)], check=True)
    grub.install_bios(copy, core, parts["bios_grub"].start, parts["bios_grub"].size)
    after = copy.read_bytes()[:512]
    assert after[440:] == before[440:]
    with pytest.raises(SpaceError, match="does not fit in the bios_grub partition"):
        grub.install_bios(copy, core, parts["bios_grub"].start, 64 * 1024)
    blank = tmp_path / "blank.img"
    blank.write_bytes(bytes(4 * 1024 * 1024))
    with pytest.raises(FormatError, match="no protective MBR"):
        grub.install_bios(blank, core, 1024 * 1024, 1024 * 1024)


def test_esp_is_clean_fat_with_bootx64(vg4, loopdev):
    for ref in vg4["refs"]:
        esp = partitions(ref.path)["esp"]
        clean, out = grub.esp_fsck(ref.path, esp.start, esp.size)
        assert clean, out
        data = grub.esp_read(ref.path, esp.start)
        assert data[:2] == b"MZ" and ref.id.encode() in data
        # bootcopy installs with the UEFI handover: the ESP's FAT volume ID is the disk's, and its
        # script looks for it
        assert grub.read_volume_id(ref.path, esp.start) == grub.volume_id(ref.id)
        assert f'"$sanbos_id" = "{grub.fs_uuid(grub.volume_id(ref.id))}"'.encode() in data
    # and through an offset loop device, as an operator would
    ref = vg4["refs"][1]
    esp = partitions(ref.path)["esp"]
    dev = loopdev(ref.path, esp.start, esp.size, readonly=True)
    res = subprocess.run(["fsck.fat", "-n", dev], capture_output=True, text=True)
    assert res.returncode == 0, res.stdout + res.stderr


def test_grub_fstest_reads_every_copy_through_lvm(vg4, tmp_path):
    refs = vg4["refs"]
    paths = [str(r.path) for r in refs]
    kernel = ext4.read_file(ext4.Target(vg4["image"], 0, vg4["image"].stat().st_size), "/vmlinuz")
    (tmp_path / "vmlinuz").write_bytes(kernel)
    for k in range(4):
        dev = grub.lvm_device(VG, f"bootlv_rimage_{k}")
        listing = grub.fstest(paths, "ls", f"({dev})/")
        for name in ("vmlinuz", "initrd.img", "SHA256SUMS", "cmdline", "sanbos-boot.json"):
            assert name in listing, listing
        grub.fstest(paths, "cmp", f"({dev})/vmlinuz", str(tmp_path / "vmlinuz"))
        # each disk alone is enough for GRUB to read its own copy
        alone = grub.fstest([paths[k]], "ls", f"({dev})/")
        assert "vmlinuz" in alone


def test_every_copy_is_a_clean_ext2(vg4):
    size = vg4["image"].stat().st_size
    for k in range(4):
        path, off, length = leg_range(vg4["refs"], k)
        clean, out = ext4.fsck(ext4.Target(Path(path), off, size))
        assert clean, out


def test_boot_disk_without_gpt_is_refused(tmp_path):
    from core import fabric as fab, vg as vgmod
    from core.disk import DiskRef
    f = fab.create(tmp_path / "f", 2, 64 * 1024 * 1024)
    refs = [DiskRef(l.wwn, l.path) for l in f.luns]
    vgmod.create("wholevg", refs, layout="whole")
    with pytest.raises(UsageError, match=r"disk naa\.[0-9a-f]+: no GPT"):
        bootcopy.mirror("wholevg", refs, demo_image(tmp_path / "b.img"))
