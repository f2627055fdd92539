"""CONFIG SET across acceptors: the port, and the wait for every acceptor.

CONFIG SET port: every acceptor moves to the new port, or nothing changes.

As Redis 7's ``updatePort``: the new port is listened on and the old one
closed; a port another process listens on fails the whole CONFIG SET with
Redis's error (unit/introspection "CONFIG SET rollback on apply error"),
every parameter keeps its value, and the server stays on its port.  Both
at one acceptor and at two, where each acceptor must move, and where a
port shared through SO_REUSEPORT counts as taken.  Port 0 listens on no
TCP port, at a restart too (and at start-up, as in Redis, exits); an
acceptor still starting moves once.

And a CONFIG SET at two acceptors answers once both applied it, not after
the bus's deadline; one stuck past its own, long deadline is killed and
restarted with the setting, then the CONFIG SET answers.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time

import psutil
import pytest
import redis

from shardkv.protocol import bus
from tests.support.acceptors import acceptor_pids, connect_to, raw_on
from tests.support.rawsocket import exchange, read_until_quiet
from tests.support.servers import ROOT, free_port, redis_server_path, start_redis, start_shardkv

PORT_ERROR = "CONFIG SET failed (possibly related to argument 'port') - Unable to listen on this port. Check server logs."


@pytest.fixture(params=[1, 2], ids=["K=1", "K=2"])
def server(request):
    proc = start_shardkv(shards=2, acceptors=request.param)
    yield proc
    proc.stop()


def _refused(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=5).close()
    except ConnectionRefusedError:
        return True
    return False


def test_every_acceptor_moves_to_the_new_port(server):
    old = redis.Redis(port=server.port, socket_timeout=30, decode_responses=True)
    old.set("k", "v")
    new_port = free_port()
    assert old.config_set("port", new_port)
    assert old.config_get("port") == {"port": str(new_port)}
    # Each new connection lands on any acceptor: all of them serve the new
    # port, and none the old one any more (once each has applied it).
    for _ in range(8):
        c = redis.Redis(port=new_port, socket_timeout=30, decode_responses=True)
        assert c.get("k") == "v"
        assert c.config_get("port") == {"port": str(new_port)}
        c.close()
    assert old.ping()  # connections made before stay
    for _ in range(50):
        if _refused(server.port):
            break
    assert _refused(server.port)
    old.close()
    server.port = new_port  # so that stop() finds it


def test_a_port_in_use_rolls_the_whole_config_set_back(server):
    c = redis.Redis(port=server.port, socket_timeout=30, decode_responses=True)
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen(1)
    try:
        with pytest.raises(redis.ResponseError) as e:
            c.execute_command(
                "CONFIG", "SET", "maxmemory", "10000001", "port", taken.getsockname()[1],
                "client-query-buffer-limit", "10mb",
            )  # fmt: skip
        assert str(e.value) == PORT_ERROR
    finally:
        taken.close()
    assert c.config_get("maxmemory") == {"maxmemory": "0"}
    assert c.config_get("port") == {"port": str(server.port)}
    assert c.config_get("client-query-buffer-limit") == {"client-query-buffer-limit": "1073741824"}
    fresh = redis.Redis(port=server.port, socket_timeout=30, decode_responses=True)
    assert fresh.ping()
    fresh.close()
    c.close()


def test_a_port_held_by_another_socket_is_refused_as_redis_refuses_it(server):
    """Differential: the same bytes from redis-server and shardkv (at one
    acceptor and at two) for a CONFIG SET port that another socket holds,
    both then still on their port with it unchanged."""
    real = start_redis()
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen(1)
    held = str(taken.getsockname()[1]).encode()
    command = b"*4\r\n$6\r\nCONFIG\r\n$3\r\nSET\r\n$4\r\nport\r\n$%d\r\n%s\r\n" % (len(held), held)
    get = b"*3\r\n$6\r\nCONFIG\r\n$3\r\nGET\r\n$4\r\nport\r\n"
    try:
        theirs = exchange(real.port, command + get, want=40)
        ours = exchange(server.port, command + get, want=len(theirs[0]))
    finally:
        taken.close()
        real.stop()
    assert theirs[0].startswith(b"-ERR " + PORT_ERROR.encode() + b"\r\n")
    their_port, our_port = str(real.port).encode(), str(server.port).encode()
    assert ours[0] == theirs[0].replace(
        b"$%d\r\n%s" % (len(their_port), their_port), b"$%d\r\n%s" % (len(our_port), our_port)
    )
    assert ours[1] is theirs[1] is False
    fresh = redis.Redis(port=server.port, socket_timeout=30)
    assert fresh.ping()
    fresh.close()


@pytest.fixture
def two():
    proc = start_shardkv(shards=2, acceptors=2)
    yield proc
    proc.stop()


def _config_set_in_thread(conn: redis.Redis, *args: object) -> tuple[threading.Thread, list]:
    replies: list = []
    thread = threading.Thread(target=lambda: replies.append(conn.execute_command("CONFIG", "SET", *args)))
    thread.start()
    return thread, replies


# The supervisor's wait for the acceptors' answers to a question (the
# bus's ANSWER_WITHIN, 2 s), made ANSWER_WITHIN here by a test-own
# ``main.py`` (run again as each spawned child's __mp_main__, where it sets
# nothing): the test below waits past it twice.
ANSWER_WITHIN = 0.5
SHORT_ANSWER_MAIN = f"""
import sys

