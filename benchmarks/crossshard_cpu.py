"""CPU time per cross-shard operation, per process, without AOF.

    python benchmarks/crossshard_cpu.py [--shards 4] [--ops 3000] [--repeat 3] [--clients 1]

Starts shardkv (``appendonly no``) and sends, from one client, batches of
16 pipelined commands of one kind, one batch at a time (with ``--clients
N``, N connections at once, each its share of the commands so, in
threads: with several acceptors they spread over them, and each
acceptor's multi-shard requests queue behind each other):

* ``mset``: ``MSET a v b v`` with ``a`` and ``b`` on two shards (a write
  fan-out: ``__prepare`` to each, then the decision);
* ``mset10``: ``MSET`` of 10 keys spread over every shard (redis-benchmark's);
* ``eval``: ``EVAL "redis.call('set',KEYS[1],ARGV[1])
  redis.call('set',KEYS[2],ARGV[1])" 2 a b v`` (a parked operation: park,
  run, prepare, decide);
* ``set``: a single-key SET, for scale.

It reads the user + system CPU of the acceptor and of the workers from
``/proc`` before and after, and prints microseconds per operation (the
median of the rounds), and how much of the total is system time.  CPU time moves less with the machine's load than
throughput does, but it still moves (caches, frequency): compare builds
run in turn.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import threading
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import redis  # noqa: E402

from shardkv.protocol.router import key_slot, slot_owners  # noqa: E402
from tests.support.servers import start_shardkv  # noqa: E402

SCRIPT = "redis.call('set',KEYS[1],ARGV[1]) redis.call('set',KEYS[2],ARGV[1])"
BATCH = 16


def keys_on_shards(nshards: int, count: int) -> list[list[bytes]]:
    """``count`` keys for each shard."""
    owners = slot_owners(nshards)
    out: list[list[bytes]] = [[] for _ in range(nshards)]
    i = 0
    while min(len(k) for k in out) < count:
        key = b"k:%d" % i
        shard = owners[key_slot(key)]
        if len(out[shard]) < count:
            out[shard].append(key)
        i += 1
    return out


def commands(kind: str, keys: list[list[bytes]], n: int) -> list[tuple]:
    out: list[tuple] = []
    a, b = keys[0], keys[1]
    for i in range(n):
        j = i % len(a)
        v = b"v%d" % (n + i)  # a new value: a part that changes nothing does not park
        if kind == "mset":
            out.append(("MSET", a[j], v, b[j], v))
        elif kind == "mset10":
            args: list = ["MSET"]
            for s in range(10):
                args += [keys[s % len(keys)][(j + s) % len(a)], v]
            out.append(tuple(args))
        elif kind == "eval":
            out.append(("EVAL", SCRIPT, 2, a[j], b[j], v))
        else:
            out.append(("SET", a[j], v))
    return out


def run(client: redis.Redis, cmds: list[tuple]) -> None:
    for i in range(0, len(cmds), BATCH):
        pipe = client.pipeline(transaction=False)
        for c in cmds[i : i + BATCH]:
            pipe.execute_command(*c)
        pipe.execute()


def run_all(clients: list[redis.Redis], cmds: list[tuple]) -> None:
    """Each client sends every len(clients)-th command, all at once."""
    if len(clients) == 1:
        run(clients[0], cmds)
        return
    n = len(clients)
    threads = [threading.Thread(target=run, args=(c, cmds[k::n])) for k, c in enumerate(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--shards", type=int, default=4)
    p.add_argument("--ops", type=int, default=3000)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--kinds", default="set,mset,mset10,eval")
    p.add_argument("--clients", type=int, default=1, help="connections sending at once")
    p.add_argument("--root", type=Path, help="the checkout whose server to run (another build, to compare)")
    args = p.parse_args()
    kinds = args.kinds.split(",")
    keys = keys_on_shards(args.shards, 200)
    extra = {"root": args.root} if args.root else {}
    server = start_shardkv("--appendonly", "no", shards=args.shards, ready_timeout=120, **extra)
    results: dict[str, dict[str, list[float]]] = {k: {} for k in kinds}
    try:
        clients = [redis.Redis(port=server.port) for _ in range(args.clients)]
        for kind in kinds:
            run_all(clients, commands(kind, keys, 400))  # warm up
        roles = server.roles()
        for _ in range(args.repeat):
            for kind in kinds:
                cmds = commands(kind, keys, args.ops)
                before, before_sys = server.cpu_times(), system_times(server)
                run_all(clients, cmds)
                after, after_sys = server.cpu_times(), system_times(server)
                per: dict[str, float] = {"acceptor": 0.0, "workers": 0.0, "system": 0.0}
                for pid, t in after_sys.items():
                    per["system"] += t - before_sys.get(pid, 0.0)
                for pid, t in after.items():
                    role = roles.get(pid, "")
                    group = (
                        "acceptor"
                        if role.startswith("acceptor")
                        else "workers"
                        if role.startswith(("worker", "shard"))
                        else None
                    )
                    if group:
                        per[group] += t - before.get(pid, 0.0)
                for group, t in per.items():
                    results[kind].setdefault(group, []).append(t / args.ops * 1e6)
    finally:
        server.stop()
    print(f"{'load':8} {'acceptor us':>12} {'workers us':>12} {'total us':>10} {'of it system':>13}")
    for kind in kinds:
        acc = statistics.median(results[kind]["acceptor"])
        wrk = statistics.median(results[kind]["workers"])
        sys_ = statistics.median(results[kind]["system"])
        print(f"{kind:8} {acc:12.1f} {wrk:12.1f} {acc + wrk:10.1f} {sys_:13.1f}")


def system_times(server) -> dict[int, float]:  # type: ignore[no-untyped-def]
    """System CPU seconds so far, per pid of the server's processes but the supervisor."""
    times = {}
    for proc in server.processes()[1:]:
        try:
            times[proc.pid] = proc.cpu_times().system
        except Exception:  # gone
            pass
    return times


if __name__ == "__main__":
    main()
