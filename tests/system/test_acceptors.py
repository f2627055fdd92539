"""Several acceptors (``--acceptors 2``): both serve, one killed is
restarted alone while the other keeps serving, and no shard stays held.

Which acceptor a connection reached shows in its CLIENT ID: acceptor i of
K hands out i+1, i+1+K, ...
"""

from __future__ import annotations

import hashlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator

import pytest
import redis

from shardkv.runtime.config_params import machine_acceptors
from tests.support.acceptors import (
    acceptor_pids,
    client_on,
    connect_to,
    every_acceptor_answers,
    flush_through_every_acceptor,
)
from tests.support.placement import on_shards
from tests.support.rawsocket import wait_closed
from tests.support.resp import RespClient
from tests.support.servers import ROOT, ServerProcess, start_redis, start_shardkv

K = 2
KEYS = on_shards(0, 1, 2, 3, prefix="acc")


@pytest.fixture(scope="module")
def shared() -> Iterator[list[tuple[ServerProcess, dict]]]:
    """The module's shardkv of four shards and K acceptors, with its
    settings as it started: started by the first test that needs it, and
    again after one that failed or left it unwell."""
    held: list[tuple[ServerProcess, dict]] = []
    yield held
    for proc, _ in held:
        proc.stop()


def _settings(port: int) -> dict:
    with RespClient(port, timeout=20) as c:
        reply = c.command("CONFIG", "GET", "*")
    assert isinstance(reply, list)
    return dict(zip(reply[::2], reply[1::2], strict=True))


@pytest.fixture
def server(request, shared):
    """The module's shardkv as a new one starts: empty once every worker
    serves (a test may have killed one), no script, pause or statistics,
    every setting a test changed set back.  After a test that failed, or
    left an acceptor not answering, it is stopped (the next starts one)."""
    if not shared:
        proc = start_shardkv(shards=4, acceptors=K)
        shared.append((proc, _settings(proc.port)))
    proc, settings = shared[0]
    flush_through_every_acceptor(proc.port)  # (each acceptor gets a restarted worker's pipe on its own)
    with RespClient(proc.port, timeout=20) as c:
        for command in (("SCRIPT", "FLUSH"), ("CLIENT", "UNPAUSE"), ("CONFIG", "RESETSTAT")):
            assert c.command(*command) == b"OK"
        for name, value in _settings(proc.port).items():
            if settings[name] != value:
                assert c.command("CONFIG", "SET", name, settings[name]) == b"OK"
    failed = request.session.testsfailed
    yield proc
    if request.session.testsfailed != failed or not every_acceptor_answers(proc.port):
        shared.pop()[0].stop()


@pytest.mark.slow
def test_both_acceptors_serve_and_see_each_others_writes(server):
    a, b = connect_to(server.port, 0), connect_to(server.port, 1)
    try:
        a.mset(dict.fromkeys(KEYS, "from-a"))
        assert b.mget(KEYS) == ["from-a"] * 4
        b.set(KEYS[0], "from-b")
        assert a.get(KEYS[0]) == "from-b"
        assert a.exists(*KEYS) == 4
        b.rename(KEYS[1], "acc-moved")  # a parked cross-shard operation
        assert a.get("acc-moved") == "from-a"
        with a.pipeline(transaction=True) as p:
            p.incr(KEYS[2] + ":n").incr(KEYS[3] + ":n")
            assert p.execute() == [1, 1]
        assert b.mget([KEYS[2] + ":n", KEYS[3] + ":n"]) == ["1", "1"]
        assert b.delete(*KEYS) == 3
        # CONFIG SET through one acceptor reaches the other.
        a.config_set("maxmemory-samples", "7")
        deadline = time.monotonic() + 10
        while b.config_get("maxmemory-samples")["maxmemory-samples"] != "7":
            assert time.monotonic() < deadline, "CONFIG SET did not reach the other acceptor"
            time.sleep(0.05)
        ids = {int(a.client_id()), int(b.client_id())}
        assert len(ids) == 2
    finally:
        a.close()
        b.close()


