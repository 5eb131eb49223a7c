"""The maintenance boot image: real Debian kernel + busybox initramfs, ext2 image, validation, ISO."""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from conftest import require_tool
from core import bootimage, debparts, ext4
from core.errors import FormatError, NotFoundError, SanbosError

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def kernel() -> debparts.KernelParts:
    try:
        return debparts.kernel()
    except SanbosError as e:
        pytest.skip(f"Debian kernel not available (scripts/fetch-parts.sh): {e}")


@pytest.fixture(scope="module")
def parts(kernel, tmp_path_factory) -> dict:
    d = tmp_path_factory.mktemp("bootimage")
    initrd = bootimage.demo_initrd(d / "initrd.img")
    img = d / "boot.img"
    info = bootimage.build(kernel.vmlinuz, initrd, None, img)
    return {"dir": d, "initrd": initrd, "image": img, "info": info, "kernel": kernel}


def test_kernel_fetch_is_cached(kernel):
    assert kernel.vmlinuz.is_file() and kernel.modules_dir.is_dir()
    assert kernel.version.endswith("-amd64")
    again = debparts.kernel()
    assert again == kernel
    assert debparts._is_static(debparts.busybox())


def test_build_and_inspect(parts):
    info: bootimage.ImageInfo = parts["info"]
    assert info.ok, info.problems
    assert set(info.files) == {"vmlinuz", "initrd.img", "cmdline", "SHA256SUMS"}
    m = info.manifest
    assert m["format"] == "sanbos-bootimage" and m["kernel"]["version"] == parts["kernel"].version
    assert m["initrd"]["format"] == "gzip"
    assert m["cmdline"] == bootimage.DEFAULT_CMDLINE
    assert info.sha256 == hashlib.sha256(parts["image"].read_bytes()).hexdigest()
    assert info.size == parts["image"].stat().st_size


def test_image_is_clean_ext2_and_sums_check_with_sha256sum(parts, tmp_path):
    require_tool("e2fsck", "sha256sum")
    target = ext4.Target(parts["image"], 0, parts["image"].stat().st_size)
    clean, out = ext4.fsck(target)
    assert clean, out
    for name in ("vmlinuz", "initrd.img", "cmdline", "SHA256SUMS"):
        (tmp_path / name).write_bytes(ext4.read_file(target, "/" + name))
    res = subprocess.run(["sha256sum", "-c", "SHA256SUMS"], cwd=tmp_path, capture_output=True, text=True)
    assert res.returncode == 0, res.stdout + res.stderr
    assert (tmp_path / "vmlinuz").read_bytes() == parts["kernel"].vmlinuz.read_bytes()


def test_demo_initrd_is_newc_cpio_with_init(parts, tmp_path):
    raw = gzip.decompress(parts["initrd"].read_bytes())
    assert raw[:6] == b"070701"
    bb = debparts.busybox()
    res = subprocess.run([str(bb), "cpio", "-t"], input=raw, capture_output=True)
    names = res.stdout.decode().split()
    assert "init" in names and "bin/busybox" in names
    res = subprocess.run([str(bb), "cpio", "-i", "init"], input=raw, cwd=tmp_path, capture_output=True)
    init = (tmp_path / "init").read_text()
    assert "sanbos.copy=" in init and bootimage.BANNER in init and "poweroff -f" in init


def _with_umask(mask: int, fn):
    old = os.umask(mask)
    try:
        return fn()
    finally:
        os.umask(old)


def test_demo_image_is_reproducible(kernel, tmp_path):
    """The same kernel, busybox and cmdline give the same demo boot image, byte for byte: built
    later, under another name and another umask (no temp path, random UUID or hash seed, source
    ctime or run time in it), so the SHA-256 the engine records per boot copy is stable."""
    a = bootimage.demo(tmp_path / "a.img")
    time.sleep(1.1)                             # the staged files' ctimes differ by a second
    b = _with_umask(0o077, lambda: bootimage.demo(tmp_path / "b.img"))
    assert a.ok and b.ok, a.problems + b.problems
    assert a.sha256 == b.sha256
    assert (tmp_path / "a.img").read_bytes() == (tmp_path / "b.img").read_bytes()
    assert a.manifest["initrd"]["source"] == "demo initramfs (busybox-static)"


def test_build_and_demo_initrd_are_reproducible(kernel, tmp_path):
    """``demo_initrd`` twice gives the same bytes; ``build`` twice from the same parts too."""
    (tmp_path / "1").mkdir()
    (tmp_path / "2").mkdir()
    i1 = bootimage.demo_initrd(tmp_path / "1" / "initrd.img")
    time.sleep(1.1)
    i2 = _with_umask(0o077, lambda: bootimage.demo_initrd(tmp_path / "2" / "initrd.gz"))
    assert hashlib.sha256(i1.read_bytes()).hexdigest() == hashlib.sha256(i2.read_bytes()).hexdigest()
    a = bootimage.build(kernel.vmlinuz, i1, "console=ttyS0 quiet", tmp_path / "a.img", source="test")
    time.sleep(1.1)
    b = _with_umask(0o077, lambda: bootimage.build(kernel.vmlinuz, i1, "console=ttyS0 quiet",
                                                    tmp_path / "b.img", source="test"))
    assert a.sha256 == b.sha256
    # a different cmdline is a different image (and a different file-system UUID)
    c = bootimage.build(kernel.vmlinuz, i1, "console=ttyS0", tmp_path / "c.img", source="test")
    assert c.sha256 != a.sha256


