"""The acceptor's dispatch, in one process, with fake shard links.

An acceptor built by :func:`shardkv.acceptor.wiring.build`, as the server
builds it, whose links to the workers are :class:`FakeLink`: they record
what the acceptor sends each shard, and the test answers in the shard's
place.  No worker process, no socket, no event loop.
"""

from __future__ import annotations

import asyncio
import dataclasses
import marshal
import tracemalloc

import pytest

from shardkv.acceptor import blocking, wiring
from shardkv.acceptor.client import Client
from shardkv.acceptor.migrate import MIGRATING
from shardkv.acceptor.replies import Slot
from shardkv.acceptor.server import Acceptor
from shardkv.protocol import commands, errors, wire
from shardkv.protocol.resp import encode_command
from shardkv.protocol.router import key_slot, slot_owners
from shardkv.runtime import config


class FakeLink:
    """A shard link that keeps each sent entry until the test answers it."""

    def __init__(self, index: int) -> None:
        self.index = index
        self.sent: list[tuple[bytes, bytes, object]] = []  # (header, body, sink), oldest first
        self.steps = 0
        self.busy = None
        self.ops: dict = {}  # cross-shard operations this link takes part in (none here)
        self.up = True
        self.blocked: dict = {}  # the sinks of W frames, by token (a __bsettle's)

    @property
    def fifo(self) -> list:
        """The sinks waiting for replies, as ShardLink.fifo: the unanswered entries'."""
        return [sink for _, _, sink in self.sent]

    def worker_closed(self) -> bool:
        """As ShardLink.worker_closed: the test's worker never dies."""
        return False

    def send(
        self, header: bytes, command: bytes, sink: object, whole_step: bool = False, control: bool = False
    ) -> None:
        self.sent.append((header, command, sink))

    def send_run(self, header: bytes, run: list) -> None:
        for i in range(0, len(run), 2):
            self.send(header, run[i], run[i + 1], True)

    def send_slotted(self, run: list) -> None:
        for i in range(0, len(run), 3):
            self.send(run[i], run[i + 1], run[i + 2], True)

    def send_control(self, command: bytes, sink: object, in_step: bool = False) -> None:
        self.send(wire.entry_header(0), command, sink, control=True)

    def step_done(self) -> None:
        self.steps += 1

    def bodies(self) -> list[bytes]:
        return [body for _, body, _ in self.sent]

    def answer(self, body: bytes) -> None:
        """The shard's reply to the oldest entry still unanswered."""
        _, _, sink = self.sent.pop(0)
        sink.deliver(body)  # type: ignore[attr-defined]


class MemoryTransport:
    def __init__(self) -> None:
        self.written: list[bytes] = []
        self.closed = False

    def write(self, data: bytes) -> None:
        self.written.append(data)

    def get_extra_info(self, name: str, default: object = None) -> object:
        return {"peername": ("127.0.0.1", 40000), "sockname": ("127.0.0.1", 6379)}.get(name, default)

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:  # (a blocked client's wait asks whether it is gone)
        return self.closed

    def get_write_buffer_size(self) -> int:  # (a subscribed client's flush checks its limit)
        return 0


def build(nshards: int = 2, **settings: object) -> tuple[Acceptor, list[FakeLink]]:
    cfg = config.defaults()
    cfg["shards"] = nshards
    cfg.update(settings)
    acceptor = wiring.build(cfg)
    links = [FakeLink(i) for i in range(nshards)]
    acceptor.links = links  # type: ignore[assignment]
    return acceptor, links


def build_on_memory_pipes(nshards: int = 2) -> tuple[Acceptor, list[MemoryTransport]]:
    """An acceptor with its real shard links, each attached to a memory
    transport (what it sends that shard), on an event loop of its own
    (the caller closes ``acceptor.loop``)."""
    cfg = config.defaults()
    cfg["shards"] = nshards
    acceptor = wiring.build(cfg)
    acceptor.loop = asyncio.new_event_loop()
    pipes = []
    for link in acceptor.links:
        pipe = MemoryTransport()
        link.attached(pipe)  # type: ignore[arg-type]
        pipes.append(pipe)
    return acceptor, pipes


def connect(acceptor: Acceptor) -> tuple[Client, MemoryTransport]:
    client = Client(acceptor)
    transport = MemoryTransport()
    client.connection_made(transport)  # type: ignore[arg-type]
    return client, transport


def send(client: Client, *commands: list[bytes]) -> None:
    client.data_received(b"".join(encode_command(c) for c in commands))


def replies(acceptor: Acceptor, transport: MemoryTransport) -> bytes:
    acceptor.flush_dirty_clients()  # what a link does after each reply frame
    out = b"".join(transport.written)
    transport.written.clear()
    return out


