"""BOS install (Figure 4) end to end: tarball and raw BOS with OPPs onto blank
fabric targets; the target boots in QEMU (TCG) to the installed system's
banner listing its OPPs; e2fsck and real LVM2 accept the result; bad input
is refused before anything is written."""

from __future__ import annotations

import io
import re
from contextlib import redirect_stdout
from pathlib import Path

import pytest

from core import demoparts, ext4, install, inventory, repo, vg
from core import fabric as fab
from core.disk import DiskRef
from core.errors import NotFoundError, SpaceError, UnsafeDiskError, UsageError

from conftest import lvm_cmd, require_root
from flowhelp import READY, boot, demo_fabric, lv_target, machine, partitions, require_qemu, sha256_file

pytestmark = [pytest.mark.qemu, pytest.mark.slow]


@pytest.fixture(scope="module")
def fabric(tmp_path_factory) -> fab.Fabric:
    require_qemu()
    return demo_fabric(tmp_path_factory.mktemp("inst") / "fabric", disks=3, targets=4)


@pytest.fixture(scope="module")
def tar_install(fabric):
    lun = fabric.luns[3]
    res = install.install("instvg", "sanbos-demo-bos:tar", lun.wwn, ["sanbos-demo-tools"], fabric=fabric.root)
    return lun, res


def _cli(*argv: str) -> tuple[int, str]:
    from console.cli import main
    out = io.StringIO()
    with redirect_stdout(out):
        rc = main(list(argv))
    return rc, out.getvalue()


def _banner_opps(text: str) -> list[str]:
    return re.findall(r"^\s+(sanbos-[a-z-]+): ", text, re.M)


def test_tarball_install_boots_and_lists_opps(fabric, tar_install, tmp_path):
    lun, res = tar_install
    assert [o["name"] for o in res.opps] == ["sanbos-demo-base", "sanbos-demo-tools"]
    root = lv_target(lun, "rootlv")
    ok, out = ext4.fsck(root)
    assert ok, out
    assert set(ext4.listdir(root, "/var/lib/sanbos/opps")) == {"sanbos-demo-base", "sanbos-demo-tools"}
    rc, text = _cli("opp", "list", "--target", lun.wwn, "--fabric", str(fabric.root))
    assert rc == 0 and "sanbos-demo-base" in text and "sanbos-demo-tools" in text
    # boot it on its own: registry machine whose normal boot list is the target
    regf = tmp_path / "reg.db"
    machine(regf, "host-tar", "normal", [lun.wwn], [lun.wwn])
    console = boot(fabric.root, regf, "host-tar", "normal", READY, tmp_path / "vm")
    assert "SANBOS INSTALLED SYSTEM: sanbos-demo-bos 1.0" in console
    assert _banner_opps(console) == ["sanbos-demo-base", "sanbos-demo-tools"]
    assert "bosboot: root file system /dev/mapper/rootvg-rootlv mounted" in console


def test_raw_bos_install_boots(fabric, tmp_path):
    lun = fabric.luns[4]
    res = install.install("instvg", "sanbos-demo-bos:raw", lun.wwn, ["sanbos-demo-tools"], fabric=fabric.root)
    assert res.plan.bos_format == "raw"
    root = lv_target(lun, "rootlv")
    ok, out = ext4.fsck(root)
    assert ok, out
    # grown to the root LV by resize2fs: the file system fills the LV
    stats = ext4.debugfs(root, "stats")
    bs = int(re.search(r"Block size:\s+(\d+)", stats).group(1))
    blocks = int(re.search(r"Block count:\s+(\d+)", stats).group(1))
    assert blocks * bs == root.size
    # boot through the CLI: sanbos vm run MACHINE --mode normal (serial console to a log here)
    regf = tmp_path / "reg.db"
    machine(regf, "host-raw", "normal", [lun.wwn], [lun.wwn])
    rc, plan = _cli("vm", "run", "host-raw", "--mode", "normal", "--registry", str(regf),
                    "--fabric", str(fabric.root), "--dry-run")
    assert rc == 0 and f"boot #1  {lun.wwn}" in plan and "read-write, local" in plan
    log = tmp_path / "console.log"
    rc, _ = _cli("vm", "run", "host-raw", "--mode", "normal", "--registry", str(regf), "--fabric",
                 str(fabric.root), "--log", str(log), "--until", READY, "--timeout", "300")
    assert rc == 0
    assert _banner_opps(log.read_text(errors="replace")) == ["sanbos-demo-base", "sanbos-demo-tools"]


def test_real_lvm2_sees_root_vg(fabric, tar_install, loopdev):
    require_root()
    lun, _ = tar_install
    p = partitions(lun.path)["lvm"]
    dev = loopdev(lun.path, offset=p.start, size=p.size, readonly=True)
    out = lvm_cmd("lvs", "--noheadings", "-o", "vg_name,lv_name,lv_size", "--units", "b", devices=[dev]).stdout
    names = {tuple(l.split()[:2]) for l in out.splitlines() if l.strip()}
    assert ("rootvg", "bootlv") in names and ("rootvg", "rootlv") in names
    lvm_cmd("vgck", "rootvg", devices=[dev])


