"""Instructions per two-shard MSET, the acceptor's side and a worker's, in one process.

``acceptor``: a real acceptor (:mod:`benchmarks.hotpath`'s set-up, 2
shards, in-memory transports) reads from one client batches of
``--pipeline`` ``MSET a v b v`` whose keys are on the two shards (a write
fan-out); each shard's ``B`` frame is answered with the ``R`` frame a
worker sends (a ``PartPrepared`` per part), the turn's ``Decide`` frames
leave, and each shard's ``Finished`` frames come back: every instruction
counted is the acceptor's, from the client's bytes to its replies.

``worker``: a :class:`~shardkv.worker.shard.Shard` runs a ``B`` frame of
``--pipeline`` ``__prepare`` parts (``MSET key v``), as the acceptor sends
them, gathers them into one park, and reads their ``Decide`` frames from
a fake pipe: every instruction counted is the worker's, from the batch to
the ``Finished`` frames.

Run it under callgrind twice, with two batch counts, and divide the
difference of the totals by the difference of operations (``--pipeline``
per batch); that cancels start-up and imports::

    for n in 100 400; do
        PYTHONHASHSEED=0 PYTHONPATH=. valgrind --tool=callgrind --callgrind-out-file=/dev/null \\
            python benchmarks/fanoutcost.py worker $n 2>&1 | grep Collected
    done
    # (second - first) / (300 * 16) = instructions per MSET part

Without valgrind it prints microseconds per operation (noisy).
"""

from __future__ import annotations

import marshal
import os
import struct
import sys
import time
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # (see scriptcost.py)
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.hotpath import build  # noqa: E402
from shardkv.acceptor.crossshard import park_header  # noqa: E402
from shardkv.protocol import wire  # noqa: E402
from shardkv.protocol.resp import OK, encode_command  # noqa: E402
from shardkv.protocol.router import key_slot, slot_owners  # noqa: E402
from shardkv.runtime import gctuning  # noqa: E402
from shardkv.worker.shard import Shard  # noqa: E402

PIPELINE = 16
KEYS = 256


def keys_on(nshards: int) -> list[list[bytes]]:
    owners = slot_owners(nshards)
    out: list[list[bytes]] = [[] for _ in range(nshards)]
    i = 0
    while min(len(k) for k in out) < KEYS:
        key = b"k:%d" % i
        out[owners[key_slot(key)]].append(key)
        i += 1
    return out


def _frame(payload: bytes) -> bytes:
    return struct.pack("!i", len(payload)) + payload


def acceptor(batches: int, pipeline: int) -> float:
    acc, loop, pipes, _shards, clients = build(2, 1)
    client = clients[0]
    a, b = keys_on(2)
    chunks = []
    for t in range(64):
        cmds = []
        for j in range(pipeline):
            i = (t * pipeline + j) % KEYS
            cmds.append(encode_command([b"MSET", a[i], b"v%d" % t, b[i], b"v%d" % t]))
        chunks.append(b"".join(cmds))
    gctuning.settle()
    spent = 0.0
    for n in range(batches):
        t0 = time.perf_counter()
        client.data_received(chunks[n % 64])
        acc._flush_links()
        spent += time.perf_counter() - t0
        # What the workers answer (made outside the count: marshal, as wire does).
        answers = []
        for pipe, link in zip(pipes, acc.links, strict=True):
            pipe.written.clear()
            ops = [sink.op.id for sink in link.fifo]
            body = wire.encode_replies([marshal.dumps(("PartPrepared", op, True, OK)) for op in ops])
            finished = b"".join(_frame(b"C" + marshal.dumps(("Finished", op, True))) for op in ops)
            answers.append((link, _frame(body), finished))
        t0 = time.perf_counter()
        for link, replies, _ in answers:
            link.data_received(replies)
        acc._flush_links()  # the turn's end: the Decide frames leave
        for pipe in pipes:
            pipe.written.clear()
        for link, _, finished in answers:
            link.data_received(finished)
        acc.flush_dirty_clients()
        spent += time.perf_counter() - t0
        written = client.transport.written  # type: ignore[union-attr]
        assert b"".join(written).count(b"+OK") == pipeline, written
        written.clear()
    loop.close()
    return spent


class _Pipe:
    """The parked shard's pipe: it reads the ``Decide`` frames, in order."""

    def __init__(self, shard: Shard) -> None:
        self.frames: list[bytes] = []
        self.sent = 0
        shard.send = self.send  # type: ignore[method-assign]
        shard.recv = self.recv  # type: ignore[method-assign]

    def send(self, payload: bytes) -> None:
        self.sent += 1

    def recv(self) -> bytes:
        return self.frames.pop(0)


def worker(batches: int, pipeline: int) -> float:
    shard = Shard(0, 1)
    pipe = _Pipe(shard)
    keys = keys_on(1)[0]
    header = park_header(0)
    op = 0
    spent = 0.0
    gctuning.settle()
    for n in range(batches):
        entries = []
        decides = []  # (made as wire does, with marshal: outside what changes)
        for j in range(pipeline):
            op += 1
            key = keys[(n * pipeline + j) % KEYS]
            entries.append(header)
            entries.append(encode_command([b"__prepare", b"%d" % op, b"MSET", key, b"v%d" % n]))
            decides.append(b"C" + marshal.dumps(("Decide", op, True, False)))
        batch = wire.batch_payload(entries)
        pipe.frames = decides
        t0 = time.perf_counter()
        shard.run_batch(batch)
        spent += time.perf_counter() - t0
        assert not pipe.frames and not shard.prepared
    return spent


def main() -> None:
    side = sys.argv[1]
    batches = int(sys.argv[2]) if len(sys.argv) > 2 else 400
    pipeline = int(sys.argv[3]) if len(sys.argv) > 3 else PIPELINE
    spent = (acceptor if side == "acceptor" else worker)(batches, pipeline)
    print(f"{side}: {spent / (batches * pipeline) * 1e6:.2f} us per MSET over {batches * pipeline}")


if __name__ == "__main__":
    main()