def keys_on_two_shards(acceptor: Acceptor) -> tuple[bytes, bytes]:
    a = b"a"
    b = next(k for k in (b"k%d" % i for i in range(100)) if acceptor.shard_of(k) != acceptor.shard_of(a))
    return a, b


def first_keys_of_shards(nshards: int = 2) -> tuple[bytes, ...]:
    """The first of ``k0``, ``k1``, ... on each shard, in shard order."""
    owners = slot_owners(nshards)
    keys: dict[int, bytes] = {}
    i = 0
    while len(keys) < nshards:
        key = b"k%d" % i
        keys.setdefault(owners[key_slot(key)], key)
        i += 1
    return tuple(keys[shard] for shard in range(nshards))


def test_a_single_key_command_carries_its_slot_in_database_0_only() -> None:
    """The slotted header (wire.SLOTTED) says database 0: a client in
    another database sends that database's header, RESP3 or not."""
    acceptor, links = build()
    client, transport = connect(acceptor)
    get = encode_command([b"GET", b"k"])
    client.data_received(encode_command([b"SELECT", b"1"]) + get)
    client.data_received(encode_command([b"HELLO", b"3"]) + get + encode_command([b"SELECT", b"0"]) + get)
    shard = acceptor.shard_of(b"k")
    assert [header for header, _, _ in links[shard].sent] == [
        wire.entry_header(0, db=1),
        wire.entry_header(wire.FLAG_RESP3, db=1),
        wire.slotted_header(key_slot(b"k"), True),
    ]


def test_selecting_databases_builds_no_table_per_database() -> None:
    """Only database 0 has slotted headers: a client that selects 200
    databases and sends GET in each makes the acceptor hold a few bytes per
    database (its headers), not a header per slot (before: 2 x 16384 per
    database, 50 MiB here, kept for the process's life)."""
    acceptor, links = build(databases=256)
    client, transport = connect(acceptor)
    get = encode_command([b"GET", b"k"])
    client.data_received(encode_command([b"SELECT", b"255"]) + get)  # (whatever is made once)
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for db in range(1, 201):
            client.data_received(
                encode_command([b"SELECT", b"%d" % db]) + get + encode_command([b"HELLO", b"3"]) + get
            )
            client.data_received(encode_command([b"HELLO", b"2"]))
        grown = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    shard = acceptor.shard_of(b"k")
    headers = [header for header, body, _ in links[shard].sent if body == get]
    assert headers[-2:] == [wire.entry_header(0, db=200), wire.entry_header(wire.FLAG_RESP3, db=200)]
    assert grown < 1 << 20, grown


def test_a_single_key_command_goes_to_its_shard_as_it_came() -> None:
    acceptor, links = build()
    client, transport = connect(acceptor)
    raw = encode_command([b"GET", b"k"])
    client.data_received(raw)
    shard = acceptor.shard_of(b"k")
    # With its key's slot in its header (the worker stores the key by it).
    assert links[shard].sent[0][:2] == (wire.slotted_header(key_slot(b"k"), False), raw)
    assert not links[1 - shard].sent
    assert replies(acceptor, transport) == b""  # nothing until the shard answers
    links[shard].answer(b"$1\r\nv\r\n")
    assert replies(acceptor, transport) == b"$1\r\nv\r\n"


def test_replies_leave_in_command_order_whatever_shard_answers_first() -> None:
    acceptor, links = build()
    a, b = keys_on_two_shards(acceptor)
    client, transport = connect(acceptor)
    send(client, [b"GET", a], [b"PING"], [b"GET", b])
    links[acceptor.shard_of(b)].answer(b"$1\r\nB\r\n")
    assert replies(acceptor, transport) == b""  # GET a still owes its reply
    links[acceptor.shard_of(a)].answer(b"$1\r\nA\r\n")
    assert replies(acceptor, transport) == b"$1\r\nA\r\n+PONG\r\n$1\r\nB\r\n"


def test_checks_come_before_routing() -> None:
    acceptor, links = build()
    client, transport = connect(acceptor)
    send(client, [b"NOSUCH", b"x"], [b"GET"], [b"GET", b"k", b"extra"])
    assert replies(acceptor, transport) == (
        b"-ERR unknown command 'NOSUCH', with args beginning with: 'x' \r\n"
        b"-ERR wrong number of arguments for 'get' command\r\n"
        b"-ERR wrong number of arguments for 'get' command\r\n"
    )
    assert not any(link.sent for link in links)


