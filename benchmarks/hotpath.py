"""Profile the acceptor's per-command path in one process, without sockets.

A real :class:`~shardkv.acceptor.server.Acceptor`, built by
:func:`shardkv.acceptor.wiring.build` as the server builds it, and real
:class:`Client` objects run against in-memory transports; each flushed
``B`` frame is run
by a real in-process :class:`~shardkv.worker.shard.Shard`, and its ``R``
frame is fed back.  This measures the Python cost per command, split into
the acceptor's share and the shard's, which is what decides throughput
(the acceptor is a single process).  With ``--acceptors K`` the acceptor
is built as acceptor 0 of K (``set_index``), as the server builds it, so
its share includes what K > 1 adds to a command (its steps and holds).

    python benchmarks/hotpath.py [--pipeline 16] [--clients 50] [--acceptors 1] [--profile]
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import pstats
import struct
import time

from shardkv.acceptor import wiring
from shardkv.runtime import config
from shardkv.worker.shard import Shard


class MemoryTransport:
    def __init__(self) -> None:
        self.written: list[bytes] = []

    def write(self, data: bytes) -> None:
        self.written.append(data)

    def get_extra_info(self, name: str, default=None):
        return default

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def close(self) -> None:
        pass

    def get_write_buffer_size(self) -> int:
        return 0

    def is_closing(self) -> bool:
        return False


def build(nshards: int, nclients: int, nacceptors: int = 1):
    cfg = config.defaults()
    cfg["shards"] = nshards
    acceptor = wiring.build(cfg)  # wired as the server is
    if nacceptors > 1:
        acceptor.set_index(0, nacceptors)
    loop = asyncio.new_event_loop()
    acceptor.loop = loop
    pipes = []
    shards = []
    for link in acceptor.links:
        t = MemoryTransport()
        link.attached(t)  # type: ignore[arg-type]
        pipes.append(t)
        shards.append(Shard(link.index, nshards))
    clients = []
    for _ in range(nclients):
        c = acceptor.client_class(acceptor)
        c.connection_made(MemoryTransport())  # type: ignore[arg-type]
        clients.append(c)
    return acceptor, loop, pipes, shards, clients


def workload(kind: str, pipeline: int, nkeys: int, turn: int) -> bytes:
    out = []
    for j in range(pipeline):
        key = b"key:%012d" % ((turn * 7919 + j * 104729) % nkeys)
        if kind == "set":
            out.append(b"*3\r\n$3\r\nSET\r\n$16\r\n%s\r\n$3\r\nxxx\r\n" % key)
        else:
            out.append(b"*2\r\n$3\r\nGET\r\n$16\r\n%s\r\n" % key)
    return b"".join(out)


def run(kind: str, pipeline: int, nclients: int, nshards: int, turns: int, nacceptors: int = 1) -> dict:
    acceptor, loop, pipes, shards, clients = build(nshards, nclients, nacceptors)
    chunks = [workload(kind, pipeline, 100_000, t) for t in range(64)]
    acceptor_s = shard_s = 0.0
    commands = 0
    for turn in range(turns):
        t0 = time.perf_counter()
        for i, c in enumerate(clients):
            c.data_received(chunks[(turn + i) % 64])
        acceptor._flush_links()
        t1 = time.perf_counter()
        frames = []
        for pipe, shard, link in zip(pipes, shards, acceptor.links, strict=True):
            for data in pipe.written:
                payload = data[4:]
                frames.append((link, shard.run_batch(payload)))
            pipe.written.clear()
        t2 = time.perf_counter()
        for link, reply in frames:
            link.data_received(struct.pack("!i", len(reply)) + reply)
        acceptor.flush_dirty_clients()  # the turn's end (Acceptor.flush_clients_soon)
        t3 = time.perf_counter()
        acceptor_s += (t1 - t0) + (t3 - t2)
        shard_s += t2 - t1
        commands += pipeline * nclients
        for c in clients:
            c.transport.written.clear()  # type: ignore[union-attr]
    loop.close()
    return {
        "acceptor_us_per_cmd": acceptor_s / commands * 1e6,
        "shard_us_per_cmd": shard_s / commands * 1e6,
        "acceptor_max_rps": commands / acceptor_s,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--pipeline", type=int, default=16)
    p.add_argument("--clients", type=int, default=50)
    p.add_argument("--shards", type=int, default=2)
    p.add_argument("--turns", type=int, default=300)
    p.add_argument("--acceptors", type=int, default=1, help="build acceptor 0 of this many")
    p.add_argument("--profile", action="store_true")
    args = p.parse_args()
    for kind in ("set", "get"):
        if args.profile:
            prof = cProfile.Profile()
            prof.enable()
        result = run(kind, args.pipeline, args.clients, args.shards, args.turns, args.acceptors)
        if args.profile:
            prof.disable()
            pstats.Stats(prof).sort_stats("tottime").print_stats(18)
        print(
            f"{kind.upper():4} -P {args.pipeline:<3} acceptor {result['acceptor_us_per_cmd']:.2f} us/cmd "
            f"(max {result['acceptor_max_rps'] / 1000:.0f}k/s on one core), "
            f"shard {result['shard_us_per_cmd']:.2f} us/cmd"
        )


if __name__ == "__main__":
    main()
