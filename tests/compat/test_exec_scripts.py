"""Scripts inside MULTI/EXEC run in the transaction's order, atomically
with its other commands, as in Redis (shardkv issue 18).

An EXEC that runs as one atomic cross-shard operation (it has WATCH, or
writes on several shards) must run its scripts in their places among its
commands, not after the operation: each test sends a transaction in one
write, against redis-server 7.0.15, with one acceptor and with two, and
compares EXEC's array and the keys' values after it.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator

import pytest

from tests.support.acceptors import client_on
from tests.support.placement import key_on
from tests.support.resp import RespClient, encode_command
from tests.support.servers import start_redis, start_shardkv

SHARDS = 2
OWN, OTHER = key_on(0, "own", SHARDS), key_on(1, "other", SHARDS)
TTL_KEY = key_on(0, "ttl", SHARDS)
SET_A = "redis.call('set', KEYS[1], 'a')\nreturn 1"


@pytest.fixture(scope="module", params=[1, 2], ids=["k1", "k2"])
def servers(request) -> Iterator[tuple[int, int, int]]:
    """(redis-server's port, shardkv's port, its acceptors)."""
    acceptors = request.param
    real = start_redis()
    ours = start_shardkv(shards=SHARDS, acceptors=acceptors)
    yield real.port, ours.port, acceptors
    real.stop()
    ours.stop()


def _fresh(body: str) -> str:
    """``body`` as a script no server has seen."""
    return f"-- {uuid.uuid4().hex}\n{body}"


def _run(port: int, acceptors: int, commands: list[list[str]], load: str | None, db: int = 0) -> list:
    """Replies to ``commands`` (sent in one write after a FLUSHALL and,
    with ``load``, a SCRIPT LOAD of it), then the values of both keys (of
    database ``db``)."""
    c = client_on(port, 0, k=acceptors) if acceptors > 1 else RespClient(port, timeout=20)
    with c:
        c.command("FLUSHALL")
        if load is not None:
            c.command("SCRIPT", "LOAD", load)
        c.sock.sendall(b"".join(encode_command(*command) for command in commands))
        replies = [c.read() for _ in commands]
    with RespClient(port, timeout=20) as other:
        other.call("SELECT", db)
        return [*replies, other.call("GET", OWN), other.call("GET", OTHER)]


def _same(servers, commands: list[list[str]], load: str | None = None, db: int = 0) -> list:
    real, ours, acceptors = servers
    expected = _run(real, 1, commands, load, db)
    assert _run(ours, acceptors, commands, load, db) == expected
    return expected


def _script(kind: str, body: str) -> tuple[list[str], str | None]:
    """The command's first words that run ``body`` as ``kind``, and what to load first."""
    if kind == "eval":
        return ["EVAL", body], None
    sha = __import__("hashlib").sha1(body.encode()).hexdigest()
    return ["EVALSHA", sha], body


@pytest.mark.parametrize("kind", ["eval", "evalsha"])
def test_a_watched_exec_runs_its_script_before_the_set_behind_it(servers, kind):
    call, load = _script(kind, _fresh(SET_A))
    got = _same(servers, [["WATCH", OWN], ["MULTI"], [*call, "1", OWN], ["SET", OWN, "z"], ["EXEC"]], load)
    assert got[-3:] == [b"*2\r\n:1\r\n+OK\r\n", b"$1\r\nz\r\n", b"$-1\r\n"]


def test_an_exec_writing_two_shards_runs_its_script_in_order(servers):
    commands = [
        ["MULTI"],
        ["SET", OTHER, "x"],
        ["EVAL", _fresh(SET_A), "1", OWN],
        ["SET", OWN, "z"],
        ["EXEC"],
    ]
    got = _same(servers, commands)
    assert got[-2:] == [b"$1\r\nz\r\n", b"$1\r\nx\r\n"]


def test_a_script_reads_what_the_exec_wrote_before_it_on_another_shard(servers):
    commands = [
        ["MULTI"],
        ["SET", OWN, "x"],
        ["EVAL", _fresh("return redis.call('get', KEYS[1])"), "1", OTHER],
        ["SET", OTHER, "v"],
        ["EVAL", _fresh("return redis.call('get', KEYS[1])"), "1", OTHER],
        ["EXEC"],
    ]
    got = _same(servers, commands)
    assert got[-3] == b"*4\r\n+OK\r\n$-1\r\n+OK\r\n$1\r\nv\r\n"


