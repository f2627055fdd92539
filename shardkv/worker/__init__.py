"""The shard side: one worker process owns one shard.

Nothing in this package imports the acceptor's modules; it imports
:mod:`shardkv.protocol` (what both sides share) and :mod:`shardkv.runtime`.
Read it in the order a command goes: :mod:`~shardkv.worker.loop` (the
process and its loop), :mod:`~shardkv.worker.frames` (reading the pipe),
:mod:`~shardkv.worker.shard` (running a batch), :mod:`~shardkv.worker.handlers`
(the table it finds each handler in, which :mod:`~shardkv.worker.wiring`
binds), :mod:`~shardkv.worker.commands` (the handlers, one module per type), :mod:`~shardkv.worker.keyspace` (the keys, and the context each
handler gets), :mod:`~shardkv.worker.persistence` (the AOF and snapshots).
"""
