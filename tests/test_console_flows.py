"""The maintenance flows end to end through the console, on a real install VG.

The install VG is made by the engine itself (sanbos VG on a fabric of image
files, boot copies on every disk, a repository with the demo BOS and an
OPP), once per session, and copied for each test.  Each test drives the
console with keys and then checks the disks themselves.
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from core import fabric as fab
from core.disk import DiskRef
from core.errors import FormatError, SanbosError

from console.app import SanbosApp
from console.screens.ask import AskScreen
from console.screens.ask_text import AskTextScreen
from console.screens.bootlist import BootListScreen
from console.screens.choice import ChoiceScreen
from console.screens.confirm import ConfirmScreen
from console.screens.error import ErrorScreen
from console.screens.machine import MachineScreen
from console.screens.maintenance import MaintenanceScreen
from console.screens.plan import PlanScreen
from console.screens.progress import ProgressScreen
from console.screens.result import ResultScreen
from console.screens.target import TargetScreen

ROOT = Path(__file__).resolve().parent.parent
SHOTS = ROOT / "screenshots"
MiB = 1024 * 1024
VG = "instvg"


def shot(app, name: str) -> None:
    SHOTS.mkdir(exist_ok=True)
    app.save_screenshot(f"{name}.svg", path=str(SHOTS))


async def shot_result_masked(app, pilot, name: str, pattern: str, placeholder: str) -> None:
    """Screenshot of a ResultScreen whose one run-dependent value (a measured duration) is shown
    as a marked ``placeholder``: only in the saved SVG, after the test has read the real text;
    the screen gets its real lines back at once."""
    body = app.screen.query_one("#result-lines")
    real = "\n".join(app.screen.lines)
    masked, n = re.subn(pattern, placeholder, real)
    assert n == 1, real
    body.update(masked)
    await pilot.pause()
    shot(app, name)
    body.update(real)
    await pilot.pause()


def build_install_fabric(base: Path) -> Path:
    """A fabric: 4-disk install VG (boot copies + repository with BOS and one OPP) and 2 blank targets.

    Made by the engine itself; skips when the Debian kernel for the boot image cannot be had.
    """
    from core import bootcopy, bootimage, debparts, demoparts, repo
    from core import vg as vgmod

    from core.lvm import uuid as lvmuuid

    counter = itertools.count(0xC0)
    real = fab.secrets.token_hex
    real_uuid = lvmuuid.generate
    fab.secrets.token_hex = lambda n=16: f"{next(counter):0{2 * n}x}"[-2 * n:]   # stable IDs for the SVGs
    lvmuuid.generate = fixed_uuids("G")                                         # stable PV/VG/LV UUIDs too
    try:
        try:
            debparts.kernel()
        except SanbosError as e:
            pytest.skip(f"Debian kernel not available (scripts/fetch-parts.sh): {e}")
        f = fab.create(base / "fabric", 4, 128 * MiB)
        refs = [DiskRef(l.wwn, l.path) for l in f.luns]
        # the demo boot image is reproducible: the same image (and SHA-256 on the result screens)
        # comes out of every run
        bootimage.demo(base / "boot.img")
        vgmod.create(VG, refs)
        bootcopy.mirror(VG, refs, base / "boot.img")
        repo.create_repo(VG, refs, "48M")
        repo.add_bos(VG, refs, demoparts.bos_tarball(base / "bos.tar.gz"))
        repo.add_opps(VG, refs, demoparts.demo_opps(base / "opps")[:1])
        fab.add(f, 2, 256 * MiB)
    finally:
        fab.secrets.token_hex = real
        lvmuuid.generate = real_uuid
    return f.root


def fixed_uuids(tag: str):
    """A stand-in for core.lvm.uuid.generate: valid, unique per tag, the same in every run.

    Letters g-y only (no digits, no hex letters): typing part of a WWN never matches one."""
    counter = itertools.count(1)
    letters = "ghijklmnopqrstuvwxy"

    def generate() -> str:
        n, out = next(counter), ""
        while n:
            n, r = divmod(n, len(letters))
            out = letters[r] + out
        return f"{tag}{out:z>31}"
    return generate


@pytest.fixture(autouse=True)
def stable_screens(monkeypatch):
    """What the screenshots show does not depend on the run: UUIDs made during a test come from
    a counter (never the golden fabric's), and the progress log's time stamps read 0.0s."""
    from core.lvm import uuid as lvmuuid

    from console.screens.progress import ProgressScreen
    monkeypatch.setattr(lvmuuid, "generate", fixed_uuids("T"))
    monkeypatch.setattr(ProgressScreen, "clock", staticmethod(lambda: 0.0))


@pytest.fixture(scope="session")
def golden(tmp_path_factory) -> Path:
    return build_install_fabric(tmp_path_factory.mktemp("golden"))


@pytest.fixture
def fabric(golden, tmp_path) -> fab.Fabric:
    dest = tmp_path / "fabric"
    subprocess.run(["cp", "-a", "--sparse=always", str(golden), str(dest)], check=True)
    return fab.load(dest)


def members(f: fab.Fabric) -> list[DiskRef]:
    return [DiskRef(l.wwn, l.path) for l in f.luns[:4]]


def leg_bytes(f: fab.Fabric, leg: int) -> tuple[str, int, bytes]:
    from core import bootcopy
    from core import vg as vgmod
    with vgmod.open_vg(VG, members(f), write=False) as vgo:
        (path, off, length), = vgo.lv_ranges(bootcopy.BOOT_LV, leg=leg)
    size = 1 * MiB
    with open(path, "rb") as fh:
        fh.seek(off)
        return path, off, fh.read(size)


def flip(path: str, offset: int) -> None:
    with open(path, "r+b") as fh:
        fh.seek(offset)
        b = fh.read(1)
        fh.seek(offset)
        fh.write(bytes([b[0] ^ 0x5A]))


async def settle(app, pilot) -> None:
    from textual.worker import WorkerFailed
    for w in list(app.workers):
        if w.group in ("inventory", "health", "import", "safety"):
            try:
                await w.wait()
            except WorkerFailed:
                pass
    await pilot.pause()


async def wait_for(app, pilot, cls, timeout: float = 120) -> None:
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while not isinstance(app.screen, cls):
        if loop.time() > end:
            raise AssertionError(f"no {getattr(cls, '__name__', cls)}; on {type(app.screen).__name__}:\n{app.screen_text()}")
        await asyncio.sleep(0.05)
        await pilot.pause()
    await pilot.pause()


async def until_text(app, pilot, text: str, timeout: float = 30) -> None:
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while text not in app.screen_text():
        if loop.time() > end:
            raise AssertionError(f"{text!r} not on screen:\n{app.screen_text()}")
        await asyncio.sleep(0.05)
        await pilot.pause()


async def open_menu(app, pilot, f: fab.Fabric) -> MaintenanceScreen:
    await settle(app, pilot)
    await pilot.press(*f.luns[1].wwn[-5:], "enter")
    await wait_for(app, pilot, MaintenanceScreen)
    await settle(app, pilot)
    return app.screen


async def test_select_by_id_imports_install_vg(fabric):
    app = SanbosApp(fabric.root)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(app, pilot)
        menu = app.boot_menu
        assert [d.id for d in menu.disk_list.disks] == [l.wwn for l in fabric.luns[:4]]
        assert all(d.boot_copy == "ok" for d in menu.disk_list.disks)
        shot(app, "boot_menu_install_vg")
        screen = await open_menu(app, pilot, fabric)
        assert screen.ctx.disk.id == fabric.luns[1].wwn
        text = app.screen_text()
        assert "importing install VG instvg" in text and "imported read-only" in text
        assert "bootlv (raid1" in text and "instlv (raid1" in text
        for entry in ("Install BOS", "Recover a root VG", "Add OPPs", "Boot copies", "Boot lists"):
            assert entry in text
        shot(app, "maintenance_menu")
        await pilot.press("f1")
        await pilot.pause()
        keys = app.screen.keys_text
        assert "maintenance.install" in keys and "maintenance.bootlists" in keys
        shot(app, "help_maintenance")
        await pilot.press("escape")
        await pilot.pause()
        await pilot.press("escape")
        await pilot.pause()
        assert app.screen is menu


async def test_verify_finds_a_flipped_byte(fabric):
    path, off, _ = leg_bytes(fabric, 2)
    flip(path, off + 4096)
    app = SanbosApp(fabric.root)
    async with app.run_test(size=(80, 24)) as pilot:
        await open_menu(app, pilot, fabric)
        await pilot.press("4")
        await wait_for(app, pilot, ChoiceScreen)
        shot(app, "choice_boot_copies")
        await pilot.press("enter")                  # Verify
        await wait_for(app, pilot, ResultScreen)
        text = app.screen_text()
        assert "FINISHED WITH PROBLEMS" in text
        assert "BAD" in text
        assert app.screen.lines[0].startswith(f"VG {VG}")
        bad = [l for l in app.screen.lines if "BAD" in l]
        assert len(bad) == 1 and fabric.luns[2].wwn in bad[0]
        shot(app, "result_verify")
        await pilot.press("enter")
        await wait_for(app, pilot, MaintenanceScreen)
        await settle(app, pilot)
        assert {d.id: d.boot_copy for d in app.all_disks}[fabric.luns[2].wwn] == "bad"


async def test_repair_restores_the_bad_copy_on_disk(fabric):
    from core import bootcopy
    _, _, good = leg_bytes(fabric, 0)
    path, off, _ = leg_bytes(fabric, 3)
    flip(path, off + 8192)
    assert not bootcopy.verify(VG, members(fabric), check_grub=False).ok
    app = SanbosApp(fabric.root)
    async with app.run_test(size=(80, 24)) as pilot:
        await open_menu(app, pilot, fabric)
        await pilot.press("4")
        await wait_for(app, pilot, ChoiceScreen)
        await pilot.press("down", "enter")          # Repair
        await wait_for(app, pilot, PlanScreen)
        shot(app, "plan_repair")
        await pilot.press("enter")
        await wait_for(app, pilot, ResultScreen)
        assert "DONE" in app.screen_text()
        shot(app, "result_repair")
    assert leg_bytes(fabric, 3)[2] == good           # the bytes on disk are the good copy again
    assert bootcopy.verify(VG, members(fabric), check_grub=False).ok


async def test_add_opp_writes_the_repository(fabric, tmp_path, monkeypatch):
    from core import demoparts, repo
    from core import vg as vgmod
    deb = demoparts.opp_deb(tmp_path / "new", "sanbos-console-test", "2.1",
                            description="an OPP added from the console")
    monkeypatch.chdir(tmp_path)                 # typed relative: the screenshot shows no temp dir
    deb = deb.relative_to(tmp_path)
    app = SanbosApp(fabric.root)
    async with app.run_test(size=(80, 24)) as pilot:
        await open_menu(app, pilot, fabric)
        await pilot.press("3")
        await wait_for(app, pilot, AskTextScreen)
        await pilot.press(*"/no/such.deb", "enter")
        await pilot.pause()
        assert isinstance(app.screen, AskTextScreen) and "No such file" in app.screen_text()
        app.screen.query_one("Input").value = str(deb)
        shot(app, "ask_opp_files")
        await pilot.press("enter")
        await wait_for(app, pilot, PlanScreen)
        assert "sanbos-console-test 2.1" in app.screen_text()
        shot(app, "plan_add_opps")
        await pilot.press("enter")
        await wait_for(app, pilot, ResultScreen)
        assert "added sanbos-console-test 2.1" in app.screen_text()
    with vgmod.open_vg(VG, members(fabric), write=False, allow_exported=True) as vgo:
        names = [e.name for e in repo.toc(vgo).opps]
    assert "sanbos-console-test" in names


async def test_install_bos_onto_target(fabric, monkeypatch):
    import threading

    from core import install
    from core import vg as vgmod
    from core.lvm.scan import scan
    target = fabric.luns[4]
    real_install = install.install
    shot_taken = threading.Event()

    def gated(*args, progress=None, **kwargs):      # the progress screenshot shows the first step
        def report(message, fraction=None):
            progress(message, fraction)
            shot_taken.wait(60)
        return real_install(*args, progress=report, **kwargs)

    monkeypatch.setattr(install, "install", gated)
    app = SanbosApp(fabric.root)
    async with app.run_test(size=(80, 24)) as pilot:
        await open_menu(app, pilot, fabric)
        await pilot.press("1")
        await wait_for(app, pilot, ChoiceScreen)
        assert "sanbos-demo-bos" in app.screen_text()
        shot(app, "choice_bos")
        await pilot.press("enter")                  # the BOS
        await wait_for(app, pilot, ChoiceScreen)
        assert app.screen.multi
        await pilot.press("space")                  # mark the OPP
        shot(app, "choice_opps")
        await pilot.press("f9")
        await wait_for(app, pilot, TargetScreen)
        await settle(app, pilot)
        await pilot.press(*target.wwn[-5:])
        await pilot.pause()
        assert app.screen.disk_list.highlighted.id == target.wwn
        assert "safe" in app.screen_text()
        shot(app, "target_chooser")
        await pilot.press("enter")
        await wait_for(app, pilot, PlanScreen)
        assert "DESTRUCTIVE" in app.screen_text()
        shot(app, "plan_install")
        await pilot.press("enter")
        await wait_for(app, pilot, ConfirmScreen)
        await pilot.press(*target.wwn[:10], "enter")            # only a prefix: refused
        await pilot.pause()
        assert isinstance(app.screen, ConfirmScreen)
        assert "only the start of the ID" in app.screen_text()
        app.screen.query_one("Input").value = fabric.luns[5].wwn  # another disk's ID: refused
        await pilot.press("enter")
        await pilot.pause()
        assert isinstance(app.screen, ConfirmScreen)
        assert "is not the ID of the target" in app.screen_text()
        shot(app, "confirm_refused")
        app.screen.query_one("Input").value = target.wwn
        await pilot.press("enter")
        await wait_for(app, pilot, ProgressScreen)
        while not app.screen.log_lines:
            await pilot.pause(0.05)
        await pilot.pause()
        shot(app, "progress")
        shot_taken.set()
        await wait_for(app, pilot, ResultScreen, timeout=300)
        text = app.screen_text()
        assert "DONE" in text, text
        await shot_result_masked(app, pilot, "result_install", r"(boot loader installed; )\d+\.\d s",
                                 r"\1<duration: differs every run> s")
    res = scan([DiskRef(target.wwn, target.path)])
    assert "rootvg" in res.vgs
    with vgmod.open_vg("rootvg", [DiskRef(target.wwn, target.path)], write=False) as vgo:
        assert {"bootlv", "rootlv"} <= {lv["name"] for lv in vgo.describe()["lvs"]}
        (root_path, root_off, root_len), = vgo.lv_ranges("rootlv")
    # the root file system is clean ext4 with the BOS and the OPP record in it
    if shutil.which("e2fsck") and shutil.which("debugfs"):
        spec = f"{root_path}?offset={root_off}"
        fsck = subprocess.run(["e2fsck", "-fn", spec], capture_output=True, text=True)
        assert fsck.returncode == 0, fsck.stdout + fsck.stderr
        ls = subprocess.run(["debugfs", "-R", "ls -l /var/lib/sanbos/opps", spec],
                            capture_output=True, text=True)
        assert "sanbos-demo-base" in ls.stdout, ls.stdout + ls.stderr
    real_lvm_sees_rootvg(target.path)


def real_lvm_sees_rootvg(image: Path) -> None:
    """Real LVM2 (as root, through a loop device over the LVM partition) lists the new root VG."""
    import os
    if os.geteuid() != 0 or not Path("/dev/loop-control").exists() or not shutil.which("lvm"):
        return
    from conftest import lvm_cmd

    from core import gpt
    from core.disk import Disk
    with Disk(image) as d:
        part = gpt.lvm_partition(d)
    dev = subprocess.run(["losetup", "-f", "--show", "--read-only", "--offset", str(part.start),
                          "--sizelimit", str(part.size), str(image)],
                         check=True, capture_output=True, text=True).stdout.strip()
    try:
        out = lvm_cmd("lvs", "--noheadings", "-o", "vg_name,lv_name", devices=[dev]).stdout
        names = {tuple(line.split()) for line in out.splitlines() if line.strip()}
        assert {("rootvg", "bootlv"), ("rootvg", "rootlv")} <= names, out
        lvm_cmd("vgck", "rootvg", devices=[dev])
    finally:
        subprocess.run(["losetup", "-d", dev], check=False, capture_output=True)


async def test_unsafe_target_is_refused(fabric):
    target = fabric.luns[5]
    with open(target.path, "r+b") as fh:           # an MBR: the disk carries something
        fh.seek(510)
        fh.write(b"\x55\xaa")
    app = SanbosApp(fabric.root)
    async with app.run_test(size=(80, 24)) as pilot:
        await open_menu(app, pilot, fabric)
        await pilot.press("1")
        await wait_for(app, pilot, ChoiceScreen)
        await pilot.press("enter")
        await wait_for(app, pilot, ChoiceScreen)
        await pilot.press("f9")                     # no OPPs: allowed
        await wait_for(app, pilot, TargetScreen)
        await settle(app, pilot)
        await pilot.press(*target.wwn[-5:])
        await pilot.pause()
        assert "UNSAFE" in app.screen_text()
        await pilot.press("enter")
        await pilot.pause()
        assert isinstance(app.screen, TargetScreen)
        assert "is not safe to write" in app.screen_text()
        shot(app, "target_unsafe")
        await pilot.press("escape", "escape")       # clear filter, then back: nothing written
        await wait_for(app, pilot, MaintenanceScreen)
    with open(target.path, "rb") as fh:
        fh.seek(510)
        assert fh.read(2) == b"\x55\xaa"


async def test_cancel_asks_then_stops_at_a_safe_point(fabric, monkeypatch):
    import time

    import core.bootcopy

    calls = []

    def slow_verify(vg_name, disks, *, progress=None, check_grub=True):
        for i in range(3000):         # 5 steps, then the same step until cancelled (a stable log)
            progress(f"reading block {min(i, 5)}", min(i, 5) / 100)
            calls.append(i)
            time.sleep(0.02)
        raise AssertionError("not cancelled")

    monkeypatch.setattr(core.bootcopy, "verify", slow_verify)
    app = SanbosApp(fabric.root)
    async with app.run_test(size=(80, 24)) as pilot:
        await open_menu(app, pilot, fabric)
        await pilot.press("4")
        await wait_for(app, pilot, ChoiceScreen)
        await pilot.press("enter")
        await wait_for(app, pilot, ProgressScreen)
        await asyncio.sleep(0.3)
        await pilot.pause()
        await pilot.press("escape")
        await wait_for(app, pilot, AskScreen, timeout=20)
        shot(app, "cancel_ask")
        await pilot.press("n")                      # no: it keeps running
        await pilot.pause()
        assert isinstance(app.screen, ProgressScreen)
        await pilot.press("escape")
        await wait_for(app, pilot, AskScreen)
        await pilot.press("y")
        await wait_for(app, pilot, ResultScreen)
        assert "CANCELLED" in app.screen_text()
        shot(app, "result_cancelled")
        n = len(calls)
        await asyncio.sleep(0.2)
        assert len(calls) == n < 3000               # the job stopped


async def test_failing_flow_worker_becomes_error_screen(fabric, monkeypatch):
    import core.bootcopy

    def broken(vg_name, disks, *, progress=None, check_grub=True):
        progress("reading copy 1", 0.1)
        raise FormatError(f"VG {vg_name}: bootlv record is corrupt (simulated)")

    monkeypatch.setattr(core.bootcopy, "verify", broken)
    app = SanbosApp(fabric.root)
    async with app.run_test(size=(80, 24)) as pilot:
        await open_menu(app, pilot, fabric)
        await pilot.press("4")
        await wait_for(app, pilot, ChoiceScreen)
        await pilot.press("enter")
        await wait_for(app, pilot, ErrorScreen)
        text = app.screen_text()
        assert "bootlv record is corrupt" in text and "What to do" in text
        assert "Traceback" not in text
        shot(app, "error_flow")
        await pilot.press("enter")
        await wait_for(app, pilot, MaintenanceScreen)
        assert app.is_running


async def test_flow_missing_from_the_engine_says_not_available(fabric, monkeypatch):
    from console.screens import flows
    monkeypatch.setattr(flows.BY_ID["recover"], "needs", ["core.no_such_module:recover"])
    app = SanbosApp(fabric.root)
    async with app.run_test(size=(80, 24)) as pilot:
        await open_menu(app, pilot, fabric)
        assert "not available in this build" in app.screen_text()
        await pilot.press("2")
        await wait_for(app, pilot, ErrorScreen)
        assert "not available in this build" in app.screen_text()
        shot(app, "not_available")
        await pilot.press("escape")
        await wait_for(app, pilot, MaintenanceScreen)


async def test_boot_list_reorder_and_save(fabric, tmp_path):
    from core.registry import Registry
    reg = Registry(tmp_path / "registry.db")
    reg.add_machine("machine-01", "web1", actor="test")
    ids = [l.wwn for l in fabric.luns[:3]]
    reg.set_list("machine-01", "boot", ids, "maintenance", actor="test")
    reg.close()
    app = SanbosApp(fabric.root, registry=tmp_path / "registry.db")
    async with app.run_test(size=(80, 24)) as pilot:
        await open_menu(app, pilot, fabric)
        await pilot.press("5")
        await wait_for(app, pilot, ChoiceScreen)
        assert "machine-01" in app.screen_text()
        await pilot.press("enter")
        await wait_for(app, pilot, MachineScreen)
        await pilot.press("down", "down", "enter")   # boot (maintenance)
        await wait_for(app, pilot, BootListScreen)
        assert ids[0] in app.screen_text()
        await pilot.press("d")                       # first entry one down
        await pilot.pause()
        shot(app, "bootlist")
        await pilot.press("a")                       # add a disk at the end
        await wait_for(app, pilot, TargetScreen)
        await pilot.press(*fabric.luns[3].wwn[-5:], "space", "enter")
        await wait_for(app, pilot, BootListScreen)
        assert fabric.luns[3].wwn in app.screen_text()
        await pilot.press("s")
        await wait_for(app, pilot, MachineScreen)
        await until_text(app, pilot, "Saved the boot (maintenance) list: 4 device(s)")
    reg = Registry(tmp_path / "registry.db")
    try:
        assert [d.id for d in reg.device_list("machine-01", "boot", "maintenance")] == \
            [ids[1], ids[0], ids[2], fabric.luns[3].wwn]
    finally:
        reg.close()


async def test_recover_root_vg_fixes_the_boot_side(fabric):
    """Figure 5: a root disk with a wiped MBR boot code is found, recovered, and its root LV untouched."""
    core_recover = pytest.importorskip("core.recover")
    from core import install
    from core import vg as vgmod
    target = fabric.luns[4]
    install.install(VG, "sanbos-demo-bos", target.wwn, [], fabric=str(fabric.root))
    ref = DiskRef(target.wwn, target.path)

    def rootlv_sha() -> str:
        with vgmod.open_vg("rootvg", [ref], write=False, allow_exported=True) as vgo:
            (path, off, length), = vgo.lv_ranges("rootlv")
        h = hashlib.sha256()
        with open(path, "rb") as fh:
            fh.seek(off)
            left = length
            while left:
                b = fh.read(min(left, 4 * MiB))
                h.update(b)
                left -= len(b)
        return h.hexdigest()

    before = rootlv_sha()
    with open(target.path, "r+b") as fh:               # wipe the MBR boot code (GRUB boot.img)
        fh.write(b"\0" * 440)
    defects = core_recover.check_rootvg(target.wwn, fabric=str(fabric.root))
    assert defects and any(d.kind == "mbr" for d in defects)
    app = SanbosApp(fabric.root)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(app, pilot)
        assert target.wwn not in [d.id for d in app.boot_menu.disk_list.disks]   # a root VG is no boot device
        await open_menu(app, pilot, fabric)
        await pilot.press("2")
        await wait_for(app, pilot, TargetScreen)
        assert app.screen.disk_list.disks[0].id == target.wwn
        shot(app, "target_recover")
        await pilot.press("enter")
        await wait_for(app, pilot, PlanScreen)
        assert "defect: mbr" in app.screen_text()
        shot(app, "plan_recover")
        await pilot.press("enter")
        await wait_for(app, pilot, ConfirmScreen)
        app.screen.query_one("Input").value = target.wwn
        await pilot.press("enter")
        await wait_for(app, pilot, ResultScreen, timeout=300)
        text = app.screen_text()
        assert "DONE" in text and "recovered root VG rootvg" in text, text
        shot(app, "result_recover")
    assert core_recover.check_rootvg(target.wwn, fabric=str(fabric.root)) == []
    assert rootlv_sha() == before                       # user data untouched


async def test_cancel_a_real_install_leaves_the_install_vg_intact(fabric, monkeypatch):
    """Escape during a real BOS install: asks, stops at the next safe point; the install VG is
    untouched (it is only read) and the target can be installed again afterwards.

    The real install runs; its first progress report waits until the operator has answered
    the question, so a fast machine cannot finish the install before the cancel lands."""
    import threading

    from core import bootcopy, install
    from core import vg as vgmod
    target = fabric.luns[5]
    real_install = install.install
    answered = threading.Event()

    def gated(*args, progress=None, **kwargs):
        def report(message, fraction=None):
            progress(message, fraction)
            answered.wait(60)
        return real_install(*args, progress=report, **kwargs)

    monkeypatch.setattr(install, "install", gated)
    app = SanbosApp(fabric.root)
    async with app.run_test(size=(80, 24)) as pilot:
        await open_menu(app, pilot, fabric)
        await pilot.press("1")
        await wait_for(app, pilot, ChoiceScreen)
        await pilot.press("enter")
        await wait_for(app, pilot, ChoiceScreen)
        await pilot.press("f9")
        await wait_for(app, pilot, TargetScreen)
        await settle(app, pilot)
        await pilot.press(*target.wwn[-5:], "enter")
        await wait_for(app, pilot, PlanScreen)
        await pilot.press("enter")
        await wait_for(app, pilot, ConfirmScreen)
        app.screen.query_one("Input").value = target.wwn
        await pilot.press("enter")
        await wait_for(app, pilot, ProgressScreen)
        await pilot.press("escape")
        await wait_for(app, pilot, AskScreen)
        await pilot.press("y")
        await pilot.pause()
        answered.set()
        await wait_for(app, pilot, ResultScreen, timeout=300)
        text = app.screen_text()
        assert "CANCELLED" in text, text
        assert "stopped at a safe point" in text
    assert bootcopy.verify(VG, members(fabric), check_grub=False).ok
    report = vgmod.check(VG, members(fabric))
    assert report.clean, str(report)
    res = real_install(VG, "sanbos-demo-bos", target.wwn, [], fabric=str(fabric.root),
                       force_ids=[target.wwn])           # a half-written target is re-installable
    assert "installed" in str(res)


async def test_replace_boot_image_on_every_copy(fabric, golden, tmp_path):
    from core import bootcopy, bootimage
    new = tmp_path / "new-boot.img"
    info = bootimage.demo(new, cmdline="console=ttyS0 sanbos.test=replaced")
    app = SanbosApp(fabric.root)
    async with app.run_test(size=(80, 24)) as pilot:
        await open_menu(app, pilot, fabric)
        await pilot.press("4")
        await wait_for(app, pilot, ChoiceScreen)
        await pilot.press("down", "down", "down", "enter")      # Replace the boot image
        await wait_for(app, pilot, AskTextScreen)
        app.screen.query_one("Input").value = str(new)
        await pilot.press("enter")
        await wait_for(app, pilot, PlanScreen)
        assert "DESTRUCTIVE" in app.screen_text()
        await pilot.press("enter")
        await wait_for(app, pilot, ConfirmScreen)
        await pilot.press(*"wrongvg", "enter")
        await pilot.pause()
        assert isinstance(app.screen, ConfirmScreen)            # a wrong VG name is refused
        app.screen.query_one("Input").value = VG
        await pilot.press("enter")
        await wait_for(app, pilot, ResultScreen, timeout=300)
        assert "DONE" in app.screen_text()
    report = bootcopy.verify(VG, members(fabric), check_grub=False)
    assert report.ok and len(report.copies) == 4
    assert report.image_sha256 == info.sha256


async def test_mirror_boot_image_onto_another_disk(fabric):
    from core import bootcopy
    from core import vg as vgmod
    extra = fabric.luns[4]
    refs = members(fabric) + [DiskRef(extra.wwn, extra.path)]
    vgmod.extend(VG, members(fabric), [DiskRef(extra.wwn, extra.path)])
    app = SanbosApp(fabric.root)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(app, pilot)
        await pilot.press("tab")                     # a PV without a copy is not a boot device yet
        await pilot.pause()
        assert extra.wwn in [d.id for d in app.boot_menu.disk_list.disks]
        await pilot.press("tab")
        await pilot.pause()
        await open_menu(app, pilot, fabric)
        await pilot.press("4")
        await wait_for(app, pilot, ChoiceScreen)
        await pilot.press("down", "down", "enter")   # Mirror onto more disks
        await wait_for(app, pilot, TargetScreen)
        assert [d.id for d in app.screen.disk_list.disks] == [extra.wwn]
        await pilot.press("space")
        shot(app, "target_mirror")
        await pilot.press("enter")
        await wait_for(app, pilot, PlanScreen)
        await pilot.press("enter")
        await wait_for(app, pilot, ConfirmScreen)             # GRUB goes onto the new disk: typed ID
        app.screen.query_one("Input").value = extra.wwn
        await pilot.press("enter")
        await wait_for(app, pilot, ResultScreen, timeout=300)
        assert "DONE" in app.screen_text(), app.screen_text()
    report = bootcopy.verify(VG, refs, check_grub=False)
    assert report.ok and extra.wwn in [c.disk_id for c in report.copies]