@pytest.mark.slow
def test_a_killed_acceptor_is_restarted_alone_and_leaves_no_shard_held(server):
    pids = acceptor_pids(server)
    assert sorted(pids) == [0, 1]
    survivor = connect_to(server.port, 0)
    victim = connect_to(server.port, 1)
    try:
        victim.mset(dict.fromkeys(KEYS, "before"))
        os.kill(pids[1], signal.SIGKILL)
        # The other acceptor keeps serving, multi-shard commands included.
        for i in range(20):
            survivor.mset(dict.fromkeys(KEYS, f"during{i}"))
            assert survivor.mget(KEYS) == [f"during{i}"] * 4
        deadline = time.monotonic() + 30
        while not (1 in acceptor_pids(server) and acceptor_pids(server)[1] != pids[1]):
            assert time.monotonic() < deadline, "acceptor 1 was not restarted"
            time.sleep(0.05)
        assert acceptor_pids(server)[0] == pids[0]  # the survivor was left alone
        assert f"acceptor pid={pids[1]} exited with -9; restarting it" in server.output()
        fresh = connect_to(server.port, 1)
        try:
            fresh.mset(dict.fromkeys(KEYS, "after"))
            assert survivor.mget(KEYS) == ["after"] * 4
            assert fresh.mget(KEYS) == ["after"] * 4
            with survivor.pipeline(transaction=True) as p:
                p.set(KEYS[0], "x").set(KEYS[3], "y")
                assert p.execute() == [True, True]
            assert fresh.mget([KEYS[0], KEYS[3]]) == ["x", "y"]
        finally:
            fresh.close()
    finally:
        survivor.close()
        victim.close()


@pytest.mark.slow
def test_a_restarted_acceptor_knows_the_scripts_loaded_before(server):
    """Redis forgets a script only on SCRIPT FLUSH (or its own restart): an
    acceptor that died and was restarted learns the others' scripts before
    it listens, so EVALSHA through it runs scripts loaded (SCRIPT LOAD) or
    run (EVAL) before, with no NOSCRIPT."""
    pids = acceptor_pids(server)
    victim = connect_to(server.port, 1)
    survivor = connect_to(server.port, 0)
    try:
        loaded = victim.script_load("return 'loaded ' .. ARGV[1]")
        body = "return redis.call('incr', KEYS[1])"
        assert survivor.eval(body, 1, KEYS[0]) == 1
        evalled = hashlib.sha1(body.encode()).hexdigest()
        os.kill(pids[1], signal.SIGKILL)
        deadline = time.monotonic() + 30
        while acceptor_pids(server).get(1, pids[1]) == pids[1]:
            assert time.monotonic() < deadline, "acceptor 1 was not restarted"
            time.sleep(0.05)
        fresh = connect_to(server.port, 1)
        try:
            assert fresh.evalsha(loaded, 0, "x") == "loaded x"
            assert fresh.evalsha(evalled, 1, KEYS[0]) == 2
            assert fresh.script_exists(loaded, evalled) == [True, True]
            # SCRIPT FLUSH through it still forgets them in every acceptor.
            assert fresh.script_flush()
            with pytest.raises(redis.exceptions.NoScriptError):
                survivor.evalsha(loaded, 0, "x")
        finally:
            fresh.close()
    finally:
        survivor.close()
        victim.close()


@pytest.mark.slow
def test_an_acceptor_killed_during_multi_shard_traffic_leaves_no_shard_held(server):
    """Kill acceptor 1 while its clients run MSET/MGET over every shard: the
    workers end its holds and parks, and the other acceptor goes on."""
    import threading

    pids = acceptor_pids(server)
    stop = threading.Event()
    errors: list[BaseException] = []

    def hammer() -> None:
        conn = connect_to(server.port, 1)
        try:
            n = 0
            while not stop.is_set():
                conn.mset(dict.fromkeys(KEYS, f"h{n}"))
                conn.mget(KEYS)
                n += 1
        except (redis.ConnectionError, redis.TimeoutError, OSError):
            pass  # its acceptor died
        except BaseException as e:  # noqa: BLE001
            errors.append(e)
        finally:
            conn.close()

    threads = [threading.Thread(target=hammer) for _ in range(3)]
    for t in threads:
        t.start()
    time.sleep(1.0)
    os.kill(pids[1], signal.SIGKILL)
    stop.set()
    for t in threads:
        t.join(30)
    assert not errors, errors
    survivor = connect_to(server.port, 0)
    try:
        survivor.mset(dict.fromkeys(KEYS, "clean"))
        values = survivor.mget(KEYS)
        assert values == ["clean"] * 4
    finally:
        survivor.close()


