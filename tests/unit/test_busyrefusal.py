"""The worker's side of -BUSY for what came before a script went busy
(shardkv.worker.busyrefusal): which entries it refuses, and its rewrite
of a batch, which must leave every other entry as the acceptor wrote it."""

from __future__ import annotations

import marshal
import socket
from collections import deque

import pytest

from shardkv.acceptor import crossshard, shardlink
from shardkv.acceptor.replies import Slot
from shardkv.acceptor.shardlink import ShardLink
from shardkv.protocol import errors, wire
from shardkv.protocol.resp import encode_command, encode_error
from shardkv.runtime.cmdstats import Stats
from shardkv.worker.busyrefusal import Refusals
from tests.unit.test_acceptor_dispatch import MemoryTransport


class _Shard:
    index = 0

    def __init__(self) -> None:
        self.stats = Stats()


def _refusals() -> Refusals:
    return Refusals(_Shard(), None)  # type: ignore[arg-type]


def test_refusals_frames_round_trip():
    assert wire.decode_refusals(wire.encode_refusals(2, [0, 3, 7])) == (2, [0, 3, 7])
    assert wire.decode_refusals(wire.encode_refusals(1, [])) == (1, [])
    with pytest.raises(wire.BadMessage):
        wire.decode_refusals(b"K" + b"\x00")  # not a marshal list
    with pytest.raises(wire.BadMessage):
        wire.decode_refusals(b"K" + marshal.dumps([0, 3]))  # no epoch


def test_a_rewritten_batch_keeps_its_other_entries_byte_for_byte():
    entries = [
        (wire.entry_header(0), [b"GET", b"k"]),
        (wire.entry_header(wire.FLAG_RESP3, db=3), [b"SET", b"k", b"v"]),
        (wire.entry_header(wire.FLAG_PART), [b"MGET", b"a", b"b"]),
        (wire.entry_header(wire.FLAG_STAMP, token=9), [b"BLPOP", b"l", b"0", b"123"]),
        (wire.slotted_header(16383, True), [b"GET", b"k"]),
    ]
    payload = wire.batch_payload([item for h, args in entries for item in (h, encode_command(args))])
    assert wire.encode_batch(wire.decode_batch(payload)) == payload


@pytest.mark.parametrize(
    ("header", "args", "refused"),
    [
        (0, [b"GET", b"k"], True),
        # Slotted (wire.SLOTTED), of every flag bit's slot: plain entries.
        *((wire.SLOTTED + slot, [b"GET", b"k"], True) for slot in (0, 2, 4, 8, 16, 32, 16383)),
        (wire.SLOTTED + wire.SLOTTED_RESP3 + 6, [b"SET", b"k", b"v"], True),
        (wire.FLAG_RESP3 | (2 << wire.DB_SHIFT), [b"set", b"k", b"v"], True),
        (0, [b"EVALSHA", b"abc", b"0"], True),
        (wire.FLAG_PART, [b"MGET", b"a"], True),  # a read's part (offered for a client's read alone)
        (wire.FLAG_PART, [b"MSET", b"a", b"1"], False),  # a write's part
        (wire.FLAG_PART | wire.FLAG_MONITOR, [b"MGET", b"a"], False),
        (wire.FLAG_MONITOR, [b"EVAL", b"return 1", b"0"], False),  # its M frame is awaited
        (9 << wire.TOKEN_SHIFT, [b"BLPOP", b"l", b"0"], False),  # a blocking command
        (0, [b"__ping"], False),  # the acceptor's own verb
        (0, [b"SCRIPT", b"KILL"], False),  # allow-busy
        (0, [b"FUNCTION", b"stats"], False),  # allow-busy
        (0, [b"NOSUCH"], False),
    ],
)
def test_what_the_worker_refuses(header, args, refused):
    r = _refusals()
    assert r._refuse(header, args) is refused
    # (a read's part is counted by its acceptor, once for the command: fanout.Part.refuse_busy)
    part = header >= 0 and header & wire.FLAG_PART
    assert r.shard.stats.errors.get("BUSY", 0) == int(refused and not part)


