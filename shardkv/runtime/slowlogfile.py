"""The slow log: one for every process, in a shared file (issues 18, 22).

Redis has one slow log: ids go up by one per entry, SLOWLOG GET, LEN and
RESET are the same for every client, and ``slowlog-max-len`` bounds it.
shardkv logs a command where it ran (the acceptor that answered it, or
the worker of its shard, see :mod:`shardkv.runtime.cmdstats`), so every
process writes its entries into one log: a small file (a ``memfd``, as
:mod:`shardkv.runtime.scriptflushes` keeps its number) that the
supervisor makes and hands to each acceptor and worker it starts, and
again to a restarted one, so the log outlives any of them.  SLOWLOG GET,
LEN and RESET read or empty that file in the acceptor that got the
command: no shard and no other acceptor is asked.

The file: a header of four signed 64-bit numbers (the next entry's id,
where the live records start and end, how many of them are entries),
mapped into each process's memory and written last, so that a process
killed while it holds the lock leaves a whole log behind it; then
records, oldest first, each a 4-byte length, a kind byte and a
``marshal``-ed tuple.  An *entry* (``E``) is SLOWLOG GET's row: ``(id,
unix time, microseconds, arguments, client address, client name)``.  A
*name* (``N``) is a list of ``(id, arguments, client address, client
name)``, each of which a reader puts in entry ``id`` in place of its own
(the arguments None: the entry's own are kept): a worker does not know the client of a
command it ran, nor how a script was called, so the acceptor that sent
it writes that (see :mod:`shardkv.acceptor.slowlog`).

Every change and every read is made under an ``fcntl`` lock on the file
(the kernel drops it if its holder dies): an entry takes its id and its
place at once, so the records are in id order, and ids go up by one from
each entry to the next whichever process logged them.  A push past the
pusher's ``slowlog-max-len`` drops the oldest entries (Redis's
``slowlogPushEntryIfNeeded``); the dropped bytes are reclaimed once they
outweigh the live ones (the live records move to the front), so a push
costs a constant time on average.  Only a slow command pays any of this:
one that is not slow never reaches the file.  A process running a batch
of commands (a worker's batch, the commands of an acceptor's read) holds
their entries and pushes them at its end under one lock
(:meth:`shardkv.runtime.cmdstats.Stats.flush_held`): they are consecutive
in Redis too, and their ids come out in their order.
"""

from __future__ import annotations

import fcntl
import marshal
import mmap
import os
import struct
import tempfile
from array import array
from multiprocessing import reduction
from typing import Any

_HEADER = struct.Struct("qqqq")  # next id, start, end, entries (mapped: native)
_RECORD = struct.Struct("<IB")  # length of the payload, kind
_ENTRY = 69  # b"E"
_NAME = 78  # b"N"
_RECLAIM = 1 << 16  # dropped bytes worth moving the live ones over