@pytest.mark.slow
def test_a_restarted_worker_gets_a_pipe_to_each_acceptor(server):
    a, b = connect_to(server.port, 0), connect_to(server.port, 1)
    try:
        a.mset(dict.fromkeys(KEYS, "v"))
        worker = next(pid for pid, role in server.roles().items() if role == "worker 0")
        os.kill(worker, signal.SIGKILL)
        deadline = time.monotonic() + 30
        while True:
            try:
                a.set(KEYS[0], "again")
                b.set(KEYS[0], "again")
                break
            except (
                redis.ResponseError,
                redis.BusyLoadingError,
            ) as e:  # in flight while it died, or it is loading
                assert "shard unavailable" in str(e) or "loading" in str(e)
                assert time.monotonic() < deadline, "shard 0 did not come back"
                time.sleep(0.1)
        for conn in (a, b):
            assert conn.mget(KEYS)[1:] == ["v"] * 3
        for n, conn in enumerate((a, b)):
            conn.mset(dict.fromkeys(KEYS, f"after{n}"))
            assert a.mget(KEYS) == b.mget(KEYS) == [f"after{n}"] * 4
    finally:
        a.close()
        b.close()


@pytest.mark.slow
def test_the_script_cache_is_the_same_through_every_acceptor(server):
    a, b = connect_to(server.port, 0), connect_to(server.port, 1)
    try:
        sha = a.script_load("return 42")
        assert b.evalsha(sha, 0) == 42  # SCRIPT LOAD replies once every acceptor has it
        assert b.script_exists(sha) == [True]
        assert a.eval("return 7", 0) == 7
        other = "f3d2d8c4bc7b4abe6ee0ba3bf34cb73f4b0f0ee2"  # not loaded anywhere
        assert b.script_exists(other) == [False]
        seven = hashlib.sha1(b"return 7").hexdigest()  # EVAL's script is in the others before its reply
        assert b.script_exists(seven) == [True]
        assert b.script_flush() is True
        assert a.script_exists(sha, seven) == [False, False]
        with pytest.raises(redis.exceptions.NoScriptError):
            a.evalsha(sha, 0)
    finally:
        a.close()
        b.close()


def test_an_evalsha_read_after_evals_reply_finds_the_script_through_the_other_acceptor(server):
    """Issue 22: EVAL caches its script in every acceptor before it
    replies, so an EVALSHA sent once that reply is read finds it through
    any acceptor, as in Redis.  Acceptor 1 is stopped meanwhile: before,
    acceptor 0 only told it and replied at once, and acceptor 1, resumed,
    read the EVALSHA before the supervisor's message: -NOSCRIPT."""
    stalled = acceptor_pids(server)[1]
    a, b = client_on(server.port, 0), client_on(server.port, 1)
    body = f"return 'stalled {time.time_ns()}'"
    sha = hashlib.sha1(body.encode()).hexdigest()
    try:
        os.kill(stalled, signal.SIGSTOP)
        try:
            a.send("EVAL", body, 0)
            a.sock.settimeout(0.5)
            try:
                reply = a.read_reply()
            except TimeoutError:
                reply = None  # it waits for acceptor 1
            if reply is not None:
                b.send("EVALSHA", sha, 0)
        finally:
            os.kill(stalled, signal.SIGCONT)
        a.sock.settimeout(10)
        if reply is None:
            reply = a.read_reply()
            b.send("EVALSHA", sha, 0)
        assert reply == body[8:-1].encode()
        assert b.read_reply() == reply
    finally:
        a.close()
        b.close()