def test_a_parks_refusal_is_counted_by_its_acceptor():
    """The park of a cross-shard script's first run, or a client's write
    fan-out's part, offered only for those (``_Answer.refusable_while_busy``):
    refused, as Redis answers the EVAL (MSET...) ``-BUSY``; its acceptor
    counts the rejected call, not the worker."""
    r = _refusals()
    assert r._refuse(wire.FLAG_PARK, [b"__park", b"1", b"0", b"k"]) is True
    assert r._refuse(wire.FLAG_PARK, [b"__parkat", b"1700000000000", b"__park", b"1", b"0", b"k"]) is True
    assert r._refuse(wire.FLAG_PARK, [b"__prepare", b"1", b"SET", b"k", b"v"]) is True
    assert r.shard.stats.errors.get("BUSY", 0) == 0


def test_a_client_write_fan_out_is_offered_until_decided():
    """The acceptor offers a client's write fan-out's parts (MSET, DEL,
    FLUSHALL across shards) while undecided, not MIGRATE's delete (its
    reply is MIGRATE's), nor a decided one."""
    op = object.__new__(crossshard.FanOutWrite)
    op.own_reply = True
    op.state = crossshard.PARKING
    assert crossshard._Answer(op, 1).refusable_while_busy
    op.state = crossshard.DECIDED
    assert not crossshard._Answer(op, 1).refusable_while_busy
    op.own_reply = False
    op.state = crossshard.PARKING
    assert not crossshard._Answer(op, 1).refusable_while_busy


def test_a_refused_function_call_counts_the_function_text():
    r = _refusals()
    r.message = errors.BUSY_FUNCTION
    assert r._refuse(0, [b"GET", b"k"])
    assert r.shard.stats.commands["get"][2] == 1  # rejected_calls


# -- a K frame that comes too late -----------------------------------------------------


class _Reader:
    """A pipe's reader with nothing more to read."""

    def poll(self, timeout: float) -> bool:
        return False


class _Pipe:
    def __init__(self, backlog: list[bytes]) -> None:
        self.backlog = backlog
        self.reader = _Reader()
        self.broken = False
        self.index = 0
        self.sent: list[bytes] = []

    def send_state(self, payload: bytes) -> None:
        self.sent.append(payload)


class _Pipes:
    def __init__(self, pipe: _Pipe) -> None:
        self.pipes = [pipe]


def _batch(*commands: list[bytes]) -> bytes:
    return wire.encode_batch([item for args in commands for item in (0, args)])


def test_a_k_frame_of_an_earlier_script_is_dropped_not_answered():
    """The worker stopped waiting for an acceptor's ``K`` frame at the end of
    script 1 and ran its entries; that frame, read while script 2 is busy,
    numbers entries that have run: it is dropped, and only script 2's is
    answered (before, the first ``K`` frame found was taken for the answer)."""
    stale = wire.encode_refusals(1, [0])
    pipe = _Pipe([stale, _batch([b"GET", b"a"]), _batch([b"GET", b"b"]), wire.encode_refusals(2, [1])])
    r = Refusals(_Shard(), _Pipes(pipe))  # type: ignore[arg-type]
    r.next_epoch()
    assert r.next_epoch() == 2
    r.due = {0: None}
    r.poll()
    assert not r.due
    assert pipe.sent == [wire.encode_refusals(2, [0])]  # the GET of b, the first (only) candidate
    assert pipe.backlog == [_batch([b"GET", b"a"]), _batch([b"__ping"])]  # the stale frame is gone


def test_the_end_waits_no_more_for_an_acceptor_that_does_not_answer():
    """SCRIPT KILL with an acceptor stopped: the script's end stops waiting
    for its ``K`` frame (before, it waited until the acceptor ran again)."""
    left, right = socket.socketpair()
    try:
        pipe = _Pipe([_batch([b"GET", b"a"])])
        pipe.reader.sock = left  # type: ignore[attr-defined]
        r = Refusals(_Shard(), _Pipes(pipe))  # type: ignore[arg-type]
        r.next_epoch()
        r.due = {0: None}
        r.finish()
        assert not r.due and pipe.sent == []  # nothing refused, nothing said
        assert pipe.backlog == [_batch([b"GET", b"a"])]  # it runs, as it came
    finally:
        left.close()
        right.close()


