"""What the acceptor remembers of the scripts that escape (``Escapes``):
the keys a call needs, by the arguments their names were built from."""

from __future__ import annotations

import random
import re

import pytest

from shardkv.acceptor.scriptcache import KEPT, REMEMBERED, Escapes, _names

WORKER = b"5f0c7d2e"


def _dispatch(queue: bytes) -> list[bytes]:
    """Dramatiq's dispatcher's arguments: its namespace (declared), then
    command, timestamp, queue, worker, timeout, ttl, maintenance, size."""
    return [b"dramatiq", b"fetch", b"1733360000000", queue, WORKER, b"60000", b"604800000", b"0", b"7999"]


def _keys(queue: bytes) -> list[bytes]:
    return [
        b"dramatiq:__heartbeats__",
        b"dramatiq:__acks__." + WORKER + b"." + queue,
        b"dramatiq:" + queue,
        b"dramatiq:" + queue + b".msgs",
    ]


def test_a_call_on_one_queue_is_not_sent_to_the_keys_of_another():
    escapes = Escapes()
    escapes.learn(_dispatch(b"default"), 0, _keys(b"default"))
    escapes.learn(_dispatch(b"default.DQ"), 0, _keys(b"default.DQ"))
    assert escapes.needs(_dispatch(b"default")) == (0, _keys(b"default"))
    assert escapes.needs(_dispatch(b"default.DQ")) == (0, _keys(b"default.DQ"))
    # Other timestamps, commands, counts: the same keys.
    other = _dispatch(b"default")
    other[1:3] = [b"ack", b"1733360009999"]
    assert escapes.needs(other) == (0, _keys(b"default"))


def test_keys_no_argument_names_go_with_every_call_and_new_values_start_from_them():
    escapes = Escapes()
    escapes.learn([b"ns", b"queue-a"], 1, [b"global", b"ns:queue-a"])
    assert escapes.needs([b"ns", b"queue-a"]) == (1, [b"global", b"ns:queue-a"])
    assert escapes.needs([b"ns", b"queue-b"]) == (0, [b"global"])


def test_a_key_named_by_another_argument_keys_the_values_by_it_too():
    escapes = Escapes()
    escapes.learn([b"ns", b"queue-a", b"user-1"], 0, [b"ns:queue-a"])
    escapes.learn([b"ns", b"queue-a", b"user-1"], 0, [b"ns:queue-a", b"ns:user-1"])
    assert escapes.needs([b"ns", b"queue-a", b"user-1"]) == (0, [b"ns:queue-a", b"ns:user-1"])
    assert escapes.needs([b"ns", b"queue-a", b"user-2"]) == (0, [])


def test_values_past_the_bound_forget_the_oldest():
    escapes = Escapes()
    for i in range(REMEMBERED + 1):
        escapes.learn([b"id-%d" % i], 0, [b"job:id-%d" % i])
    assert escapes.needs([b"id-0"]) == (0, [])
    assert escapes.needs([b"id-%d" % REMEMBERED]) == (0, [b"job:id-%d" % REMEMBERED])
    assert len(escapes.by_values) == REMEMBERED


def test_a_value_names_a_key_only_as_a_whole_part_of_its_name():
    escapes = Escapes()
    # "ack" (the command) is inside "__acks__", not a part of it.
    escapes.learn([b"jobs", b"ack", b"queue-a"], 0, [b"jobs:__acks__.queue-a"])
    assert escapes.named == (0, 2)
    assert escapes.needs([b"jobs", b"fetch", b"queue-a"]) == (0, [b"jobs:__acks__.queue-a"])


@pytest.mark.parametrize(
    ("value", "name", "names"),
    [
        (b"default", b"ns:default.msgs", True),
        (b"default", b"ns:default", True),
        (b"default", b"default", True),
        (b"ack", b"ns:__acks__", False),  # a letter after it
        (b"cks", b"ns:__acks__", False),  # a letter before it
        (b"x-x", b"ax-x-x", True),  # found where it overlaps its first place
        (b"-a-", b"x-a-a-y", False),
        (b"a.b", b"ns:a.b", True),  # no pattern: "." is a dot
        (b"a.b", b"ns:axb", False),
        (b"q_1", b"ns:q_1", True),
        (b"q_1", b"ns:xq_1", False),
        (b"\xff\x00z", b"k:\xff\x00z", True),
    ],
)
def test_a_value_names_a_key_where_it_is_a_whole_part_of_its_name(value, name, names):
    escapes = Escapes()
    escapes.learn([value], 0, [name])
    assert escapes.needs([value]) == (0, [name])
    assert escapes.needs([b"other"]) == (0, [] if names else [name])


