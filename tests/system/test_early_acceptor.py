"""Acceptors started while the workers load (shardkv.supervisor): as
Redis does while it loads its data, each listens at once and answers
-LOADING to every command without the ``loading`` flag, and INFO says
``loading:1``; one killed meanwhile starts again and does the same; no
client sees any shard's data, even a shard that has loaded, before every
shard has; then every acceptor serves every shard.  A worker is held
(the ``loading`` and ``loaded`` fault points,
:mod:`shardkv.runtime.faultpoints`) before it loads its files, or
between its load and its word to the supervisor."""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import signal
import socket
import sys
import tempfile
import time
from pathlib import Path

import psutil
import pytest
import redis

from shardkv.protocol import errors
from tests.support.resp import RespClient, parse_info
from tests.support.servers import HOST, ROOT, ServerProcess, free_port, start_shardkv

WAIT = 30.0
LOADING = b"-%s\r\n" % errors.LOADING.encode()
KEYS = [f"key{i}" for i in range(20)]  # on both shards


def _until(check, what: str, server: ServerProcess):
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.02)
    raise AssertionError(f"{what}; log:\n{server.log_tail(30)}")


def _acceptor_pids(server: ServerProcess) -> list[int]:
    return [int(pid) for pid in re.findall(r"acceptor pid=(\d+) port=", server.output())]


def _answering_loading(server: ServerProcess) -> list[int]:
    """The acceptors that listen while the shards load (each logs so)."""
    return [int(pid) for pid in re.findall(r"acceptor pid=(\d+) answering -LOADING", server.output())]


def _shards_loaded(server: ServerProcess) -> set[int]:
    """The shards whose worker has loaded its files (each logs so)."""
    return {int(i) for i in re.findall(r"shard (\d+): \d+ keys loaded", server.output())}


# Folders made once for the module (by a server started for that), copied
# for each test, which changes its copy: name -> path.
_TEMPLATES: dict[str, str] = {}


@pytest.fixture(scope="module", autouse=True)
def _remove_templates():
    yield
    for folder in _TEMPLATES.values():
        shutil.rmtree(folder, ignore_errors=True)
    _TEMPLATES.clear()


def _copy_of(name: str, make) -> str:
    """A new folder holding what ``make()`` left in a folder of its own
    (made the first time only)."""
    if name not in _TEMPLATES:
        _TEMPLATES[name] = make()
    folder = tempfile.mkdtemp(prefix=f"{name}-")
    shutil.copytree(_TEMPLATES[name], folder, dirs_exist_ok=True)
    return folder


def _saved_folder() -> tuple[str, int]:
    """A folder with the snapshots of 2 shards holding KEYS, and their bytes."""
    folder = _copy_of("shardkv-early", _save_keys)
    files = [p for p in Path(folder).iterdir() if p.is_file()]
    assert len(files) == 2, files
    return folder, sum(p.stat().st_size for p in files)


def _save_keys() -> str:
    folder = tempfile.mkdtemp(prefix="shardkv-early-")
    server = start_shardkv("--save", "", "--appendonly", "no", "--dir", folder, shards=2, acceptors=1)
    try:
        client = redis.Redis(host=HOST, port=server.port)
        for key in KEYS:
            client.set(key, key)
        assert client.save()
        client.close()
    finally:
        assert server.stop() == 0
    return folder


def _start_held(folder: str, point: str, acceptors: int) -> tuple[ServerProcess, Path, psutil.Process]:
    """shardkv on ``folder``, its worker 0 held at fault point ``point``."""
    fault_file = Path(folder, "faultpoints")
    fault_file.write_text(f"{point}@0")
    port = free_port()
    argv = [
        sys.executable, str(ROOT / "main.py"), "--port", str(port), "--shards", "2",
        "--acceptors", str(acceptors), "--save", "", "--appendonly", "no", "--dir", folder,
    ]  # fmt: skip
    env = dict(os.environ, PYTHONUNBUFFERED="1", SHARDKV_FAULT_FILE=str(fault_file))
    server = ServerProcess(argv, port, cwd=ROOT, env=env, workdir=folder, kind="shardkv", shards=2)
    match = _until(lambda: re.search(r"worker 0 pid=(\d+)", server.output()), "no worker 0", server)
    held = psutil.Process(int(match.group(1)))
    _until(lambda: held.status() == psutil.STATUS_STOPPED, "worker 0 never reached the point", server)
    return server, fault_file, held


