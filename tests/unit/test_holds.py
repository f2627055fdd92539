"""Several acceptors: a command over several shards takes holds first, in
ascending shard order, each acknowledged before the next (see
shardkv.acceptor.holds).  In one process, with fake shard links."""

from __future__ import annotations

import marshal

from shardkv.acceptor.holds import HOLDING, HoldingClient
from shardkv.protocol import errors
from shardkv.protocol.resp import encode_command, encode_error
from shardkv.protocol.wire import Verb
from tests.unit.test_acceptor_dispatch import FakeLink, MemoryTransport, build, replies, send

HOLD = encode_command([Verb.HOLD])
RELEASE = encode_command([Verb.RELEASE])


class Link(FakeLink):
    def __init__(self, index: int) -> None:
        super().__init__(index)
        self.generation = 1


def build_k(nshards: int = 3, index: int = 1, k: int = 2):
    acceptor, _ = build(nshards)
    links = [Link(i) for i in range(nshards)]
    acceptor.links = links  # type: ignore[assignment]
    acceptor.set_index(index, k)
    return acceptor, links


def connect(acceptor):
    client = acceptor.client_class(acceptor)
    transport = MemoryTransport()
    client.connection_made(transport)
    return client, transport


def keys_per_shard(acceptor, n: int) -> list[bytes]:
    found: dict[int, bytes] = {}
    for i in range(1000):
        key = b"k%d" % i
        found.setdefault(acceptor.shard_of(key), key)
    return [found[s] for s in range(n)]


def test_client_ids_interleave() -> None:
    acceptor, _ = build_k(index=1, k=3)
    assert [acceptor.next_client_id() for _ in range(3)] == [2, 5, 8]
    alone, _ = build(2)
    assert alone.holds is None and [alone.next_client_id() for _ in range(2)] == [1, 2]


def test_mget_over_shards_holds_them_in_ascending_order_then_runs_and_releases() -> None:
    acceptor, links = build_k(3)
    k0, k1, k2 = keys_per_shard(acceptor, 3)
    client, transport = connect(acceptor)
    acceptor.loop = _Loop()
    assert type(client) is HoldingClient
    send(client, [b"MGET", k2, k0, k1], [b"GET", k2])
    # Only the hold of the lowest shard is out; nothing else, and the GET waits.
    assert links[0].bodies() == [HOLD] and not links[1].sent and not links[2].sent
    assert client.state.blocked_token == HOLDING
    links[0].answer(b"+OK\r\n")
    assert links[1].bodies() == [HOLD] and not links[2].sent
    links[1].answer(b"+OK\r\n")
    assert links[2].bodies() == [HOLD]
    links[2].answer(b"+OK\r\n")
    # Now the parts, each followed by the release, on every shard; then
    # the GET that waited.
    for s, link in enumerate(links):
        assert link.bodies()[1] == RELEASE
        assert link.bodies()[0] == encode_command([b"MGET", [k0, k1, k2][s]])
    assert links[2].bodies()[2:] == [encode_command([b"GET", k2])]
    assert client.state.blocked_token == 0
    links[2].sent.pop()
    for s, link in enumerate(links):
        link.answer(marshal.dumps([b"v%d" % s]))
        link.answer(b"+OK\r\n")
    assert replies(acceptor, transport) == b"*3\r\n$2\r\nv2\r\n$2\r\nv0\r\n$2\r\nv1\r\n"


class _Loop:
    def call_soon(self, fn, *args):
        fn(*args)


def test_a_single_shard_command_takes_no_hold() -> None:
    acceptor, links = build_k(3)
    k0, _, _ = keys_per_shard(acceptor, 3)
    client, transport = connect(acceptor)
    send(client, [b"SET", k0, b"v"], [b"MGET", k0, k0])
    assert links[0].bodies() == [encode_command([b"SET", k0, b"v"]), encode_command([b"MGET", k0, k0])]
    assert not links[1].sent and not links[2].sent


def test_a_shard_that_cannot_be_held_fails_its_part_as_today_and_the_others_are_released() -> None:
    acceptor, links = build_k(2)
    k0, k1 = keys_per_shard(acceptor, 2)
    client, transport = connect(acceptor)
    acceptor.loop = _Loop()
    send(client, [b"MGET", k0, k1])
    links[0].answer(b"+OK\r\n")
    links[1].answer(encode_error(errors.SHARD_UNAVAILABLE))
    # Shard 0 gets its part and the release; shard 1 nothing more.
    assert links[0].bodies()[-1] == RELEASE and len(links[0].bodies()) == 2
    assert not links[1].sent
    links[0].answer(marshal.dumps([b"v"]))
    assert replies(acceptor, transport) == b""  # until the step has run on shard 0
    links[0].answer(b"+OK\r\n")
    assert replies(acceptor, transport) == b"-" + errors.SHARD_UNAVAILABLE.encode() + b"\r\n"


def test_a_shard_restarted_while_held_gets_neither_the_part_nor_the_release() -> None:
    acceptor, links = build_k(2)
    k0, k1 = keys_per_shard(acceptor, 2)
    client, transport = connect(acceptor)
    acceptor.loop = _Loop()
    send(client, [b"MGET", k0, k1])
    links[0].answer(b"+OK\r\n")
    links[0].generation += 1  # its worker died and came back: the hold is gone
    links[1].answer(b"+OK\r\n")
    assert not links[0].sent
    assert len(links[1].bodies()) == 2 and links[1].bodies()[-1] == RELEASE


def test_requests_of_one_acceptor_run_one_at_a_time_in_order() -> None:
    acceptor, links = build_k(2)
    k0, k1 = keys_per_shard(acceptor, 2)
    a, _ = connect(acceptor)
    b, _ = connect(acceptor)
    acceptor.loop = _Loop()
    send(a, [b"MSET", k0, b"1", k1, b"1"])
    send(b, [b"DEL", k0, k1])
    assert links[0].bodies() == [HOLD]  # b's request waits behind a's
    links[0].answer(b"+OK\r\n")
    links[1].answer(b"+OK\r\n")
    # a's parts and releases are out; b's first hold follows them on shard 0.
    assert links[0].bodies()[-2:] == [RELEASE, HOLD]
    assert links[1].bodies()[-1] == RELEASE


def test_watchs_ok_waits_until_every_shard_has_recorded_the_versions() -> None:
    """Another acceptor's write right after the OK must count as a change."""
    acceptor, links = build_k(2)
    k0, k1 = keys_per_shard(acceptor, 2)
    client, transport = connect(acceptor)
    acceptor.loop = _Loop()
    send(client, [b"WATCH", k0, k1])
    assert replies(acceptor, transport) == b""
    links[0].answer(b"+OK\r\n")
    links[1].answer(b"+OK\r\n")
    assert [b[:9] for b in links[0].bodies()] == [encode_command([Verb.WATCH, k0])[:9], RELEASE[:9]]
    links[0].answer(marshal.dumps([3]))
    links[0].answer(b"+OK\r\n")
    links[1].answer(marshal.dumps([4]))
    assert replies(acceptor, transport) == b""  # shard 1's release is not answered yet
    links[1].answer(b"+OK\r\n")
    assert replies(acceptor, transport) == b"+OK\r\n"
    assert client.state.watching == {(0, k0): 3, (0, k1): 4}
