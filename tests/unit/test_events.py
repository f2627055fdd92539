"""The worker's keyspace events (shardkv.worker.events), in-process: the
events that cannot be compared with redis-server on a shared server."""

from __future__ import annotations

from shardkv.worker import events, eviction
from shardkv.worker.shard import Shard


def test_lazy_expiry_event_in_the_shard():
    """A read that finds its key expired notes ``expired`` (then the read's
    own ``keymiss``), before the sweeper could."""
    shard = Shard(0, 1)
    ks = shard.keyspace
    events.enable(ks, events.ALL)
    shard.execute([b"SET", b"k", b"v", b"PX", b"10"])
    ks.now = ks.expiry_now = ks.now + 100  # (see Keyspace.expiry_now)
    ks.counting = True
    assert ks.lookup(b"k") is None
    assert ks.events == [
        (0, b"k", events.NEW, b"new"),
        (0, b"k", events.STRING, b"set"),
        (0, b"k", events.GENERIC, b"expire"),
        (0, b"k", events.EXPIRED, b"expired"),
        (0, b"k", events.KEYMISS, b"keymiss"),
    ]


def test_evicted_events():
    """Eviction under maxmemory notes ``evicted`` for each key it evicts,
    in the database it evicts from (in-process: one shard, a tiny limit)."""
    shard = Shard(0, 1)
    ks = shard.keyspace
    events.enable(ks, events.EVICTED)
    for i in range(50):
        shard.execute([b"SET", b"k%d" % i, b"v" * 1000])
    assert ks.events == []
    eviction.configure(ks, 20000, "allkeys-random")
    shard.execute_limited([b"SET", b"x", b"y"])
    evicted = [key for db, key, cls, name in ks.events if (db, cls, name) == (0, events.EVICTED, b"evicted")]
    assert len(evicted) == len(ks.events) == 50 - ks.dbsize()
    assert len(set(evicted)) == len(evicted) and all(k.startswith(b"k") for k in evicted)


def test_nothing_is_noted_while_nobody_listens():
    shard = Shard(0, 1)
    ks = shard.keyspace
    shard.execute([b"SET", b"k", b"v", b"PX", b"10"])
    assert ks.events is None and ks.event_mask == 0
    events.enable(ks, events.ALL)
    events.enable(ks, 0)
    assert "touch" not in vars(ks)  # the recording touch is gone
    shard.execute([b"SET", b"k", b"v"])
    assert shard.take_events() is None and ks.events is None


def test_a_batch_sends_its_events_with_bounds_per_reply():
    from shardkv.protocol import wire

    shard = Shard(0, 1)
    events.enable(shard.keyspace, events.ALL & ~events.NEW)
    entries = [[b"SET", b"a", b"1"], [b"GET", b"a"], [b"DEL", b"a", b"b"]]
    payload = wire.encode_batch([item for e in entries for item in (0, e)])
    replies = wire.decode_replies(shard.run_batch(payload))
    assert len(replies) == 3
    frame = shard.take_events(bounded=True)
    assert frame is not None
    bounds, noted = wire.decode_events(frame)
    assert bounds == [1, 1, 2]
    assert noted == [(0, b"a", events.STRING, b"set"), (0, b"a", events.GENERIC, b"del")]


def test_a_starved_shard_says_so_and_notes_nothing_else():
    """With only STARVED wanted (maxmemory on, nobody listening), write
    commands are not looked at; a command over the limit with nothing to
    evict (volatile-random, no key with a TTL) notes one STARVED event:
    the shard's first slot and how far over it is."""
    from shardkv.protocol import wire

    shard = Shard(0, 1)
    ks = shard.keyspace
    events.enable(ks, wire.EVENT_STARVED)
    assert not ks.noting and "touch" not in vars(ks)
    for i in range(50):
        shard.execute([b"SET", b"k%d" % i, b"v" * 1000])
    assert ks.events == []
    eviction.configure(ks, 20000, "volatile-random")
    assert shard.execute_limited([b"GET", b"k1"]) == b"v" * 1000
    assert shard.execute_limited([b"SET", b"x", b"y"]) is eviction.OOM
    assert [(cls, name) for _, _, cls, name in ks.events] == [(wire.EVENT_STARVED, b"starved")] * 2
    first, over = ks.events[0][1].split()
    assert int(first) == 0 and int(over) == ks.memory.used - ks.memory.limit > 0
    assert ks.dbsize() == 50