def test_later_opp_install(fabric, tar_install, tmp_path):
    """Seed 0056: add a product to the install VG, then install it onto the installed system."""
    lun, _ = tar_install
    members = [d.ref for d in install.install_vg_disks("instvg", inventory.list_disks(fabric.root))]
    deb = demoparts.opp_deb(tmp_path, "sanbos-demo-later", "3.1", depends=["sanbos-demo-tools (>= 1.0)"])
    repo.add_opps("instvg", members, [deb])
    rc, text = _cli("opp", "install", "--from", "instvg", "--target", lun.wwn, "sanbos-demo-later",
                    "--fabric", str(fabric.root), "-q")
    assert rc == 0, text
    names = [o["name"] for o in install.installed_opps(lun.wwn, fabric=fabric.root)]
    assert names == ["sanbos-demo-base", "sanbos-demo-later", "sanbos-demo-tools"]
    ok, out = ext4.fsck(lv_target(lun, "rootlv"))
    assert ok, out


def test_dry_run_writes_nothing(fabric):
    lun = fabric.luns[5]
    before = sha256_file(lun.path)
    plan = install.install("instvg", "sanbos-demo-bos:tar", lun.wwn, ["sanbos-demo-tools"], fabric=fabric.root,
                           dry_run=True)
    assert isinstance(plan, install.InstallPlan)
    assert "sanbos-demo-base 1.0 (dependency of sanbos-demo-tools)" in str(plan)
    assert sha256_file(lun.path) == before


# -- bad input: clear errors, nothing written ---------------------------------------

def _refused(fabric, target_lun, exc, match, **kw):
    before = sha256_file(target_lun.path)
    args = dict(from_vg="instvg", bos="sanbos-demo-bos:tar", target=target_lun.wwn, opps=["sanbos-demo-tools"])
    args.update(kw)
    with pytest.raises(exc, match=match):
        install.install(args.pop("from_vg"), args.pop("bos"), args.pop("target"), args.pop("opps"),
                        fabric=fabric.root)
    assert sha256_file(target_lun.path) == before, "the target changed although the install was refused"


def test_refuses_target_too_small(fabric):
    small = fab.add(fabric, 1, 48 << 20)[0]
    _refused(fabric, small, UnsafeDiskError, rf"{small.wwn}.*too small")


def test_refuses_target_with_another_vg(fabric):
    lun = fabric.luns[6]
    vg.create("othervg", [DiskRef(lun.wwn, lun.path)])
    _refused(fabric, lun, UnsafeDiskError, rf"{lun.wwn}.*not blank.*LVM2.*--force {lun.wwn}")


def test_refuses_member_of_install_vg(fabric):
    _refused(fabric, fabric.luns[1], UnsafeDiskError, "member of the install VG instvg")


def test_refuses_unknown_bos_and_opp(fabric):
    lun = fabric.luns[5]
    _refused(fabric, lun, NotFoundError, "BOS 'no-such-bos' is not in the repository", bos="no-such-bos")
    _refused(fabric, lun, NotFoundError, "OPP 'no-such-opp' is not in the repository", opps=["no-such-opp"])


def test_refuses_missing_dependency(fabric, tar_install, tmp_path):
    lun = fabric.luns[5]
    disks = inventory.list_disks(fabric.root)
    members = [d.ref for d in install.install_vg_disks("instvg", disks)]
    deb = demoparts.opp_deb(tmp_path, "sanbos-demo-orphan", "1.0", depends=["sanbos-not-in-repo (>= 2)"])
    repo.add_opps("instvg", members, [deb])
    _refused(fabric, lun, install.DependencyError,
             r"sanbos-demo-orphan 1.0 needs sanbos-not-in-repo \(>= 2\).*nothing was written",
             opps=["sanbos-demo-orphan"])
    # the same refusal for a later product install onto an installed system
    done = tar_install[0]
    before = sha256_file(done.path)
    with pytest.raises(install.DependencyError, match="sanbos-not-in-repo"):
        install.opp_install("instvg", done.wwn, ["sanbos-demo-orphan"], fabric=fabric.root)
    with pytest.raises(NotFoundError, match="OPP 'no-such-opp' is not in"):
        install.opp_install("instvg", done.wwn, ["no-such-opp"], fabric=fabric.root)
    assert sha256_file(done.path) == before


def test_cli_errors_are_one_line(fabric, capsys):
    from console.cli import main
    rc = main(["install", "--from", "instvg", "--bos", "nope", "--target", fabric.luns[5].wwn,
               "--fabric", str(fabric.root)])
    err = capsys.readouterr().err
    assert rc == 1 and err.startswith("sanbos: BOS 'nope'") and "Traceback" not in err


def test_failure_after_writing_says_partly_written(fabric, monkeypatch):
    lun = fab.add(fabric, 1, 256 << 20)[0]

    def boom(*a, **k):
        raise SpaceError("simulated: no room")
    monkeypatch.setattr(install.ext4, "make", boom)
    with pytest.raises(SpaceError, match=rf"simulated: no room; .*partly written.*--force {lun.wwn}"):
        install.install("instvg", "sanbos-demo-bos:tar", lun.wwn, [], fabric=fabric.root)
