"""Count what each frame between the acceptors and the workers costs,
under a real load: system calls and CPU per 1k requests, per process.

For each ``--acceptors`` count in turn (and ``--rounds`` times over, so
that the counts take turns on a shared machine), it starts shardkv at
``--shards``, warms it up with redis-benchmark, then runs
``redis-benchmark -t TEST -c CLIENTS -P PIPELINE -r 100000 -n REQUESTS``
while ``perf stat`` counts each acceptor's and each worker's system calls
(by tracepoint: nothing is slowed down as strace would), and psutil reads
their CPU time.  A worker writes each batch's ``R`` frame with one
``sendto``, except that batches read together share one, so its
``sendto`` count is about the number of frames it was sent.  Counts are
the steady part of the figures: the machine is shared, so the CPU
figures are rough and throughput is not reported.  ``per_frame`` is a
worker's system calls per ``sendto``.  ``--profile`` also counts
each process's Python calls (cProfile, through ``profhook/sitecustomize.py``,
on only while the measured run lasts); ``--roots`` compares checkouts
(another one extracted with ``git archive``), round by round.

    python benchmarks/framecost.py [--acceptors 1,2] [--shards 2] [--rounds 3] [--test set]
        [--profile [--profile-top N]] [--roots OTHER_CHECKOUT,.]
"""

from __future__ import annotations

import argparse
import os
import pstats
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.support.servers import HOST, ROOT, start_shardkv  # noqa: E402

HOOK = Path(__file__).resolve().parent / "profhook"

EVENTS = {
    "all": "raw_syscalls:sys_enter",
    "sendto": "syscalls:sys_enter_sendto",
    "recvfrom": "syscalls:sys_enter_recvfrom",
    "write": "syscalls:sys_enter_write",
    "read": "syscalls:sys_enter_read",
    "poll": "syscalls:sys_enter_poll",
    "epoll_pwait": "syscalls:sys_enter_epoll_pwait",
    "cs": "context-switches",
    "migrations": "cpu-migrations",
}


def bench(port: int, test: str, requests: int, clients: int, pipeline: int) -> None:
    subprocess.run(
        ["redis-benchmark", "-h", HOST, "-p", str(port), "-t", test, "-n", str(requests)]
        + ["-c", str(clients), "-P", str(pipeline), "-r", "100000", "-q"],
        check=True,
        stdout=subprocess.DEVNULL,
        timeout=600,
    )


