"""Authentication: ``requirepass`` and AUTH.

There is one user, ``default``, whose password is ``requirepass``; ACL
users are not supported.  Passwords are compared in constant time.
"""

from __future__ import annotations

import hmac

from shardkv import errors
from shardkv.acceptor import local
from shardkv.client import Client
from shardkv.errors import CommandError
from shardkv.resp import OK


def check_auth(client: Client, user: bytes, password: bytes) -> None:
    """Authenticate ``client`` or raise WRONGPASS."""
    required = client.server.config["requirepass"].encode()
    ok_user = hmac.compare_digest(user, b"default")
    ok_pass = hmac.compare_digest(password, required) if required else True
    if not (ok_user and ok_pass):
        raise CommandError(errors.WRONGPASS)
    client.authenticated = True
    client.parser.authenticated = True


@local("auth")
def auth(client: Client, args: list) -> None:
    """AUTH [username] password"""
    if len(args) > 3:
        client.reply_error(errors.SYNTAX)
        return
    if len(args) == 2 and not client.server.config["requirepass"]:
        client.reply_error(errors.AUTH_NOT_CONFIGURED)
        return
    user = args[1] if len(args) == 3 else b"default"
    try:
        check_auth(client, user, args[-1])
    except CommandError as e:
        client.reply_error(e.message)
        return
    client.reply(OK)
