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
``maxmemory``              each worker, for its share (see
                           :mod:`shardkv.worker.eviction`); the acceptor
                           only passes the setting on, and pays nothing per
                           command.
=========================  ==================================================

This module keeps the settings current where they live: it sends
``maxmemory`` and ``maxmemory-policy`` to each worker (``__config``) when
its pipe is attached and after CONFIG SET, and gives CONFIG SET's new
parser limits to the clients already connected.
"""

from __future__ import annotations

from typing import Any

from shardkv.acceptor import ATTACH_HOOKS, Acceptor
from shardkv.local import CONFIG_HOOKS
from shardkv.resp import encode_command
from shardkv.shardlink import ShardLink
from shardkv.wire import entry_header

_MEMORY_SETTINGS = ("maxmemory", "maxmemory-policy")
_PARSER_SETTINGS = ("proto-max-bulk-len", "client-query-buffer-limit")
_HEADER = entry_header(0)


class _Ignore:
    """A sink for the workers' OK to ``__config``."""

    def deliver(self, body: bytes) -> None:
        pass


_IGNORE = _Ignore()


def send_memory_settings(server: Acceptor, links: list[ShardLink]) -> None:
    """Tell workers the whole server's ``maxmemory`` and the policy; each
    takes its own share."""
    config = server.config
    body = encode_command(
        [
            b"__config",
            b"maxmemory",
            b"%d" % config["maxmemory"],
            b"maxmemory-policy",
            config["maxmemory-policy"].encode(),
        ]
    )
    for link in links:
        link.send(_HEADER, body, _IGNORE)


def _on_attach(server: Acceptor, link: ShardLink) -> None:
    send_memory_settings(server, [link])


def _on_config(server: Acceptor, changes: dict[str, Any]) -> None:
    if any(name in changes for name in _MEMORY_SETTINGS):
        send_memory_settings(server, server.links)
    if any(name in changes for name in _PARSER_SETTINGS):
        config = server.config
        for client in server.clients.values():
            client.parser.max_bulk_len = config["proto-max-bulk-len"]
            client.parser.max_query_buffer = config["client-query-buffer-limit"]


ATTACH_HOOKS.append(_on_attach)
CONFIG_HOOKS.append(_on_config)
