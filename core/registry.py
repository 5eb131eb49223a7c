"""The SAN boot device registry: machines, boot types, device lists, admins, audit.

One SQLite file (WAL mode) holds, for every machine (identified by a unique
ID such as its WWN or system UUID):

- its **boot type**: ``normal``, ``install`` or ``maintenance``;
- its **boot lists**, one per boot mode (the seed's paragraph 0040: separate
  lists for normal, install and maintenance boot devices), each an ordered
  failover list like AIX ``bootlist -m MODE``;
- its four other ordered device lists: ``rootvg``, ``primary``,
  ``secondary`` and ``nonessential``.

A list entry is a disk unique ID (``core.ids`` style: WWN, ``serial:...``,
``path:...``) with an optional boot copy and optional ``key=value``
attributes (AIX ``blv=``/``pathid=`` style).  The registry also holds the
web administrators (passwords as salted scrypt hashes) and an audit log of
every change, written in the same transaction as the change itself.

The firmware query ("which devices for boot?") is :meth:`Registry.query`;
the console shows a machine with :meth:`Registry.machine` (a
:class:`Machine` with ``.lists``).  The bootlist text format
(:func:`format_bootlist` / :func:`parse_bootlist`) is the one AIX
``bootlist -o`` prints and ``bootlist -f FILE`` reads: one device per line,
then its attributes::

    naa.600a0b8000112233445566778899aabb copy=bootlv_rimage_0 pathid=0
    naa.600a0b80001122334455667788990011

No web code here: ``console/web`` and the CLI both call this module.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import re
import secrets
import sqlite3
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Sequence

from .errors import AmbiguousError, NotFoundError, SanbosError, UsageError
from .ids import select

#: boot types a machine can have, and the modes a boot list exists for
BOOT_TYPES = ("normal", "install", "maintenance")
#: the device lists the firmware can ask for, in display order
LISTS = ("boot", "rootvg", "primary", "secondary", "nonessential")
#: lists that are per machine (not per boot mode)
PLAIN_LISTS = LISTS[1:]
#: accepted spellings of list names in queries
LIST_ALIASES = {"non-essential": "nonessential", "non_essential": "nonessential",
                "bootlist": "boot"}

DEFAULT_PATH = "/var/lib/sanbos/registry.db"
MAX_LIST = 256
MAX_NAME = 200

_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:+-]{0,127}$")
_DEV_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:/+@-]{0,254}$")
_ATTR_KEY_RE = re.compile(r"^[a-z][a-z0-9_]{0,31}$")
_ATTR_VAL_RE = re.compile(r"^[A-Za-z0-9._:/+@,-]{1,128}$")

# scrypt: N=2**14, r=8, p=1 (16 MiB, ~50 ms per try); see hash_password
_SCRYPT_N, _SCRYPT_R, _SCRYPT_P = 2 ** 14, 8, 1


class RegistryError(SanbosError):
    """The registry file cannot be opened, migrated or written."""


class ConflictError(RegistryError):
    """The change conflicts with what is stored (exists already, list changed)."""


class UnknownDiskError(NotFoundError):
    """A device list names a disk the inventory does not know."""


class AuthError(RegistryError):
    """Wrong administrator name or password."""


def default_path() -> str:
    """``$SANBOS_REGISTRY`` or ``/var/lib/sanbos/registry.db``."""
    return os.environ.get("SANBOS_REGISTRY") or DEFAULT_PATH


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


# ----------------------------------------------------------------------------
# values


@dataclass
class Device:
    """One entry of a device list: a disk unique ID, its boot copy, attributes."""

    id: str
    copy: str | None = None
    attrs: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "copy": self.copy, "attrs": dict(self.attrs)}

    @classmethod
    def from_any(cls, value: "Device | str | dict[str, Any]") -> "Device":
        if isinstance(value, Device):
            return Device(value.id, value.copy, dict(value.attrs))
        if isinstance(value, str):
            return cls(value)
        if isinstance(value, dict):
            if not isinstance(value.get("id"), str):
                raise UsageError("a device entry needs an \"id\" (the disk's unique ID)")
            attrs = value.get("attrs") or {}
            if not isinstance(attrs, dict) or not all(isinstance(k, str) and isinstance(v, (str, int))
                                                      for k, v in attrs.items()):
                raise UsageError(f"device {value['id']!r}: \"attrs\" must map names to strings")
            copy = value.get("copy")
            if copy is not None and not isinstance(copy, str):
                raise UsageError(f"device {value['id']!r}: \"copy\" must be a string")
            return cls(value["id"], copy or None, {k: str(v) for k, v in attrs.items()})
        raise UsageError(f"not a device entry: {value!r}")

    def line(self) -> str:
        """This entry as one ``bootlist -o`` line."""
        parts = [self.id]
        if self.copy:
            parts.append(f"copy={self.copy}")
        parts += [f"{k}={v}" for k, v in self.attrs.items()]
        return " ".join(parts)


@dataclass
class Machine:
    """A machine with its boot type and every device list."""

    id: str
    name: str
    boot_type: str
    created: str
    updated: str
    #: ``{"boot": {"normal": [...], "install": [...], "maintenance": [...]},
    #: "rootvg": [...], "primary": [...], "secondary": [...], "nonessential": [...]}``
    lists: dict[str, Any] = field(default_factory=dict)

    def boot_list(self, mode: str | None = None) -> list[Device]:
        return self.lists["boot"][mode or self.boot_type]

    def to_dict(self) -> dict[str, Any]:
        def devs(ds: list[Device]) -> list[dict[str, Any]]:
            return [d.to_dict() for d in ds]
        return {"id": self.id, "name": self.name, "boot_type": self.boot_type,
                "created": self.created, "updated": self.updated,
                "lists": {"boot": {m: devs(self.lists["boot"][m]) for m in BOOT_TYPES},
                          **{l: devs(self.lists[l]) for l in PLAIN_LISTS}}}


@dataclass
class MachineSummary:
    id: str
    name: str
    boot_type: str
    updated: str

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "name": self.name, "boot_type": self.boot_type, "updated": self.updated}


@dataclass
class Query:
    """The answer to a firmware query: one ordered device list."""

    machine: str
    name: str
    list: str
    boot_type: str | None     # the mode of a boot list; None for the plain lists
    devices: list[Device]

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"machine": self.machine, "name": self.name, "list": self.list}
        if self.boot_type is not None:
            d["boot_type"] = self.boot_type
        d["devices"] = [dict(position=i + 1, **dev.to_dict()) for i, dev in enumerate(self.devices)]
        return d


@dataclass
class AuditEntry:
    id: int
    at: str
    actor: str
    action: str
    target: str
    before: Any
    after: Any

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "at": self.at, "actor": self.actor, "action": self.action,
                "target": self.target, "before": self.before, "after": self.after}


@dataclass
class Admin:
    name: str
    created: str
    epoch: int            # bumped on password change; sessions of an older epoch end


# ----------------------------------------------------------------------------
# validation and the bootlist text format


def check_machine_id(mid: str) -> str:
    """A machine ID as stored: stripped, lower case; refuses odd characters."""
    if not isinstance(mid, str):
        raise UsageError("machine ID must be a string")
    m = mid.strip()
    if not _ID_RE.match(m):
        raise UsageError(f"bad machine ID {mid[:80]!r}: use a WWN, UUID or name of letters, digits "
                         "and . _ : + - (at most 128 characters, starting with a letter or digit)")
    return m.lower()


def check_name(name: str, what: str = "machine name") -> str:
    if not isinstance(name, str):
        raise UsageError(f"{what} must be a string")
    n = name.strip()
    if len(n) > MAX_NAME:
        raise UsageError(f"{what} is longer than {MAX_NAME} characters")
    if any(ord(c) < 32 or ord(c) == 127 for c in n):
        raise UsageError(f"{what} contains control characters")
    return n


def check_admin_name(name: str) -> str:
    if not isinstance(name, str):
        raise UsageError("administrator name must be a string")
    n = name.strip()
    if not 1 <= len(n) <= 64 or any(c.isspace() or ord(c) < 32 or ord(c) == 127 for c in n):
        raise UsageError("administrator name must be 1 to 64 characters without spaces or control characters")
    return n


def check_boot_type(t: str) -> str:
    if not isinstance(t, str) or t.strip().lower() not in BOOT_TYPES:
        raise UsageError(f"bad boot type {str(t)[:40]!r}: use one of {', '.join(BOOT_TYPES)}")
    return t.strip().lower()


def check_list(name: str) -> str:
    """A list name (``boot``, ``rootvg``, ...; ``non-essential`` accepted)."""
    n = LIST_ALIASES.get(str(name).strip().lower(), str(name).strip().lower())
    if n not in LISTS:
        raise NotFoundError(f"no device list {str(name)[:40]!r}: the lists are {', '.join(LISTS)}")
    return n


def _check_device_syntax(dev: Device) -> Device:
    if not isinstance(dev.id, str) or not _DEV_RE.match(dev.id.strip()):
        raise UsageError(f"bad disk ID {str(dev.id)[:80]!r}: a disk unique ID is a WWN (naa.<hex>), "
                         "serial:<s> or path:<p> without spaces")
    attrs: dict[str, str] = {}
    copy = dev.copy
    for k, v in dev.attrs.items():
        if k == "copy":
            copy = v
            continue
        if not _ATTR_KEY_RE.match(k):
            raise UsageError(f"disk {dev.id}: bad attribute name {k[:40]!r} (lower-case letters, digits, _)")
        if not _ATTR_VAL_RE.match(v):
            raise UsageError(f"disk {dev.id}: bad value for {k}: {v[:40]!r} (letters, digits and ._:/+@,- only)")
        attrs[k] = v
    if copy is not None and copy != "" and not _ATTR_VAL_RE.match(copy):
        raise UsageError(f"disk {dev.id}: bad boot copy {copy[:40]!r} (letters, digits and ._:/+@,- only)")
    return Device(dev.id.strip(), copy or None, attrs)


def parse_bootlist(text: str) -> list[Device]:
    """Parse ``bootlist -o`` / ``-f FILE`` text: one device per line, then ``attr=value``s.

    Blank lines and ``#`` comments are skipped; a line ``-`` (how AIX shows a
    device it cannot name) is skipped too.  Several devices on one line are
    accepted (``naa.1 copy=a naa.2``): an ``attr=value`` belongs to the device
    before it.
    """
    out: list[Device] = []
    for lineno, raw in enumerate(text.splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line or line == "-":
            continue
        out.extend(parse_device_words(line.split(), where=f"line {lineno}"))
    return out


def parse_device_words(words: Sequence[str], where: str = "arguments") -> list[Device]:
    """``["naa.1", "copy=a", "pathid=0", "naa.2"]`` -> two Devices (AIX argument style)."""
    out: list[Device] = []
    for w in words:
        if "=" in w:
            if not out:
                raise UsageError(f"{where}: attribute {w[:40]!r} comes before any device")
            k, v = w.split("=", 1)
            k = k.strip().lower()
            if k == "blv":          # AIX spelling of the boot copy
                k = "copy"
            if k == "copy":
                out[-1].copy = v
            else:
                out[-1].attrs[k] = v
        elif w == "-":
            continue
        else:
            out.append(Device(w))
    return [_check_device_syntax(d) for d in out]


def format_bootlist(devices: Iterable[Device]) -> str:
    """The ``bootlist -o`` text of a list (one device per line, newline-terminated)."""
    return "".join(d.line() + "\n" for d in devices)


# ----------------------------------------------------------------------------
# passwords


def hash_password(password: str) -> str:
    """A salted scrypt hash: ``scrypt$N$r$p$salt$hash`` (base64)."""
    if not isinstance(password, str) or len(password) < 8:
        raise UsageError("a password needs at least 8 characters")
    if len(password) > 1024:
        raise UsageError("a password may have at most 1024 characters")
    salt = secrets.token_bytes(16)
    dk = hashlib.scrypt(password.encode(), salt=salt, n=_SCRYPT_N, r=_SCRYPT_R, p=_SCRYPT_P, dklen=32)
    b64 = lambda b: base64.b64encode(b).decode()  # noqa: E731
    return f"scrypt${_SCRYPT_N}${_SCRYPT_R}${_SCRYPT_P}${b64(salt)}${b64(dk)}"


def verify_password(password: str, stored: str) -> bool:
    """Constant-time check of ``password`` against a :func:`hash_password` string."""
    try:
        algo, n, r, p, salt, want = stored.split("$")
        if algo != "scrypt":
            return False
        dk = hashlib.scrypt(password.encode()[:4096], salt=base64.b64decode(salt), n=int(n), r=int(r),
                            p=int(p), dklen=len(base64.b64decode(want)), maxmem=64 * 1024 * 1024)
        return hmac.compare_digest(dk, base64.b64decode(want))
    except (ValueError, TypeError):
        return False


# a hash to check against when the user does not exist (same cost, no timing leak)
_DUMMY_HASH: str | None = None


def _dummy_hash() -> str:
    global _DUMMY_HASH
    if _DUMMY_HASH is None:
        _DUMMY_HASH = hash_password(secrets.token_urlsafe(16))
    return _DUMMY_HASH


# ----------------------------------------------------------------------------
# schema and migrations

# Each migration runs once, in order, inside its own transaction; the
# version table says how far a file has got.  Never edit a released step:
# add a new one.
MIGRATIONS: list[tuple[int, str, str]] = [
    (1, "machines, device lists, admins, audit", """
        CREATE TABLE machines (
            id         TEXT PRIMARY KEY,
            name       TEXT NOT NULL DEFAULT '',
            boot_type  TEXT NOT NULL DEFAULT 'normal'
                       CHECK (boot_type IN ('normal', 'install', 'maintenance')),
            created    TEXT NOT NULL,
            updated    TEXT NOT NULL
        );
        CREATE TABLE devices (
            machine_id TEXT NOT NULL REFERENCES machines(id) ON DELETE CASCADE,
            list       TEXT NOT NULL
                       CHECK (list IN ('boot', 'rootvg', 'primary', 'secondary', 'nonessential')),
            mode       TEXT NOT NULL DEFAULT '',
            position   INTEGER NOT NULL,
            device     TEXT NOT NULL,
            copy       TEXT,
            attrs      TEXT NOT NULL DEFAULT '{}',
            PRIMARY KEY (machine_id, list, mode, position),
            CHECK ((list = 'boot' AND mode IN ('normal', 'install', 'maintenance'))
                   OR (list <> 'boot' AND mode = ''))
        );
        CREATE TABLE admins (
            name       TEXT PRIMARY KEY,
            pw_hash    TEXT NOT NULL,
            created    TEXT NOT NULL
        );
        CREATE TABLE audit (
            id         INTEGER PRIMARY KEY AUTOINCREMENT,
            at         TEXT NOT NULL,
            actor      TEXT NOT NULL,
            action     TEXT NOT NULL,
            target     TEXT NOT NULL,
            before     TEXT,
            after      TEXT
        );
    """),
    (2, "session epochs, settings (web secret), audit index", """
        ALTER TABLE admins ADD COLUMN epoch INTEGER NOT NULL DEFAULT 1;
        CREATE TABLE settings (
            key        TEXT PRIMARY KEY,
            value      TEXT NOT NULL
        );
        CREATE INDEX audit_target ON audit(target, id);
    """),
]
SCHEMA_VERSION = MIGRATIONS[-1][0]

Inventory = Callable[[], Iterable[Any]] | Iterable[Any] | None


class Registry:
    """The registry file.  Thread-safe: one SQLite connection per thread.

    ``inventory`` (optional) says which disks exist: a list of disk IDs (or of
    objects with ``.id``, like ``core.inventory.DiskInfo``) or a callable
    returning one.  With it, every list edit resolves each device ID (full ID
    or unique prefix) to a known disk and refuses unknown ones
    (:class:`UnknownDiskError`); without it, IDs are only checked for syntax.
    """

    def __init__(self, path: str | os.PathLike[str] | None = None, *, inventory: Inventory = None,
                 busy_timeout: float = 10.0) -> None:
        self.path = Path(path or default_path())
        self.inventory = inventory
        self.busy_timeout = busy_timeout
        self._local = threading.local()
        self._conns: list[sqlite3.Connection] = []
        self._conns_lock = threading.Lock()
        if self.path.is_dir():
            raise RegistryError(f"registry {self.path} is a directory, not a registry file; "
                                "give --registry FILE or set $SANBOS_REGISTRY")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise RegistryError(f"cannot create the registry directory {self.path.parent}: "
                                f"{e.strerror or e}; give --registry FILE or set $SANBOS_REGISTRY") from None
        new = not self.path.exists()
        self._migrate()
        if new:
            try:
                os.chmod(self.path, 0o600)   # it holds password hashes and the session secret
            except OSError:
                pass

    # -- connections and transactions --------------------------------------

    def _conn(self) -> sqlite3.Connection:
        c = getattr(self._local, "conn", None)
        if c is None:
            try:
                c = sqlite3.connect(self.path, timeout=self.busy_timeout, isolation_level=None,
                                    check_same_thread=False)
                c.row_factory = sqlite3.Row
                c.execute("PRAGMA journal_mode=WAL")
                c.execute("PRAGMA synchronous=FULL")
                c.execute("PRAGMA foreign_keys=ON")
                c.execute(f"PRAGMA busy_timeout={int(self.busy_timeout * 1000)}")
            except sqlite3.Error as e:
                raise RegistryError(f"cannot open the registry {self.path}: {e}") from None
            self._local.conn = c
            with self._conns_lock:
                self._conns.append(c)
        return c

    def close(self) -> None:
        """Close every connection this object opened (all threads)."""
        with self._conns_lock:
            for c in self._conns:
                try:
                    c.close()
                except sqlite3.Error:
                    pass
            self._conns.clear()
        self._local = threading.local()

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One write transaction (BEGIN IMMEDIATE ... COMMIT, rolled back on any error)."""
        c = self._conn()
        try:
            c.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as e:
            raise RegistryError(f"registry {self.path} is busy or read-only: {e}") from None
        try:
            yield c
        except BaseException:
            c.execute("ROLLBACK")
            raise
        else:
            try:
                c.execute("COMMIT")
            except sqlite3.Error as e:
                c.execute("ROLLBACK")
                raise RegistryError(f"cannot commit to the registry {self.path}: {e}") from None

    @contextmanager
    def _read(self) -> Iterator[sqlite3.Connection]:
        """A consistent snapshot for several reads."""
        c = self._conn()
        c.execute("BEGIN")
        try:
            yield c
        finally:
            c.execute("COMMIT")

    def _migrate(self) -> None:
        try:
            c = self._conn()
            c.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
            row = c.execute("SELECT version FROM schema_version").fetchone()
            if row is None:
                with self._write() as w:
                    if w.execute("SELECT count(*) FROM schema_version").fetchone()[0] == 0:
                        w.execute("INSERT INTO schema_version (version) VALUES (0)")
                row = c.execute("SELECT version FROM schema_version").fetchone()
            version = row[0]
            if version > SCHEMA_VERSION:
                raise RegistryError(f"registry {self.path} has schema version {version}, newer than this "
                                    f"sanbos understands ({SCHEMA_VERSION}); upgrade sanbos")
            for step, _what, sql in MIGRATIONS:
                if step <= version:
                    continue
                with self._write() as w:
                    # re-check inside the lock: another process may have migrated meanwhile
                    now = w.execute("SELECT version FROM schema_version").fetchone()[0]
                    if now >= step:
                        continue
                    for stmt in _statements(sql):
                        w.execute(stmt)
                    w.execute("UPDATE schema_version SET version = ?", (step,))
        except sqlite3.DatabaseError as e:
            raise RegistryError(f"registry {self.path} is not a usable SQLite file: {e}") from None

    def schema_version(self) -> int:
        return self._conn().execute("SELECT version FROM schema_version").fetchone()[0]

    def integrity_check(self) -> list[str]:
        """Problems SQLite and the registry's own rules find ([] when consistent)."""
        c = self._conn()
        out = [r[0] for r in c.execute("PRAGMA integrity_check") if r[0] != "ok"]
        out += [f"foreign key: {tuple(r)}" for r in c.execute("PRAGMA foreign_key_check")]
        for r in c.execute("SELECT machine_id, list, mode, count(*) AS n, max(position) AS hi "
                           "FROM devices GROUP BY machine_id, list, mode"):
            if r["hi"] != r["n"] - 1:
                out.append(f"machine {r['machine_id']} list {r['list']} {r['mode']}: positions have gaps")
        return out

    # -- audit --------------------------------------------------------------

    @staticmethod
    def _audit(c: sqlite3.Connection, actor: str, action: str, target: str, before: Any, after: Any) -> None:
        c.execute("INSERT INTO audit (at, actor, action, target, before, after) VALUES (?, ?, ?, ?, ?, ?)",
                  (_now(), actor, action, target,
                   None if before is None else json.dumps(before, sort_keys=True),
                   None if after is None else json.dumps(after, sort_keys=True)))

    def audit(self, limit: int = 100, target: str | None = None, since_id: int = 0) -> list[AuditEntry]:
        """Audit entries, newest first."""
        sql = "SELECT * FROM audit WHERE id > ?"
        args: list[Any] = [since_id]
        if target is not None:
            sql += " AND target = ?"
            args.append(target)
        sql += " ORDER BY id DESC LIMIT ?"
        args.append(max(1, min(int(limit), 100000)))
        return [AuditEntry(r["id"], r["at"], r["actor"], r["action"], r["target"],
                           None if r["before"] is None else json.loads(r["before"]),
                           None if r["after"] is None else json.loads(r["after"]))
                for r in self._conn().execute(sql, args)]

    # -- machines ------------------------------------------------------------

    def _machine_row(self, c: sqlite3.Connection, mid: str) -> sqlite3.Row:
        key = check_machine_id(mid)
        row = c.execute("SELECT * FROM machines WHERE id = ?", (key,)).fetchone()
        if row is None:
            raise NotFoundError(f"no machine {key!r} in the registry {self.path.name}")
        return row

    def list_machines(self) -> list[MachineSummary]:
        return [MachineSummary(r["id"], r["name"], r["boot_type"], r["updated"])
                for r in self._conn().execute("SELECT id, name, boot_type, updated FROM machines ORDER BY id")]

    def has_machine(self, mid: str) -> bool:
        return self._conn().execute("SELECT 1 FROM machines WHERE id = ?",
                                    (check_machine_id(mid),)).fetchone() is not None

    def machine(self, mid: str) -> Machine:
        """One machine with its boot type and all its lists (for pages and the console)."""
        with self._read() as c:
            return self._machine(c, mid)

    def _machine(self, c: sqlite3.Connection, mid: str) -> Machine:
        row = self._machine_row(c, mid)
        m = Machine(row["id"], row["name"], row["boot_type"], row["created"], row["updated"])
        m.lists = {"boot": {t: [] for t in BOOT_TYPES}, **{l: [] for l in PLAIN_LISTS}}
        for r in c.execute("SELECT list, mode, device, copy, attrs FROM devices WHERE machine_id = ? "
                           "ORDER BY list, mode, position", (m.id,)):
            d = Device(r["device"], r["copy"], json.loads(r["attrs"]))
            (m.lists["boot"][r["mode"]] if r["list"] == "boot" else m.lists[r["list"]]).append(d)
        return m

    def add_machine(self, mid: str, name: str = "", boot_type: str = "normal", *, actor: str) -> Machine:
        key, name, boot_type = check_machine_id(mid), check_name(name), check_boot_type(boot_type)
        with self._write() as c:
            if c.execute("SELECT 1 FROM machines WHERE id = ?", (key,)).fetchone():
                raise ConflictError(f"machine {key!r} is already in the registry")
            now = _now()
            c.execute("INSERT INTO machines (id, name, boot_type, created, updated) VALUES (?, ?, ?, ?, ?)",
                      (key, name, boot_type, now, now))
            self._audit(c, actor, "machine.add", key, None, {"name": name, "boot_type": boot_type})
            return self._machine(c, key)

    def remove_machine(self, mid: str, *, actor: str) -> None:
        with self._write() as c:
            m = self._machine(c, mid)
            c.execute("DELETE FROM devices WHERE machine_id = ?", (m.id,))
            c.execute("DELETE FROM machines WHERE id = ?", (m.id,))
            self._audit(c, actor, "machine.remove", m.id, m.to_dict(), None)

    def rename_machine(self, mid: str, name: str, *, actor: str) -> Machine:
        name = check_name(name)
        with self._write() as c:
            row = self._machine_row(c, mid)
            if row["name"] != name:
                c.execute("UPDATE machines SET name = ?, updated = ? WHERE id = ?", (name, _now(), row["id"]))
                self._audit(c, actor, "machine.rename", row["id"], {"name": row["name"]}, {"name": name})
            return self._machine(c, row["id"])

    def set_boot_type(self, mid: str, boot_type: str, *, actor: str) -> Machine:
        boot_type = check_boot_type(boot_type)
        with self._write() as c:
            row = self._machine_row(c, mid)
            if row["boot_type"] != boot_type:
                c.execute("UPDATE machines SET boot_type = ?, updated = ? WHERE id = ?",
                          (boot_type, _now(), row["id"]))
                self._audit(c, actor, "machine.boot_type", row["id"],
                            {"boot_type": row["boot_type"]}, {"boot_type": boot_type})
            return self._machine(c, row["id"])

    # -- device lists --------------------------------------------------------

    @staticmethod
    def _list_key(lst: str, mode: str | None) -> tuple[str, str]:
        lst = check_list(lst)
        if lst == "boot":
            if mode is None:
                raise UsageError("the boot list needs a mode: normal, install or maintenance")
            return lst, check_boot_type(mode)
        if mode not in (None, ""):
            raise UsageError(f"the {lst} list has no modes (only the boot list has one per boot type)")
        return lst, ""

    def _read_list(self, c: sqlite3.Connection, mid: str, lst: str, mode: str) -> list[Device]:
        return [Device(r["device"], r["copy"], json.loads(r["attrs"]))
                for r in c.execute("SELECT device, copy, attrs FROM devices WHERE machine_id = ? AND list = ? "
                                   "AND mode = ? ORDER BY position", (mid, lst, mode))]

    def device_list(self, mid: str, lst: str, mode: str | None = None) -> list[Device]:
        """One ordered list; for ``boot``, ``mode`` is the boot mode (default: the machine's type)."""
        with self._read() as c:
            row = self._machine_row(c, mid)
            if check_list(lst) == "boot" and mode is None:
                mode = row["boot_type"]
            key = self._list_key(lst, mode)
            return self._read_list(c, row["id"], *key)

    def query(self, mid: str, lst: str = "boot", boot_type: str | None = None) -> Query:
        """The firmware query: the ordered devices of a list.

        For ``boot`` the list of the machine's current boot type, or of
        ``boot_type`` when the firmware asks for one.  Unknown machine or list:
        :class:`NotFoundError`.
        """
        lst = check_list(lst)
        if boot_type is not None and lst != "boot":
            raise UsageError(f"the {lst} list has no boot types; ask without type=")
        with self._read() as c:
            row = self._machine_row(c, mid)
            mode = check_boot_type(boot_type) if boot_type else (row["boot_type"] if lst == "boot" else "")
            devs = self._read_list(c, row["id"], lst, mode)
        return Query(row["id"], row["name"], lst, mode if lst == "boot" else None, devs)

    def known_disks(self) -> list[Any] | None:
        """The inventory's disks (IDs or DiskInfo-like objects), or None without an inventory."""
        inv = self.inventory
        if inv is None:
            return None
        try:
            items = inv() if callable(inv) else inv
            return list(items)
        except SanbosError as e:
            raise RegistryError(f"cannot list the known disks to check device IDs: {e}") from None

    def _resolve(self, devices: Sequence[Device | str | dict[str, Any]]) -> list[Device]:
        devs = [_check_device_syntax(Device.from_any(d)) for d in devices]
        if len(devs) > MAX_LIST:
            raise UsageError(f"a device list holds at most {MAX_LIST} devices")
        disks = self.known_disks()
        if disks is not None:
            def keys(d: Any) -> list[str]:
                if isinstance(d, str):
                    return [d]
                return [getattr(d, "id", ""), getattr(d, "wwn", None) or "", getattr(d, "serial", None) or "",
                        getattr(d, "pv_uuid", None) or ""]
            out = []
            for dev in devs:
                try:
                    hit = select(disks, dev.id, keys=keys, what="disk")
                except NotFoundError:
                    raise UnknownDiskError(f"unknown disk {dev.id!r}: no disk of the SAN inventory has this "
                                           "unique ID (or ID prefix)") from None
                except AmbiguousError as e:
                    raise UsageError(str(e)) from None
                out.append(Device(hit if isinstance(hit, str) else hit.id, dev.copy, dev.attrs))
            devs = out
        seen: set[str] = set()
        for d in devs:
            if d.id in seen:
                raise ConflictError(f"disk {d.id} is twice in the list; a list names each disk once")
            seen.add(d.id)
        return devs

    def _store_list(self, c: sqlite3.Connection, mid: str, lst: str, mode: str, devs: list[Device],
                    before: list[Device], actor: str, action: str) -> None:
        if [d.to_dict() for d in devs] == [d.to_dict() for d in before]:
            return
        c.execute("DELETE FROM devices WHERE machine_id = ? AND list = ? AND mode = ?", (mid, lst, mode))
        c.executemany("INSERT INTO devices (machine_id, list, mode, position, device, copy, attrs) "
                      "VALUES (?, ?, ?, ?, ?, ?, ?)",
                      [(mid, lst, mode, i, d.id, d.copy, json.dumps(d.attrs)) for i, d in enumerate(devs)])
        c.execute("UPDATE machines SET updated = ? WHERE id = ?", (_now(), mid))
        self._audit(c, actor, action, _target(mid, lst, mode),
                    [d.to_dict() for d in before], [d.to_dict() for d in devs])

    def _edit(self, mid: str, lst: str, mode: str | None, actor: str, action: str,
              change: Callable[[list[Device]], list[Device]], resolve_new: bool = False) -> list[Device]:
        key = self._list_key(lst, mode)
        with self._write() as c:
            row = self._machine_row(c, mid)
            before = self._read_list(c, row["id"], *key)
            where = f"machine {row['id']} {key[0]} list" + (f" ({key[1]})" if key[1] else "")
            try:
                after = change(list(before))
            except (NotFoundError, ConflictError, UsageError) as e:   # say which list
                raise type(e)(f"{where}: {e}") from None
            if resolve_new:
                after = self._resolve(after)
            elif len({d.id for d in after}) != len(after):
                raise ConflictError(f"{where}: a list names each disk once")
            self._store_list(c, row["id"], *key, after, before, actor, action)
            return after

    def set_list(self, mid: str, lst: str, devices: Sequence[Device | str | dict[str, Any]],
                 mode: str | None = None, *, actor: str) -> list[Device]:
        """Replace a whole list (``bootlist -m MODE dev...``); devices checked against the inventory."""
        devs = self._resolve(devices)   # inventory lookup outside the write lock
        return self._edit(mid, lst, mode, actor, "list.set", lambda _old: devs)

    def add_device(self, mid: str, lst: str, device: Device | str | dict[str, Any], mode: str | None = None,
                   position: int | None = None, *, actor: str) -> list[Device]:
        """Insert one device (at 1-based ``position``, default the end)."""
        dev = self._resolve([device])[0]

        def change(devs: list[Device]) -> list[Device]:
            if any(d.id == dev.id for d in devs):
                raise ConflictError(f"disk {dev.id} is already in this list")
            if len(devs) >= MAX_LIST:
                raise UsageError(f"a device list holds at most {MAX_LIST} devices")
            at = len(devs) if position is None else _index(position, len(devs) + 1)
            devs.insert(at, dev)
            return devs
        return self._edit(mid, lst, mode, actor, "list.add", change)

    def remove_device(self, mid: str, lst: str, which: int | str, mode: str | None = None,
                      expect: str | None = None, *, actor: str) -> list[Device]:
        """Remove the device at 1-based position ``which`` (int) or with that disk ID (str).

        ``expect``: the disk ID the caller saw at that position; a different
        one means the list changed meanwhile (:class:`ConflictError`).
        """
        def change(devs: list[Device]) -> list[Device]:
            i = _find(devs, which, expect)
            del devs[i]
            return devs
        return self._edit(mid, lst, mode, actor, "list.remove", change)

    def move_device(self, mid: str, lst: str, which: int | str, to: int | str, mode: str | None = None,
                    expect: str | None = None, *, actor: str) -> list[Device]:
        """Move a device to 1-based position ``to``, or ``"up"`` / ``"down"`` by one."""
        def change(devs: list[Device]) -> list[Device]:
            i = _find(devs, which, expect)
            if to == "up":
                j = max(0, i - 1)
            elif to == "down":
                j = min(len(devs) - 1, i + 1)
            elif to == "top":
                j = 0
            elif to == "bottom":
                j = len(devs) - 1
            else:
                try:
                    j = _index(int(to), len(devs))
                except ValueError:
                    raise UsageError(f"bad target position {str(to)[:20]!r}: a number, up, down, top or bottom") from None
            devs.insert(j, devs.pop(i))
            return devs
        return self._edit(mid, lst, mode, actor, "list.move", change)

    # -- bootlist text (AIX bootlist -m MODE -o / -f FILE) ------------------

    def bootlist_text(self, mid: str, mode: str | None = None) -> str:
        return format_bootlist(self.device_list(mid, "boot", mode))

    def set_bootlist_text(self, mid: str, mode: str, text: str, *, actor: str) -> list[Device]:
        return self.set_list(mid, "boot", parse_bootlist(text), mode, actor=actor)

    # -- administrators ------------------------------------------------------

    def list_admins(self) -> list[Admin]:
        return [Admin(r["name"], r["created"], r["epoch"])
                for r in self._conn().execute("SELECT name, created, epoch FROM admins ORDER BY name")]

    def admin_count(self) -> int:
        return self._conn().execute("SELECT count(*) FROM admins").fetchone()[0]

    def admin_epoch(self, name: str) -> int | None:
        """The session epoch of an admin, None when there is no such admin."""
        r = self._conn().execute("SELECT epoch FROM admins WHERE name = ?", (name,)).fetchone()
        return None if r is None else r[0]

    def add_admin(self, name: str, password: str, *, actor: str) -> Admin:
        name = check_admin_name(name)
        h = hash_password(password)          # slow: outside the write lock
        with self._write() as c:
            if c.execute("SELECT 1 FROM admins WHERE name = ?", (name,)).fetchone():
                raise ConflictError(f"administrator {name!r} exists already")
            now = _now()
            c.execute("INSERT INTO admins (name, pw_hash, created, epoch) VALUES (?, ?, ?, 1)", (name, h, now))
            self._audit(c, actor, "admin.add", f"admin:{name}", None, {"name": name})
        return Admin(name, now, 1)

    def set_password(self, name: str, password: str, *, actor: str) -> None:
        h = hash_password(password)
        with self._write() as c:
            r = c.execute("SELECT epoch FROM admins WHERE name = ?", (name,)).fetchone()
            if r is None:
                raise NotFoundError(f"no administrator {name!r}")
            c.execute("UPDATE admins SET pw_hash = ?, epoch = epoch + 1 WHERE name = ?", (h, name))
            self._audit(c, actor, "admin.password", f"admin:{name}", {"epoch": r[0]}, {"epoch": r[0] + 1})

    def remove_admin(self, name: str, *, actor: str) -> None:
        with self._write() as c:
            if c.execute("SELECT 1 FROM admins WHERE name = ?", (name,)).fetchone() is None:
                raise NotFoundError(f"no administrator {name!r}")
            if c.execute("SELECT count(*) FROM admins").fetchone()[0] <= 1:
                raise ConflictError(f"{name!r} is the last administrator; add another one first")
            c.execute("DELETE FROM admins WHERE name = ?", (name,))
            self._audit(c, actor, "admin.remove", f"admin:{name}", {"name": name}, None)

    def authenticate(self, name: str, password: str) -> Admin:
        """The admin when name and password match; :class:`AuthError` otherwise (same cost either way)."""
        r = self._conn().execute("SELECT name, pw_hash, created, epoch FROM admins WHERE name = ?",
                                 (name if isinstance(name, str) else "",)).fetchone()
        ok = verify_password(password if isinstance(password, str) else "", r["pw_hash"] if r else _dummy_hash())
        if r is None or not ok:
            raise AuthError("wrong administrator name or password")
        return Admin(r["name"], r["created"], r["epoch"])

    # -- settings ------------------------------------------------------------

    def secret(self, key: str = "session_secret") -> str:
        """A random secret kept in the registry (created on first use)."""
        r = self._conn().execute("SELECT value FROM settings WHERE key = ?", (key,)).fetchone()
        if r is not None:
            return r[0]
        with self._write() as c:
            r = c.execute("SELECT value FROM settings WHERE key = ?", (key,)).fetchone()
            if r is not None:
                return r[0]
            value = secrets.token_urlsafe(48)
            c.execute("INSERT INTO settings (key, value) VALUES (?, ?)", (key, value))
            return value


