"""Bad input at the ``sanbos`` command line: one clear line, the right exit code, nothing written.

Every case runs the real CLI as a subprocess and checks

* the exit code (1 for a refusal, 2 for a malformed request),
* stderr is exactly one ``sanbos: ...`` line naming the object and the defect,
* no traceback,
* for commands that write: every disk image's SHA-256 is unchanged.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import struct
import subprocess
import sys
from pathlib import Path

import pytest

from core import fabric as fab

from conftest import ROOT, require_tool

MiB = 1024 * 1024


def sanbos(*args: str, fabric: fab.Fabric | None = None, env: dict | None = None) -> subprocess.CompletedProcess:
    e = {k: v for k, v in os.environ.items() if k not in ("SANBOS_FABRIC", "SANBOS_REGISTRY")}
    e["PYTHONPATH"] = str(ROOT)
    e.update(env or {})
    argv = [*args] + (["--fabric", str(fabric.root)] if fabric is not None else [])
    return subprocess.run([sys.executable, "-m", "console.cli", *argv], capture_output=True, text=True,
                          cwd=ROOT, env=e, stdin=subprocess.DEVNULL)


def refused(res: subprocess.CompletedProcess, code: int, *words: str) -> str:
    """Assert a one-line refusal with exit ``code`` whose message holds every word; return it."""
    assert "Traceback" not in res.stderr, res.stderr
    lines = res.stderr.strip().splitlines()
    assert res.returncode == code, (res.returncode, res.stderr)
    assert len(lines) == 1 and lines[0].startswith("sanbos: "), res.stderr
    for w in words:
        assert w in lines[0], (w, lines[0])
    return lines[0]


def sums(f: fab.Fabric) -> dict[str, str]:
    return {l.file: hashlib.sha256(l.path.read_bytes()).hexdigest() for l in f.luns}


# ---------------------------------------------------------------------------
# disk IDs, fabric


@pytest.mark.parametrize("wanted, code, words", [
    ("zzz", 1, ["no disk matches 'zzz'", "known:"]),
    ("naa.6", 1, ["disk ID 'naa.6' is ambiguous", "type more of the ID"]),
])
def test_unknown_and_ambiguous_disk_ids(tmp_path: Path, wanted, code, words) -> None:
    f = fab.create(tmp_path / "f", 2, 64 * MiB)
    before = sums(f)
    for argv in (["disk", "label", wanted], ["vg", "create", "v", "--disk", wanted]):
        refused(sanbos(*argv, fabric=f), code, *words)
    assert sums(f) == before


def test_missing_and_corrupt_fabric(tmp_path: Path) -> None:
    refused(sanbos("vg", "list", "--fabric", str(tmp_path / "nope")), 1, "nope", "not a fabric directory")
    f = fab.create(tmp_path / "f", 1, 16 * MiB)
    f.manifest.write_text(f.manifest.read_text() + "garbage [[[\n")
    refused(sanbos("disks", fabric=f), 1, "fabric.toml", "not valid TOML")


def test_fabric_create_over_a_file(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("keep me")
    refused(sanbos("fabric", "create", str(blocker)), 2, str(blocker), "is not a directory")
    assert blocker.read_text() == "keep me"
    refused(sanbos("fabric", "create", str(tmp_path / "g"), "--size", "12Q"), 2, "not a size: '12Q'")
    assert not (tmp_path / "g").exists()


# ---------------------------------------------------------------------------
# VG and LV names and sizes


def test_bad_names_sizes_and_existing_vg(tmp_path: Path) -> None:
    f = fab.create(tmp_path / "f", 3, 64 * MiB)
    d = [l.wwn for l in f.luns]
    assert sanbos("vg", "create", "v", "--disk", d[0], fabric=f).returncode == 0
    before = sums(f)
    refused(sanbos("vg", "create", "a b", "--disk", d[1], fabric=f), 2, "VG name 'a b' is invalid")
    refused(sanbos("vg", "create", "v", "--disk", d[1], fabric=f), 1, "a VG named v already exists", d[0])
    refused(sanbos("vg", "show", "nosuch", fabric=f), 1, "no VG named nosuch", "VGs found: v")
    refused(sanbos("lv", "create", "v", "x_rimage_0", "--size", "4M", fabric=f), 2,
            "LV name 'x_rimage_0'", "reserved")
    refused(sanbos("lv", "create", "v", "l", "--size", "12Q", fabric=f), 2, "not a size: '12Q'")
    refused(sanbos("lv", "create", "v", "l", "--size", "-1", fabric=f), 2, "not a size: '-1'")
    refused(sanbos("lv", "create", "v", "l", "--size", "0", fabric=f), 2, "LV v/l", "size must be positive")
    refused(sanbos("lv", "create", "v", "l", "--size", "1T", fabric=f), 1, "LV v/l", d[0], "free extents")
    refused(sanbos("vg", "create", "w", "--disk", d[1], "--extent-size", "3M", fabric=f), 2,
            "extent size 3M", "power of two")
    assert sums(f) == before


def test_same_disk_twice(tmp_path: Path) -> None:
    f = fab.create(tmp_path / "f", 2, 64 * MiB)
    d = [l.wwn for l in f.luns]
    before = sums(f)
    refused(sanbos("vg", "create", "v", "--disk", d[0], "--disk", d[0][:-1], fabric=f), 2, d[0], "named twice")
    assert sums(f) == before


# ---------------------------------------------------------------------------
# disks that must not be written


def test_disk_too_small_for_the_extent_size_is_left_untouched(tmp_path: Path) -> None:
    """The GPT fits a 48 MiB disk but its 13 MiB LVM partition holds no 64 MiB extent:
    refused before the partition table is written."""
    f = fab.create(tmp_path / "f", 2, 48 * MiB)
    d = [l.wwn for l in f.luns]
    before = sums(f)
    refused(sanbos("vg", "create", "v", "--disk", d[0], "--disk", d[1], "--extent-size", "64M", fabric=f), 1,
            f"{d[0]} partition 3", "too small for a PV with 64M extents")
    assert sums(f) == before
    small = fab.create(tmp_path / "s", 1, 16 * MiB)
    before = sums(small)
    refused(sanbos("vg", "create", "v", "--disk", small.luns[0].wwn, fabric=small), 1,
            small.luns[0].wwn, "too small", "cannot override")
    assert sums(small) == before


def test_extend_with_a_disk_already_in_the_vg(tmp_path: Path) -> None:
    f = fab.create(tmp_path / "f", 2, 64 * MiB)
    d = [l.wwn for l in f.luns]
    assert sanbos("vg", "create", "v", "--disk", d[0], "--disk", d[1], fabric=f).returncode == 0
    before = sums(f)
    refused(sanbos("vg", "extend", "v", "--disk", d[1], fabric=f), 2, f"disk {d[1]} is already a PV of VG v")
    assert sums(f) == before


def test_random_bytes_disk_is_not_blank(tmp_path: Path) -> None:
    f = fab.create(tmp_path / "f", 1, 64 * MiB)
    lun = f.luns[0]
    lun.path.write_bytes(os.urandom(lun.size))     # a random-bytes image: no signature anywhere
    before = sums(f)
    for argv in (["disk", "label", lun.wwn], ["vg", "create", "v", "--disk", lun.wwn]):
        refused(sanbos(*argv, fabric=f), 1, lun.wwn, "data sanbos does not recognise", f"--force {lun.wwn}")
    assert sums(f) == before
    listing = sanbos("disks", fabric=f)
    assert listing.returncode == 0 and " data " in listing.stdout.splitlines()[1]
    # forcing it by its ID is the operator's way through
    assert sanbos("disk", "label", lun.wwn, "--force", lun.wwn, fabric=f).returncode == 0


def test_read_only_image_is_never_written_even_by_root(tmp_path: Path) -> None:
    f = fab.create(tmp_path / "f", 2, 64 * MiB)
    d = [l.wwn for l in f.luns]
    assert sanbos("vg", "create", "v", "--disk", d[1], fabric=f).returncode == 0
    os.chmod(f.luns[0].path, 0o444)
    os.chmod(f.luns[1].path, 0o444)
    before = sums(f)
    refused(sanbos("vg", "create", "w", "--disk", d[0], "--force", d[0], fabric=f), 1, d[0], "read-only")
    refused(sanbos("lv", "create", "v", "l", "--size", "4M", fabric=f), 1, d[1], "read-only (mode 0444)")
    assert sums(f) == before
    assert "[read-only]" in sanbos("disks", fabric=f).stdout


# ---------------------------------------------------------------------------
# boot images


def _fake_parts(tmp: Path) -> tuple[Path, Path]:
    """A file that passes the bzImage header checks and a gzip'd newc cpio: enough for build."""
    k = bytearray(64 * 1024)
    k[0x1FE:0x200] = b"\x55\xaa"
    k[0x202:0x206] = b"HdrS"
    struct.pack_into("<H", k, 0x206, 0x020F)
    (tmp / "vmlinuz").write_bytes(bytes(k))
    (tmp / "initrd").write_bytes(gzip.compress(b"070701" + bytes(200)))
    return tmp / "vmlinuz", tmp / "initrd"


