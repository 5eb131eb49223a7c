"""Selecting objects by unique ID or unique prefix."""

from __future__ import annotations

from typing import Callable, Iterable, Sequence, TypeVar

from .errors import AmbiguousError, NotFoundError

T = TypeVar("T")


def _norm(s: str) -> str:
    return s.lower().replace("-", "").replace(":", "")


def select(items: Iterable[T], wanted: str, keys: Callable[[T], Sequence[str]],
           what: str = "disk", describe: Callable[[T], str] | None = None) -> T:
    """Return the one item whose keys equal ``wanted`` or start with it.

    Comparison ignores case, dashes and colons (so PV UUIDs match with or
    without dashes).  An exact match wins over prefix matches.  Unknown and
    ambiguous prefixes raise errors that list the candidates.
    """
    items = list(items)
    w = _norm(wanted.strip())
    if not w:
        raise NotFoundError(f"empty {what} ID")
    describe = describe or (lambda it: keys(it)[0])
    exact = [it for it in items if any(_norm(k) == w for k in keys(it) if k)]
    if len(exact) == 1:
        return exact[0]
    pref = exact or [it for it in items if any(_norm(k).startswith(w) for k in keys(it) if k)]
    if len(pref) == 1:
        return pref[0]
    if not pref:
        shown = ", ".join(describe(it) for it in items[:8])
        more = f" (and {len(items) - 8} more)" if len(items) > 8 else ""
        raise NotFoundError(f"no {what} matches {wanted!r}; known: {shown or 'none'}{more}")
    shown = ", ".join(describe(it) for it in pref[:8])
    more = f" (and {len(pref) - 8} more)" if len(pref) > 8 else ""
    raise AmbiguousError(f"{what} ID {wanted!r} is ambiguous: it matches {shown}{more}; type more of the ID")
