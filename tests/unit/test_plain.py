"""A batch's plain commands (shardkv.worker.plain) run inline in
``Shard.run_batch``: the same replies, counters and AOF as through
``Shard.execute``, which runs them when the plain path is off."""

from __future__ import annotations

import pytest

from shardkv.protocol import commands as commands_table
from shardkv.protocol import wire
from shardkv.protocol.router import key_slot
from shardkv.runtime import config
from shardkv.worker import events
from shardkv.worker.clock import FakeClock
from shardkv.worker.shard import Shard


def _batch(*commands: list[bytes], header: int = 0, slotted: bool = False) -> bytes:
    """``slotted``: each single-key command with the slotted header of its
    key's slot, as the acceptor's hot path sends it (see wire.SLOTTED)."""
    parts = []
    for args in commands:
        cmd = commands_table.lookup(args[0])
        if slotted and cmd is not None and cmd.single_key:
            parts.append(wire.slotted_header(key_slot(args[1]), bool(header & wire.FLAG_RESP3)))
        else:
            parts.append(wire.entry_header(header))
        parts.append(b"*%d\r\n" % len(args) + b"".join(b"$%d\r\n%s\r\n" % (len(a), a) for a in args))
    return wire.batch_payload(parts)


def _shard(tmp_path, plain: bool, appendonly: bool) -> Shard:
    cfg = config.defaults()
    cfg.update({"dir": str(tmp_path), "shards": 1, "appendonly": appendonly, "appendfsync": "no"})
    shard = Shard(0, 1, FakeClock(), config=cfg)
    shard.persistence.start()  # type: ignore[union-attr]
    if not plain:
        shard.plain_table = lambda: None  # type: ignore[method-assign]
    return shard


# Plain and not: hits and misses, WRONGTYPE and other errors, writes that
# change nothing (SETRANGE of nothing, SET XX and DEL of a missing key), a recorded
# write (INCRBYFLOAT, logged as a SET), mixed-case names, and entries that
# take execute's path between them (MSET, DEL, RESP3, a RESETSTAT that
# drops the rows).
BATCHES = [
    [[b"GET", b"a"], [wire.Verb.RESETSTAT], [b"GET", b"a"], [b"INCR", b"a"], [b"DEL", b"m"]],
    [[b"SET", b"a", b"1"], [b"GET", b"a"], [b"GET", b"nope"], [b"incr", b"a"], [b"InCr", b"a"]],
    [[b"LPUSH", b"l", b"x"], [b"GET", b"l"], [b"INCR", b"l"], [b"HSET", b"h", b"f", b"v"]],
    [[b"SETRANGE", b"s", b"0", b""], [b"INCRBYFLOAT", b"f", b"1.5"], [b"MSET", b"m", b"1", b"n", b"2"]],
    [[b"SET", b"b", b"2", b"XX"], [b"set", b"b", b"3"], [b"SET", b"a", b"x", b"EX", b"0"], [b"GETDEL", b"a"]],
]


def _run_all(shard: Shard, slotted: bool | None = None) -> tuple:
    """``slotted`` (True or False): with misses in RESP3 and RESP2 after."""
    replies = [wire.decode_replies(shard.run_batch(_batch(*cmds, slotted=bool(slotted)))) for cmds in BATCHES]
    replies.append(
        wire.decode_replies(shard.run_batch(_batch([b"GET", b"b"], header=wire.FLAG_RESP3, slotted=slotted)))
    )
    # Misses in RESP3 and RESP2, on keys of even and odd slots.
    misses = [[b"GET", b"x%d" % i] for i in range(4)] + [[b"HGET", b"y%d" % i, b"f"] for i in range(4)]
    for header in (wire.FLAG_RESP3, 0) if slotted is not None else ():
        replies.append(wire.decode_replies(shard.run_batch(_batch(*misses, header=header, slotted=slotted))))
    ks = shard.keyspace
    report = shard.stats.report()
    calls = {name: (row[0], row[2], row[3]) for name, row in report[0].items()}
    persistence = shard.persistence
    assert persistence is not None
    logged = b"".join(persistence.aof.buf) if persistence.aof is not None else b""
    return replies, calls, report[1], report[2], ks.hits, ks.misses, persistence.dirty, logged