def test_an_escaping_script_reads_what_the_exec_wrote_before_it(servers):
    commands = [
        ["MULTI"],
        ["SET", OTHER, "v"],
        ["EVAL", _fresh("return redis.call('get', ARGV[1])"), "1", OWN, OTHER],
        ["EXEC"],
    ]
    got = _same(servers, commands)
    assert got[-3] == b"*2\r\n+OK\r\n$1\r\nv\r\n"


def test_a_watched_exec_whose_script_escapes_runs_again_whole(servers):
    body = "redis.call('set', KEYS[1], 'a')\nredis.call('set', ARGV[1], 'b')\nreturn 1"
    commands = [
        ["WATCH", OWN],
        ["MULTI"],
        ["APPEND", OTHER, "x"],
        ["EVAL", _fresh(body), "1", OWN, OTHER],
        ["APPEND", OTHER, "y"],
        ["SET", OWN, "z"],
        ["EXEC"],
    ]
    got = _same(servers, commands)
    assert got[-2:] == [b"$1\r\nz\r\n", b"$2\r\nby\r\n"]


def test_a_script_error_inside_exec_is_in_its_array_and_the_others_run(servers):
    commands = [
        ["MULTI"],
        ["SET", OWN, "x"],
        ["SET", OTHER, "y"],
        ["EVAL", _fresh("return redis.call('incr', KEYS[1])"), "1", OWN],
        ["SET", OWN, "7"],
        ["EXEC"],
    ]
    got = _same(servers, commands)
    assert got[-3].startswith(b"*4\r\n+OK\r\n+OK\r\n-ERR value is not an integer")
    assert got[-2:] == [b"$1\r\n7\r\n", b"$1\r\ny\r\n"]


def test_an_fcall_inside_a_watched_exec_runs_in_order(servers):
    real, ours, acceptors = servers
    name = "f" + uuid.uuid4().hex[:12]
    library = (
        f"#!lua name={name}\n"
        f"redis.register_function('{name}', function(keys, args) redis.call('set', keys[1], 'a') return 1 end)"
    )

    def run(port: int, k: int) -> list:
        with RespClient(port, timeout=20) as loader:
            assert loader.call("FUNCTION", "LOAD", library).startswith(b"$")
        try:
            return _run(
                port,
                k,
                [["WATCH", OTHER], ["MULTI"], ["FCALL", name, "1", OWN], ["SET", OWN, "z"], ["EXEC"]],
                None,
            )
        finally:
            with RespClient(port, timeout=20) as loader:
                loader.call("FUNCTION", "DELETE", name)

    expected = run(real, 1)
    assert run(ours, acceptors) == expected
    assert expected[-2] == b"$1\r\nz\r\n"


LIB = "#!lua name={name}\nredis.register_function('{fn}', function(keys, args) return 4 end)"


@pytest.mark.parametrize(
    "change",
    [
        [["FUNCTION", "LOAD", LIB.format(name="execlib", fn="execfn")]],
        [
            ["FUNCTION", "LOAD", LIB.format(name="execlib", fn="execfn")],
            ["SET", OWN, "x"],
            ["SET", OTHER, "y"],
        ],
    ],
    ids=["alone", "writing-two-shards"],
)
def test_a_function_loaded_in_an_exec_is_there_for_its_fcall(servers, change):
    """Redis runs a FUNCTION LOAD queued before an FCALL first: the FCALL finds it."""
    real, ours, acceptors = servers
    for port in (real, ours):
        with RespClient(port, timeout=20) as c:
            c.command("FUNCTION", "FLUSH")
    got = _same(servers, [["MULTI"], *change, ["FCALL", "execfn", "1", OWN], ["EXEC"]])
    assert got[-3].endswith(b":4\r\n")


