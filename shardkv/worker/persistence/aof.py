"""The append-only file: what a shard logs, how it is written, how it is read.

Format
------
Each record is one command as a RESP array of bulk strings, exactly as in
Redis's AOF (``*3\\r\\n$3\\r\\nSET\\r\\n$1\\r\\nk\\r\\n$1\\r\\nv\\r\\n``).  Records
that must apply together (the re-creation of a container, the results of
a cross-shard operation) are wrapped in ``MULTI`` ... ``EXEC``; on load, a
``MULTI`` with no ``EXEC`` at the end of the file is a torn write.

What is logged
--------------
The log holds what the shard *did*, so that replaying it in order, on the
state the log started from, gives the same state:

* A write command that is deterministic and needs no clock is logged as
  it was sent (``verbatim``): DEL, SETNX, APPEND, INCR, MSET, HSET, LPUSH,
  SADD, ZADD, RENAME, COPY, FLUSHALL...  Replay runs it through the same
  handler, on the same state, with the same result.
* A command whose effect depends on the clock or on chance is logged as
  its effect, by the recorder registered in :data:`RECORDERS`:

  ==================================  ========================================
  command                             logged as
  ==================================  ========================================
  SET ... EX/PX, SETEX, PSETEX         ``SET key value PXAT <ms>``
  EXPIRE, PEXPIRE, EXPIREAT, GETEX...  ``PEXPIREAT key <ms>``, ``PERSIST`` or
                                       ``DEL`` (whatever the key ended as)
  INCRBYFLOAT                          ``SET key result KEEPTTL``
  HINCRBYFLOAT                         ``HSET key field result``
  SPOP                                 ``SREM key member...`` (those removed)
  BLPOP/BRPOP/BLMPOP, BLMOVE...        ``LPOP``/``RPOP``/``LMOVE`` as served
  BZPOPMIN/BZPOPMAX/BZMPOP             ``ZREM key member...`` (those removed)
  RESTORE                              the key's resulting state
  ==================================  ========================================

  A key's *state* is logged as ``DEL`` when it is gone, and otherwise as
  commands that re-create it from nothing: ``SET`` (with ``PXAT``) for a
  string; ``DEL`` then ``HSET``/``RPUSH``/``SADD``/``ZADD`` in chunks, then
  ``PEXPIREAT``, for a container.
* ``SELECT <db>`` precedes the records of a database other than the one
  the file is in, as in Redis; a file starts in database 0.
* A key that expires (lazily or by the active cycle) is logged as ``DEL``,
  as Redis propagates expiries, so a later command that re-creates the key
  replays on the same (missing) key.
* Replay never expires anything (as Redis does not while loading): every
  deadline in the log is absolute, and a key whose deadline has passed is
  removed once loading is done.

Reading
-------
:func:`read_records` yields ``(n, args)`` for each record, parsed by
hiredis.  A file that ends inside a record (a torn write, or zero bytes a
crash left) raises :class:`TornTail` with the offset of the end of the last
whole record; anything else that is not a RESP array of bulk strings raises
:class:`AofError` with its offset.  Offsets come from a second, exact scan
in Python, which only a damaged file pays for.
"""

from __future__ import annotations

import marshal
import mmap
import os
import threading
from collections.abc import Callable, Iterator

from shardkv.protocol import commands
from shardkv.protocol.wire import Verb
from shardkv.worker.keyspace import Keyspace
from shardkv.worker.registry import command
from shardkv.worker.transfer import State, export_key, import_key

try:
    from hiredis import ProtocolError as _ProtocolError
    from hiredis import Reader as _Reader
except ImportError:  # pragma: no cover - hiredis is a dependency
    _Reader = None  # type: ignore[assignment, misc]
    _ProtocolError = Exception  # type: ignore[assignment, misc]

Record = list  # a command's arguments, name first, all bytes
Recorder = Callable[[Keyspace, list, object], list]

CHUNK = 1024  # items per command when a container is re-created
READ_SIZE = 1 << 20
MULTI = b"*1\r\n$5\r\nMULTI\r\n"
EXEC = b"*1\r\n$4\r\nEXEC\r\n"


_FORMATS = {n: b"*%d\r\n" % n + b"$%d\r\n%s\r\n" * n for n in range(1, 33)}


