"""The generic commands the acceptor answers: SCAN (which asks the shards
in turn, slot by slot) and WAIT (there are no replicas: it waits for its
timeout, see :func:`shardkv.acceptor.blocking.wait_for_replicas`)."""

from __future__ import annotations

from shardkv.acceptor.blocking import serve_after_scripts, wait_for_replicas
from shardkv.acceptor.client import Client
from shardkv.acceptor.commands.common import guard
from shardkv.acceptor.replies import Slot
from shardkv.protocol import errors
from shardkv.protocol.args import parse_cursor, parse_int, parse_scan_options
from shardkv.protocol.errors import CommandError
from shardkv.protocol.resp import encode, encode_command
from shardkv.protocol.router import SLOTS
from shardkv.protocol.wire import Verb, decode_part


def wait(client: Client, args: list) -> None:
    """WAIT numreplicas timeout

    There are no replicas: 0 at once when asked for none, or inside
    MULTI/EXEC (Redis never blocks there); else the client blocks until the
    timeout (in milliseconds; 0 is for ever) or CLIENT UNBLOCK, and gets 0,
    as from a Redis with no replica.  Scripts may not call it (``noscript``).
    It first waits for the shards' scripts (Redis reads it when they end, or
    answers it ``-BUSY`` at busy-reply-threshold: see
    :func:`~shardkv.acceptor.blocking.serve_after_scripts`).
    """
    serve_after_scripts(client, _wait, args)


@guard
def _wait(client: Client, args: list) -> None:
    numreplicas = parse_int(args[1])
    timeout = parse_int(args[2], errors.TIMEOUT_NOT_INTEGER)
    if timeout < 0:
        raise CommandError(errors.TIMEOUT_NEGATIVE)
    if numreplicas <= 0 or client.state.in_exec:
        client.reply(0)
        return
    wait_for_replicas(client, timeout)


@guard
def scan(client: Client, args: list) -> None:
    """SCAN cursor [MATCH pattern] [COUNT count] [TYPE type]

    The cursor is a slot number.  One call visits whole slots, shard after
    shard, until it has visited ``count`` keys or the last slot (see
    :class:`_ScanChain`), so a small keyspace comes back in one call, as
    from Redis.  Every slot is visited once per full scan, so a key present
    for the whole scan is returned exactly once.
    """
    cursor = parse_cursor(args[1])
    count, pattern, kind = parse_scan_options(args, 2, with_type=True)
    # Redis masks a cursor with its table's size, so that any cursor goes on
    # scanning (9223372036854775808 as 0, 2**64 - 1 as the last bucket):
    # the slots are the table here.
    cursor &= SLOTS - 1
    _ScanChain(client, cursor, count, b"*" if pattern is None else pattern, kind or b"")


class _ScanChain:
    """One SCAN call: asks the shard that owns the cursor's slot, then the
    next shards in turn, until ``count`` keys were visited."""

    def __init__(self, client: Client, cursor: int, count: int, pattern: bytes, kind: bytes) -> None:
        self.client = client
        self.slot = Slot(client)
        client.pending.append(self.slot)
        self.left = count
        self.pattern = pattern
        self.kind = kind
        self.keys: list = []
        self.cursor = cursor
        self.ask()

    def ask(self) -> None:
        server = self.client.server
        shard = server.router.owners[self.cursor]
        body = encode_command([Verb.SCAN, b"%d" % self.cursor, b"%d" % self.left, self.pattern, self.kind])
        server.links[shard].send(self.client.part_headers[0], body, self)  # in the client's database

    def deliver(self, body: bytes) -> None:
        client = self.client
        if body[:1] == b"-":  # the shard is down
            self.slot.deliver(body)
            return
        part = decode_part(body)
        next_slot: int
        keys: list[bytes]
        visited: int
        next_slot, keys, visited = part  # type: ignore[misc]
        self.keys.extend(keys)
        self.left -= visited
        server = client.server
        if next_slot < 0:  # that shard is done: on to the next one
            shard = server.router.owners[self.cursor]
            next_slot = (shard + 1) * SLOTS // server.nshards if shard + 1 < server.nshards else 0
        self.cursor = next_slot
        if next_slot and self.left > 0 and not client.closed:
            self.ask()
            return
        self.slot.deliver(encode([b"%d" % next_slot, self.keys], client.resp3))
