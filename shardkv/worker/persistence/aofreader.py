"""Reading the AOF back.

:func:`read_records` yields ``(n, args)`` for each record, parsed by
hiredis.  A file that ends inside a record (a torn write, or zero bytes a
crash left) raises :class:`TornTail` with the offset of the end of the last
whole record; anything else that is not a RESP array of bulk strings raises
:class:`AofError` with its offset.  Offsets come from a second, exact scan
in Python, which only a damaged file pays for.
"""

from __future__ import annotations

import mmap
import os
from collections.abc import Iterator

try:
    from hiredis import ProtocolError as _ProtocolError
    from hiredis import Reader as _Reader
except ImportError:  # pragma: no cover - hiredis is a dependency
    _Reader = None  # type: ignore[assignment, misc]
    _ProtocolError = Exception  # type: ignore[assignment, misc]

from shardkv.worker.persistence.aof import encode

READ_SIZE = 1 << 20


class AofError(Exception):
    """A record that cannot be read; ``offset`` is where it starts."""

    def __init__(self, path: str, offset: int, reason: str) -> None:
        super().__init__(f"Bad file format reading the append only file {path} at offset {offset}: {reason}")
        self.path = path
        self.offset = offset
        self.reason = reason


class TornTail(AofError):
    """The file ends inside a record; ``offset`` is the end of the last whole one."""


def read_records(path: str) -> Iterator[tuple[int, list[bytes]]]:
    """Yield ``(n, args)`` for every record of the file at ``path``, ``n``
    counting from 0; :func:`record_offset` turns ``n`` into a file offset.

    hiredis parses; if it finds anything wrong, the file is scanned again in
    Python, which raises :class:`AofError` or :class:`TornTail` with the
    exact offset (the slow path runs only for damaged files).
    """
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        if size == 0:
            return
        data = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
    try:
        if _Reader is None:
            for n, (_, args) in enumerate(_scan(path, data, size)):
                yield n, args
        else:
            yield from _parse(path, data, size)
    finally:
        data.close()


def record_offset(path: str, n: int) -> int:
    """The file offset where record ``n`` of the file at ``path`` starts."""
    for i, (offset, _) in enumerate(_records_with_offsets(path)):
        if i == n:
            return offset
    return os.path.getsize(path)


def _records_with_offsets(path: str) -> Iterator[tuple[int, list[bytes]]]:
    with open(path, "rb") as f:
        data = f.read()
    yield from _scan(path, data, len(data))  # type: ignore[arg-type]


def _parse(path: str, data: mmap.mmap, size: int) -> Iterator[tuple[int, list[bytes]]]:
    reader = _Reader()
    n = 0
    last: list = []
    for pos in range(0, size, READ_SIZE):
        reader.feed(data[pos : pos + READ_SIZE])
        while True:
            try:
                args = reader.gets()
            except _ProtocolError:
                args = None
            if args is False:
                break
            if type(args) is not list or not args or not all(type(a) is bytes for a in args):
                _check_exactly(path, data, size)
                raise AofError(path, 0, "unreadable")  # (the scan finds what hiredis did)
            yield n, args
            n += 1
            last = args
    # hiredis keeps a partial record to itself: the file must end right
    # after the last record it gave out.
    tail = encode(last) if n else b""
    if not n or data[size - len(tail) :] != tail:
        _check_exactly(path, data, size)


def _check_exactly(path: str, data: mmap.mmap, size: int) -> None:
    """Scan in Python: raises AofError or TornTail with the offset."""
    for _ in _scan(path, data, size):
        pass


def _scan(path: str, data: mmap.mmap, n: int) -> Iterator[tuple[int, list[bytes]]]:
    pos = 0
    find = data.find

    def bad(start: int, at: int, reason: str) -> AofError:
        # Zero bytes from here to the end are a torn write too: a crash
        # can leave a file longer than what was written to it.
        if at >= n or not data[at:].strip(b"\0"):
            return TornTail(path, start, "the file ends inside a record")
        return AofError(path, start, reason)

    while pos < n:
        start = pos
        if data[pos] != 42:  # '*'
            raise bad(start, pos, f"expected '*', got {data[pos : pos + 1]!r}")
        eol = find(b"\r\n", pos)
        if eol < 0:
            raise TornTail(path, start, "the file ends inside a record")
        try:
            count = int(data[pos + 1 : eol])
        except ValueError:
            raise bad(start, pos + 1, "bad array length") from None
        if count < 1:
            raise AofError(path, start, "empty or negative array length")
        pos = eol + 2
        args = []
        for _ in range(count):
            if pos >= n or data[pos] != 36:  # '$'
                raise bad(start, pos, f"expected '$', got {data[pos : pos + 1]!r}")
            eol = find(b"\r\n", pos)
            if eol < 0:
                raise TornTail(path, start, "the file ends inside a record")
            try:
                size = int(data[pos + 1 : eol])
            except ValueError:
                raise bad(start, pos + 1, "bad bulk length") from None
            if size < 0:
                raise AofError(path, start, "negative bulk length")
            pos = eol + 2
            end = pos + size
            if end + 2 > n:
                raise TornTail(path, start, "the file ends inside a record")
            if data[end : end + 2] != b"\r\n":
                raise bad(start, pos, "a bulk string does not end with CRLF")
            args.append(data[pos:end])
            pos = end + 2
        yield start, args