def select_record(db: int) -> bytes:
    return b"*2\r\n$6\r\nSELECT\r\n$%d\r\n%d\r\n" % (len(b"%d" % db), db)


def encode(args: list[bytes]) -> bytes:
    """One record: a RESP array of bulk strings."""
    fmt = _FORMATS.get(len(args))
    if fmt is None:
        return b"*%d\r\n" % len(args) + b"".join([b"$%d\r\n%s\r\n" % (len(a), a) for a in args])
    parts: list[int | bytes] = []
    append = parts.append
    for a in args:
        append(len(a))
        append(a)
    return fmt % tuple(parts)  # one formatting for the whole record


# -- states as commands -------------------------------------------------------


def _score(value: float) -> bytes:
    return repr(float(value)).encode()


def _zset_pairs(plain: object) -> list[tuple[bytes, float]]:
    if isinstance(plain, dict):
        return list(plain.items())
    return [(m, s) for m, s in plain]  # type: ignore[attr-defined]


def state_records(key: bytes, state: State) -> list[Record]:
    """Commands that make ``key`` hold ``state``, whatever it held before."""
    if state is None:
        return [[b"DEL", key]]
    tag, plain, when = state
    if tag == "string":
        if when is None:
            return [[b"SET", key, plain]]
        return [[b"SET", key, plain, b"PXAT", b"%d" % when]]
    out: list[Record] = [[b"DEL", key]]
    if tag == "hash":
        items = [x for field, value in plain.items() for x in (field, value)]
        out += [[b"HSET", key, *items[i : i + 2 * CHUNK]] for i in range(0, len(items), 2 * CHUNK)]
    elif tag == "list":
        items = list(plain)
        out += [[b"RPUSH", key, *items[i : i + CHUNK]] for i in range(0, len(items), CHUNK)]
    elif tag == "set":
        items = list(plain)
        out += [[b"SADD", key, *items[i : i + CHUNK]] for i in range(0, len(items), CHUNK)]
    elif tag == "zset":
        items = [x for member, score in _zset_pairs(plain) for x in (_score(score), member)]
        out += [[b"ZADD", key, *items[i : i + 2 * CHUNK]] for i in range(0, len(items), 2 * CHUNK)]
    else:  # a type with no Redis command to re-create it: our own record
        return [[Verb.STATE, key, marshal.dumps(state)]]
    if when is not None:
        out.append([b"PEXPIREAT", key, b"%d" % when])
    return out


@command(Verb.STATE)
def state_command(ks: Keyspace, args: list[bytes]) -> object:
    """__state key payload: make ``key`` hold a marshalled state (replay only)."""
    import_key(ks, args[1], marshal.loads(args[2]))
    return "OK"


def key_records(ks: Keyspace, key: bytes) -> list[Record]:
    return state_records(key, export_key(ks, key))


# -- recorders: commands logged as their effect --------------------------------


def _keys_state(ks: Keyspace, args: list, reply: object) -> list[Record]:
    """The resulting state of every key the command names."""
    cmd = commands.lookup(args[0])
    out: list[Record] = []
    for key in dict.fromkeys(cmd.keys(args) if cmd is not None else []):
        out += key_records(ks, key)
    return out


def _key_ttl(ks: Keyspace, key: bytes) -> list[Record]:
    if ks.lookup(key) is None:
        return [[b"DEL", key]]
    when = ks.get_expire(key)
    if when is None:
        return [[b"PERSIST", key]]
    return [[b"PEXPIREAT", key, b"%d" % when]]


def _record_set(ks: Keyspace, args: list, reply: object) -> list[Record]:
    if len(args) == 3:
        return [args]
    opts = {a.upper() for a in args[3:]}
    if reply is None and b"GET" not in opts:
        return []  # NX or XX said no: nothing changed
    if b"EX" in opts or b"PX" in opts:
        return key_records(ks, args[1])
    return [args]


def _record_expire(ks: Keyspace, args: list, reply: object) -> list[Record]:
    if reply == 0:
        return []
    return _key_ttl(ks, args[1])


def _record_getex(ks: Keyspace, args: list, reply: object) -> list[Record]:
    if reply is None or len(args) == 2:
        return []
    return _key_ttl(ks, args[1])


def _record_incrbyfloat(ks: Keyspace, args: list, reply: object) -> list[Record]:
    return [[b"SET", args[1], reply, b"KEEPTTL"]]


