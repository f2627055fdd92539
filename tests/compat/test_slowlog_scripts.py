"""SLOWLOG of scripts, compared with redis-server at
``slowlog-log-slower-than 0``: which entries a script leaves (its calls,
then the script itself, as the client sent it), their order and ids, their
arguments as Redis cuts them, and their client address and name (the
client's for the script, Redis's Lua client, ``?:0`` and no name, for its
calls).  EVAL and EVALSHA (a shard that has the script, and one that has
not), FCALL, scripts that run across shards or escape there, scripts in
MULTI/EXEC and in a pipeline, and the acceptor's commands a script calls.

Durations and times are left out; an id is compared as its distance from
the newest entry's (the servers logged different histories before).
"""

from __future__ import annotations

import os
import socket

import pytest
import redis

from tests.support.placement import key_on
from tests.support.resp import encode_command, reply_end

GET = "return redis.call('get', KEYS[1])"
LIB = (
    "#!lua name=slowlib\n"
    "redis.register_function('f', function(k, a) return redis.call('get', k[1]) end)\n"
    "redis.register_function{function_name='fro', callback=function(k, a) return redis.call('get', k[1]) end,"
    " flags={'no-writes'}}"
)
# Keys on two shards of the 4-shard test server, and a third beside the first.
A, B = key_on(0, "sa"), key_on(1, "sb")
A2 = key_on(0, "sc")


def _try(c: redis.Redis, *args: object) -> object:
    try:
        return c.execute_command(*args)
    except redis.ResponseError as e:
        return ("error", str(e))


def _evalsha_twice_and_eval(c: redis.Redis) -> None:
    sha = c.execute_command("SCRIPT", "LOAD", GET)
    c.execute_command("EVALSHA", sha, 1, A)
    c.execute_command("EVALSHA", sha, 1, A)
    c.execute_command("EVAL", GET, 1, A)
    c.execute_command("evalsha", sha.upper(), 1, A)  # logged as sent
    c.execute_command("EVAL_RO", GET, 1, B)
    c.execute_command("EVALSHA_RO", sha, 1, B)


def _functions(c: redis.Redis) -> None:
    c.execute_command("FCALL", "f", 1, A)
    c.execute_command("FCALL_RO", "fro", 1, B)
    c.execute_command("fcall", "f", 1, A)


def _across_shards(c: redis.Redis) -> None:
    script = "redis.call('set', KEYS[1], '1') return redis.call('set', KEYS[2], '2')"
    c.execute_command("EVAL", script, 2, A, B)
    # Escapes: an undeclared key of another shard, the first time and again.
    escapes = "redis.call('set', KEYS[1], 'x') return redis.call('get', ARGV[1])"
    c.execute_command("EVAL", escapes, 1, A, B)
    c.execute_command("EVAL", escapes, 1, A, B)
    c.execute_command("EVAL", "return redis.call('set', '" + B + "', 'y')", 0)
    # EVALSHA of a script that settled on one shard, then escapes.
    sha = c.execute_command("SCRIPT", "LOAD", "return redis.call('get', ARGV[1])")
    c.execute_command("EVALSHA", sha, 1, A, A2)
    c.execute_command("EVALSHA", sha, 1, A, A2)
    c.execute_command("EVALSHA", sha, 1, A, B)


def _transaction(c: redis.Redis) -> None:
    sha = c.execute_command("SCRIPT", "LOAD", GET)
    pipe = c.pipeline(transaction=True)
    pipe.execute_command("EVAL", GET, 1, A)
    pipe.execute_command("EVALSHA", sha, 1, A)
    pipe.execute_command("FCALL", "f", 1, A)
    pipe.execute_command("EVAL", "return redis.call('incr', KEYS[1])", 1, A2)
    pipe.execute()


def _watched_transaction(c: redis.Redis) -> None:
    """Atomic transactions: a WATCH, and a script over two shards last
    (commands of one transaction on different shards run at once: their
    entries are in the order they finished, see the README)."""
    c.execute_command("WATCH", A)
    pipe = c.pipeline(transaction=True)
    pipe.execute_command("EVAL", GET, 1, A)
    pipe.execute_command("EVAL", "return redis.call('set', KEYS[1], '1')", 1, A2)
    pipe.execute_command("FCALL", "f", 1, A2)
    pipe.execute()
    pipe = c.pipeline(transaction=True)
    pipe.execute_command("EVAL", GET, 1, A)
    pipe.execute_command("EVAL", GET, 2, A, B)
    pipe.execute()


def _transaction_escapes(c: redis.Redis) -> None:
    """A transaction's script that escapes (an undeclared key of another
    shard) with commands queued around it: the undone runs' entries of
    those commands were kept (each logged three times)."""
    escapes = f"redis.call('set', '{B}', '1') return redis.call('get', '{key_on(1, 'sd')}')"
    pipe = c.pipeline(transaction=True)
    pipe.execute_command("GET", A)
    pipe.execute_command("EVAL", escapes, 0)
    pipe.execute_command("SET", A2, "d")
    pipe.execute()


