"""Key names that land on chosen shards (of the 4-shard test server, or
of ``shards``)."""

from shardkv.protocol.router import Router

ROUTER = Router(4)


def on_shards(*shards: int, prefix: str = "k") -> list[str]:
    """One key name on each of the given shards (of 4)."""
    out = []
    for shard in shards:
        i = 0
        while ROUTER.shard_of(f"{prefix}{i}".encode()) != shard:
            i += 1
        out.append(f"{prefix}{i}")
    return out


def key_on(shard: int, prefix: str, shards: int = 4) -> str:
    """A key name on ``shard`` of ``shards``."""
    router = ROUTER if shards == 4 else Router(shards)
    i = 0
    while router.shard_of(f"{prefix}{i}".encode()) != shard:
        i += 1
    return f"{prefix}{i}"
