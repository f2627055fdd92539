"""Instructions per command of GET and of one-key scripts, in one process.

The set-up of :mod:`hotpath` (a real acceptor and real shards, 2 shards,
50 clients sending 16 commands each per turn, in-memory pipes), driven
with one kind of command: GET of 200 existing keys, EVALSHA of
``return redis.call('get', KEYS[1])`` on them, or of redis-py's
``Lock.release`` script on keys that hold no lock (one GET, then
``return 0``), or of a rate limiter's script that passes a Lua number
to INCRBY (``RATE``: ``rate0`` with the cost 0, which makes a 0 argument
of redis.call, ``rate1`` with 1).  ``SHARDKV_SHARDS`` sets the number of
shards (2 unless told).  Run it under callgrind twice, with two counts, and divide
the difference of the totals by the difference of the counts: start-up
and warm-up cancel out, and the figure does not move with the machine's
load (it still moves by 1-2k from one pair of runs to the next: Lua's and
Python's collectors, the commandstats folds).  The slow log is off
(``slowlog-log-slower-than -1``, for GET as for EVALSHA): under callgrind
at a high load average some commands took longer than 10 ms and paid for
an entry, more in the long run than in the short one::

    for n in 1600 6400; do
        PYTHONHASHSEED=0 valgrind --tool=callgrind --callgrind-out-file=/dev/null \\
            python benchmarks/scriptcost.py evalsha $n 2>&1 | grep Collected
    done
    # (second - first) / 4800 = instructions per EVALSHA, acceptor and worker

With ``SCRIPTCOST_REPLAY=1`` a shard answers a ``B`` payload it answered
before with the same reply, without running it (every turn after the
first sends the same payloads): the difference is then the acceptor's
alone, and the worker's is the plain figure less it.

``python benchmarks/scriptcost.py check`` prints one reply of each kind.

With ``SCRIPTCOST_MOVER=1`` another acceptor's cross-shard BLMOVE waits
(on a key no command names, told as bus ``movers`` tells it): every
script that may write then has a keyless ``__bsettle`` behind it, or
behind its run (``blocking.settle_script``).
"""

from __future__ import annotations

import os
import struct
import sys
from pathlib import Path

# numpy (shardkv.worker.hllcore) would start OpenBLAS's threads, whose
# spinning callgrind counts too, a few M instructions more or less from
# one run to the next: one thread, none of them.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # this checkout's shardkv

import hotpath  # noqa: E402

RELEASE = b"""local token = redis.call('get', KEYS[1])
if not token or token ~= ARGV[1] then
    return 0
end
redis.call('del', KEYS[1])
return 1"""
# A rate limiter's check: INCRBY by the cost (0 peeks), then PEXPIRE the window.
RATE = b"""local n = redis.call('INCRBY', KEYS[1], tonumber(ARGV[1]))
redis.call('PEXPIRE', KEYS[1], 60000)
return n"""
CLIENTS = 50
PIPELINE = 16


def command(*args: bytes | str | int) -> bytes:
    out = [b"*%d\r\n" % len(args)]
    for a in args:
        b = a if isinstance(a, bytes) else str(a).encode()
        out.append(b"$%d\r\n%s\r\n" % (len(b), b))
    return b"".join(out)


def main() -> None:
    kind = sys.argv[1]
    n = int(sys.argv[2]) if len(sys.argv) > 2 else 1600
    nshards = int(os.environ.get("SHARDKV_SHARDS", "2"))
    acceptor, loop, pipes, shards, clients = hotpath.build(nshards, CLIENTS)
    if os.environ.get("SCRIPTCOST_MOVER"):
        from shardkv.acceptor import blocking

        blocking.bus_movers(acceptor, 1, [1, b"scriptcost-mover-source"])
    replayed: dict[tuple[int, bytes], bytes] | None = {} if os.environ.get("SCRIPTCOST_REPLAY") else None

    def run_batch(shard: hotpath.Shard, payload: bytes) -> bytes:
        if replayed is None:
            return shard.run_batch(payload)
        reply = replayed.get((shard.index, payload))
        if reply is None:
            reply = replayed[shard.index, payload] = shard.run_batch(payload)
        return reply

    def turn(chunks: list[bytes]) -> list[bytes]:
        for client, data in zip(clients, chunks, strict=False):
            client.data_received(data)
        acceptor._flush_links()
        frames = []
        for pipe, shard, link in zip(pipes, shards, acceptor.links, strict=True):
            for data in pipe.written:
                frames.append((link, run_batch(shard, data[4:])))
            pipe.written.clear()
        for link, reply in frames:
            link.data_received(struct.pack("!i", len(reply)) + reply)
        acceptor.flush_dirty_clients()  # the turn's end (Acceptor.flush_clients_soon)
        replies = []
        for client in clients:
            replies.append(b"".join(client.transport.written))  # type: ignore[union-attr]
            client.transport.written.clear()  # type: ignore[union-attr]
        return replies

    # No command goes into the slow log, GET's or EVALSHA's: under
    # callgrind at a high load average some take longer than the default
    # 10 ms and pay for an entry (``Stats.slow``), more in a long run than
    # in a short one, which moved a pair of runs by 1-2k.
    assert turn([command("CONFIG", "SET", "slowlog-log-slower-than", -1)])[0] == b"+OK\r\n"
    sha_get = turn([command("SCRIPT", "LOAD", "return redis.call('get', KEYS[1])")])[0].split(b"\r\n")[1]
    sha_release = turn([command("SCRIPT", "LOAD", RELEASE)])[0].split(b"\r\n")[1]
    sha_rate = turn([command("SCRIPT", "LOAD", RATE)])[0].split(b"\r\n")[1]
    keys = [b"key:%06d" % i for i in range(200)]
    for key in keys:
        turn([command("SET", key, "tok")])
    kinds = {
        "get": lambda k: command("GET", k),
        "evalsha": lambda k: command("EVALSHA", sha_get, 1, k),
        "release": lambda k: command("EVALSHA", sha_release, 1, b"no" + k, "tok"),
        "rate0": lambda k: command("EVALSHA", sha_rate, 1, b"rl" + k, 0),
        "rate1": lambda k: command("EVALSHA", sha_rate, 1, b"rl" + k, 1),
    }
    if kind == "check":
        for make in kinds.values():
            print(turn([make(keys[1])])[0])
        return
    make = kinds[kind]
    # A script makes its client wait for the reply (it may escape, see
    # acceptor.state.SCRIPTS), and the commands behind it run from the
    # loop, which this set-up does not run, but EVALSHAs that take the
    # shortcut behind one that did: one run alone first on each shard, as
    # the shortcut is for settled scripts that the shard has compiled.
    for key in {acceptor.shard_of(k): k for k in keys}.values():
        turn([make(key)])
    cmds = [make(k) for k in keys]
    per = CLIENTS * PIPELINE
    cmds = cmds * ((n + per) // len(cmds) + 1)
    for t in range(0, n + per, per):  # the first turn warms up
        chunk = cmds[t : t + per]
        turn([b"".join(chunk[i * PIPELINE : (i + 1) * PIPELINE]) for i in range(CLIENTS)])
    loop.close()


if __name__ == "__main__":
    main()
