"""Durability end to end: `python main.py` with persistence on, killed and
restarted in every way the issue lists.

Each test starts its own servers on free ports with their own ``dir``.
Where Redis has the same behaviour (a restart keeps the data), the test
runs the same commands on a real redis-server with the same setting and
compares the data both hold after the restart.  Crash recovery, shard
counts and the files are shardkv's own, so those tests are shardkv-only.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil
import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from shardkv.protocol.router import Router
from tests.support.processes import kill_held, worker_pids
from tests.support.resp import encode_command, parse_reply
from tests.support.servers import (
    ROOT,
    free_port,
    redis_server_path,
    start_command,
    start_redis,
    start_shardkv,
)

pytestmark = pytest.mark.slow

TIMEOUT = 10  # socket timeout: a command that hangs fails the test


def client(proc, retry: bool = True) -> redis.Redis:
    """A redis-py client; ``retry=False`` for a command whose connection is
    expected to close (redis-py would send it again up to 10 times, with
    2 s of back-off in all, before raising ConnectionError)."""
    if retry:
        return redis.Redis(port=proc.port, socket_timeout=TIMEOUT)
    return redis.Redis(port=proc.port, socket_timeout=TIMEOUT, retry=Retry(NoBackoff(), 0))


def acceptor_pid(proc) -> int:
    """The first acceptor's pid (``shardkv-accept``, or ``shardkv-accept0``
    with several), 0 if there is none now."""
    for child in psutil.Process(proc.proc.pid).children():
        if child.name() in ("shardkv-accept", "shardkv-accept0"):
            return child.pid
    return 0


def keys_of_shard(shard: int, nshards: int, prefix: str, n: int) -> list[str]:
    router = Router(nshards)
    out, i = [], 0
    while len(out) < n:
        key = f"{prefix}{i}"
        if router.shard_of(key.encode()) == shard:
            out.append(key)
        i += 1
    return out


def wait_until(predicate, what: str, limit: float = 30.0) -> None:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        try:
            if predicate():
                return
        except (redis.RedisError, OSError, psutil.Error):
            pass
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


def raw(port: int, request: bytes) -> bytes:
    """One request over a plain socket, and its one-line reply as sent."""
    with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as s:
        s.sendall(request)
        reply = b""
        while not reply.endswith(b"\r\n"):
            chunk = s.recv(4096)
            if not chunk:
                break
            reply += chunk
        return reply


def stop(proc, sig: int = signal.SIGTERM) -> int:
    """Stop a server with ``sig`` and return its exit status."""
    proc.signal(sig)
    rc = proc.proc.wait(60)
    proc.saved_output = proc.output()  # the log is closed by stop()
    proc.stop()
    return rc


# -- every type, as Redis would keep it --------------------------------------------------


def present_types(c: redis.Redis) -> list[str]:
    """The data types whose commands this shardkv has (others are being written)."""
    out = ["string"]
    for kind, probe in (("hash", ["HSET", "x", "y"]), ("list", ["RPUSH", "x"]), ("set", ["SADD", "x"])):
        try:
            c.execute_command(probe[0], "__probe__", *probe[1:])
            out.append(kind)
        except redis.ResponseError:
            pass
        c.delete("__probe__")
    try:
        c.execute_command("ZADD", "__probe__", "1", "x")
        out.append("zset")
    except redis.ResponseError:
        pass
    c.delete("__probe__")
    return out


def populate(c: redis.Redis, kinds: list[str]) -> None:
    now_ms = int(time.time() * 1000)
    p = c.pipeline(transaction=False)
    for i in range(200):
        p.set(f"s:{i}", f"value-{i}")
    p.set("s:ttl", "x", px=3_600_000)
    p.set("s:abs", "x", pxat=now_ms + 7_200_000)
    p.incrbyfloat("s:float", "1.25")
    p.append("s:0", "-more")
    p.expire("s:1", 1000)
    p.delete("s:2")
    if "hash" in kinds:
        for i in range(50):
            p.hset(f"h:{i}", mapping={f"f{j}": j for j in range(i % 7 + 1)})
        p.hincrbyfloat("h:1", "f0", 0.5)
        p.expire("h:3", 5000)
    if "list" in kinds:
        for i in range(50):
            p.rpush(f"l:{i}", *range(i % 9 + 1))
        p.lpop("l:1")
        p.expire("l:4", 5000)
    if "set" in kinds:
        for i in range(50):
            p.sadd(f"set:{i}", *range(i % 11 + 1))
        p.srem("set:6", 0)  # (SPOP is random: test_persistence.py checks it is logged as SREM)
        p.expire("set:7", 5000)
    if "zset" in kinds:
        for i in range(50):
            p.zadd(f"z:{i}", {f"m{j}": j * 1.5 for j in range(i % 8 + 1)})
        p.zincrby("z:1", 2.25, "m0")
        p.zpopmin("z:2")
        p.expire("z:9", 5000)
    p.execute()


def snapshot_of(c: redis.Redis) -> dict:
    """Every key: its type, its value, and whether it has a TTL."""
    keys = sorted(c.scan_iter(count=1000))
    p = c.pipeline(transaction=False)
    for key in keys:
        p.type(key)
    kinds = [k.decode() for k in p.execute()]
    read = {
        "string": lambda key: p.get(key),
        "hash": lambda key: p.hgetall(key),
        "list": lambda key: p.lrange(key, 0, -1),
        "set": lambda key: p.smembers(key),
        "zset": lambda key: p.zrange(key, 0, -1, withscores=True),
    }
    for key, kind in zip(keys, kinds, strict=True):
        read[kind](key)
        p.pttl(key)
    replies = p.execute()
    out = {}
    for i, (key, kind) in enumerate(zip(keys, kinds, strict=True)):
        value, ttl = replies[2 * i], replies[2 * i + 1]
        out[key] = (kind, sorted(value) if kind == "set" else value, ttl > 0)
    return out


@pytest.mark.parametrize(
    "flags",
    [
        ("--appendonly", "yes", "--appendfsync", "always"),
        ("--appendonly", "no", "--save", "3600 1"),
    ],
    ids=["aof", "snapshot"],
)
def test_restart_keeps_every_type_as_redis_does(tmp_path, flags):
    ours_dir, real_dir = tmp_path / "shardkv", tmp_path / "redis"
    ours_dir.mkdir()
    real_dir.mkdir()
    ours = start_shardkv("--dir", str(ours_dir), *flags)
    real = start_redis("--dir", str(real_dir), *flags)
    kinds = present_types(client(ours))
    for server in (ours, real):
        populate(client(server), kinds)
    before = snapshot_of(client(ours))
    assert before == snapshot_of(client(real))
    assert stop(ours) == 0
    assert stop(real) == 0
    ours = start_shardkv("--dir", str(ours_dir), *flags)
    real = start_redis("--dir", str(real_dir), *flags)
    try:
        after = snapshot_of(client(ours))
        assert after == before
        assert after == snapshot_of(client(real))
    finally:
        ours.stop()
        real.stop()


def test_aof_files_are_redis_aof_format(tmp_path):
    # A shard's incr file, fed to a real redis-server as its AOF, loads to
    # the same keys: the records are Redis's own commands in RESP.
    ours = start_shardkv("--dir", str(tmp_path), "--appendonly", "yes", shards=1)
    c = client(ours)
    populate(c, present_types(c))
    before = snapshot_of(c)
    assert stop(ours) == 0
    incr = sorted(tmp_path.glob("appendonly.aof.shard-0.*.incr.aof"))
    redis_dir = tmp_path / "as-redis"
    redis_dir.mkdir()
    (redis_dir / "appendonly.aof").write_bytes(b"".join(p.read_bytes() for p in incr))
    real = start_redis("--dir", str(redis_dir), "--appendonly", "yes")
    try:
        assert snapshot_of(client(real)) == before
    finally:
        real.stop()


def test_shutdown_while_the_first_aof_is_written_is_refused_as_redis_does(tmp_path):
    # CONFIG SET appendonly yes, writes and SHUTDOWN in one pipeline, while
    # the first AOF base is still being written (rdb-key-save-delay): Redis
    # refuses the SHUTDOWN ("Writing initial AOF, can't exit") and keeps
    # serving; shardkv exited with no manifest, and a start lost every key.
    # Once the base is there, SHUTDOWN and a start keep every acknowledged
    # write on both.
    dirs = {"ours": tmp_path / "shardkv", "real": tmp_path / "redis"}
    for d in dirs.values():
        d.mkdir()
    slow = ("--save", "", "--appendonly", "no", "--rdb-key-save-delay", "200000")
    servers = {"ours": start_shardkv("--dir", str(dirs["ours"]), *slow, shards=2)}
    servers["real"] = start_redis("--dir", str(dirs["real"]), *slow)
    script = [("SET", f"b{i}", "1") for i in range(8)] + [("CONFIG", "SET", "appendonly", "yes")]
    script += [("SET", f"a{i}", "2") for i in range(8)] + [("SHUTDOWN",)]
    try:
        replies = {}
        for name, server in servers.items():
            with socket.create_connection(("127.0.0.1", server.port), timeout=TIMEOUT) as s:
                s.sendall(b"".join(encode_command(*c) for c in script))
                data = b""
                while data.count(b"\r\n") < len(script):
                    chunk = s.recv(65536)
                    assert chunk, f"{name} closed the connection: {data!r}"
                    data += chunk
            replies[name] = data
            assert server.proc.poll() is None
        assert replies["ours"] == replies["real"]
        assert replies["ours"].endswith(b"-ERR Errors trying to SHUTDOWN. Check logs.\r\n")
        for server in servers.values():
            c = client(server)
            c.config_set("rdb-key-save-delay", "0")
            wait_until(lambda c=c: c.info("persistence")["aof_rewrite_in_progress"] == 0, "the first AOF")
            wait_until(lambda c=c: c.info("persistence")["aof_rewrite_scheduled"] == 0, "the first AOF")
            with contextlib.suppress(redis.ConnectionError):
                client(server, retry=False).shutdown()
            assert server.proc.wait(60) == 0
            server.stop()
        servers = {
            "ours": start_shardkv("--dir", str(dirs["ours"]), "--appendonly", "yes", shards=2),
            "real": start_redis("--dir", str(dirs["real"]), "--appendonly", "yes"),
        }
        expected = {f"{p}{i}".encode() for p in "ab" for i in range(8)}
        for server in servers.values():
            assert set(client(server).keys("*")) == expected
    finally:
        for server in servers.values():
            server.stop()


# -- SIGKILL of a worker under load ------------------------------------------------------


def test_sigkill_of_a_worker_under_load_loses_no_acknowledged_write(tmp_path):
    server = start_shardkv("--dir", str(tmp_path), "--appendonly", "yes", "--appendfsync", "always")
    acked: dict[str, str] = {}
    errors: list[str] = []
    hangs: list[BaseException] = []
    other_acks_while_down: list[str] = []
    state = {"down": False, "stop": False}
    lock = threading.Lock()
    victim = 1

    def writer(t: int) -> None:
        c = client(server)
        n = 0
        while not state["stop"]:
            key, value = f"w{t}:{n}", f"value-{t}-{n}"
            n += 1
            try:
                c.set(key, value)
            except (redis.ResponseError, redis.BusyLoadingError) as e:  # (-LOADING while it reloads)
                with lock:
                    errors.append(str(e))
                continue
            except (redis.TimeoutError, redis.ConnectionError) as e:
                hangs.append(e)
                return
            with lock:
                acked[key] = value
                if state["down"] and Router(4).shard_of(key.encode()) != victim:
                    other_acks_while_down.append(key)

    threads = [threading.Thread(target=writer, args=(t,)) for t in range(6)]
    for t in threads:
        t.start()
    try:
        wait_until(lambda: len(acked) > 500, "writes before the kill")
        old = worker_pids(server)[victim]
        state["down"] = True
        killed_at = time.monotonic()
        os.kill(old, signal.SIGKILL)
        wait_until(lambda: worker_pids(server).get(victim, old) != old, "the new worker")
        respawned = time.monotonic() - killed_at
        probe = keys_of_shard(victim, 4, "probe", 1)[0]
        wait_until(lambda: client(server).set(probe, "1"), "the shard to answer again")
        back = time.monotonic() - killed_at
        state["down"] = False
        count = len(acked)
        wait_until(lambda: len(acked) > count + 500, "writes after the restart")
    finally:
        state["stop"] = True
        for t in threads:
            t.join(30)
    print(
        f"\nworker respawned {respawned:.3f}s and serving {back:.3f}s after SIGKILL; "
        f"{len(acked)} writes acknowledged, {len(errors)} refused"
    )
    assert not hangs, hangs[:3]
    assert set(errors) <= {"shard unavailable", "Redis is loading the dataset in memory"}, set(errors)
    assert other_acks_while_down, "other shards stopped while one restarted"
    c = client(server)
    keys = list(acked)
    for i in range(0, len(keys), 500):
        chunk = keys[i : i + 500]
        assert c.mget(chunk) == [acked[k].encode() for k in chunk]
    assert "worker 1 pid=%d exited with -9; restarting it" % old in server.output()
    server.stop()


def test_a_restarted_worker_answers_loading_for_its_shard_while_it_reloads(tmp_path):
    """A worker killed after the start is restarted and reloads its shard
    (held here where it begins to load, the ``loading`` fault point, until
    the test has seen -LOADING).  Redis, one process, would restart
    whole and answer -LOADING while it loads; shardkv answers -LOADING to
    the commands for that shard (redis-py's BusyLoadingError), serves the
    others, and then that shard again, with its data.  Before, the
    commands for it waited in its pipe for the load, with no error."""
    fault = tmp_path / "faultpoints"
    fault.write_text("")
    env = dict(os.environ, SHARDKV_FAULT_FILE=str(fault))
    server = start_shardkv("--dir", str(tmp_path), "--save", "", shards=2, env=env)
    try:
        c = client(server)
        p = c.pipeline(transaction=False)
        for i in range(10000):
            p.set(f"k{i}", i)
        p.execute()
        assert c.save()
        victim = 1
        there, here = keys_of_shard(victim, 2, "k", 1)[0], keys_of_shard(1 - victim, 2, "k", 1)[0]
        held = kill_held(server, victim, fault)
        c = client(server, retry=False)
        seen: list[str] = []
        deadline = time.monotonic() + 60  # (a loaded machine: the restart and the load take a while)
        while time.monotonic() < deadline:
            try:
                assert c.get(there) == there[1:].encode()
                seen.append("served")
                if "loading" in seen:
                    break
            except redis.BusyLoadingError as e:
                assert str(e) == "Redis is loading the dataset in memory"
                if "loading" not in seen:
                    seen.append("loading")
                    assert c.get(here) == here[1:].encode()  # the other shard serves
                    with pytest.raises(redis.BusyLoadingError):
                        c.ping()  # names no key: may touch any shard
                    os.kill(held, signal.SIGCONT)  # now it loads
            except redis.ResponseError as e:  # the worker is not restarted yet
                assert str(e) == "shard unavailable"
            time.sleep(0.05)
        assert "loading" in seen and seen[-1] == "served", seen[-5:]
        assert c.dbsize() == 10000
    finally:
        server.stop()


def test_a_bgsave_scheduled_before_a_worker_restarts_still_runs(tmp_path):
    """``BGSAVE SCHEDULE`` while an AOF rewrite runs answers "Background
    saving scheduled": Redis, one process, runs that save once the rewrite
    is over, whatever happens meanwhile.  A shard whose worker is killed
    (by its pid) before then, and started again by the supervisor, runs the
    save its old worker had scheduled once it has loaded (before, the
    schedule died with the worker and that shard never saved)."""
    server = start_shardkv("--dir", str(tmp_path), "--save", "", "--appendonly", "yes", shards=2)
    try:
        c = client(server)
        for shard in (0, 1):
            assert c.set(keys_of_shard(shard, 2, "k", 1)[0], "v")
        c.config_set("rdb-key-save-delay", 3_000_000)  # each shard's rewrite: 3 s for its key
        assert c.bgrewriteaof()
        assert raw(server.port, b"BGSAVE SCHEDULE\r\n") == b"+Background saving scheduled\r\n"
        c.config_set("rdb-key-save-delay", 0)  # (the rewrites forked keep theirs)
        victim = 1
        os.kill(worker_pids(server)[victim], signal.SIGKILL)  # its rewrite child dies with it
        snapshot = tmp_path / f"dump.rdb.shard-{victim}"
        wait_until(snapshot.exists, "the restarted worker never ran the scheduled BGSAVE", limit=20)
    finally:
        server.stop()


# -- damaged files at start-up -------------------------------------------------------------


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> tuple[Path, dict]:
    """The folder a shardkv of two shards (AOF) left, stopped after 100
    SETs, and those keys and values: each test works on a copy."""
    directory = tmp_path_factory.mktemp("with-data")
    server = start_shardkv("--dir", str(directory), "--appendonly", "yes", shards=2)
    c = client(server)
    data = {f"k{i}": f"v{i}" for i in range(100)}
    p = c.pipeline(transaction=False)
    for key, value in data.items():
        p.set(key, value)
    p.execute()
    assert stop(server) == 0
    return directory, data


def _stopped_server_with_data(tmp_path, data_dir: tuple[Path, dict]) -> dict:
    """A copy of ``data_dir``'s folder in ``tmp_path``; its keys and values."""
    directory, data = data_dir
    shutil.copytree(directory, tmp_path, dirs_exist_ok=True)
    return dict(data)


def _incr_of_shard(tmp_path: Path, shard: int) -> Path:
    return sorted(tmp_path.glob(f"appendonly.aof.shard-{shard}.*.incr.aof"))[-1]


def test_torn_last_record_is_cut_off_and_the_server_starts(tmp_path, data_dir):
    data = _stopped_server_with_data(tmp_path, data_dir)
    incr = _incr_of_shard(tmp_path, 1)
    good = incr.stat().st_size
    with open(incr, "ab") as f:
        f.write(b"*3\r\n$3\r\nSET\r\n$4\r\ntorn\r\n$5\r\nval")  # a crash mid-write
    server = start_shardkv("--dir", str(tmp_path), "--appendonly", "yes", shards=2)
    try:
        c = client(server)
        assert c.mget(list(data)) == [v.encode() for v in data.values()]
        assert c.get("torn") is None
        assert incr.stat().st_size == good
        assert f"short read while loading the AOF file {incr}" in server.output()
    finally:
        server.stop()


def test_corrupt_aof_stops_start_up_naming_file_and_offset(tmp_path, data_dir):
    _stopped_server_with_data(tmp_path, data_dir)
    incr = _incr_of_shard(tmp_path, 1)
    data = incr.read_bytes()
    at = data.index(b"*", len(data) // 2)
    incr.write_bytes(data[:at] + b"?garbage\r\n" + data[at:])
    argv = [
        sys.executable,
        str(ROOT / "main.py"),
        "--port",
        str(free_port()),
        "--dir",
        str(tmp_path),
        "--shards",
        "2",
    ]
    proc = subprocess.run(
        [*argv, "--appendonly", "yes"], capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL
    )
    assert proc.returncode != 0
    out = proc.stdout + proc.stderr  # (the log, on standard output as Redis writes it)
    assert f"{incr} at offset {at}" in out, out
    assert "restarting it" not in out  # it stops, it does not retry forever


# A manifest edited by hand, each as Redis 7.0.15 refuses its own (aofLoadManifestFromFile):
# (the line to append, given the incr and base file names; Redis's words).
_BAD_MANIFEST_LINES = {
    "incr-listed-twice": (
        lambda incr, base: f"file {incr} seq {_seq(incr)} type i\n",
        "non-monotonic sequence",
    ),
    "second-base": (lambda incr, base: f"file {base} seq {_seq(base)} type b\n", "duplicate base file"),
    "a-path": (
        lambda incr, base: "file ../../../../etc/passwd seq 99 type i\n",
        "can't be a path, just a filename",
    ),
}


def _seq(name: str) -> int:
    return int(name.split(".")[-3])


def _redis_refuses(line_of, tmp_path: Path) -> str:
    """Redis's log when its own manifest gets the same line."""
    directory = tmp_path / "redis"
    directory.mkdir()
    port = free_port()
    argv = [redis_server_path(), "--port", str(port), "--bind", "127.0.0.1", "--save", ""]
    argv += ["--appendonly", "yes", "--dir", str(directory)]
    server = start_command(argv, port, "redis")
    c = redis.Redis(port=port)
    c.set("a", 1)
    c.incr("a")
    c.bgrewriteaof()
    wait_until(lambda: c.info("persistence")["aof_rewrite_in_progress"] == 0, "the rewrite")
    c.incr("a")
    server.stop()
    aofdir = directory / "appendonlydir"
    incr = sorted(p.name for p in aofdir.glob("*.incr.aof"))[-1]
    base = next(p.name for p in aofdir.glob("*.base.rdb"))
    with open(aofdir / "appendonly.aof.manifest", "a") as f:
        f.write(line_of(incr, base))
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert proc.returncode != 0
    return proc.stdout + proc.stderr


@pytest.fixture(scope="module")
def manifest_dir(tmp_path_factory) -> Path:
    """The folder a shardkv of one shard (AOF) left, stopped after a SET,
    an INCR, an AOF rewrite and another INCR: each case edits a copy."""
    directory = tmp_path_factory.mktemp("manifest") / "shardkv"
    directory.mkdir()
    server = start_shardkv("--dir", str(directory), "--appendonly", "yes", shards=1)
    c = client(server)
    c.set("a", 1)
    c.incr("a")
    c.bgrewriteaof()
    wait_until(lambda: c.info("persistence")["aof_rewrite_in_progress"] == 0, "the rewrite")
    c.incr("a")
    assert stop(server) == 0
    return directory


@pytest.mark.parametrize("case", sorted(_BAD_MANIFEST_LINES))
def test_an_edited_manifest_stops_start_up_as_redis(tmp_path, manifest_dir, case):
    line_of, words = _BAD_MANIFEST_LINES[case]
    assert words in _redis_refuses(line_of, tmp_path)
    directory = tmp_path / "shardkv"
    shutil.copytree(manifest_dir, directory)
    flags = ("--dir", str(directory), "--appendonly", "yes")
    incr = sorted(p.name for p in directory.glob("*.incr.aof"))[-1]
    base = next(p.name for p in directory.glob("*.base.snap"))
    with open(directory / "appendonly.aof.shard-0.manifest", "a") as f:
        f.write(line_of(incr, base))
    argv = [sys.executable, str(ROOT / "main.py"), "--port", str(free_port()), "--shards", "1", *flags]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert proc.returncode != 0
    out = proc.stdout + proc.stderr  # (the log, on standard output as Redis writes it)
    assert words in out, out
    assert "appendonly.aof.shard-0.manifest at line 5" in out, out


# -- shard count changes ---------------------------------------------------------------------


def test_shard_count_4_then_8_then_2_loses_nothing(tmp_path):
    # (test_persistence.py re-shards snapshots and AOFs both, in process.)
    flags = ("--dir", str(tmp_path), "--appendonly", "yes", "--save", "3600 1")
    server = start_shardkv(*flags, shards=4)
    c = client(server)
    kinds = present_types(c)
    populate(c, kinds)
    expected = snapshot_of(c)
    assert stop(server) == 0
    for n in (8, 2):
        server = start_shardkv(*flags, shards=n)
        c = client(server)
        assert snapshot_of(c) == expected
        assert c.info("server")["shards"] == n
        c.set(f"added-with-{n}", "yes")
        expected = snapshot_of(c)
        assert stop(server) == 0
        assert "re-sharding them for %d" % n in server.saved_output
    names = os.listdir(tmp_path)
    assert not [x for x in names if ".shard-2" in x or ".shard-7" in x], names


def _keys_of_every_form() -> list[bytes]:
    """Keys whose CRC16 lies at each quarter's seam (the acceptor routes by
    the whole CRC16, see Router.by_crc), hash tags of every form, binary,
    empty and long keys."""
    from binascii import crc_hqx

    keys = [
        b"",
        b"{}",
        b"{}{a}",
        b"{{a}}",
        b"a}{b}",
        b"}{a",
        b"a{b",
        b"{a}{b}",
        b"\x00\xff{\x01}",
        bytes(range(256)),
    ]
    keys += [b"x" * 100_000, b"{t}" + b"y" * 100_000, *(b"key:%d" % i for i in range(300))]
    seams = {0, 16383, 16384, 32767, 32768, 49151, 49152, 65535}
    by_crc: dict[int, bytes] = {}
    tagged: dict[int, bytes] = {}
    i = 0
    while len(by_crc) < len(seams) or len(tagged) < len(seams):
        if crc_hqx(b"k%d" % i, 0) in seams:
            by_crc.setdefault(crc_hqx(b"k%d" % i, 0), b"k%d" % i)
        if crc_hqx(b"%d" % i, 0) in seams:
            tagged.setdefault(crc_hqx(b"%d" % i, 0), b"{%d}z" % i)
        i += 1
    return keys + list(by_crc.values()) + list(tagged.values())


def test_keys_written_at_4_shards_are_read_at_3_and_7(tmp_path):
    # Written pipelined (the acceptor's inline route and slotted headers),
    # re-sharded at start-up by slot, read back pipelined by the new
    # router: in database 0 and another, by RESP2 and RESP3.
    flags = ("--dir", str(tmp_path), "--appendonly", "yes")
    keys = _keys_of_every_form()
    server = start_shardkv(*flags, shards=4)
    for db in (0, 3):
        p = redis.Redis(port=server.port, db=db).pipeline(transaction=False)
        for key in keys:
            p.set(key, b"%d:" % db + key[:40])
        p.execute()
    assert stop(server) == 0
    for n in (3, 7):
        server = start_shardkv(*flags, shards=n)
        try:
            for db in (0, 3):
                for protocol in (2, 3):
                    p = redis.Redis(port=server.port, db=db, protocol=protocol).pipeline(transaction=False)
                    for key in keys:
                        p.get(key)
                    assert p.execute() == [b"%d:" % db + key[:40] for key in keys], (n, db, protocol)
        finally:
            assert stop(server) == 0


# -- a crash during a rewrite -----------------------------------------------------------------


def test_crash_of_the_whole_server_during_a_rewrite(tmp_path):
    flags = ("--dir", str(tmp_path), "--appendonly", "yes", "--appendfsync", "always")
    server = start_shardkv(*flags, "--rdb-key-save-delay", "20000", shards=2)  # each child takes ~10 s
    c = client(server)
    c.mset({f"k{i}": f"v{i}" for i in range(1000)})
    assert c.bgrewriteaof()
    assert c.info("persistence")["aof_rewrite_in_progress"] == 1
    c.mset({f"during{i}": "x" for i in range(100)})  # logged into the new incr files
    c.set("k0", "changed")
    expected = snapshot_of(c)
    # Each rewriting child opens its temp file once it has started (a
    # loaded machine makes that late): the kills come after both have.
    wait_until(
        lambda: len([n for n in os.listdir(tmp_path) if ".tmp-" in n]) == 2, "the rewrites' temp files"
    )
    everyone = [psutil.Process(server.proc.pid), *psutil.Process(server.proc.pid).children(recursive=True)]
    # The supervisor, acceptor, workers, and the rewriting children: all
    # stopped first, so that none acts on another's death (a worker told
    # to stop by its supervisor's death would stop its rewrite and remove
    # the temp file), then killed.  One may be gone already.
    for sig in (signal.SIGSTOP, signal.SIGKILL):
        for p in everyone:
            with contextlib.suppress(psutil.NoSuchProcess):
                p.send_signal(sig)
    server.stop()
    assert [n for n in os.listdir(tmp_path) if ".tmp-" in n]  # it died mid-rewrite
    server = start_shardkv(*flags, shards=2)
    try:
        c = client(server)
        assert snapshot_of(c) == expected
        assert not [n for n in os.listdir(tmp_path) if ".tmp-" in n]
        assert c.bgrewriteaof()  # and the next rewrite completes
        wait_until(lambda: c.info("persistence")["aof_rewrite_in_progress"] == 0, "the rewrite")
        assert c.info("persistence")["aof_last_bgrewrite_status"] == "ok"
        assert snapshot_of(c) == expected
    finally:
        server.stop()
    server = start_shardkv(*flags, shards=2)
    try:
        assert snapshot_of(client(server)) == expected
    finally:
        server.stop()


# -- the acceptor -------------------------------------------------------------------------


def test_acceptor_is_restarted_and_workers_keep_their_data(tmp_path):
    server = start_shardkv("--dir", str(tmp_path), shards=2)  # no persistence: the data lives in the workers
    c = client(server)
    c.mset({f"k{i}": str(i) for i in range(100)})
    c.config_set("appendfsync", "no")
    workers = worker_pids(server)
    old = acceptor_pid(server)
    assert old, "no acceptor process found"  # never os.kill(0): that is the whole process group
    os.kill(old, signal.SIGKILL)
    c = client(server)
    wait_until(lambda: acceptor_pid(server) not in (0, old) and c.ping(), "a new acceptor")
    wait_until(lambda: c.get("k99") == b"99", "the shards behind it")
    assert c.mget([f"k{i}" for i in range(100)]) == [str(i).encode() for i in range(100)]
    assert worker_pids(server) == workers
    assert c.config_get("appendfsync") == {"appendfsync": "no"}  # CONFIG SET survived
    assert "acceptor pid=%d exited with -9; restarting it" % old in server.output()
    assert stop(server) == 0


# -- shutting down --------------------------------------------------------------------------


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_signals_stop_cleanly_and_save(tmp_path, sig):
    flags = ("--dir", str(tmp_path), "--save", "3600 1000", "--appendonly", "yes", "--appendfsync", "no")
    server = start_shardkv(*flags, shards=2)
    client(server).mset({f"k{i}": str(i) for i in range(100)})
    assert stop(server, sig) == 0
    assert len(list(tmp_path.glob("dump.rdb.shard-*"))) == 2  # save rules: each shard saved
    if sig == signal.SIGINT:
        return  # the same path as SIGTERM from here
    server = start_shardkv("--dir", str(tmp_path), "--appendonly", "no", shards=2)  # the snapshots alone
    try:
        assert client(server).mget([f"k{i}" for i in range(100)]) == [str(i).encode() for i in range(100)]
    finally:
        server.stop()


def _stopped_by_signal(
    kind: str, tmp_path: Path, sig: int, flags: str, rules: str, unsavable: tuple[str, ...] = ()
) -> tuple[int, bool, str]:
    """A server of ``kind`` with ``save`` rules ``rules``, its signal's
    ``shutdown-on-sig*`` set to ``flags`` by CONFIG SET, stopped by ``sig``
    after a write: its exit status, whether it saved, and its log.  Once
    it runs, a directory takes the place of each snapshot in ``unsavable``,
    so that saving it fails."""
    name = "shutdown-on-sigint" if sig == signal.SIGINT else "shutdown-on-sigterm"
    if kind == "redis":
        server = start_redis("--dir", str(tmp_path), "--save", rules)
    else:
        server = start_shardkv("--dir", str(tmp_path), "--save", rules, shards=2)
    try:
        c = client(server)
        assert c.config_set(name, flags)
        for snapshot in unsavable:
            (tmp_path / snapshot).mkdir()
        c.mset({f"k{i}": str(i) for i in range(20)})
        rc = stop(server, sig)
    finally:
        server.stop()
    return rc, bool(list(tmp_path.glob("dump.rdb*"))), server.saved_output


@pytest.mark.parametrize(
    "sig, flags, rules",
    [
        (signal.SIGTERM, "nosave", "3600 1"),
        (signal.SIGTERM, "save", ""),
        (signal.SIGTERM, "now", ""),
        (signal.SIGINT, "nosave now", "3600 1"),
        (signal.SIGINT, "save force", ""),
        (signal.SIGINT, "force", "3600 1"),
    ],
    ids=["TERM-nosave", "TERM-save", "TERM-now", "INT-nosave-now", "INT-save-force", "INT-force-rules"],
)
def test_signals_shut_down_as_shutdown_on_sig_says(tmp_path, sig, flags, rules):
    """``shutdown-on-sigterm`` and ``shutdown-on-sigint`` decide whether a
    signal's stop saves, as in Redis (``save``: always, ``nosave``: never,
    otherwise when there are ``save`` rules); the log says which signal
    stopped it.  (They were accepted and changed nothing: SIGTERM and
    SIGINT saved when there were rules, and only then.)"""
    got = {}
    for kind in ("redis", "shardkv"):
        (tmp_path / kind).mkdir()
        rc, saved, output = _stopped_by_signal(kind, tmp_path / kind, sig, flags, rules)
        assert f"Received {signal.Signals(sig).name} scheduling shutdown..." in output, kind
        assert "User requested shutdown..." in output, kind
        got[kind] = (rc, saved)
    assert got["shardkv"] == got["redis"]


def test_sigterm_with_force_exits_though_the_save_fails(tmp_path):
    """``shutdown-on-sigterm force``: a save that fails does not stop the
    stop, and the status is 0, as in Redis (without ``force`` Redis keeps
    running, and shardkv exits 1: see test_sigterm_with_a_shard_gone)."""
    got = {}
    for kind, snapshots in (("redis", ("dump.rdb",)), ("shardkv", ("dump.rdb.shard-0", "dump.rdb.shard-1"))):
        (tmp_path / kind).mkdir()
        rc, _, output = _stopped_by_signal(
            kind, tmp_path / kind, signal.SIGTERM, "force", "3600 1", snapshots
        )
        got[kind] = rc
        assert "Traceback" not in output
    assert got == {"redis": 0, "shardkv": 0}


def _persistence_fields(c: redis.Redis) -> dict:
    """What a failed stop must leave as it was in INFO persistence."""
    info = c.info("persistence")
    names = ("rdb_changes_since_last_save", "rdb_last_save_time", "rdb_last_bgsave_status", "rdb_saves")
    return {name: info.get(name) for name in names}


def _read_one(sock: socket.socket) -> object:
    """One reply's value, read from ``sock``."""
    buf = b""
    while (parsed := parse_reply(buf)) is None:
        chunk = sock.recv(4096)
        assert chunk, "the connection closed"
        buf += chunk
    return parsed[0]


def _refused_stop(
    kind: str, directory: Path, sig: int, flags: str, acceptors: int
) -> tuple[tuple, list[str]]:
    """A server of ``kind`` with ``save`` rules and no AOF, its
    ``shutdown-on-sig*`` set to ``flags``, whose save on ``sig`` fails (a
    directory where the snapshot goes): what happened, to compare, and its
    log's lines about the failure."""
    name = "shutdown-on-sigint" if sig == signal.SIGINT else "shutdown-on-sigterm"
    argv = ("--dir", str(directory), "--save", "3600 1", "--appendonly", "no", "--" + name, flags)
    if kind == "redis":
        server, snapshots = start_redis(*argv), ["dump.rdb"]
    else:
        server = start_shardkv(*argv, shards=3, acceptors=acceptors)
        snapshots = [f"dump.rdb.shard-{i}" for i in range(3)]
    keys = {f"k{i}": str(i) for i in range(50)}
    subscriber = blocked = None
    try:
        c = client(server)
        c.mset(keys)
        c.set("short", "x", px=300)  # the active expiry must still run after the failed stop
        before = _persistence_fields(c)
        subscriber = c.pubsub()
        subscriber.subscribe("ch")
        assert subscriber.get_message(timeout=TIMEOUT)["type"] == "subscribe"
        blocked = socket.create_connection(("127.0.0.1", server.port), timeout=TIMEOUT)
        blocked.sendall(b"*3\r\n$5\r\nBLPOP\r\n$1\r\nq\r\n$1\r\n0\r\n")
        wait_until(lambda: c.info("clients")["blocked_clients"] == 1, "BLPOP to block")
        for snapshot in snapshots:
            (directory / snapshot).mkdir()
        server.signal(sig)
        wait_until(lambda: "can't exit" in server.output(), f"{kind} to refuse to exit")
        time.sleep(0.5)
        alive = server.proc.poll() is None
        # It serves on: every key, writes, INFO as before the stop, the
        # blocked client, Pub/Sub, the expiry of keys.
        served = c.mget(list(keys)) == [v.encode() for v in keys.values()]
        after = _persistence_fields(c)
        wait_until(lambda: c.dbsize() == len(keys), "the short key to expire")
        assert c.lpush("q", "item") == 1
        unblocked = _read_one(blocked)
        assert c.publish("ch", "hello") == 1
        heard = subscriber.get_message(timeout=TIMEOUT)
        c.set("later", "v")
        # Once the cause is gone, the next signal saves and stops.
        for snapshot in snapshots:
            (directory / snapshot).rmdir()
        server.signal(sig)
        rc = server.proc.wait(60)
        output = server.output()
    finally:
        if subscriber is not None:
            subscriber.close()
        if blocked is not None:
            blocked.close()
        server.stop()
    lines = [
        line
        for line in ("Error trying to save the DB, can't exit.", "Errors trying to shut down the server.")
        if line in output
    ]
    assert "Traceback" not in output, output
    restart = ("--dir", str(directory), "--appendonly", "no")
    server = (
        start_redis(*restart) if kind == "redis" else start_shardkv(*restart, shards=3, acceptors=acceptors)
    )
    try:
        c = client(server)
        restored = c.mget(list(keys)) == [v.encode() for v in keys.values()] and c.get("later") == b"v"
        size = c.dbsize()
    finally:
        server.stop()
    got = (alive, served, after == before, unblocked, heard and heard["data"], rc, restored, size)
    return got, lines


# redis-server's run of _refused_stop for each (signal, flags): the same
# for either acceptor count (redis-server has one), so run once and kept
# for the other, rather than started, stopped and restarted again.
_REDIS_REFUSED: dict[tuple[int, str], tuple[tuple, list[str]]] = {}


@pytest.mark.parametrize("acceptors", [1, 2])
@pytest.mark.parametrize(
    "sig, flags",
    [(signal.SIGTERM, "default"), (signal.SIGINT, "save"), (signal.SIGTERM, "save now")],
    ids=["TERM-default", "INT-save", "TERM-save-now"],
)
def test_signal_whose_save_fails_keeps_serving(tmp_path, sig, flags, acceptors):
    """A signal's stop whose save fails (without ``force``) leaves the
    server serving everything it held, as Redis's does ("Error trying to
    save the DB, can't exit."), and INFO persistence as it was; the next
    signal, once the save can succeed, saves and exits 0, and every key is
    there after a restart.  (shardkv stopped its acceptors first, and exited
    1 with the writes since the last save lost.)"""
    got = {}
    for kind in ("redis", "shardkv"):
        if kind == "redis" and (sig, flags) in _REDIS_REFUSED:
            got[kind], lines = _REDIS_REFUSED[sig, flags]
        else:
            (tmp_path / kind).mkdir()
            got[kind], lines = _refused_stop(kind, tmp_path / kind, sig, flags, acceptors)
        assert len(lines) == 2, kind
        if kind == "redis":
            _REDIS_REFUSED[sig, flags] = got[kind], lines
    assert got["shardkv"] == got["redis"] == (True, True, True, [b"q", b"item"], b"hello", 0, True, 51)


@pytest.mark.parametrize("how", ["SHUTDOWN FORCE", "save force"])
def test_a_forced_stop_whose_save_fails_exits_0(tmp_path, how):
    """SHUTDOWN FORCE, and a signal with ``shutdown-on-sigterm save
    force``, stop even though the save fails, with status 0 as in Redis
    ("Error trying to save the DB. Exit anyway."): the shards that could
    not save close unsaved.  (SHUTDOWN FORCE's workers tried to save again
    on their way out, failed, and made the status 1.)"""
    got = {}
    for kind in ("redis", "shardkv"):
        directory = tmp_path / kind
        directory.mkdir()
        argv = ("--dir", str(directory), "--save", "3600 1", "--shutdown-on-sigterm", "save force")
        if kind == "redis":
            server, snapshots = start_redis(*argv), ["dump.rdb"]
        else:
            server, snapshots = start_shardkv(*argv, shards=2), ["dump.rdb.shard-0", "dump.rdb.shard-1"]
        try:
            c = client(server, retry=False)
            c.mset({f"k{i}": str(i) for i in range(20)})
            for snapshot in snapshots:
                (directory / snapshot).mkdir()
            if how == "SHUTDOWN FORCE":
                with pytest.raises(redis.ConnectionError):  # Redis closes the connection, no reply
                    c.execute_command("SHUTDOWN", "FORCE")
            else:
                server.signal(signal.SIGTERM)
            got[kind] = server.proc.wait(60)
            assert "Error trying to save the DB. Exit anyway." in server.output(), kind
            assert "Traceback" not in server.output()
        finally:
            server.stop()
    assert got == {"redis": 0, "shardkv": 0}


@pytest.mark.parametrize(
    "flags, rules, unsavable",
    [("nosave", "3600 1", False), ("save", "", True), ("default", "3600 1", True)],
    ids=["nosave", "save-fails", "rules-save-fails"],
)
def test_signal_keeps_every_acknowledged_write_in_the_aof(tmp_path, flags, rules, unsavable):
    """With appendonly, a signal's stop flushes the AOF whatever
    ``shutdown-on-sigterm`` says, as Redis's prepareForShutdown does before
    it saves: ``nosave`` saves no snapshot but loses no write, and a save
    that fails (without ``force``) loses none either: the server keeps
    running (see test_signal_whose_save_fails_keeps_serving), and is
    stopped by SHUTDOWN NOSAVE.  Each server's writes are all there when it
    starts again from its AOF."""
    keys = {f"k{i}": str(i) for i in range(50)}
    snapshots = {"redis": ["dump.rdb"], "shardkv": ["dump.rdb.shard-0", "dump.rdb.shard-1"]}
    for kind in ("redis", "shardkv"):
        directory = tmp_path / kind
        directory.mkdir()
        argv = ("--dir", str(directory), "--save", rules, "--appendonly", "yes", "--appendfsync", "no")
        server = start_redis(*argv) if kind == "redis" else start_shardkv(*argv, shards=2)
        try:
            c = client(server)
            assert c.config_set("shutdown-on-sigterm", flags)
            if unsavable:
                for snapshot in snapshots[kind]:
                    (directory / snapshot).unlink(missing_ok=True)
                    (directory / snapshot).mkdir()
            c.mset(keys)
            server.signal(signal.SIGTERM)
            if unsavable:
                # "Error trying to save the DB, can't exit.": it serves on.
                wait_until(lambda s=server: "can't exit" in s.output(), f"{kind} to refuse to exit")
                assert c.dbsize() == len(keys)
                # No retry: redis-py would send SHUTDOWN again, and reconnect
                # to a server that is gone, with 2-5 s of back-off.
                client(server, retry=False).shutdown(nosave=True)
            rc = server.proc.wait(60)
            assert rc == 0, server.output()
            assert "Traceback" not in server.output()
        finally:
            server.stop()
        for snapshot in snapshots[kind]:
            if unsavable:
                (directory / snapshot).rmdir()
            else:
                assert not (directory / snapshot).exists(), f"{kind} saved with nosave"
        argv = ("--dir", str(directory), "--appendonly", "yes")
        server = start_redis(*argv) if kind == "redis" else start_shardkv(*argv, shards=2)
        try:
            assert client(server).mget(list(keys)) == [v.encode() for v in keys.values()], kind
        finally:
            server.stop()


# The supervisor's waits for an acceptor that does not stop (5 s for it to
# begin the stop, 4 s more before SIGKILL), made 0.3 s each by a test-own
# ``main.py`` (as test_signal_stop_frozen_worker's): the test below waits
# them out (the SIGSTOPped acceptor never begins nor stops, however long).
HUNG_ACCEPTOR_MAIN = """
import sys

import shardkv.supervisor

if __name__ == "__main__":
    shardkv.supervisor.STOP_ANSWER_WITHIN = 0.3
    shardkv.supervisor.STOP_GRACE = 0.3
    sys.exit(shardkv.supervisor.main())
"""


def test_sigterm_stops_past_a_hung_acceptor_and_saves_as_told(tmp_path):
    """A stopped (SIGSTOP) acceptor cannot hold up a signal's stop: the
    supervisor reads only what its acceptors' sockets already hold before
    it stops (the CONFIG SET lines sent before their OK), kills the acceptor
    that does not stop, and each shard then saves as ``shutdown-on-sigterm``
    says (``save``, with no save rules)."""
    root = tmp_path / "root"
    root.mkdir()
    (root / "main.py").write_text(HUNG_ACCEPTOR_MAIN)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), *sys.path]))
    server = start_shardkv("--dir", str(tmp_path), "--save", "", shards=2, root=root, env=env)
    stopped = 0
    try:
        c = client(server)
        assert c.config_set("shutdown-on-sigterm", "save")
        c.mset({f"k{i}": str(i) for i in range(20)})
        stopped = acceptor_pid(server)
        os.kill(stopped, signal.SIGSTOP)
        assert stop(server, signal.SIGTERM) == 0
        assert "acceptor pid=%d did not stop; killing it" % stopped in server.saved_output
    finally:
        with contextlib.suppress(ProcessLookupError, psutil.NoSuchProcess):
            if stopped and psutil.Process(stopped).status() == psutil.STATUS_STOPPED:
                os.kill(stopped, signal.SIGCONT)
        server.stop()
    assert len(list(tmp_path.glob("dump.rdb.shard-*"))) == 2