def test_a_function_deleted_or_flushed_in_an_exec_is_gone_for_its_fcall(servers):
    real, ours, acceptors = servers
    for port in (real, ours):
        with RespClient(port, timeout=20) as c:
            c.command("FUNCTION", "FLUSH")
            c.command("FUNCTION", "LOAD", LIB.format(name="execlib2", fn="execfn2"))
    commands = [
        ["MULTI"],
        ["FCALL", "execfn2", "0"],
        ["FUNCTION", "DELETE", "execlib2"],
        ["FCALL", "execfn2", "0"],
        ["FUNCTION", "LOAD", LIB.format(name="execlib2", fn="execfn2")],
        ["FCALL", "execfn2", "1", OTHER],
        ["FUNCTION", "FLUSH"],
        ["FCALL", "execfn2", "0"],
        ["EXEC"],
    ]
    got = _same(servers, commands)
    assert b"Function not found" in got[-3]


def test_a_script_loaded_or_flushed_in_an_exec_is_seen_by_its_evalsha(servers):
    body = _fresh("return 5")
    sha = __import__("hashlib").sha1(body.encode()).hexdigest()
    commands = [
        ["MULTI"],
        ["SCRIPT", "LOAD", body],
        ["EVALSHA", sha, "1", OWN],
        ["SET", OTHER, "y"],
        ["SCRIPT", "FLUSH"],
        ["EVALSHA", sha, "0"],
        ["SCRIPT", "EXISTS", sha],
        ["EXEC"],
    ]
    got = _same(servers, commands)
    assert b"NOSCRIPT" in got[-3]


# A SELECT inside the EXEC: the scripts after it run in its database, the
# operation in the client's (its keys named ``(database, key)``).
ESCAPE = "redis.call('set', ARGV[1], ARGV[2])\nreturn 1"
SET_KEY = "return redis.call('set', KEYS[1], 'h')"


@pytest.mark.parametrize(
    "commands",
    [
        # An escaping script in the client's database, then one after a SELECT
        # with a key of another shard than the operation's executor (it never
        # answered: review repro hang3.py).
        [
            ["MULTI"],
            ["EVAL", ESCAPE, "0", OWN, "1"],
            ["SELECT", "3"],
            ["EVAL", SET_KEY, "1", OTHER],
            ["EXEC"],
        ],
        [
            ["MULTI"],
            ["SET", OWN, "x"],
            ["SELECT", "3"],
            ["EVAL", SET_KEY, "1", OTHER],
            ["GET", OTHER],
            ["EXEC"],
        ],
        [
            ["MULTI"],
            ["SELECT", "3"],
            ["EVAL", ESCAPE, "1", OWN, OTHER, "e"],
            ["APPEND", OTHER, "q"],
            ["EXEC"],
        ],
        [
            ["WATCH", OWN],
            ["MULTI"],
            ["SELECT", "3"],
            [
                "EVAL",
                "redis.call('select', 0)\nredis.call('set', ARGV[1], 'q')\nreturn redis.call('get', ARGV[2])",
                "0",
                OTHER,
                OWN,
            ],
            ["SELECT", "0"],
            ["APPEND", OTHER, "r"],
            ["EXEC"],
        ],
    ],
    ids=["escape-then-select", "declared-other-shard", "escape-in-db3", "script-selects-back"],
)
@pytest.mark.parametrize("db", [0, 3])
def test_a_script_after_a_select_inside_exec_runs_in_its_database(servers, commands, db):
    commands = [[_fresh(word) if word in (ESCAPE, SET_KEY) else word for word in c] for c in commands]
    _same(servers, [["SELECT", "0"], *commands, ["PING"]], db=db)


@pytest.mark.parametrize(
    "body",
    [
        "return redis.call('dbsize')",
        "return #redis.call('keys', '*')",
        "local r = redis.call('scan', '0', 'count', '1000')\ntable.sort(r[2])\nreturn r[2]",
    ],
    ids=["dbsize", "keys", "scan"],
)
def test_a_script_after_a_select_inside_exec_sees_every_key_of_its_database(servers, body):
    commands = [
        ["SELECT", "3"],
        ["SET", OWN, "1"],
        ["SET", OTHER, "2"],
        ["SELECT", "0"],
        ["MULTI"],
        ["SET", OWN, "0"],
        ["SELECT", "3"],
        ["EVAL", _fresh(body), "0"],
        ["SELECT", "0"],
        ["SET", OTHER, "x"],
        ["EXEC"],
    ]
    _same(servers, commands)


