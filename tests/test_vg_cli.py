"""``sanbos vg`` / ``sanbos lv`` end to end on a demo fabric."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys

import pytest

from console.cli import main
from core.disk import Disk
from lvm_helpers import refs_of

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run(capsys, *argv) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def digest(refs) -> list[str]:
    return [hashlib.sha256(open(r.path, "rb").read()).hexdigest() for r in refs]


@pytest.fixture
def fab(make_fabric):
    f = make_fabric(disks=4, size=128 << 20)
    return str(f.root), refs_of(f)


def test_vg_lifecycle(capsys, fab):
    root, refs = fab
    ids = [r.id for r in refs]
    before = digest(refs)
    code, out, _ = run(capsys, "vg", "create", "instvg", "--disk", ids[0][:28], "--disk", ids[1], "--dry-run",
                       "--fabric", root)
    assert code == 0 and "dry run" in out and ids[0] in out
    assert digest(refs) == before

    assert run(capsys, "vg", "create", "instvg", "--disk", ids[0], "--disk", ids[1], "--fabric", root)[0] == 0
    code, out, _ = run(capsys, "lv", "create", "instvg", "bootlv", "--size", "8M", "--type", "raid1",
                       "--fabric", root)
    assert code == 0
    assert run(capsys, "lv", "create", "instvg", "instlv", "--size", "40M", "--disk", ids[1],
               "--fabric", root)[0] == 0
    code, out, _ = run(capsys, "vg", "show", "instvg", "--json", "--fabric", root)
    d = json.loads(out)
    assert d["seqno"] == 3 and {p["disk"] for p in d["pvs"]} == set(ids[:2])
    inst = [l for l in d["lvs"] if l["name"] == "instlv"][0]
    assert inst["segments"][0]["pe_ranges"] == [f"{ids[1]}:3-12"]
    code, out, _ = run(capsys, "vg", "list", "--fabric", root)
    assert "instvg" in out
    code, _, err = run(capsys, "vg", "create", "instvg", "--disk", ids[3], "--fabric", root)
    assert code == 1 and "already exists" in err
    code, out, _ = run(capsys, "lv", "list", "-a", "--fabric", root)
    assert "bootlv_rimage_1" in out and "instlv" in out

    # export / read-only import (writes nothing) / import
    assert run(capsys, "vg", "export", "instvg", "--fabric", root)[0] == 0
    code, _, err = run(capsys, "lv", "create", "instvg", "x", "--size", "4M", "--fabric", root)
    assert code == 1 and "exported" in err and "\n" == err[-1] and err.count("\n") == 1
    snap = digest(refs)
    code, out, _ = run(capsys, "vg", "import", "instvg", "--readonly", "--fabric", root)
    assert code == 0 and "read-only" in out and digest(refs) == snap
    assert run(capsys, "vg", "import", "instvg", "--fabric", root)[0] == 0

    # extend, add a boot leg, remove a leg, reduce
    assert run(capsys, "vg", "extend", "instvg", "--disk", ids[2], "--fabric", root)[0] == 0
    assert run(capsys, "lv", "add-leg", "instvg", "bootlv", "--disk", ids[2], "--fabric", root)[0] == 0
    code, out, _ = run(capsys, "vg", "show", "instvg", "--json", "--fabric", root)
    assert [l for l in json.loads(out)["lvs"] if l["name"] == "bootlv"][0]["legs"] == 3
    assert run(capsys, "lv", "remove-leg", "instvg", "bootlv", "--disk", ids[2], "--fabric", root)[0] == 0
    code, _, err = run(capsys, "vg", "reduce", "instvg", "--disk", ids[1], "--fabric", root)
    assert code == 1 and "in use" in err and ids[1] in err
    assert run(capsys, "vg", "reduce", "instvg", "--disk", ids[2], "--fabric", root)[0] == 0
    code, out, _ = run(capsys, "vg", "check", "instvg", "--fabric", root)
    assert code == 0 and "clean" in out
    assert run(capsys, "lv", "remove", "instvg", "instlv", "--fabric", root)[0] == 0
    code, out, _ = run(capsys, "vg", "show", "instvg", "--fabric", root)
    assert "instlv" not in out and "bootlv" in out


def test_refuses_non_blank_disk_unless_forced(capsys, fab):
    root, refs = fab
    subprocess.run(["mke2fs", "-q", "-F", "-t", "ext4", str(refs[3].path)], check=True)   # a file system
    code, _, err = run(capsys, "vg", "create", "v", "--disk", refs[3].id, "--fabric", root)
    assert code == 1 and refs[3].id in err
    code, _, err = run(capsys, "vg", "create", "v", "--disk", refs[3].id, "--force", refs[3].id, "--fabric", root)
    assert code == 0, err


def test_bad_names_and_unknown_vg(capsys, fab):
    root, refs = fab
    code, _, err = run(capsys, "vg", "create", "--disk", refs[0].id, "--fabric", root, "--", "-bad")
    assert code == 2 and "-bad" in err
    code, _, err = run(capsys, "vg", "create", "a/b", "--disk", refs[0].id, "--fabric", root)
    assert code == 2 and "invalid" in err
    code, _, err = run(capsys, "vg", "show", "nosuch", "--fabric", root)
    assert code == 1 and "no VG named nosuch" in err


def test_writer_lock_refusal_names_holder(capsys, fab):
    root, refs = fab
    assert run(capsys, "vg", "create", "lockvg", "--disk", refs[0].id, "--fabric", root)[0] == 0
    env = dict(os.environ, PYTHONPATH=ROOT)
    holder = Disk(refs[0].path, lock="shared")      # a reader (this process)
    try:
        r = subprocess.run([sys.executable, "-m", "console.cli", "vg", "change", "lockvg", "--addtag", "x",
                            "--fabric", root], capture_output=True, text=True, env=env, cwd=ROOT)
        assert r.returncode == 1 and str(os.getpid()) in r.stderr and refs[0].id in r.stderr, r.stderr
        # readers share
        r = subprocess.run([sys.executable, "-m", "console.cli", "vg", "import", "lockvg", "--readonly",
                            "--fabric", root], capture_output=True, text=True, env=env, cwd=ROOT)
        assert r.returncode == 0, r.stderr
    finally:
        holder.close()


def test_every_dry_run_writes_nothing(fab):
    from core import vg as vgops
    root, refs = fab
    vgops.create("dryvg", refs[:3])
    vgops.lv_create("dryvg", refs, "boot", "8M", type="raid1", pvs=[r.id for r in refs[:2]])
    vgops.lv_create("dryvg", refs, "data", "8M")
    before = digest(refs)
    plans = [
        vgops.create("other", refs[3:4], dry_run=True),
        vgops.extend("dryvg", refs, refs[3:4], dry_run=True),
        vgops.reduce("dryvg", refs, [refs[2].id], dry_run=True),
        vgops.lv_create("dryvg", refs, "x", "4M", dry_run=True),
        vgops.raid1_add_leg("dryvg", refs, "boot", refs[2].id, dry_run=True),
        vgops.check("dryvg", refs, repair=True, dry_run=True),
        vgops.lv_create("dryvg", refs, "y", "4M", type="raid1", pvs=[r.id for r in refs[:2]], dry_run=True),
        vgops.lv_remove("dryvg", refs, "data", dry_run=True),
        vgops.raid1_remove_leg("dryvg", refs, "boot", refs[0].id, dry_run=True),
        vgops.change_tags("dryvg", refs, add=["t"], dry_run=True),
        vgops.export("dryvg", refs, dry_run=True),
    ]
    for p in plans:
        if isinstance(p, vgops.CheckReport):      # a clean VG: nothing to repair
            assert p.clean
            continue
        assert isinstance(p, vgops.Plan) and "dry run" in str(p), p
    assert digest(refs) == before


def test_foreign_system_id_refused_until_imported(fab):
    from core import vg as vgops
    root, refs = fab
    vgops.create("sysvg", refs[:1])
    with vgops.open_vg("sysvg", refs, write=True) as g:      # as another host would leave it
        g.vg.system_id = "otherhost"
        g.commit("set system id")
    import pytest as _p
    from core.errors import LVMError
    with _p.raises(LVMError, match="system ID 'otherhost'"):
        vgops.lv_create("sysvg", refs, "x", "4M")
    vgops.import_("sysvg", refs)
    with vgops.open_vg("sysvg", refs, write=False) as g:
        assert g.vg.system_id is None
    vgops.lv_create("sysvg", refs, "x", "4M")
