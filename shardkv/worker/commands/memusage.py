"""MEMORY USAGE in a shard: an estimate of what one key costs.

Redis sums the allocator's sizes of the key's structures, sampling
``SAMPLES`` elements of an aggregate (5 by default, 0 for all of them) and
scaling up.  shardkv estimates the same way, with sizes of the Python
objects that hold the key (``sys.getsizeof`` of the container and of the
sampled elements), plus the keyspace's entry for the key: the same order
as Redis's figure, not the same bytes.
"""

from __future__ import annotations

import sys
from itertools import islice

from shardkv.protocol import errors
from shardkv.protocol.args import parse_usage_samples
from shardkv.protocol.command_docs import check_subcommand
from shardkv.protocol.errors import CommandError
from shardkv.worker.handlers import Handlers
from shardkv.worker.keyspace import Keyspace

DICT_ENTRY = 24  # a key's entry in the keyspace's hash table, as Redis's dictEntry
DEFAULT_SAMPLES = 5  # Redis's OBJ_COMPUTE_SIZE_DEF_SAMPLES


def _item_size(item: object) -> int:
    if type(item) is tuple or type(item) is list:
        return sys.getsizeof(item) + sum(sys.getsizeof(x) for x in item)
    return sys.getsizeof(item)


def usage(key: bytes, value: object, samples: int) -> int:
    """The estimated bytes of ``key`` holding ``value``."""
    size = DICT_ENTRY + sys.getsizeof(key) + sys.getsizeof(value)
    if type(value) is bytes or type(value) is bytearray:
        return size
    try:
        n = len(value)  # type: ignore[arg-type]
        items = iter(value)  # type: ignore[call-overload]
    except TypeError:
        return size
    if not n:
        return size
    taken = list(items) if samples == 0 else list(islice(items, samples))
    if not taken:
        return size
    if isinstance(value, dict):
        per = sum(_item_size(k) + _item_size(value[k]) for k in taken) / len(taken)
    else:
        per = sum(_item_size(x) for x in taken) / len(taken)
    return size + int(per * n)


def memory(ks: Keyspace, args: list[bytes]) -> object:
    """MEMORY USAGE key [SAMPLES count]"""
    problem = check_subcommand(args)
    if problem:
        raise CommandError(problem)
    if args[1].lower() != b"usage":
        raise CommandError(errors.UNKNOWN_SUBCOMMAND % (args[1].decode("latin-1"), "MEMORY"))
    samples = parse_usage_samples(args[3:], DEFAULT_SAMPLES)
    value = ks.peek(args[2])  # not a keyspace hit or miss, nor an access, as in Redis
    if value is None:
        return None
    return usage(args[2], value, samples)


# The commands this module runs, by name (see shardkv.worker.wiring).
HANDLERS: Handlers = {
    "memory": memory,
}
