"""Many machines at once (seed 0058): eight QEMU machines boot concurrently from
the same install VG, exported read-only over NBD on 127.0.0.1; meanwhile an
exclusive writer (``opp add``) is refused with a message naming the holders
(the qemu-nbd processes); once they stop, it succeeds."""

from __future__ import annotations

import re
import time

import pytest

from core import demoparts, inventory, repo, vm
from core.disk import lock_holders
from core.errors import DiskBusyError
from core.install import install_vg_disks

from flowhelp import BOOT_OK, demo_fabric, machine, require_qemu

pytestmark = [pytest.mark.qemu, pytest.mark.slow]

N = 8


@pytest.fixture(scope="module")
def fabric(tmp_path_factory):
    require_qemu()
    return demo_fabric(tmp_path_factory.mktemp("many") / "fabric", disks=3, targets=0)


def test_eight_machines_then_writer(fabric, tmp_path):
    d = [l.wwn for l in fabric.luns[:3]]
    regf = tmp_path / "reg.db"
    for i in range(N):
        k = i % 3
        machine(regf, f"m{i}", "maintenance", d[k:] + d[:k])   # rotate: each boots from "its" disk first
    members = [x.ref for x in install_vg_disks("instvg", inventory.list_disks(fabric.root))]
    deb = demoparts.opp_deb(tmp_path / "debs", "sanbos-demo-new", "1.0")
    running: list[vm.RunningMachine] = []
    t0 = time.monotonic()
    try:
        for i in range(N):
            running.append(vm.start_machine(f"m{i}", "maintenance", fabric=fabric.root, registry=regf,
                                            serial="log", work_dir=tmp_path / f"vm{i}", memory=192))
        nbd_pids = sorted(p for r in running for p in (e.pid for e in r.exports.values()))
        assert len(nbd_pids) == 3 * N
        # every install-VG disk is held (shared) by one qemu-nbd per machine
        for lun in fabric.luns[:3]:
            held = set(lock_holders(lun.path))
            assert held >= {r.exports[lun.wwn].pid for r in running}
        # the writer is refused while they read, with the holders named
        with pytest.raises(DiskBusyError) as ei:
            repo.add_opps("instvg", members, [deb])
        msg = str(ei.value)
        assert "qemu-nbd" in msg and re.search(r"held by \d+ \(qemu-nbd\)", msg)
        assert any(str(p) in msg for p in nbd_pids)
        copies = []
        for i, r in enumerate(running):
            console = r.wait_for(BOOT_OK, timeout=900)
            copies.append(re.search(BOOT_OK, console).group(1))
        elapsed = time.monotonic() - t0
        print(f"{N} machines reached the banner in {elapsed:.1f} s")
        assert copies == [d[i % 3] for i in range(N)]
    finally:
        for r in running:
            r.stop()
    # all stopped (by PID): no holders left, and the writer now succeeds
    for lun in fabric.luns[:3]:
        assert lock_holders(lun.path) == []
    added = repo.add_opps("instvg", members, [deb])
    assert [e.name for e in added] == ["sanbos-demo-new"]
