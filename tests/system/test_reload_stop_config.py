"""A worker restarted after the start reloads its shard (slowly here,
``key-load-delay``, or held where it begins to load, the ``loading`` fault
point, until the test lets it go on), and meanwhile:

* a stop (SHUTDOWN, SIGTERM) stops the server at once, as Redis stops at
  once while it loads: the other shards, loaded and holding acknowledged
  writes, save as the stop says; the reloading shard's files, which hold
  its data, are left as they are;
* CONFIG SET (and RESETSTAT) answers at once, as Redis answers CONFIG
  while it loads, and the reloading worker applies it once it has loaded.
* LASTSAVE answers at once, as Redis's while it loads: the reloading
  shard's last save is its worker's restart.

Before, both waited for the reload."""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
import time
from collections.abc import Iterator

import psutil
import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from tests.support.acceptors import client_on
from tests.support.processes import kill_held, until, worker_pids
from tests.support.resp import ErrorReply, RespClient
from tests.support.servers import ROOT, start_shardkv
from tests.system.test_recovery import client, keys_of_shard

pytestmark = pytest.mark.slow

KEYS = 10000  # 5000 a shard
PROMPT = 15.0  # a stop or a CONFIG SET answered well before the reload would end


def _saved(c: redis.Redis, keys: int) -> None:
    """Set ``k0`` ... to ``0`` ... (``keys`` of them) in one pipeline, then SAVE."""
    p = c.pipeline(transaction=False)
    for i in range(keys):
        p.set(f"k{i}", i)
    p.execute()
    assert c.save()


def _reloading(server, c: redis.Redis, victim: int, delay: int) -> None:
    """Kill ``victim``'s worker; return once its restart is loading
    (``delay``: key-load-delay, µs a key)."""
    _saved(c, KEYS)
    c.config_set("key-load-delay", delay)
    os.kill(worker_pids(server)[victim], signal.SIGKILL)
    assert until(lambda: _says_loading(c), 60), "the restarted worker never said it was loading"


def _says_loading(c: redis.Redis) -> bool:
    try:
        return c.info("persistence")["loading"] == 1
    except redis.ResponseError as e:  # the worker is not restarted yet
        assert str(e) == "shard unavailable"
        return False


def _start_holdable(tmp_path, *flags, **kwargs):
    """A shardkv whose processes read the fault file ``tmp_path/faultpoints``
    (shardkv.runtime.faultpoints): the server and that file."""
    fault = tmp_path / "faultpoints"
    fault.write_text("")
    env = dict(os.environ, SHARDKV_FAULT_FILE=str(fault))
    return start_shardkv(*flags, env=env, **kwargs), fault


def _held_reloading(server, c: redis.Redis, victim: int, fault) -> int:
    """As :func:`_reloading`, but the restarted worker holds itself where it
    begins to load (the ``loading`` fault point: it stops, SIGSTOP) until
    the test sends it SIGCONT, rather than loading slowly for a fixed time;
    return once it is held and the server says it loads: its pid."""
    _saved(c, KEYS)
    pid = kill_held(server, victim, fault)
    assert until(lambda: _says_loading(c), 60), "the restarted worker never said it was loading"
    return pid


def _logged(server, line: str, times: int = 1) -> None:
    """Wait until the server's log holds ``line`` ``times`` times."""
    assert until(lambda: server.output().count(line) >= times, 60), server.log_tail()


def _shutting_down(c: redis.Redis, key: str) -> bool:
    """Whether a GET of ``key`` is refused by a shard that saves for SHUTDOWN."""
    try:
        c.get(key)
    except redis.ResponseError as e:
        return str(e) == "shard is shutting down"
    return False


def _saving(server, shard: int, fault) -> int:
    """Wait until ``shard``'s worker holds itself where it takes a stop's
    ``__shutdown`` (the ``shutdown`` fault point, which ``fault`` named
    before the stop came), before its save: to the acceptors, a shard whose
    save for the stop goes on for as long as the test holds it (rather than
    for a timed ``rdb-key-save-delay``, which a slow machine could outlast).
    Clear ``fault`` (its next ``__shutdown`` goes on) and return its pid,
    for the SIGCONT that lets it save."""
    pid = worker_pids(server)[shard]

    def held() -> bool:
        try:
            return psutil.Process(pid).status() == psutil.STATUS_STOPPED
        except psutil.NoSuchProcess:
            return False

    assert until(held, 60), server.log_tail()
    fault.write_text("")
    return pid


