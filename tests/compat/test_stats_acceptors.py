"""INFO commandstats, errorstats, latencystats and ``total_error_replies``,
and LATENCY HISTOGRAM, count every client's commands, whichever acceptor
it is on (issue 22),
compared with redis-server: with two acceptors, two clients on each run
the same commands (answered by an acceptor, by a shard, across shards, a
script; refused, failed), then each reads INFO, and both must see
Redis's counts, not those of their own acceptor alone.
"""

from __future__ import annotations

from tests.support.acceptors import client_on
from tests.support.placement import key_on
from tests.support.resp import RespClient, parse_info

K0, K1 = key_on(0, "csa", shards=2), key_on(1, "csa", shards=2)
ACROSS = "redis.call('set', KEYS[1], 1) return redis.call('set', KEYS[2], 2)"
ONE = "return redis.call('set', KEYS[1], 2)"


def _clients(port: int, acceptors: int) -> list[RespClient]:
    """Four connections, two on each acceptor when there are two."""
    if acceptors == 1:
        return [RespClient(port) for _ in range(4)]
    return [client_on(port, i % 2, k=acceptors) for i in range(4)]


def _counts(info: dict[str, str]) -> dict[str, str]:
    """INFO's counters, without the times: each command's calls, rejected
    and failed calls, each error code's count, the latency lines' names."""
    out = {}
    for name, value in info.items():
        if name.startswith("cmdstat_"):
            fields = dict(f.split("=") for f in value.split(","))
            out[name] = ",".join(fields[f] for f in ("calls", "rejected_calls", "failed_calls"))
        elif name.startswith(("errorstat_", "latency_percentiles_usec_")):
            out[name] = value if name.startswith("errorstat_") else ""
        elif name == "total_error_replies":
            out[name] = value
    return out


def _scenario(port: int, acceptors: int) -> list[dict[str, str]]:
    clients = _clients(port, acceptors)
    try:
        clients[0].command("HSET", "csa-hash", "f", "v")
        clients[0].command("CONFIG", "RESETSTAT")
        for c in clients:
            c.command("PING")  # an acceptor's
            c.command("EVAL", ACROSS, 2, K0, K1)  # across shards
            c.command("EVAL", ONE, 1, K0)  # one shard's
            c.command("SET", K1, "v")
            for bad in (("ECHO",), ("CLIENT", "SETNAME", "a b"), ("GET", "csa-hash")):
                c.call(*bad)  # refused (arity), failed by an acceptor, by a shard
        seen = [_counts(parse_info(c.command("INFO", "everything"))) for c in clients]  # type: ignore[arg-type]
        for c in clients:
            flat = c.command("LATENCY", "HISTOGRAM", "ping", "eval", "set", "client|setname")
            seen.append({name: figures[1] for name, figures in zip(flat[::2], flat[1::2], strict=True)})  # type: ignore[index]
        return seen
    finally:
        for c in clients:
            c.close()


def test_command_and_error_stats_count_every_acceptors_clients(redis_and_shardkv_k12) -> None:
    real, ours, acceptors = redis_and_shardkv_k12
    want = _scenario(real, 1)
    assert want[0]["cmdstat_ping"] == "4,0,0"  # the scenario counts what it means to
    assert _scenario(ours, acceptors) == want


def _processed(port: int, acceptors: int) -> list[int]:
    """``total_commands_processed`` as Redis counts it (``call()``): after
    each command ran, so not INFO in its own output; not a command refused
    before it ran (arity, unknown); each of a script's calls and of an
    EXEC's commands, and EXEC; over every acceptor's clients."""
    clients = _clients(port, acceptors)
    a, b = clients[0], clients[1]
    try:
        seen = []
        for steps in (
            [(a, ("ECHO",))],
            [(b, ("ECHO",)), (a, ("NOSUCH",)), (b, ("PING",))],
            [(b, ("EVAL", "redis.call('set', KEYS[1], 1) return redis.call('get', KEYS[1])", 1, K1))],
            [
                (a, ("EVAL", ACROSS, 2, K0, K1)),
                (b, ("EVAL", "return redis.pcall('incr', KEYS[1])", 1, "csa-hash")),
            ],
            [(a, ("MULTI",)), (a, ("SET", K0, "1")), (a, ("GET", K1)), (a, ("EXEC",))],
            [(b, ("MULTI",)), (b, ("GET", K0)), (b, ("GET",)), (b, ("EXEC",))],
            [(a, ("MSET", K0, "1", K1, "2")), (b, ("INFO", "stats"))],
        ):
            a.command("CONFIG", "RESETSTAT")
            for c, args in steps:
                c.call(*args)
            for c in (a, b):
                seen.append(int(parse_info(c.command("INFO", "stats"))["total_commands_processed"]))  # type: ignore[arg-type]
        return seen
    finally:
        for c in clients:
            c.close()


def test_total_commands_processed_counts_what_ran(redis_and_shardkv_k12) -> None:
    real, ours, acceptors = redis_and_shardkv_k12
    want = _processed(real, 1)
    assert want[:2] == [1, 2]  # CONFIG RESETSTAT; then it and the first INFO
    assert _processed(ours, acceptors) == want


# Calls of every kind before the script's INFO: a shard's (a read, a
# write, a failed one), an acceptor's (PUBLISH, INFO), across shards.
SO_FAR = """
redis.call('set', KEYS[1], 'v')
redis.call('get', KEYS[1])
redis.pcall('incr', KEYS[1])
redis.call('publish', 'csa-ch', 'm')
redis.call('info', 'server')
redis.call('set', KEYS[2], 'w')
return redis.call('info', 'everything')
"""


def _info_from_script(port: int, acceptors: int) -> list[dict[str, str]]:
    """INFO called from a script, by a client on each acceptor in turn:
    without EVAL's row and its call in ``total_commands_processed`` (a
    difference left, see the README)."""
    seen = []
    for c in _clients(port, acceptors)[:2]:
        try:
            c.command("CONFIG", "RESETSTAT")
            info = parse_info(c.command("EVAL", SO_FAR, 2, K0, K1))  # type: ignore[arg-type]
        finally:
            c.close()
        counts = _counts(info)
        evals = int(counts.pop("cmdstat_eval", "0").split(",")[0])
        counts["processed"] = str(int(info["total_commands_processed"]) - evals)
        seen.append(counts)
    return seen


def test_info_from_a_script_has_its_calls_so_far(redis_and_shardkv_k12) -> None:
    """Redis's INFO called from a script counts the script's calls and
    errors before it, as any INFO counts the commands that ran."""
    real, ours, acceptors = redis_and_shardkv_k12
    want = _info_from_script(real, 1)
    assert want[0]["cmdstat_incr"] == "1,0,1" and want[0]["processed"] == "7"
    assert _info_from_script(ours, acceptors) == want
