"""Snapshots: a shard's keys at one moment, in a versioned, checksummed file.

Used for SAVE and BGSAVE (``<dbfilename>.shard-<i>``), as the base of a
rewritten AOF (``<appendfilename>.shard-<i>.<seq>.base.snap``) and when the
shard count changes.

Format, version 3 (all integers little-endian)::

    magic       8 bytes   b"SHARDKV\\x00"
    version     u16       3
    frames, each:
      kind      1 byte    b"H" header, b"F" functions, b"S" select, b"D" data, b"E" end
      length    u32       of the payload
      crc32     u32       of the payload (zlib.crc32)
      payload   marshal   H: dict {"shards", "index", "created_ms"}
                          F: list of the FUNCTION libraries' codes (bytes)
                          S: int, the database of the D frames that follow
                          D: list of (key, type tag, plain value, deadline ms or None)
                          E: dict {"keys": number of keys in the D frames}

The D frames before any S frame are database 0's.  The F frame, when
there are libraries, comes right after the header: every shard holds every
library (Redis 7 saves functions in its RDB, not the script cache).
Versions 1 (no S frames: one database) and 2 (no F frame) are still read.

A file is whole only if it starts with the magic and a known version,
every frame's checksum matches, and it ends right after the E frame, whose
count matches.  Payloads are checked before :mod:`marshal` reads them.
Values are the plain states of :mod:`shardkv.worker.transfer` (bytes,
dict, list, set, ...), so each type module's own conversion is used.
"""

from __future__ import annotations

import marshal
import os
import struct
import time
import zlib
from collections.abc import Iterator
from typing import Any

from shardkv.worker.keyspace import Keyspace
from shardkv.worker.transfer import TO_PLAIN, State

MAGIC = b"SHARDKV\x00"
VERSION = 3
READABLE = (1, 2, 3)
_FRAME = struct.Struct("<cII")
_VERSION = struct.Struct("<H")
KEYS_PER_FRAME = 1000


class SnapshotError(Exception):
    """A snapshot that cannot be read; the message names the file and offset."""

    def __init__(self, path: str, offset: int, reason: str) -> None:
        super().__init__(f"Bad snapshot file {path} at offset {offset}: {reason}")
        self.path = path
        self.offset = offset


def _frame(kind: bytes, value: Any) -> bytes:  # value: what marshal writes
    payload = marshal.dumps(value)
    return _FRAME.pack(kind, len(payload), zlib.crc32(payload)) + payload


def library_codes(ks: Keyspace) -> list[bytes]:
    """The codes of the FUNCTION libraries ``ks``'s shard holds, in load order."""
    functions = getattr(ks.scripts, "functions", None)
    if functions is None:
        return []
    return [library.code for library in functions.libraries.values()]


def write_snapshot(
    path: str,
    ks: Keyspace,
    shards: int,
    index: int,
    key_delay_us: int = 0,
    now_ms: int | None = None,
    libraries: list[bytes] | None = None,
) -> int:
    """Write every live key of ``ks`` to ``path`` and fsync it; return the key count.

    ``libraries`` are the FUNCTION libraries' codes to save (by default
    those of ``ks``'s shard).

    ``key_delay_us`` sleeps that long per key (Redis's ``rdb-key-save-delay``,
    for tests that need a save to take a while; a negative one, as Redis's
    debugDelay, 1 microsecond once in ``-key_delay_us`` keys).
    """
    per_key = key_delay_us / 1e6 if key_delay_us >= 0 else 1 / (-key_delay_us * 1e6)
    now = ks.clock.now_ms() if now_ms is None else now_ms
    count = 0
    with open(path, "wb", buffering=1 << 20) as f:
        f.write(MAGIC + _VERSION.pack(VERSION))
        f.write(_frame(b"H", {"shards": shards, "index": index, "created_ms": now}))
        codes = library_codes(ks) if libraries is None else libraries
        if codes:
            f.write(_frame(b"F", codes))
        for db in ks.used_dbs():
            database = ks.database(db)
            if not database.size():  # type: ignore[union-attr]
                continue
            if db:
                f.write(_frame(b"S", db))
            batch: list = []
            for slot, keys in enumerate(database.data):  # type: ignore[union-attr]
                if not keys:
                    continue
                exp = database.expires[slot]  # type: ignore[union-attr]
                for key, value in keys.items():
                    when = exp.get(key) if exp else None
                    if when is not None and when <= now:
                        continue
                    tag, to_plain = TO_PLAIN[type(value)]
                    batch.append((key, tag, to_plain(value), when))
                    if len(batch) >= KEYS_PER_FRAME:
                        f.write(_frame(b"D", batch))
                        count += len(batch)
                        batch = []
                        if key_delay_us:
                            time.sleep(per_key * KEYS_PER_FRAME)
            if batch:
                f.write(_frame(b"D", batch))
                count += len(batch)
                if key_delay_us:
                    time.sleep(per_key * len(batch))
        f.write(_frame(b"E", {"keys": count}))
        f.flush()
        os.fsync(f.fileno())
    return count


