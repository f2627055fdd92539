"""A shard's persistence: its AOF, snapshots, background saves and
re-sharding at start (see :mod:`~shardkv.worker.persistence.engine` for its
parts)."""
