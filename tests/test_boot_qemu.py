"""Boot proofs under QEMU (TCG): every boot disk of a 4-disk install VG boots its own copy,
BIOS (SeaBIOS) and UEFI (OVMF); a corrupt copy falls back to the next; a blank disk is skipped
(by OVMF: SeaBIOS only ever tries the first hard disk of its boot order)."""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from boothelp import demo_image, flip_byte, install_vg, leg_range, sparse_copy
from conftest import require_tool
from core import bootimage, ext4, qemu

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