def test_inspect_reports_a_corrupt_kernel(parts, tmp_path):
    img = tmp_path / "bad.img"
    shutil.copyfile(parts["image"], img)
    data = bytearray(img.read_bytes())
    k = parts["kernel"].vmlinuz.read_bytes()
    pos = data.find(k[0x1000:0x1040])
    assert pos > 0
    data[pos + 7] ^= 0xFF
    img.write_bytes(bytes(data))
    info = bootimage.inspect(img)
    assert not info.ok
    assert any("vmlinuz does not match" in p for p in info.problems)
    with pytest.raises(FormatError, match="vmlinuz does not match"):
        bootimage.check(img)


def test_not_a_kernel_is_refused_and_nothing_written(parts, tmp_path):
    junk = tmp_path / "junk"
    junk.write_bytes(os.urandom(100_000))
    out = tmp_path / "x.img"
    with pytest.raises(FormatError, match=r"kernel .*junk: not a Linux kernel.*HdrS"):
        bootimage.build(junk, parts["initrd"], None, out)
    with pytest.raises(FormatError, match=r"kernel .*initrd.img: not a Linux kernel"):
        bootimage.build(parts["initrd"], parts["initrd"], None, out)
    assert not out.exists()


def test_bad_initrd_is_refused(parts, tmp_path):
    out = tmp_path / "x.img"
    junk = tmp_path / "junk"
    junk.write_bytes(b"hello world" * 100)
    with pytest.raises(FormatError, match=r"initrd .*junk: not an initramfs"):
        bootimage.build(parts["kernel"].vmlinuz, junk, None, out)
    gz = tmp_path / "notcpio.gz"
    gz.write_bytes(gzip.compress(b"just text, not cpio" * 10))
    with pytest.raises(FormatError, match="not a newc cpio"):
        bootimage.build(parts["kernel"].vmlinuz, gz, None, out)
    with pytest.raises(NotFoundError):
        bootimage.build(parts["kernel"].vmlinuz, tmp_path / "absent", None, out)
    assert not out.exists()


def test_cmdline_with_grub_syntax_is_refused(parts, tmp_path):
    with pytest.raises(SanbosError, match="cmdline"):
        bootimage.build(parts["kernel"].vmlinuz, parts["initrd"], 'console=ttyS0 "$x"', tmp_path / "x.img")


def test_from_iso(parts, tmp_path):
    require_tool("xorriso", "grub-mkrescue")
    src = tmp_path / "isoroot"
    (src / "live").mkdir(parents=True)
    (src / "boot" / "grub").mkdir(parents=True)
    shutil.copyfile(parts["kernel"].vmlinuz, src / "live" / "vmlinuz")
    shutil.copyfile(parts["initrd"], src / "live" / "initrd.img")
    (src / "live" / "initrd.txt").write_text("a decoy that is not an initramfs\n")
    (src / "boot" / "grub" / "grub.cfg").write_text(
        "menuentry live {\n  linux /live/vmlinuz boot=live quiet ---\n  initrd /live/initrd.img\n}\n")
    iso = tmp_path / "live.iso"
    subprocess.run(["grub-mkrescue", "-o", str(iso), str(src)], check=True, capture_output=True)
    k, i = bootimage.from_iso(iso, tmp_path / "x")
    assert k.read_bytes() == parts["kernel"].vmlinuz.read_bytes()
    assert i.read_bytes() == parts["initrd"].read_bytes()
    # and through the CLI
    out = tmp_path / "iso-boot.img"
    res = subprocess.run([str(ROOT / ".venv/bin/python"), "-m", "console.cli", "bootimage", "build",
                          "--from-iso", str(iso), "-o", str(out), "--json"], cwd=ROOT, capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    info = json.loads(res.stdout)
    assert info["ok"] and info["manifest"]["source"] == "iso: live.iso"
    assert info["manifest"]["cmdline"] == "console=ttyS0,115200 boot=live quiet"


def test_iso_without_kernel(tmp_path):
    require_tool("xorriso")
    src = tmp_path / "r"
    src.mkdir()
    (src / "readme.txt").write_text("nothing bootable\n")
    iso = tmp_path / "empty.iso"
    subprocess.run(["xorriso", "-as", "mkisofs", "-quiet", "-o", str(iso), str(src)], check=True, capture_output=True)
    with pytest.raises(NotFoundError, match="no Linux kernel"):
        bootimage.from_iso(iso, tmp_path / "x")


def test_cli(parts, tmp_path):
    py = str(ROOT / ".venv/bin/python")
    out = tmp_path / "cli.img"
    res = subprocess.run([py, "-m", "console.cli", "bootimage", "build", "--kernel", "/etc/hostname",
                          "--initrd", str(parts["initrd"]), "-o", str(out)], cwd=ROOT, capture_output=True, text=True)
    assert res.returncode == 1
    assert res.stderr.count("\n") == 1 and "not a Linux kernel" in res.stderr and "Traceback" not in res.stderr
    res = subprocess.run([py, "-m", "console.cli", "bootimage", "build", "--kernel", str(parts["kernel"].vmlinuz),
                          "--initrd", str(parts["initrd"]), "--cmdline", "console=ttyS0 quiet", "-o", str(out)],
                         cwd=ROOT, capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    res = subprocess.run([py, "-m", "console.cli", "bootimage", "inspect", str(out), "--json"], cwd=ROOT,
                         capture_output=True, text=True)
    assert res.returncode == 0 and json.loads(res.stdout)["manifest"]["cmdline"] == "console=ttyS0 quiet"