def _served(c: redis.Redis) -> bool:
    """Whether ``k1`` is served (-LOADING until its shard's reload ends)."""
    try:
        return c.get("k1") == b"1"
    except redis.BusyLoadingError:
        return False


@contextlib.contextmanager
def _restarted(*flags: str) -> Iterator[redis.Redis]:
    """A client of a shardkv of two shards started again with ``flags``
    (on the stopped one's files), stopped once the block ends."""
    again = start_shardkv(*flags, shards=2)
    try:
        yield client(again)
    finally:
        again.stop()


def _shutdown_save_in_thread(port: int) -> tuple[threading.Thread, list[bool]]:
    """SHUTDOWN SAVE sent by a thread of its own, started; the list gets
    True once the connection closed with no reply, as Redis's does."""
    closed: list[bool] = []

    def stop() -> None:
        asker = redis.Redis(port=port, socket_timeout=60, retry=Retry(NoBackoff(), 0))
        try:
            asker.execute_command("SHUTDOWN", "SAVE")
        except redis.ConnectionError:  # as Redis: no reply, the connection closes
            closed.append(True)

    stopping = threading.Thread(target=stop)
    stopping.start()
    return stopping, closed


@pytest.mark.parametrize("how", ["SHUTDOWN", "SIGTERM"])
def test_a_stop_while_a_worker_reloads_stops_at_once_and_loses_nothing(tmp_path, how):
    flags = ("--dir", str(tmp_path), "--save", "3600 1", "--appendonly", "no")
    server = start_shardkv(*flags, shards=2)
    try:
        c = client(server)
        _reloading(server, c, 1, 20000)  # ~100 s to reload 5000 keys
        # Acknowledged writes on the loaded shard, after its last save:
        # only the stop's save keeps them.
        fresh = keys_of_shard(0, 2, "fresh", 50)
        for key in fresh:
            assert c.set(key, "new")
        t0 = time.monotonic()
        if how == "SHUTDOWN":
            with pytest.raises(redis.ConnectionError):
                client(server, retry=False).execute_command("SHUTDOWN")
        else:
            server.signal(signal.SIGTERM)
        assert server.proc.wait(PROMPT) == 0
        assert time.monotonic() - t0 < PROMPT
        log = server.output()
        assert "shard 1 is loading: it stops without a save" in log
        with _restarted(*flags) as c:
            assert c.dbsize() == KEYS + len(fresh)
            assert c.mget(fresh) == [b"new"] * len(fresh)
            assert c.get("k1") == b"1" and c.get(f"k{KEYS - 1}") == str(KEYS - 1).encode()
    finally:
        server.stop()


def test_config_set_while_a_worker_reloads_answers_at_once_and_reaches_it(tmp_path):
    server, fault = _start_holdable(tmp_path, "--dir", str(tmp_path), "--save", "", shards=2)
    try:
        c = client(server)
        held = _held_reloading(server, c, 1, fault)  # reloading until SIGCONT
        t0 = time.monotonic()
        assert c.config_set("set-max-intset-entries", 1)
        assert c.config_resetstat()
        assert time.monotonic() - t0 < PROMPT
        assert c.info("persistence")["loading"] == 1  # answered before the reload ended
        assert c.config_get("set-max-intset-entries") == {"set-max-intset-entries": "1"}
        there, here = keys_of_shard(1, 2, "s", 1)[0], keys_of_shard(0, 2, "s", 1)[0]
        os.kill(held, signal.SIGCONT)
        assert until(lambda: _served(c), 120)
        for key in (here, there):  # the reloaded worker applied it too
            c.sadd(key, 1, 2, 3)
            assert c.object("encoding", key) == b"hashtable", key
        assert c.dbsize() == KEYS + 2
    finally:
        server.stop()


