"""Crash consistency: a writer killed at any instant during a commit leaves the
VG readable at the old or the new seqno, by us and by real LVM2."""

from __future__ import annotations

import os
import random
import signal
import time

from conftest import lvm_cmd, require_root, require_tool
from lvm_helpers import image

from core import vg as vgops
from core.disk import DiskRef
from core.lvm import commit as lvmcommit
from core.lvm.scan import scan

TRIALS = 200
WRITES_PER_COMMIT = 9      # 3 PVs x (text, precommit, commit)


def _child(refs, trial: int, fault_after: int | None) -> None:
    """In a forked child: one commit (seqno +1), then exit."""
    try:
        if fault_after is not None:
            os.environ[lvmcommit._FAULT_ENV] = str(fault_after)
        lvmcommit._writes = 0
        vgops.change_tags("crashvg", refs, add=[f"t{trial}"])
        os._exit(0)
    except BaseException:
        os._exit(3)


def test_kill_during_commit_leaves_old_or_new(tmp_path, loopdev):
    require_root()
    require_tool("lvm")
    refs = [DiskRef(f"naa.crash{i}", image(tmp_path / f"c{i}.img", 48 << 20)) for i in range(3)]
    vgops.create("crashvg", refs, layout="whole")
    vgops.lv_create("crashvg", refs, "data", "8M")
    devs = [loopdev(r.path) for r in refs]
    rnd = random.Random(int(os.environ.get("SANBOS_CRASH_SEED", "4")))

    # how long does one commit take here? (random kill instants fall inside it)
    t0 = time.perf_counter()
    vgops.change_tags("crashvg", refs, add=["warmup"])
    commit_time = time.perf_counter() - t0

    seq = scan(refs).vgs["crashvg"].seqno
    outcomes = {"old": 0, "new": 0}
    start = time.monotonic()
    for trial in range(TRIALS):
        fault = trial % (WRITES_PER_COMMIT + 1) if trial % 2 == 0 else None
        pid = os.fork()
        if pid == 0:
            _child(refs, trial, fault)
        if fault is None:
            time.sleep(rnd.uniform(0, commit_time * 1.5))
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        _, status = os.waitpid(pid, 0)
        if os.WIFEXITED(status):
            assert os.WEXITSTATUS(status) in (0, 99), f"trial {trial}: writer failed with {os.WEXITSTATUS(status)}"

        res = scan(refs)
        info = res.vgs.get("crashvg")
        assert info is not None, f"trial {trial}: VG not found; {res.problems}"
        assert info.seqno in (seq, seq + 1), f"trial {trial}: seqno {info.seqno}, expected {seq} or {seq + 1}"
        assert not info.corrupt and not info.missing, (trial, info.corrupt, info.missing)
        tags = info.vg.extra.get("tags", [])
        assert (f"t{trial}" in tags) == (info.seqno == seq + 1)
        real = lvm_cmd("vgs", "--noheadings", "-o", "seqno,lv_count", "crashvg", devices=devs)
        rseq, rlv = real.stdout.split()
        assert int(rseq) == info.seqno, f"trial {trial}: LVM2 sees seqno {rseq}, we see {info.seqno}"
        assert int(rlv) == 1
        outcomes["new" if info.seqno == seq + 1 else "old"] += 1
        seq = info.seqno
    elapsed = time.monotonic() - start
    # both outcomes must have happened, else the kills were not during commits
    assert outcomes["old"] > 10 and outcomes["new"] > 10, outcomes
    print(f"{TRIALS} kill trials in {elapsed:.1f}s: {outcomes}")
    # the VG is still fully usable afterwards (stale copies get caught up)
    vgops.check("crashvg", refs, repair=True)
    ck = lvm_cmd("vgck", "crashvg", devices=devs)
    assert "inconsistent" not in (ck.stdout + ck.stderr).lower()