@pytest.mark.parametrize(
    "option, rules, saved",
    [("", "3600 1", True), ("NOSAVE", "3600 1", False), ("SAVE", "", True)],
)
def test_shutdown_command(tmp_path, option, rules, saved):
    server = start_shardkv("--dir", str(tmp_path), "--save", rules, shards=2)
    c = client(server, retry=False)
    c.mset({f"k{i}": str(i) for i in range(100)})
    with pytest.raises(redis.ConnectionError):  # Redis closes the connection, no reply
        c.execute_command("SHUTDOWN", *([option] if option else []))
    assert server.proc.wait(60) == 0
    server.stop()
    assert bool(list(tmp_path.glob("dump.rdb.shard-*"))) == saved


def test_shutdown_that_cannot_save_keeps_serving(tmp_path):
    server = start_shardkv("--dir", str(tmp_path), "--save", "3600 1", shards=2)
    c = client(server)
    c.set("k", "v")
    for i in range(2):  # a directory where each snapshot should go: every save fails
        (tmp_path / f"dump.rdb.shard-{i}").mkdir()
    try:
        with pytest.raises(redis.ResponseError, match="Errors trying to SHUTDOWN"):
            c.shutdown()
        assert c.set("k2", "v") and c.get("k") == b"v"  # still serving, every shard open again
        assert server.proc.poll() is None
    finally:
        for i in range(2):
            (tmp_path / f"dump.rdb.shard-{i}").rmdir()
        assert stop(server) == 0