def _transaction_escapes_late(c: redis.Redis) -> None:
    """Scripts that run before the one that escapes, in the same
    transaction: their entries, logged at once, were kept with the undone
    run's (the rollback then took back none of it)."""
    pipe = c.pipeline(transaction=True)
    pipe.execute_command("SET", A, "1")
    for i in range(3):
        writes = f"redis.call('set', '{key_on(0, 'se%d' % i)}', '1')"
        reads = key_on(min(i, 1), "sf%d" % i)  # (the first on the shard that runs them, the others not)
        pipe.execute_command("EVAL", writes + f" return redis.call('get', '{reads}')", 0)
    pipe.execute_command("GET", A)
    pipe.execute()


def _pipeline(c: redis.Redis) -> None:
    sha = c.execute_command("SCRIPT", "LOAD", "return redis.call('incr', KEYS[1])")
    pipe = c.pipeline(transaction=False)
    for _ in range(3):
        pipe.execute_command("EVALSHA", sha, 1, A)
    pipe.execute_command("EVAL", GET, 1, A)
    pipe.execute_command("EVALSHA", sha, 1, A)
    pipe.execute()


def _long_arguments(c: redis.Redis) -> None:
    c.execute_command("EVAL", "return 1", 0, *[f"x{i}" for i in range(40)])
    body = "return redis.call('get', KEYS[1]) --" + "y" * 200
    c.execute_command("EVAL", body, 1, A, *[f"v{i}" for i in range(31)])
    sha = c.execute_command("SCRIPT", "LOAD", body + " ")
    c.execute_command("EVALSHA", sha, 1, B, "z" * 300)


def _errors(c: redis.Redis) -> None:
    c.execute_command("EVAL", "return redis.call('set', KEYS[1], 'v')", 1, "str" + A)
    _try(c, "EVAL", "return redis.call('lpush', KEYS[1], 'x')", 1, "str" + A)
    _try(c, "EVAL", "return redis.pcall('lpush', KEYS[1], 'x')", 1, "str" + A)
    _try(c, "EVAL", "return redis.pcall('nosuch')", 0)
    _try(c, "EVALSHA", "0" * 40, 0)
    _try(c, "EVAL", GET, "x")
    _try(c, "FCALL", "nope", 0)
    _try(c, "FCALL", "f", "x")
    _try(c, "EVAL", "return {err='mine'}", 0)


def _acceptor_calls(c: redis.Redis) -> None:
    c.execute_command("EVAL", "return redis.call('ping')", 0)
    c.execute_command("EVAL", "redis.call('echo', 'e') return redis.call('slowlog', 'len')", 0)
    c.execute_command("EVAL", "redis.call('publish', 'ch', 'm') return #redis.call('info', 'server')", 1, A)
    c.execute_command("CLIENT", "SETNAME", "other")
    c.execute_command("EVAL", "return redis.call('lastsave')", 0)


SCENARIOS = {
    "evalsha_twice_and_eval": _evalsha_twice_and_eval,
    "functions": _functions,
    "across_shards": _across_shards,
    "transaction": _transaction,
    "watched_transaction": _watched_transaction,
    "pipeline": _pipeline,
    "long_arguments": _long_arguments,
    "errors": _errors,
    "acceptor_calls": _acceptor_calls,
}


def _shape(entries: list, addr: bytes) -> list:
    """The entries with ids as distances from the newest, no times, and
    the client's own address as ``client``."""
    newest = entries[0][0] if entries else 0
    return [[newest - e[0], e[3], b"client" if e[4] == addr else e[4], e[5]] for e in entries]


def _run(port: int, scenario) -> dict:
    c = redis.Redis(port=port, protocol=2)
    try:
        c.flushall()
        c.execute_command("SCRIPT", "FLUSH")
        c.execute_command("FUNCTION", "FLUSH")
        c.execute_command("FUNCTION", "LOAD", LIB)
        c.execute_command("CLIENT", "SETNAME", "slow")
        addr = c.execute_command("CLIENT", "INFO").split()[1].split(b"=")[1]
        c.execute_command("CONFIG", "SET", "slowlog-log-slower-than", "0")
        c.execute_command("SLOWLOG", "RESET")
        scenario(c)
        length = c.execute_command("SLOWLOG", "LEN")
        entries = c.execute_command("SLOWLOG", "GET", "-1")
        newest = c.execute_command("SLOWLOG", "GET", "3")
        return {
            "len": length,
            "entries": _shape(entries, addr),
            "newest": _shape(newest, addr),
            "ids": [e[0] for e in entries] == list(range(entries[0][0], entries[0][0] - len(entries), -1)),
        }
    finally:
        c.execute_command("CONFIG", "SET", "slowlog-log-slower-than", "10000")
        c.execute_command("FUNCTION", "FLUSH")
        c.close()


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_slowlog_of_scripts_as_redis(ports, name):
    real = _run(ports["redis"], SCENARIOS[name])
    ours = _run(ports["shardkv"], SCENARIOS[name])
    assert real["ids"]  # Redis numbers its entries one by one
    assert ours["entries"] == real["entries"]
    assert ours == real


