"""The demo fabric (``sanbos fabric create DIR --demo``), judged by real LVM2, e2fsprogs and dpkg-deb."""

from __future__ import annotations

import hashlib
import os
import subprocess
import tarfile
import time
from pathlib import Path

import pytest

from conftest import lvm_cmd, require_root, require_tool
from lvm_helpers import clean_output, lvs_rows, our_rows
from test_repo import digests, pv_loops

from console import cli
from core import demoparts, ext4, repo
from core import fabric as fab
from core import vg as vgops
from core.demo import DEMO_VG
from core.disk import DiskRef
from core.lvm.scan import scan


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    require_tool("dpkg-deb", "mke2fs", "debugfs", "e2fsck")
    d = tmp_path_factory.mktemp("demo") / "fabric"
    rc = cli.main(["fabric", "create", str(d), "--demo"])
    assert rc == 0
    f = fab.load(d)
    return f, [DiskRef(l.wwn, l.path) for l in f.luns[:4]]


def test_demo_fabric_layout(demo):
    f, refs = demo
    assert len(f.luns) == 6
    # the two target disks are blank
    d = digests(f)
    for lun in f.luns[4:]:
        assert d[lun.file] == hashlib.sha256().hexdigest(), lun.file  # no data at all


def test_real_lvm2_accepts_the_demo_vg(demo):
    require_root()
    f, refs = demo
    with pv_loops(refs) as devmap:
        devs = sorted(devmap.values())
        r = lvm_cmd("vgck", DEMO_VG, devices=devs)
        assert not clean_output(r.stdout + r.stderr), r.stderr
        r = lvm_cmd("vgs", "--noheadings", "-o", "vg_name,pv_count,lv_count,vg_attr", DEMO_VG, devices=devs)
        name, pvs, lvs, attr = r.stdout.split()
        assert (name, pvs) == (DEMO_VG, "4") and attr[2] != "x"
        rows = lvs_rows(devs, DEMO_VG)
        assert rows == {row for row in our_rows(scan(refs), devmap) if row[0] == DEMO_VG}
        names = {n for _, n, _, _ in rows}
        bos_lv = repo.RAW_LV_PREFIX + demoparts.BOS_NAME
        for lv in (repo.REPO_LV, bos_lv):
            assert lv in names
            assert {f"{lv}_rimage_{k}" for k in range(4)} <= names
        r = lvm_cmd("lvs", "-a", "--noheadings", "-o", "lv_name,segtype", DEMO_VG, devices=devs)
        types = dict(line.split() for line in r.stdout.splitlines() if line.strip())
        assert types[repo.REPO_LV] == "raid1" and types[bos_lv] == "raid1"


def test_demo_boot_copies(demo):
    f, refs = demo
    try:
        from core import bootcopy
    except ImportError:
        pytest.fail("core.bootcopy is missing: the demo cannot have boot copies")
    rep = bootcopy.verify(DEMO_VG, refs)
    assert rep.ok, rep


def test_demo_repository_toc_and_images(demo, tmp_path):
    f, refs = demo
    with vgops.open_vg(DEMO_VG, refs, write=False) as vg:
        toc = repo.toc(vg)
        rep = repo.verify(vg)
        r = repo.open_repo(vg)
        keys = {(e.kind, e.name, e.format) for e in toc.images}
        assert keys == {("bos", demoparts.BOS_NAME, "tar"), ("bos", demoparts.BOS_NAME, "raw-lv"),
                        ("opp", demoparts.OPP_BASE, "deb"), ("opp", demoparts.OPP_TOOLS, "deb")}
        tools = toc.find(demoparts.OPP_TOOLS)[0]
        assert tools.dependencies == [f"{demoparts.OPP_BASE} (>= 1.0)"]
        assert rep.ok, rep.problems()
        tar = r.read_image(toc.find(demoparts.BOS_NAME, format="tar")[0], tmp_path / "bos.tar.gz")
        raw = r.read_image(toc.find(demoparts.BOS_NAME, format="raw-lv")[0], tmp_path / "bos.img")
        debs = [r.read_image(e, tmp_path / Path(e.file).name) for e in toc.opps]
    # the raw BOS is a clean ext4 with the init script
    clean, out = ext4.fsck(ext4.Target(raw, 0, raw.stat().st_size))
    assert clean, out
    assert demoparts.BANNER in ext4.read_file(ext4.Target(raw, 0, raw.stat().st_size), "/init").decode()
    # the tarball is a busybox root file system
    with tarfile.open(tar) as tf:
        names = set(tf.getnames())
    assert {"./bin/busybox", "./init", "./sbin/init", "./etc/os-release", "./bin/sh"} <= names
    # the OPPs are real Debian packages
    for deb in debs:
        subprocess.run(["dpkg-deb", "--info", str(deb)], check=True, capture_output=True)


def test_demo_bos_banner_lists_installed_opps(demo, tmp_path):
    """Install like the flows would (untar BOS, dpkg-deb -x each OPP) and run the BOS init in a chroot."""
    require_root()
    f, refs = demo
    with vgops.open_vg(DEMO_VG, refs, write=False) as vg:
        toc = repo.toc(vg)
        r = repo.open_repo(vg)
        tar = r.read_image(toc.find(demoparts.BOS_NAME, format="tar")[0], tmp_path / "bos.tar.gz")
        debs = [r.read_image(e, tmp_path / Path(e.file).name) for e in toc.opps]
    root = tmp_path / "root"
    root.mkdir()
    subprocess.run(["tar", "-xzf", str(tar), "-C", str(root)], check=True)
    for deb in debs:
        subprocess.run(["dpkg-deb", "-x", str(deb), str(root)], check=True)
    # a private mount namespace: the mounts /init makes vanish with it
    require_tool("unshare", "chroot")
    res = subprocess.run(["unshare", "--mount", "--propagation", "private", "chroot", str(root), "/bin/sh", "/init"],
                         capture_output=True, text=True, timeout=30)
    assert demoparts.BANNER in res.stdout, res.stdout + res.stderr
    assert f"{demoparts.OPP_BASE}: 1.0" in res.stdout and f"{demoparts.OPP_TOOLS}: 1.2" in res.stdout
    assert "SANBOS-BOS-READY" in res.stdout


def test_demo_parts_are_reproducible(tmp_path):
    """The demo BOS tarball (gzip, plain, xz), its raw ext4 image and the tarball OPP come out
    byte for byte the same when built again later, elsewhere, under another umask."""
    require_tool("mke2fs", "debugfs")

    def build(d: Path) -> dict[str, str]:
        d.mkdir()
        made = [demoparts.bos_tarball(d / "bos.tar.gz"), demoparts.bos_tarball(d / "bos.tar"),
                demoparts.bos_tarball(d / "bos.tar.xz"), demoparts.bos_raw_image(d / "bos.img"),
                demoparts.opp_tarball(d / "opp.tar.gz", "sanbos-x", depends=["sanbos-demo-base"])]
        return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in made}

    first = build(tmp_path / "1")
    time.sleep(1.1)                             # other ctimes and gzip header times, if they leaked
    old = os.umask(0o077)
    try:
        second = build(tmp_path / "2")
    finally:
        os.umask(old)
    assert first == second
