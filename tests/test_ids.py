"""core.ids.select: full ID or unique prefix; ambiguous and unknown prefixes list candidates."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from core.errors import AmbiguousError, NotFoundError
from core.ids import select


@dataclass
class D:
    id: str
    pv: str = ""


DISKS = [
    D("naa.600a0b80aa000001", "FxTyLw-aqp7-p7iN-gkq6-zTLy-4Hnh-Y9r7Hy"),
    D("naa.600a0b80aa000002"),
    D("naa.600a0b80bb000001"),
    D("serial:SB123"),
    D("naa.600a0b80aa00000"),      # a full ID that is also a prefix of two others
]


def keys(d: D) -> list[str]:
    return [d.id, d.pv]


def test_full_id_and_unique_prefix() -> None:
    assert select(DISKS, "naa.600a0b80aa000002", keys) is DISKS[1]
    assert select(DISKS, "naa.600a0b80b", keys) is DISKS[2]
    assert select(DISKS, "serial:sb", keys) is DISKS[3]          # case-insensitive
    assert select(DISKS, "  NAA.600A0B80BB  ", keys) is DISKS[2]


def test_exact_match_beats_prefix() -> None:
    assert select(DISKS, "naa.600a0b80aa00000", keys) is DISKS[4]


def test_pv_uuid_with_or_without_dashes() -> None:
    assert select(DISKS, "FxTyLw-aqp7-p7iN-gkq6-zTLy-4Hnh-Y9r7Hy", keys) is DISKS[0]
    assert select(DISKS, "FxTyLwaqp7p7iNgkq6zTLy4HnhY9r7Hy", keys) is DISKS[0]
    assert select(DISKS, "fxtylw-aqp7", keys) is DISKS[0]


def test_ambiguous_lists_candidates() -> None:
    with pytest.raises(AmbiguousError) as e:
        select(DISKS, "naa.600a0b80a", keys)
    msg = str(e.value)
    assert msg.startswith("disk ID 'naa.600a0b80a' is ambiguous: it matches ")
    for d in (DISKS[0], DISKS[1], DISKS[4]):
        assert d.id in msg
    assert DISKS[2].id not in msg and "type more of the ID" in msg


def test_unknown_lists_known() -> None:
    with pytest.raises(NotFoundError) as e:
        select(DISKS, "naa.7", keys, what="disk")
    assert "no disk matches 'naa.7'; known: naa.600a0b80aa000001" in str(e.value)
    with pytest.raises(NotFoundError, match="empty disk ID"):
        select(DISKS, " ", keys)
    with pytest.raises(NotFoundError, match="known: none"):
        select([], "x", keys)


def test_long_candidate_lists_are_cut() -> None:
    many = [D(f"naa.{i:032x}") for i in range(20)]
    with pytest.raises(AmbiguousError, match=r"\(and 12 more\)"):
        select(many, "naa.0", keys)
    with pytest.raises(NotFoundError, match=r"\(and 12 more\)"):
        select(many, "zzz", keys)


def test_inventory_find_uses_every_key(make_fabric) -> None:
    from core import inventory
    f = make_fabric(disks=3)
    disks = inventory.list_disks(f.root)
    lun = f.luns[1]
    assert inventory.find(disks, lun.wwn).path == lun.path
    assert inventory.find(disks, lun.serial).id == lun.wwn
    assert inventory.find(disks, str(lun.path)).id == lun.wwn
    got = inventory.resolve([f.luns[2].wwn, f.luns[0].wwn], f.root)
    assert [d.id for d in got] == [f.luns[2].wwn, f.luns[0].wwn]
