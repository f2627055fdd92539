"""Settings that tune a worker's data structures, applied when they change.

The acceptor sends every setting with ``__config`` when it attaches a worker
and after each CONFIG SET (:class:`shardkv.worker.settings.Runtime`).  These
set the module-level limits the type modules read on every call:

* the encoding thresholds, which decide OBJECT ENCODING as in Redis
  (``hash-max-listpack-*``, ``set-max-intset-entries``,
  ``zset-max-listpack-*``; their ``*-ziplist-*`` aliases are the same
  settings).  As in Redis, a new threshold applies to values as they are next
  written: a sorted set converted to a skiplist stays one;
* the eviction sampler's ``maxmemory-samples``, and the LFU counter's
  ``lfu-log-factor`` and ``lfu-decay-time`` (see shardkv.worker.access).
"""

from __future__ import annotations

from shardkv.worker import access, eviction, values, zset
from shardkv.worker.commands import keys
from shardkv.worker.keyspace import Keyspace

# setting -> the (module, attribute) pairs that hold it
TUNABLES: dict[str, list[tuple[object, str]]] = {
    "hash-max-listpack-entries": [(keys, "HASH_MAX_LISTPACK_ENTRIES")],
    "hash-max-listpack-value": [(keys, "HASH_MAX_LISTPACK_VALUE")],
    "set-max-intset-entries": [(keys, "SET_MAX_INTSET_ENTRIES"), (values, "INTSET_MAX")],
    "zset-max-listpack-entries": [(zset, "LISTPACK_MAX_ENTRIES")],
    "zset-max-listpack-value": [(zset, "LISTPACK_MAX_VALUE")],
    "maxmemory-samples": [(eviction, "SAMPLES")],
    "lfu-log-factor": [(access, "LFU_LOG_FACTOR")],
    "lfu-decay-time": [(access, "LFU_DECAY_MINUTES")],
}


def on_settings(ks: Keyspace) -> None:
    """After each ``__config``: set the limits that changed."""
    for name, places in TUNABLES.items():
        text = ks.runtime.extra.get(name)
        if text is None:
            continue
        try:
            value = int(text)
        except ValueError:
            continue
        for module, attribute in places:
            setattr(module, attribute, value)