def test_local_commands_are_answered_in_the_acceptor() -> None:
    acceptor, links = build()
    client, transport = connect(acceptor)
    send(client, [b"PING"], [b"ECHO", b"hi"], [b"CLIENT", b"ID"])
    assert replies(acceptor, transport) == b"+PONG\r\n$2\r\nhi\r\n:%d\r\n" % client.id
    assert not any(link.sent for link in links)


def test_a_read_across_shards_fans_out_in_one_step_and_merges_in_key_order() -> None:
    acceptor, links = build()
    a, b = keys_on_two_shards(acceptor)
    client, transport = connect(acceptor)
    send(client, [b"MGET", b, a])
    for key, value in ((a, b"A"), (b, b"B")):
        link = links[acceptor.shard_of(key)]
        header, body, _ = link.sent[0]
        assert header == wire.entry_header(wire.FLAG_PART)
        assert body == encode_command([b"MGET", key])
        link.answer(marshal.dumps([value]))
    assert replies(acceptor, transport) == b"*2\r\n$1\r\nB\r\n$1\r\nA\r\n"


def test_a_write_across_shards_goes_to_the_atomic_fan_out() -> None:
    acceptor, links = build()
    calls = []
    acceptor.wiring = dataclasses.replace(
        acceptor.wiring, atomic_fan_out=lambda client, parts, merge, keys, **_: calls.append(parts)
    )
    a, b = keys_on_two_shards(acceptor)
    client, _ = connect(acceptor)
    send(client, [b"DEL", a, b])
    assert calls == [{acceptor.shard_of(a): [b"DEL", a], acceptor.shard_of(b): [b"DEL", b]}]
    assert not any(link.sent for link in links)


def test_blocking_and_atomic_commands_go_to_their_handlers() -> None:
    acceptor, _ = build()
    seen = []
    acceptor.wiring = dataclasses.replace(
        acceptor.wiring,
        block=lambda client, cmd, args, keys: seen.append(("block", cmd.name, keys)),
        cross_shard=lambda client, cmd, args, keys, everything: seen.append(("cross", cmd.name, keys)),
    )
    a, b = keys_on_two_shards(acceptor)
    client, _ = connect(acceptor)
    send(client, [b"BLPOP", a, b"0"], [b"SMOVE", a, b, b"m"])
    assert seen == [("block", "blpop", [a]), ("cross", "smove", [a, b])]


def test_multi_queues_and_exec_routes_the_queue_in_one_step() -> None:
    acceptor, links = build()
    client, transport = connect(acceptor)
    send(client, [b"MULTI"], [b"SET", b"k", b"v"], [b"GET", b"k"])
    assert replies(acceptor, transport) == b"+OK\r\n+QUEUED\r\n+QUEUED\r\n"
    assert not any(link.sent for link in links)
    send(client, [b"EXEC"])
    link = links[acceptor.shard_of(b"k")]
    # (__defer and __serve around the writes: no waiter is served halfway)
    defer, serve = encode_command([wire.Verb.DEFER]), encode_command([wire.Verb.SERVE])
    assert link.bodies() == [
        defer,
        encode_command([b"SET", b"k", b"v"]),
        encode_command([b"GET", b"k"]),
        serve,
    ]
    link.answer(b"+OK\r\n")
    link.answer(b"+OK\r\n")
    link.answer(b"$1\r\nv\r\n")
    link.answer(b"+OK\r\n")
    assert replies(acceptor, transport) == b"*2\r\n+OK\r\n$1\r\nv\r\n"


def test_a_refused_command_in_multi_makes_exec_abort() -> None:
    acceptor, links = build()
    client, transport = connect(acceptor)
    send(client, [b"MULTI"], [b"GET"], [b"EXEC"])
    assert replies(acceptor, transport) == (
        b"+OK\r\n-ERR wrong number of arguments for 'get' command\r\n"
        b"-EXECABORT Transaction discarded because of previous errors.\r\n"
    )
    assert client.state.multi is None
    assert not any(link.sent for link in links)


def test_a_subscribed_resp2_client_may_not_run_other_commands() -> None:
    acceptor, links = build()
    client, transport = connect(acceptor)
    send(client, [b"SUBSCRIBE", b"ch"], [b"GET", b"k"], [b"MULTI"])
    refused = [(errors.SUBSCRIBED_CONTEXT % name).encode() for name in ("get", "multi")]
    assert replies(acceptor, transport) == (
        b"*3\r\n$9\r\nsubscribe\r\n$2\r\nch\r\n:1\r\n" + b"".join(b"-%s\r\n" % e for e in refused)
    )
    assert not any(link.sent for link in links)
    client.connection_lost(None)  # on_disconnect: the subscription goes


