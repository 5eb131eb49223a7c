"""The console's later flows, each checked on disk: boot copies onto a VG that has none (and
removing them), a BOS added to the install repository, a machine's boot type and every
device list edited in the registry, the footer's keys at 80 columns."""

from __future__ import annotations

import hashlib
import subprocess
from pathlib import Path

import pytest

from core import fabric as fab
from core.disk import DiskRef

from console.app import SanbosApp
from console.screens.ask import AskScreen
from console.screens.ask_text import AskTextScreen
from console.screens.choice import ChoiceScreen
from console.screens.confirm import ConfirmScreen
from console.screens.error import ErrorScreen
from console.screens.maintenance import MaintenanceScreen
from console.screens.plan import PlanScreen
from console.screens.result import ResultScreen
from console.screens.target import TargetScreen
from test_console_flows import (VG, build_install_fabric, members, settle, shot, stable_screens,  # noqa: F401
                                wait_for)

MiB = 1024 * 1024


@pytest.fixture(scope="session")
def golden2(tmp_path_factory) -> Path:
    """The flow tests' install fabric, with room on the boot disks for a raw BOS LV."""
    import test_console_flows as flows_tests
    real = fab.create
    fab.create = lambda root, n, size, *a, **k: real(root, n, max(size, 160 * MiB), *a, **k)
    try:
        return flows_tests.build_install_fabric(tmp_path_factory.mktemp("golden-more"))
    finally:
        fab.create = real


@pytest.fixture
def fabric(golden2, tmp_path) -> fab.Fabric:
    dest = tmp_path / "fabric"
    subprocess.run(["cp", "-a", "--sparse=always", str(golden2), str(dest)], check=True)
    return fab.load(dest)


