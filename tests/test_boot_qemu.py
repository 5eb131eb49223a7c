"""Boot proofs under QEMU (TCG): every boot disk of a 4-disk install VG boots its own copy,
BIOS (SeaBIOS) and UEFI (OVMF); a corrupt copy falls back to the next; a blank disk is skipped
(by OVMF: SeaBIOS only ever tries the first hard disk of its boot order); under OVMF a disk whose
GRUB finds no good copy hands over to the loader on the next disk's ESP (``chainloader``: GRUB
2.06's ``exit`` would return to the firmware, which starts its boot manager menu, UiApp, not the
next disk), and only with no later disk left runs ``exit`` (built in: minicmd) to the firmware."""

from __future__ import annotations

import os
import re
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from boothelp import DISK_SIZE, demo_image, flip_byte, install_vg, leg_range, sparse_copy
from conftest import require_tool
from core import bootcopy, bootimage, ext4, grub, qemu
from core import fabric as fab
from core import vg as vgmod
from core.disk import DiskRef
from core.errors import UsageError

TIMEOUT = 120.0   # TCG on a busy 2-core machine; a boot takes ~5-15 s
WORKERS = 2


@pytest.fixture(scope="module")
def vg4(tmp_path_factory):
    require_tool("qemu-system-x86_64", "grub-mkimage", "mkfs.fat")
    d = tmp_path_factory.mktemp("bootqemu")
    image = demo_image(d / "boot.img")
    f, refs = install_vg(d / "fabric", image)
    return {"dir": d, "fabric": f, "refs": refs, "image": image}


def _boot(drives, log: Path, firmware: str = "bios") -> qemu.Result:
    res = qemu.boot(drives, log, bootimage.BANNER_RE, qemu.Options(firmware=firmware), timeout=TIMEOUT)
    print(f"{log.name}: {firmware} {'banner' if res.ok else 'NO BANNER'} after {res.seconds:.1f} s")
    return res


def _drive(lun, bootindex: int, path: Path | None = None) -> qemu.Drive:
    return qemu.Drive(str(path or lun.path), serial=lun.serial, bootindex=bootindex, readonly=True)


def test_bios_each_boot_disk_alone_boots_its_own_copy(vg4):
    luns = vg4["fabric"].luns
    with ThreadPoolExecutor(WORKERS) as pool:
        futs = [pool.submit(_boot, [_drive(l, 1)], vg4["dir"] / f"bios-disk{i + 1}.log")
                for i, l in enumerate(luns)]
        results = [f.result() for f in futs]
    for lun, res in zip(luns, results):
        assert res.ok, f"disk {lun.wwn}: no banner within {TIMEOUT} s; serial log tail:\n{res.log[-1500:]}"
        assert res.matched.group(1) == lun.wwn
        assert f"booting copy 1 from disk {lun.wwn}" in res.log
        assert "vmlinuz: OK" in res.log   # GRUB's hashsum checked the copy


def test_uefi_boot_disk_boots_its_own_copy(vg4):
    require_tool(str(qemu.OVMF))
    luns = vg4["fabric"].luns
    picks = [3]   # disk 4; disk 2 boots under OVMF in the blank-disk test below
    with ThreadPoolExecutor(WORKERS) as pool:
        futs = [pool.submit(_boot, [_drive(luns[i], 1)], vg4["dir"] / f"uefi-disk{i + 1}.log", "uefi")
                for i in picks]
        results = [f.result() for f in futs]
    for i, res in zip(picks, results):
        assert res.ok, f"UEFI disk {luns[i].wwn}: no banner; serial log tail:\n{res.log[-1500:]}"
        assert res.matched.group(1) == luns[i].wwn
        assert "(x86_64-efi)" in res.log