def test_commands_around_a_script_that_escapes_in_exec_log_once(ports):
    """The commands queued around it have one entry each, as in Redis (they
    had three: two undone runs'), naming the client (they named none)."""
    real = _run(ports["redis"], _transaction_escapes)
    ours = _run(ports["shardkv"], _transaction_escapes)
    assert ours["entries"] == real["entries"]


def test_scripts_before_one_that_escapes_in_exec_log_once(ports):
    """Every entry of the transaction once, as in Redis: the scripts that
    ran before the one that escaped, and their calls, left entries of the
    undone run too (14 where Redis has 12)."""
    real = _run(ports["redis"], _transaction_escapes_late)
    ours = _run(ports["shardkv"], _transaction_escapes_late)
    assert ours["entries"] == real["entries"]


def _commands_with_other_shards_keys(c: redis.Redis) -> None:
    """Commands that run on one shard with another shard's keys: an
    atomic EXEC's (a script over two shards in it) and a cross-shard
    RENAME's.  Their entries named no client (Redis: the client's)."""
    pipe = c.pipeline(transaction=True)
    pipe.execute_command("SET", A, "1")
    pipe.execute_command("EVAL", GET, 2, A, B)
    pipe.execute_command("GET", B)
    pipe.execute()
    c.execute_command("RENAME", A, B)


def test_commands_run_with_other_shards_keys_name_their_client(ports):
    real = _run(ports["redis"], _commands_with_other_shards_keys)
    ours = _run(ports["shardkv"], _commands_with_other_shards_keys)
    assert ours["entries"] == real["entries"]


def _setname_inside_an_atomic_exec(c: redis.Redis) -> None:
    """A CLIENT SETNAME (and one refused) queued in an atomic EXEC between
    commands that run with other shards' keys and a script."""
    pipe = c.pipeline(transaction=True)
    pipe.execute_command("SET", A, "1")
    pipe.execute_command("CLIENT", "SETNAME", "renamed")
    pipe.execute_command("SET", B, "1")
    pipe.execute_command("CLIENT", "SETNAME", "bad name")
    pipe.execute_command("EVAL", GET, 2, A, B)
    pipe.execute_command("GET", A)
    pipe.execute(raise_on_error=False)


def test_commands_after_a_setname_inside_an_atomic_exec_carry_the_new_name(ports):
    """The commands (and the script) of an atomic EXEC after a CLIENT
    SETNAME queued in it are logged with the new name, as Redis runs it
    in place (they had the name the client had as EXEC was dispatched).
    (The entry of CLIENT SETNAME itself, which the acceptor runs after
    the operation, comes after theirs: left out, see the README.)"""
    real = _run(ports["redis"], _setname_inside_an_atomic_exec)
    ours = _run(ports["shardkv"], _setname_inside_an_atomic_exec)

    def shards_commands(entries: list) -> list:
        return [e[1:] for e in entries if e[1][0].upper() != b"CLIENT"]

    assert shards_commands(ours["entries"]) == shards_commands(real["entries"])


# A script that runs 50 ms when its key holds "slow" (and sets it to
# "fast"), at once otherwise.
SLOW_IF = (
    "if redis.call('get', KEYS[1]) == 'slow' then redis.call('set', KEYS[1], 'fast')"
    " local t = redis.call('time') local s = t[1] * 1e6 + t[2]"
    " repeat t = redis.call('time') until t[1] * 1e6 + t[2] - s > 50000 end return 1"
)


def _replies(s: socket.socket, n: int) -> None:
    """Read ``n`` replies from ``s``."""
    buf = b""
    pos = 0
    while n:
        end = reply_end(buf, pos) if buf[pos:] else -1
        if end < 0:
            chunk = s.recv(65536)
            assert chunk, "the server closed the connection"
            buf += chunk
            continue
        pos = end
        n -= 1


def _beside(port: int, cid: int) -> socket.socket:
    """A connection on the acceptor of client ``cid`` (with several
    acceptors, one knows only its own clients' scripts: see the README)."""
    k = int(os.environ.get("SHARDKV_TEST_ACCEPTORS", "1"))
    for _ in range(200):
        s = socket.create_connection(("127.0.0.1", port), timeout=10)
        s.sendall(encode_command("CLIENT", "ID"))
        buf = b""
        while not buf.endswith(b"\r\n"):
            buf += s.recv(100)
        if (int(buf[1:-2]) - cid) % k == 0:
            return s
        s.close()
    pytest.fail("no connection landed on that acceptor")