def test_bootimage_bad_inputs(tmp_path: Path) -> None:
    kernel, initrd = _fake_parts(tmp_path)
    rnd = tmp_path / "random.bin"
    rnd.write_bytes(os.urandom(MiB))
    short = tmp_path / "short.img"
    short.write_bytes(b"hi\n")
    d = tmp_path / "adir"
    d.mkdir()
    out = str(tmp_path / "o.img")
    refused(sanbos("bootimage", "build", "--kernel", str(tmp_path / "none"), "--initrd", str(initrd), "-o", out),
            1, "kernel", "none", "no such file")
    refused(sanbos("bootimage", "build", "--kernel", str(d), "--initrd", str(initrd), "-o", out),
            2, f"kernel {d}", "is a directory")
    refused(sanbos("bootimage", "build", "--kernel", str(rnd), "--initrd", str(initrd), "-o", out),
            1, f"kernel {rnd}", "not a Linux kernel")
    refused(sanbos("bootimage", "build", "--kernel", str(kernel), "--initrd", str(rnd), "-o", out),
            1, f"initrd {rnd}", "not an initramfs")
    refused(sanbos("bootimage", "build", "--kernel", str(kernel), "--initrd", str(initrd), "-o", str(d)),
            2, f"boot image {d}", "is a directory")
    refused(sanbos("bootimage", "build", "--kernel", str(kernel), "--initrd", str(initrd),
                   "-o", str(short / "x.img")), 2, str(short), "is not a directory")
    refused(sanbos("bootimage", "build", "--from-iso", str(rnd), "-o", out), 1, f"ISO {rnd}", "not an ISO 9660")
    assert not Path(out).exists()
    refused(sanbos("bootimage", "inspect", str(rnd)), 1, str(rnd), "not a readable ext2")
    refused(sanbos("bootimage", "inspect", str(short)), 1, str(short), "not a readable ext2")
    refused(sanbos("bootimage", "inspect", str(d)), 2, str(d), "is a directory")