def _raw_client(port: int) -> tuple[socket.socket, int | None, bytes]:
    """A raw connection: ``(socket, its acceptor, b"")`` if admitted, or
    ``(socket, None, what the server said)`` if it was turned away (Redis
    says so at once, before the client sends anything)."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    sock.settimeout(1.0)
    try:
        said = sock.recv(200)
    except TimeoutError:
        said = b""
    if said:
        while not said.endswith(b"\r\n") and (more := sock.recv(200)):
            said += more
        return sock, None, said
    sock.settimeout(10)
    sock.sendall(b"CLIENT ID\r\n")
    reply = b""
    while not reply.endswith(b"\r\n"):
        reply += sock.recv(100)
    return sock, (int(reply[1:-2]) - 1) % K, b""


def _connected(conn: redis.Redis, n: int) -> None:
    """Wait until INFO (summed over the acceptors) counts ``n`` clients."""
    deadline = time.monotonic() + 10
    while conn.info("clients")["connected_clients"] != n:
        assert time.monotonic() < deadline, conn.info("clients")
        time.sleep(0.05)


@pytest.mark.slow
def test_maxclients_is_the_total_of_every_acceptors_clients(server):
    """maxclients counts the clients of every acceptor, whichever holds them
    (not a share each), and a killed acceptor's clients stop counting."""
    admin = connect_to(server.port, 0)
    held = [connect_to(server.port, 1) for _ in range(4)]
    sockets: list[socket.socket] = []
    limit = admin.config_get("maxclients")["maxclients"]
    try:
        _connected(admin, 5)  # 1 on acceptor 0, 4 on acceptor 1
        admin.config_set("maxclients", "6")  # applied by both before the reply
        sock, where, said = _raw_client(server.port)  # the sixth, wherever it lands
        sockets.append(sock)
        assert said == b"" and where is not None
        for _ in range(12):  # the kernel spreads them over both acceptors
            sock, _where, said = _raw_client(server.port)
            sock.close()
            assert said == b"-ERR max number of clients reached\r\n"
        pids = acceptor_pids(server)
        os.kill(pids[1], signal.SIGKILL)  # with 4 or 5 of the 6 clients
        deadline = time.monotonic() + 30
        while acceptor_pids(server).get(1, pids[1]) == pids[1]:
            assert time.monotonic() < deadline, "acceptor 1 was not restarted"
            time.sleep(0.05)
        survivors = 2 if where == 0 else 1
        _connected(admin, survivors)
        admitted = []
        for _ in range(20):
            sock, index, said = _raw_client(server.port)
            sockets.append(sock)
            if index is None:
                assert said == b"-ERR max number of clients reached\r\n"
                break
            admitted.append(index)
        assert len(admitted) == 6 - survivors, admitted
    finally:
        # Set back here, not by the next test's fixture: its connections,
        # opened while this test's closed ones may still count, would be
        # refused.
        admin.config_set("maxclients", limit)
        for sock in sockets:
            sock.close()
        for conn in (admin, *held):
            conn.close()


def _second_server_on(port: int, *flags: str, tmp_path) -> tuple[int, str]:
    """Start ``main.py`` on a port that is taken; its exit status and log."""
    argv = [sys.executable, str(ROOT / "main.py"), "--port", str(port), "--shards", "1", *flags]
    done = subprocess.run(argv, cwd=tmp_path, capture_output=True, text=True, timeout=60)
    return done.returncode, done.stdout + done.stderr


# With K acceptors it starts two shardkv servers (seconds): that case is slow.
@pytest.mark.parametrize("acceptors", [1, pytest.param(K, marks=pytest.mark.slow)])
def test_a_taken_port_stops_shardkv_as_redis_stops(tmp_path, acceptors) -> None:
    """Redis exits when it cannot listen: so does shardkv, at once, with
    Redis's warning, rather than restart an acceptor that cannot bind.
    With several acceptors the port is taken by another shardkv with
    several acceptors, which SO_REUSEPORT alone would let it share."""
    first = start_redis() if acceptors == 1 else start_shardkv(shards=1, acceptors=K)
    try:
        code, log = _second_server_on(first.port, "--acceptors", str(acceptors), tmp_path=tmp_path)
        assert code == 1
        assert (
            f"Could not create server TCP listening socket 127.0.0.1:{first.port}: bind: Address already in use"
            in log
        )
        assert "restarting it" not in log
        for _ in range(20):  # the first server still has every connection
            assert redis.Redis(port=first.port).ping()
    finally:
        first.stop()


