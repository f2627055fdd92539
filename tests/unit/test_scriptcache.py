"""What the acceptor remembers of the scripts that escape (``Escapes``):
the keys a call needs, by the arguments their names were built from."""

from __future__ import annotations

from shardkv.acceptor.scriptcache import REMEMBERED, Escapes

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