def sha256_file(path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for b in iter(lambda: fh.read(1 << 20), b""):
            h.update(b)
    return h.hexdigest()


def lvm_partition_loops(loopdev, paths) -> list[str]:
    """Loop devices over the LVM partition (3) of each disk image, for real LVM2."""
    from core import gpt
    from core.disk import Disk
    devs = []
    for p in paths:
        with Disk(p) as d:
            part = gpt.lvm_partition(d)
        devs.append(loopdev(p, offset=part.start, size=part.size, readonly=True))
    return devs


async def test_mirror_boot_copies_onto_a_vg_without_any(fabric, golden2, loopdev, monkeypatch):
    """A VG with no boot copies: from the other-disks view, Boot copies > Mirror onto disks, two
    disks marked in boot order, a boot image file, plan, typed ID, progress, result; then real
    LVM2 sees bootlv as raid1 with the copy records, and each leg holds the image's bytes."""
    from conftest import lvm_cmd

    from core import bootcopy
    from core import vg as vgmod
    new = [fabric.luns[4], fabric.luns[5]]
    refs = [DiskRef(l.wwn, l.path) for l in new]
    vgmod.create("newvg", refs)
    image = golden2.parent / "boot.img"
    monkeypatch.chdir(image.parent)             # typed relative: the screenshots show no temp dir
    app = SanbosApp(fabric.root)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(app, pilot)
        assert new[0].wwn not in [d.id for d in app.boot_menu.disk_list.disks]   # no copy: not a boot device
        await pilot.press("tab")
        await pilot.pause()
        await pilot.press(*new[0].wwn[-5:], "enter")
        await wait_for(app, pilot, MaintenanceScreen)
        await settle(app, pilot)
        assert "has no boot copies" in app.screen_text()
        await pilot.press("4")
        await wait_for(app, pilot, ChoiceScreen)
        text = app.screen_text()
        assert "no boot copies yet" in text and "Mirror onto disks" in text
        shot(app, "choice_boot_copies_none")
        await pilot.press("enter")                          # highlighted: Mirror onto disks
        await wait_for(app, pilot, TargetScreen)
        await settle(app, pilot)
        assert {d.id for d in app.screen.disk_list.disks} == {l.wwn for l in new}
        assert "2 ready, 0 refused" in app.screen_text()
        # boot order = marking order: the second disk first
        await pilot.press(*new[1].wwn[-5:], "space", "escape", *new[0].wwn[-5:], "space")
        await pilot.pause()
        shot(app, "target_mirror_none")
        await pilot.press("enter")
        await wait_for(app, pilot, ChoiceScreen)            # which image
        await pilot.press("down", "enter")                  # a file
        await wait_for(app, pilot, AskTextScreen)
        await pilot.press(*"/no/such/boot.img", "enter")
        await pilot.pause()
        assert isinstance(app.screen, AskTextScreen) and "No such file: /no/such/boot.img" in app.screen_text()
        app.screen.query_one("Input").value = "fabric"
        await pilot.press("enter")
        await pilot.pause()
        assert "fabric is a directory" in app.screen_text()
        app.screen.query_one("Input").value = image.name
        await pilot.press("enter")
        await wait_for(app, pilot, PlanScreen)
        text = app.screen_text()
        assert "DESTRUCTIVE" in text and "boot copy 1: write the image onto " + new[1].wwn in text
        shot(app, "plan_mirror")
        await pilot.press("enter")
        await wait_for(app, pilot, ConfirmScreen)
        await pilot.press(*new[0].wwn, "enter")             # not the first boot disk: refused
        await pilot.pause()
        assert isinstance(app.screen, ConfirmScreen) and "is not the ID" in app.screen_text()
        shot(app, "confirm_mirror")
        app.screen.query_one("Input").value = new[1].wwn
        await pilot.press("enter")
        await wait_for(app, pilot, ResultScreen, timeout=300)
        text = app.screen_text()
        assert "DONE" in text, text
        shot(app, "result_mirror")
    report = bootcopy.verify("newvg", refs)
    assert report.ok
    assert [c.disk_id for c in report.copies] == [new[1].wwn, new[0].wwn]
    want = sha256_file(image)
    assert report.image_sha256 == want
    size = image.stat().st_size
    with vgmod.open_vg("newvg", refs, write=False) as vgo:
        for leg in (0, 1):
            (path, off, length), = vgo.lv_ranges(bootcopy.BOOT_LV, leg=leg)
            with open(path, "rb") as fh:
                fh.seek(off)
                assert hashlib.sha256(fh.read(size)).hexdigest() == want
    devs = lvm_partition_loops(loopdev, [l.path for l in new])
    out = lvm_cmd("lvs", "--noheadings", "--separator", "|", "-o", "lv_name,segtype,lv_tags", "newvg",
                  devices=devs).stdout
    row = next(line.strip() for line in out.splitlines() if line.strip().startswith("bootlv|"))
    name, segtype, tags = row.split("|")
    assert segtype == "raid1"
    pvs = lvm_cmd("pvs", "--noheadings", "--separator", "|", "-o", "pv_name,pv_uuid", devices=devs).stdout
    uuid_of = {p: u.replace("-", "") for p, u in (l.strip().split("|") for l in pvs.splitlines() if l.strip())}
    assert f"sanbos.copy.1={uuid_of[devs[1]]}:{want}" in tags
    assert f"sanbos.copy.2={uuid_of[devs[0]]}:{want}" in tags
    lvm_cmd("vgck", "newvg", devices=devs)


async def test_remove_a_boot_copy_then_mirror_it_back(fabric):
    """Remove the copy on disk 4 (GRUB taken off it), then Mirror onto more disks puts it back."""
    from core import bootcopy
    gone = fabric.luns[3]
    app = SanbosApp(fabric.root)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(app, pilot)
        await pilot.press(*fabric.luns[0].wwn[-5:], "enter")
        await wait_for(app, pilot, MaintenanceScreen)
        await settle(app, pilot)
        await pilot.press("4")
        await wait_for(app, pilot, ChoiceScreen)
        assert "4 boot copies" in app.screen_text()
        await pilot.press("end", "enter")                   # Remove boot copies from disks
        await wait_for(app, pilot, TargetScreen)
        await settle(app, pilot)
        assert len(app.screen.disk_list.disks) == 4
        await pilot.press(*gone.wwn[-5:], "space")
        await pilot.pause()
        shot(app, "target_remove_copy")
        await pilot.press("enter")
        await wait_for(app, pilot, PlanScreen)
        assert "drop boot copy on " + gone.wwn in app.screen_text()
        await pilot.press("enter")
        await wait_for(app, pilot, ConfirmScreen)
        app.screen.query_one("Input").value = gone.wwn
        await pilot.press("enter")
        await wait_for(app, pilot, ResultScreen, timeout=300)
        assert "DONE" in app.screen_text(), app.screen_text()
        shot(app, "result_remove_copy")
        report = bootcopy.verify(VG, members(fabric))
        assert report.ok and gone.wwn not in [c.disk_id for c in report.copies] and len(report.copies) == 3
        with open(gone.path, "rb") as fh:
            assert fh.read(440) == bytes(440)              # GRUB's boot code is gone from that disk
        await pilot.press("enter")
        await wait_for(app, pilot, MaintenanceScreen)
        await pilot.press("4")
        await wait_for(app, pilot, ChoiceScreen)
        assert "3 boot copies" in app.screen_text()
        await pilot.press("down", "down", "enter")          # Mirror onto more disks
        await wait_for(app, pilot, TargetScreen)
        await settle(app, pilot)
        assert [d.id for d in app.screen.disk_list.disks] == [gone.wwn]
        assert "1 ready" in app.screen_text()
        await pilot.press("space", "enter")
        await wait_for(app, pilot, PlanScreen)
        await pilot.press("enter")
        await wait_for(app, pilot, ConfirmScreen)
        app.screen.query_one("Input").value = gone.wwn
        await pilot.press("enter")
        await wait_for(app, pilot, ResultScreen, timeout=300)
        assert "DONE" in app.screen_text(), app.screen_text()
    report = bootcopy.verify(VG, members(fabric))
    assert report.ok and [c.disk_id for c in report.copies][-1] == gone.wwn and len(report.copies) == 4
    with open(gone.path, "rb") as fh:
        assert fh.read(440) != bytes(440)                  # GRUB is back


async def test_mirror_the_demo_image_onto_one_disk(fabric):
    """The demo boot image, built by the job itself, as the only copy (linear bootlv)."""
    from core import bootcopy, bootimage
    from core import vg as vgmod
    disk = fabric.luns[5]
    ref = DiskRef(disk.wwn, disk.path)
    vgmod.create("solovg", [ref])
    app = SanbosApp(fabric.root)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(app, pilot)
        await pilot.press("tab", *disk.wwn[-5:], "enter")
        await wait_for(app, pilot, MaintenanceScreen)
        await settle(app, pilot)
        await pilot.press("4")
        await wait_for(app, pilot, ChoiceScreen)
        await pilot.press("enter")
        await wait_for(app, pilot, TargetScreen)
        await settle(app, pilot)
        await pilot.press("space", "enter")
        await wait_for(app, pilot, ChoiceScreen)
        shot(app, "choice_boot_image")
        await pilot.press("enter")                          # the demo image
        await wait_for(app, pilot, PlanScreen)
        assert "build the demo boot image" in app.screen_text()
        await pilot.press("enter")
        await wait_for(app, pilot, ConfirmScreen)
        app.screen.query_one("Input").value = disk.wwn
        await pilot.press("enter")
        await wait_for(app, pilot, ResultScreen, timeout=300)
        text = app.screen_text()
        assert "DONE" in text and "demo image: " in "\n".join(app.screen.lines), text
    report = bootcopy.verify("solovg", [ref])
    assert report.ok and [c.disk_id for c in report.copies] == [disk.wwn]
    with vgmod.open_vg("solovg", [ref], write=False) as vgo:
        assert vgo.describe()["lvs"][0]["type"] == "linear"
        (path, off, length), = vgo.lv_ranges(bootcopy.BOOT_LV)
    from core import ext4
    info = bootimage.inspect(ext4.Target(Path(path), off, length, name="solovg/bootlv"))
    assert info.ok and "demo" in info.manifest.get("source", ""), info.manifest


async def add_bos_through_console(app, pilot, fabric, fmt_keys, path, *, shots: str | None = None) -> str:
    """Maintenance menu > 6 > format > file (after a missing file is refused) > plan > Y; the result text."""
    await settle(app, pilot)
    await pilot.press(*fabric.luns[1].wwn[-5:], "enter")
    await wait_for(app, pilot, MaintenanceScreen)
    await settle(app, pilot)
    await pilot.press("6")
    await wait_for(app, pilot, ChoiceScreen)
    if shots:
        shot(app, "choice_bos_format")
    await pilot.press(*fmt_keys)
    await wait_for(app, pilot, AskTextScreen)
    await pilot.press(*"missing-bos.tar.gz", "enter")
    await pilot.pause()
    assert isinstance(app.screen, AskTextScreen)
    assert "No such file: missing-bos.tar.gz" in app.screen_text()
    if shots:
        shot(app, "ask_bos_missing")
    app.screen.query_one("Input").value = str(path)
    await pilot.press("enter")
    await wait_for(app, pilot, PlanScreen)
    if shots:
        shot(app, shots)
    await pilot.press("enter")
    await wait_for(app, pilot, AskScreen)
    if shots:
        shot(app, "ask_bos_confirm")
    await pilot.press("y")
    await wait_for(app, pilot, (ResultScreen, ErrorScreen), timeout=300)
    return app.screen_text()


async def test_add_bos_tarball_to_the_repository(fabric, tmp_path, monkeypatch):
    from core import demoparts, repo
    from core import vg as vgmod
    monkeypatch.chdir(tmp_path)                 # relative paths: the screenshots do not show a temp dir
    tarball = demoparts.bos_tarball(tmp_path / "other-bos.tar.gz", name="sanbos-other-bos", version="2.0")
    app = SanbosApp(fabric.root)
    async with app.run_test(size=(80, 24)) as pilot:
        text = await add_bos_through_console(app, pilot, fabric, ["enter"], "other-bos.tar.gz",
                                             shots="plan_add_bos")
        assert "DONE" in text and "added BOS sanbos-other-bos 2.0" in text, text
        shot(app, "result_add_bos")
    with vgmod.open_vg(VG, members(fabric), write=False, allow_exported=True) as vgo:
        r = repo.open_repo(vgo)
        entry, = r.toc().find("sanbos-other-bos", kind="bos")
        assert entry.version == "2.0" and entry.format == "tar"
        assert entry.sha256 == sha256_file(tarball)
        out = r.read_image(entry, tmp_path / "back.tar.gz")         # the bytes read back from the legs
    assert Path(out).read_bytes() == tarball.read_bytes()


async def test_add_raw_bos_makes_a_raid1_lv(fabric, tmp_path, loopdev):
    from conftest import lvm_cmd

    from core import demoparts, repo
    from core import vg as vgmod
    image = demoparts.bos_raw_image(tmp_path / "raw-bos.img", size=8 * MiB, name="sanbos-raw-bos")
    app = SanbosApp(fabric.root)
    async with app.run_test(size=(80, 24)) as pilot:
        text = await add_bos_through_console(app, pilot, fabric, ["down", "enter"], image)
        assert "DONE" in text and "LV bos_sanbos-raw-bos" in text, text
    want = sha256_file(image)
    with vgmod.open_vg(VG, members(fabric), write=False, allow_exported=True) as vgo:
        entry, = repo.toc(vgo).find("sanbos-raw-bos", kind="bos")
        assert entry.format == "raw-lv" and entry.sha256 == want and entry.lv == "bos_sanbos-raw-bos"
        for leg in range(4):
            h = hashlib.sha256()
            left = entry.size
            for path, off, length in vgo.lv_ranges(entry.lv, leg=leg):
                with open(path, "rb") as fh:
                    fh.seek(off)
                    h.update(fh.read(min(length, left)))
                left -= min(length, left)
            assert h.hexdigest() == want, f"leg {leg}"
    devs = lvm_partition_loops(loopdev, [l.path for l in fabric.luns[:4]])
    out = lvm_cmd("lvs", "--noheadings", "--separator", "|", "-o", "lv_name,segtype,devices", VG,
                  devices=devs).stdout
    row = next(line.strip() for line in out.splitlines() if line.strip().startswith("bos_sanbos-raw-bos|"))
    assert row.split("|")[1] == "raid1" and row.count("_rimage_") == 4, row


async def test_add_bos_refuses_a_non_tarball_and_a_duplicate(fabric, tmp_path):
    from core import demoparts
    junk = tmp_path / "junk.tar.gz"
    junk.write_bytes(b"this is not a tarball\n" * 100)
    dup = demoparts.bos_tarball(tmp_path / "dup.tar.gz")          # the demo BOS is already there
    app = SanbosApp(fabric.root)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(app, pilot)
        await pilot.press(*fabric.luns[1].wwn[-5:], "enter")
        await wait_for(app, pilot, MaintenanceScreen)
        await settle(app, pilot)
        for path, says in ((junk, "not a readable tar archive"), (dup, "already holds BOS sanbos-demo-bos")):
            await pilot.press("6")
            await wait_for(app, pilot, ChoiceScreen)
            await pilot.press("enter")
            await wait_for(app, pilot, AskTextScreen)
            app.screen.query_one("Input").value = str(path)
            await pilot.press("enter")
            await wait_for(app, pilot, ErrorScreen)
            text = app.screen_text()
            assert says in text and "Traceback" not in text, text
            if path == dup:
                shot(app, "error_bos_duplicate")
            await pilot.press("enter")
            await wait_for(app, pilot, MaintenanceScreen)


async def test_machine_boot_type_and_device_lists(fabric, tmp_path):
    """Boot lists > machine: T sets the boot type, rootvg reordered with keys, a primary disk added;
    every change is in the registry file (reopened) and in its audit trail as the console's."""
    from core.registry import Registry

    from console.screens.bootlist import BootListScreen
    from console.screens.machine import MachineScreen
    from test_console_flows import until_text
    db = tmp_path / "registry.db"
    reg = Registry(db)
    reg.add_machine("machine-01", "web1", actor="test")
    reg.add_machine("machine-02", "db1", actor="test")
    l = [x.wwn for x in fabric.luns]
    reg.set_list("machine-01", "boot", l[:2], "normal", actor="test")
    reg.set_list("machine-01", "rootvg", [l[4], l[5]], actor="test")
    reg.close()
    app = SanbosApp(fabric.root, registry=db)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(app, pilot)
        await pilot.press(*l[1][-5:], "enter")
        await wait_for(app, pilot, MaintenanceScreen)
        await pilot.press("5")
        await wait_for(app, pilot, ChoiceScreen)
        await pilot.press("enter")                          # machine-01
        await wait_for(app, pilot, MachineScreen)
        await until_text(app, pilot, "Boot type: normal")
        text = app.screen_text()
        assert "* boot (normal)" in text and " 2 dev" in text and "rootvg" in text and "nonessential" in text
        shot(app, "machine")
        await pilot.press("t")                              # boot type
        await wait_for(app, pilot, ChoiceScreen)
        shot(app, "choice_boot_type")
        await pilot.press("down", "down", "enter")          # maintenance
        await wait_for(app, pilot, MachineScreen)
        await until_text(app, pilot, "Boot type saved: maintenance")
        await pilot.press("down", "down", "down", "enter")  # rootvg
        await wait_for(app, pilot, BootListScreen)
        assert "rootvg list of machine-01" in app.screen_text()
        await pilot.press("d")                              # first one down: l5, l4
        await pilot.pause()
        assert "modified" in app.screen_text()
        shot(app, "bootlist_rootvg")
        await pilot.press("s")
        await wait_for(app, pilot, MachineScreen)
        await until_text(app, pilot, "Saved the rootvg list: 2 device(s)")
        await pilot.press("down", "enter")                  # primary (empty)
        await wait_for(app, pilot, BootListScreen)
        assert "empty" in app.screen_text()
        await pilot.press("a")
        await wait_for(app, pilot, TargetScreen)
        await pilot.press(*l[2][-5:], "space", "enter")
        await wait_for(app, pilot, BootListScreen)
        await pilot.press("s")
        await wait_for(app, pilot, MachineScreen)
        await until_text(app, pilot, "Saved the primary list: 1 device(s)")
        await pilot.press("down", "enter")                  # secondary: leave without saving
        await wait_for(app, pilot, BootListScreen)
        await pilot.press("a")
        await wait_for(app, pilot, TargetScreen)
        await pilot.press("space", "enter")
        await wait_for(app, pilot, BootListScreen)
        await pilot.press("escape")
        await wait_for(app, pilot, MachineScreen)
        await pilot.press("escape")                         # back to the machine choice
        await wait_for(app, pilot, ChoiceScreen)
        await pilot.press("escape")
        await wait_for(app, pilot, MaintenanceScreen)
    reg = Registry(db)                                      # the file itself, reopened
    try:
        m = reg.machine("machine-01")
        assert m.boot_type == "maintenance"
        assert [d.id for d in m.lists["rootvg"]] == [l[5], l[4]]
        assert [d.id for d in m.lists["primary"]] == [l[2]]
        assert m.lists["secondary"] == []
        assert [d.id for d in m.lists["boot"]["normal"]] == l[:2]
        assert reg.machine("machine-02").boot_type == "normal"
        mine = [a for a in reg.audit(limit=50) if a.actor == "console"]
        assert {a.action for a in mine} >= {"machine.boot_type"} and len(mine) == 3, mine
    finally:
        reg.close()


async def test_mirror_refuses_a_disk_without_boot_partitions(fabric):
    """A PV on a whole disk (no GPT boot partitions) is listed REFUSED with the reason; Enter on it
    explains and nothing is written."""
    from core import vg as vgmod
    disk = fabric.luns[5]
    ref = DiskRef(disk.wwn, disk.path)
    vgmod.create("wholevg", [ref], layout="whole")
    before = sha256_file(disk.path)
    app = SanbosApp(fabric.root)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(app, pilot)
        await pilot.press("tab", *disk.wwn[-5:], "enter")
        await wait_for(app, pilot, MaintenanceScreen)
        await settle(app, pilot)
        await pilot.press("4")
        await wait_for(app, pilot, ChoiceScreen)
        await pilot.press("enter")
        await wait_for(app, pilot, TargetScreen)
        await settle(app, pilot)
        text = app.screen_text()
        assert "REFUSED" in text and "no bios_grub/ESP partitions" in text, text
        await pilot.press("space", "enter")
        await pilot.pause()
        assert isinstance(app.screen, TargetScreen) and "cannot be used" in app.screen_text()
        shot(app, "target_mirror_refused")
        await pilot.press("escape")
        await wait_for(app, pilot, MaintenanceScreen)
    assert sha256_file(disk.path) == before
    with vgmod.open_vg("wholevg", [ref], write=False) as vgo:
        assert [lv["name"] for lv in vgo.describe()["lvs"]] == []
