"""A worker process: read batches from the pipe, run them, reply.

The loop is single-threaded and FIFO: batches run in the order they
arrive, and each batch runs start to finish before the next is read.
That, with the acceptor's single global order, is what makes commands
that span shards serializable.  Between batches, and at least ``hz``
times a second when idle, the loop runs the active expiry cycle.
"""

from __future__ import annotations

import logging
import signal
import time
from multiprocessing.connection import Connection

from shardkv import commands, wire
from shardkv.errors import CommandError
from shardkv.resp import Error, encode
from shardkv.router import slot_range

# Importing the command modules registers their handlers.
from shardkv.worker import keys, server, strings  # noqa: F401
from shardkv.worker.clock import Clock
from shardkv.worker.keyspace import Keyspace
from shardkv.worker.registry import find
from shardkv.worker.sweeper import Sweeper

log = logging.getLogger("shardkv.worker")


class Shard:
    """One shard's keyspace and the code that runs commands against it."""

    def __init__(self, index: int, nshards: int, clock: Clock | None = None) -> None:
        self.index = index
        self.keyspace = Keyspace(clock, slot_range(index, nshards))
        self.sweeper = Sweeper(self.keyspace)

    def execute(self, args: list[bytes]) -> object:
        """Run one command and return its reply value."""
        ks = self.keyspace
        handler = find(args[0])
        try:
            if handler is None:
                return Error("ERR unknown command '{}'".format(args[0].decode("latin-1")))
            value = handler(ks, args)
        except CommandError as e:
            return Error(e.message)
        except Exception:  # a bug must not take the shard down
            log.exception("shard %d: command %r failed", self.index, args[0])
            return Error("ERR internal error while running '{}'".format(args[0].decode("latin-1")))
        if ks.watched:
            cmd = commands.lookup(args[0])
            if cmd is not None and cmd.is_write:
                for key in cmd.keys(args):
                    ks.touch(key)
        return value

    def run_batch(self, payload: bytes) -> bytes:
        """Run a ``B`` payload and return the ``R`` payload of its replies."""
        items = wire.decode_batch(payload)
        self.keyspace.tick()
        bodies = []
        append = bodies.append
        execute = self.execute
        for i in range(0, len(items), 2):
            header = items[i]
            value = execute(items[i + 1])
            if header & wire.FLAG_PART:
                append(wire.encode_part(value))
            else:
                append(encode(value, header & wire.FLAG_RESP3))
        return wire.encode_replies(bodies)


def serve(conn: Connection, index: int, nshards: int, hz: int, loglevel: str = "notice") -> None:
    """The entry point of a worker process."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the supervisor decides
    signal.signal(signal.SIGTERM, lambda *_: _exit())
    logging.basicConfig(level=_LEVELS.get(loglevel, logging.INFO), format="%(message)s")
    shard = Shard(index, nshards)
    period = 1.0 / hz
    budget = period / 4
    next_sweep = time.monotonic() + period
    recv, send, poll = conn.recv_bytes, conn.send_bytes, conn.poll
    while True:
        wait = next_sweep - time.monotonic()
        if wait <= 0 or not poll(wait):
            shard.sweeper.cycle(budget)
            next_sweep = time.monotonic() + period
            continue
        try:
            payload = recv()
        except (EOFError, OSError):
            return  # the acceptor has gone
        if payload[0] == wire.BATCH:
            send(shard.run_batch(payload))
        if time.monotonic() >= next_sweep:
            shard.sweeper.cycle(budget)
            next_sweep = time.monotonic() + period


def _exit() -> None:
    raise SystemExit(0)


_LEVELS = {
    "debug": logging.DEBUG,
    "verbose": logging.INFO,
    "notice": logging.INFO,
    "warning": logging.WARNING,
}