def test_bootcopy_size_smaller_than_the_image(tmp_path: Path) -> None:
    require_tool("mke2fs", "debugfs")
    kernel, initrd = _fake_parts(tmp_path)
    img = tmp_path / "boot.img"
    assert sanbos("bootimage", "build", "--kernel", str(kernel), "--initrd", str(initrd), "-o", str(img),
                  "--json").returncode == 0
    f = fab.create(tmp_path / "f", 2, 64 * MiB)
    d = [l.wwn for l in f.luns]
    assert sanbos("vg", "create", "v", "--disk", d[0], "--disk", d[1], fabric=f).returncode == 0
    before = sums(f)
    refused(sanbos("bootcopy", "mirror", "v", "--image", str(img), "--size", "1M", "-q", fabric=f), 2,
            "bootlv size 1M", "smaller than the boot image", str(img))
    refused(sanbos("bootcopy", "mirror", "v", "--image", str(img), "--size", "0", "-q", fabric=f), 2,
            "bootlv size 0B", "smaller than the boot image")
    refused(sanbos("bootcopy", "mirror", "v", "--image", str(tmp_path), "-q", fabric=f), 2,
            f"boot image {tmp_path}", "is a directory")
    refused(sanbos("bootcopy", "mirror", "v", "--image", str(img), "--disk", d[0], "--disk", d[0], "-q",
                   fabric=f), 2, f"boot disk {d[0]} is named twice")
    assert sums(f) == before


# ---------------------------------------------------------------------------
# the registry and the service


def test_registry_path_in_a_missing_directory_is_not_created(tmp_path: Path) -> None:
    db = tmp_path / "no" / "such" / "registry.db"
    refused(sanbos("machine", "add", "m1", "--registry", str(db)), 1, str(db.parent), "does not exist")
    assert not (tmp_path / "no").exists()
    refused(sanbos("machine", "list", "--registry", str(tmp_path)), 1, str(tmp_path), "is a directory")
    typo = tmp_path / "typo.db"
    for argv in (["machine", "list"], ["machine", "show", "m1"], ["bootlist", "show", "m1"], ["admin", "audit"]):
        refused(sanbos(*argv, "--registry", str(typo)), 1, f"registry {typo} does not exist")
    assert not typo.exists()
    refused(sanbos("machine", "list", env={"SANBOS_REGISTRY": str(typo)}), 1, f"registry {typo} does not exist")


def test_serve_with_a_bad_certificate_never_listens(tmp_path: Path) -> None:
    junk = tmp_path / "junk.pem"
    junk.write_text("not a certificate\n")
    db = str(tmp_path / "r.db")
    for cert, words in ((tmp_path / "none.pem", ["TLS certificate", "no such file"]),
                        (junk, ["TLS certificate", str(junk), "cannot be loaded"])):
        res = sanbos("serve", "--registry", db, "--port", "0", "--certfile", str(cert), "--keyfile", str(junk))
        refused(res, 1 if "no such file" in words else 2, *words)
        assert "SAN boot device on" not in res.stdout