def test_a_shard_that_loads_while_shutdown_save_saves_is_asked_too(tmp_path):
    """SHUTDOWN SAVE skips the reloading shard; if it loads while the other
    shard still saves, a write it then acknowledges is saved too (before,
    it served writes unasked, and stopped without saving them, with no
    ``save`` rules), or it is refused."""
    flags = ("--dir", str(tmp_path), "--save", "", "--appendonly", "no")
    server, fault = _start_holdable(tmp_path, *flags, shards=2)
    try:
        c = client(server)
        _saved(c, 2000)
        # Shard 1's reload is held until the SHUTDOWN has skipped it; shard
        # 0 holds itself as it takes the SHUTDOWN's __shutdown, until shard
        # 1 has loaded and been asked: it loads while shard 0 still saves.
        held = kill_held(server, 1, fault)

        probe = keys_of_shard(1, 2, "k", 1)[0]
        asks = client(server, retry=False)  # (redis-py retries a -LOADING otherwise)

        def loading() -> bool:
            try:
                asks.get(probe)
            except redis.BusyLoadingError:
                return True
            except redis.ResponseError:  # unavailable: not restarted yet
                pass
            return False

        assert until(loading, 60)

        fault.write_text("shutdown@0")
        stopping, closed = _shutdown_save_in_thread(server.port)
        _logged(server, "shard 1 is loading: it stops without a save")
        saving = _saving(server, 0, fault)
        os.kill(held, signal.SIGCONT)
        key = keys_of_shard(1, 2, "late", 1)[0]
        acked = False
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                acked = c.set(key, "v")
                break
            except redis.BusyLoadingError:
                time.sleep(0.02)
            except redis.ResponseError as e:  # refused: the shard is shut for the stop
                assert str(e) == "shard is shutting down"
                break
            except redis.ConnectionError:
                break

        assert until(lambda: _shutting_down(asks, probe), 60), (
            "the reloaded shard was not asked while shard 0 saved"
        )
        os.kill(saving, signal.SIGCONT)
        stopping.join(60)
        assert closed == [True]
        assert server.proc.wait(60) == 0
        with _restarted(*flags) as c:
            assert c.get(key) == (b"v" if acked else None)
            assert c.dbsize() == 2000 + acked
    finally:
        server.stop()


def test_lastsave_while_a_worker_reloads_answers_at_once(tmp_path):
    """LASTSAVE (and INFO's rdb_last_save_time) answers at once, as Redis's
    while it loads: the shard that serves is asked, and the reloading
    shard counts as saved when its worker restarted (its last save once
    it has loaded, as Redis's at start), here earlier than the other's."""
    server, fault = _start_holdable(tmp_path, "--dir", str(tmp_path), "--save", "", shards=2)
    try:
        c = client(server)
        before = int(time.time())
        held = _held_reloading(server, c, 1, fault)  # reloading until SIGCONT
        # The restarted worker took its start time before it held itself.
        restarted = int(time.time())
        time.sleep(1.1)  # shard 0's next save comes after the restart
        c.config_set("save", "1 1")
        assert c.set(keys_of_shard(0, 2, "late", 1)[0], "v")

        def saved() -> bool:
            info = c.info("persistence")
            return info["rdb_changes_since_last_save"] == 0 and info["rdb_bgsave_in_progress"] == 0

        assert until(saved, 30), "shard 0 never saved"
        t0 = time.monotonic()
        during = int(c.lastsave().timestamp())
        assert time.monotonic() - t0 < PROMPT
        info = c.info("persistence")
        assert info["loading"] == 1
        assert before <= during <= restarted  # the reloading shard's, not shard 0's later save
        assert info["rdb_last_save_time"] == during
        os.kill(held, signal.SIGCONT)
        assert until(lambda: _served(c), 120)
        # Once loaded, its worker says its own: its start, before it held
        # itself (not the load's end, nor shard 0's later save), the very
        # figure the acceptor said meanwhile (the supervisor timed the
        # restart once, for both; before, the acceptor's own hearing of it,
        # seconds off on a loaded machine).
        assert int(c.lastsave().timestamp()) == during
    finally:
        server.stop()


def test_a_shard_restarted_after_it_saved_for_shutdown_save_is_asked_again(tmp_path):
    """SHUTDOWN SAVE has asked shard 1, which has saved and is shut; its
    worker dies and is restarted while shard 0 still saves.  Once it has
    reloaded, its new worker is asked too (before, it was not: the shard
    had been asked already, and the new worker served writes unasked,
    acknowledged them, and stopped without saving them, with no ``save``
    rules): a write to it is saved, or refused."""
    flags = ("--dir", str(tmp_path), "--save", "", "--appendonly", "no")
    server = start_shardkv(*flags, shards=2)
    try:
        c = client(server)
        slow = keys_of_shard(0, 2, "k", 2000)
        p = c.pipeline(transaction=False)
        for key in slow:
            p.set(key, "v")
        p.set(keys_of_shard(1, 2, "k", 1)[0], "v")
        p.execute()
        c.config_set("rdb-key-save-delay", 3000)  # ~6 s for shard 0's save, ~0 for shard 1's
        stopping, closed = _shutdown_save_in_thread(server.port)
        key = keys_of_shard(1, 2, "late", 1)[0]

        assert until(lambda: _shutting_down(c, key), 10), "shard 1 never saved for the SHUTDOWN"
        old = worker_pids(server)[1]
        os.kill(old, signal.SIGKILL)
        acked = False
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                acked = c.set(key, "v")
                if worker_pids(server).get(1) not in (None, old):
                    break
                acked = False  # (the old worker's refusal, or not dead yet)
            except redis.ResponseError as e:  # unavailable, loading, or refused once asked
                if str(e) == "shard is shutting down" and worker_pids(server).get(1) not in (None, old):
                    break
                time.sleep(0.02)
            except redis.ConnectionError:
                break
        stopping.join(60)
        assert closed == [True]
        assert server.proc.wait(60) == 0
        with _restarted(*flags) as c:
            assert c.get(key) == (b"v" if acked else None)
            assert c.dbsize() == 2001 + acked
    finally:
        server.stop()


