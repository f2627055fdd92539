"""Reading the acceptor's frames off a worker's pipe with few system calls."""

from __future__ import annotations

import os
import select
import socket
import struct
import time
from multiprocessing.connection import Connection

from shardkv.protocol.wire import FRAME

_READ_SIZE = 1 << 18


class FrameReader:
    """Reads ``Connection`` frames (4-byte big-endian length, payload) with
    as few system calls as possible: one ``recv`` takes whatever the
    acceptor has written, often several frames, and ``poll`` answers from
    the buffer when it can.  ``Connection.recv_bytes`` makes two reads per
    frame and ``Connection.poll`` one more, which costs a lot per batch.
    :meth:`wait` is the busy worker's way to wait: one blocking ``recv``.
    """

    def __init__(self, conn: Connection) -> None:
        # Blocking, like the Connection it shares its file with (O_NONBLOCK
        # would be shared too, and break send_bytes); reads that must not
        # wait use MSG_DONTWAIT.
        self.sock = socket.socket(fileno=os.dup(conn.fileno()))
        self.buf = bytearray()
        self.pos = 0
        # recv() of a fresh 256 KB bytes costs an mmap, an mremap and a
        # munmap per call; reading into one buffer costs none.
        self._chunk = memoryview(bytearray(_READ_SIZE))
        self.period = 0.0  # SO_RCVTIMEO, which bounds wait()

    def set_period(self, period: float) -> None:
        """Make :meth:`wait` give up after ``period`` seconds."""
        if period != self.period:
            self.period = period
            usec = max(int(period * 1e6), 1000)
            self.sock.setsockopt(
                socket.SOL_SOCKET, socket.SO_RCVTIMEO, struct.pack("ll", usec // 1_000_000, usec % 1_000_000)
            )

    def wait(self) -> bool:
        """Is a whole frame ready, waiting up to :attr:`period` for data?

        A plain blocking ``recv`` bounded by SO_RCVTIMEO: one system call
        when the acceptor keeps the worker busy, where :meth:`poll` needs a
        ``recv`` that finds nothing, a ``select`` and a second ``recv``.
        """
        while not self.has_frame():
            try:
                n = self.sock.recv_into(self._chunk, _READ_SIZE)
            except BlockingIOError:  # SO_RCVTIMEO ran out
                return False
            self._append(n)
        return True

    def has_frame(self) -> bool:
        """Is a whole frame already read (no system call)?"""
        buf, pos = self.buf, self.pos
        if len(buf) - pos < 4:
            return False
        return len(buf) - pos - 4 >= FRAME.unpack_from(buf, pos)[0]

    def next_kind(self) -> int:
        """The kind (first byte) of the next frame if it is whole already
        (no system call), else -1."""
        if not self.has_frame():
            return -1
        pos = self.pos
        return self.buf[pos + 4] if FRAME.unpack_from(self.buf, pos)[0] else -1

    def fill(self) -> bool:
        """Read what is there without waiting (one ``recv``); False if
        nothing was, EOFError if the other end has closed.  For a loop that
        was told by ``poll``/``epoll`` that the pipe is readable."""
        try:
            n = self.sock.recv_into(self._chunk, _READ_SIZE, socket.MSG_DONTWAIT)
        except BlockingIOError:
            return False
        self._append(n)
        return True

    def _append(self, n: int) -> None:
        if not n:
            raise EOFError
        if self.pos:
            del self.buf[: self.pos]
            self.pos = 0
        self.buf += self._chunk[:n]

    def poll(self, timeout: float = 0.0) -> bool:
        """Is a whole frame ready, waiting up to ``timeout`` seconds?"""
        if self.has_frame():
            return True
        deadline = time.monotonic() + timeout
        while True:
            if self.fill():
                if self.has_frame():
                    return True
                continue
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            ready, _, _ = select.select([self.sock], [], [], left)
            if not ready:
                return False

    def recv(self) -> bytes:
        """The next frame's payload, waiting for it: a blocking ``recv``
        (one system call where ``fill`` and ``select`` took three, for a
        parked shard waiting for its operation's next message), again each
        time SO_RCVTIMEO runs out."""
        while not self.has_frame():
            try:
                n = self.sock.recv_into(self._chunk, _READ_SIZE)
            except BlockingIOError:  # SO_RCVTIMEO ran out: wait on
                continue
            self._append(n)
        return self.pop()

    def pop(self) -> bytes:
        """The next frame's payload, once :meth:`has_frame` said it is read."""
        pos = self.pos
        (size,) = FRAME.unpack_from(self.buf, pos)
        payload = bytes(self.buf[pos + 4 : pos + 4 + size])
        self.pos = pos + 4 + size
        if self.pos == len(self.buf):  # all read: let a large buffer go
            self.buf = bytearray()
            self.pos = 0
        return payload

    def close(self) -> None:
        self.sock.close()