def _named_pair(port: int, cid: int) -> tuple:
    """Two raw connections on the acceptor of client ``cid``, named A and B."""
    a, b = _beside(port, cid), _beside(port, cid)
    try:
        for s, name in ((a, "A"), (b, "B")):
            s.sendall(encode_command("CLIENT", "SETNAME", name))
            _replies(s, 1)
    except BaseException:
        a.close()
        b.close()
        raise
    return a, b


def _one_slow_among_fast(port: int, trials: int) -> list:
    """Client A pipelines three EVALSHA of the script while client B runs
    the same EVALSHA slowly (whichever runs first, only B's is slow): the
    one entry logged is B's, in each of ``trials``.  (shardkv named it after
    A in most, when A's fast runs came in the same batch before B's: their
    replies came back as late as B's.)"""
    c = redis.Redis(port=port, protocol=2)
    seen = []
    try:
        c.execute_command("CONFIG", "SET", "slowlog-log-slower-than", "20000")
        sha = c.execute_command("SCRIPT", "LOAD", SLOW_IF)
        c.execute_command("EVALSHA", sha, 1, A)  # its shard compiled it
        for _ in range(trials):
            c.execute_command("SET", A, "fast")
            c.execute_command("SLOWLOG", "RESET")
            cid = c.execute_command("CLIENT", "ID")
            a, b = _named_pair(port, cid)
            with a, b:
                a.sendall(encode_command("EVALSHA", sha, 1, A) * 3)
                b.sendall(encode_command("SET", A, "slow") + encode_command("EVALSHA", sha, 1, A))
                _replies(a, 3)
                _replies(b, 2)
            entries = c.execute_command("SLOWLOG", "GET", "-1")
            seen.append([(e[3], e[5]) for e in entries if e[3][0].upper().startswith(b"EVAL")])
    finally:
        c.execute_command("CONFIG", "SET", "slowlog-log-slower-than", "10000")
        c.close()
    return seen


def test_slow_script_named_after_its_own_client(ports):
    real = _one_slow_among_fast(ports["redis"], 10)
    ours = _one_slow_among_fast(ports["shardkv"], 10)
    assert all(len(trial) == 1 and trial[0][1] == b"B" for trial in real)
    assert ours == real


# A script over two shards (A2 beside A, and B).
ACROSS = "redis.call('incr', KEYS[1]) return redis.call('incr', KEYS[2])"


def _fast_behind_slow(port: int, trials: int) -> list:
    """Client B runs SLOW_IF slowly (300 ms) on A's shard; client A's
    script over A2 (on that shard) and B, sent once B's runs, waits for it, then runs at once: only B's
    is slow (the slow log times a script's run, as Redis does, not its
    wait; shardkv logged A's script too, timed from its dispatch, as the
    shards it parks were busy with B's)."""
    c = redis.Redis(port=port, protocol=2)
    seen = []
    body = SLOW_IF.replace("50000", "300000")
    try:
        c.execute_command("CONFIG", "SET", "slowlog-log-slower-than", "150000")
        c.execute_command("DEL", A2)  # (B and A2 are INCRed: another test left "d" in A2)
        c.execute_command("DEL", B)
        sha = c.execute_command("SCRIPT", "LOAD", body)
        across = c.execute_command("SCRIPT", "LOAD", ACROSS)
        c.execute_command("EVALSHA", sha, 1, A)  # its shard compiled it
        c.execute_command("EVALSHA", across, 2, A2, B)
        for _ in range(trials):
            c.execute_command("SLOWLOG", "RESET")
            cid = c.execute_command("CLIENT", "ID")
            a, b = _named_pair(port, cid)
            with a, b:
                b.sendall(encode_command("SET", A, "slow"))
                _replies(b, 1)
                b.sendall(encode_command("EVALSHA", sha, 1, A))
                c.execute_command("PING")  # B's script has been read (the server is single-threaded)...
                a.sendall(encode_command("EVALSHA", across, 2, A2, B))  # ...before this one
                _replies(b, 1)
                _replies(a, 1)
            entries = c.execute_command("SLOWLOG", "GET", "-1")
            seen.append([(e[3][0].upper(), e[5]) for e in entries])
    finally:
        c.execute_command("CONFIG", "SET", "slowlog-log-slower-than", "10000")
        c.close()
    return seen


@pytest.mark.slow
def test_script_across_shards_timed_by_its_run_not_its_wait(ports):
    real = _fast_behind_slow(ports["redis"], 3)
    ours = _fast_behind_slow(ports["shardkv"], 3)
    assert real == [[(b"EVALSHA", b"B")]] * 3
    assert ours == real