# -- the acceptor's side: one pass however many candidates -----------------------------


class _Counted(deque):
    """A deque that counts the elements its walks, searches and indexing
    visit (indexing a deque walks from its nearer end)."""

    def __init__(self, visits: list[int]) -> None:
        super().__init__()
        self.visits = visits

    def __iter__(self):
        for item in deque.__iter__(self):
            self.visits[0] += 1
            yield item

    def __contains__(self, wanted: object) -> bool:
        return any(item is wanted for item in self)

    def __getitem__(self, i):
        self.visits[0] += 1 + min(i % len(self), len(self) - 1 - i % len(self))
        return deque.__getitem__(self, i)

    def __setitem__(self, i, value) -> None:
        self.visits[0] += 1 + min(i % len(self), len(self) - 1 - i % len(self))
        deque.__setitem__(self, i, value)


class _Server:
    def __init__(self) -> None:
        self.dirty_clients: list = []


class _Client:
    def __init__(self, server: _Server, visits: list[int]) -> None:
        self.server = server
        self.pending = _Counted(visits)
        self.dirty = False


def _link_with_pipelines(clients: int, each: int, visits: list[int]):
    """A link whose queue holds ``clients`` clients' pipelines of ``each``
    commands, interleaved, and those clients."""
    link = ShardLink(0, lambda link: None, lambda: None)
    link.attached(MemoryTransport())  # type: ignore[arg-type]
    link.fifo = _Counted(visits)
    server = _Server()
    made = [_Client(server, visits) for _ in range(clients)]
    for _ in range(each):
        for client in made:
            slot = Slot(client)  # type: ignore[arg-type]
            client.pending.append(slot)
            link.fifo.append(slot)
    return link, made


def test_offering_and_refusing_many_candidates_walks_the_queue_once():
    """40 clients x 50 pipelined commands, all refused: the offer and the
    refusal visit each queued entry and each client's reply order a few
    times in all (before: a search of the client's replies per entry, and
    of the queue per refusal, some 10**6 visits here)."""
    visits = [0]
    link, clients = _link_with_pipelines(40, 50, visits)
    n = len(link.fifo)
    visits[0] = 0
    link._offer_refusals((1, 0), 7)  # the script is another pipe's: every entry a candidate
    (offer,) = [w[4:] for w in link.transport.written if w[4:5] == b"K"]  # type: ignore[union-attr]
    assert wire.decode_refusals(offer) == (7, list(range(n)))
    link._refused(7, list(range(n)))
    assert visits[0] <= 5 * n, visits[0]
    busy = encode_error(errors.BUSY)
    assert all(slot.data == busy for c in clients for slot in c.pending)
    assert all(sink is shardlink._DROPPED for sink in deque.__iter__(link.fifo))


def test_a_refusal_of_another_script_or_after_the_end_refuses_nothing():
    """The acceptor answers ``-BUSY`` only for the offer the worker answers:
    not for a refusal that names another script, nor once the script's end
    said the worker ran them all (its candidates are forgotten then)."""
    link, clients = _link_with_pipelines(2, 2, [0])
    link._offer_refusals((1, 0), 3)
    link._refused(2, [0, 1])  # not this offer's script
    assert all(slot.data is None for c in clients for slot in c.pending)
    link._offer_refusals((1, 0), 4)
    link.data_received(wire.FRAME.pack(len(end := wire.encode_script_state(False, 1, False, True))) + end)
    link._refused(4, [0, 1])
    assert all(slot.data is None for c in clients for slot in c.pending)
    assert not any(sink is shardlink._DROPPED for sink in link.fifo)


def test_a_busy_from_another_acceptor_waits_for_no_change_forever():
    """Another acceptor's -BUSY waits until this acceptor knows of the
    script (shardlink.when_busy_seen); if this one already saw the script
    start and end before it asked (the other had not read the end yet), no
    change comes: the answer goes after BUSY_SEEN_WITHIN all the same, once."""
    import asyncio

    answered: list[str] = []

    async def scenario() -> None:
        mark = shardlink.busy_changes()
        shardlink.when_busy_seen(mark, lambda: answered.append("-BUSY"))
        assert answered == []  # nothing busy here, nothing changed: it waits
        for _ in range(100):
            if answered:
                break
            await asyncio.sleep(0.05)
        assert answered == ["-BUSY"]  # with no change
        shardlink._busy_changed()  # a later change does not answer it again

    asyncio.run(scenario())
    assert answered == ["-BUSY"]
    assert not shardlink._BUSY_WAITERS