if __name__ == "__main__":
    import shardkv.protocol.bus
    import shardkv.supervisor

    shardkv.protocol.bus.ANSWER_WITHIN = {ANSWER_WITHIN}
    sys.exit(shardkv.supervisor.main())
"""


@pytest.fixture
def two_short_answers(tmp_path):
    """Two acceptors; the supervisor waits ANSWER_WITHIN for answers."""
    (tmp_path / "main.py").write_text(SHORT_ANSWER_MAIN)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), *sys.path]))
    proc = start_shardkv(shards=2, acceptors=2, root=tmp_path, env=env)
    yield proc
    proc.stop()


def test_config_set_waits_for_a_slow_acceptor_and_not_for_a_dead_one(two_short_answers):
    """CONFIG SET through acceptor 0 answers OK only once acceptor 1 has
    applied it too, however long that takes (acceptor 1 stopped well past
    the bus's answer wait, 2 s, ANSWER_WITHIN here); if acceptor 1 dies
    instead, the CONFIG SET answers, and the restarted acceptor has the new
    value."""
    two = two_short_answers
    assert ANSWER_WITHIN < bus.ANSWER_WITHIN < bus.SYNC_WITHIN
    pids = acceptor_pids(two)
    conn = connect_to(two.port, 0)
    os.kill(pids[1], signal.SIGSTOP)
    try:
        thread, replies = _config_set_in_thread(conn, "slowlog-max-len", "77")
        thread.join(2 * ANSWER_WITHIN)
        assert not replies  # acceptor 1 has not applied it: no OK yet
    finally:
        os.kill(pids[1], signal.SIGCONT)
    thread.join(30)
    assert replies == ["OK"]
    assert connect_to(two.port, 1).config_get("slowlog-max-len") == {"slowlog-max-len": "77"}
    os.kill(pids[1], signal.SIGSTOP)
    thread, replies = _config_set_in_thread(conn, "slowlog-max-len", "78")
    thread.join(2 * ANSWER_WITHIN)
    assert not replies
    os.kill(pids[1], signal.SIGKILL)  # (a stopped process dies of SIGKILL)
    thread.join(30)
    assert replies == ["OK"]
    deadline = time.monotonic() + 60
    while acceptor_pids(two).get(1, pids[1]) == pids[1]:
        assert time.monotonic() < deadline, "acceptor 1 was not restarted"
        time.sleep(0.05)
    assert connect_to(two.port, 1).config_get("slowlog-max-len") == {"slowlog-max-len": "78"}
    conn.close()


def _gone(pid: int) -> bool:
    """Whether process ``pid`` is dead (a zombie not reaped yet counts)."""
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def _restarted(server, index: int, old: int) -> int:
    """The pid of acceptor ``index`` once it is not ``old`` any more."""
    deadline = time.monotonic() + 60
    while (pid := acceptor_pids(server).get(index, old)) == old:
        assert time.monotonic() < deadline, f"acceptor {index} was not restarted"
        time.sleep(0.02)
    return pid


def _started(server, pid: int) -> None:
    """Wait until acceptor ``pid`` says it listens (or that it does not, port 0)."""
    deadline = time.monotonic() + 60
    while f"acceptor pid={pid} listening on " not in (out := server.output()):
        if f"acceptor pid={pid} not listening on TCP" in out:
            return
        assert time.monotonic() < deadline, f"acceptor pid={pid} did not start"
        time.sleep(0.05)


def _listening_ports(pid: int) -> list[int]:
    """The TCP ports process ``pid`` listens on, one entry per socket."""
    conns = psutil.Process(pid).net_connections(kind="tcp")
    return sorted(c.laddr.port for c in conns if c.status == psutil.CONN_LISTEN)


SYNC_WITHIN = 3  # seconds, for this test only (the server's own is bus.SYNC_WITHIN)


@pytest.fixture
def two_quick():
    """Two acceptors, with a short deadline for a CONFIG SET's wait."""
    proc = start_shardkv(shards=2, acceptors=2, env=dict(os.environ, SHARDKV_SYNC_WITHIN=str(SYNC_WITHIN)))
    yield proc
    proc.stop()


def test_a_stuck_acceptor_is_killed_and_restarted_with_the_setting(two_quick):
    """An acceptor that is alive but stuck (stopped here) does not hold a
    CONFIG SET forever: past the deadline the supervisor kills it and starts
    it again with the new setting, and only then does the CONFIG SET answer
    OK (every live acceptor has it)."""
    pids = acceptor_pids(two_quick)
    conn = connect_to(two_quick.port, 0)
    os.kill(pids[1], signal.SIGSTOP)
    try:
        thread, replies = _config_set_in_thread(conn, "slowlog-max-len", "79")
        thread.join(60)
        assert replies == ["OK"]
        assert _gone(pids[1])  # killed before the OK
    finally:
        if not _gone(pids[1]):
            os.kill(pids[1], signal.SIGCONT)
    _restarted(two_quick, 1, pids[1])
    assert connect_to(two_quick.port, 1).config_get("slowlog-max-len") == {"slowlog-max-len": "79"}
    assert acceptor_pids(two_quick)[0] == pids[0]  # the other was left alone
    conn.close()


def test_after_port_0_a_restarted_acceptor_listens_on_no_tcp_port(two):
    """CONFIG SET port 0 stops listening on TCP; an acceptor that dies and
    is started again afterwards does not listen either (not on a port of
    the kernel's choosing, which start-up's port 0 would give)."""
    pids = acceptor_pids(two)
    conn = connect_to(two.port, 0)
    assert conn.config_set("port", 0)
    os.kill(pids[1], signal.SIGKILL)
    new = _restarted(two, 1, pids[1])
    _started(two, new)
    assert _listening_ports(new) == []
    assert conn.config_get("port") == {"port": "0"}
    conn.close()


def test_a_server_started_on_port_0_exits_as_redis_does(tmp_path):
    """Port 0 (and no unix socket in use) listens nowhere: Redis exits with
    status 1 at start-up, saying so, and so does shardkv."""
    redis_run = subprocess.run(
        [redis_server_path(), "--port", "0", "--save", "", "--appendonly", "no", "--dir", str(tmp_path)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    ours = subprocess.run(
        [sys.executable, str(ROOT / "main.py"), "--port", "0", "--shards", "1"],
        cwd=tmp_path, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert redis_run.returncode == ours.returncode == 1
    assert "Configured to not listen anywhere, exiting." in redis_run.stdout + redis_run.stderr
    assert "Configured to not listen anywhere, exiting." in ours.stdout + ours.stderr
    assert "worker 0 pid=" not in ours.stdout + ours.stderr  # it started nothing


def test_a_config_set_port_while_an_acceptor_starts_moves_it_once(two):
    """An acceptor that is still starting when a CONFIG SET port reaches it
    ends up listening on the new port alone, with one socket: not on the
    old one, nor on the new one twice."""
    pids = acceptor_pids(two)
    conn = connect_to(two.port, 0)
    new_port = free_port()
    os.kill(pids[1], signal.SIGKILL)
    new = _restarted(two, 1, pids[1])
    os.kill(new, signal.SIGSTOP)  # (most likely) before it listens
    try:
        thread, replies = _config_set_in_thread(conn, "port", new_port)
        time.sleep(0.5)  # the config line waits in its control socket
    finally:
        os.kill(new, signal.SIGCONT)
    thread.join(60)
    assert replies == ["OK"]
    _started(two, new)
    for _ in range(100):  # its sockets move in its event loop
        if _listening_ports(new) == [new_port]:
            break
        time.sleep(0.05)
    assert _listening_ports(new) == [new_port]
    assert _listening_ports(pids[0]) == [new_port]
    conn.close()
    two.port = new_port  # so that stop() finds it


def test_a_port_shared_with_so_reuseport_by_another_process_is_refused(server):
    """With several acceptors each binds with SO_REUSEPORT; a port that
    another process listens on with SO_REUSEPORT too must still be refused,
    as at start-up, rather than shared with it."""
    c = redis.Redis(port=server.port, socket_timeout=30, decode_responses=True)
    stranger = socket.socket()
    stranger.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    stranger.bind(("127.0.0.1", 0))
    stranger.listen(1)
    try:
        with pytest.raises(redis.ResponseError) as e:
            c.config_set("port", stranger.getsockname()[1])
        assert str(e.value) == PORT_ERROR
    finally:
        stranger.close()
    assert c.config_get("port") == {"port": str(server.port)}
    fresh = redis.Redis(port=server.port, socket_timeout=30, decode_responses=True)
    assert fresh.ping()
    fresh.close()
    c.close()


def _lowest_free_fd(pid: int) -> int:
    """The lowest file descriptor number that process ``pid`` has free."""
    used = {int(fd) for fd in os.listdir(f"/proc/{pid}/fd")}
    return next(n for n in range(len(used) + 1) if n not in used)


def test_an_acceptor_that_cannot_bind_the_new_port_fails_the_whole_config_set(two):
    """All or nothing across acceptors: acceptor 1 cannot open a socket
    (its file descriptors are used up), acceptor 0 could bind the new port.
    The CONFIG SET through acceptor 0 fails with Redis's error, both stay on
    the old port with every parameter unchanged; once acceptor 1 can bind
    again, the same CONFIG SET moves both."""
    pids = acceptor_pids(two)
    conn = connect_to(two.port, 0)
    other = connect_to(two.port, 1)
    new_port = free_port()
    target = psutil.Process(pids[1])
    limits = target.rlimit(psutil.RLIMIT_NOFILE)
    target.rlimit(psutil.RLIMIT_NOFILE, (_lowest_free_fd(pids[1]), limits[1]))
    try:
        with pytest.raises(redis.ResponseError) as e:
            conn.execute_command("CONFIG", "SET", "slowlog-max-len", "91", "port", new_port)
        assert str(e.value) == PORT_ERROR
    finally:
        target.rlimit(psutil.RLIMIT_NOFILE, limits)
    assert conn.config_get("port") == {"port": str(two.port)}
    assert conn.config_get("slowlog-max-len") == {"slowlog-max-len": "128"}
    assert other.config_get("port") == {"port": str(two.port)}
    assert other.config_get("slowlog-max-len") == {"slowlog-max-len": "128"}
    assert _listening_ports(pids[0]) == [two.port]
    assert _listening_ports(pids[1]) == [two.port]
    assert conn.config_set("port", new_port)
    for _ in range(100):  # acceptor 1 moves in its event loop
        if _listening_ports(pids[1]) == [new_port]:
            break
        time.sleep(0.05)
    assert _listening_ports(pids[0]) == [new_port]
    assert _listening_ports(pids[1]) == [new_port]
    conn.close()
    other.close()
    two.port = new_port  # so that stop() finds it


def test_a_config_set_of_port_and_requirepass_holds_later_commands_for_both(two):
    """K=2: CONFIG SET port and requirepass at once, pipelined with ACL
    GETUSER: the GETUSER runs once the default user has the password (the
    wait for the other acceptor's bind does not let it run in between)."""
    conn = connect_to(two.port, 0)
    new_port = free_port()
    pipe = conn.pipeline(transaction=False)
    pipe.execute_command("CONFIG", "SET", "port", new_port, "requirepass", "secret")
    pipe.execute_command("ACL", "GETUSER", "default")
    replies = pipe.execute()
    assert replies[0] == "OK"
    assert "nopass" not in replies[1]["flags"]
    conn.close()
    two.port = new_port  # so that stop() finds it
    fresh = redis.Redis(port=new_port, password="secret", socket_timeout=30)
    assert fresh.config_set("requirepass", "")  # so that stop() needs no password
    fresh.close()


def _exec_config_set_port(port: int) -> bytes:
    """MULTI, CONFIG SET port ``port``, SET k v, EXEC."""
    new = str(port).encode()
    return (
        b"*1\r\n$5\r\nMULTI\r\n"
        b"*4\r\n$6\r\nCONFIG\r\n$3\r\nSET\r\n$4\r\nport\r\n$%d\r\n%s\r\n"
        b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\nv\r\n"
        b"*1\r\n$4\r\nEXEC\r\n"
    ) % (len(new), new)


def _redis_exec_of_a_taken_port() -> bytes:
    """redis-server's replies to :func:`_exec_config_set_port` of a port
    another socket holds."""
    real = start_redis()
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen(1)
    try:
        return exchange(real.port, _exec_config_set_port(taken.getsockname()[1]), want=40)[0]
    finally:
        taken.close()
        real.stop()


def _until_listening(pid: int, ports: list[int]) -> list[int]:
    """The ports ``pid`` listens on, once they are ``ports`` (or after 5 s:
    an acceptor applies what the bus tells it in its own event loop)."""
    for _ in range(100):
        if (now := _listening_ports(pid)) == ports:
            break
        time.sleep(0.05)
    return now


@pytest.mark.parametrize("stuck", [1, 0], ids=["other-acceptor", "own-acceptor"])
def test_a_config_set_port_in_exec_fails_if_an_acceptor_cannot_bind_it(two, stuck):
    """Inside MULTI/EXEC, all or nothing across acceptors as outside it:
    acceptor ``stuck`` cannot open a socket (its file descriptors are used
    up), the EXEC runs through acceptor 0.  Its CONFIG SET port answers
    Redis's error in the EXEC's array (redis-server's, for a port another
    socket holds), SET still runs, and both acceptors stay on the old port
    alone (the one that could bind it closed it again).  Before, with
    acceptor 1 stuck, the EXEC answered OK and acceptor 1 stayed on the old
    port alone.  Once both can bind, the same transaction moves both."""
    theirs = _redis_exec_of_a_taken_port()
    assert theirs == b"+OK\r\n+QUEUED\r\n+QUEUED\r\n*2\r\n-ERR " + PORT_ERROR.encode() + b"\r\n+OK\r\n"
    pids = acceptor_pids(two)
    conn = connect_to(two.port, 0)
    new_port = free_port()
    sock, _ = raw_on(two.port, 0)
    target = psutil.Process(pids[stuck])
    limits = target.rlimit(psutil.RLIMIT_NOFILE)
    target.rlimit(psutil.RLIMIT_NOFILE, (_lowest_free_fd(pids[stuck]), limits[1]))
    try:
        sock.sendall(_exec_config_set_port(new_port))
        ours = read_until_quiet(sock, 0.3, want=len(theirs))[0]
    finally:
        target.rlimit(psutil.RLIMIT_NOFILE, limits)
        sock.close()
    assert ours == theirs
    assert conn.get("k") == "v"
    assert conn.config_get("port") == {"port": str(two.port)}
    assert connect_to(two.port, 1).config_get("port") == {"port": str(two.port)}
    assert _until_listening(pids[0], [two.port]) == [two.port]
    assert _until_listening(pids[1], [two.port]) == [two.port]
    assert exchange(two.port, _exec_config_set_port(new_port), want=35)[0].endswith(b"*2\r\n+OK\r\n+OK\r\n")
    assert _listening_ports(pids[0]) == [new_port]
    assert _listening_ports(pids[1]) == [new_port]
    conn.close()
    two.port = new_port  # so that stop() finds it


def test_an_exec_that_does_not_run_its_config_set_port_leaves_no_acceptor_on_it(two):
    """K=2: a WATCHed key changed, so the EXEC holding CONFIG SET port runs
    nothing (a null array, as in Redis): no acceptor listens on that port
    afterwards, and another process can take it."""
    pids = acceptor_pids(two)
    conn = connect_to(two.port, 0)
    other = connect_to(two.port, 1)
    new_port = free_port()
    assert conn.execute_command("WATCH", "k")
    other.set("k", "changed")
    pipe = conn.pipeline(transaction=False)
    pipe.execute_command("MULTI")
    pipe.execute_command("CONFIG", "SET", "port", new_port)
    pipe.execute_command("EXEC")
    assert pipe.execute() == ["OK", "QUEUED", None]
    assert _until_listening(pids[1], [two.port]) == [two.port]
    assert _listening_ports(pids[0]) == [two.port]
    stranger = socket.socket()
    stranger.bind(("127.0.0.1", new_port))
    stranger.close()
    conn.close()
    other.close()