def test_corrupt_copy_falls_back_and_blank_first_disk_is_skipped(vg4):
    d, luns, refs, image = vg4["dir"], vg4["fabric"].luns, vg4["refs"], vg4["image"]
    # disk 1 with one byte of the kernel in its copy changed
    bad1 = sparse_copy(Path(luns[0].path), d / "disk1-corrupt.img")
    kernel = ext4.read_file(ext4.Target(image, 0, image.stat().st_size), "/vmlinuz")
    path, off, _ = leg_range(refs, 0)
    with open(bad1, "rb") as f:
        f.seek(off)
        data = f.read(image.stat().st_size)
    pos = data.find(kernel[0x5000:0x5040])
    assert pos > 0
    flip_byte(bad1, off + pos + 17)
    # disk 1 blank: the firmware must go on to the next disk in its boot order
    blank = d / "disk1-blank.img"
    with open(blank, "wb") as f:
        f.truncate(os.path.getsize(luns[0].path))
    rest = [_drive(l, i + 2) for i, l in enumerate(luns[1:])]
    # SeaBIOS gives only the first hard disk of its boot order a boot attempt (all hard disks share
    # one "Hard Disk" entry), so the firmware's own move to the next disk is proven under OVMF,
    # which tries each disk's EFI/BOOT/BOOTX64.EFI in the bootindex order.
    with ThreadPoolExecutor(WORKERS) as pool:
        corrupt = pool.submit(_boot, [_drive(luns[0], 1, bad1)] + rest, d / "bios-disk1-corrupt.log")
        empty = pool.submit(_boot, [_drive(luns[0], 1, blank)] + rest, d / "uefi-disk1-blank.log", "uefi")
        corrupt, empty = corrupt.result(), empty.result()
    assert corrupt.ok, f"no banner with copy 1 corrupt; serial log tail:\n{corrupt.log[-2000:]}"
    assert f"copy 1 on disk {luns[0].wwn} is corrupt" in corrupt.log
    assert corrupt.matched.group(1) == luns[1].wwn
    assert f"GRUB on disk {luns[0].wwn}" in corrupt.log   # it was disk 1's GRUB that fell back
    assert empty.ok, f"no banner with disk 1 blank; serial log tail:\n{empty.log[-2000:]}"
    assert f"GRUB on disk {luns[1].wwn}" in empty.log and empty.matched.group(1) == luns[1].wwn
    assert "failed to load Boot" in empty.log   # OVMF tried the blank disk first


def _corrupt_copy1(vg4, dest: Path, k: int = 0) -> Path:
    """A copy of disk ``k + 1`` (default disk 1) whose boot copy (leg ``k``) has one byte of the
    kernel changed."""
    image, refs = vg4["image"], vg4["refs"]
    bad = sparse_copy(Path(vg4["fabric"].luns[k].path), dest)
    kernel = ext4.read_file(ext4.Target(image, 0, image.stat().st_size), "/vmlinuz")
    path, off, _ = leg_range(refs, k)
    assert Path(path) == Path(vg4["fabric"].luns[k].path)
    with open(bad, "rb") as f:
        f.seek(off)
        data = f.read(image.stat().st_size)
    pos = data.find(kernel[0x5000:0x5040])
    assert pos > 0
    flip_byte(bad, off + pos + 17)
    return bad


_ANSI = re.compile(r"\x1b\[[0-9;?=]*[A-Za-z]")
_FIRMWARE_AGAIN = re.compile(r'BdsDxe: starting Boot[0-9A-F]{4} "([^"]*)"')


def _uefi_boot_or_menu(drives: list[qemu.Drive], log: Path) -> dict:
    """One OVMF boot that ends at a sanbos banner or at the firmware's boot manager menu (UiApp)."""
    # GRUB's EFI linux loader needs >= 512 MiB (said explicitly, whatever the default becomes)
    opts = qemu.Options(firmware="uefi", memory=512)
    either = re.compile(bootimage.BANNER_RE.pattern + r'|BdsDxe: starting Boot[0-9A-F]{4} "UiApp"')
    with qemu.Machine(drives, log, opts) as m:
        res = m.wait_for(either, TIMEOUT)
        first = res.seconds
        if res.matched and not bootimage.BANNER_RE.search(res.log):
            # the firmware went to its menu: give a later move to another disk a fair chance to show
            later = m.wait_for(bootimage.BANNER_RE, 20)
            res = qemu.Result(later.matched, later.exited, later.returncode, later.seconds, later.log)
    text = _ANSI.sub("", res.log).replace("\r", "")
    print(f"{log.name}: uefi: {res.log and (_FIRMWARE_AGAIN.findall(text) or ['?'])[-1]} started after "
          f"{first:.1f} s; {'banner' if bootimage.BANNER_RE.search(text) else 'no banner'} by {res.seconds:.1f} s")
    return {"text": text, "res": res}


def _disk1_alone_drive(vg4, name: str) -> qemu.Drive:
    """Disk 1 of the 4-disk VG with its copy corrupt: its GRUB reaches no good copy (copies 2-4 are
    on disks not attached)."""
    lun = vg4["fabric"].luns[0]
    return qemu.Drive(str(_corrupt_copy1(vg4, vg4["dir"] / name)), serial=lun.serial, bootindex=1,
                      readonly=True)


