"""The commands a shard runs, one module per Redis type or group.

Each handler is called as ``handler(keyspace, args)`` (see
:mod:`shardkv.worker.handlers`), and each module lists its handlers in its
``HANDLERS`` mapping (its blocking commands in ``BLOCKING``), which
:mod:`shardkv.worker.wiring` binds; what a handler needs besides the keys is on the
keyspace (see :class:`~shardkv.worker.keyspace.Keyspace`).  These modules
never import each other: what several need is in :mod:`shardkv.worker.values`
or :mod:`shardkv.protocol.args` (``tests/test_worker_layout.py`` checks it).
"""
