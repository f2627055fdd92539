"""A worker process: read batches from the pipe, run them, reply.

The loop is single-threaded and FIFO: batches run in the order they
arrive, and each batch runs start to finish before the next is read.
That, with the acceptor's single global order, is what makes commands
that span shards serializable.  Between batches, and at least ``hz``
times a second when idle, the loop runs the active expiry cycle.

Parking (for operations that must be atomic across shards, see
:mod:`shardkv.crossshard`): an entry sent with ``FLAG_PARK`` is a
``__park`` command.  The worker answers it, sends the replies of the batch
so far, and then *parks*: it runs nothing from its queue (frames that
arrive are kept, in order) until a control frame for the operation comes:

* ``("run", states, commands, resp3)``, to the operation's *executor*:
  install the other shards' keys ``states``, run ``commands`` in order,
  then answer ``("done", reply bodies, new states of those keys)`` and
  forget the other shards' keys again;
* ``("apply", states)``: make these keys of ours hold these states;
* ``("release",)``: nothing changed.

Then it resumes where it stopped.
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
from shardkv.worker.transfer import drop_key, export_key, import_key

log = logging.getLogger("shardkv.worker")


class Shard:
    """One shard's keyspace and the code that runs commands against it."""

    def __init__(self, index: int, nshards: int, clock: Clock | None = None) -> None:
        self.index = index
        self.keyspace = Keyspace(clock, slot_range(index, nshards))
        self.sweeper = Sweeper(self.keyspace)
        # Set by serve(): send a frame, and block for the next frame.
        self.send = None
        self.recv = None
        self.backlog: list[bytes] = []  # frames that came while parked

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
            if header & wire.FLAG_PARK:
                append(wire.encode_part(self.park_reply(items[i + 1])))
                self.send(wire.encode_replies(bodies))  # type: ignore[misc]
                bodies = []
                append = bodies.append
                self.park()
                self.keyspace.tick()
                continue
            value = execute(items[i + 1])
            if header & wire.FLAG_PART:
                append(wire.encode_part(value))
            else:
                append(encode(value, header & wire.FLAG_RESP3))
        return wire.encode_replies(bodies)

    # -- cross-shard operations -----------------------------------------------

    def park_reply(self, args: list[bytes]) -> object:
        """``__park nexport key... watched...``: states of the keys to export,
        and the versions of the watched keys, for the acceptor."""
        ks = self.keyspace
        n = int(args[1])
        exported = args[2 : 2 + n]
        if exported == [b"*"]:
            exported = list(ks.iter_keys())
        states = {key: export_key(ks, key) for key in exported}
        versions = {}
        for key in args[2 + n :]:
            ks.lookup(key)  # a watched key that has expired counts as changed
            versions[key] = ks.watched.get(key, -1)
        return [states, versions]

    def park(self) -> None:
        """Run nothing from the queue until this operation's control frame."""
        while True:
            frame = self.recv()  # type: ignore[misc]
            if frame[0] != wire.CONTROL:
                self.backlog.append(frame)
                continue
            message = wire.decode_control(frame)
            self.keyspace.tick()
            if message[0] == "run":
                self.send(wire.encode_control(self.run_foreign(*message[1:])))  # type: ignore[misc]
            elif message[0] == "apply":
                for key, state in message[1].items():
                    import_key(self.keyspace, key, state)
            return

    def run_foreign(self, states: dict, commands_: list, resp3: int) -> tuple:
        """Run ``commands_`` with other shards' keys installed here."""
        ks = self.keyspace
        for key, state in states.items():
            drop_key(ks, key)
            if state is not None:
                import_key(ks, key, state)
        bodies = [encode(self.execute(args), resp3) for args in commands_]
        after = {}
        for key in states:
            after[key] = export_key(ks, key)
            drop_key(ks, key)
        return ("done", bodies, after)


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
    shard.send, shard.recv = send, recv
    backlog = shard.backlog
    try:
        while True:
            if backlog:
                payload = backlog.pop(0)
            else:
                wait = next_sweep - time.monotonic()
                if wait <= 0 or not poll(wait):
                    shard.sweeper.cycle(budget)
                    next_sweep = time.monotonic() + period
                    continue
                payload = recv()
            if payload[0] == wire.BATCH:
                send(shard.run_batch(payload))
            if time.monotonic() >= next_sweep:
                shard.sweeper.cycle(budget)
                next_sweep = time.monotonic() + period
    except (EOFError, OSError):
        return  # the acceptor has gone


def _exit() -> None:
    raise SystemExit(0)


_LEVELS = {
    "debug": logging.DEBUG,
    "verbose": logging.INFO,
    "notice": logging.INFO,
    "warning": logging.WARNING,
}
