"""shardkv: a Redis-compatible in-memory key-value server, one shard per process."""

__version__ = "0.1.0"
# The Redis version whose behaviour shardkv follows; INFO reports it as
# redis_version so that clients and tools gating on it behave.
REDIS_VERSION = "7.0.15"
