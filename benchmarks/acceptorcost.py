"""The acceptor's cost per pipelined command, alone: no worker runs.

:mod:`benchmarks.hotpath`'s set-up (a real acceptor, 50 clients on
in-memory transports, ``-P 16``), but each ``B`` frame is answered with a
fabricated ``R`` frame (``+OK`` per SET, a 3-byte bulk per GET), so every
instruction counted is the acceptor's: reading, parsing, routing, the
batches, the replies and the writes to the clients.  Once built, the
process settles its garbage collector as a running acceptor does
(``gctuning.settle``: fewer young collections).

Run it under callgrind twice, with two turn counts, and divide the
difference of the totals by the difference of commands (800 per turn at
the defaults); that cancels start-up and imports::

    for t in 10 40; do
        PYTHONHASHSEED=0 PYTHONPATH=. valgrind --tool=callgrind \\
            --callgrind-out-file=/tmp/ac.$t python benchmarks/acceptorcost.py set --turns $t 2>&1 | grep refs
    done

Without valgrind it prints microseconds per command (noisy).

    python benchmarks/acceptorcost.py {set,get} [--turns 40] [--pipeline 16] [--clients 50]
        [--shards 2] [--acceptors 1]
"""

from __future__ import annotations

import argparse
import struct
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.hotpath import build, workload  # noqa: E402
from shardkv.protocol import wire  # noqa: E402
from shardkv.runtime import gctuning  # noqa: E402

BODIES = {"set": b"+OK\r\n", "get": b"$3\r\nxxx\r\n"}


def run(kind: str, pipeline: int, nclients: int, nshards: int, turns: int, nacceptors: int) -> float:
    """Seconds the acceptor spent on ``turns`` turns."""
    acceptor, loop, pipes, _shards, clients = build(nshards, nclients, nacceptors)
    chunks = [workload(kind, pipeline, 100_000, t) for t in range(64)]
    body = BODIES[kind]
    frames: dict[int, bytes] = {}  # fabricated R frames by reply count

    def replies(n: int) -> bytes:
        frame = frames.get(n)
        if frame is None:
            payload = wire.encode_replies([body] * n)
            frame = frames[n] = struct.pack("!i", len(payload)) + payload
        return frame

    gctuning.settle()  # as the acceptor's main does before it serves
    spent = 0.0
    for turn in range(turns):
        t0 = time.perf_counter()
        for i, c in enumerate(clients):
            c.data_received(chunks[(turn + i) % 64])
        acceptor._flush_links()
        for pipe, link in zip(pipes, acceptor.links, strict=True):
            pipe.written.clear()
            if link.fifo:
                link.data_received(replies(len(link.fifo)))
        acceptor.flush_dirty_clients()  # the turn's end (Acceptor.flush_clients_soon)
        spent += time.perf_counter() - t0
        for c in clients:
            written = c.transport.written  # type: ignore[union-attr]
            assert b"".join(written).count(body) == pipeline, (kind, turn)
            written.clear()
    loop.close()
    return spent


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("kind", choices=sorted(BODIES))
    p.add_argument("--turns", type=int, default=40)
    p.add_argument("--pipeline", type=int, default=16)
    p.add_argument("--clients", type=int, default=50)
    p.add_argument("--shards", type=int, default=2)
    p.add_argument("--acceptors", type=int, default=1, help="build acceptor 0 of this many")
    args = p.parse_args()
    spent = run(args.kind, args.pipeline, args.clients, args.shards, args.turns, args.acceptors)
    commands = args.turns * args.pipeline * args.clients
    print(
        f"{args.kind.upper()} -P {args.pipeline}: acceptor {spent / commands * 1e6:.2f} us/cmd over {commands}"
    )


if __name__ == "__main__":
    main()
