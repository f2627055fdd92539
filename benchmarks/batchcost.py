"""Instructions per command in a worker's ``Shard.run_batch``, in one process.

A :class:`~shardkv.worker.shard.Shard` built as a worker builds it (with
its persistence, AOF off, nothing loaded or saved) runs ``B`` payloads of
``--pipeline`` plain entries (header ``:0``, the command as the client
sent it), all on keys of its own slots: SET of a 3-byte value, GET of an
existing key, or INCR.  No pipe, no acceptor: what it counts is the
worker's cost per command in a pipelined batch, decode to reply bytes.
Run it under callgrind twice, with two batch counts, and divide the
difference of the totals by the difference of the commands: start-up and
warm-up cancel out::

    for n in 50 350; do
        PYTHONHASHSEED=0 valgrind --tool=callgrind --callgrind-out-file=/dev/null \\
            python benchmarks/batchcost.py set $n 2>&1 | grep Collected
    done
    # (second - first) / (300 * 16) = instructions per SET in run_batch

Two more kinds run one-key scripts, as the acceptor's EVALSHA shortcut
sends them (``Shard.execute_script``): ``evalsha`` (EVALSHA of ``return
redis.call('get', KEYS[1])`` on existing keys, no arguments) and
``release`` (redis-py's ``Lock.release``, ``EVALSHA sha 1 key token`` on
keys that hold no lock, ``nokey:...``: a GET that misses, then ``return 0``), the
scripts of :mod:`scriptcost` loaded into the shard's engine first.

The shard's clock is a fixed sequence (:data:`STEPS`, each command 0.9 to
2.5 us apart, as on a quiet machine), so the latency histogram's fold
(``Stats.fold``, whose cost grows with the buckets a command's times
fill) does the same work in every run and the figure does not move with
the machine's load (under valgrind the real times spread as the load
does); ``--real-clock`` keeps ``perf_counter_ns``.  The process settles
its garbage collector as a worker does (``gctuning.settle``).

Each entry's header is the slotted one the acceptor's hot path sends
(``wire.slotted_header``: the key's slot comes with it); ``--unslotted``
sends database 0's plain header, whose slot the worker computes.

``python benchmarks/batchcost.py check`` prints one batch's replies of each kind.
"""

from __future__ import annotations

import itertools
import os
import random
import sys
import tempfile
from hashlib import sha1
from pathlib import Path

# numpy (shardkv.worker.hllcore) would start OpenBLAS's threads (see scriptcost.py).
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # this checkout's shardkv

from shardkv.protocol import wire  # noqa: E402
from shardkv.protocol.resp import encode_command  # noqa: E402
from shardkv.protocol.router import key_slot, slot_range  # noqa: E402
from shardkv.runtime import config, gctuning  # noqa: E402
from shardkv.worker import shard as shard_module  # noqa: E402
from shardkv.worker.shard import Shard  # noqa: E402

PIPELINE = 16
KEYS = 1000
# The fixed clock's steps in ns, taken in turn (one per clock reading).
STEPS = [random.Random(22).randrange(900, 2500) for _ in range(97)]
# The scripts of scriptcost.py's ``evalsha`` and ``release`` loads.
GET_SCRIPT = b"return redis.call('get', KEYS[1])"
RELEASE_SCRIPT = b"""local token = redis.call('get', KEYS[1])
if not token or token ~= ARGV[1] then
    return 0
end
redis.call('del', KEYS[1])
return 1"""
SHA_GET = sha1(GET_SCRIPT).hexdigest().encode()
SHA_RELEASE = sha1(RELEASE_SCRIPT).hexdigest().encode()
# Entries with the header of database 0 that carries no slot (the worker
# computes it), not the slotted one the acceptor's hot path sends.
UNSLOTTED = "--unslotted" in sys.argv


def fixed_clock():
    """A ``perf_counter_ns`` stand-in whose readings are the same in every run."""
    return itertools.accumulate(itertools.cycle(STEPS), initial=10**12).__next__


def build(directory: str) -> tuple[Shard, list[bytes]]:
    """A shard 0 of 2, as a worker builds it, and keys that live on it."""
    cfg = config.defaults()
    cfg["shards"] = 2
    cfg["dir"] = directory
    shard = Shard(0, 2, config=cfg)
    return shard, own_keys(b"key:")


def own_keys(prefix: bytes) -> list[bytes]:
    """``KEYS`` keys of shard 0 of 2, named ``prefix`` and a number."""
    own = slot_range(0, 2)
    keys: list[bytes] = []
    n = 0
    while len(keys) < KEYS:
        key = b"%s%08d" % (prefix, n)
        if key_slot(key) in own:
            keys.append(key)
        n += 1
    return keys


def payloads(kind: str, keys: list[bytes], count: int, value: bytes = b"xxx") -> list[bytes]:
    """``count`` ``B`` payloads of ``kind``, each on the next ``PIPELINE`` keys."""
    out = []
    missing = own_keys(b"nokey:") if kind == "release" else keys
    for b in range(count):
        entries = []
        for j in range(PIPELINE):
            key = keys[(b * PIPELINE + j) % len(keys)]
            lock = missing[(b * PIPELINE + j) % len(keys)]
            cmd = {
                "set": [b"SET", key, value],
                "get": [b"GET", key],
                "incr": [b"INCR", key],
                "evalsha": [b"EVALSHA", SHA_GET, b"1", key],
                "release": [b"EVALSHA", SHA_RELEASE, b"1", lock, b"tok"],
            }[kind]
            entries.append(wire.entry_header(0) if UNSLOTTED else wire.slotted_header(key_slot(key), False))
            entries.append(encode_command(cmd))
        out.append(wire.batch_payload(entries))
    return out


def main() -> None:
    argv = [a for a in sys.argv[1:] if a not in ("--real-clock", "--unslotted")]
    kind = argv[0]
    n = int(argv[1]) if len(argv) > 1 else 350
    if "--real-clock" not in sys.argv:
        shard_module.perf_counter_ns = fixed_clock()  # type: ignore[attr-defined]
    with tempfile.TemporaryDirectory(prefix="batchcost-") as directory:
        shard, keys = build(directory)
        # Every key exists, holding an integer (GET hits, INCR counts).
        for frame in payloads("set", keys, KEYS // PIPELINE + 1, b"1"):
            shard.run_batch(frame)
        engine = shard.keyspace.scripts
        assert engine is not None
        engine.load(GET_SCRIPT)
        engine.load(RELEASE_SCRIPT)
        if kind == "check":
            for k in ("get", "incr", "set", "evalsha", "release"):
                print(k, shard.run_batch(payloads(k, keys, 1)[0]))
            return
        frames = payloads(kind, keys, 64)
        gctuning.settle()  # as a worker does once loaded
        run = shard.run_batch
        for i in range(n):
            run(frames[i % 64])


if __name__ == "__main__":
    main()
