"""The demo SAN fabric: creation, manifest validation (every bad input), add, adopt, CLI."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from conftest import ROOT
from core import fabric as fab
from core.errors import FabricError, UsageError

MiB = 1024 * 1024


def sanbos(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "console.cli", *args], capture_output=True, text=True,
                          cwd=ROOT, env=dict(os.environ, PYTHONPATH=str(ROOT)))


# ---------------------------------------------------------------------------
# creation


def test_create_makes_sparse_images_and_manifest(tmp_path: Path) -> None:
    f = fab.create(tmp_path / "f", 5, 256 * MiB)
    assert len(f.luns) == 5
    data = tomllib.loads((tmp_path / "f" / "fabric.toml").read_text())
    assert data["fabric"]["version"] == 1
    assert [l["file"] for l in data["lun"]] == [f"lun{i:02d}.img" for i in range(5)]
    for lun in f.luns:
        st = lun.path.stat()
        assert st.st_size == 256 * MiB
        assert st.st_blocks == 0                          # sparse
        assert re.fullmatch(r"naa\.6[0-9a-f]{31}", lun.wwn)
        assert re.fullmatch(r"fc-0x5[0-9a-f]+-lun-\d+", lun.address)
    assert len({l.wwn for l in f.luns}) == 5
    assert len({l.serial for l in f.luns}) == 5
    assert len({l.address for l in f.luns}) == 5
    again = fab.load(tmp_path / "f")
    assert [(l.wwn, l.serial, l.address, l.size, l.path) for l in again.luns] == \
           [(l.wwn, l.serial, l.address, l.size, l.path) for l in f.luns]


def test_create_refuses_bad_requests(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="at least one disk"):
        fab.create(tmp_path / "a", 0, 64 * MiB)
    with pytest.raises(UsageError, match="too small or not a multiple of 512"):
        fab.create(tmp_path / "b", 1, 4 * MiB)
    with pytest.raises(UsageError, match="not a multiple of 512"):
        fab.create(tmp_path / "c", 1, 64 * MiB + 1)
    fab.create(tmp_path / "d", 1, 64 * MiB)
    with pytest.raises(FabricError, match=r"already holds a fabric \(fabric.toml\)"):
        fab.create(tmp_path / "d", 1, 64 * MiB)


# ---------------------------------------------------------------------------
# every bad manifest


@pytest.fixture
def fabric_dir(tmp_path: Path) -> Path:
    fab.create(tmp_path / "f", 3, 16 * MiB)
    return tmp_path / "f"


def edit(d: Path, fn) -> None:
    m = d / "fabric.toml"
    m.write_text(fn(m.read_text()))


def nth_lun(text: str, n: int) -> str:
    return text.split("[[lun]]")[n + 1]


def test_duplicate_wwn(fabric_dir: Path) -> None:
    text = (fabric_dir / "fabric.toml").read_text()
    w0 = re.search(r'wwn = "(.*?)"', nth_lun(text, 0)).group(1)
    w1 = re.search(r'wwn = "(.*?)"', nth_lun(text, 1)).group(1)
    edit(fabric_dir, lambda t: t.replace(w1, w0.upper()))        # same WWN, other case
    with pytest.raises(FabricError, match=f"LUN lun01.img: duplicate WWN {w0}, already used by lun00.img"):
        fab.load(fabric_dir)


def test_missing_file(fabric_dir: Path) -> None:
    (fabric_dir / "lun02.img").unlink()
    with pytest.raises(FabricError, match=r"LUN lun02.img: image file .*lun02.img is missing"):
        fab.load(fabric_dir)


@pytest.mark.parametrize("bad, why", [
    ("16777217", "bad size 16777217"),
    ("1048576", "bad size 1048576"),
    ("-512", "bad size -512"),
    ('"16M"', "'size' is missing or not a int"),
    ("true", "'size' is missing or not a int"),
])
def test_bad_sizes(fabric_dir: Path, bad: str, why: str) -> None:
    edit(fabric_dir, lambda t: t.replace(f"size = {16 * MiB}", f"size = {bad}", 1))
    with pytest.raises(FabricError, match=re.escape(why)):
        fab.load(fabric_dir)


def test_size_mismatch(fabric_dir: Path) -> None:
    os.truncate(fabric_dir / "lun01.img", 32 * MiB)
    with pytest.raises(FabricError, match=r"LUN lun01.img: image .* is 33554432 bytes but the manifest says 16777216"):
        fab.load(fabric_dir)


def test_bad_toml(fabric_dir: Path) -> None:
    edit(fabric_dir, lambda t: t + "\n[[lun]\nfile = \n")
    with pytest.raises(FabricError, match=r"fabric.toml: not valid TOML"):
        fab.load(fabric_dir)


@pytest.mark.parametrize("version", ["2", '"1"', "0"])
def test_wrong_version(fabric_dir: Path, version: str) -> None:
    edit(fabric_dir, lambda t: t.replace("version = 1", f"version = {version}"))
    with pytest.raises(FabricError, match="unsupported manifest version"):
        fab.load(fabric_dir)


def test_missing_header(fabric_dir: Path) -> None:
    edit(fabric_dir, lambda t: t.replace("[fabric]", "[other]"))
    with pytest.raises(FabricError, match=r"missing \[fabric\] table"):
        fab.load(fabric_dir)


@pytest.mark.parametrize("wwn", ["600a0b80aa", "naa.xyz0000000000000", "naa.600a0b8", "eui.0011223344556677",
                                 "naa.600a0b80112233445566778899aabbc"])
def test_bad_wwn_syntax(fabric_dir: Path, wwn: str) -> None:
    text = (fabric_dir / "fabric.toml").read_text()
    w0 = re.search(r'wwn = "(.*?)"', text).group(1)
    edit(fabric_dir, lambda t: t.replace(w0, wwn))
    with pytest.raises(FabricError, match=f"LUN lun00.img: WWN '{re.escape(wwn)}' is not an NAA WWN"):
        fab.load(fabric_dir)


@pytest.mark.parametrize("name", ["../escape.img", "/etc/passwd", "sub/lun.img", "a b.img", ""])
def test_file_names_escaping_the_directory(fabric_dir: Path, name: str) -> None:
    (fabric_dir.parent / "escape.img").write_bytes(bytes(16 * MiB))
    edit(fabric_dir, lambda t: t.replace('file = "lun00.img"', f'file = "{name}"'))
    with pytest.raises(FabricError, match="file name must be a plain name inside the fabric directory"):
        fab.load(fabric_dir)


def test_dot_dot_is_refused(fabric_dir: Path) -> None:
    edit(fabric_dir, lambda t: t.replace('file = "lun00.img"', 'file = ".."'))
    with pytest.raises(FabricError, match=r"LUN \.\.: file name must be a plain name"):
        fab.load(fabric_dir)


def test_symlink_escaping_the_directory(fabric_dir: Path) -> None:
    outside = fabric_dir.parent / "outside.img"
    outside.write_bytes(bytes(16 * MiB))
    (fabric_dir / "lun00.img").unlink()
    (fabric_dir / "lun00.img").symlink_to(outside)
    with pytest.raises(FabricError, match="link that leaves the fabric directory"):
        fab.load(fabric_dir)


def test_file_listed_twice(fabric_dir: Path) -> None:
    edit(fabric_dir, lambda t: t.replace('file = "lun01.img"', 'file = "lun00.img"'))
    with pytest.raises(FabricError, match="LUN lun00.img: listed twice"):
        fab.load(fabric_dir)


@pytest.mark.parametrize("key", ["wwn", "serial", "address", "file"])
def test_missing_keys(fabric_dir: Path, key: str) -> None:
    edit(fabric_dir, lambda t: re.sub(rf"^{key} = .*$", "", t, count=1, flags=re.M))
    with pytest.raises(FabricError, match=f"LUN #0: '{key}' is missing"):
        fab.load(fabric_dir)


def test_not_a_fabric(tmp_path: Path) -> None:
    with pytest.raises(FabricError, match="not a fabric directory"):
        fab.load(tmp_path / "nope")
    with pytest.raises(FabricError, match=r"no fabric.toml here; create a fabric with 'sanbos fabric create"):
        fab.load(tmp_path)


# ---------------------------------------------------------------------------
# add and adopt


def test_add_disks(fabric_dir: Path) -> None:
    f = fab.load(fabric_dir)
    new = fab.add(f, 2, 32 * MiB)
    assert [l.file for l in new] == ["lun03.img", "lun04.img"]
    g = fab.load(fabric_dir)
    assert len(g.luns) == 5 and g.luns[4].size == 32 * MiB
    assert len({l.wwn for l in g.luns}) == 5
    assert g.array_id == f.array_id and all(l.wwn.startswith("naa." + f.array_id) for l in g.luns)


def test_adopt_image_from_elsewhere_and_in_place(fabric_dir: Path, tmp_path: Path) -> None:
    src = tmp_path / "old-root.img"
    with open(src, "wb") as fh:
        fh.truncate(20 * MiB)
        fh.seek(5 * MiB)
        fh.write(b"payload")
    f = fab.load(fabric_dir)
    lun = fab.adopt(f, src)
    assert lun.file == "old-root.img" and lun.size == 20 * MiB
    assert (fabric_dir / "old-root.img").read_bytes()[5 * MiB:5 * MiB + 7] == b"payload"
    g = fab.load(fabric_dir)
    assert g.luns[-1].wwn == lun.wwn
    with pytest.raises(FabricError, match="a file of that name is already in the fabric"):
        fab.adopt(g, src)
    inplace = fabric_dir / "extra.img"
    os.truncate(inplace, 16 * MiB) if inplace.exists() else open(inplace, "wb").truncate(16 * MiB)
    lun2 = fab.adopt(g, inplace)
    assert lun2.file == "extra.img"
    with pytest.raises(FabricError, match="already a LUN of this fabric"):
        fab.adopt(fab.load(fabric_dir), inplace)
    small = tmp_path / "small.img"
    small.write_bytes(b"x" * 1000)
    with pytest.raises(FabricError, match="size 1000 is too small"):
        fab.adopt(g, small)
    with pytest.raises(FabricError, match="no such image file"):
        fab.adopt(g, tmp_path / "none.img")


# ---------------------------------------------------------------------------
# CLI: messages and exit codes


def test_cli_create_show_add(tmp_path: Path) -> None:
    d = tmp_path / "cli"
    r = sanbos("fabric", "create", str(d), "--disks", "3", "--size", "64M")
    assert r.returncode == 0 and r.stdout.strip() == f"fabric {d}: 3 LUNs", r.stderr
    r = sanbos("fabric", "show", str(d), "--json")
    data = json.loads(r.stdout)
    assert len(data["luns"]) == 3 and data["luns"][0]["size"] == 64 * MiB
    r = sanbos("fabric", "show", str(d))
    assert r.returncode == 0 and r.stdout.startswith(f"fabric cli ({d}), 3 LUNs")
    assert data["luns"][2]["wwn"] in r.stdout
    r = sanbos("fabric", "add", str(d), "--disks", "2", "--size", "32M")
    assert r.returncode == 0 and r.stdout.count("added lun0") == 2
    img = tmp_path / "adopt.img"
    open(img, "wb").truncate(48 * MiB)
    r = sanbos("fabric", "add", str(d), "--image", str(img))
    assert r.returncode == 0 and r.stdout.startswith("added adopt.img naa.")
    r = sanbos("disks", "--fabric", str(d), "--json")
    assert [x["size"] for x in json.loads(r.stdout)] == [64 * MiB] * 3 + [32 * MiB] * 2 + [48 * MiB]


def test_cli_errors_one_line_exit_codes(tmp_path: Path) -> None:
    r = sanbos("fabric", "show", str(tmp_path / "missing"))
    assert r.returncode == 1
    assert r.stderr == f"sanbos: {tmp_path / 'missing'}: not a fabric directory (it does not exist or is not a directory)\n"
    r = sanbos("fabric", "create", str(tmp_path / "x"), "--size", "lots")
    assert r.returncode == 2 and "not a size: 'lots'" in r.stderr and "Traceback" not in r.stderr
    r = sanbos("fabric", "create", str(tmp_path / "x"), "--disks", "0")
    assert r.returncode == 2 and "at least one disk" in r.stderr
    r = sanbos("fabric", "create", str(tmp_path / "x"), "--disks", "many")
    assert r.returncode == 2 and "invalid int value" in r.stderr
    r = sanbos("fabric")
    assert r.returncode == 2
    fab.create(tmp_path / "y", 2, 16 * MiB)
    r = sanbos("fabric", "create", str(tmp_path / "y"))
    assert r.returncode == 1 and "already holds a fabric" in r.stderr
    (tmp_path / "y" / "lun01.img").unlink()
    for cmd in (["fabric", "show", str(tmp_path / "y")], ["disks", "--fabric", str(tmp_path / "y")]):
        r = sanbos(*cmd)
        assert r.returncode == 1 and "Traceback" not in r.stderr
        assert len(r.stderr.strip().splitlines()) == 1
        assert "LUN lun01.img: image file" in r.stderr and "is missing" in r.stderr


def test_cli_fabric_from_environment(tmp_path: Path) -> None:
    f = fab.create(tmp_path / "env", 2, 16 * MiB)
    r = subprocess.run([sys.executable, "-m", "console.cli", "disks", "--json"], capture_output=True, text=True,
                       cwd=ROOT, env=dict(os.environ, PYTHONPATH=str(ROOT), SANBOS_FABRIC=str(f.root)))
    assert r.returncode == 0, r.stderr
    assert [d["id"] for d in json.loads(r.stdout)] == [l.wwn for l in f.luns]
