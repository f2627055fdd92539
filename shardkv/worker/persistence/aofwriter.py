"""Writing the AOF: buffered records appended to one file with Redis's
fsync policies (``always``, ``everysec``, ``no``)."""

from __future__ import annotations

import errno
import os
import threading

from shardkv.protocol.decisions import ShortWrite, write_some


class FsyncFailed(OSError):
    """An fsync of the AOF that failed under ``appendfsync always``, told
    apart from a failed write: Redis logs each in its own words."""


class AofWriter:
    """Appends records to one file with Redis's fsync policies.

    ``always``: :meth:`flush` writes and fsyncs, and the worker flushes
    before any reply leaves, so a reply means the write is on disk (one
    fsync per batch: group commit).  ``everysec``: :meth:`flush` writes,
    and a thread fsyncs once a second when there is something to sync.
    ``no``: :meth:`flush` writes; the OS decides when it reaches the disk.
    In every mode the data is written (to the OS) before the reply leaves,
    so a worker that crashes loses nothing it acknowledged.
    """

    def __init__(self, path: str, policy: str) -> None:
        self.path = path
        self.policy = policy
        self.fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        self.size = os.fstat(self.fd).st_size
        self.buf: list[bytes] = []
        # The database the records now in the file are in: each file starts
        # in database 0 (replay starts each file there too).
        self.db = 0
        self.unsynced = False  # written since the last fsync
        self.write_error: str | None = None  # strerror of a failed write or fsync
        self.fsync_error: str | None = None  # the everysec thread's, likewise
        self.last_fsync = 0.0
        self._lock = threading.Lock()  # held while fsyncing or swapping fd
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._start_thread()

    def _start_thread(self) -> None:
        if self.policy == "everysec" and self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(target=self._sync_every_second, name="aof-fsync", daemon=True)
            self._thread.start()

    def set_policy(self, policy: str) -> None:
        self.policy = policy
        if policy == "everysec":
            self._start_thread()
        elif self._thread is not None:
            self._stop.set()
            self._thread.join()
            self._thread = None

    def _sync_every_second(self) -> None:
        import time

        while not self._stop.wait(1.0):
            if self.unsynced:
                self.unsynced = False
                with self._lock:
                    if self.fd >= 0:
                        try:
                            os.fsync(self.fd)
                            self.last_fsync = time.time()
                            self.fsync_error = None
                        except OSError as e:
                            self.unsynced = True
                            self.fsync_error = e.strerror or str(e)

    def flush(self) -> None:
        """Write what is buffered; with ``always``, fsync it too.

        On an error (a full disk, an I/O error) what was not written stays
        buffered, ``write_error`` says why, and the next call tries again,
        as Redis retries ``aof_buf``; with ``always`` an fsync that failed
        is tried again too.  A write cut short after some bytes raises
        :class:`~shardkv.protocol.decisions.ShortWrite` (``ENOSPC``), and,
        as Redis's flushAppendOnlyFile does, the bytes it wrote are first
        cut off the file again (``ftruncate`` to the size before it), so
        that the file ends on a whole record and all of it stays buffered;
        if that fails too (``ShortWrite.truncate_error`` says why), the
        part written stays in the file and the rest buffered, to be
        written after it."""
        buf = self.buf
        if not buf:
            if self.write_error is not None and self.policy == "always" and self.unsynced:
                self._fsync_always()
            return
        data = b"".join(buf) if len(buf) > 1 else buf[0]
        view = memoryview(data)
        written = 0
        try:
            while written < len(data):
                written += write_some(self.fd, view[written:])
        except OSError as e:
            # Keep what was not written; the next flush tries again.
            self.buf = [data]
            if not written:
                self.write_error = e.strerror or str(e)
                raise
            # A short write: ENOSPC whatever cut it, as Redis's flushAppendOnlyFile.
            self.write_error = os.strerror(errno.ENOSPC)
            short = ShortWrite(self.path, written, len(data), "the AOF file")
            try:
                os.ftruncate(self.fd, self.size)  # a record cut in two would end the file
            except OSError as t:
                short.truncate_error = t.strerror or str(t)
                self.buf = [bytes(view[written:])]
                self.size += written
            raise short from e
        buf.clear()
        self.size += written
        self.unsynced = True
        if self.policy == "always":
            self._fsync_always()
        else:
            self.write_error = None

    def _fsync_always(self) -> None:
        try:
            os.fsync(self.fd)
        except OSError as e:
            self.write_error = e.strerror or str(e)
            raise FsyncFailed(e.errno, e.strerror) from e
        self.unsynced = False
        self.write_error = None

    @property
    def failing(self) -> str | None:
        """Why the AOF cannot be written or synced now, or None."""
        return self.write_error or self.fsync_error

    def switch(self, path: str) -> None:
        """Go on appending to the file at ``path`` (a new incr file).

        The old file is fsynced and closed by a thread, as Redis does, so
        that the worker does not wait for the disk here.
        """
        self.flush()
        self.db = 0
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        with self._lock:
            old, self.fd = self.fd, fd
        unsynced = self.unsynced
        self.path = path
        self.size = os.fstat(fd).st_size
        self.unsynced = False
        if unsynced:
            threading.Thread(target=_fsync_and_close, args=(old,), name="aof-close", daemon=True).start()
        else:
            os.close(old)

    def sync(self) -> None:
        """Write and fsync everything now."""
        self.flush()
        self.fsync()

    def fsync(self) -> None:
        """fsync what has been written (not what is still buffered)."""
        with self._lock:
            os.fsync(self.fd)
        self.unsynced = False

    def close(self) -> None:
        if self._thread is not None:
            self._stop.set()
            self._thread.join()
            self._thread = None
        with self._lock:
            if self.fd >= 0:
                os.close(self.fd)
                self.fd = -1


def _fsync_and_close(fd: int) -> None:
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def unlink_later(paths: list[str]) -> None:
    """Remove files from a thread: freeing a big file's blocks takes a while."""

    def run() -> None:
        for path in paths:
            try:
                os.unlink(path)
            except OSError:
                pass

    if paths:
        threading.Thread(target=run, name="aof-unlink", daemon=True).start()
