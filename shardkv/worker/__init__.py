"""The shard side: one worker process owns one shard.

Nothing in this package imports the acceptor's modules.  It shares only
the protocol-level modules every process needs: :mod:`shardkv.protocol.resp`,
:mod:`shardkv.protocol.errors`, :mod:`shardkv.protocol.args`, :mod:`shardkv.protocol.glob`,
:mod:`shardkv.protocol.commands`, :mod:`shardkv.protocol.router` and :mod:`shardkv.protocol.wire`.
"""