class SlowLogFile:
    """The slow log of every process, in one file they share."""

    def __init__(self, fd: int | None = None) -> None:
        if fd is None:
            if hasattr(os, "memfd_create"):
                fd = os.memfd_create("shardkv-slowlog", os.MFD_CLOEXEC)
            else:  # not Linux: an unlinked temporary file does the same
                fd = os.dup(tempfile.TemporaryFile().fileno())
            os.pwrite(fd, _HEADER.pack(0, _HEADER.size, _HEADER.size, 0), 0)
        self.fd = fd
        # The header, mapped: read and written with no system call.
        self._map = mmap.mmap(fd, _HEADER.size)
        self._header = memoryview(self._map).cast("q")

    def __reduce__(self) -> tuple[Any, tuple]:
        """To a process being started: the same file, by its descriptor."""
        return (_attach, (reduction.DupFd(self.fd),))

    def _lock(self) -> tuple[int, int, int, int]:
        fcntl.lockf(self.fd, fcntl.LOCK_EX)
        header = self._header
        return header[0], header[1], header[2], header[3]

    def _unlock(self) -> None:
        fcntl.lockf(self.fd, fcntl.LOCK_UN)

    def push(self, entries: list[tuple], max_len: int, skipped: int = 0) -> int:
        """Log ``entries`` (``(unix time, microseconds, arguments, address,
        name)`` each, oldest first), after ``skipped`` entries that were
        logged and dropped before they came here (their ids are spent),
        keeping the newest ``max_len``; the first one's id."""
        fd = self.fd
        next_id, start, end, count = self._lock()
        try:
            next_id += skipped
            first = next_id
            out = bytearray()
            for entry in entries:
                payload = marshal.dumps((next_id, *entry))
                out += _RECORD.pack(len(payload), _ENTRY)
                out += payload
                next_id += 1
            os.pwrite(fd, out, end)
            end += len(out)
            count += len(entries)
            self._store(*self._trim(next_id, start, end, count, max_len))
            return first
        finally:
            self._unlock()

    def name(self, records: list[tuple]) -> None:
        """Who sent the commands of some entries: ``(id, arguments, client
        address, client name)`` each, the arguments None where the entry's
        own are the client's (see :mod:`shardkv.acceptor.slowlog`); one
        record for them all."""
        payload = marshal.dumps(records)
        next_id, start, end, count = self._lock()
        try:
            if count:  # (none left: nothing to name)
                os.pwrite(self.fd, _RECORD.pack(len(payload), _NAME) + payload, end)
                self._store(next_id, start, end + _RECORD.size + len(payload), count)
        finally:
            self._unlock()

    def get(self, count: int) -> list[list]:
        """The newest ``count`` entries (-1: all), newest first, as SLOWLOG
        GET shows them."""
        next_id, start, end, _ = self._lock()
        try:
            data = os.pread(self.fd, end - start, start)
        finally:
            self._unlock()
        entries: list[list] = []
        names: dict[int, tuple] = {}
        at = 0
        while at < len(data):
            size, kind = _RECORD.unpack_from(data, at)
            at += _RECORD.size
            record = marshal.loads(data[at : at + size])
            at += size
            if kind == _ENTRY:
                entries.append(list(record))
            else:
                for named in record:
                    names[named[0]] = named[1:]
        entries.reverse()
        if count >= 0:
            del entries[count:]
        for entry in entries:
            named = names.get(entry[0])
            if named is not None:
                if named[0] is None:  # the entry's own arguments are the client's
                    entry[4:] = named[1:]
                else:
                    entry[3:] = named
            # The client's address, as Redis writes it: a bulk string (a
            # str would go out as a simple one).
            if type(entry[4]) is str:
                entry[4] = entry[4].encode()
        return entries

    def length(self) -> int:
        """SLOWLOG LEN: how many entries the log holds."""
        count = self._lock()[3]
        self._unlock()
        return count

    def reset(self) -> None:
        """SLOWLOG RESET: no entry left; ids go on."""
        next_id = self._lock()[0]
        try:
            self._store(next_id, _HEADER.size, _HEADER.size, 0)
            os.ftruncate(self.fd, _HEADER.size)
        finally:
            self._unlock()

    def trim(self, max_len: int) -> None:
        """Keep the newest ``max_len`` entries (``slowlog-max-len`` was set)."""
        header = self._lock()
        try:
            self._store(*self._trim(*header, max_len))
        finally:
            self._unlock()

    def _trim(
        self, next_id: int, start: int, end: int, count: int, max_len: int
    ) -> tuple[int, int, int, int]:
        """Drop the oldest entries past ``max_len``, and the names on the way
        (each names an entry before it, dropped; those left at the front
        name nothing any more, and readers pass them by); then, if the
        dropped bytes outweigh the live ones, move these to the front.
        Under the lock."""
        fd = self.fd
        keep = max(max_len, 0)
        if count > keep:
            # The headers of what it drops, read a chunk at a time, not one
            # read each (a batch's push drops as many entries as it adds).
            chunk = max(4096, (count - keep) * 256)
            buf = os.pread(fd, chunk, start)
            at = 0
            while count > keep:
                if at + _RECORD.size > len(buf):
                    start += at
                    buf = os.pread(fd, chunk, start)
                    at = 0
                size, kind = _RECORD.unpack_from(buf, at)
                count -= kind == _ENTRY
                at += _RECORD.size + size
            start += at
        if start - _HEADER.size > max(end - start, _RECLAIM) or start == end > _HEADER.size:
            live = os.pread(fd, end - start, start)
            os.pwrite(fd, live, _HEADER.size)
            start, end = _HEADER.size, _HEADER.size + len(live)
            self._store(next_id, start, end, count)  # first: a holder killed here leaves a whole log
            os.ftruncate(fd, end)
        return next_id, start, end, count

    def _store(self, next_id: int, start: int, end: int, count: int) -> None:
        self._header[0:4] = array("q", (next_id, start, end, count))

    def close(self) -> None:
        self._header.release()
        self._map.close()
        os.close(self.fd)


def _attach(dup: Any) -> SlowLogFile:
    return SlowLogFile(dup.detach())