def _assert_disk1_found_no_good_copy(text: str, d1: str, missing=(2, 3, 4)) -> int:
    """Disk 1's GRUB ran, found every copy corrupt or missing, booted nothing and ran no command its
    image lacks; returns where its 'no good boot copy' report starts."""
    assert f"GRUB on disk {d1} (x86_64-efi)" in text, f"disk 1's GRUB did not run:\n{text[-2000:]}"
    assert f"copy 1 on disk {d1} is corrupt" in text
    for n in missing:
        assert re.search(rf"copy {n} on disk \S+ is missing", text), f"copy {n} not reported missing"
    nogood = text.find("sanbos: no good boot copy on this disk's list")
    assert nogood > 0, f"no 'no good boot copy' message:\n{text[-2000:]}"
    # GRUB 2.06's normal parser says "error: can't find command `exit'." (seen with the image built
    # without minicmd: GRUB then stays at its prompt); "unknown command" is the rescue parser's wording
    for lacking in ("can't find command", "unknown command"):
        assert lacking not in text, f"GRUB ran a command its image lacks:\n{text[nogood - 200:nogood + 1500]}"
    assert "sanbos: booting copy" not in text[:nogood]   # disk 1's GRUB booted nothing
    return nogood


@pytest.fixture(scope="module")
def uefi_handover(vg4):
    """One OVMF boot: boot disk 1 = disk 1 of the 4-disk VG alone with its copy corrupt; boot disk
    2 = the only boot disk of another install VG (another VG name, so disk 1's GRUB cannot take its
    LVs for its own)."""
    require_tool(str(qemu.OVMF))
    d, luns = vg4["dir"], vg4["fabric"].luns
    other = fab.create(d / "other-fabric", 1, DISK_SIZE)
    orefs = [DiskRef(l.wwn, l.path) for l in other.luns]
    vgmod.create("other-vg", orefs)
    rep = bootcopy.mirror("other-vg", orefs, vg4["image"])
    assert rep.ok, str(rep)
    olun = other.luns[0]
    drives = [_disk1_alone_drive(vg4, "disk1-corrupt-handover.img"),
              qemu.Drive(olun.path, serial=olun.serial, bootindex=2, readonly=True)]
    r = _uefi_boot_or_menu(drives, d / "uefi-handover.log")
    return r | {"disk1": luns[0].wwn, "disk2": olun.wwn}


@pytest.fixture(scope="module")
def uefi_no_later_disk(vg4):
    """One OVMF boot with disk 1 (copy corrupt) the only disk attached."""
    require_tool(str(qemu.OVMF))
    r = _uefi_boot_or_menu([_disk1_alone_drive(vg4, "disk1-corrupt-alone.img")], vg4["dir"] / "uefi-no-later.log")
    return r | {"disk1": vg4["fabric"].luns[0].wwn}


@pytest.fixture(scope="module")
def uefi_two_without_good_copy(vg4):
    """One OVMF boot: disks 1 and 2 of the 4-disk VG, both copies corrupt (copies 3-4 missing)."""
    require_tool(str(qemu.OVMF))
    luns = vg4["fabric"].luns
    drives = [_disk1_alone_drive(vg4, "disk1-corrupt-pair.img"),
              qemu.Drive(str(_corrupt_copy1(vg4, vg4["dir"] / "disk2-corrupt-pair.img", 1)),
                         serial=luns[1].serial, bootindex=2, readonly=True)]
    r = _uefi_boot_or_menu(drives, vg4["dir"] / "uefi-two-bad.log")
    return r | {"disk1": luns[0].wwn, "disk2": luns[1].wwn}


