"""How far the design scales on N cores, projected from CPU measured per request.

The inputs are CPU seconds (user+sys, psutil) per 100k requests per server
process, measured by ``benchmarks/run.py`` or ``benchmarks/scaling.py`` at
one acceptor count K and shard count S.  They are grouped into process
classes (:func:`cpu_classes`): the acceptors (summed, and each), the workers
(summed, and each), the supervisor, anything else the server runs, and the
benchmark client (reported, never counted against the server's cores).

The model (:func:`project`), for a single-key mix such as SET or GET:

* a request costs ``a`` CPU seconds per 100k on the acceptor side (whichever
  acceptor its connection landed on) and ``w`` on the worker side (whichever
  shard its key hashes to), the sums measured over all acceptors and all
  workers, assumed not to change when K and S change;
* every process is one thread, so one process serves at most one core:
  K acceptors give at most ``K x 100000 / a`` requests/s, S workers
  ``S x 100000 / w`` (keys spread evenly over the shards, connections over
  the acceptors);
* N cores hold one process each: K + S = N, K chosen to maximise
  ``min(K x 100000 / a, (N - K) x 100000 / w)``, which puts the cores in
  proportion to a : w.  The supervisor and any other process are a serial
  component: one process, ``100000 / c`` at most (for SET and GET it is
  idle, c close to 0).  The whole server can never beat
  ``N x 100000 / (a + w + supervisor + other)``.
* Single-key commands take no holds; a multi-shard command holds its shards
  in ascending order (no sequencer), which a SET/GET mix never does, so the
  classes that can saturate here are the acceptors, the workers, and the
  supervisor as a serial process.

Batching: a worker pays a fixed cost per batch it reads from a pipe (the
wake-up; ``benchmarks/wakecost.py``), so its CPU per request holds only while
each acceptor-to-worker pipe has as many requests in flight as when it was
measured. There are K x S such pipes, so with ``inflight`` requests in flight
(clients x pipeline depth) a pipe gets inflight / (K x S). Each row says how
many clients, at the measured pipeline depth, keep the measured in-flight per
pipe at its K and S (``clients_needed``); with fewer, batches shrink and the
CPU per request grows.

redis-server's one-core rate is ``100000 / r`` for its measured r, at least
its measured requests/s; the target is ``throughput(16) >= 2 x`` that.
"""

from __future__ import annotations

import math
from typing import Any

CORES = (2, 4, 8, 16, 32)
TARGET_CORES = 16
TARGET_RATIO = 2.0
PER = 100_000  # requests per CPU figure


def cpu_classes(cpu_per_role: dict[str, float], client: float = 0.0) -> dict[str, Any]:
    """Group per-process CPU seconds per 100k requests by process class.

    Roles as ``ServerProcess.roles()`` names them: ``acceptor`` or
    ``acceptor N``, ``worker N``, ``supervisor``, anything else (the
    multiprocessing resource tracker) as ``other``; redis-server's single
    process is ``redis``.
    """
    acceptors = {r: c for r, c in cpu_per_role.items() if r.startswith("acceptor")}
    workers = {r: c for r, c in cpu_per_role.items() if r.startswith(("worker", "shard"))}
    known = {*acceptors, *workers, "supervisor", "redis"}
    return {
        "acceptors": sum(acceptors.values()),
        "per_acceptor": dict(sorted(acceptors.items())),
        "workers": sum(workers.values()),
        "per_worker": dict(sorted(workers.items(), key=lambda item: _index(item[0]))),
        "supervisor": cpu_per_role.get("supervisor", 0.0),
        "redis": cpu_per_role.get("redis", 0.0),
        "other": sum(c for r, c in cpu_per_role.items() if r not in known),
        "client": client,
    }


def _index(role: str) -> int:
    tail = role.rsplit(" ", 1)[-1]
    return int(tail) if tail.isdigit() else -1


def redis_one_core(redis_cpu_per_100k: float, redis_rps: float) -> float:
    """redis-server's rate on one fully busy core: 100000 / its CPU per 100k,
    never less than what it was measured to serve."""
    ceiling = PER / redis_cpu_per_100k if redis_cpu_per_100k > 0 else 0.0
    return max(ceiling, redis_rps)


