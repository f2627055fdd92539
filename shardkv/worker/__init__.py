"""The shard side: one worker process owns one shard.

Nothing in this package imports the acceptor's modules.  It shares only
the protocol-level modules every process needs: :mod:`shardkv.resp`,
:mod:`shardkv.errors`, :mod:`shardkv.args`, :mod:`shardkv.glob`,
:mod:`shardkv.commands`, :mod:`shardkv.router` and :mod:`shardkv.wire`.
"""
