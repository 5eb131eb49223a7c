"""Failure recovery (Figure 5): each kind of boot-side damage on an installed
root VG disk is named by ``check``, fixed by ``recover``, the disk boots again,
and the user data is untouched (its SHA-256, and for boot-side damage the
whole root LV's, is the same before and after)."""

from __future__ import annotations

import io
import os
from contextlib import redirect_stdout

import pytest

from core import ext4, install, recover

from flowhelp import (READY, boot, demo_fabric, file_block, flip, lv_target, machine, partitions,
                      require_qemu, sha256_range)

pytestmark = [pytest.mark.qemu, pytest.mark.slow]

USER_FILE = "/root/payroll.db"


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    require_qemu()
    tmp = tmp_path_factory.mktemp("recover")
    f = demo_fabric(tmp / "fabric", disks=2, targets=1)
    lun = f.luns[2]
    install.install("instvg", "sanbos-demo-bos:tar", lun.wwn, ["sanbos-demo-tools"], fabric=f.root)
    data = tmp / "payroll.db"
    data.write_bytes(os.urandom(300_000))
    root = lv_target(lun, "rootlv")
    ext4.write_file(root, data, USER_FILE)
    assert recover.check_rootvg(lun.wwn, fabric=f.root) == []
    return f, lun


def _user_sha(lun) -> str:
    import hashlib
    return hashlib.sha256(ext4.read_file(lv_target(lun, "rootlv"), USER_FILE)).hexdigest()


def _damage(lun, kind: str) -> None:
    parts = partitions(lun.path)
    if kind == "mbr":
        with open(lun.path, "r+b") as f:
            f.write(bytes(440))
    elif kind == "bios_grub":
        with open(lun.path, "r+b") as f:
            f.seek(parts["bios_grub"].start)
            f.write(bytes(parts["bios_grub"].size))
    elif kind == "esp":
        with open(lun.path, "r+b") as f:
            f.seek(parts["esp"].start)
            f.write(bytes(1 << 20))
    elif kind == "kernel":
        flip(lun.path, file_block(lv_target(lun, "bootlv"), "/vmlinuz", 5))
    elif kind == "initrd":
        flip(lun.path, file_block(lv_target(lun, "bootlv"), "/initrd.img", 5))


def _cli(*argv):
    from console.cli import main
    out = io.StringIO()
    with redirect_stdout(out):
        rc = main(list(argv))
    return rc, out.getvalue()


@pytest.mark.parametrize("kind", ["mbr", "bios_grub", "esp", "kernel", "initrd"])
def test_damage_named_fixed_boots(installed, kind, tmp_path):
    f, lun = installed
    root = lv_target(lun, "rootlv")
    user_before = _user_sha(lun)
    root_before = sha256_range(root.path, root.offset, root.size)
    _damage(lun, kind)
    defects = recover.check_rootvg(lun.wwn, fabric=f.root)
    assert [d.kind for d in defects] == [kind], defects
    assert lun.wwn in str(defects[0])
    rc, text = _cli("check", "--rootvg", lun.wwn, "--fabric", str(f.root))
    assert rc == 1 and kind in text
    rc, text = _cli("recover", "--from", "instvg", "--rootvg", lun.wwn, "--fabric", str(f.root), "-q")
    assert rc == 0, text
    assert recover.check_rootvg(lun.wwn, fabric=f.root) == []
    # user data untouched: the file, and the whole root LV, byte for byte
    assert _user_sha(lun) == user_before
    assert sha256_range(root.path, root.offset, root.size) == root_before
    regf = tmp_path / "reg.db"
    machine(regf, "host", "normal", [lun.wwn], [lun.wwn])
    console = boot(f.root, regf, "host", "normal", READY, tmp_path / "vm",
                   firmware="uefi" if kind == "esp" else "bios")
    assert "sanbos-demo-tools: 1.2" in console
    assert _user_sha(lun) == user_before


def test_root_fs_kernel_gone_too_uses_install_vg(installed, tmp_path):
    """The boot LV's kernel and the root file system's /boot/vmlinuz are both bad:
    the kernel comes from the install VG's boot copy."""
    f, lun = installed
    user_before = _user_sha(lun)
    _damage(lun, "kernel")
    root = lv_target(lun, "rootlv")
    junk = tmp_path / "junk"
    junk.write_bytes(b"not a kernel\n" * 100)
    ext4.write_file(root, junk, install.KERNEL_PATH, replace=True)
    kinds = sorted(d.kind for d in recover.check_rootvg(lun.wwn, fabric=f.root))
    assert kinds == ["kernel", "rootfs_kernel"]
    with pytest.raises(Exception, match="give the install VG"):
        recover.recover(None, lun.wwn, fabric=f.root)
    res = recover.recover("instvg", lun.wwn, fabric=f.root)
    assert "install VG instvg" in res.source
    assert recover.check_rootvg(lun.wwn, fabric=f.root) == []
    assert _user_sha(lun) == user_before
    ok, out = ext4.fsck(root)
    assert ok, out
    regf = tmp_path / "reg.db"
    machine(regf, "host", "normal", [lun.wwn], [lun.wwn])
    console = boot(f.root, regf, "host", "normal", READY, tmp_path / "vm")
    assert "sanbos-demo-base: 1.0" in console


def test_check_refuses_non_root_disk(installed):
    f, lun = installed
    with pytest.raises(Exception, match="not a root VG"):
        recover.check_rootvg(f.luns[0].wwn, fabric=f.root)