@contextlib.contextmanager
def worker_gone(server, shard: int, c: redis.Redis, key: str):
    """``shard``'s worker killed and not restarted yet: the supervisor is
    stopped (SIGSTOP) until the block ends, and the acceptor has found the
    worker gone (a command to it answers ``shard unavailable``)."""
    supervisor = server.proc.pid
    os.kill(supervisor, signal.SIGSTOP)
    try:
        worker = psutil.Process(worker_pids(server)[shard])
        worker.kill()

        def unavailable() -> bool:
            try:
                c.get(key)
            except redis.ResponseError as e:
                return "shard unavailable" in str(e)
            return False

        wait_until(unavailable, "the acceptor to find the worker gone")
        # Its pipes close a moment before it is a zombie: dead, but not yet
        # reaped.  Its main thread is one a moment before its other thread
        # is gone, and until then the supervisor cannot reap it: it would
        # find the worker alive as it stops, and dead of SIGKILL after.
        wait_until(
            lambda: worker.status() == psutil.STATUS_ZOMBIE and worker.num_threads() == 1,
            "the worker to be dead",
        )
        yield
    finally:
        os.kill(supervisor, signal.SIGCONT)


@pytest.mark.parametrize(
    "option, rules",
    [("NOSAVE", "3600 1"), ("", ""), ("FORCE", "3600 1"), ("SAVE FORCE", "")],
    ids=["NOSAVE", "no-rules", "FORCE", "SAVE-FORCE"],
)
@pytest.mark.parametrize("acceptors", [1, 2])
def test_shutdown_without_a_save_stops_with_a_shard_gone(tmp_path, option, rules, acceptors):
    """As in Redis, SHUTDOWN that does not save (NOSAVE, no ``save`` rules)
    or is FORCEd always stops the server, even while a shard's worker is
    gone: it was answered ``Errors trying to SHUTDOWN`` and kept serving."""
    server = start_shardkv("--dir", str(tmp_path), "--save", rules, shards=2, acceptors=acceptors)
    try:
        c = client(server, retry=False)
        key = keys_of_shard(1, 2, "k", 1)[0]
        c.set(key, "v")
        children = psutil.Process(server.proc.pid).children(recursive=True)
        with worker_gone(server, 1, c, key):
            with pytest.raises(redis.ConnectionError):  # Redis closes the connection, no reply
                c.execute_command("SHUTDOWN", *option.split())
        assert server.proc.wait(60) == 0
        assert "Traceback" not in server.output()
        assert not [p for p in children if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
    finally:
        server.stop()


@pytest.mark.parametrize("option, rules", [("", "3600 1"), ("SAVE", "")], ids=["rules", "SAVE"])
def test_shutdown_that_must_save_a_gone_shard_keeps_serving(tmp_path, option, rules):
    """A shard whose worker is gone cannot be saved: SHUTDOWN that saves
    answers as Redis does when its save fails, and the server serves on."""
    server = start_shardkv("--dir", str(tmp_path), "--save", rules, shards=2)
    try:
        c = client(server, retry=False)
        key = keys_of_shard(1, 2, "k", 1)[0]
        with worker_gone(server, 1, c, key):
            with pytest.raises(redis.ResponseError, match="^Errors trying to SHUTDOWN. Check logs.$"):
                c.execute_command("SHUTDOWN", *option.split())
        wait_until(lambda: c.set(key, "v"), "the worker to be restarted")
        assert c.set("other", "v") and server.proc.poll() is None
    finally:
        assert stop(server) == 0


@pytest.mark.parametrize(
    "rules, flags, status",
    [
        ("3600 1", "default", None),
        ("", "default", 0),
        ("", "save", None),
        ("3600 1", "nosave", 0),
        ("3600 1", "force", 0),
    ],
    ids=["rules", "no-rules", "save", "nosave", "force"],
)
def test_sigterm_with_a_shard_gone(tmp_path, rules, flags, status):
    """SIGTERM saves when there are ``save`` rules, as in Redis (or as
    ``shutdown-on-sigterm`` says): a shard whose worker is gone could not
    save, and that is a failed save, as for SHUTDOWN: the server serves on
    (status None here: the worker is restarted, and the next SIGTERM
    stops with status 0), unless ``force``; without a save nothing is
    saved, and a gone shard is no failure.  (The stop is handed to the
    acceptor before the supervisor restarts the worker: it finds the shard
    gone.)"""
    server = start_shardkv("--dir", str(tmp_path), "--save", rules, "--shutdown-on-sigterm", flags, shards=2)
    try:
        c = client(server, retry=False)
        key = keys_of_shard(1, 2, "k", 1)[0]
        c.set(key, "v")
        with worker_gone(server, 1, c, key):
            os.kill(server.proc.pid, signal.SIGTERM)  # it runs on SIGCONT
        if status is None:
            wait_until(lambda: "can't exit" in server.output(), "the stop to fail")
            wait_until(lambda: c.set(key, "v2"), "the worker to be restarted")
            assert server.proc.poll() is None and c.get(key) == b"v2"
            status = 0
            server.signal(signal.SIGTERM)
        assert server.proc.wait(60) == status
        assert "Traceback" not in server.output()
    finally:
        server.stop()


def test_info_persistence_lastsave_and_background_jobs(tmp_path):
    server = start_shardkv("--dir", str(tmp_path), "--appendonly", "yes", shards=2)
    c = client(server)
    try:
        c.mset({f"k{i}": str(i) for i in range(100)})
        info = c.info("persistence")
        assert info["aof_enabled"] == 1 and info["rdb_changes_since_last_save"] > 0
        first = c.lastsave()
        assert raw(server.port, b"BGSAVE\r\n") == b"+Background saving started\r\n"  # Redis's words
        wait_until(lambda: c.info("persistence")["rdb_bgsave_in_progress"] == 0, "BGSAVE")
        info = c.info("persistence")
        assert info["rdb_changes_since_last_save"] == 0 and info["rdb_last_bgsave_status"] == "ok"
        assert c.lastsave() >= first
        reply = raw(server.port, b"BGREWRITEAOF\r\n")
        assert reply == b"+Background append only file rewriting started\r\n"
        wait_until(lambda: c.info("persistence")["aof_rewrite_in_progress"] == 0, "BGREWRITEAOF")
        info = c.info("persistence")
        assert info["aof_rewrites"] >= 1 and info["aof_last_bgrewrite_status"] == "ok"
        assert "aof_rewrite_max_pause_usec" in info and "latest_fork_usec" in c.info("stats")
        assert c.save() is True
        assert len(list(tmp_path.glob("dump.rdb.shard-*"))) == 2
        c.config_set("appendonly", "no")
        wait_until(lambda: c.info("persistence")["aof_enabled"] == 0, "appendonly no")
        assert not list(tmp_path.glob("*.manifest"))
        c.config_set("appendonly", "yes")
        wait_until(lambda: len(list(tmp_path.glob("*.manifest"))) == 2, "appendonly yes")
        c.set("late", "1")
    finally:
        assert stop(server) == 0
    server = start_shardkv("--dir", str(tmp_path), "--appendonly", "yes", shards=2)
    try:
        assert client(server).get("late") == b"1" and client(server).get("k5") == b"5"
    finally:
        server.stop()


def _aof_records(files: list) -> list[list[bytes]]:
    """The commands of AOF files (RESP arrays), SELECT left out."""
    records = []
    for path in files:
        data, pos = path.read_bytes(), 0
        while (parsed := parse_reply(data, pos)) is not None:
            record, pos = parsed
            if record[0].upper() != b"SELECT":  # type: ignore[index]
                records.append(record)
    return records


@pytest.mark.parametrize("acceptors", [1, 2])
def test_a_scripts_call_of_every_shards_figures_leaves_its_effects_whole_in_the_aof(tmp_path, acceptors):
    """A script that asks every shard for figures (INFO: an ``I`` frame to
    its own shard too, answered while the script waits) between its writes:
    the AOF holds its effects in one MULTI/EXEC, as Redis's does, and a
    script that runs again across shards leaves nothing of its first
    attempt (its writes were rolled back).  A restart from the AOF gives
    the data back."""
    flags = ("--appendonly", "yes", "--appendfsync", "always")
    script = (
        "redis.call('set', KEYS[1], 'x'); redis.call('info', 'keyspace'); redis.call('set', KEYS[1], 'y')"
    )
    escape = "redis.call('incr', KEYS[1]); redis.call('info', 'keyspace'); redis.call('incr', ARGV[1])"
    router = Router(2)
    a, b = (next(f"e{i}" for i in range(100) if router.shard_of(f"e{i}".encode()) == s) for s in (0, 1))
    (ours_dir := tmp_path / "ours").mkdir()
    (real_dir := tmp_path / "real").mkdir()
    ours = start_shardkv(*flags, "--dir", str(ours_dir), shards=2, acceptors=acceptors)
    real = start_redis(*flags, "--dir", str(real_dir))
    try:
        for proc in (ours, real):
            c = client(proc)
            c.eval(script, 1, "k{t}")
            c.close()
        c = client(ours)
        c.eval(escape, 1, a, b)
        assert c.mget(a, b) == [b"1", b"1"]
        c.close()
    finally:
        ours.stop()
        real.stop()
    expected = _aof_records(sorted(real_dir.glob("appendonlydir/*.incr.aof")))
    assert expected == [[b"MULTI"], [b"set", b"k{t}", b"x"], [b"set", b"k{t}", b"y"], [b"EXEC"]]
    shard = router.shard_of(b"k{t}")
    got = _aof_records(sorted(ours_dir.glob(f"appendonly.aof.shard-{shard}.*.incr.aof")))
    assert got[:4] == expected
    for index in (0, 1):
        records = _aof_records(sorted(ours_dir.glob(f"appendonly.aof.shard-{index}.*.incr.aof")))
        assert not [r for r in records if r[0].lower() == b"incr"]  # only the cross-shard run's states
    ours = start_shardkv(*flags, "--dir", str(ours_dir), shards=2, acceptors=acceptors)
    try:
        c = client(ours)
        assert c.mget("k{t}", a, b) == [b"y", b"1", b"1"]
        c.close()
    finally:
        ours.stop()
