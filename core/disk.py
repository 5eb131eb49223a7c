"""A disk: an image file or a block device, read and written at byte offsets.

Locks are advisory ``flock`` locks on the disk itself: shared for readers,
exclusive for writers, so that two writers never modify one disk at once
while many readers may.  ``/proc/locks`` names the holders when a lock is
refused.
"""

from __future__ import annotations

import errno
import fcntl
import os
import stat
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from .errors import DiskBusyError, DiskError

SECTOR = 512
_LOCK_TRIES = 10  # about half a second for a holder that is going away


def lock_holders(path: str | os.PathLike[str], *, include_self: bool = False) -> list[int]:
    """PIDs holding a flock on ``path`` (from /proc/locks); this process only if asked."""
    try:
        st = os.stat(path)
    except OSError:
        return []
    want = f"{os.major(st.st_dev):02x}:{os.minor(st.st_dev):02x}:{st.st_ino}"
    pids: set[int] = set()
    try:
        text = Path("/proc/locks").read_text()
    except OSError:
        return []
    for line in text.splitlines():
        parts = line.split()
        if len(parts) < 6 or parts[1] != "FLOCK":
            continue
        if parts[5] == want:
            try:
                pid = int(parts[4])
            except ValueError:
                continue
            if include_self or pid != os.getpid():
                pids.add(pid)
    return sorted(pids)


def read_only_image(st: os.stat_result) -> bool:
    """An image file with no write permission bit at all (``chmod 0444``): read-only even for root."""
    return stat.S_ISREG(st.st_mode) and not st.st_mode & 0o222


def _ro_words(path: Path, st: os.stat_result | None = None) -> str:
    st = st or os.stat(path)
    return f"image file {path} is read-only (mode {st.st_mode & 0o777:04o}); refusing to write it"


def describe_pids(pids: list[int]) -> str:
    """``1234 (qemu-system-x86), 99 (sanbos)`` for error messages."""
    out = []
    for pid in pids:
        if pid == os.getpid():
            out.append(f"{pid} (this sanbos process, through another open handle)")
            continue
        try:
            name = Path(f"/proc/{pid}/comm").read_text().strip()
        except OSError:
            name = "?"
        out.append(f"{pid} ({name})")
    return ", ".join(out) or "a process that has just released it (try again)"


class Disk:
    """An open disk (image file or block device).

    ``name`` is how messages refer to it: the disk's unique ID where the
    caller knows it, else its path.
    """

    def __init__(self, path: str | os.PathLike[str], *, writable: bool = False,
                 lock: str | None = None, name: str | None = None) -> None:
        self.path = Path(path)
        self.name = name or str(path)
        self.writable = writable
        flags = os.O_RDWR if writable else os.O_RDONLY
        try:
            self.fd = os.open(self.path, flags | os.O_CLOEXEC)
        except FileNotFoundError:
            raise DiskError(f"{self.name}: no such disk or image file ({self.path})") from None
        except PermissionError:
            try:
                ro = writable and read_only_image(os.stat(self.path))
            except OSError:
                ro = False
            if ro:
                raise DiskError(f"{self.name}: {_ro_words(self.path)}") from None
            mode = "read-write" if writable else "read-only"
            raise DiskError(f"{self.name}: permission denied opening {self.path} {mode}") from None
        except OSError as e:
            raise DiskError(f"{self.name}: cannot open {self.path}: {e.strerror}") from None
        st = os.fstat(self.fd)
        self.is_block = stat.S_ISBLK(st.st_mode)
        if not (self.is_block or stat.S_ISREG(st.st_mode)):
            os.close(self.fd)
            raise DiskError(f"{self.name}: {self.path} is neither an image file nor a block device")
        if writable and read_only_image(st):
            os.close(self.fd)   # root may open it anyway: the mode is the operator's word
            raise DiskError(f"{self.name}: {_ro_words(self.path, st)}")
        self.size = self._measure()
        self.lock_mode: str | None = None
        if lock:
            try:
                self.lock(lock)
            except BaseException:
                os.close(self.fd)
                raise

    # -- life cycle ------------------------------------------------------
    def _measure(self) -> int:
        return os.lseek(self.fd, 0, os.SEEK_END)

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)  # releases the flock with the descriptor
            self.fd = -1
            self.lock_mode = None

    def __enter__(self) -> "Disk":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Disk({str(self.path)!r}, size={self.size}, writable={self.writable})"

    # -- locks -----------------------------------------------------------
    def lock(self, mode: str) -> None:
        """Take a ``"shared"`` or ``"exclusive"`` lock without waiting."""
        op = {"shared": fcntl.LOCK_SH, "exclusive": fcntl.LOCK_EX}[mode]
        for attempt in range(_LOCK_TRIES):
            try:
                fcntl.flock(self.fd, op | fcntl.LOCK_NB)
                break
            except OSError as e:
                if e.errno not in (errno.EWOULDBLOCK, errno.EAGAIN):
                    raise DiskError(f"{self.name}: cannot lock {self.path}: {e.strerror}") from None
                pids = lock_holders(self.path, include_self=True)
                # A holder that has just died (or a child forked by it that has not yet
                # exec'd and dropped its close-on-exec descriptors) lets go within
                # milliseconds: wait a moment for that, but not for a live holder.
                if pids and attempt >= 1 or attempt == _LOCK_TRIES - 1:
                    want = "write" if mode == "exclusive" else "read"
                    raise DiskBusyError(
                        f"{self.name}: busy, cannot {want}: held by {describe_pids(pids)}; "
                        "wait for them to finish or stop them") from None
                time.sleep(0.05)
        self.lock_mode = mode

    def unlock(self) -> None:
        fcntl.flock(self.fd, fcntl.LOCK_UN)
        self.lock_mode = None

    # -- I/O -------------------------------------------------------------
    def _check(self, offset: int, length: int) -> None:
        if offset < 0 or length < 0 or offset + length > self.size:
            raise DiskError(
                f"{self.name}: access at byte {offset} (+{length}) is beyond the end "
                f"of the disk ({self.size} bytes)")

    def read(self, offset: int, length: int) -> bytes:
        """Read exactly ``length`` bytes at ``offset``."""
        self._check(offset, length)
        chunks = []
        done = 0
        while done < length:
            try:
                b = os.pread(self.fd, min(length - done, 1 << 24), offset + done)
            except OSError as e:
                raise DiskError(f"{self.name}: read error at byte {offset + done}: {e.strerror}") from None
            if not b:
                raise DiskError(f"{self.name}: short read at byte {offset + done}")
            chunks.append(b)
            done += len(b)
        return b"".join(chunks)

    def write(self, offset: int, data: bytes | bytearray | memoryview) -> None:
        """Write all of ``data`` at ``offset``."""
        if not self.writable:
            raise DiskError(f"{self.name}: opened read-only, refusing to write")
        self._check(offset, len(data))
        view = memoryview(data)
        done = 0
        while done < len(view):
            try:
                n = os.pwrite(self.fd, view[done:], offset + done)
            except OSError as e:
                raise DiskError(f"{self.name}: write error at byte {offset + done}: {e.strerror}") from None
            done += n

    def zero(self, offset: int, length: int) -> None:
        """Write zeros over a range (in 1 MiB pieces)."""
        block = bytes(min(length, 1 << 20))
        end = offset + length
        while offset < end:
            n = min(len(block), end - offset)
            self.write(offset, block[:n])
            offset += n

    def fsync(self) -> None:
        try:
            os.fsync(self.fd)
        except OSError as e:
            raise DiskError(f"{self.name}: flush failed: {e.strerror}") from None

    def range(self, offset: int, length: int | None = None, name: str | None = None) -> "ByteRange":
        """A view of ``[offset, offset+length)`` of this disk."""
        if length is None:
            length = self.size - offset
        self._check(offset, length)
        return ByteRange(self, offset, length, name or self.name)