class _Op:
    """A cross-shard operation parked on two links (``links``), of ``client``."""

    def __init__(self, client: object, links: list[ShardLink]) -> None:
        self.client = client
        self.links = links
        self.finished: list[int] = []

    def control(self, shard: int, message: object) -> None:
        self.finished.append(shard)


class _Park:
    def __init__(self, op: _Op) -> None:
        self.op = op


def test_a_parked_shards_refusals_read_after_the_scripts_end_still_answer_busy():
    """An operation's script goes busy on shard 0: the other parked shard's
    link offers what waits behind the park (a PARKED_BEHIND ``K`` frame).
    Its worker answers while parked, on its own pipe, so the answer may
    come after the script's end, read on the executor's pipe: the refused
    commands get -BUSY all the same (they got the placeholder's +PONG when
    that end forgot the offer), until the operation's Finished there."""
    executor, _ = _link_with_pipelines(0, 0, [0])
    parked, clients = _link_with_pipelines(2, 1, [0])
    op = _Op(object(), [executor, parked])
    executor.ops[5] = parked.ops[5] = op
    executor.fifo.appendleft(_Park(op))
    parked.fifo.appendleft(_Park(op))
    executor._offer_refusals((0, wire.SCRIPT_PARKED), 3)
    (offer,) = [w[4:] for w in parked.transport.written if w[4:5] == b"K"]  # type: ignore[union-attr]
    assert wire.decode_refusals(offer) == (wire.PARKED_BEHIND_EVAL, [0, 1])
    end = wire.encode_script_state(False, 1, False, True)
    executor.data_received(wire.FRAME.pack(len(end)) + end)
    parked._refused(wire.PARKED_BEHIND_EVAL, [0, 1])
    busy = encode_error(errors.BUSY)
    assert [slot.data for c in clients for slot in c.pending] == [busy, busy]
    # Once the shard has left the park (its Finished), a late offer's answer refuses nothing.
    parked._offer_refusals((1, 0), 4)
    finished = wire.encode_control(wire.Finished(5, True))
    assert parked.parked_op is None
    parked.refusable_epoch, parked.parked_op = wire.PARKED_BEHIND_EVAL, 5
    parked.data_received(wire.FRAME.pack(len(finished)) + finished)
    assert op.finished == [parked.index] and parked.refusable == [] and parked.parked_op is None


def test_a_tail_offer_counts_back_from_the_frame():
    """Another acceptor's operation's script went busy: this acceptor
    offers a shard what it sent there, numbered back from its last entry
    (it cannot tell which ran: their replies may be on their way).  The
    worker, waiting on another pipe, has only the last two in its backlog
    (the first ran): it refuses those two, not the one that ran nor the
    internal verb, and says which (their places in the offer)."""
    link, clients = _link_with_pipelines(3, 1, [0])
    link.offer_tail(eval_mode=True)
    (offer,) = [w[4:] for w in link.transport.written if w[4:5] == b"K"]  # type: ignore[union-attr]
    assert wire.decode_refusals(offer) == (wire.BEHIND_TAIL_EVAL, [2, 1, 0])
    pipe = _Pipe([_batch([b"GET", b"b"]), _batch([b"__ping"], [b"GET", b"c"])])
    pipe.index = 1
    shard = _Shard()
    shard.keyspace = type("Keyspace", (), {"pipe": 0})()  # type: ignore[attr-defined]
    r = Refusals(shard, _Pipes(pipe))  # type: ignore[arg-type]
    # (the __ping is the acceptor's own entry: counted, never offered)
    r.offer_behind(pipe, wire.encode_refusals(wire.BEHIND_TAIL_EVAL, [3, 2, 0]))  # type: ignore[arg-type]
    assert pipe.sent == [wire.encode_refusals(wire.BEHIND_TAIL_EVAL, [1, 2])]
    assert pipe.backlog == [_batch([b"__ping"]), _batch([b"__ping"], [b"__ping"])]
    link._refused(wire.BEHIND_TAIL_EVAL, [1, 2])
    assert [slot.data for c in clients for slot in c.pending] == [None, *[encode_error(errors.BUSY)] * 2]