def _release(fault_file: Path, held: psutil.Process) -> None:
    fault_file.write_text("")
    held.send_signal(signal.SIGCONT)


def _answers_loading(port: int, tries: int = 6) -> None:
    """Each new connection (K > 1: whichever acceptor takes it) answers
    -LOADING to commands without the flag, even for keys of the shard that
    has loaded, and serves those with it."""
    for _ in range(tries):
        with RespClient(port) as client:
            assert client.call("PING") == LOADING
            for key in KEYS[:4]:
                assert client.call("GET", key) == LOADING
            assert client.call("DBSIZE") == LOADING
            assert client.call("ECHO", "hi") == b"$2\r\nhi\r\n"
            info = parse_info(client.command("INFO", "persistence"))
            assert info["loading"] == "1"


@pytest.mark.parametrize("acceptors", [1, 2])
def test_acceptors_answer_loading_until_every_shard_has_loaded(acceptors):
    folder, total = _saved_folder()
    server, fault_file, held = _start_held(folder, "loaded", acceptors)
    try:
        first = _until(
            lambda: (pids := _answering_loading(server)) and len(pids) == acceptors and pids,
            "not every acceptor listens while the shards load",
            server,
        )
        _answers_loading(server.port)
        # Worker 1 is not held: it may start (and find its file) well after
        # worker 0 has loaded; till then INFO counts worker 0's bytes alone.
        _until(lambda: _shards_loaded(server) == {0, 1}, "worker 1 does not load", server)
        with RespClient(server.port) as client:
            info = parse_info(client.command("INFO", "persistence"))
        # Worker 0 is held after its load, worker 1 has loaded: every byte is loaded, and it still loads.
        assert (info["loading_total_bytes"], info["loading_loaded_bytes"]) == (str(total), str(total))
        os.kill(first[0], signal.SIGKILL)
        _until(lambda: "before the shards loaded; restarting it" in server.output(), "no restart", server)
        again = _until(lambda: _answering_loading(server)[acceptors:], "no new acceptor", server)
        assert again[0] in _acceptor_pids(server)
        _answers_loading(server.port)  # the new one too
        _release(fault_file, held)
        held = None
        server.wait_ready(WAIT)
        _until(
            lambda: server.output().count(" listening on ") >= acceptors, "not every acceptor serves", server
        )
        for key in KEYS:  # through whichever acceptor takes each client
            client = redis.Redis(host=HOST, port=server.port)
            assert client.get(key) == key.encode()
            assert client.info("persistence")["loading"] == 0
            client.close()
    finally:
        if held is not None:
            _release(fault_file, held)
        assert server.stop() == 0, server.final_output[-3000:]


def test_info_shows_how_far_the_loading_has_come():
    folder, total = _saved_folder()
    server, fault_file, held = _start_held(folder, "loading", 1)
    try:
        _until(lambda: _answering_loading(server), "the acceptor does not listen", server)

        def persistence() -> dict:
            with RespClient(server.port) as client:
                found = parse_info(client.command("INFO", "persistence"))
            # No total (and no perc) before every worker has found its files.
            assert found["loading_total_bytes"] != "0" or found["loading_loaded_perc"] == "0.00"
            return found

        info = _until(lambda: (i := persistence())["loading_total_bytes"] != "0" and i, "no total", server)
        assert info["loading"] == "1"
        # Worker 1 has loaded its file (or has yet to); worker 0 has found its own and loaded nothing.
        loaded, of = int(info["loading_loaded_bytes"]), int(info["loading_total_bytes"])
        assert 0 <= loaded < of == total
        assert float(info["loading_loaded_perc"]) == pytest.approx(loaded / of * 100, abs=0.01)
        assert abs(int(info["loading_start_time"]) - time.time()) < WAIT
        _release(fault_file, held)
        held = None
        server.wait_ready(WAIT)
        with RespClient(server.port) as client:
            assert client.command("DBSIZE") == len(KEYS)
            info = parse_info(client.command("INFO", "persistence"))
        assert info["loading"] == "0" and "loading_total_bytes" not in info
    finally:
        if held is not None:
            _release(fault_file, held)
        assert server.stop() == 0, server.final_output[-3000:]


