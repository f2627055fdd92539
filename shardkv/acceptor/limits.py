"""Resource limits, and where each one is enforced.

=========================  ==================================================
``maxclients``             :meth:`Acceptor.client_connected`: past it, a new
                           connection gets ``-ERR max number of clients
                           reached`` and is closed, before it sends anything.
``timeout``                :meth:`Acceptor._cron`, once a second: a client
                           idle longer is closed (not subscribers or blocked
                           clients, as in Redis).
``proto-max-bulk-len``     the parser: a longer bulk is ``-ERR Protocol
                           error: invalid bulk length`` and the connection
                           is closed.
``client-query-buffer-     the parser: a client whose unparsed input passes
limit``                    it is logged and closed without a reply.
slow readers               back-pressure, not ``client-output-buffer-limit
                           normal`` (whose Redis default is no limit): once a
                           client's socket write buffer is above the
                           transport's high-water mark the acceptor stops
                           reading from it (:meth:`Client.pause_writing`),
                           so its replies are bounded by the replies to one
                           read of commands.
``maxmemory``              each worker, for its part (see
                           :mod:`shardkv.worker.eviction`); the acceptor
                           shares maxmemory out and moves room to a shard
                           that has nothing left to evict
                           (:mod:`shardkv.acceptor.memorybudget`), and pays
                           nothing per command.
=========================  ==================================================

The workers learn ``maxmemory`` and ``maxmemory-policy`` with the other
settings (``__config``, sent by :mod:`shardkv.acceptor.commands.config` when a worker's pipe is
attached and after CONFIG SET).  This module gives CONFIG SET's new parser
limits to the clients already connected.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from shardkv.acceptor.server import Acceptor

_PARSER_SETTINGS = ("proto-max-bulk-len", "client-query-buffer-limit")


def on_config(server: Acceptor, changes: dict[str, Any]) -> None:
    if any(name in changes for name in _PARSER_SETTINGS):
        config = server.config
        for client in server.clients.values():
            client.parser.max_bulk_len = config["proto-max-bulk-len"]
            client.parser.max_query_buffer = config["client-query-buffer-limit"]