def test_a_script_behind_a_function_load_after_a_select_runs_in_its_database(servers):
    """Such a script runs as a command of its own (see the README), in the
    database the SELECT before it chose, not the client's."""
    real, ours, acceptors = servers
    library = (
        "#!lua name=execlib3\n"
        "redis.register_function('execfn3', function(keys, args)"
        " redis.call('set', keys[2], 'f') return redis.call('get', keys[1]) end)"
    )
    commands = [
        ["MULTI"],
        ["SELECT", "3"],
        ["FUNCTION", "LOAD", "REPLACE", library],
        ["SET", OWN, "o"],
        ["SET", OTHER, "b"],
        ["FCALL", "execfn3", "2", OTHER, OWN],
        ["EXEC"],
    ]
    for db in (0, 3):
        got = _same(servers, [["SELECT", "0"], *commands], db=db)
    assert got[-3].endswith(b"$1\r\nb\r\n") and got[-2:] == [b"$1\r\nf\r\n", b"$1\r\nb\r\n"]
    for port in (real, ours):
        with RespClient(port, timeout=20) as c:
            c.command("FUNCTION", "DELETE", "execlib3")


@pytest.mark.parametrize("kind", ["function", "script"])
def test_a_script_behind_a_load_in_its_exec_runs_in_order_with_the_others(servers, kind):
    """Without WATCH, a FUNCTION LOAD or SCRIPT LOAD queued before the
    scripts runs as the EXEC starts: they see it, and still run in their
    places among the other commands."""
    real, ours, acceptors = servers
    body = "redis.call('set', KEYS[1], 'f') return redis.call('get', KEYS[2])"
    if kind == "function":
        library = f"#!lua name=execlib4\nredis.register_function('execfn4', function(KEYS, ARGV) {body} end)"
        load, call = ["FUNCTION", "LOAD", "REPLACE", library], ["FCALL", "execfn4"]
    else:
        text = _fresh(body)
        load, call = (
            ["SCRIPT", "LOAD", text],
            ["EVALSHA", __import__("hashlib").sha1(text.encode()).hexdigest()],
        )
    commands = [
        ["MULTI"],
        ["SET", OWN, "x"],
        load,
        ["SET", OTHER, "y"],
        [*call, "2", OWN, OTHER],
        ["APPEND", OWN, "z"],
        ["EXEC"],
    ]
    got = _same(servers, commands)
    assert got[-3].endswith(b"$1\r\ny\r\n:2\r\n") and got[-2:] == [b"$2\r\nfz\r\n", b"$1\r\ny\r\n"]
    for port in (real, ours):
        with RespClient(port, timeout=20) as c:
            c.command("FUNCTION", "FLUSH")


def _watched_first_escape(port: int, acceptors: int, body: str) -> list:
    c = client_on(port, 0, k=acceptors) if acceptors > 1 else RespClient(port, timeout=20)
    with c:
        c.command("FLUSHALL")
        c.command("SET", OWN, "1")
        commands = [
            ["WATCH", OWN],
            ["MULTI"],
            ["EVAL", f"{body}\nreturn redis.call('incr', '{OTHER}')", "0"],
            ["EVAL", f"{body}\nreturn redis.call('incr', '{OWN}')", "0"],
            ["EXEC"],
        ]
        c.sock.sendall(b"".join(encode_command(*command) for command in commands))
        return [c.read() for _ in commands] + [c.command("MGET", OWN, OTHER)]


def test_a_first_run_that_escapes_is_no_change_to_a_watched_key(servers):
    """The first run of a new script escapes (its key is on a shard not
    parked) and is undone; a script after it that wrote the WATCHed key
    in that run is undone too: the run again is no change to the key."""
    real, ours, acceptors = servers
    body = f"-- {uuid.uuid4().hex}"
    expected = _watched_first_escape(real, 1, body)
    assert expected[-2:] == [b"*2\r\n:1\r\n:2\r\n", [b"2", b"1"]]
    assert _watched_first_escape(ours, acceptors, body) == expected