# Sent on one connection while the server loads, to redis-server and to
# shardkv; each reply compared whole ("exact") or by its RESP type alone.
DURING_LOADING = [
    (["PING"], "exact"),
    (["PING", "hi"], "exact"),
    (["ECHO", "hi"], "exact"),
    (["GET", "key1"], "exact"),
    (["SET", "key1", "v"], "exact"),
    (["DBSIZE"], "exact"),
    (["KEYS", "*"], "exact"),
    (["EVAL", "return 1", "0"], "exact"),
    (["FLUSHALL"], "exact"),
    (["NOSUCH"], "exact"),
    (["GET"], "exact"),
    (["SELECT", "0"], "exact"),
    (["CLIENT", "SETNAME", "loader"], "exact"),
    (["CLIENT", "GETNAME"], "exact"),
    (["CLIENT", "ID"], "type"),
    (["CLIENT", "LIST"], "type"),
    (["CLIENT", "KILL", "ID", "999999"], "exact"),
    (["CONFIG", "GET", "maxmemory-policy"], "exact"),
    (["CONFIG", "SET", "maxmemory", "0"], "exact"),  # (no shard to ask yet: each gets it when attached)
    (["CONFIG", "SET", "maxmemory", "100mb"], "exact"),
    (["CONFIG", "SET", "maxmemory", "0"], "exact"),
    (["CONFIG", "RESETSTAT"], "exact"),
    (["LASTSAVE"], "type"),
    (["PUBSUB", "NUMPAT"], "exact"),
    (["PUBLISH", "channel", "message"], "exact"),
    (["PUBSUB", "CHANNELS"], "exact"),
    (["PUBSUB", "NUMSUB", "channel"], "exact"),
    (["ACL", "SETUSER", "loader", "on"], "exact"),
    (["ACL", "DELUSER", "loader"], "exact"),
    (["SCRIPT", "FLUSH"], "exact"),
    (["FUNCTION", "LIST"], "exact"),
    (["TIME"], "type"),
    (["MULTI"], "exact"),
    (["SET", "key1", "v"], "exact"),
    (["EXEC"], "exact"),
    (["MULTI"], "exact"),
    (["ECHO", "x"], "exact"),
    (["EXEC"], "exact"),
    (["AUTH", "nobody"], "exact"),
]


def _replies_while_loading(port: int) -> list[bytes]:
    with RespClient(port) as client:
        assert client.call("PING") == LOADING
        out = []
        for args, how in DURING_LOADING:
            reply = client.call(*args)
            out.append(reply if how == "exact" or reply.startswith(b"-") else reply[:1])
        info = parse_info(client.command("INFO", "persistence"))
        out.append(info["loading"].encode())
        assert client.call("PING") == LOADING  # still loading: every reply above was one while loading
    return out


@pytest.mark.parametrize("acceptors", [1, 2])
def test_replies_while_loading_are_redis_servers(acceptors):
    """redis-server loading a big RDB slowly (``key-load-delay``) and
    shardkv held before its acceptors get their pipes reply alike.  With 2
    acceptors too: the commands that ask the other acceptors (CLIENT LIST,
    CLIENT KILL, PUBLISH, CONFIG SET) answer while the shards load, as the
    supervisor relays the bus of an acceptor from its start (before, it
    did so only once the acceptor had its pipes, and they waited for the
    load)."""
    folder = tempfile.mkdtemp(prefix="redis-loading-")
    port = free_port()
    base = [
        "redis-server", "--port", str(port), "--bind", HOST, "--save", "", "--appendonly", "no",
        "--dir", folder, "--enable-debug-command", "local",
    ]  # fmt: skip
    redis_server = ServerProcess(base, port, kind="redis").wait_ready(WAIT)
    try:
        client = redis.Redis(host=HOST, port=port)
        client.execute_command("DEBUG", "POPULATE", 200000)
        assert client.save()
        client.close()
    finally:
        redis_server.stop()
    slow = [*base, "--key-load-delay", "100", "--loading-process-events-interval-bytes", "1024"]
    redis_server = ServerProcess(slow, port, workdir=folder, kind="redis")
    try:
        _until(lambda: _loads(port), "redis-server does not answer -LOADING", redis_server)
        expected = _replies_while_loading(port)
    finally:
        redis_server.stop()
    folder, _ = _saved_folder()
    server, fault_file, held = _start_held(folder, "loaded", acceptors)
    try:
        _until(lambda: len(_answering_loading(server)) == acceptors, "the acceptors do not listen", server)
        for _ in range(2 * acceptors):  # (K > 1: whichever acceptor takes the connection)
            assert _replies_while_loading(server.port) == expected
    finally:
        _release(fault_file, held)
        assert server.stop() == 0, server.final_output[-3000:]