def test_requirepass_refuses_commands_before_auth() -> None:
    acceptor, links = build(requirepass="secret")
    client, transport = connect(acceptor)
    send(client, [b"GET", b"k"])
    assert replies(acceptor, transport) == b"-" + errors.NOAUTH.encode() + b"\r\n"
    send(client, [b"AUTH", b"secret"], [b"GET", b"k"])
    assert replies(acceptor, transport) == b"+OK\r\n"
    assert links[acceptor.shard_of(b"k")].bodies() == [encode_command([b"GET", b"k"])]


@pytest.mark.parametrize("nshards", [1, 3])
def test_every_key_goes_to_the_shard_the_router_names(nshards: int) -> None:
    acceptor, links = build(nshards)
    client, _ = connect(acceptor)
    keys = [b"key:%d" % i for i in range(50)]
    send(client, *([b"INCR", k] for k in keys))
    for link in links:
        for body in link.bodies():
            key = body.split(b"\r\n")[-2]
            assert acceptor.shard_of(key) == link.index
    assert sum(len(link.sent) for link in links) == len(keys)


def _leaving_behind_a_wait(acceptor: Acceptor) -> Client:
    """A client whose SET waits behind one of shardkv's own waits (a
    MIGRATE's, set here directly) when its connection goes."""
    client, _ = connect(acceptor)
    client.state.block(MIGRATING, shown=False)
    send(client, [b"SET", b"k", b"v"])
    client.connection_lost(None)
    return client


def test_a_leaving_client_stays_listed_until_what_it_sent_ran() -> None:
    acceptor, links = build()
    client = _leaving_behind_a_wait(acceptor)
    assert acceptor.clients.get(client.id) is client and client in acceptor.leaving
    client.state.unblock(MIGRATING)
    client.resume()
    assert [b"SET" in body for body in links[acceptor.shard_of(b"k")].bodies()] == [True]
    assert client.id not in acceptor.clients and client not in acceptor.leaving


def test_a_bug_while_a_leaving_client_runs_what_it_sent_forgets_it() -> None:
    acceptor, _ = build()
    client = _leaving_behind_a_wait(acceptor)

    def broken(batch: list) -> None:
        raise RuntimeError("a bug")

    client._run = broken  # type: ignore[method-assign]
    client.state.unblock(MIGRATING)
    client.resume()  # logged, not raised
    assert client.id not in acceptor.clients and client not in acceptor.leaving


def test_a_client_closed_for_a_bug_runs_nothing_more() -> None:
    acceptor, links = build()
    client, transport = connect(acceptor)
    transport.abort = lambda: None  # type: ignore[attr-defined]
    client.state.block(MIGRATING, shown=False)
    send(client, [b"SET", b"k", b"v"])
    client.failed("a test")
    client.connection_lost(None)
    assert client.id not in acceptor.clients and client not in acceptor.leaving
    client.state.unblock(MIGRATING)
    client.resume()
    assert not any(link.sent for link in links)


def test_replies_after_immediate_ones_leave_in_order_once_ready() -> None:
    acceptor, links = build()
    a, b = keys_on_two_shards(acceptor)
    client, transport = connect(acceptor)
    send(client, [b"GET", a], [b"GET", b], [b"PING"], [b"GET", a], [b"ECHO", b"e"])
    links[acceptor.shard_of(a)].answer(b"$1\r\n1\r\n")
    assert replies(acceptor, transport) == b"$1\r\n1\r\n"
    links[acceptor.shard_of(b)].answer(b"$1\r\n2\r\n")
    assert replies(acceptor, transport) == b"$1\r\n2\r\n+PONG\r\n"
    links[acceptor.shard_of(a)].answer(b"$1\r\n3\r\n")
    assert replies(acceptor, transport) == b"$1\r\n3\r\n$1\r\ne\r\n"
    assert not client.pending


def test_shard_replies_leave_as_their_ready_prefix_empty_ones_included() -> None:
    """Slots alone in the reply order: a flush writes the replies up to
    the first still owed, and an empty reply (a big reply's last piece
    leaves one) counts as ready, not as owed."""
    acceptor, links = build()
    a, b = keys_on_two_shards(acceptor)
    first, second = links[acceptor.shard_of(a)], links[acceptor.shard_of(b)]
    client, transport = connect(acceptor)
    send(client, [b"GET", a], [b"GET", b], [b"GET", a], [b"GET", b])
    first.answer(b"$1\r\n1\r\n")
    first.answer(b"$1\r\n3\r\n")
    assert replies(acceptor, transport) == b"$1\r\n1\r\n"
    second.answer(b"$1\r\n2\r\n")
    assert replies(acceptor, transport) == b"$1\r\n2\r\n$1\r\n3\r\n"
    assert len(client.pending) == 1
    send(client, [b"GET", a], [b"GET", a])
    first.answer(b"")  # ready, though empty
    first.answer(b"$1\r\n6\r\n")
    assert replies(acceptor, transport) == b""  # the fourth is still owed
    second.answer(b"$1\r\n4\r\n")
    assert replies(acceptor, transport) == b"$1\r\n4\r\n$1\r\n6\r\n"
    assert not client.pending