def test_a_tail_offer_is_sent_only_with_candidates_and_none_waiting():
    link, _ = _link_with_pipelines(0, 0, [0])
    link.offer_tail(eval_mode=False)  # nothing queued: no frame
    assert not [w for w in link.transport.written if w[4:5] == b"K"]  # type: ignore[union-attr]
    link, clients = _link_with_pipelines(1, 1, [0])
    link.offer_tail(eval_mode=False)
    link.offer_tail(eval_mode=False)  # the first waits for its answer: no second
    offers = [w[4:] for w in link.transport.written if w[4:5] == b"K"]  # type: ignore[union-attr]
    assert [wire.decode_refusals(o) for o in offers] == [(wire.BEHIND_TAIL_FUNCTION, [0])]
    link._refused(wire.BEHIND_TAIL_FUNCTION, [0])
    assert clients[0].pending[0].data == encode_error(errors.BUSY_FUNCTION)


def test_a_tail_offers_answer_after_the_shards_own_busy_report_still_answers_busy():
    """The shard of a tail offer runs a script of its own that goes busy
    just after the offer left: the worker sends its busy report, then
    reads the offer and refuses its candidates (they become ``__ping``s),
    so the acceptor reads the report (and makes its own offer) before the
    tail offer's answer.  Those candidates still get ``-BUSY``, and the
    ``__ping`` replies that come in their place are dropped (the tail
    answer was dropped, and each client got ``+PONG``, its command not
    run, though counted a rejected call)."""
    link, clients = _link_with_pipelines(2, 1, [0])
    link.offer_tail(eval_mode=True)
    report = wire.encode_script_state(True, 1, False, True, caller=(1, -1), epoch=5)
    try:
        link.data_received(wire.FRAME.pack(len(report)) + report)
        link._refused(wire.BEHIND_TAIL_EVAL, [0, 1])
        busy = encode_error(errors.BUSY)
        assert [slot.data for c in clients for slot in c.pending] == [busy, busy]
        assert all(sink is shardlink._DROPPED for sink in deque.__iter__(link.fifo))
        link._refused(5, [])  # the shard's own offer: they were refused already
        assert [slot.data for c in clients for slot in c.pending] == [busy, busy]
    finally:  # (the script's end: the module's BUSY_LINKS forget the link)
        end = wire.encode_script_state(False, 1, False, True)
        link.data_received(wire.FRAME.pack(len(end)) + end)
    assert link not in shardlink.BUSY_LINKS


def test_a_tail_offer_read_from_the_backlog_counts_back_from_its_own_place():
    """A tail offer that came while the shard waited where it kept every
    frame (a script's acceptor command waiting for its ``A`` frame, a
    popped element waiting for its verdict), found in the backlog when its
    script goes busy: its places count back from the frame, not from the
    backlog's end (the GET sent before it is refused, not the SET that
    came after it, whose client got the ``+PONG`` of the ``__ping`` in its
    place while the GET's reply was dropped)."""
    tail = wire.encode_refusals(wire.BEHIND_TAIL_EVAL, [0])
    pipe = _Pipe([_batch([b"GET", b"a"]), tail, _batch([b"SET", b"b", b"x"]), wire.encode_refusals(1, [])])
    shard = _Shard()
    shard.keyspace = type("Keyspace", (), {"pipe": 1})()  # type: ignore[attr-defined]
    r = Refusals(shard, _Pipes(pipe))  # type: ignore[arg-type]
    r.next_epoch()
    r.due = {0: None}
    r.poll()
    assert pipe.sent == [wire.encode_refusals(wire.BEHIND_TAIL_EVAL, [0]), wire.encode_refusals(1, [])]
    assert pipe.backlog == [_batch([b"__ping"]), _batch([b"SET", b"b", b"x"])]
