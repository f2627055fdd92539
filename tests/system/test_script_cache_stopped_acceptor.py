"""A stopped acceptor delays no other acceptor's scripts (shardkv only).

Redis has one script cache: after an EVAL (or SCRIPT LOAD) answers, an
EVALSHA of its script through any connection runs it.  shardkv's
acceptors each keep one; a new script goes to a log they share before the
reply (``ScriptFlushes.append``), and the others are told of it, but the
reply does not wait for them: an EVAL, a SCRIPT LOAD and a FUNCTION LOAD
on acceptor 0 answer while acceptor 1 is stopped (SIGSTOP), and once it
runs again it has each of them.  The server's bus waits a minute for an
acceptor's answer here (a test-own ``main.py`` sets ``ANSWER_WITHIN``, as
tests/system/test_config_port.py does), so a reply that waited for the
stopped acceptor would miss the test's deadline, which is no timing
assertion: any machine answers well within it.
"""

from __future__ import annotations

import hashlib
import os
import signal
import sys
from collections.abc import Iterator

import psutil
import pytest

from tests.support.acceptors import acceptor_pids, client_on
from tests.support.placement import key_on
from tests.support.processes import until
from tests.support.resp import ErrorReply, encode_command
from tests.support.servers import ROOT, ServerProcess, start_shardkv

DEADLINE = 20.0  # seconds a reply may take (a loaded machine is slow); the bus waits longer
LONG_ANSWER_MAIN = """
import sys

if __name__ == "__main__":
    import shardkv.protocol.bus
    import shardkv.supervisor

    shardkv.protocol.bus.ANSWER_WITHIN = 60.0
    sys.exit(shardkv.supervisor.main())
"""

BODY = "return 'evaled ' .. ARGV[1]"  # never loaded before this test (a fresh server)
LOADED = "return 'loaded'"
LIBRARY = "#!lua name=stoppedlib\nredis.register_function('stoppedfn', function() return 'called' end)"


@pytest.fixture(scope="module")
def two_acceptors(tmp_path_factory) -> Iterator[ServerProcess]:
    tmp_path = tmp_path_factory.mktemp("stopped")
    (tmp_path / "main.py").write_text(LONG_ANSWER_MAIN)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), *sys.path]))
    proc = start_shardkv(shards=2, acceptors=2, root=tmp_path, env=env)
    yield proc
    proc.stop()


def test_new_scripts_answer_while_another_acceptor_is_stopped(two_acceptors) -> None:
    server = two_acceptors
    first = client_on(server.port, 0, k=2, timeout=DEADLINE)
    second = client_on(server.port, 1, k=2, timeout=DEADLINE)
    stopped = psutil.Process(acceptor_pids(server)[1])
    sha = hashlib.sha1(BODY.encode()).hexdigest()
    loaded = hashlib.sha1(LOADED.encode()).hexdigest()
    os.kill(stopped.pid, signal.SIGSTOP)
    try:
        assert until(lambda: stopped.status() == psutil.STATUS_STOPPED)
        assert first.command("EVAL", BODY, "0", "x") == b"evaled x"
        assert first.command("SCRIPT", "LOAD", LOADED) == loaded.encode()
        assert first.command("FUNCTION", "LOAD", LIBRARY) == b"stoppedlib"
        assert first.command("EVALSHA", sha, "0", "y") == b"evaled y"
        assert stopped.status() == psutil.STATUS_STOPPED  # they answered while it was
    finally:
        os.kill(stopped.pid, signal.SIGCONT)
    assert second.command("EVALSHA", sha, "0", "z") == b"evaled z"
    assert second.command("EVALSHA", loaded, "0") == b"loaded"
    assert second.command("SCRIPT", "EXISTS", sha, loaded, "0" * 40) == [1, 1, 0]
    assert second.command("FCALL", "stoppedfn", "0") == b"called"
    first.close()
    second.close()


SPIN = "local s = redis.call('TIME') repeat local n = redis.call('TIME') until (n[1] - s[1]) * 1000000 + n[2] - s[2] > 1500000"
PENDING = "return 'pending load'"


def _last_command(c, name: bytes) -> bytes:
    """The command the acceptor last read from the client named ``name``."""
    for line in c.command("CLIENT", "LIST").split(b"\n"):
        if b" name=%s " % name in line:
            return line.split(b" cmd=")[1].split(b" ")[0]
    return b""


def test_an_eval_of_a_script_whose_load_waits_is_found_through_another_acceptor(two_acceptors) -> None:
    """A SCRIPT LOAD through acceptor 0 waits behind a script running on
    shard 0, which compiles it; meanwhile an EVAL of that body through
    acceptor 0 runs on shard 1 and answers.  As in Redis, an EVALSHA read
    after that reply, through acceptor 1, runs it: the EVAL found it cached
    already, so the load's record must be in the shared log by then."""
    server = two_acceptors
    busy, loader, evaler = (client_on(server.port, 0, k=2, timeout=DEADLINE) for _ in range(3))
    other = client_on(server.port, 1, k=2, timeout=DEADLINE)
    busy.command("CLIENT", "SETNAME", "busy")
    loader.command("CLIENT", "SETNAME", "loader")
    sha = hashlib.sha1(PENDING.encode()).hexdigest()
    busy.send("EVAL", SPIN, "1", key_on(0, "spin", shards=2))
    assert until(lambda: _last_command(evaler, b"busy") == b"eval")
    loader.send("SCRIPT", "LOAD", PENDING)
    assert until(lambda: _last_command(evaler, b"loader") == b"script|load")
    assert evaler.command("EVAL", PENDING, "1", key_on(1, "pending", shards=2)) == b"pending load"
    assert other.command("EVALSHA", sha, "0") == b"pending load"
    assert loader.read_reply() == sha.encode()
    assert busy.read_reply() is None
    for c in (busy, loader, evaler, other):
        c.close()