@pytest.mark.slow  # starts a server of its own
def test_config_get_acceptors_reports_the_number_auto_chose() -> None:
    machine = machine_acceptors()
    proc = start_shardkv("--acceptors", "auto", shards=1, acceptors=machine)  # the last flag wins
    try:
        conn = redis.Redis(port=proc.port, decode_responses=True)
        assert conn.config_get("acceptors") == {"acceptors": str(machine)}
        conn.close()
    finally:
        proc.stop()


def _config_set(conn: redis.Redis, answers: list, name: str, value: str) -> None:
    answers.append(conn.config_set(name, value))


def test_a_connection_accepted_with_a_late_config_set_gets_its_limit(server):
    """Acceptor 1 stopped (a loaded machine's scheduler, exaggerated): a
    connection made then waits in its accept queue; a CONFIG SET
    client-query-buffer-limit through acceptor 0 waits for acceptor 1's
    answer (it answers once every acceptor applied it); resumed, acceptor
    1 accepts the connection and applies the change in one turn.  The
    connection gets the new limit and is closed past it, as on
    redis-server (before, it kept the old one and stayed open, in each of
    5 tries that landed on acceptor 1; so failed test_limits.py's
    test_client_query_buffer_limit at K=2 under load)."""
    stopped = acceptor_pids(server)[1]
    control = connect_to(server.port, 0)
    head = b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$3000000\r\n"
    try:
        for _ in range(10):  # until the kernel gives the connection to acceptor 1
            os.kill(stopped, signal.SIGSTOP)
            answers: list = []
            try:
                early = socket.create_connection(("127.0.0.1", server.port), timeout=20)
                setter = threading.Thread(
                    target=_config_set, args=(control, answers, "client-query-buffer-limit", "1mb")
                )
                setter.start()
                setter.join(1.0)
                assert not answers, "CONFIG SET answered before the stopped acceptor applied it"
            finally:
                os.kill(stopped, signal.SIGCONT)
            setter.join(20)
            assert answers == [True]
            port = early.getsockname()[1]
            deadline = time.monotonic() + 20
            while not (found := [c for c in control.client_list() if c["addr"].endswith(f":{port}")]):
                assert time.monotonic() < deadline, "the connection never showed in CLIENT LIST"
                time.sleep(0.05)
            if (int(found[0]["id"]) - 1) % K == 1:
                try:
                    early.sendall(head + b"x" * 1_500_000)
                except OSError:
                    pass
                assert wait_closed(early, 20)
                return
            early.close()
            control.config_set("client-query-buffer-limit", "1gb")
        pytest.skip("no connection reached acceptor 1")
    finally:
        control.config_set("client-query-buffer-limit", "1gb")
        control.close()


def test_a_pause_ends_for_the_shards_at_its_end_while_an_acceptor_is_stalled(server):
    """CLIENT PAUSE WRITE through acceptor 0, which acceptor 1 hears of;
    acceptor 1 then stalls (stopped) past the pause's end, so the timer
    that ends its side, and its ``__pause 0`` to the workers, run late.
    A GET of an expired key through acceptor 0 after the end deletes it,
    as on redis-server: the workers know the pause's end (before, they kept
    every expired key until acceptor 1 said its pause had ended)."""
    stalled = acceptor_pids(server)[1]
    conn = connect_to(server.port, 0)
    try:
        key = KEYS[0]
        conn.set(key, "v", px=100)
        conn.execute_command("CLIENT", "PAUSE", 300, "WRITE")
        end = time.monotonic() + 0.3
        os.kill(stalled, signal.SIGSTOP)
        try:
            while time.monotonic() < end + 0.2:  # past the pause's end and the key's
                time.sleep(0.05)
            assert conn.get(key) is None
            assert conn.dbsize() == 0  # deleted, not only hidden
        finally:
            os.kill(stalled, signal.SIGCONT)
    finally:
        conn.close()