def best_split(cores: int, a: float, w: float, serial: float) -> dict[str, Any]:
    """The acceptor count K (and shards S = cores - K) that serves most on ``cores`` cores."""
    best: dict[str, Any] | None = None
    for k in range(1, cores):
        s = cores - k
        caps = {"acceptors": k * PER / a, "workers": s * PER / w}
        if serial > 0:  # an idle supervisor sets no limit
            caps["serial"] = PER / serial
        rps = min(caps.values())
        if best is None or rps > best["rps"]:
            limit = min(caps, key=caps.__getitem__)
            best = {"cores": cores, "acceptors": k, "shards": s, "rps": rps, "caps": caps, "saturates": limit}
    assert best is not None
    return best


def project(
    classes: dict[str, Any],
    redis_rate: float | None,
    cores: tuple[int, ...] = CORES,
    load: tuple[int, int, int, int] | None = None,
) -> dict[str, Any]:
    """Throughput on each core count, what saturates first, and the arithmetic as text.

    ``load`` is (clients, pipeline depth, acceptors, shards) of the measurement,
    for the in-flight requests per pipe it had and the clients each row needs
    to keep it.
    """
    a, w = classes["acceptors"], classes["workers"]
    serial = classes["supervisor"] + classes["other"]
    per_pipe = load[0] * load[1] / (load[2] * load[3]) if load else None
    rows = []
    for n in cores:
        split = best_split(n, a, w, serial)
        split["ideal_rps"] = n * PER / (a + w + serial)
        split["vs_redis"] = split["rps"] / redis_rate if redis_rate else None
        if load and per_pipe:
            pipes = split["acceptors"] * split["shards"]
            split["inflight_per_pipe_measured"] = per_pipe
            split["clients_needed"] = math.ceil(pipes * per_pipe / load[1])
        rows.append(split)
    target = next((r for r in rows if r["cores"] == TARGET_CORES), None)
    ratio = target["vs_redis"] if target else None
    lines = [
        f"a (acceptors) = {a:.3f}, w (workers) = {w:.3f}, serial (supervisor + other) = {serial:.3f}"
        f" CPU-s per 100k requests; client {classes['client']:.3f} (not counted)",
        f"one acceptor serves <= 100000 / a = {PER / a:,.0f} req/s, one worker <= 100000 / w x S"
        f" (its 1/S share) = {PER / w:,.0f} x S req/s",
    ]
    if redis_rate:
        lines.append(f"redis-server on one core: {redis_rate:,.0f} req/s")
    if load and per_pipe:
        lines.append(
            f"measured with {load[0]} clients x -P {load[1]} over {load[2]} x {load[3]} pipes ="
            f" {per_pipe:g} requests in flight per pipe; each N needs K x S x {per_pipe:g} / {load[1]}"
            " clients to keep that (fewer: smaller batches, more CPU per request)"
        )
    for r in rows:
        caps = r["caps"]
        lines.append(
            f"N={r['cores']:>2}: K={r['acceptors']}, S={r['shards']}: min({r['acceptors']} x {PER / a:,.0f},"
            f" {r['shards']} x {PER / w:,.0f}) = min({caps['acceptors']:,.0f}, {caps['workers']:,.0f})"
            f" = {r['rps']:,.0f} req/s, {r['saturates']} saturate first"
            + (f"; {r['vs_redis']:.2f}x redis" if r["vs_redis"] is not None else "")
            + (f"; needs >= {r['clients_needed']} clients" if "clients_needed" in r else "")
        )
    return {
        "a_acceptors": a,
        "w_workers": w,
        "serial": serial,
        "redis_one_core_rps": redis_rate,
        "cores": rows,
        "target": f">= {TARGET_RATIO:g}x redis-server on {TARGET_CORES} cores",
        "vs_redis_at_target_cores": ratio,
        "target_met": ratio is not None and ratio >= TARGET_RATIO,
        "arithmetic": lines,
    }