def test_a_part_of_a_name_is_what_the_pattern_of_its_bytes_finds():
    """The pattern it was (no letter or digit before or after), tried on
    short names of letters, digits and breaks, overlapping places too."""
    rnd = random.Random(7)
    for _ in range(20000):
        alphabet = rnd.choice([b"a-", b"ab:", b"a1.", b"aB_-", b"-"])
        name = bytes(rnd.choice(alphabet) for _ in range(rnd.randint(0, 12)))
        value = bytes(rnd.choice(alphabet) for _ in range(rnd.randint(1, 5)))
        pattern = re.compile(rb"(?<![0-9A-Za-z])" + re.escape(value) + rb"(?![0-9A-Za-z])")
        if len(value) <= len(name):
            assert _names(value, name) == (pattern.search(name) is not None), (value, name)


def test_a_payload_argument_is_not_compiled_kept_or_hashed(monkeypatch):
    """A 1 MB argument (longer than any key's name) names no key: it is
    never made a pattern, nor kept, nor hashed to look a call up."""
    compiled: list[int] = []
    compile_ = re.compile
    monkeypatch.setattr(
        re, "compile", lambda pattern, *a: compiled.append(len(pattern)) or compile_(pattern, *a)
    )
    hashed = []

    class Payload(bytes):
        def __hash__(self) -> int:
            hashed.append(len(self))
            return bytes.__hash__(self)

    payload = Payload(b"v" * (1 << 20))
    escapes = Escapes()
    escapes.learn([b"a", b"q-1", payload], 0, [b"q-1"])
    escapes.learn([b"a", payload, b"x"], 0, [b"shared"])  # the payload at the named place
    assert not any(n > 1000 for n in compiled)
    assert all(len(v) <= KEPT for values in escapes.by_values for v in values if v is not None)
    assert escapes.needs([b"a", b"q-1", b"x"]) == (0, [b"shared", b"q-1"])
    hashed.clear()
    assert escapes.needs([b"a", payload, b"x"]) == (0, [b"shared"])
    assert escapes.needs([b"a", b"q-1", payload]) == (0, [b"shared", b"q-1"])
    assert hashed == []


class _Bus:
    def __init__(self) -> None:
        self.told: list = []

    def tell(self, kind, args) -> None:
        self.told.append(args)


class _Delivered:
    def __init__(self) -> None:
        self.bodies: list[bytes] = []

    def deliver(self, body: bytes) -> None:
        self.bodies.append(body)


@pytest.mark.parametrize("across", [False, True])
def test_a_refusal_forgets_the_script_as_cached_when_its_call_was_sent(monkeypatch, across):
    """A shard refused (Lua out of memory) an EVAL sent while the script
    was cached at number n; a SCRIPT FLUSH (n+1) and a SCRIPT LOAD of it
    (at n+1) came before the refusal: it stays, here and in the other
    acceptors (the ``forget`` told them carries n).  A refusal of a call
    sent at n+1 forgets it."""
    from types import SimpleNamespace

    from shardkv.acceptor import scripting
    from shardkv.acceptor.scriptcache import ScriptCache

    cache = ScriptCache()
    monkeypatch.setattr(scripting, "CACHE", cache)
    sha, body = b"a" * 40, b"return 1"
    server = SimpleNamespace(bus=_Bus())
    client = SimpleNamespace(server=server)

    def call() -> object:
        slot = _Delivered()
        if across:  # a run across shards (_Retry): its own number, as sent
            return scripting._Retry(client, slot, sha, body, False, [], [], user_arg=b"")  # type: ignore[arg-type]
        return scripting._ShardReply(client, slot, 0, sha, body, False, [], [], b"", 0, "eval", b"")  # type: ignore[arg-type]

    cache.add(sha, body, 3)
    sent = call()
    cache.flush(4)
    assert cache.add(sha, body, 4)
    sent.deliver(scripting.REFUSED)  # type: ignore[attr-defined]
    assert cache.bodies[sha] == body and cache.numbers[sha] == 4
    assert server.bus.told == []
    other = ScriptCache()  # another acceptor, as the forget told would reach it
    other.add(sha, body, 4)
    call().deliver(scripting.REFUSED)  # type: ignore[attr-defined]
    assert sha not in cache.bodies
    assert server.bus.told == [[b"forget", sha, b"4"]]
    assert other.forget(sha, int(server.bus.told[0][2]))