def _databases(port: int) -> list:
    with RespClient(port, timeout=20) as c:
        found = []
        for db in ("0", "1"):
            c.command("SELECT", db)
            found.append(c.command("MGET", OWN, OTHER))
        return found


def test_a_new_script_swapping_databases_in_an_exec_swaps_them_once(servers):
    """A new script's SWAPDB escapes (it needs every shard), and so did the
    run again, on a key of another shard that exists in no database, after
    its SWAPDB had swapped every shard's databases on the executor, which
    the undo left half done.  A run with every key of every database on
    its executor does not escape: a key not there is in none."""
    real, ours, acceptors = servers
    body = _fresh(f"redis.call('swapdb', '0', '1') return redis.call('get', '{key_on(1, 'b', SHARDS)}')")
    commands = [
        ["SET", OTHER, "1"],
        ["MULTI"],
        ["SET", OWN, "1"],
        ["EVAL", body, "0"],
        ["GET", OTHER],
        ["EXEC"],
    ]
    expected = _run(real, 1, commands, None)
    assert expected[-3] == b"*3\r\n+OK\r\n$-1\r\n$-1\r\n"
    assert _run(ours, acceptors, commands, None) == expected
    assert _databases(ours) == _databases(real) == [[None, None], [b"1", b"1"]]


# A key on the other shard whose name is new at every run (TIME's
# microseconds): each run escapes on a key the run before it did not name.
# (``{tag}`` keeps every such key on the other shard.)
NEW_KEY_EACH_RUN = "local t = redis.call('time') return redis.call('set', '{TAG}' .. t[2], '1')"


@pytest.mark.parametrize("inside", [False, True], ids=["eval", "exec"])
def test_a_script_escaping_on_a_new_key_each_run_is_answered(servers, inside):
    """A script whose every run escapes on a key its runs before did not
    name runs, after a few such runs, with every shard parked: it is
    answered (bounded by the socket's timeout), and writes one key."""
    real, ours, acceptors = servers
    body = _fresh(NEW_KEY_EACH_RUN.replace("{TAG}", "{%s}" % key_on(1, "tag", SHARDS)))
    call = ["EVAL", body, "1", OWN]
    commands = [["MULTI"], ["SET", OWN, "2"], call, ["EXEC"]] if inside else [call]
    for port, k in ((real, 1), (ours, acceptors)):
        c = client_on(port, 0, k=k) if k > 1 else RespClient(port, timeout=10)
        with c:
            c.command("FLUSHALL")
            c.sock.sendall(b"".join(encode_command(*command) for command in commands))
            replies = [c.read() for _ in commands]
            assert replies[-1] == (b"*2\r\n+OK\r\n+OK\r\n" if inside else b"+OK\r\n")
            keys = c.command("KEYS", "*")
            assert len(keys) == (2 if inside else 1)
            assert c.command("GET", OWN) == (b"2" if inside else None)


@pytest.mark.parametrize("watch", [False, True], ids=["plain", "watched"])
def test_a_swapdb_queued_in_an_exec_with_a_script_swaps_before_what_follows(servers, watch):
    """A SWAPDB queued directly (not in a script) among the EXEC's commands
    swaps the databases in its place: the commands after it see the
    swapped ones (it ran after the operation, as an acceptor's command,
    and the GET after it answered the old database's value)."""
    real, ours, acceptors = servers
    commands = [
        ["SELECT", "1"],
        ["SET", OTHER, "one"],
        ["SELECT", "0"],
        ["SET", OTHER, "zero"],
        *([["WATCH", OWN]] if watch else []),
        ["MULTI"],
        ["SET", OWN, "x"],
        ["SWAPDB", "0", "1"],
        ["EVAL", _fresh("return redis.call('get', KEYS[1])"), "1", OWN],
        ["GET", OTHER],
        ["APPEND", OTHER, "+"],
        ["EXEC"],
    ]
    expected = _run(real, 1, commands, None)
    assert expected[-3] == b"*5\r\n+OK\r\n+OK\r\n$-1\r\n$3\r\none\r\n:4\r\n"
    assert _run(ours, acceptors, commands, None) == expected
    assert _databases(ours) == _databases(real) == [[None, b"one+"], [b"x", b"zero"]]


