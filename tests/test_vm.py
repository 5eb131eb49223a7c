"""core.vm without booting: the plan from the registry, and lock conflicts
reported with the holder named, nothing left running."""

from __future__ import annotations

import os
import subprocess
import time

import pytest

from core import vm
from core.errors import DiskBusyError, NotFoundError

from flowhelp import machine, require_qemu


@pytest.fixture
def fabric(make_fabric):
    require_qemu()
    return make_fabric(disks=3, size=64 << 20)


def _holder(path, mode: str):
    """Another process holding a flock on ``path`` (it prints ok once it has it)."""
    import sys
    op = "LOCK_EX" if mode == "exclusive" else "LOCK_SH"
    code = (f"import fcntl, time; f = open({str(path)!r}); fcntl.flock(f, fcntl.{op}); "
            "print('ok', flush=True); time.sleep(60)")
    p = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert p.stdout.readline().strip() == "ok"
    return p


def test_plan_follows_the_boot_list(fabric, tmp_path):
    regf = tmp_path / "reg.db"
    ids = [l.wwn for l in fabric.luns]
    machine(regf, "m", "maintenance", [ids[2], ids[0]], [ids[1]])
    plan = vm.plan_machine("m", "maintenance", fabric=fabric.root, registry=regf)
    assert [(d.id, d.bootindex, d.writable) for d in plan.drives] == [
        (ids[2], 1, False), (ids[0], 2, False), (ids[1], None, True)]
    assert [d.serial for d in plan.drives] == [fabric.luns[2].serial, fabric.luns[0].serial, fabric.luns[1].serial]
    cmd = vm.qemu_command(plan, {d.id: vm.NbdExport(d, f"lun{i}", tmp_path) for i, d in enumerate(plan.drives)},
                          serial="log", serial_log=tmp_path / "s.log")
    text = " ".join(cmd)
    assert "nbd://127.0.0.1:" in text and "readonly=on" in text and "bootindex=1" in text
    assert f"serial={fabric.luns[2].serial}" in text and "-accel tcg" in text


def test_unknown_disk_and_empty_list(fabric, tmp_path):
    regf = tmp_path / "reg.db"
    machine(regf, "m", "normal", ["naa.600a0b8000000000000000000000beef"])
    with pytest.raises(NotFoundError, match="naa.600a0b8000000000000000000000beef"):
        vm.plan_machine("m", "normal", fabric=fabric.root, registry=regf)
    with pytest.raises(vm.VMError, match="maintenance boot list is empty"):
        vm.plan_machine("m", "maintenance", fabric=fabric.root, registry=regf)


@pytest.mark.qemu
def test_busy_disks_are_refused_naming_the_holder(fabric, tmp_path):
    regf = tmp_path / "reg.db"
    ids = [l.wwn for l in fabric.luns]
    machine(regf, "m", "normal", [ids[0]], [ids[1]])
    # a writer holds the shared (NBD) disk: qemu-nbd cannot take its shared lock
    h = _holder(fabric.luns[0].path, "exclusive")
    try:
        with pytest.raises(DiskBusyError, match=rf"{ids[0]}: busy.*held by {h.pid} \(python"):
            vm.start_machine("m", "normal", fabric=fabric.root, registry=regf, work_dir=tmp_path / "a")
    finally:
        h.kill()
        h.wait()
    # a reader holds the machine's own (read-write) disk: QEMU cannot take its exclusive lock
    h = _holder(fabric.luns[1].path, "shared")
    try:
        with pytest.raises(DiskBusyError, match=rf"{ids[1]}: busy.*held by {h.pid} \(python"):
            vm.start_machine("m", "normal", fabric=fabric.root, registry=regf, work_dir=tmp_path / "b")
    finally:
        h.kill()
        h.wait()
    # nothing of ours is left holding the disks
    from core.disk import lock_holders
    assert lock_holders(fabric.luns[0].path) == [] and lock_holders(fabric.luns[1].path) == []