class _Turn:
    """An event loop's end of turn: what is scheduled runs at :meth:`end`."""

    def __init__(self) -> None:
        self.soon: list = []

    def call_soon(self, callback: object, *args: object) -> None:
        self.soon.append((callback, args))

    def end(self) -> None:
        while self.soon:
            callback, args = self.soon.pop(0)
            callback(*args)  # type: ignore[operator]


def test_replies_from_several_shards_read_in_one_turn_leave_in_one_write() -> None:
    """Real shard links: each pipe's reply frame fills its commands' slots,
    and the client's replies are written once, at the end of the turn in
    which both came, in command order (not once per shard's frame)."""
    cfg = config.defaults()
    cfg["shards"] = 2
    acceptor = wiring.build(cfg)
    turn = _Turn()
    acceptor.loop = turn  # type: ignore[assignment]
    for link in acceptor.links:
        link.attached(MemoryTransport())  # type: ignore[arg-type]
    a, b = keys_on_two_shards(acceptor)
    client, transport = connect(acceptor)
    send(client, [b"GET", a], [b"GET", b], [b"PING"], [b"GET", a])
    turn.end()  # the batches leave for the shards
    first = acceptor.links[acceptor.shard_of(a)]
    second = acceptor.links[acceptor.shard_of(b)]
    for link, bodies in ((first, [b"$1\r\n1\r\n", b"$1\r\n3\r\n"]), (second, [b"$1\r\n2\r\n"])):
        assert len(link.fifo) == len(bodies)
        payload = wire.encode_replies(bodies)
        link.data_received(wire.FRAME.pack(len(payload)) + payload)
    assert transport.written == []  # not yet: the turn goes on
    turn.end()
    assert transport.written == [b"$1\r\n1\r\n$1\r\n2\r\n+PONG\r\n$1\r\n3\r\n"]
    assert not client.pending


def test_a_read_of_other_frames_than_plain_replies_is_written_at_once() -> None:
    """Only plain replies wait for the turn's end: a blocked command's
    wake-up (as events, invalidations, pieces...) is written with what
    was ready before it, at once."""
    cfg = config.defaults()
    cfg["shards"] = 2
    acceptor = wiring.build(cfg)
    turn = _Turn()
    acceptor.loop = turn  # type: ignore[assignment]
    link = acceptor.links[0]
    link.attached(MemoryTransport())  # type: ignore[arg-type]
    client, transport = connect(acceptor)
    slot = Slot(client)
    client.pending.append(slot)
    link.blocked[5] = slot
    payload = wire.encode_wake(5, b"$1\r\nx\r\n")
    link.data_received(wire.FRAME.pack(len(payload)) + payload)
    assert transport.written == [b"$1\r\nx\r\n"]


def test_a_write_across_shards_hashes_each_key_once() -> None:
    """An MSET over two shards: each key's shard is computed once, and the
    parts keep the keys' order with their values."""
    acceptor, _ = build()
    calls = []
    acceptor.wiring = dataclasses.replace(
        acceptor.wiring, atomic_fan_out=lambda client, parts, merge, keys, **_: calls.append(parts)
    )
    a, b = keys_on_two_shards(acceptor)
    shard_of = acceptor.shard_of
    hashed: list[bytes] = []

    def counted(key: bytes) -> int:
        hashed.append(key)
        return shard_of(key)

    acceptor.shard_of = counted  # type: ignore[method-assign]
    client, _ = connect(acceptor)
    send(client, [b"MSET", a, b"1", b, b"2", a + b"{x}", b"3"])
    c = a + b"{x}"
    assert sorted(hashed) == sorted([a, b, c])
    parts: dict = {}
    for key, value in ((a, b"1"), (b, b"2"), (c, b"3")):
        parts.setdefault(shard_of(key), [b"MSET"]).extend([key, value])
    assert calls == [parts]


class DecidingLink(FakeLink):
    """A FakeLink that keeps the control frames queued for the end of the turn."""

    def __init__(self, index: int) -> None:
        super().__init__(index)
        self.frames: list = []

    def queue_frame(self, payload: bytes) -> None:
        self.frames.append(wire.decode_control(payload))


