"""Instructions per command in a worker's ``Shard.run_batch``, in one process.

A :class:`~shardkv.worker.shard.Shard` built as a worker builds it (with
its persistence, AOF off, nothing loaded or saved) runs ``B`` payloads of
``--pipeline`` plain entries (header ``:0``, the command as the client
sent it), all on keys of its own slots: SET of a 3-byte value, GET of an
existing key, or INCR.  No pipe, no acceptor: what it counts is the
worker's cost per command in a pipelined batch, decode to reply bytes.
Run it under callgrind twice, with two batch counts, and divide the
difference of the totals by the difference of the commands: start-up and
warm-up cancel out, and the figure does not move with the machine's load::

    for n in 50 350; do
        PYTHONHASHSEED=0 valgrind --tool=callgrind --callgrind-out-file=/dev/null \\
            python benchmarks/batchcost.py set $n 2>&1 | grep Collected
    done
    # (second - first) / (300 * 16) = instructions per SET in run_batch

``python benchmarks/batchcost.py check`` prints one batch's replies of each kind.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

# numpy (shardkv.worker.hllcore) would start OpenBLAS's threads (see scriptcost.py).
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # this checkout's shardkv

from shardkv.protocol import wire  # noqa: E402
from shardkv.protocol.resp import encode_command  # noqa: E402
from shardkv.protocol.router import key_slot, slot_range  # noqa: E402
from shardkv.runtime import config  # noqa: E402
from shardkv.worker.shard import Shard  # noqa: E402

PIPELINE = 16
KEYS = 1000


def build(directory: str) -> tuple[Shard, list[bytes]]:
    """A shard 0 of 2, as a worker builds it, and keys that live on it."""
    cfg = config.defaults()
    cfg["shards"] = 2
    cfg["dir"] = directory
    shard = Shard(0, 2, config=cfg)
    own = slot_range(0, 2)
    keys: list[bytes] = []
    n = 0
    while len(keys) < KEYS:
        key = b"key:%08d" % n
        if key_slot(key) in own:
            keys.append(key)
        n += 1
    return shard, keys


def payloads(kind: str, keys: list[bytes], count: int, value: bytes = b"xxx") -> list[bytes]:
    """``count`` ``B`` payloads of ``kind``, each on the next ``PIPELINE`` keys."""
    header = wire.entry_header(0)
    out = []
    for b in range(count):
        entries = []
        for j in range(PIPELINE):
            key = keys[(b * PIPELINE + j) % len(keys)]
            cmd = {"set": [b"SET", key, value], "get": [b"GET", key], "incr": [b"INCR", key]}[kind]
            entries.append(header)
            entries.append(encode_command(cmd))
        out.append(wire.batch_payload(entries))
    return out


def main() -> None:
    kind = sys.argv[1]
    n = int(sys.argv[2]) if len(sys.argv) > 2 else 350
    with tempfile.TemporaryDirectory(prefix="batchcost-") as directory:
        shard, keys = build(directory)
        # Every key exists, holding an integer (GET hits, INCR counts).
        for frame in payloads("set", keys, KEYS // PIPELINE + 1, b"1"):
            shard.run_batch(frame)
        if kind == "check":
            for k in ("get", "incr", "set"):
                print(k, shard.run_batch(payloads(k, keys, 1)[0]))
            return
        frames = payloads(kind, keys, 64)
        run = shard.run_batch
        for i in range(n):
            run(frames[i % 64])


if __name__ == "__main__":
    main()