def _loads(port: int) -> bool:
    try:
        with RespClient(port) as client:
            return client.call("PING") == LOADING
    except OSError:
        return False


def _digests(folder: str) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in Path(folder).iterdir() if p.is_file()}


def _slow_start(kind: str, folder: str, port: int, *flags: str) -> ServerProcess:
    """redis-server or shardkv (2 shards) on ``folder`` with ``save`` rules,
    not waiting for it to load."""
    common = ["--port", str(port), "--save", "3600 1", "--appendonly", "no", "--dir", folder, *flags]
    if kind == "redis":
        argv = ["redis-server", "--bind", HOST, *common, "--loading-process-events-interval-bytes", "1024"]
        return ServerProcess(argv, port, kind="redis")
    acceptors = os.environ.get("SHARDKV_TEST_ACCEPTORS", "1")
    argv = [sys.executable, str(ROOT / "main.py"), "--shards", "2", "--acceptors", acceptors, *common]
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    return ServerProcess(argv, port, cwd=ROOT, env=env, kind="shardkv", shards=2)


def _filled_folder(kind: str, keys: int) -> str:
    return _copy_of(f"{kind}-slow-load-{keys}", lambda: _fill(kind, keys))


def _fill(kind: str, keys: int) -> str:
    folder = tempfile.mkdtemp(prefix=f"{kind}-slow-load-")
    port = free_port()
    server = _slow_start(kind, folder, port).wait_ready(WAIT)
    try:
        client = redis.Redis(host=HOST, port=port)
        pipe = client.pipeline(transaction=False)
        for i in range(keys):
            pipe.set(f"key:{i}", i)
        pipe.execute()
        assert client.save()
        client.close()
    finally:
        assert server.stop() == 0
    return folder


@pytest.mark.parametrize("kind", ["redis", "shardkv"])
@pytest.mark.parametrize("how", ["SHUTDOWN", "SHUTDOWN SAVE", "SIGTERM"])
def test_a_stop_while_loading_stops_at_once_and_saves_nothing(kind, how):
    """As Redis: SHUTDOWN (whatever its flags: shutdownCommand turns it into
    NOSAVE while loading) and SIGTERM stop a server loading a big snapshot
    slowly (``key-load-delay``) at once, with status 0 and no reply; nothing
    is saved, though ``save`` rules are set, so the files are as they were;
    the next start loads them whole.  Before, shardkv finished loading
    every shard first (SHUTDOWN's ``__shutdown`` waited in the pipes)."""
    keys = 20000
    folder = _filled_folder(kind, keys)
    before = _digests(folder)
    port = free_port()
    # 10 s to load: 20000 keys, 1 ms each (shardkv's 2 shards load 10000 each).
    delay = "500" if kind == "redis" else "1000"
    server = _slow_start(kind, folder, port, "--key-load-delay", delay)
    try:
        _until(lambda: _loads(port), "it does not answer -LOADING", server)
        started = time.monotonic()
        if how == "SIGTERM":
            server.signal(signal.SIGTERM)
        else:
            with socket.create_connection((HOST, port), timeout=WAIT) as s:
                s.sendall(how.encode() + b"\r\n")
                assert s.recv(4096) == b""  # no reply: the connection closes
        server.proc.wait(5)  # raises TimeoutExpired if it loads on
        assert server.proc.returncode == 0, server.output()[-3000:]
        assert time.monotonic() - started < 5
        assert _digests(folder) == before  # nothing saved, no file replaced
    finally:
        server.stop()
    again = _slow_start(kind, folder, port).wait_ready(WAIT)
    try:
        assert redis.Redis(host=HOST, port=port).dbsize() == keys
    finally:
        again.stop()
        shutil.rmtree(folder, ignore_errors=True)
