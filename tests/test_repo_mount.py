"""(root) ``sanbos repo mount``: one leg read-only through a loop device; umount releases it."""

from __future__ import annotations

import hashlib
import os
import subprocess
from pathlib import Path

import pytest

from conftest import require_root, require_tool
from lvm_helpers import refs_of

from console import cli
from core import demoparts, repo
from core import vg as vgops
from core.errors import NotFoundError, UsageError

VG = "instvg"


def _loop_info(dev: str) -> dict[str, str]:
    name = Path(dev).name
    base = Path("/sys/block") / name
    info = {"ro": (base / "ro").read_text().strip()}
    for key in ("offset", "sizelimit", "backing_file"):
        p = base / "loop" / key
        info[key] = p.read_text().strip() if p.exists() else ""
    return info


@pytest.fixture
def mounted_cleanup():
    """Whatever a test mounted is unmounted and its loop device detached by exact name, even on failure."""
    state: dict[str, str] = {}
    yield state
    d, dev = state.get("dir"), state.get("dev")
    if d and os.path.ismount(d):
        subprocess.run(["umount", d], check=False, capture_output=True)
    if dev and Path(f"/sys/block/{Path(dev).name}/loop/backing_file").exists():
        subprocess.run(["losetup", "-d", dev], check=False, capture_output=True)


def test_mount_read_only_files_match_and_umount_detaches(make_fabric, tmp_path, capsys, mounted_cleanup):
    require_root()
    require_tool("losetup", "mount", "umount", "dpkg-deb")
    f = make_fabric(disks=2, size=96 << 20)
    refs = refs_of(f)
    vgops.create(VG, refs)
    repo.create_repo(VG, refs, "24M")
    opps = demoparts.demo_opps(tmp_path / "opps")
    repo.add_opps(VG, refs, opps)
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    mounted_cleanup["dir"] = str(mnt)

    rc = cli.main(["repo", "mount", VG, str(mnt), "--fabric", str(f.root)])
    out, err = capsys.readouterr()
    assert rc == 0, err
    dev = out.split("(")[1].split(")")[0]
    mounted_cleanup["dev"] = dev
    assert dev.startswith("/dev/loop") and os.path.ismount(mnt)
    with vgops.open_vg(VG, refs, write=False) as vg:
        legs = repo.repo_legs(vg)
        toc = repo.toc(vg)
    info = _loop_info(dev)
    assert info["ro"] == "1"
    assert info["backing_file"] == str(legs[0].path)
    assert int(info["offset"]) == legs[0].offset and int(info["sizelimit"]) == legs[0].fs_size
    # the files people see are the repository's
    assert (mnt / "TOC.json").read_bytes() == toc.pack()
    for p in opps:
        e = repo.inspect_opp(p)
        assert hashlib.sha256((mnt / e.file).read_bytes()).hexdigest() == e.sha256
    with pytest.raises(OSError):
        (mnt / "opp" / "new.deb").write_bytes(b"x")
    # a second mount on the same directory is refused
    with vgops.open_vg(VG, refs, write=False) as vg:
        with pytest.raises(UsageError, match="already mounted"):
            repo.mount(vg, mnt)

    rc = cli.main(["repo", "umount", str(mnt)])
    out, err = capsys.readouterr()
    assert rc == 0, err
    assert dev in out
    assert not os.path.ismount(mnt)
    assert not Path(f"/sys/block/{Path(dev).name}/loop/backing_file").exists(), "loop device still attached"
    listing = subprocess.run(["losetup", "-a"], capture_output=True, text=True).stdout
    assert str(legs[0].path) not in listing
    with pytest.raises(NotFoundError, match="nothing is mounted"):
        repo.umount(mnt)


def test_umount_refuses_a_non_loop_mount(tmp_path, mounted_cleanup):
    require_root()
    d = tmp_path / "t"
    d.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(d)], check=True)
    mounted_cleanup["dir"] = str(d)
    with pytest.raises(UsageError, match="not from a repository loop device"):
        repo.umount(d)
    assert os.path.ismount(d)