@pytest.mark.parametrize(("votes", "reply"), [((1, 1), b":1\r\n"), ((1, 0), b":0\r\n"), ((0, 0), b":0\r\n")])
def test_msetnx_across_shards_is_a_write_fan_out_that_every_part_must_set(
    monkeypatch, tmp_path, votes, reply
) -> None:
    """MSETNX over two shards: one ``__prepare`` of its part to each (no
    park, run and prepare of a parked operation); a part whose key exists
    answers 0 and prepares nothing, and then the operation is decided
    undone on the shards that set theirs, and the reply is 0."""
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # the decisions file
    acceptor, _ = build()
    links = [DecidingLink(i) for i in range(2)]
    acceptor.links = links  # type: ignore[assignment]
    a, b = keys_on_two_shards(acceptor)
    client, transport = connect(acceptor)
    send(client, [b"MSETNX", a, b"1", b, b"2"])
    ops = set()
    for key, value, vote in ((a, b"1", votes[0]), (b, b"2", votes[1])):
        link = links[acceptor.shard_of(key)]
        [(header, body, _)] = link.sent
        args = body.split(b"\r\n")[2::2]
        assert args[0] == wire.Verb.PREPARE and args[2:] == [b"MSETNX", key, value]
        op = int(args[1])
        ops.add(op)
        link.answer(wire.encode_answer(wire.PartPrepared(op, vote == 1, vote)))
    assert len(ops) == 1
    assert replies(acceptor, transport) == reply
    decided = [frame for link in links for frame in link.frames]
    commit = votes == (1, 1)
    assert [(d.op, d.commit) for d in decided] == [(op, commit)] * votes.count(1)


def _waiting_on_a(
    monkeypatch: pytest.MonkeyPatch,
) -> tuple[Acceptor, list[FakeLink], bytes, bytes, list[bytes]]:
    """An acceptor where a cross-shard wait waits on ``a`` (its shard
    other than ``b``'s), and the keys of the commands that leave the
    inline path (``Client.execute``), as they do."""
    acceptor, links = build()
    a, b = keys_on_two_shards(acceptor)
    monkeypatch.setitem(blocking.EAGER, object(), None)  # type: ignore[call-overload]
    monkeypatch.setitem(blocking.EAGER_KEYS, a, 1)
    executed: list[bytes] = []
    execute = Client.execute

    def counting(self: Client, args: list[bytes], raw: bytes | None = None) -> None:
        executed.append(args[1])
        execute(self, args, raw)

    monkeypatch.setattr(Client, "execute", counting)
    return acceptor, links, a, b, executed