@dataclass
class ByteRange:
    """A window on a disk: a partition, a PV, an LV leg."""

    disk: Disk
    offset: int
    length: int
    name: str

    @property
    def size(self) -> int:
        return self.length

    def _check(self, offset: int, length: int) -> None:
        if offset < 0 or length < 0 or offset + length > self.length:
            raise DiskError(
                f"{self.name}: access at byte {offset} (+{length}) is beyond its end "
                f"({self.length} bytes)")

    def read(self, offset: int, length: int) -> bytes:
        self._check(offset, length)
        return self.disk.read(self.offset + offset, length)

    def write(self, offset: int, data: bytes | bytearray | memoryview) -> None:
        self._check(offset, len(data))
        self.disk.write(self.offset + offset, data)

    def zero(self, offset: int, length: int) -> None:
        self._check(offset, length)
        self.disk.zero(self.offset + offset, length)

    def fsync(self) -> None:
        self.disk.fsync()

    def chunks(self, chunk: int = 1 << 22) -> Iterator[bytes]:
        """Iterate over the whole range in pieces of ``chunk`` bytes."""
        pos = 0
        while pos < self.length:
            n = min(chunk, self.length - pos)
            yield self.read(pos, n)
            pos += n


@dataclass(frozen=True)
class DiskRef:
    """A disk as the engine's operations take it: its unique ID and where it is.

    ``id`` is the WWN where known (``naa.…``), else a stable fallback that
    discovery chose; ``path`` is the image file or block device node.
    """

    id: str
    path: Path

    def open(self, *, writable: bool = False, lock: str | None = None) -> Disk:
        return Disk(self.path, writable=writable, lock=lock, name=self.id)


def data_extents(fd: int, offset: int, length: int) -> list[tuple[int, int]]:
    """The parts of bytes ``[offset, offset+length)`` of an open file that may hold data,
    as (start, end) relative to ``offset`` (``SEEK_DATA``/``SEEK_HOLE``); the whole
    range where that cannot be asked (block devices, file systems without it)."""
    out = []
    pos = 0
    while pos < length:
        try:
            d = os.lseek(fd, offset + pos, os.SEEK_DATA) - offset
        except OSError as e:
            if e.errno == errno.ENXIO:      # no data after pos
                break
            return [(0, length)]
        if d >= length:
            break
        d = max(d, pos)
        try:
            h = min(os.lseek(fd, offset + d, os.SEEK_HOLE) - offset, length)
        except OSError:
            return [(0, length)]
        out.append((d, h))
        pos = h
    return out
