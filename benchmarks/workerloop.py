"""Profile the worker's loop (``shardkv.worker.loop``) over real pipes.

A real :class:`~shardkv.worker.shard.Shard` (no persistence) is served by
the loop in this process, under cProfile, over ``--acceptors`` socket
pairs; a thread plays the acceptors in lock step (one batch of
``--pipeline`` SETs at a time, round the pipes, each batch's replies
awaited before the next is sent), so the call counts do not depend on
timing.  This is what ``benchmarks/hotpath.py`` leaves out: the frames,
the waiting, the choice of a pipe.

    python benchmarks/workerloop.py [--acceptors 1] [--batches 20000] [--pipeline 16] [--profile]
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import threading
import time
from multiprocessing import Pipe
from multiprocessing.connection import Connection

from shardkv.protocol import wire
from shardkv.protocol.resp import encode_command
from shardkv.worker import loop
from shardkv.worker.shard import Shard


def acceptors(conns: list[Connection], ctl: Connection, batches: int, pipeline: int) -> None:
    for conn in conns:
        conn.recv_bytes()  # InDoubt
    for i in range(batches):
        entries = []
        for j in range(pipeline):
            entries.append(wire.entry_header(0))
            entries.append(encode_command([b"SET", b"key:%08d" % ((i * pipeline + j) % 100_000), b"xxx"]))
        conn = conns[i % len(conns)]
        conn.send_bytes(wire.batch_payload(entries))
        conn.recv_bytes()
    for conn in conns:
        conn.close()
    ctl.close()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--acceptors", type=int, default=1)
    p.add_argument("--batches", type=int, default=20_000)
    p.add_argument("--pipeline", type=int, default=16)
    p.add_argument("--profile", action="store_true")
    args = p.parse_args()
    shard = Shard(0, 1)
    ours, theirs = zip(*(Pipe() for _ in range(args.acceptors)), strict=True)
    ctl_ours, ctl_theirs = Pipe()
    feeder = threading.Thread(
        target=acceptors, args=(list(ours), ctl_ours, args.batches, args.pipeline), daemon=True
    )
    feeder.start()
    prof = cProfile.Profile() if args.profile else None
    cpu = time.process_time()
    if prof is not None:
        prof.enable()
    loop.Pipes(shard, ctl_theirs, list(theirs)).run()
    if prof is not None:
        prof.disable()
    cpu = time.process_time() - cpu
    feeder.join()
    if prof is not None:
        pstats.Stats(prof).sort_stats("tottime").print_stats(14)
    commands = args.batches * args.pipeline
    print(
        f"{args.acceptors} acceptor pipe(s), {args.batches} batches of {args.pipeline} SETs: "
        f"{cpu / commands * 1e6:.2f} us of CPU per command (worker and feeder threads together)"
    )


if __name__ == "__main__":
    main()