def test_memory_give_and_take():
    """``__memory``: a shard gives its free room first, then, when told to
    evict, what evicting frees (never more than asked); ``limit`` pins the
    limit across other settings, and answers as ``__oom``; ``take`` raises
    it.  The figure is the data's estimated size and a constant: the same
    data, the same figure."""
    from shardkv.protocol.wire import Verb

    shard = Shard(0, 1)
    ks = shard.keyspace
    events.enable(ks, events.EVICTED)
    for i in range(20):
        shard.execute([b"SET", b"v%d" % i, b"x" * 1000, b"EX", b"1000"])
    eviction.configure(ks, 10**9, "volatile-random")
    memory = ks.memory
    used = shard.execute([Verb.MEMORY, b"figure"])
    assert used == memory.used
    assert used == eviction.BASE + sum(eviction.key_cost(b"v%d" % i, b"x" * 1000) for i in range(20))
    assert shard.execute([Verb.MEMORY, b"limit", b"%d" % (used + 500)]) == 0  # not out of memory
    eviction.configure(ks, 10**9, "volatile-lru")  # another setting: the limit stays
    memory = ks.memory
    assert memory.limit == used + 500 and memory.pinned
    assert shard.execute([Verb.MEMORY, b"figure"]) == used  # a new policy counts the same
    assert shard.execute([Verb.MEMORY, b"give", b"300", b"0"]) == 300
    assert shard.execute([Verb.MEMORY, b"give", b"5000", b"0"]) == 200  # only its room
    assert ks.events == [] and memory.limit == used
    given = shard.execute([Verb.MEMORY, b"give", b"5000", b"1"])
    evicted = [key for _, key, cls, _ in ks.events if cls == events.EVICTED]
    assert 0 < given <= 5000 and 3 <= len(evicted) == 20 - ks.dbsize()
    assert memory.limit == used - given
    assert shard.execute([Verb.MEMORY, b"take", b"%d" % given]) == b"OK" and memory.limit == used
    eviction.configure(ks, 10**10, "volatile-lru")  # a new maxmemory: its share again
    assert ks.memory.limit == 10**10 and not ks.memory.pinned


def test_events_redis_writes_after_the_reply_are_marked():
    """The events that Redis notifies after ``addReply`` carry AFTER
    (events.AFTER_REPLY), the command's others not: RPUSH's ``new`` comes
    before its reply, its ``rpush`` after; LMOVE's push before, its pop
    and ``del`` after; EXPIRE of a time past deletes before the reply;
    SET only with GET.  In a script none: its reply comes once it ended."""
    shard = Shard(0, 1)
    ks = shard.keyspace
    events.enable(ks, events.ALL)
    after = events.AFTER
    for args in ([b"RPUSH", b"l", b"a"], [b"LMOVE", b"l", b"m", b"LEFT", b"RIGHT"]):
        shard.execute(args)
    shard.execute([b"SET", b"k", b"v"])
    shard.execute([b"SET", b"k", b"w", b"GET"])
    shard.execute([b"EXPIRE", b"k", b"-1"])
    assert ks.events == [
        (0, b"l", events.NEW, b"new"),
        (0, b"l", events.LIST | after, b"rpush"),
        (0, b"m", events.NEW, b"new"),
        (0, b"m", events.LIST, b"rpush"),
        (0, b"l", events.LIST | after, b"lpop"),
        (0, b"l", events.GENERIC | after, b"del"),
        (0, b"k", events.NEW, b"new"),
        (0, b"k", events.STRING, b"set"),
        (0, b"k", events.STRING | after, b"set"),
        (0, b"k", events.GENERIC, b"del"),
    ]
    ks.events.clear()
    shard.execute([b"EVAL", b"return redis.call('rpush', KEYS[1], 'a')", b"1", b"l"])
    assert ks.events == [(0, b"l", events.NEW, b"new"), (0, b"l", events.LIST, b"rpush")]


def test_a_served_commands_events_are_noted_for_its_acceptor_whatever_it_asked_for():
    """With notify-keyspace-events ``K$`` and an acceptor hearing K, the
    shard notes strings' events alone; a served BLPOP's events (a list's)
    are noted all the same while its client's acceptor wants any events,
    naming its waiter and published on no channel: they tell that
    acceptor of the serve (see events.derive_served).  For a client of an
    acceptor that wants none, nothing is noted."""
    from shardkv.protocol import wire

    shard = Shard(0, 1)
    ks = shard.keyspace
    events.set_notify(ks, "K$")
    events.events_command(ks, [b"__events", b"%d" % events.KEYSPACE])  # (of pipe ks.pipe)
    shard.execute([b"RPUSH", b"l", b"a", b"b"])
    assert ks.events == [] and ks.event_mask == events.STRING
    args = [b"BLPOP", b"l", b"0"]
    for pipe in (ks.pipe + 1, ks.pipe):
        before = events.before(ks, args)
        assert shard.execute([b"LPOP", b"l"]) is not None
        events.derive_served(ks, args, [b"l", b"x"], before, pipe, 7)
    assert [(key, name) for _, key, _, name in ks.events] == [(b"l", b"lpop"), (b"l", b"del")]
    waiter = (7 << wire.EVENT_WAITER_PIPE_BITS | ks.pipe) << wire.EVENT_WAITER_SHIFT
    for _, _, cls, _ in ks.events:
        assert cls & events.SERVED and cls & ~((1 << wire.EVENT_WAITER_SHIFT) - 1) == waiter
        assert not cls & events.CHANNELS
    assert ks.event_mask == events.STRING