def _loading(writer: RespClient, probe: str) -> bool:
    """Whether ``probe``'s shard answers -LOADING through ``writer`` (a
    restarted worker reloading; an error of another kind: not restarted
    yet)."""
    try:
        writer.command("GET", probe)
    except ErrorReply as e:
        return str(e).startswith("LOADING")
    return False


def _write_until_shut(writer: RespClient, seconds: float) -> list[str]:
    """Write new keys of shard 1 through ``writer``, one at a time, for at
    most ``seconds``, until its shard is shut for a stop (or the connection
    closes): the keys it got OK for."""
    late = keys_of_shard(1, 2, "late", 20000)
    acked: list[str] = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and len(acked) < len(late):
        try:
            writer.command("SET", late[len(acked)], "v")
            acked.append(late[len(acked)])
        except ErrorReply as e:
            if str(e) == "ERR shard is shutting down":
                break
            time.sleep(0.005)  # loading
        except (ConnectionError, OSError):
            break
    return acked


def _shutdown_save_while_shard_1_loads(
    server, fault, origin: int, writer_timeout: float, asker_timeout: float
) -> tuple[int, RespClient, RespClient, int]:
    """Shard 1's worker killed and its reload held (``kill_held``); once it
    loads (``writer``, a client of the other acceptor than ``origin``,
    gets -LOADING), ``asker`` sends SHUTDOWN SAVE through ``origin``,
    which skips it, and shard 0 stops itself as it takes the SHUTDOWN's
    ``__shutdown`` (fault point ``shutdown@0``).  Returns (the held
    reload's pid, writer, asker, shard 0's stopped worker's pid)."""
    held = kill_held(server, 1, fault)
    writer = client_on(server.port, 1 - origin, timeout=writer_timeout)
    probe = keys_of_shard(1, 2, "k", 1)[0]
    assert until(lambda: _loading(writer, probe), 60)
    fault.write_text("shutdown@0")
    asker = client_on(server.port, origin, timeout=asker_timeout)
    asker.send("SHUTDOWN", "SAVE")
    _logged(server, "shard 1 is loading: it stops without a save")
    return held, writer, asker, _saving(server, 0, fault)


@pytest.mark.parametrize("origin", [0, 1])
def test_another_acceptors_writes_to_a_shard_that_loads_while_shutdown_save_saves_are_kept(tmp_path, origin):
    """Two acceptors: SHUTDOWN SAVE through acceptor ``origin`` skips the
    reloading shard; a client of the other acceptor, which knows nothing
    of the stop, writes to that shard as soon as it has loaded.  Each
    write it got OK for reached the shard before its ``__shutdown`` (the
    ``reloaded`` line reaches both acceptors, and ``origin`` asks it at
    once), so that shard's save keeps it; after, it is refused."""
    flags = ("--dir", str(tmp_path), "--save", "", "--appendonly", "no")
    server, fault = _start_holdable(tmp_path, *flags, shards=2, acceptors=2)
    try:
        c = client(server)
        _saved(c, 2000)
        # Shard 1's reload is held until the SHUTDOWN has skipped it; shard
        # 0 holds itself as it takes the SHUTDOWN's __shutdown, until shard
        # 1 has loaded and been asked: it loads while shard 0 still saves.
        held, writer, asker, saving = _shutdown_save_while_shard_1_loads(server, fault, origin, 30, 60)
        os.kill(held, signal.SIGCONT)
        acked = _write_until_shut(writer, 30)
        os.kill(saving, signal.SIGCONT)
        with pytest.raises((ConnectionError, OSError)):  # as Redis: no reply, the connection closes
            asker.read()
        assert server.proc.wait(60) == 0
        writer.close()
        asker.close()
        with _restarted(*flags) as c:
            if acked:
                assert c.exists(*acked) == len(acked)
            assert c.dbsize() == 2000 + len(acked)
    finally:
        server.stop()


