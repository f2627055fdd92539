"""LATENCY HISTOGRAM with command names, compared with redis-server
(latencySpecificCommandsFillCDF): the entries come in the order of the
names, a name given twice twice, a container command gives its
subcommands that have data (``config``: ``config|get``, ``config|set``;
Redis's own order among them is its dict's, so they are compared as a
set), a ``parent|sub`` name that one, and a name that is no command, or
has no data, nothing.  In RESP3 the reply is a map whose keys may repeat.
"""

from __future__ import annotations

from tests.support.resp import RespClient, encode_command

ASKED = ("config", "ping", "ping", "set", "nosuch", "CONFIG|GET", "client", "get|x", "config|nosuch", "echo")


def _normalized(names: list[bytes]) -> list:
    """The names, each run of one container's subcommands as a set."""
    out: list = []
    for name in names:
        parent = name.partition(b"|")[0] if b"|" in name else None
        if parent is not None and out and isinstance(out[-1], tuple) and out[-1][0] == parent:
            out[-1][1].add(name)
        elif parent is not None:
            out.append((parent, {name}))
        else:
            out.append(name)
    return out


def _scenario(port: int) -> list:
    c, c3 = RespClient(port), RespClient(port, protocol=3)
    try:
        c.command("CONFIG", "RESETSTAT")
        c.command("PING")
        c.command("SET", "lh", "v")
        c.command("CONFIG", "GET", "maxmemory")
        c.command("CONFIG", "SET", "maxmemory", "0")
        c.command("CLIENT", "ID")
        flat = c.command("LATENCY", "HISTOGRAM", *ASKED)
        names = flat[::2]  # type: ignore[index]
        raw3 = c3.call("LATENCY", "HISTOGRAM", *ASKED)
        return [_normalized(names), raw3.split(b"\r\n", 1)[0]]  # type: ignore[arg-type]
    finally:
        c.close()
        c3.close()


def test_latency_histogram_names_in_order_repeated_and_expanded(redis_and_shardkv_k12) -> None:
    real, ours, _acceptors = redis_and_shardkv_k12
    want = _scenario(real)
    assert want[0][:4] == [
        (b"config", {b"config|get", b"config|set", b"config|resetstat"}),
        b"ping",
        b"ping",
        b"set",
    ]
    assert _scenario(ours) == want


def _tracked_calls(port: int) -> dict:
    """Pipelined GETs and SETs with latency-tracking switched off and on in
    the middle: the calls each histogram counts (its total count)."""
    c = RespClient(port)
    try:
        c.command("CONFIG", "RESETSTAT")
        pipeline = [("GET", "lt")] * 20 + [("SET", "lt", "v")] * 20
        pipeline += [("CONFIG", "SET", "latency-tracking", "no")]
        pipeline += [("GET", "lt")] * 30 + [("SET", "lt", "w")] * 30
        pipeline += [("CONFIG", "SET", "latency-tracking", "yes")]
        pipeline += [("GET", "lt")] * 5
        c.sock.sendall(b"".join(encode_command(*args) for args in pipeline))
        for _ in pipeline:
            c.read_reply()
        flat = c.command("LATENCY", "HISTOGRAM", "get", "set")
        return {flat[i]: flat[i + 1][1] for i in range(0, len(flat), 2)}  # type: ignore[index]
    finally:
        c.close()


def test_latency_tracking_switched_mid_pipeline_counts_only_tracked_calls(redis_and_shardkv_k12) -> None:
    real, ours, _acceptors = redis_and_shardkv_k12
    want = _tracked_calls(real)
    assert want == {b"get": 25, b"set": 20}
    assert _tracked_calls(ours) == want