def _target(mid: str, lst: str, mode: str) -> str:
    return f"{mid}/{lst}" + (f"/{mode}" if mode else "")


def _index(position: int, n: int) -> int:
    """1-based position -> 0-based index in range(n)."""
    if not isinstance(position, int) or isinstance(position, bool) or not 1 <= position <= max(n, 1):
        raise NotFoundError(f"no position {position} in the list (it has {n} entries)"
                            if n else "the list is empty")
    return position - 1


def _find(devs: list[Device], which: int | str, expect: str | None) -> int:
    if isinstance(which, str) and not which.isdigit():
        for i, d in enumerate(devs):
            if d.id == which:
                return i
        raise NotFoundError(f"disk {which!r} is not in this list")
    i = _index(int(which), len(devs))
    if expect is not None and devs[i].id != expect:
        raise ConflictError(f"the list changed meanwhile: position {int(which)} now holds {devs[i].id}, "
                            f"not {expect}; reload and try again")
    return i


def _statements(sql: str) -> list[str]:
    return [s.strip() for s in sql.split(";") if s.strip()]


def disk_inventory(fabric: str | os.PathLike[str] | None, ttl: float = 5.0) -> Callable[[], list[Any]]:
    """An inventory callable over ``core.inventory.list_disks(fabric)``, cached ``ttl`` seconds."""
    from . import inventory as inv_mod
    cache: dict[str, Any] = {"at": 0.0, "disks": None}
    lock = threading.Lock()

    def get() -> list[Any]:
        with lock:
            if cache["disks"] is None or time.monotonic() - cache["at"] > ttl:
                try:
                    cache["disks"] = inv_mod.list_disks(fabric)
                except SanbosError:
                    raise
                except (ImportError, OSError) as e:
                    raise RegistryError(f"cannot list the disks to check device IDs against ({e}); "
                                        "give --fabric DIR or --no-disk-check") from None
                cache["at"] = time.monotonic()
            return cache["disks"]
    return get