MOVE_OWN = "local m = redis.call('move', KEYS[1], 1)\nredis.call('set', ARGV[1], 'b')\nreturn m"
COPY_OWN = (
    "local m = redis.call('copy', KEYS[1], ARGV[1], 'db', '1')\nredis.call('set', ARGV[1], 'b')\nreturn m"
)
MOVE_OTHER = "return redis.call('move', ARGV[1], 1)"


@pytest.mark.parametrize(
    "commands",
    [
        [["SET", OWN, "x"], ["EVAL", MOVE_OWN, "1", OWN, OTHER]],
        [
            ["SET", OWN, "x"],
            ["WATCH", OWN],
            ["MULTI"],
            ["EVAL", MOVE_OWN, "1", OWN, OTHER],
            ["SET", OTHER, "c"],
            ["EXEC"],
        ],
        [["SET", OWN, "x"], ["MULTI"], ["SET", OTHER, "c"], ["EVAL", MOVE_OWN, "1", OWN, OTHER], ["EXEC"]],
        [["SET", OWN, "x"], ["EVAL", COPY_OWN, "1", OWN, OTHER]],
        [["SET", OWN, "x"], ["WATCH", OWN], ["MULTI"], ["EVAL", COPY_OWN, "1", OWN, OTHER], ["EXEC"]],
        [["SET", OTHER, "x"], ["EVAL", MOVE_OTHER, "1", OWN, OTHER]],
        [
            ["SET", OTHER, "x"],
            ["WATCH", OTHER],
            ["MULTI"],
            ["SET", OWN, "1"],
            ["EVAL", MOVE_OTHER, "1", OWN, OTHER],
            ["EXEC"],
        ],
    ],
    ids=[
        "move-eval",
        "move-watched-exec",
        "move-exec",
        "copy-eval",
        "copy-watched-exec",
        "other-eval",
        "other-exec",
    ],
)
def test_a_move_or_copy_to_another_database_in_a_script_across_shards(servers, commands):
    """A script's MOVE (or COPY ... DB) whose run escaped is undone in both
    databases: its run again moves the key once (the undo put it back in the
    source database only, and the run again's MOVE found it in the target:
    ``[0, OK]``).  And one of a key imported from another shard sends the
    target's key home (it stayed on the executor, on the wrong shard, and
    was lost)."""
    commands = [
        [_fresh(word) if word in (MOVE_OWN, COPY_OWN, MOVE_OTHER) else word for word in c] for c in commands
    ]
    real, ours, acceptors = servers
    expected = _run(real, 1, commands, None)
    assert b":1\r\n" in expected[-3]
    assert _run(ours, acceptors, commands, None) == expected
    assert _databases(ours) == _databases(real)


# Waits on TIME until ARGV[2] (Unix ms), sets ARGV[1] (a key of the other
# shard, not declared: the run escapes), then reads KEYS[1].
WAIT_THEN_ESCAPE = (
    "local t = redis.call('time')\n"
    "while t[1] * 1000 + math.floor(t[2] / 1000) < tonumber(ARGV[2]) do t = redis.call('time') end\n"
    "redis.call('set', ARGV[1], 'b')\n"
    "return redis.call('get', KEYS[1])"
)
W_W = b"*2\r\n$1\r\nw\r\n$1\r\nw\r\n"


def _expiring(port: int, acceptors: int, margin: int, watch: bool) -> list:
    """In one write: SET a key that expires ``margin`` ms from now, (WATCH
    it,) then an EXEC whose script, new to every acceptor, waits past that
    time, then escapes (sets a key of the other shard) and reads the key;
    and GET of the key after it: the replies, then the other key's value."""
    c = client_on(port, 0, k=acceptors) if acceptors > 1 else RespClient(port, timeout=30)
    with c:
        c.command("FLUSHALL")
        deadline = int(time.time() * 1000) + margin
        commands = [
            ["SET", OWN, "w", "PXAT", str(deadline)],
            *([["WATCH", OWN]] if watch else []),
            ["MULTI"],
            ["EVAL", _fresh(WAIT_THEN_ESCAPE), "1", OWN, OTHER, str(deadline + 100)],
            ["GET", OWN],
            ["EXEC"],
        ]
        c.sock.sendall(b"".join(encode_command(*command) for command in commands))
        return [c.read() for _ in commands] + [c.command("GET", OTHER)]