@pytest.mark.parametrize("appendonly", [False, True])
def test_plain_path_counts_and_logs_as_execute_does(tmp_path, appendonly):
    inline = _run_all(_shard(tmp_path / "plain", True, appendonly))
    through_execute = _run_all(_shard(tmp_path / "execute", False, appendonly))
    assert inline == through_execute
    replies, calls, errors, error_replies, hits, misses, dirty, logged = inline
    assert replies[2][1:3] == [b"-WRONGTYPE Operation against a key holding the wrong kind of value\r\n"] * 2
    # Counted from RESETSTAT on (the first batch's first GET is not).
    assert (calls["get"], calls["incr"], calls["set"]) == ((5, 0, 1), (4, 0, 1), (4, 0, 1))
    assert (errors, error_replies, hits, misses) == ({"WRONGTYPE": 2, "ERR": 1}, 3, 4, 2)
    # (not the DEL of a missing key, the SETRANGE of nothing, the SET XX
    # of a missing key: no change, as Redis; the MSET of two pairs: two)
    assert dirty == 11
    if appendonly:  # INCRBYFLOAT as its effect, the others as sent
        assert b"INCRBYFLOAT" not in logged and b"*4\r\n$3\r\nSET\r\n$1\r\nf\r\n$3\r\n1.5\r\n" in logged
        assert b"$4\r\nInCr\r\n" in logged


@pytest.mark.parametrize("appendonly", [False, True])
def test_slotted_entries_run_as_those_without_a_slot(tmp_path, appendonly):
    """The acceptor's hot path sends a plain command's key's slot in its
    header (negative, see wire.SLOTTED): the same replies (RESP3's null
    too), counters and AOF as without, and each key in its own slot."""
    shard = _shard(tmp_path / "slotted", True, appendonly)
    slotted = _run_all(shard, slotted=True)
    assert slotted == _run_all(_shard(tmp_path / "unslotted", True, appendonly), slotted=False)
    assert slotted[0][-2] == [b"_\r\n"] * 8 and slotted[0][-1] == [b"$-1\r\n"] * 8
    ks = shard.keyspace
    for key in (b"b", b"f", b"l", b"h"):
        assert key in ks.data[key_slot(key)]


def test_plain_commands_take_the_inline_path(tmp_path):
    shard = _shard(tmp_path, True, False)
    shard.run_batch(_batch([b"SET", b"k", b"v"], [b"GET", b"k"], [b"get", b"k"], [b"MSET", b"a", b"1"]))
    table = shard.plain
    assert table[b"SET"] and table[b"GET"] and table[b"get"]
    assert table[b"MSET"] is False  # not single-key: execute runs it
    assert table[b"SET"].logs and not table[b"GET"].logs  # type: ignore[union-attr]


def test_resetstat_gives_plain_entries_the_new_rows(tmp_path):
    shard = _shard(tmp_path, True, False)
    shard.run_batch(_batch([b"GET", b"k"], [wire.Verb.RESETSTAT], [b"GET", b"k"], [b"GET", b"k"]))
    shard.run_batch(_batch([b"GET", b"k"]))
    assert shard.stats.report()[0]["get"][0] == 3


@pytest.mark.parametrize("slotted", [False, True])
@pytest.mark.parametrize("plain", [True, False])
def test_a_plain_write_under_misconf_is_refused_as_execute_refuses_it(tmp_path, plain, slotted):
    """-MISCONF may come with any reply sent (a failed AOF write), in the
    middle of a batch: each plain write asks, reads go on."""
    shard = _shard(tmp_path, plain, False)
    shard.run_batch(_batch([b"SET", b"k", b"v"], slotted=slotted))
    shard.persistence.misconf = "MISCONF the disk is full"  # type: ignore[union-attr]
    replies = wire.decode_replies(
        shard.run_batch(_batch([b"GET", b"k"], [b"SET", b"k", b"w"], [b"GET", b"k"], slotted=slotted))
    )
    assert replies == [b"$1\r\nv\r\n", b"-MISCONF the disk is full\r\n", b"$1\r\nv\r\n"]
    calls, _, rejected, failed = shard.stats.report()[0]["set"][:4]
    assert (calls, rejected, failed) == (1, 1, 0)


