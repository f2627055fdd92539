"""What the handlers of the acceptor's own commands share."""

from __future__ import annotations

from collections.abc import Callable

from shardkv.acceptor.client import Client
from shardkv.protocol import errors
from shardkv.protocol.errors import CommandError
from shardkv.protocol.resp import OK

Handler = Callable[[Client, list], None]


def guard(fn: Handler) -> Handler:
    """Turn a CommandError raised by a local handler into an error reply."""

    def run(client: Client, args: list) -> None:
        try:
            fn(client, args)
        except CommandError as e:
            client.reply_error(e.message)

    run.__doc__ = fn.__doc__
    run.__name__ = fn.__name__
    return run


def all_ok(parts: list) -> object:
    """The merge of a command every shard answers with OK."""
    return OK


def subcommand_error(args: list) -> CommandError:
    return CommandError(
        errors.UNKNOWN_SUBCOMMAND % (args[1].decode("latin-1"), args[0].decode("latin-1").upper())
    )