# The signal's stop waits for the shards' ``__ping``s SIGNAL_PING_WAIT (10 s)
# at the most; the test below sets it to PING_WAIT by a ``main.py`` of its
# own, run again by the acceptor processes (spawned children), as
# test_signal_stop_frozen_worker does: its timeline needs no 10 s.  Shard 0
# is held (SIGSTOP) when the SIGTERM comes, so its ``__ping`` is never
# answered in time, whatever the wait: the signal's stop begins PING_WAIT
# later, while the SHUTDOWN still waits for shard 0, as the test needs.
PING_WAIT = 0.5
PING_WAIT_MAIN = f"""
import multiprocessing
import sys
import shardkv.supervisor
if multiprocessing.current_process().name.startswith("shardkv-acceptor"):
    import shardkv.acceptor.durability
    shardkv.acceptor.durability.SIGNAL_PING_WAIT = {PING_WAIT}
if __name__ == "__main__":
    sys.exit(shardkv.supervisor.main())
"""


@pytest.mark.parametrize("origin", [0, 1])
def test_sigterm_while_shutdown_save_waits_leaves_the_shard_that_loads_saving(tmp_path, origin):
    """Two acceptors: SHUTDOWN SAVE through acceptor ``origin`` skips the
    reloading shard while shard 0 saves (held as it begins); a SIGTERM (``default``, no
    ``save`` rules: no save) comes, whose stop, handed to acceptor 0,
    begins while the SHUTDOWN still waits (its ``__ping``s wait
    SIGNAL_PING_WAIT, here PING_WAIT, at the most).  The reloaded shard is asked as the
    SHUTDOWN says, and saves: a write another acceptor's client got OK for
    is kept.  Before, with ``origin`` 0, the signal's stop took the
    SHUTDOWN's place, and the shard was asked without a save."""
    data, root = tmp_path / "data", tmp_path / "root"
    data.mkdir()
    root.mkdir()
    (root / "main.py").write_text(PING_WAIT_MAIN)
    fault = tmp_path / "faultpoints"
    fault.write_text("")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), *sys.path]), SHARDKV_FAULT_FILE=str(fault))
    flags = ("--dir", str(data), "--save", "", "--appendonly", "no")
    server = start_shardkv(*flags, shards=2, acceptors=2, root=root, env=env)
    try:
        c = client(server)
        _saved(c, 2000)
        snapshot = data / "dump.rdb.shard-1"
        saved = snapshot.stat().st_ino
        # The reload is held until the signal's stop has begun (PING_WAIT
        # after the SIGTERM at the most); shard 0 holds itself as it takes
        # the SHUTDOWN's __shutdown, until shard 1 has loaded and saved.
        held, writer, asker, saving = _shutdown_save_while_shard_1_loads(server, fault, origin, 60, 90)
        server.signal(signal.SIGTERM)
        _logged(server, "shard 1 is loading: it stops without a save", 2)
        os.kill(held, signal.SIGCONT)
        acked = _write_until_shut(writer, 60)
        shard_1_saved = until(lambda: snapshot.stat().st_ino != saved, 60)
        os.kill(saving, signal.SIGCONT)
        assert shard_1_saved, "the reloaded shard did not save for SHUTDOWN SAVE"
        with pytest.raises((ConnectionError, OSError)):  # as Redis: no reply, the connection closes
            asker.read()
        assert server.proc.wait(60) == 0
        writer.close()
        asker.close()
        log = server.output()
        assert "shard 1 has loaded while the server stops" in log
        # Both stops began while shard 1 still loaded, the SHUTDOWN's and then
        # the signal's (after PING_WAIT): the case this test is about.
        assert log.count("shard 1 is loading: it stops without a save", 0, log.index("has loaded")) == 2, log
        assert snapshot.stat().st_ino != saved, "the reloaded shard did not save for SHUTDOWN SAVE"
        with _restarted(*flags) as c:
            if acked:
                assert c.exists(*acked) == len(acked)
            assert c.dbsize() == 2000 + len(acked)
    finally:
        server.stop()