# GET, SET key value, INCR and DECR run inline in run_batch in their
# handlers' usual case, and through the handler otherwise: TTLs alive and
# passed, strings changed in place (APPEND's bytearray), integers at and
# past the limits or spelled as Redis does not take them, other types,
# missing keys, hash tags, WATCHed keys, names in any case.
INLINE_BATCHES = [
    [[b"SET", b"a", b"1"], [wire.Verb.WATCH, b"a", b"b"], [b"INCR", b"a"], [b"DECR", b"a"], [b"GET", b"a"]],
    [[b"SET", b"a", b"5"], [b"sEt", b"b", b"x"], [b"Get", b"b"], [b"incr", b"nope"], [b"decr", b"nope2"]],
    [
        [b"SET", b"t", b"10", b"EX", b"100"],
        [b"INCR", b"t"],
        [b"GET", b"t"],
        [b"SET", b"u", b"1", b"PX", b"50"],
    ],
    [[b"GET", b"t"], [b"INCR", b"t"], [b"GET", b"u"], [b"INCR", b"u"], [b"SET", b"t", b"new"]],
    [[b"SET", b"n", b"9223372036854775806"], [b"INCR", b"n"], [b"INCR", b"n"], [b"DECR", b"n"]],
    [[b"SET", b"m", b"-9223372036854775808"], [b"DECR", b"m"], [b"INCR", b"m"], [b"DECR", b"m"]],
    [[b"SET", b"z", b"-9223372036854775809"], [b"INCR", b"z"], [b"SET", b"z", b"99999999999999999999"]],
    [[b"INCR", b"z"], [b"SET", b"z", b"123456789012345678901"], [b"INCR", b"z"], [b"SET", b"z", b" 1"]],
    [[b"INCR", b"z"], [b"SET", b"z", b"01"], [b"INCR", b"z"], [b"SET", b"z", b"-0"], [b"INCR", b"z"]],
    [[b"SET", b"z", b"1_0"], [b"INCR", b"z"], [b"SET", b"z", b"+1"], [b"DECR", b"z"], [b"SET", b"z", b"abc"]],
    [[b"INCR", b"z"], [b"SET", b"s", b"ab"], [b"APPEND", b"s", b"c"], [b"GET", b"s"], [b"GET", b"s"]],
    [[b"SET", b"i", b"7"], [b"APPEND", b"i", b"0"], [b"INCR", b"i"], [b"INCR", b"i"], [b"GET", b"i"]],
    [[b"HSET", b"h", b"f", b"v"], [b"GET", b"h"], [b"INCR", b"h"], [b"SET", b"h", b"1"], [b"INCR", b"h"]],
    [[b"SET", b"{t}a", b"1"], [b"GET", b"{t}a"], [b"INCR", b"{t}a"], [b"GET", b"{t}b"], [b"SET", b"", b""]],
    [[b"GET", b""], [b"INCR", b""], [b"SET", b"a", b"x" * 2000], [b"GET", b"a"], [b"SET", b"w", b"1", b"XX"]],
    # The digits-only case and its edges: 18 digits to 19, 0, 1 down past 0.
    [
        [b"SET", b"d", b"999999999999999999"],
        [b"INCR", b"d"],
        [b"INCR", b"d"],
        [b"DECR", b"d"],
        [b"GET", b"d"],
    ],
    [
        [b"SET", b"d", b"0"],
        [b"INCR", b"d"],
        [b"DECR", b"d"],
        [b"DECR", b"d"],
        [b"DECR", b"d"],
        [b"INCR", b"d"],
    ],
    [[b"SET", b"d", b"00"], [b"INCR", b"d"], [b"SET", b"d", b"9\xd9\xa0"], [b"INCR", b"d"], [b"GET", b"d"]],
]


def _run_inline(shard: Shard, slotted: bool = False) -> tuple:
    clock = shard.keyspace.clock
    replies = []
    for i, cmds in enumerate(INLINE_BATCHES):
        replies.append(wire.decode_replies(shard.run_batch(_batch(*cmds, slotted=slotted))))
        if i == 2:
            clock.advance(60)  # type: ignore[attr-defined]  # u's deadline passes, t's does not
        if i == 3:
            clock.advance(200_000)
    ks = shard.keyspace
    report = shard.stats.report()
    calls = {name: (row[0], row[2], row[3]) for name, row in report[0].items()}
    persistence = shard.persistence
    assert persistence is not None
    logged = b"".join(persistence.aof.buf) if persistence.aof is not None else b""
    data = {k: (type(v), bytes(v)) for d in ks.data for k, v in d.items()}
    expires = {k: t for d in ks.expires for k, t in d.items()}
    state = (data, expires, ks.nvolatile, dict(ks.watched), dict(ks.clocks))
    return replies, calls, report[1], report[2], ks.hits, ks.misses, persistence.dirty, logged, state


