"""A disk that cannot take the writes: Redis's -MISCONF, and nothing lost.

Each test mounts a small tmpfs (the tests run as root in CI; elsewhere
they are skipped, saying why), fills it, and checks what Redis does:
writes are refused with -MISCONF in Redis's words, reads go on, INFO
persistence tells the truth, no acknowledged write is lost, and writing
resumes by itself once the disk has room again.  With ``appendfsync
always`` Redis exits (status 1) on such an error, and so does shardkv.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from tests.support.acceptors import acceptor_of
from tests.support.servers import start_redis, start_shardkv

pytestmark = pytest.mark.slow

AOF_FULL = "MISCONF Errors writing to the AOF file: No space left on device"
RDB_FAILED = (
    "MISCONF Redis is configured to save RDB snapshots, but it's currently unable to persist to disk. "
    "Commands that may modify the data set are disabled, because this instance is configured to report "
    "errors during writes if RDB snapshotting fails (stop-writes-on-bgsave-error option). "
    "Please check the Redis logs for details about the RDB error."
)
VALUE = b"v" * 400


@pytest.fixture
def small_disk(tmp_path) -> Iterator[Path]:
    """A 1 MB tmpfs; ``grow(small_disk)`` gives it room later."""
    where = tmp_path / "disk"
    where.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(where)], capture_output=True)
    if done.returncode:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


def grow(where: Path) -> None:
    subprocess.run(["mount", "-o", "remount,size=16m", str(where)], check=True)


def fill(c: redis.Redis, prefix: str, limit: int = 20000) -> tuple[list[str], set[str]]:
    """SET until 20 writes in a row are refused (each shard's file may have
    room for a few more records once another's is refused): the keys
    acknowledged, and the errors seen."""
    acked, errors, refused = [], set(), 0
    for i in range(limit):
        key = f"{prefix}{i}"
        try:
            c.set(key, VALUE)
        except redis.ResponseError as e:
            errors.add(str(e))
            refused += 1
            if refused == 20:
                return acked, errors
            continue
        acked.append(key)
        refused = 0
    raise AssertionError("the disk never filled")


def fail_a_bgsave(c: redis.Redis, prefix: str) -> float:
    """Write 2.4 MB of incompressible values under ``prefix`` (more than the
    small disk holds), start a BGSAVE and wait until it has failed; returns
    the deadline (30 s from the start) for the caller's further waits."""
    pipe = c.pipeline(transaction=False)
    for i in range(6000):
        pipe.set(f"{prefix}{i}", os.urandom(400))
    pipe.execute()
    c.bgsave()
    deadline = time.monotonic() + 30
    while (info := c.info("persistence"))["rdb_last_bgsave_status"] != "err" or info[
        "rdb_bgsave_in_progress"
    ]:
        assert time.monotonic() < deadline, "the save did not fail"
        time.sleep(0.1)
    return deadline


def until_writable(c: redis.Redis, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            c.set("after", "1")
            return
        except redis.ResponseError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


@pytest.mark.parametrize("fsync", ["everysec", "no"])
def test_full_disk_refuses_writes_and_loses_nothing(small_disk, fsync):
    flags = ("--appendonly", "yes", "--appendfsync", fsync, "--dir", str(small_disk))
    server = start_shardkv(*flags, shards=2)
    try:
        c = redis.Redis(port=server.port)
        workers = {p.pid for p in psutil.Process(server.proc.pid).children()}
        acked, errors = fill(c, "k")
        assert errors == {AOF_FULL}
        assert len(acked) > 100
        assert c.get(acked[0]) == VALUE and c.get(acked[-1]) == VALUE  # reads go on
        assert c.info("persistence")["aof_last_write_status"] == "err"
        assert {p.pid for p in psutil.Process(server.proc.pid).children()} == workers  # no restarts
        grow(small_disk)
        until_writable(c)  # retried by itself
        assert c.info("persistence")["aof_last_write_status"] == "ok"
        c.set("last", "1")
    finally:
        server.stop()
    again = start_shardkv(*flags, shards=2)
    try:
        c = redis.Redis(port=again.port)
        values = c.mget(acked)
        assert [k for k, v in zip(acked, values, strict=True) if v != VALUE] == []  # none lost
        assert c.get("last") == b"1"
    finally:
        again.stop()


ALWAYS_EXIT = "Can't recover from AOF write error when the AOF fsync policy is 'always'. Exiting..."


@pytest.mark.parametrize("kind", ["redis", "shardkv"])
def test_full_disk_with_appendfsync_always_stops_the_server_and_loses_nothing(small_disk, kind):
    """As Redis's flushAppendOnlyFile: with ``appendfsync always`` a write
    the AOF cannot take cannot be answered (a reply means "on disk") nor
    rolled back, so the server logs "Can't recover from AOF write error
    when the AOF fsync policy is 'always'. Exiting..." and exits with
    status 1; the client of the write sees its connection close, never an
    OK (shardkv's acceptor may answer it "-ERR shard unavailable" first, as
    for any worker that dies: still no OK).  A start with room again has
    every acknowledged write.  Before, shardkv's shard answered -MISCONF
    and served on."""
    flags = ("--appendonly", "yes", "--appendfsync", "always", "--dir", str(small_disk))
    server = start_redis(*flags) if kind == "redis" else start_shardkv(*flags, shards=2)
    c = redis.Redis(port=server.port, retry=Retry(NoBackoff(), 0))  # the write is not sent again
    acked: list[str] = []
    try:
        ended = None
        for i in range(20000):
            try:
                assert c.set(f"k{i}", VALUE)
            except redis.ConnectionError:
                ended = "closed"
                break
            except redis.ResponseError as e:
                ended = str(e)
                break
            acked.append(f"k{i}")
        assert ended in (("closed",) if kind == "redis" else ("closed", "shard unavailable"))
        assert len(acked) > 100
        server.proc.wait(10)  # raises TimeoutExpired if it serves on
        assert server.proc.returncode == 1
        output = server.output()
        assert ALWAYS_EXIT in output and "Traceback" not in output, output
    finally:
        c.close()
        server.stop()
    grow(small_disk)
    again = start_redis(*flags) if kind == "redis" else start_shardkv(*flags, shards=2)
    try:
        c = redis.Redis(port=again.port)
        values = c.mget(acked)
        assert [k for k, v in zip(acked, values, strict=True) if v != VALUE] == []  # none lost
        c.set("last", "1")  # the AOF it loaded goes on
        assert c.get("last") == b"1"
    finally:
        again.stop()


def test_full_disk_error_as_redis_words_it(small_disk, tmp_path):
    """redis-server on the same kind of disk refuses with the same text."""
    real = start_redis("--appendonly", "yes", "--dir", str(small_disk))
    try:
        c = redis.Redis(port=real.port)
        acked, errors = fill(c, "k")
        assert errors == {AOF_FULL}
        assert c.get(acked[0]) == VALUE
        assert c.info("persistence")["aof_last_write_status"] == "err"
    finally:
        real.stop()


@pytest.mark.parametrize("kind", ["redis", "shardkv"])
def test_failed_bgsave_refuses_writes_until_a_save_works(small_disk, kind):
    """With save rules, a background save that failed makes writes -MISCONF
    (stop-writes-on-bgsave-error), reads go on; a save that works ends it."""
    flags = ("--dir", str(small_disk), "--save", "3600 1")
    server = start_redis(*flags) if kind == "redis" else start_shardkv(*flags, shards=2)
    try:
        c = redis.Redis(port=server.port)
        fail_a_bgsave(c, "k")
        with pytest.raises(redis.ResponseError) as refused:
            c.set("x", "1")
        assert str(refused.value) == RDB_FAILED
        assert c.strlen("k0") == 400
        grow(small_disk)
        c.bgsave()
        until_writable(c)
        assert c.info("persistence")["rdb_last_bgsave_status"] == "ok"
    finally:
        server.stop()


@pytest.mark.parametrize("kind", ["redis", "shardkv"])
def test_a_failed_bgsave_refuses_every_write_not_only_its_shards(small_disk, kind):
    """Redis refuses every write while its last background save failed.
    Here only shard 1's data ({a}) is more than the disk holds, so only its
    save fails: a write to a key of shard 0 ({b}) is refused all the same,
    and once a save has worked, a write that is accepted means that INFO
    says ``ok`` (shard 1's save, not only shard 0's, is done).  Before, the
    write to shard 0 was accepted, so such a write could be acknowledged
    while shard 1 still said ``err``."""
    flags = ("--dir", str(small_disk), "--save", "3600 1")
    server = start_redis(*flags) if kind == "redis" else start_shardkv(*flags, shards=2)
    try:
        c = redis.Redis(port=server.port)
        fail_a_bgsave(c, "{a}")
        for key in ("{a}x", "{b}x"):
            with pytest.raises(redis.ResponseError) as refused:
                c.set(key, "1")
            assert str(refused.value) == RDB_FAILED
        assert c.strlen("{a}0") == 400
        grow(small_disk)
        c.config_set("rdb-key-save-delay", "100")  # shard 1's save: 6000 keys, 0.6 s at least
        c.bgsave()
        deadline = time.monotonic() + 30
        while True:
            try:
                c.set("{b}x", "1")
                break
            except redis.ResponseError as e:
                assert str(e) == RDB_FAILED
                assert time.monotonic() < deadline, "writes never resumed"
                time.sleep(0.02)
        assert c.info("persistence")["rdb_last_bgsave_status"] == "ok"
    finally:
        server.stop()


def _say(conn: redis.Connection, *args: str) -> object:
    """One command on a raw connection: its reply, or ("error", text)."""
    conn.send_command(*args)
    try:
        return conn.read_response()
    except redis.ResponseError as e:
        return ("error", str(e))


@pytest.mark.parametrize("kind", ["redis", "shardkv"])
def test_ping_and_transactions_are_refused_while_writes_are(small_disk, kind):
    """As Redis's processCommand: once writes are refused for a disk error,
    PING is refused too; a write queued in MULTI is refused and EXEC then
    aborts; an EXEC whose queue holds a write queued earlier aborts with the
    reason; a transaction of reads still runs."""
    flags = ("--dir", str(small_disk), "--save", "3600 1")
    server = start_redis(*flags) if kind == "redis" else start_shardkv(*flags, shards=2)
    try:
        c = redis.Redis(port=server.port)
        early = redis.Connection(port=server.port)
        assert _say(early, "MULTI") == b"OK"
        assert _say(early, "SET", "queued", "1") == b"QUEUED"
        fail_a_bgsave(c, "k")
        conn = redis.Connection(port=server.port)
        assert _say(conn, "PING") == ("error", RDB_FAILED)
        assert _say(conn, "PING", "hello") == ("error", RDB_FAILED)
        assert _say(early, "EXEC") == ("error", "Transaction discarded because of: " + RDB_FAILED)
        assert _say(early, "GET", "queued") is None  # it never ran
        assert _say(conn, "MULTI") == b"OK"
        assert _say(conn, "GET", "k0") == b"QUEUED"
        assert _say(conn, "SET", "x", "1") == ("error", RDB_FAILED)
        assert _say(conn, "EXEC") == ("error", "Transaction discarded because of previous errors.")
        assert _say(conn, "MULTI") == b"OK"
        assert _say(conn, "STRLEN", "k0") == b"QUEUED"
        assert _say(conn, "EXEC") == [400]  # reads still run
        assert _say(conn, "SET", "x", "1") == ("error", RDB_FAILED)
        grow(small_disk)
        c.bgsave()
        until_writable(c)
        # With several acceptors, ``conn``'s may be another than ``c``'s: it
        # learns that the shards can write again from their next frame or
        # tick (``Pipes._timers``), not at the instant ``c``'s did.
        deadline = time.monotonic() + 5
        while (pong := _say(conn, "PING")) != b"PONG" and time.monotonic() < deadline:
            assert pong == ("error", RDB_FAILED)
            time.sleep(0.05)
        assert pong == b"PONG"
        early.disconnect()
        conn.disconnect()
    finally:
        server.stop()


_LIBRARY = (
    "#!lua name=disklib\n"
    "redis.register_function('w', function(k) return redis.call('set', k[1], '1') end)\n"
    "redis.register_function{function_name='r', callback=function(k) return 1 end, flags={'no-writes'}}"
)


def _script_error(body: str) -> tuple[str, str]:
    sha = hashlib.sha1(body.encode()).hexdigest()
    return ("error", f"{RDB_FAILED} script: {sha}, on @user_script:1.")


@pytest.mark.parametrize("kind", ["redis", "shardkv"])
def test_scripts_cannot_write_while_a_shard_cannot_persist(small_disk, kind):
    """Redis refuses a script's writes too while a background save failed:
    a script with flags that may write (a shebang without ``no-writes``, a
    function without it) before it starts, even with EVAL_RO/FCALL_RO, and
    inside MULTI as it is queued; a script without a shebang at its first
    write call (redis.call raises, redis.pcall returns the error).  Here
    only shard 1's ({a}) save fails and the scripts' key is on shard 0
    ({b}): before, shardkv ran their writes there and answered OK."""
    flags = ("--dir", str(small_disk), "--save", "3600 1")
    server = start_redis(*flags) if kind == "redis" else start_shardkv(*flags, shards=2)
    try:
        c = redis.Redis(port=server.port)
        c.function_load(_LIBRARY)
        deadline = fail_a_bgsave(c, "{a}")
        conn = redis.Connection(port=server.port)
        while _say(conn, "PING") != ("error", RDB_FAILED):  # another acceptor hears it too
            assert time.monotonic() < deadline, "PING was never refused"
            time.sleep(0.05)
        call = "return redis.call('set', KEYS[1], '1')"
        assert _say(conn, "EVAL", call, "1", "{b}y") == _script_error(call)
        assert _say(conn, "EVAL", "return redis.pcall('set', KEYS[1], '1')", "1", "{b}y") == (
            "error",
            RDB_FAILED,
        )
        caught = "local ok, e = pcall(redis.call, 'set', KEYS[1], '1'); return tostring(e)"
        assert _say(conn, "EVAL", caught, "1", "{b}y") == RDB_FAILED.encode()
        assert _say(conn, "EVAL", "return redis.call('get', KEYS[1])", "1", "{b}y") is None  # reads run
        assert _say(conn, "EVAL", "#!lua\n" + call, "1", "{b}y") == ("error", RDB_FAILED)
        assert _say(conn, "EVAL_RO", "#!lua\nreturn 1", "0") == ("error", RDB_FAILED)
        assert _say(conn, "EVAL", "#!lua flags=no-writes\nreturn 1", "0") == 1
        sha = c.script_load("#!lua\nreturn 2")
        assert _say(conn, "EVALSHA", sha, "0") == ("error", RDB_FAILED)
        assert _say(conn, "FCALL", "w", "1", "{b}y") == ("error", RDB_FAILED)
        assert _say(conn, "FCALL_RO", "w", "1", "{b}y") == ("error", RDB_FAILED)
        assert _say(conn, "FCALL", "r", "1", "{b}y") == 1
        assert _say(conn, "MULTI") == b"OK"
        assert _say(conn, "EVAL", "#!lua\nreturn 1", "0") == ("error", RDB_FAILED)
        assert _say(conn, "EXEC") == ("error", "Transaction discarded because of previous errors.")
        assert _say(conn, "MULTI") == b"OK"
        assert _say(conn, "EVAL", call, "1", "{b}y") == b"QUEUED"
        replies = _say(conn, "EXEC")
        assert [(type(r), str(r)) for r in replies] == [(redis.ResponseError, _script_error(call)[1])]  # type: ignore[union-attr]
        assert c.get("{b}y") is None  # nothing was written
        conn.disconnect()
    finally:
        server.stop_unsaved()  # its disk still cannot take a save


@pytest.mark.parametrize("kind", ["redis", "shardkv"])
def test_a_write_function_queued_in_multi_is_refused_as_queued(small_disk, kind):
    """Redis counts an FCALL (or FCALL_RO) of a function without
    ``no-writes`` as a write (fcallGetCommandFlags): while writes are
    refused, one queued in MULTI gets -MISCONF and EXEC aborts, and an EXEC
    whose queue took one before the failed save aborts with the reason.
    Before, shardkv queued it (the acceptor did not know the function's
    flags) and EXEC's reply held the worker's -MISCONF."""
    flags = ("--dir", str(small_disk), "--save", "3600 1")
    server = start_redis(*flags) if kind == "redis" else start_shardkv(*flags, shards=2)
    try:
        c = redis.Redis(port=server.port)
        c.function_load(_LIBRARY)
        early = redis.Connection(port=server.port)
        assert _say(early, "MULTI") == b"OK"
        assert _say(early, "FCALL", "w", "1", "{b}y") == b"QUEUED"
        deadline = fail_a_bgsave(c, "{a}")
        conn = redis.Connection(port=server.port)
        while _say(conn, "PING") != ("error", RDB_FAILED):  # another acceptor hears it too
            assert time.monotonic() < deadline, "PING was never refused"
            time.sleep(0.05)
        # shardkv's acceptor asks a worker which functions may write as it
        # hears of the failed save: an FCALL queued before the answer is not
        # refused yet (a documented window).
        while True:
            assert _say(conn, "MULTI") == b"OK"
            queued = _say(conn, "FCALL", "w", "1", "{b}y")
            assert _say(conn, "DISCARD") == b"OK"
            if queued == ("error", RDB_FAILED):
                break
            assert queued == b"QUEUED" and time.monotonic() < deadline, queued
            time.sleep(0.05)
        assert _say(early, "EXEC") == ("error", "Transaction discarded because of: " + RDB_FAILED)
        for name in ("FCALL", "FCALL_RO"):
            assert _say(conn, "MULTI") == b"OK"
            assert _say(conn, name, "r", "1", "{b}y") == b"QUEUED"
            assert _say(conn, name, "w", "1", "{b}y") == ("error", RDB_FAILED)
            assert _say(conn, "EXEC") == ("error", "Transaction discarded because of previous errors.")
        assert _say(conn, "MULTI") == b"OK"
        assert _say(conn, "FCALL", "r", "1", "{b}y") == b"QUEUED"
        assert _say(conn, "FCALL", "nosuch", "0") == b"QUEUED"
        replies = _say(conn, "EXEC")
        assert [str(r) for r in replies] == ["1", "Function not found"]  # type: ignore[union-attr]
        assert c.get("{b}y") is None  # nothing was written
        early.disconnect()
        conn.disconnect()
    finally:
        server.stop_unsaved()  # its disk still cannot take a save


def _refuse_writes_by_a_missing_dir(c: redis.Redis, where: Path, port: int) -> redis.Connection:
    """Remove the server's ``--dir`` and fail a BGSAVE there: writes are
    then refused (stop-writes-on-bgsave-error).  A connection that sees it."""
    shutil.rmtree(where)
    c.config_set("save", "3600 1")
    c.bgsave()
    deadline = time.monotonic() + 30
    while (info := c.info("persistence"))["rdb_last_bgsave_status"] != "err" or info[
        "rdb_bgsave_in_progress"
    ]:
        assert time.monotonic() < deadline, "the save did not fail"
        time.sleep(0.05)
    conn = redis.Connection(port=port)
    while _say(conn, "PING") != ("error", RDB_FAILED):  # another acceptor hears it too
        assert time.monotonic() < deadline, "PING was never refused"
        time.sleep(0.05)
    return conn


@pytest.mark.parametrize("kind", ["redis", "shardkv"])
def test_stop_writes_on_bgsave_error_no_lets_writes_in_after_a_failed_save(tmp_path, kind):
    """CONFIG SET stop-writes-on-bgsave-error no: writes and PING are
    accepted again while the last save still failed; yes refuses them
    again.  shardkv's workers read the setting when they started only, so
    it went on refusing them."""
    where = tmp_path / "dir"
    where.mkdir()
    server = (
        start_redis("--dir", str(where)) if kind == "redis" else start_shardkv("--dir", str(where), shards=2)
    )
    try:
        c = redis.Redis(port=server.port)
        conn = _refuse_writes_by_a_missing_dir(c, where, server.port)
        c.config_set("stop-writes-on-bgsave-error", "no")
        until_writable(c)
        assert _say(conn, "PING") == b"PONG"
        assert c.info("persistence")["rdb_last_bgsave_status"] == "err"
        c.config_set("stop-writes-on-bgsave-error", "yes")
        deadline = time.monotonic() + 30
        while _say(conn, "SET", "x", "1") != ("error", RDB_FAILED):
            assert time.monotonic() < deadline, "writes were never refused again"
            time.sleep(0.05)
    finally:
        server.stop_unsaved()  # its disk still cannot take a save


_PIPELINE_AFTER_CONFIG = [
    ("PING",),
    ("SET", "a", "1"),
    ("EVAL", "return redis.call('set', KEYS[1], '1')", "1", "b"),
]


@pytest.mark.parametrize("kind,acceptors", [("redis", 1), ("shardkv", 1), ("shardkv", 2)])
def test_commands_pipelined_behind_stop_writes_on_bgsave_error_find_it_in_effect(tmp_path, kind, acceptors):
    """CONFIG SET stop-writes-on-bgsave-error, with commands in the same
    write behind it: Redis runs them with the new value, so after a
    failed save PING, a SET and a script's write go through behind ``no``
    and are refused behind ``yes``.  shardkv's acceptor checked them as it
    read them, against the -MISCONF state the workers had told it before
    the CONFIG SET reached them: all three were refused behind ``no`` and
    PING let through behind ``yes`` (with one acceptor or two)."""
    where = tmp_path / "dir"
    where.mkdir()
    server = (
        start_redis("--dir", str(where))
        if kind == "redis"
        else start_shardkv("--dir", str(where), shards=2, acceptors=acceptors)
    )
    refused = ("error", "MISCONF")  # (a script's says where in it too)
    try:
        c = redis.Redis(port=server.port)
        conn = _refuse_writes_by_a_missing_dir(c, where, server.port)
        for value, expected in (("no", [b"PONG", b"OK", b"OK"]), ("yes", [refused] * 3)):
            commands = [("CONFIG", "SET", "stop-writes-on-bgsave-error", value), *_PIPELINE_AFTER_CONFIG]
            conn.send_packed_command(conn.pack_commands(commands))  # one write
            replies = []
            for _ in commands:
                try:
                    replies.append(conn.read_response())
                except redis.ResponseError as e:
                    replies.append(("error", str(e).split()[0]))
            assert replies == [b"OK", *expected], value
        conn.disconnect()
    finally:
        server.stop_unsaved()  # its disk still cannot take a save


def test_a_full_aof_refused_through_one_acceptor_is_refused_through_the_other_at_once(small_disk):
    """Issue 22: the first write refused with -MISCONF (the AOF cannot be
    written) through one acceptor: a PING through the other, sent once that
    reply is read, is refused too, as in Redis's one process.  Before,
    the worker told the other acceptor's pipe only at its next tick, and
    that PING was answered PONG."""
    flags = ("--appendonly", "yes", "--appendfsync", "everysec", "--dir", str(small_disk))
    server = start_shardkv(*flags, shards=2, acceptors=2)
    try:
        a, b = _on_acceptor(server.port, "shardkv", 0), _on_acceptor(server.port, "shardkv", 1)
        for i in range(20000):
            reply = _say(a, "SET", f"k{i}", VALUE)
            if reply != b"OK":
                assert reply == ("error", AOF_FULL)
                break
        else:
            raise AssertionError("the disk never filled")
        assert _say(b, "PING") == ("error", AOF_FULL)
        a.disconnect()
        b.disconnect()
    finally:
        server.stop()


_SCRIPT_SET = "return redis.call('set', KEYS[1], '1')"
CONFIG_ROUNDS = 15


def _on_acceptor(port: int, kind: str, index: int) -> redis.Connection:
    """A raw connection, on acceptor ``index`` of shardkv's two."""
    if kind == "redis":
        return redis.Connection(port=port)
    for _ in range(400):
        conn = redis.Connection(port=port)
        if acceptor_of(int(_say(conn, "CLIENT", "ID"))) == index:  # type: ignore[arg-type]
            return conn
        conn.disconnect()
    raise AssertionError(f"no connection reached acceptor {index}")


def _started_in_a_dir(tmp_path, kind: str):
    """A fresh ``tmp_path/dir`` and a server (redis-server, or shardkv with
    two shards and two acceptors) saving there."""
    where = tmp_path / "dir"
    where.mkdir()
    if kind == "redis":
        return where, start_redis("--dir", str(where))
    return where, start_shardkv("--dir", str(where), shards=2, acceptors=2)


@pytest.mark.parametrize("kind", ["redis", "shardkv"])
def test_stop_writes_on_bgsave_error_set_through_one_acceptor_is_in_effect_on_the_other_once_ok(
    tmp_path, kind
):
    """Issue 22: once CONFIG SET's OK is read, a command on any connection
    (with two acceptors, on the other acceptor) finds the new value, as in
    Redis's one process: PING and a script's write through either
    acceptor go through after ``no`` and are refused after ``yes``.
    Before, the other acceptor heard the workers' new -MISCONF state only
    at their next tick: its PING was refused right after ``no``'s OK, in
    the first round."""
    where, server = _started_in_a_dir(tmp_path, kind)
    refused = ("error", RDB_FAILED)
    try:
        c = redis.Redis(port=server.port)
        _refuse_writes_by_a_missing_dir(c, where, server.port).disconnect()
        a, b = _on_acceptor(server.port, kind, 0), _on_acceptor(server.port, kind, 1)
        deadline = time.monotonic() + 30
        while _say(a, "PING") != refused or _say(b, "PING") != refused:
            assert time.monotonic() < deadline, "PING was never refused"
            time.sleep(0.05)
        for i in range(CONFIG_ROUNDS):
            for setter, other in ((a, b), (b, a)):
                assert _say(setter, "CONFIG", "SET", "stop-writes-on-bgsave-error", "no") == b"OK"
                assert (_say(other, "PING"), _say(setter, "PING")) == (b"PONG", b"PONG"), i
                for conn in (other, setter):
                    assert _say(conn, "EVAL", _SCRIPT_SET, "1", f"k{i}") == b"OK", i
                assert _say(setter, "CONFIG", "SET", "stop-writes-on-bgsave-error", "yes") == b"OK"
                assert (_say(other, "PING"), _say(setter, "PING")) == (refused, refused), i
                for conn in (other, setter):
                    assert _say(conn, "EVAL", _SCRIPT_SET, "1", f"k{i}")[1].startswith("MISCONF"), i  # type: ignore[index]
        a.disconnect()
        b.disconnect()
    finally:
        server.stop_unsaved()  # its disk still cannot take a save


@pytest.mark.parametrize("kind", ["redis", "shardkv"])
def test_function_and_xgroup_writes_are_refused_by_their_subcommands_flags(tmp_path, kind):
    """Redis checks a container's subcommand's own flags: FUNCTION LOAD,
    DELETE, FLUSH and RESTORE, and XGROUP CREATE, are writes (refused while
    a save failed, in MULTI as they are queued); FUNCTION DUMP and LIST,
    XGROUP HELP are not.  Before, shardkv read FUNCTION's row (no flags):
    it loaded, deleted and flushed libraries meanwhile, and refused XGROUP
    HELP (XGROUP's row says write)."""
    where, server = _started_in_a_dir(tmp_path, kind)
    try:
        c = redis.Redis(port=server.port)
        c.function_load(_LIBRARY)
        dump = c.function_dump()
        conn = _refuse_writes_by_a_missing_dir(c, where, server.port)
        other = "#!lua name=other\nredis.register_function('o', function(k) return redis.call('set', k[1], '1') end)"
        refused = ("error", RDB_FAILED)
        assert _say(conn, "FUNCTION", "LOAD", other) == refused
        assert _say(conn, "FUNCTION", "DELETE", "disklib") == refused
        assert _say(conn, "FUNCTION", "FLUSH") == refused
        assert _say(conn, "FUNCTION", "RESTORE", dump, "REPLACE") == refused  # type: ignore[arg-type]
        assert _say(conn, "FUNCTION", "DUMP") == dump
        assert _say(conn, "XGROUP", "HELP")[0].startswith(b"XGROUP <subcommand>")  # type: ignore[index]
        for queued in (
            ("FUNCTION", "DELETE", "disklib"),
            ("FUNCTION", "LOAD", other),
            ("XGROUP", "CREATE", "s", "g", "$", "MKSTREAM"),
        ):
            assert _say(conn, "MULTI") == b"OK"
            assert _say(conn, *queued) == refused
            assert _say(conn, "EXEC") == ("error", "Transaction discarded because of previous errors.")
        assert _say(conn, "MULTI") == b"OK"
        assert _say(conn, "FUNCTION", "DUMP") == b"QUEUED"
        assert _say(conn, "EXEC") == [dump]
        listed = _say(conn, "FUNCTION", "LIST")
        assert [lib[b"library_name"] for lib in listed] == [b"disklib"]  # type: ignore[union-attr,index]
        assert c.exists("s") == 0
        conn.disconnect()
    finally:
        server.stop_unsaved()  # its disk still cannot take a save


def _shutdown_reply(port: int) -> bytes:
    """SHUTDOWN on a connection of its own, which no client retries: what
    came back before the server closed it (nothing when it stops)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(b"SHUTDOWN\r\n")
        data = b""
        while chunk := s.recv(4096):
            data += chunk
            if data.endswith(b"\r\n"):
                break
        return data


@pytest.mark.parametrize("kind", ["redis", "shardkv"])
@pytest.mark.parametrize("how", ["SIGTERM", "SHUTDOWN"])
def test_a_full_aof_does_not_keep_the_server_from_stopping_and_loses_nothing(small_disk, kind, how):
    """As Redis's prepareForShutdown: the AOF's last flush and fsync at a
    stop only log a warning when they fail ("Fail to fsync the AOF
    file"); only a failed RDB save keeps the server up.  With the AOF on
    a full disk, SIGTERM and SHUTDOWN stop the server at once, exit 0,
    and a start with room again has every acknowledged write.  Before,
    shardkv's workers raised OSError (a traceback), it logged "can't
    exit" and served on."""
    flags = ("--appendonly", "yes", "--appendfsync", "everysec", "--dir", str(small_disk))
    server = start_redis(*flags) if kind == "redis" else start_shardkv(*flags, shards=2)
    c = redis.Redis(port=server.port)
    try:
        acked, errors = fill(c, "k")
        assert errors == {AOF_FULL}
        if how == "SIGTERM":
            server.signal(signal.SIGTERM)
        else:
            assert _shutdown_reply(server.port) == b""  # no reply: the connection closes
        server.proc.wait(5)  # raises TimeoutExpired if it serves on
        output = server.output()
        assert server.proc.returncode == 0
        assert "can't exit" not in output and "Traceback" not in output, output
    finally:
        c.close()
        server.stop()
    if kind == "redis":
        return
    grow(small_disk)
    again = start_shardkv(*flags, shards=2)
    try:
        values = redis.Redis(port=again.port).mget(acked)
        assert [k for k, v in zip(acked, values, strict=True) if v != VALUE] == []  # none lost
    finally:
        again.stop()
