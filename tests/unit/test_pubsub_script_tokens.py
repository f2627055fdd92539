"""A script's PUBLISH on its way round the bus (K > 1), in-process: what
an acceptor keeps by the script's token (shardkv.acceptor.pubsub)."""

from __future__ import annotations

from types import SimpleNamespace

from shardkv.acceptor import pubsub


def test_another_acceptors_script_publish_leaves_this_ones_count_alone():
    """Each acceptor numbers its scripts' PUBLISHes from -1 down, so
    another's message can carry the token of one of this acceptor's own,
    still on its way: this one's count of the script's events before its
    message (``noted``) stays for its own message.  bus_publish took it
    for the other's, and its own message then came before those events."""
    server = SimpleNamespace(index=0)
    token = pubsub.script_publishing(SimpleNamespace(client=None, data=None), 2)  # type: ignore[arg-type]
    try:
        assert pubsub.bus_publish(server, 1, [b"no-one", b"hi", token, 0]) == 0  # (acceptor 1's)
        assert pubsub._NOTED[token] == 2
    finally:
        pubsub.script_published(token)
    assert token not in pubsub._NOTED and token not in pubsub._PUBLISHING