def test_truncated_pv_disk_is_named_as_the_reason_a_pv_is_missing(tmp_path: Path) -> None:
    """A PV disk cut short (its GPT now points past the end): the VG's PV is missing and
    every command says which disk's GPT is broken instead of asking for a disk that was given."""
    f = fab.create(tmp_path / "f", 2, 64 * MiB)
    d = [l.wwn for l in f.luns]
    assert sanbos("vg", "create", "v", "--disk", d[0], "--disk", d[1], fabric=f).returncode == 0
    with open(f.luns[1].path, "r+b") as fh:
        fh.truncate(40 * MiB)
    f.luns[1].size = 40 * MiB
    fab.save(f)
    before = sums(f)
    refused(sanbos("lv", "create", "v", "l", "--size", "4M", fabric=f), 1,
            "VG v: PV(s) pv1", "not found", f"problems seen: {d[1]}: GPT partition 3 has a bad extent")
    check = sanbos("vg", "check", "v", fabric=f)
    assert check.returncode == 1 and f"{d[1]}: GPT partition 3 has a bad extent" in check.stdout
    assert sums(f) == before


def test_list_edit_refusals_name_the_machine_and_list(tmp_path: Path) -> None:
    db = str(tmp_path / "r.db")
    m = "naa.600a0b800000000000000000000000aa"
    assert sanbos("machine", "add", m, "--registry", db).returncode == 0
    refused(sanbos("machine", "dev-remove", m, "boot", "7", "--mode", "normal", "--registry", db), 1,
            f"machine {m} boot list (normal)", "the list is empty")
    refused(sanbos("machine", "dev-move", m, "primary", "1", "2", "--registry", db), 1,
            f"machine {m} primary list", "the list is empty")


def test_fabric_add_needs_a_disk(tmp_path: Path) -> None:
    f = fab.create(tmp_path / "f", 1, 16 * MiB)
    manifest = f.manifest.read_bytes()
    refused(sanbos("fabric", "add", str(f.root), "--disks", "0"), 2, str(f.root), "at least one disk")
    refused(sanbos("fabric", "add", str(f.root), "--image", str(tmp_path)), 1, str(tmp_path), "is a directory")
    assert f.manifest.read_bytes() == manifest


@pytest.mark.parametrize("manifest, problem", [
    (b"[]", "sanbos-boot.json is not a JSON object"),
    (b'{"format": "sanbos-bootimage", "kernel": "x", "initrd": {"size": "big"}, "cmdline": "quiet"}',
     "its 'kernel' entry is damaged"),
    # a command line that would smuggle a second GRUB command into every boot disk's grub.cfg
    (b'{"format": "sanbos-bootimage", "kernel": {"size": 1, "sha256": "x"}, "initrd": {"size": 1, "sha256": "x"},'
     b' "cmdline": "quiet\\nhalt"}', "cmdline: must be one line"),
])
def test_bootimage_with_a_damaged_manifest_is_reported_not_a_traceback(tmp_path: Path, manifest, problem) -> None:
    require_tool("mke2fs", "debugfs")
    from core import ext4
    kernel, initrd = _fake_parts(tmp_path)
    img = tmp_path / "boot.img"
    assert sanbos("bootimage", "build", "--kernel", str(kernel), "--initrd", str(initrd), "-o", str(img),
                  "--json").returncode == 0
    (tmp_path / "m.json").write_bytes(manifest)
    ext4.write_file(ext4.Target(img, 0, img.stat().st_size, name=str(img)), tmp_path / "m.json",
                    "/sanbos-boot.json", replace=True)
    for extra in ([], ["--json"]):
        res = sanbos("bootimage", "inspect", str(img), *extra)
        assert res.returncode == 1 and "Traceback" not in res.stderr, res.stderr
        assert problem in res.stderr + res.stdout
    f = fab.create(tmp_path / "f", 1, 64 * MiB)
    assert sanbos("vg", "create", "v", "--disk", f.luns[0].wwn, fabric=f).returncode == 0
    before = sums(f)
    refused(sanbos("bootcopy", "mirror", "v", "--image", str(img), "-q", fabric=f), 1, f"boot image {img}", problem)
    assert sums(f) == before


def test_absurd_sizes(tmp_path: Path) -> None:
    huge = "9" * 400
    refused(sanbos("fabric", "create", str(tmp_path / "g"), "--size", huge), 2, "is too large")
    refused(sanbos("fabric", "create", str(tmp_path / "g"), "--size", "8000000T"), 1, "lun00.img", "too large")
    assert not (tmp_path / "g").exists()        # no half-made fabric left behind
    f = fab.create(tmp_path / "f", 1, 64 * MiB)
    assert sanbos("vg", "create", "v", "--disk", f.luns[0].wwn, fabric=f).returncode == 0
    before = sums(f)
    line = refused(sanbos("lv", "create", "v", "l", "--size", huge + "T", fabric=f), 2, "is too large")
    assert len(line) < 200
    assert sums(f) == before