def _record_hincrbyfloat(ks: Keyspace, args: list, reply: object) -> list[Record]:
    return [[b"HSET", args[1], args[2], reply]]


def _record_spop(ks: Keyspace, args: list, reply: object) -> list[Record]:
    if reply is None:
        return []
    members = [reply] if type(reply) is bytes else list(reply)  # type: ignore[call-overload]
    return [[b"SREM", args[1], *members]] if members else []


def _served(reply: object) -> bool:
    return isinstance(reply, (list, tuple)) and len(reply) >= 2 and type(reply[0]) is bytes


def _pop_as(name: bytes) -> Recorder:
    """BLPOP/BRPOP: served from one key, logged as LPOP/RPOP of that key."""

    def record(ks: Keyspace, args: list, reply: object) -> list[Record]:
        if not _served(reply):
            return [] if reply is None else _keys_state(ks, args, reply)
        return [[name, reply[0]]]  # type: ignore[index]

    return record


def _record_blmove(ks: Keyspace, args: list, reply: object) -> list[Record]:
    if type(reply) is not bytes:
        return [] if reply is None else _keys_state(ks, args, reply)
    if args[0].lower() == b"brpoplpush":
        return [[b"RPOPLPUSH", args[1], args[2]]]
    return [[b"LMOVE", *args[1:5]]]


def _record_blmpop(ks: Keyspace, args: list, reply: object) -> list[Record]:
    if not _served(reply) or not isinstance(reply[1], (list, tuple)):  # type: ignore[index]
        return [] if reply is None else _keys_state(ks, args, reply)
    left = any(a.upper() == b"LEFT" for a in args[3:])
    return [[b"LPOP" if left else b"RPOP", reply[0], b"%d" % len(reply[1])]]  # type: ignore[index]


def _record_zpop_blocking(ks: Keyspace, args: list, reply: object) -> list[Record]:
    if reply is None:
        return []
    if _served(reply):
        key, rest = reply[0], reply[1:]  # type: ignore[index]
        if len(rest) == 2 and type(rest[0]) is bytes:  # BZPOPMIN: key, member, score
            return [[b"ZREM", key, rest[0]]]
        if len(rest) == 1:  # BZMPOP: key, [[member, score]...] or {member: score}
            items = rest[0]
            members = list(items) if isinstance(items, dict) else [p[0] for p in items]
            return [[b"ZREM", key, *members]] if members else []
    return _keys_state(ks, args, reply)


RECORDERS: dict[str, Recorder] = {
    "set": _record_set,
    "setex": _keys_state,
    "psetex": _keys_state,
    "getex": _record_getex,
    "expire": _record_expire,
    "pexpire": _record_expire,
    "expireat": _record_expire,
    "pexpireat": _record_expire,
    "incrbyfloat": _record_incrbyfloat,
    "hincrbyfloat": _record_hincrbyfloat,
    "spop": _record_spop,
    "restore": _keys_state,
    "blpop": _pop_as(b"LPOP"),
    "brpop": _pop_as(b"RPOP"),
    "blmove": _record_blmove,
    "brpoplpush": _record_blmove,
    "blmpop": _record_blmpop,
    "bzpopmin": _record_zpop_blocking,
    "bzpopmax": _record_zpop_blocking,
    "bzmpop": _record_zpop_blocking,
}

READ = 0  # not a write: nothing to log
VERBATIM = 1  # logged as sent


def classify(name: bytes) -> int | Recorder:
    """READ, VERBATIM, or the recorder of the command called ``name``."""
    if name == Verb.FUNCTION:  # FUNCTION's changes, logged as Redis logs them
        from shardkv.worker.functions import function_records

        return function_records
    cmd = commands.lookup(name)
    if cmd is None or (not cmd.is_write and cmd.name not in RECORDERS):
        return READ  # (a read-only command with a recorder may write: PFCOUNT's cache)
    return RECORDERS.get(cmd.name, VERBATIM)


# -- writing -------------------------------------------------------------------


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
        is tried again too."""
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
                written += os.write(self.fd, view[written:])
        except OSError as e:
            # Keep what was not written; the next flush tries again.
            self.buf = [bytes(view[written:])]
            self.size += written
            self.write_error = e.strerror or str(e)
            raise
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
            raise
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


# -- reading -------------------------------------------------------------------


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