def measure(acceptors: int, root: Path, args: argparse.Namespace) -> dict[str, dict[str, float]]:
    """Per process role: each counter and CPU seconds, per 1k requests."""
    env = dict(os.environ)
    profdir = None
    if args.profile:
        # benchmarks/profhook/sitecustomize.py: cProfile in each acceptor and
        # worker, on from SIGWINCH to SIGURG, its stats written at exit.
        profdir = tempfile.mkdtemp(prefix="framecost-prof-")
        env["SHARDKV_CPROFILE_DIR"] = profdir
        env["PYTHONPATH"] = os.pathsep.join([str(HOOK), str(root)])
    server = start_shardkv(shards=args.shards, acceptors=acceptors, env=env, root=root)
    try:
        bench(server.port, args.test, args.warmup, args.clients, args.pipeline)
        roles = {pid: role for pid, role in server.roles().items() if role.startswith(("acceptor", "worker"))}
        perfs = {}
        outdir = tempfile.mkdtemp(prefix="framecost-")
        for pid in roles:
            out = os.path.join(outdir, f"{pid}.csv")
            cmd = ["perf", "stat", "-x", ",", "-o", out, "-p", str(pid)]
            for event in EVENTS.values():
                cmd += ["-e", event]
            perfs[pid] = (subprocess.Popen(cmd, stderr=subprocess.DEVNULL), out)
        time.sleep(0.5)  # perf attached
        if profdir is not None:
            for pid in roles:
                os.kill(pid, signal.SIGWINCH)
        before = server.cpu_times()
        bench(server.port, args.test, args.requests, args.clients, args.pipeline)
        after = server.cpu_times()
        if profdir is not None:
            for pid in roles:
                os.kill(pid, signal.SIGURG)
        for proc, _ in perfs.values():
            proc.send_signal(signal.SIGINT)
        results: dict[str, dict[str, float]] = {}
        scale = 1000 / args.requests
        for pid, (proc, out) in perfs.items():
            proc.wait(30)
            counts = {}
            with open(out) as f:
                for line in f:
                    fields = line.strip().split(",")
                    if len(fields) > 3 and fields[0].isdigit():
                        counts[fields[2]] = int(fields[0])
            row = {name: counts.get(event, 0) * scale for name, event in EVENTS.items()}
            row["cpu_ms"] = (after.get(pid, 0.0) - before.get(pid, 0.0)) * 1000 * scale
            if roles[pid].startswith("worker"):  # one R frame sent per batch run
                row["per_frame"] = row["all"] / row["sendto"] if row["sendto"] else 0.0
            results[roles[pid]] = row
        if profdir is not None:
            server.stop()
            for pid, role in roles.items():
                stats = pstats.Stats(os.path.join(profdir, f"{role.split()[0]}-{pid}.prof"))
                results[role]["pycalls"] = stats.total_calls * scale  # type: ignore[attr-defined]
                if args.profile_top:
                    print(f"--- {role}, K={acceptors}: calls per 1k requests")
                    rows = sorted(stats.stats.items(), key=lambda kv: -kv[1][1])  # type: ignore[attr-defined]
                    for (file, line, name), (_, ncalls, *_rest) in rows[: args.profile_top]:
                        print(f"  {ncalls * scale:9.1f}  {Path(file).name}:{line}({name})")
        return results
    finally:
        server.stop()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--acceptors", default="1,2")
    p.add_argument("--roots", default="", help="checkouts to compare, in turn (default: this one)")
    p.add_argument("--shards", type=int, default=2)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--test", default="set")
    p.add_argument("--requests", type=int, default=50_000)
    p.add_argument("--warmup", type=int, default=20_000)
    p.add_argument("--clients", type=int, default=50)
    p.add_argument("--pipeline", type=int, default=1)
    p.add_argument(
        "--profile", action="store_true", help="also count Python calls (cProfile) per 1k requests"
    )
    p.add_argument("--profile-top", type=int, default=0, help="print the N most called functions")
    args = p.parse_args()
    counts = [int(k) for k in args.acceptors.split(",")]
    roots = [Path(r).resolve() for r in args.roots.split(",")] if args.roots else [ROOT]
    cases = [(root, k) for root in roots for k in counts]
    rows: dict[tuple[Path, int], list[dict[str, dict[str, float]]]] = {case: [] for case in cases}
    for r in range(args.rounds):
        for root, k in cases:
            load = os.getloadavg()[0]
            result = measure(k, root, args)
            rows[root, k].append(result)
            print(f"round {r + 1}, {root.name} K={k} (load {load:.1f}):")
            for role in sorted(result):
                print(f"  {role:12}", "  ".join(f"{n} {v:8.2f}" for n, v in result[role].items()))
    print(
        f"\nmedians per 1k requests, per process class ({args.test} -P {args.pipeline}, {args.clients} clients)"
    )
    for root, k in cases:
        for cls in ("acceptor", "worker"):
            # Per process of the class: each round's mean over its processes.
            per_round = []
            for result in rows[root, k]:
                procs = [v for role, v in result.items() if role.startswith(cls)]
                per_round.append({n: statistics.mean(v[n] for v in procs) for n in procs[0]})
            med = {n: statistics.median(r[n] for r in per_round) for n in per_round[0]}
            print(f"{root.name} K={k} {cls:8} (each)", "  ".join(f"{n} {v:8.2f}" for n, v in med.items()))


if __name__ == "__main__":
    main()
