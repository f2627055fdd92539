"""Operations that must be atomic across shards, without locks.

RENAME to a key on another shard, SMOVE, SUNIONSTORE, MSETNX, a MULTI/EXEC
transaction: each needs to read keys on some shards and write keys on
others, with no other client's command in between.  A plain fan-out is not
enough, because what one shard writes depends on what another holds.

The acceptor's global order makes it possible:

1. In one step, it queues a ``__park`` entry on every shard involved.
   Each shard, when it reaches that entry, answers with the current state
   of the keys it owns that the operation touches (and the versions of
   the client's watched keys), then *parks*: it runs nothing more until
   the operation is over.
2. When every shard has parked, the acceptor sends the gathered states to
   the *executor* (the shard of the first key), which installs them, runs
   the commands with the ordinary command code, and returns the replies
   and the new states of the other shards' keys.
3. The acceptor sends each other shard its keys' new states; each shard
   applies them and resumes.

Every shard involved sits at the same place in the global order while the
operation runs, so no client can see half of it.  There is no deadlock:
parks are queued in global order on every shard, so the oldest pending
operation always finds all of its shards parked for it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from shardkv import wire
from shardkv.acceptor import CROSS_SHARD
from shardkv.client import Slot
from shardkv.resp import NULL_ARRAY, encode, encode_command, encode_error

if TYPE_CHECKING:
    from shardkv.client import Client
    from shardkv.commands import Command

PARK_HEADER = wire.entry_header(wire.FLAG_PARK)


class _Parked:
    """The sink for one shard's answer to ``__park``."""

    __slots__ = ("op", "shard")

    def __init__(self, op: AtomicOp, shard: int) -> None:
        self.op = op
        self.shard = shard

    def deliver(self, body: bytes) -> None:
        self.op.parked(self.shard, body)


class AtomicOp:
    """One atomic operation over several shards; see the module docstring.

    ``finish`` turns the executor's reply bodies into the client's reply
    bytes.  ``watched`` maps each watched key to the version the client saw.
    """

    def __init__(
        self,
        client: Client,
        commands: list[list[bytes]],
        keys: list[bytes],
        finish: Callable[[list[bytes]], bytes],
        watched: dict[bytes, int] | None = None,
        everything: bool = False,
    ) -> None:
        server = client.server
        self.client = client
        self.links = server.links
        self.commands = commands
        self.finish = finish
        self.watched = watched or {}
        self.slot = Slot(client)
        client.pending.append(self.slot)
        shard_of = server.shard_of
        self.executor = shard_of(keys[0]) if keys else 0
        exports: dict[int, list[bytes]] = {}
        for key in dict.fromkeys(keys):
            exports.setdefault(shard_of(key), []).append(key)
        watched_by: dict[int, list[bytes]] = {}
        for key in self.watched:
            watched_by.setdefault(shard_of(key), []).append(key)
        shards = set(exports) | set(watched_by) | {self.executor}
        if everything:
            shards = set(range(len(self.links)))
        self.shards = sorted(shards)
        self.waiting = len(self.shards)
        self.states: dict[bytes, object] = {}
        self.owner: dict[bytes, int] = {}
        self.error: bytes | None = None
        self.aborted = False
        self.up: list[int] = []  # shards that parked and must be released
        self.reply: bytes | None = None  # the client's reply, once the executor is done
        self.unapplied = 0  # shards that have not yet acknowledged their part
        for shard in self.shards:
            export = [] if shard == self.executor else exports.get(shard, [])
            if everything and shard != self.executor:
                export = [b"*", *export]  # with the keys that do not exist yet
            args = [b"__park", b"%d" % len(export), *export, *watched_by.get(shard, [])]
            self.links[shard].send(PARK_HEADER, encode_command(args), _Parked(self, shard))

    def parked(self, shard: int, body: bytes) -> None:
        if body[:1] == b"-":
            self.error = body
        else:
            self.up.append(shard)
            states, versions = wire.decode_part(body)  # type: ignore[misc]
            for key, state in states.items():
                self.states[key] = state
                self.owner[key] = shard
            for key, version in versions.items():
                if self.watched.get(key) != version:
                    self.aborted = True
        self.waiting -= 1
        if not self.waiting:
            self._all_parked()

    def _all_parked(self) -> None:
        if self.error is not None or self.aborted or self.executor not in self.up:
            for shard in self.up:
                self.links[shard].send_frame(wire.encode_control(("release",)))
            if self.error is not None:
                self.slot.deliver(self.error)
            elif self.aborted:
                self.slot.deliver(encode(NULL_ARRAY, self.client.resp3))
            else:
                self.slot.deliver(encode_error("ERR shard unavailable"))
            return
        link = self.links[self.executor]
        link.control_waiters.append(self)
        link.send_frame(wire.encode_control(("run", self.states, self.commands, int(self.client.resp3))))

    def control(self, message: tuple) -> None:
        """The executor's ``("done", bodies, states)``, then each other
        shard's ``("applied",)``.

        The client's reply waits for every shard to have applied (and, with
        ``appendfsync always``, logged) its part, so an acknowledged
        operation survives the crash of any shard it touched.
        """
        if message[0] == "applied":
            self.unapplied -= 1
            if not self.unapplied:
                self.slot.deliver(self.reply)
            return
        _, bodies, after = message
        applies: dict[int, dict] = {shard: {} for shard in self.up if shard != self.executor}
        for key, state in after.items():
            applies[self.owner[key]][key] = state
        self.reply = self.finish(bodies)
        self.unapplied = len(applies)
        for shard, states in applies.items():
            link = self.links[shard]
            link.control_waiters.append(self)
            link.send_frame(wire.encode_control(("apply", states)))
        if not self.unapplied:
            self.slot.deliver(self.reply)

    def control_failed(self) -> None:
        """A shard died mid-operation: release the others, reply with an error."""
        if self.reply is not None:  # the executor was done; an applying shard died
            self.unapplied = -1  # ignore the other shards' acknowledgements
            self.slot.deliver(encode_error("ERR shard unavailable"))
            return
        for shard in self.up:
            if shard != self.executor:
                self.links[shard].send_frame(wire.encode_control(("release",)))
        self.slot.deliver(encode_error("ERR shard unavailable"))


def _first_body(bodies: list[bytes]) -> bytes:
    return bodies[0]


def run_cross_shard(
    client: Client, cmd: Command, args: list[bytes], keys: list[bytes], everything: bool = False
) -> None:
    """A single command whose keys live on several shards (or that may read
    any key, with ``everything``)."""
    AtomicOp(client, [args], keys, _first_body, everything=everything)


CROSS_SHARD.append(run_cross_shard)
