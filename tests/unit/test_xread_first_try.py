"""A cross-shard XREAD BLOCK's first try and its ``__bwait``s, sent in one
step (see ``_CrossShard._attempt_parts``), answered in an order a loaded
machine gives: a shard's notification before the other shard's part of
the try.

A real acceptor (as the rig of :mod:`tests.unit.test_commit_lines`) with
its real shard links on in-memory transports; the test plays both
shards, so the order of their answers is the test's.
"""

from __future__ import annotations

import pytest

from shardkv.protocol import wire
from shardkv.protocol.resp import encode_command
from tests.unit.test_acceptor_dispatch import build_on_memory_pipes, connect, first_keys_of_shards
from tests.unit.test_commit_lines import frame

EMPTY_PART = wire.encode_part([])  # __xread's part: nothing past the IDs
NO_STREAM = wire.encode_part([b"0-0"])  # __xlastids of a stream that does not exist


@pytest.fixture
def rig():
    """An acceptor of two shards, a client, and a key on each shard."""
    acceptor, pipes = build_on_memory_pipes()
    client, out = connect(acceptor)
    yield acceptor, pipes, client, out, first_keys_of_shards()
    acceptor.loop.close()


def _sent(pipe) -> bytes:
    data = b"".join(pipe.written)
    pipe.written.clear()
    return data


def test_a_notification_that_comes_before_the_other_shards_try_serves_the_entries(rig):
    """``XREAD BLOCK 0 STREAMS a b $ $``; shard 1 answers its part of the
    first try (nothing), its ``__bwait``, then notifies it (an ``XADD b``
    right behind), all before shard 0 answers its part: the client is
    served ``b``'s entry, read up to the notification's ID.  The
    notification was noted as its bare ``:1`` while the try ran, and the
    client got ``:1`` as the XREAD's reply."""
    acceptor, pipes, client, out, (a, b) = rig
    client.data_received(encode_command([b"XREAD", b"BLOCK", b"0", b"STREAMS", a, b, b"$", b"$"]))
    acceptor._flush_links()
    assert b"__bwait" in _sent(pipes[0]) and b"__bwait" in _sent(pipes[1])
    (token,) = acceptor.links[1].blocked
    ready = b"*3\r\n:1\r\n$%d\r\n%s\r\n$3\r\n1-1\r\n" % (len(b), b)
    acceptor.links[1].data_received(
        frame(wire.encode_replies([EMPTY_PART, NO_STREAM, b""])) + frame(wire.encode_wake(token, ready))
    )
    acceptor.links[0].data_received(frame(wire.encode_replies([EMPTY_PART, NO_STREAM, b""])))
    acceptor._flush_links()
    acceptor.flush_dirty_clients()
    assert b"".join(out.written) == b""  # not served yet: its try on b is on its way
    upto = _sent(pipes[1])
    assert b"__xreadupto" in upto and b"1-1" in upto
    entries = b"*1\r\n*2\r\n$%d\r\n%s\r\n*1\r\n*2\r\n$3\r\n1-1\r\n*2\r\n$1\r\nf\r\n$1\r\nv\r\n" % (len(b), b)
    part = wire.encode_part([[b, [[b"1-1", [b"f", b"v"]]]]])
    acceptor.links[1].data_received(frame(wire.encode_replies([part])))
    acceptor._flush_links()
    acceptor.flush_dirty_clients()
    assert b"".join(out.written) == entries