def test_uefi_no_good_copy_hands_over_to_the_next_disk(uefi_handover):
    """Disk 1's GRUB finds no good copy, finds its own ESP by its FAT volume ID as (hd0,gpt2) and
    chainloads the loader on (hd1,gpt2): disk 2's GRUB boots disk 2's copy, without going back to
    the firmware in between."""
    r = uefi_handover
    text, d1, d2 = r["text"], r["disk1"], r["disk2"]
    nogood = _assert_disk1_found_no_good_copy(text, d1)
    hand = "sanbos: no good boot copy on this disk's list; handing over to the loader on (hd1,gpt2)"
    assert text.find(hand) >= nogood, f"no handover to (hd1,gpt2):\n{text[nogood - 200:nogood + 2000]}"
    assert "this disk's ESP (FAT volume ID" not in text   # disk 1's GRUB found its own ESP
    assert "not a valid root device" not in text and "cannot load the loader" not in text
    second = text.find(f"GRUB on disk {d2} (x86_64-efi)", nogood)
    assert second > nogood, f"disk 2's GRUB did not run after the handover:\n{text[nogood:nogood + 2000]}"
    assert _FIRMWARE_AGAIN.search(text, nogood) is None   # no firmware boot option between the two
    assert f"sanbos: booting copy 1 from disk {d2}" in text[second:]
    m = bootimage.BANNER_RE.search(text, second)
    assert m and m.group(1) == d2, f"no banner of disk 2 after the handover:\n{text[second:second + 2000]}"
    assert text.count(f"GRUB on disk {d1} (x86_64-efi)") == 1   # disk 1's GRUB ran once: no loop


def test_uefi_no_good_copy_no_later_disk_grub_exits_to_the_firmware(uefi_no_later_disk):
    """Disk 1 alone: no later disk's loader to hand over to, so GRUB says so and runs 'exit' (a
    known command: minicmd built in); GRUB 2.06's exit returns EFI_SUCCESS and OVMF (edk2 2022.11)
    starts its boot manager menu (UiApp)."""
    r = uefi_no_later_disk
    text, d1 = r["text"], r["disk1"]
    nogood = _assert_disk1_found_no_good_copy(text, d1)
    assert "this disk's ESP (FAT volume ID" not in text   # its own ESP was found ...
    assert "handing over" not in text                     # ... and nothing after it
    assert ("sanbos: no good boot copy on this disk's list and no later disk's loader; returning to the "
            "firmware") in text[nogood:]
    assert "grub>" not in text[nogood:]
    back = _FIRMWARE_AGAIN.search(text, nogood)
    assert back, f"GRUB's exit did not return to the firmware:\n{text[nogood:nogood + 2000]}"
    assert back.group(1) == "UiApp"
    assert not bootimage.BANNER_RE.search(text)
    assert text.count(f"GRUB on disk {d1} (x86_64-efi)") == 1


def test_uefi_handover_chain_ends(uefi_two_without_good_copy):
    """Disk 1's GRUB hands over to disk 2's; disk 2's finds no good copy either and no disk after
    its own, so it exits back into disk 1's GRUB, which returns to the firmware: each GRUB ran once
    (no handover back to an earlier disk)."""
    r = uefi_two_without_good_copy
    text, d1, d2 = r["text"], r["disk1"], r["disk2"]
    nogood = _assert_disk1_found_no_good_copy(text, d1, missing=(3, 4))
    assert f"copy 2 on disk {d2} is corrupt" in text[:nogood]
    assert text.find("handing over to the loader on (hd1,gpt2)") >= nogood
    second = text.find(f"GRUB on disk {d2} (x86_64-efi)", nogood)
    assert second > nogood, f"disk 2's GRUB did not run after the handover:\n{text[nogood:nogood + 2000]}"
    assert f"copy 1 on disk {d2} is corrupt" in text[second:]   # its own copy (its list's first)
    assert f"copy 2 on disk {d1} is corrupt" in text[second:]
    end2 = text.find("no later disk's loader; returning to the firmware", second)
    assert end2 > second, f"disk 2's GRUB did not give up:\n{text[second:second + 2000]}"
    back = text.find("sanbos: the loader on (hd1,gpt2) returned; returning to the firmware", end2)
    assert back > end2, f"disk 1's GRUB did not get control back:\n{text[end2:end2 + 2000]}"
    assert text.count(f"GRUB on disk {d1} (x86_64-efi)") == 1
    assert text.count(f"GRUB on disk {d2} (x86_64-efi)") == 1
    assert "handing over to the loader on (hd0,gpt2)" not in text
    assert not bootimage.BANNER_RE.search(text)
    fw = _FIRMWARE_AGAIN.search(text, back)
    assert fw, f"GRUB's exit did not return to the firmware:\n{text[back:back + 2000]}"


