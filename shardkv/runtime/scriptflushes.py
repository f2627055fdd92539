"""SCRIPT FLUSH's numbers: one sequence for every acceptor (issue 18).

Each SCRIPT FLUSH goes to every shard, numbered, and a worker keeps the
number of the last one it ran; the cjson options a script sets carry it,
so that another shard can tell whether a flush reset them (see the
worker's ``Engine.set_cjson``).  A worker that starts again has missed
the flushes sent to the one before it (and those sent while it was
down): as each acceptor attaches its pipe to it, it hands the worker the
number now (``__script flushed``), so the worker starts in step whatever
another shard answers it.

The numbers are one sequence whichever acceptor reads the flush, and they
outlive an acceptor's restart: the supervisor makes one small shared file
(:class:`ScriptFlushes`, a ``memfd``, as :mod:`shardkv.runtime.clientcount`
does) holding the last number, and hands it to each acceptor it starts.
An acceptor takes the next number under an ``fcntl`` lock on the file
(the kernel drops it if the acceptor dies holding it), so no two flushes
share one, and a flush read after another's reply has a higher one.

The same file carries the script cache's log, past the number: each
script an acceptor's EVAL or SCRIPT LOAD cached (its SHA1, body and the
last flush's number then), and each it forgot (:meth:`ScriptFlushes.append`),
written before that acceptor's reply.  An acceptor that does not have a
script (an EVALSHA, SCRIPT EXISTS) reads what was written since it last
looked (:meth:`ScriptFlushes.read`) before it answers: the others are told
of a script too (the bus), but an acceptor's reply never waits for them,
so a stopped or slow one delays nobody else's clients, and an EVALSHA read
after the EVAL's reply finds the script through any acceptor, as in Redis.
A SCRIPT FLUSH (:meth:`ScriptFlushes.next`) empties the log, as every
script in it was cached before that flush.
"""

from __future__ import annotations

import fcntl
import mmap
import os
import struct
import tempfile
from multiprocessing import reduction
from typing import Any

# bytes: three signed 64-bit numbers, the last flush's, the log's length
# and how many times it was emptied; the log comes after them.
_SIZE = 24
# A record of the log: the flush number it was cached at, the body's
# length (-1: forgotten, no body), then the 40-byte SHA1 and the body.
_RECORD = struct.Struct("<qq")
_SHA = 40


class ScriptFlushes:
    """The number of the last SCRIPT FLUSH sent, shared between processes."""

    def __init__(self, fd: int | None = None) -> None:
        if fd is None:
            if hasattr(os, "memfd_create"):
                fd = os.memfd_create("shardkv-script-flushes", os.MFD_CLOEXEC)
            else:  # not Linux: an unlinked temporary file does the same
                fd = os.dup(tempfile.TemporaryFile().fileno())
            os.ftruncate(fd, _SIZE)
        self.fd = fd
        self._map = mmap.mmap(fd, _SIZE)
        self._number = memoryview(self._map).cast("q")  # (the last flush's, the log's length, emptied)

    def __reduce__(self) -> tuple[Any, tuple]:
        """To a process being started: the same file, by its descriptor."""
        return (_attach, (reduction.DupFd(self.fd),))

    def next(self) -> int:
        """A new SCRIPT FLUSH's number: one more than the last one's."""
        fcntl.lockf(self.fd, fcntl.LOCK_EX)
        try:
            self._number[0] += 1
            self._number[1] = 0  # every script logged was cached before this flush
            self._number[2] += 1
            os.ftruncate(self.fd, _SIZE)
            return self._number[0]
        finally:
            fcntl.lockf(self.fd, fcntl.LOCK_UN)

    def append(self, sha: bytes, body: bytes | None, number: int) -> None:
        """Log the script ``sha`` cached with ``body`` at flush ``number``
        (``body`` None: forgotten, if cached at ``number`` or before)."""
        record = _RECORD.pack(number, -1 if body is None else len(body)) + sha
        if body is not None:
            record += body
        fcntl.lockf(self.fd, fcntl.LOCK_EX)
        try:
            if number < self._number[0]:
                # A SCRIPT FLUSH took its number since: it forgets this
                # script everywhere, and the log it emptied must not bring
                # it back (to an acceptor started after that flush, whose
                # cache applied none: see ScriptCache.add).
                return
            end = self._number[1]
            os.pwrite(self.fd, record, _SIZE + end)
            self._number[1] = end + len(record)
        finally:
            fcntl.lockf(self.fd, fcntl.LOCK_UN)

    def read(self, emptied: int, at: int) -> tuple[list[tuple[bytes, bytes | None, int]], int, int]:
        """The records logged past ``at`` (the log emptied ``emptied``
        times then; all of them if it was emptied since): ``(sha, body or
        None, number)`` each, then the emptied count and place to read on from."""
        if self._number[2] == emptied and self._number[1] == at:
            # Nothing logged since (an EVALSHA of an unknown script, which
            # clients send first on purpose, looks here): no lock taken.  A
            # record or flush whose length or count is not stored yet is
            # one whose reply was not sent yet either.
            return [], emptied, at
        fcntl.lockf(self.fd, fcntl.LOCK_SH)
        try:
            if self._number[2] != emptied:
                emptied, at = self._number[2], 0
            end = self._number[1]
            data = os.pread(self.fd, end - at, _SIZE + at) if end > at else b""
        finally:
            fcntl.lockf(self.fd, fcntl.LOCK_UN)
        records = []
        i = 0
        while i < len(data):
            number, size = _RECORD.unpack_from(data, i)
            i += _RECORD.size
            sha = data[i : i + _SHA]
            i += _SHA
            body = None
            if size >= 0:
                body = data[i : i + size]
                i += size
            records.append((sha, body, number))
        return records, emptied, end

    def current(self) -> int:
        """The last SCRIPT FLUSH's number (0: none yet)."""
        return self._number[0]

    def close(self) -> None:
        self._number.release()
        self._map.close()
        os.close(self.fd)


def _attach(dup: Any) -> ScriptFlushes:
    return ScriptFlushes(dup.detach())