def read_header(path: str) -> dict:
    """The header of the snapshot at ``path`` (shards, index, created_ms)."""
    with open(path, "rb") as f:
        head = f.read(len(MAGIC) + _VERSION.size + _FRAME.size)
        _check_start(path, head)
        kind, length, crc = _FRAME.unpack_from(head, len(MAGIC) + _VERSION.size)
        payload = f.read(length)
    offset = len(MAGIC) + _VERSION.size
    if kind != b"H" or len(payload) != length or zlib.crc32(payload) != crc:
        raise SnapshotError(path, offset, "bad header frame")
    return marshal.loads(payload)


def _check_start(path: str, head: bytes) -> None:
    if head[: len(MAGIC)] != MAGIC:
        raise SnapshotError(path, 0, "not a shardkv snapshot (bad magic)")
    if len(head) < len(MAGIC) + _VERSION.size:
        raise SnapshotError(path, len(MAGIC), "truncated")
    (version,) = _VERSION.unpack_from(head, len(MAGIC))
    if version not in READABLE:
        raise SnapshotError(path, len(MAGIC), f"format version {version}; this shardkv reads {READABLE}")


def read_snapshot(path: str) -> tuple[dict, Iterator[tuple[int, bytes, State]]]:
    """The header and the ``(database, key, state)`` triples of a snapshot.

    The header's ``"libraries"`` holds the FUNCTION libraries' codes (a
    list, empty when the file has none).

    Every frame is checked before its keys are given out; a bad frame
    raises :class:`SnapshotError` with its offset.
    """
    with open(path, "rb") as f:
        data = f.read()
    _check_start(path, data)
    pos = len(MAGIC) + _VERSION.size
    frames = []
    n = len(data)
    while True:
        if pos + _FRAME.size > n:
            raise SnapshotError(path, pos, "the file ends before its end frame (truncated)")
        kind, length, crc = _FRAME.unpack_from(data, pos)
        start = pos + _FRAME.size
        end = start + length
        if end > n:
            raise SnapshotError(path, pos, "the file ends inside a frame (truncated)")
        payload = data[start:end]
        if zlib.crc32(payload) != crc:
            raise SnapshotError(path, pos, "checksum mismatch")
        if kind not in (b"H", b"F", b"S", b"D", b"E") or (kind == b"H") != (
            pos == len(MAGIC) + _VERSION.size
        ):
            raise SnapshotError(path, pos, f"unexpected frame {kind!r}")
        frames.append((pos, kind, payload))
        pos = end
        if kind == b"E":
            break
    if pos != n:
        raise SnapshotError(path, pos, "data after the end frame")
    header = marshal.loads(frames[0][2])
    total = marshal.loads(frames[-1][2]).get("keys")
    libraries: list[bytes] = []
    for offset, kind, payload in frames[1:-1]:
        if kind == b"F":
            try:
                codes = marshal.loads(payload)
            except (ValueError, EOFError, TypeError) as e:
                raise SnapshotError(path, offset, f"unreadable frame: {e}") from None
            if type(codes) is not list or not all(type(code) is bytes for code in codes):
                raise SnapshotError(path, offset, "bad functions frame")
            libraries += codes
    header["libraries"] = libraries

    def items() -> Iterator[tuple[int, bytes, State]]:
        count = 0
        db = 0
        for offset, kind, payload in frames[1:-1]:
            try:
                batch = marshal.loads(payload)
            except (ValueError, EOFError, TypeError) as e:
                raise SnapshotError(path, offset, f"unreadable frame: {e}") from None
            if kind == b"F":
                continue
            if kind == b"S":
                if type(batch) is not int or batch < 0:
                    raise SnapshotError(path, offset, f"bad database {batch!r}")
                db = batch
                continue
            for key, tag, plain, when in batch:
                count += 1
                yield db, key, (tag, plain, when)
        if count != total:
            raise SnapshotError(path, frames[-1][0], f"{count} keys, the end frame says {total}")

    return header, items()