def test_every_config_command_is_in_the_image(tmp_path, monkeypatch):
    """Both platforms: each command the generated config (and the early config) runs is in a module
    the image is built with (command.lst + moddep.lst), checked as mkimage checks it."""
    require_tool("grub-mkimage")
    copies = [grub.Copy("naa.1", "lvm/a--b-bootlv_rimage_0"), grub.Copy("naa.2", "lvm/a--b-bootlv_rimage_1")]
    for platform in grub.PLATFORMS:
        cfg = grub.config(copies, "console=ttyS0", platform=platform)
        mods = grub.COMMON_MODULES + grub.PLATFORM_MODULES[platform]
        assert grub.missing_commands(grub.EARLY_CFG + cfg, platform, mods) == {}
        used = set(grub.commands(cfg))
        assert {"serial", "[", "hashsum", "linux", "initrd", "boot", "echo"} <= used
    for platform in grub.PLATFORMS:   # with the UEFI handover (BIOS ignores it)
        cfg = grub.config(copies, "console=ttyS0", platform=platform, esp_id=grub.volume_id("naa.1"))
        mods = grub.COMMON_MODULES + grub.PLATFORM_MODULES[platform]
        assert grub.missing_commands(grub.EARLY_CFG + cfg, platform, mods) == {}
    ho_cfg = grub.config(copies, "console=ttyS0", platform="x86_64-efi", esp_id=grub.volume_id("naa.1"))
    assert {"probe", "chainloader", "boot", "exit"} <= set(grub.commands(ho_cfg))
    ho_mods = grub.COMMON_MODULES + grub.PLATFORM_MODULES["x86_64-efi"]
    assert grub.missing_commands(ho_cfg, "x86_64-efi", [m for m in ho_mods if m not in ("chain", "probe")]) == {
        "probe": "probe", "chainloader": "chain"}
    efi_cfg = grub.config(copies, "console=ttyS0", platform="x86_64-efi")
    assert "exit" in grub.commands(efi_cfg) and "sleep" in grub.commands(efi_cfg)
    without = [m for m in grub.COMMON_MODULES + grub.PLATFORM_MODULES["x86_64-efi"] if m != "minicmd"]
    assert grub.missing_commands(efi_cfg, "x86_64-efi", without) == {"exit": "minicmd"}
    # mkimage refuses, before building, an image whose config runs a command it would lack
    monkeypatch.setitem(grub.PLATFORM_MODULES, "x86_64-efi", [m for m in grub.PLATFORM_MODULES["x86_64-efi"]
                                                              if m != "minicmd"])
    with pytest.raises(UsageError, match="'exit' \\(module minicmd\\)"):
        grub.mkimage("x86_64-efi", efi_cfg, tmp_path / "x.efi")
    assert not (tmp_path / "x.efi").exists()


def test_machine_is_stopped_by_pid_on_timeout(vg4, tmp_path):
    blank = tmp_path / "blank.img"
    with open(blank, "wb") as f:
        f.truncate(8 * 1024 * 1024)
    with qemu.Machine([qemu.Drive(str(blank), serial="BLANK", bootindex=1, readonly=True)],
                      tmp_path / "serial.log") as m:
        pid = m.pid
        res = m.wait_for(r"never printed", timeout=2)
        assert not res.ok and not res.exited
        assert Path(f"/proc/{pid}").exists()
    assert m.proc.returncode is not None   # reaped: exactly our process was stopped
    assert not Path(f"/proc/{pid}/status").exists() or "zombie" not in Path(f"/proc/{pid}/status").read_text()


def test_command_line_shape(tmp_path):
    argv = qemu.command([qemu.Drive("/x/a.img", serial="S1", bootindex=1, readonly=True),
                         qemu.Drive("/x/b.img", serial="S2", bus="scsi", wwn="naa.5000c500a1b2c3d4")],
                        tmp_path / "s.log", qemu.Options())
    s = " ".join(argv)
    assert "-accel tcg" in s and "-no-reboot" in s and "-display none" in s and "-net none" in s
    assert "file=/x/a.img,format=raw,if=none,id=d0,snapshot=on" in s
    assert "virtio-blk-pci,drive=d0,serial=S1,bootindex=1" in s
    assert "scsi-hd,bus=scsi0.0,drive=d1,wwn=0x5000c500a1b2c3d4,serial=S2" in s
    s2 = " ".join(qemu.command([qemu.Drive("/x/c.img", bus="scsi", wwn="naa.600a0b80aabbccdd0011223344556677")],
                               tmp_path / "s.log"))
    assert "device_id=naa.600a0b80aabbccdd0011223344556677" in s2
    assert "-accel kvm" in " ".join(qemu.command([], tmp_path / "s.log", qemu.Options(kvm=True)))
    assert str(qemu.OVMF) in qemu.command([], tmp_path / "s.log", qemu.Options(firmware="uefi"))