@pytest.mark.parametrize("slotted", [False, True])
@pytest.mark.parametrize("appendonly", [False, True])
def test_inline_commands_do_what_their_handlers_do(tmp_path, appendonly, slotted):
    """Slotted, with no AOF: run_batch's fast path (see shard._gates)."""
    inline = _run_inline(_shard(tmp_path / "plain", True, appendonly), slotted)
    through_execute = _run_inline(_shard(tmp_path / "execute", False, appendonly), slotted)
    assert inline == through_execute
    replies, calls = inline[0], inline[1]
    assert replies[0][2:] == [b":2\r\n", b":1\r\n", b"$1\r\n1\r\n"]
    assert replies[3][:2] == [b"$2\r\n11\r\n", b":12\r\n"]  # t lives on; u has gone
    overflow = b"-ERR increment or decrement would overflow\r\n"
    assert replies[4][1:] == [b":9223372036854775807\r\n", overflow, b":9223372036854775806\r\n"]
    assert inline[8][3] == {b"a": 4, b"b": 1}  # each change of a WATCHed key counted
    assert calls["incr"][0] > 10


def test_fast_path_times_every_command_and_folds_them(tmp_path):
    """The fast path folds a name's pending times when the name changes
    and at the batch's end, not after each command: every call is
    counted, and no more than a batch's times wait."""
    shard = _shard(tmp_path, True, False)
    sets = [[b"SET", b"k%d" % i, b"v"] for i in range(300)]
    gets = [[b"GET", b"k%d" % i] for i in range(300)]
    shard.run_batch(_batch(*sets, *gets, [b"INCR", b"n"], slotted=True))
    assert shard.plain[b"SET"].times == shard.plain[b"GET"].times == []  # type: ignore[union-attr]
    shard.run_batch(_batch(*sets[:10], slotted=True))
    calls = {name: row[0] for name, row in shard.stats.report()[0].items()}
    assert (calls["set"], calls["get"], calls["incr"]) == (310, 300, 1)
    assert shard.keyspace.hits == 300 and shard.persistence.dirty == 311  # type: ignore[union-attr]


def test_fast_path_is_off_while_a_client_blocks_on_a_key(tmp_path):
    """A write to a key someone waits on goes the way that wakes them."""
    shard = _shard(tmp_path, True, False)
    marked = []
    waiters = shard.waiters
    mark = waiters.mark
    waiters.mark = lambda args: (marked.append(args[1]), mark(args))  # type: ignore[method-assign]
    waiters.by_key[b"l"] = []  # type: ignore[assignment]
    shard.run_batch(_batch([b"SET", b"a", b"1"], [b"INCR", b"a"], slotted=True))
    del waiters.by_key[b"l"]
    shard.run_batch(_batch([b"SET", b"b", b"1"], slotted=True))
    assert marked == [b"a", b"a"]


def test_fast_path_counts_are_seen_by_the_entries_after_it(tmp_path):
    """The fast path counts its writes, hits and misses in locals: an
    entry off it in the same batch sees them (INFO's figures), and the
    tables it holds are read again after one (a flush, a swap)."""
    shard = _shard(tmp_path, True, False)
    fast = [[b"SET", b"a", b"1"], [b"GET", b"a"], [b"GET", b"nope"], [b"INCR", b"a"]]
    batch = _batch(*fast, [wire.Verb.INFO], [b"GET", b"a"], slotted=True)
    replies = wire.decode_replies(shard.run_batch(batch))
    assert b"+rdb_changes_since_last_save\r\n:2\r\n" in replies[4]
    assert b"+keyspace_hits\r\n:1\r\n+keyspace_misses\r\n:1\r\n" in replies[4]
    ks = shard.keyspace
    assert (ks.hits, ks.misses, shard.persistence.dirty) == (2, 1, 2)  # type: ignore[union-attr]
    swap = [b"SWAPDB", b"0", b"1"]
    batch = _batch(*fast, swap, [b"GET", b"a"], [b"SET", b"b", b"2"], swap, [b"GET", b"b"], slotted=True)
    replies = wire.decode_replies(shard.run_batch(batch))
    assert replies[4:] == [b"+OK\r\n", b"$-1\r\n", b"+OK\r\n", b"+OK\r\n", b"$-1\r\n"]
    batch = _batch([b"SET", b"c", b"1"], [b"FLUSHALL"], [b"GET", b"c"], [b"INCR", b"c"], slotted=True)
    assert wire.decode_replies(shard.run_batch(batch))[1:] == [b"+OK\r\n", b"$-1\r\n", b":1\r\n"]
    assert (ks.hits, ks.misses) == (3, 5)


