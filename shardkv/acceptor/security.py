"""Authentication and exposure: ``requirepass``, AUTH and protected mode.

The default user's password is ``requirepass`` (AUTH, and the ACL users,
are :mod:`shardkv.acceptor.users`'); ``rename-command`` is not supported.
As in Redis, a password is compared by its SHA-256 digest in constant
time, so the comparison leaks neither the password nor its length.

Before a client authenticates, every command except AUTH, HELLO (with its
AUTH option) and QUIT gets ``-NOAUTH`` (:meth:`Dispatch.execute` checks the
table's ``no_auth`` flag), and the parser applies Redis's smaller limits
for unauthenticated clients (10 arguments, 16 KB per argument).

Protected mode: with no password and ``protected-mode yes`` (the default),
a client from anywhere but the loopback interface gets Redis's ``-DENIED``
message and is disconnected at once.  The default ``bind`` is 127.0.0.1,
so such clients cannot even connect unless ``bind`` says otherwise.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
from typing import TYPE_CHECKING, Any

from shardkv.acceptor import users
from shardkv.acceptor.client import Client
from shardkv.protocol import errors

if TYPE_CHECKING:
    from shardkv.acceptor.server import Acceptor


def _digest(secret: bytes) -> bytes:
    return hashlib.sha256(secret).digest()


def password_matches(given: bytes, required: bytes) -> bool:
    """Whether ``given`` is ``required``, in time that depends on neither."""
    return hmac.compare_digest(_digest(given), _digest(required))


# -- protected mode ------------------------------------------------------------


def is_loopback(peer: object) -> bool:
    """Whether a peer address (``peername``) is on the loopback interface.

    As Redis's ``connIsLocal``: 127.0.0.0/8 and ::1 are local, and so is a
    Unix socket (whose peer name is not a tuple).
    """
    if not isinstance(peer, tuple):
        return True
    try:
        return ipaddress.ip_address(str(peer[0]).split("%")[0]).is_loopback
    except ValueError:
        return False


def protected_mode_refuses(config: dict[str, Any], peer: object) -> bool:
    """Whether protected mode turns away a client connecting from ``peer``."""
    return bool(config["protected-mode"]) and not config["requirepass"] and not is_loopback(peer)


def on_connect(client: Client) -> None:
    server = client.server
    transport = client.transport
    if transport is None or not server.config["protected-mode"]:
        return
    if protected_mode_refuses(server.config, transport.get_extra_info("peername")):
        server.rejected_connections += 1
        client.reply_error(errors.PROTECTED_MODE)
        client.close_after_replies()
        client.flush()


def on_config(server: Acceptor, changes: dict[str, Any]) -> None:
    # requirepass is the default user's password; with the password
    # removed, nobody needs to authenticate any more.  With several
    # acceptors it changes the default user in the one order of ACL
    # SETUSER and DELUSER (the asker sends it round the bus; the others
    # ignore the ``config`` line's requirepass, which the bus brings them).
    if "requirepass" in changes:
        if server.bus is None:
            users.requirepass_changed(server, changes["requirepass"])
        elif server.config_client is not None:
            users.requirepass_in_one_order(server.config_client, changes["requirepass"])