def test_while_a_cross_shard_blmove_waits_only_commands_naming_its_keys_leave_the_inline_path(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A cross-shard BLMOVE (or XREAD) waiting on ``a`` makes a write of
    # ``a`` try it at once (blocking.try_at_once, from the slow path); a
    # command on another key has nothing to try and stays inline.
    acceptor, links, a, b, executed = _waiting_on_a(monkeypatch)
    client, _ = connect(acceptor)
    send(client, [b"SET", b"k", b"1"], [b"GET", b"k"], [b"RPUSH", a, b"x"], [b"GET", b])
    assert executed == [a]
    sent = [body for link in links for body in link.bodies()]
    assert sorted(sent) == sorted(
        encode_command(c) for c in ([b"SET", b"k", b"1"], [b"GET", b"k"], [b"RPUSH", a, b"x"], [b"GET", b])
    )


def _sent(links: list[FakeLink]) -> list[list[tuple[bytes, bytes]]]:
    return [[(header, body) for header, body, _ in link.sent] for link in links]


@pytest.mark.parametrize(
    ("prelude", "named"),
    [([], True), ([[b"HELLO", b"3"]], True), ([[b"SELECT", b"1"]], False), ([[b"MULTI"]], False)],
)
def test_a_read_of_one_name_goes_where_the_same_commands_of_several_names_go(
    monkeypatch: pytest.MonkeyPatch, prelude: list[list[bytes]], named: bool
) -> None:
    """A read of commands of one name and shape, which the parser tells
    ``Client._run`` (it takes them by ``_run_named``, for a plain client
    in database 0), sends each shard what a read of the same commands
    with one of another name or shape at its end sends (the loop that
    tests each command): the same headers (a hash tag's slot too),
    bodies and reply order, and CLIENT LIST's last command.  In RESP3,
    and (the loop's way) in another database and in MULTI."""
    taken: list[int] = []
    run_named = Client._run_named
    monkeypatch.setattr(Client, "_run_named", lambda self, batch: taken.append(1) or run_named(self, batch))
    commands.lookup(b"SET")  # (a spelling _run knows once it has been looked up)
    keys = [b"k%d" % i for i in range(12)] + [b"{t}a", b"x{t}", b"{}z", b"{"]
    sets = [[b"SET", k, b"v%d" % i] for i, k in enumerate(keys)]
    outs = []
    for extra in ([], [[b"PING"]], [[b"GET", b"k1"]]):
        acceptor, links = build()
        client, transport = connect(acceptor)
        if prelude:
            send(client, *prelude)
            replies(acceptor, transport)
        send(client, *sets, *extra)
        assert (links[0].sent and links[1].sent) or prelude == [[b"MULTI"]]
        n = 0
        for link in links:
            while link.sent:
                n += 1
                link.answer(b"+%d\r\n" % n)
        outs.append((_sent(links), replies(acceptor, transport), client.last_args))
    assert taken == ([1] if named else [])
    assert outs[0][0] == outs[1][0] == outs[2][0]
    assert outs[0][1] == outs[1][1][: len(outs[0][1])] == outs[2][1][: len(outs[0][1])]
    assert outs[0][2] == (sets[-1] if prelude != [[b"MULTI"]] else outs[0][2])


def test_a_read_of_one_name_naming_a_key_a_cross_shard_wait_waits_on_takes_the_slow_path(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """While a cross-shard BLMOVE waits on ``a`` (``EAGER_KEYS``), a read
    of one name runs command by command: a write of ``a`` takes the slow
    path (it may serve that wait), the others stay inline."""
    acceptor, links, a, b, executed = _waiting_on_a(monkeypatch)
    commands.lookup(b"RPUSH")  # (as above)
    client, _ = connect(acceptor)
    send(client, [b"RPUSH", b, b"x"], [b"RPUSH", a, b"x"], [b"RPUSH", b, b"y"], [b"RPUSH", a, b"y"])
    assert executed == [a, a]


def test_evalshas_shortcut_is_off_only_for_a_key_a_cross_shard_wait_waits_on(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """While a cross-shard BLMOVE waits on ``a`` (``EAGER_KEYS``), an
    EVALSHA of a settled script on another key still takes its shortcut
    (``scripting.evalsha_fast``: sent as it came, not executed), alone or
    behind another (``behind_shortcuts``), a keyless ``__bsettle`` behind
    it, or behind the run (``blocking.settle_script``: the keys it may
    write undeclared; ``__bsettlealone``, sent to one shard alone); one declaring ``a``, first or behind, takes the
    ordinary path (which tries that wait), and what follows it waits for
    the scripts before it."""
    from shardkv.acceptor import scripting
    from shardkv.acceptor.scriptcache import ScriptCache

    class Timers:
        def call_later(self, delay: float, callback: object) -> Timers:
            return self

        def cancel(self) -> None:
            pass

    acceptor, links, a, b, executed = _waiting_on_a(monkeypatch)
    monkeypatch.setattr(acceptor, "loop", Timers())
    sha = b"0" * 40
    cache = ScriptCache()
    cache.settled.add(sha)
    cache.known = {0: {sha}, 1: {sha}}
    monkeypatch.setattr(scripting, "CACHE", cache)
    commands.lookup(b"EVALSHA")
    for key in (b, a):
        for tail in ([], [b"token"]):  # one key, with or without an argument (a lock's token)
            shortcut = [b"EVALSHA", sha, b"1", key, *tail]
            client, _ = connect(acceptor)
            send(client, shortcut, [b"EVALSHA", sha, b"1", b, b"x"], [b"EVALSHA", sha, b"1", a, b"y"])
            if key == b:  # the first two took the shortcut; the third waits for them
                assert executed == []
                sent = [body for link in links for body in link.bodies()]
                settle = encode_command([wire.Verb.BSETTLE_ALONE])  # (sent to one shard alone)
                assert sorted(sent) == sorted(
                    [encode_command(shortcut), settle, encode_command(shortcut[:4] + [b"x"]), settle]
                )
            else:
                assert executed == [sha]  # the ordinary path, which holds what follows
            executed.clear()
            for link in links:
                link.sent.clear()
    client, _ = connect(acceptor)
    send(client, [b"EVALSHA", sha, b"2", b, b])  # two keys, not ``a``
    assert executed == [] and [body for link in links for body in link.bodies()]
    # A script that says no-writes (as EVALSHA_RO) has no __bsettle behind it.
    ro_sha = b"1" * 40
    cache.bodies[ro_sha] = b"#!lua flags=no-writes\nreturn 1"
    cache.settled.add(ro_sha)
    for name, known in ((b"EVALSHA", True), (b"EVALSHA_RO", True), (b"EVALSHA", False)):
        for shard in (0, 1):  # (not known: the ordinary path, EVAL of the body)
            (cache.known[shard].add if known else cache.known[shard].discard)(ro_sha)
        for link in links:
            link.sent.clear()
        client, _ = connect(acceptor)
        send(client, [name, ro_sha, b"1", b])
        sent = [body for link in links for body in link.bodies()]
        assert len(sent) == 1 and b"__bsettle" not in sent[0] and (b"#!lua" not in sent[0]) == known


_SHA = b"0" * 40


@pytest.mark.parametrize(
    ("knowing", "keys", "tail", "name"),
    [
        ("both", "abab", [], b"EVALSHA"),
        ("both", "abba", [b"token"], b"evalsha_ro"),
        ("a", "aaba", [], b"EVALSHA"),  # b's shard does not know it: b and what follows wait
        ("a", "aaab", [b"token"], b"EVALSHA"),
        ("b", "abab", [], b"EVALSHA"),  # the first does not take the shortcut
        ("both", "abab", [], b"EvalSha"),  # a spelling the shortcut does not take
    ],
)
@pytest.mark.parametrize("split", [False, True])
def test_a_read_of_one_scripts_evalshas_goes_where_the_loop_sends_it(
    monkeypatch: pytest.MonkeyPatch, knowing: str, keys: str, tail: list[bytes], name: bytes, split: bool
) -> None:
    """A read of one script's EVALSHAs of one key, alike in their name,
    SHA1 and key count (the parser tells them: ``scripting.scripts_alike``
    takes them in one go), sends each shard what the loop that tests
    each command sends (``evalsha_fast`` and ``behind_shortcuts``): the
    same headers and bodies, the same commands held behind the scripts,
    calls counted, scripts waited for, CLIENT LIST's last command, and
    the replies in order.  ``split``: the parser read such a read before,
    so this one is split without hiredis (``RequestParser._feed_scripts``)
    and comes with its keys alone (``ScriptsRead``)."""
    from shardkv.acceptor import scripting
    from shardkv.acceptor.scriptcache import ScriptCache

    commands.lookup(name)
    executed: list[list[bytes]] = []
    monkeypatch.setattr(Client, "execute", lambda self, args, raw=None: executed.append(args))
    outs = []
    taken: list[int] = []
    for alike in (True, False):
        acceptor, links = build()
        a, b = keys_on_two_shards(acceptor)
        cache = ScriptCache()
        cache.settled.add(_SHA)
        shards = {"a": [acceptor.shard_of(a)], "b": [acceptor.shard_of(b)], "both": [0, 1]}[knowing]
        cache.known = {shard: {_SHA} for shard in shards}
        monkeypatch.setattr(scripting, "CACHE", cache)
        acceptor.scripts_alike = (  # type: ignore[method-assign]
            (lambda *args: taken.append(1) or scripting.scripts_alike(*args))
            if alike
            else (lambda *args: None)
        )
        client, transport = connect(acceptor)
        read = [[name, _SHA, b"1", a if k == "a" else b, *tail] for k in keys]
        if split:  # (parsed, not run)
            client.parser.feed(b"".join(encode_command([name, _SHA, b"1", key]) for key in (a, b)))
        send(client, *read)
        state = client.state
        before = (
            _sent(links),
            list(state.held),
            bool(state.scripts),  # (the shortcut counts one script a shard's run: see scripting._RunSlot)
            state.blocked_token,
            acceptor.stats.row_of([name])[0],
            client.last_args,
            executed[:],
        )
        executed.clear()
        if not state.held and not executed:
            for link in links:
                for i, (_, body, sink) in enumerate(link.sent):
                    sink.deliver(b":%d\r\n" % (len(body) * 10 + i))  # type: ignore[attr-defined]
                link.sent.clear()
        outs.append((before, replies(acceptor, transport), bool(state.scripts), state.blocked_token))
    assert taken == [1]
    assert outs[0] == outs[1]
    if knowing != "b" and name != b"EvalSha":
        assert outs[0][0][0][0] or outs[0][0][0][1]  # some took the shortcut


def test_the_commands_that_wait_for_scripts_by_themselves_are_local_rows() -> None:
    """dispatch._WAITS_BY_ITSELF names local commands of the table and
    their subcommands (a misspelt one would wait twice for a script), and
    none of them is allow-busy (those never wait)."""
    from shardkv.acceptor import dispatch
    from shardkv.protocol.command_docs import SUBCOMMANDS

    for name, subs in dispatch._WAITS_BY_ITSELF.items():
        assert commands.COMMANDS[name].route == "local", name
        assert not commands.allowed_while_busy(name, [name.encode()]), name
        for sub in subs or ():
            assert sub.decode() in SUBCOMMANDS[name], (name, sub)
            assert not commands.allowed_while_busy(name, [name.encode(), sub]), (name, sub)