def test_fast_path_keeps_its_last_entry_until_the_rows_are_new(tmp_path):
    """The fast path's last name and entry carry over to the next batch,
    until a RESETSTAT makes new rows (in a batch, or between them)."""
    shard = _shard(tmp_path, True, False)
    shard.run_batch(_batch([b"SET", b"k", b"v"], [b"GET", b"k"], slotted=True))
    assert shard.last_plain[1] is shard.plain[b"GET"]
    gets = _batch([b"GET", b"k"], [b"GET", b"k"], slotted=True)
    shard.run_batch(_batch([wire.Verb.RESETSTAT]))
    shard.run_batch(gets)
    assert {name: row[0] for name, row in shard.stats.report()[0].items()} == {"get": 2}
    shard.stats.reset()  # (as a RESETSTAT of the shard's counters outside a batch)
    shard.run_batch(gets)
    shard.run_batch(_batch([b"GET", b"k"], slotted=True))
    assert {name: row[0] for name, row in shard.stats.report()[0].items()} == {"get": 3}
    assert shard.last_plain[1] is shard.plain[b"GET"]


def test_a_payload_whose_last_header_has_no_entry_is_refused_after_the_rest(tmp_path):
    shard = _shard(tmp_path, True, False)
    parts = [wire.slotted_header(key_slot(b"k"), False), b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\nv\r\n"]
    with pytest.raises(ValueError):
        shard.run_batch(wire.batch_payload([*parts, wire.entry_header(0)]))
    assert shard.keyspace.data[key_slot(b"k")][b"k"] == b"v" and shard.persistence.dirty == 1  # type: ignore[union-attr]


@pytest.mark.parametrize("slotted", [True, False])
def test_aof_and_events_turned_on_mid_batch_see_the_writes_after(tmp_path, slotted):
    """An entry that turns the AOF or keyspace events on (``__config
    appendonly yes``, ``__events``: CONFIG SET on another connection,
    reaching the worker in the middle of a batch) holds for the entries
    after it in the same batch, as the next command after Redis's CONFIG
    SET: each write is logged after the new base (whose fork had none of
    them) and its events noted, none left to the fast path."""
    shard = _shard(tmp_path, True, False)
    config_on = [wire.Verb.CONFIG, b"appendonly", b"yes"]
    batch = _batch([b"SET", b"a", b"1"], config_on, [b"SET", b"b", b"2"], [b"INCR", b"a"], slotted=slotted)
    replies = wire.decode_replies(shard.run_batch(batch))
    assert replies[2:] == [b"+OK\r\n", b":2\r\n"]
    persistence = shard.persistence
    assert persistence is not None and persistence.aof is not None
    logged = b"".join(persistence.aof.buf)
    assert b"$1\r\nb\r\n$1\r\n2\r\n" in logged and b"$1\r\na\r\n" in logged
    assert [index for index, _ in shard.logged] == [2, 3]  # -MISCONF would refuse these replies
    events_on = [wire.Verb.EVENTS, b"%d" % events.ALL]
    batch = _batch([b"SET", b"c", b"1"], events_on, [b"SET", b"d", b"2"], [b"INCR", b"d"], slotted=slotted)
    shard.run_batch(batch)
    noted = [(e[1], e[3]) for e in shard.keyspace.events or []]
    assert noted == [(b"d", b"new"), (b"d", b"set"), (b"d", b"incrby")]
    assert shard.event_bounds == [0, 0, 2, 3]
