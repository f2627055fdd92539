"""The client that runs a busy script waits for it, as in Redis.

Redis reads nothing from the client whose script runs (the script's
caller is a protected client while ``processEventsWhileBlocked`` serves
the others): what it sends meanwhile runs after the script, with its usual
replies, while every other client gets ``-BUSY`` once the script is past
busy-reply-threshold.  Its own SCRIPT KILL, too, waits and then finds
nothing to kill.

A worker's busy report (its ``S`` frame, sent to every pipe) says which
pipe the script came on and how many replies that pipe's acceptor awaits
from the worker before the script's (``Shard.replies_ahead``).  That
acceptor finds the script's sink at that place in the link's queue, and
the client it answers waits (:data:`RUNNING_SCRIPT`, never shown as
blocked) until the report that the script ended: then its commands run.
A script that a cross-shard operation runs (its shards parked) is
reported as such (``wire.SCRIPT_PARKED``): its client is the operation's,
the one operation the executor's link takes part in on the acceptor whose
pipe brought it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from shardkv.acceptor.replies import origin_of
from shardkv.protocol import wire

if TYPE_CHECKING:
    from collections import deque

    from shardkv.acceptor.client import Client

RUNNING_SCRIPT = -9  # a client's blocked_token while its script is busy


def hold(fifo: deque, ops: dict, pipe_index: int, caller: tuple[int, int]) -> Client | None:
    """The client whose script a busy report names, made to wait; None if
    it is not this acceptor's (another pipe's), unknown, or already waiting
    for something else (its commands are held then anyway).  ``fifo`` and
    ``ops``: the link's sinks awaiting replies and the cross-shard
    operations its shard takes part in."""
    pipe, ahead = caller
    if pipe != pipe_index:
        return None
    if 0 <= ahead < len(fifo):
        sink: object = fifo[ahead]
    elif ahead == wire.SCRIPT_PARKED and len(ops) == 1:
        sink = next(iter(ops.values()))  # the operation that parked the shard runs the script
    else:
        return None
    client = origin_of(sink)[0]
    if client is None or client.closed or client.state.blocked_token:
        return None
    client.state.block(RUNNING_SCRIPT, shown=False)
    return client


def release(client: Client) -> None:
    """The script ended (or its shard went away): run what its client sent meanwhile."""
    if client.state.unblock(RUNNING_SCRIPT):
        client.server.loop.call_soon(client.resume)  # type: ignore[union-attr]
