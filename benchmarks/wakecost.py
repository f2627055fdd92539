"""What one pipe round trip costs a worker: CPU per batch, across CPUs or on one.

A real shard's serving loop (``shardkv.worker.loop.Pipes``) runs in
this process on one end of a pipe; a forked sender plays the acceptor: it
sends a ``B`` frame of ``--batch`` GETs, waits for the ``R`` frame, waits
``--gap-us`` more (the time until the acceptor's next batch for this shard),
and repeats.  The worker blocks in ``recv`` between batches, as it does under
``redis-benchmark -P 1``.  Printed: the worker's user and system CPU time per
batch (``getrusage``), wherever the scheduler puts the two processes, and
then with both pinned to one CPU.  The difference is the cost of waking a
process on another CPU, which the acceptor-and-workers design pays on every
batch and redis-server, one process, does not.

    python benchmarks/wakecost.py [--batches 10000] [--batch 1,15,60] [--gap-us 200]
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import resource
import socket
import struct
import sys
import time
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make `shardkv` importable from a checkout
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from shardkv.protocol import wire
from shardkv.runtime import config
from shardkv.worker.loop import Pipes
from shardkv.worker.shard import Shard


def batch_frame(size: int) -> bytes:
    """A ``B`` frame of ``size`` GETs of keys shaped like redis-benchmark's."""
    header = wire.entry_header(0)
    out = []
    for i in range(size):
        out.append(header)
        out.append(b"*2\r\n$3\r\nGET\r\n$16\r\n%s\r\n" % (b"key:%012d" % (i * 7919 % 100_000)))
    return wire.batch_frame(out)


def send_batches(sock: socket.socket, frame: bytes, batches: int, gap: float) -> None:
    """The acceptor's part: one batch, its whole reply, a gap, and again."""
    for _ in range(batches):
        sock.sendall(frame)
        (size,) = struct.unpack("!i", sock.recv(4, socket.MSG_WAITALL))
        sock.recv(size, socket.MSG_WAITALL)
        until = time.perf_counter() + gap
        while time.perf_counter() < until:
            pass


def measure(batch: int, batches: int, gap: float, cpu: int | None) -> tuple[float, float]:
    """The worker's (user, system) CPU microseconds per batch."""
    if cpu is not None:
        os.sched_setaffinity(0, {cpu})
    mine, theirs = multiprocessing.Pipe()
    pid = os.fork()
    if pid == 0:  # the sender; inherits the affinity
        mine.close()
        try:
            send_batches(socket.socket(fileno=os.dup(theirs.fileno())), batch_frame(batch), batches, gap)
        finally:
            os._exit(0)
    theirs.close()
    cfg = config.defaults()
    cfg["shards"] = 2
    shard = Shard(0, 2, config=cfg)
    ctl, supervisor = multiprocessing.Pipe()
    supervisor.close()  # so that the loop ends when the sender has gone
    before = resource.getrusage(resource.RUSAGE_SELF)
    Pipes(shard, ctl, [mine]).run()  # returns when the sender has gone
    after = resource.getrusage(resource.RUSAGE_SELF)
    ctl.close()
    os.waitpid(pid, 0)
    if cpu is not None:
        os.sched_setaffinity(0, range(os.cpu_count() or 1))
    return (
        (after.ru_utime - before.ru_utime) / batches * 1e6,
        (after.ru_stime - before.ru_stime) / batches * 1e6,
    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batches", type=int, default=10_000)
    p.add_argument("--batch", default="1,15,60", help="commands per batch, a comma list")
    p.add_argument("--gap-us", type=float, default=200.0, help="sender's pause after each reply")
    args = p.parse_args()
    print(f"{'placement':<14} {'batch':>5} {'user us':>8} {'sys us':>7} {'total us':>9}  (per batch)")
    for size in (int(n) for n in args.batch.split(",")):
        for label, cpu in (("any CPUs", None), ("one CPU", 0)):
            user, system = measure(size, args.batches, args.gap_us / 1e6, cpu)
            print(f"{label:<14} {size:>5} {user:>8.1f} {system:>7.1f} {user + system:>9.1f}")


if __name__ == "__main__":
    main()
