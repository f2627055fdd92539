"""A shard's persistence: its AOF, snapshots, background saves and re-sharding at start."""