FLUSHED = "return 'flushed ' .. KEYS[1]"
NOSCRIPT = "NOSCRIPT No matching script. Please use EVAL."


def test_script_flush_answers_while_another_acceptor_is_stopped(two_acceptors) -> None:
    """SCRIPT FLUSH through acceptor 0 answers while acceptor 1 is stopped
    (it waited for its answer: the bus's minute here), and acceptor 1,
    resumed, has forgotten a script it had cached and run (its EVALSHA
    shortcut to a shard that knew it, too): -NOSCRIPT, as in Redis.  Last
    in the file: the flush forgets the other cases' scripts."""
    server = two_acceptors
    first = client_on(server.port, 0, k=2, timeout=DEADLINE)
    second = client_on(server.port, 1, k=2, timeout=DEADLINE)
    stopped = psutil.Process(acceptor_pids(server)[1])
    sha = hashlib.sha1(FLUSHED.encode()).hexdigest()
    key = key_on(1, "flushed", shards=2)
    assert first.command("SCRIPT", "LOAD", FLUSHED) == sha.encode()
    for _ in range(2):  # cached by acceptor 1, and known to the key's shard
        assert second.command("EVALSHA", sha, "1", key) == b"flushed " + key.encode()
    os.kill(stopped.pid, signal.SIGSTOP)
    try:
        assert until(lambda: stopped.status() == psutil.STATUS_STOPPED)
        assert first.command("SCRIPT", "FLUSH") == b"OK"
        assert stopped.status() == psutil.STATUS_STOPPED  # it answered while it was
    finally:
        os.kill(stopped.pid, signal.SIGCONT)
    for c in (second, first):
        with pytest.raises(ErrorReply) as refused:
            c.command("EVALSHA", sha, "1", key)
        assert str(refused.value) == NOSCRIPT
        assert c.command("SCRIPT", "EXISTS", sha) == [0]
    # Cached again through acceptor 1 after the flush: found through both.
    assert second.command("EVAL", FLUSHED, "1", key) == b"flushed " + key.encode()
    assert first.command("EVALSHA", sha, "1", key) == b"flushed " + key.encode()
    assert first.command("SCRIPT", "EXISTS", sha) == [1]
    first.close()
    second.close()


RELOADED = "return 'reloaded ' .. KEYS[1]"


def test_a_script_loaded_again_after_a_flush_runs_through_the_other_acceptor(two_acceptors) -> None:
    """Acceptor 1 ran a script on the key's shard (its EVALSHA shortcut
    takes it there by its SHA1); SCRIPT FLUSH, then SCRIPT LOAD of it
    again, through acceptor 0 (the load compiles it on shard 0 only),
    while the supervisor is stopped, so that the bus's word of the flush
    has not reached acceptor 1: EVALSHAs read after the load's reply, in
    one read (``scripts_alike``, the shortcut of a pipeline), run it
    through acceptor 1, as in Redis, not -NOSCRIPT from the key's shard,
    which ran the flush and was not sent the load (acceptor 1 applies
    the flush before it looks at its cache, ``ScriptCache.fresh``)."""
    server = two_acceptors
    first = client_on(server.port, 0, k=2, timeout=DEADLINE)
    second = client_on(server.port, 1, k=2, timeout=DEADLINE)
    sha = hashlib.sha1(RELOADED.encode()).hexdigest()
    key = key_on(1, "reloaded", shards=2)
    assert first.command("SCRIPT", "LOAD", RELOADED) == sha.encode()
    for _ in range(2):  # cached by acceptor 1, and known to the key's shard
        assert second.command("EVALSHA", sha, "1", key) == b"reloaded " + key.encode()
    stopped = psutil.Process(server.proc.pid)  # the supervisor: the bus's word of the flush waits
    os.kill(stopped.pid, signal.SIGSTOP)
    try:
        assert until(lambda: stopped.status() == psutil.STATUS_STOPPED)
        assert first.command("SCRIPT", "FLUSH") == b"OK"
        assert first.command("SCRIPT", "LOAD", RELOADED) == sha.encode()
        second.sock.sendall(encode_command("EVALSHA", sha, "1", key) * 2)  # one read: EVALSHAs alike
        assert [second.read_reply() for _ in range(2)] == [b"reloaded " + key.encode()] * 2
    finally:
        os.kill(stopped.pid, signal.SIGCONT)
    first.close()
    second.close()
