"""shardkv: a Redis-compatible in-memory key-value server, one shard per process."""

__version__ = "0.1.0"
# The Redis version whose behaviour shardkv follows; INFO reports it as
# redis_version so that clients and tools gating on it behave.
REDIS_VERSION = "7.0.15"
# The version HELLO reports.  Clients gate client-side caching on it:
# redis-py 5.1+ (``cache_config``) and Jedis 5.2+ refuse it below 7.4.0.
# shardkv implements CLIENT TRACKING as Redis 7.0 does (and 7.4 did not
# change it), so HELLO says 7.4.0; INFO's redis_version and Lua's
# REDIS_VERSION still name the version whose features shardkv implements.
HELLO_VERSION = "7.4.0"
