"""The commands a shard runs, one module per Redis type or group."""