def _expiring_compared(servers: tuple[int, int, int], watch: bool) -> None:
    """:func:`_expiring` on both servers, with a larger margin each time
    redis-server's EXEC started after the key's deadline (its EXEC did not
    see the key: the machine was slow)."""
    real, ours, acceptors = servers
    for margin in (500, 2000, 8000):
        expected = _expiring(real, 1, margin, watch)
        if expected[-2] != W_W:
            continue
        assert expected[-1] == b"b"
        assert _expiring(ours, acceptors, margin, watch) == expected
        return
    pytest.fail(f"redis-server's EXEC started after the key's deadline each time: {expected!r}")


def test_a_watched_key_that_expires_while_an_escaped_run_runs_again(servers):
    """Redis checks a WATCHed key's expiry as EXEC starts, and its time
    stands still while the EXEC runs: a key that expires while the script's
    run escapes and runs again (its deadline is passed when the run again
    parks its shard) is no change, and the run again still sees it (it
    aborted the EXEC).  The script waits on TIME past the deadline."""
    _expiring_compared(servers, watch=True)


def test_a_key_read_unwatched_that_expires_while_an_escaped_run_runs_again(servers):
    """The same without WATCH: the key the EXEC reads, expired by the time
    the run again parks its shard, is still there as of the EXEC's start
    (the sweeper deleted it between the runs: nil, nil)."""
    _expiring_compared(servers, watch=False)


def _ttls_after_a_wait(port: int, acceptors: int, wait: int) -> tuple[list, int]:
    """In one write: SET a key with a 10 s TTL, then an EXEC whose script,
    new to every acceptor, waits ``wait`` ms on TIME then escapes, then
    SETs a key with a TTL of half that wait and asks the first key's PTTL;
    and GET of the second key after it: the replies but the PTTL, which
    comes apart."""
    c = client_on(port, 0, k=acceptors) if acceptors > 1 else RespClient(port, timeout=30)
    with c:
        c.command("FLUSHALL")
        commands = [
            ["SET", OWN, "w", "PX", "10000"],
            ["MULTI"],
            ["EVAL", _fresh(WAIT_THEN_ESCAPE), "1", OWN, OTHER, str(int(time.time() * 1000) + wait)],
            ["SET", TTL_KEY, "v", "PX", str(wait // 2)],
            ["PTTL", OWN],
            ["EXEC"],
            ["GET", TTL_KEY],
        ]
        c.sock.sendall(b"".join(encode_command(*command) for command in commands))
        replies = [c.read() for _ in commands]
    exec_reply, pttl = replies[-2].rsplit(b":", 1)
    return [*replies[:-2], exec_reply, replies[-1]], int(pttl)


def test_ttls_in_an_escaped_exec_count_from_the_clock(servers):
    """Redis stands still only its expiry checks while EXEC runs: a TTL
    set, or asked, after a script that took a while counts from the clock.
    The run again of an EXEC whose script escaped set it from the first
    run's start (a TTL shorter than the script's time: dead on arrival),
    and answered PTTL as of then (10 s less nothing).  Each time Redis's
    own GET after EXEC comes too late for the key, the wait is longer."""
    real, ours, acceptors = servers
    for wait in (2000, 8000):
        expected, pttl = _ttls_after_a_wait(real, 1, wait)
        if expected[-1] != b"$1\r\nv\r\n":
            continue
        # (The script's deadline is the client's clock as it sends, the
        # SET's TTL counts from when the server reads it, a little later:
        # the PTTL is about 10000 - wait, a few ms either side; as of the
        # first run's start it was 10000.)
        assert pttl <= 10000 - wait // 2
        actual, our_pttl = _ttls_after_a_wait(ours, acceptors, wait)
        assert actual == expected
        assert our_pttl <= 10000 - wait // 2
        return
    pytest.fail(f"redis-server's GET came after the key's deadline each time: {expected!r}")
