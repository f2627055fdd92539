"""The replication commands, answered as a Redis master with no replicas
(shardkv has no replication): ROLE, REPLICAOF, SLAVEOF, FAILOVER, and the
ones a replica sends its master (PSYNC, SYNC, REPLCONF).

REPLICAOF NO ONE succeeds, as on a master; REPLICAOF host port checks the
port as Redis does, then answers that shardkv does not replicate, where
Redis would start replicating.  PSYNC, SYNC and REPLCONF get that answer
too (REPLCONF after Redis's checks of its options).  FAILOVER answers as a
master without replicas, after Redis's checks of its arguments.
"""

from __future__ import annotations

from shardkv.acceptor.client import Client
from shardkv.acceptor.commands.common import guard
from shardkv.protocol import errors
from shardkv.protocol.args import parse_int
from shardkv.protocol.errors import CommandError
from shardkv.protocol.resp import OK

# INFO replication's master_repl_offset: no replica, no backlog, always 0.
REPL_OFFSET = 0


def role(client: Client, args: list) -> None:
    """ROLE"""
    client.reply([b"master", REPL_OFFSET, []])


@guard
def replicaof(client: Client, args: list) -> None:
    """REPLICAOF host port | NO ONE  (and SLAVEOF, its old name)"""
    if args[1].lower() == b"no" and args[2].lower() == b"one":
        client.reply(OK)  # a master already
        return
    port = parse_int(args[2], errors.INVALID_MASTER_PORT)
    if not 0 <= port <= 65535:
        raise CommandError(errors.INVALID_MASTER_PORT)
    raise CommandError(errors.NO_REPLICATION % (args[0].decode("latin-1").upper() + " host port"))


@guard
def failover(client: Client, args: list) -> None:
    """FAILOVER [TO host port [FORCE]] [ABORT] [TIMEOUT milliseconds]"""
    if len(args) == 2 and args[1].lower() == b"abort":
        raise CommandError(errors.FAILOVER_NOT_RUNNING)
    # Redis's parse (failoverCommand), whose errors come first.
    timeout = 0
    host = force = False
    j = 1
    while j < len(args):
        word = args[j].lower()
        if word == b"timeout" and j + 1 < len(args) and not timeout:
            timeout = parse_int(args[j + 1])
            if timeout <= 0:
                raise CommandError(errors.FAILOVER_TIMEOUT)
            j += 1
        elif word == b"to" and j + 2 < len(args) and not host:
            parse_int(args[j + 2])
            host = True
            j += 2
        elif word == b"force" and not force:
            force = True
        else:
            raise CommandError(errors.SYNTAX)
        j += 1
    raise CommandError(errors.FAILOVER_NO_REPLICAS)


@guard
def psync(client: Client, args: list) -> None:
    """PSYNC replicationid offset  (and SYNC)"""
    raise CommandError(errors.NO_REPLICATION % args[0].decode("latin-1").upper())


# The options a replica sends (replconfCommand), each with a value.
_REPLCONF_OPTIONS = frozenset((b"listening-port", b"ip-address", b"capa", b"ack", b"getack", b"rdb-only"))


@guard
def replconf(client: Client, args: list) -> None:
    """REPLCONF [option value ...]"""
    if len(args) % 2 == 0:
        raise CommandError(errors.SYNTAX)
    for option in args[1::2]:
        if option.lower() not in _REPLCONF_OPTIONS:
            raise CommandError(errors.REPLCONF_OPTION % option.decode("latin-1"))
    raise CommandError(errors.NO_REPLICATION % "REPLCONF")
