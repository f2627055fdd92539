"""Soak: many clients for minutes, some well-behaved, some not.

    python tests/system/soak.py [--duration 180] [--clients 200] [--churners 20]
                                [--garbage 10] [--shards 4] [--port PORT --pid PID]

For ``--duration`` seconds:

* ``--clients`` connections run mixed commands (strings, counters, hashes,
  sets, TTLs, MSET/MGET across shards) on keys of their own, and check
  every reply against what they wrote;
* ``--churners`` connections connect, run three commands, disconnect, again
  and again;
* ``--garbage`` connections send random bytes and mutated RESP, and hang up.

Every second it samples the RSS of every shardkv process and the
acceptors' open file descriptors (summed, with several acceptors).  It
reports whether every process is still the one it started with, whether RSS was stable after the warm-up
(the first ``--warmup`` of the run: connection state must not leak), whether
the acceptors' file descriptors came back to their count before the run,
and every error a well-behaved client saw (there must be none).

Without ``--port`` it starts its own shardkv and stops it afterwards.
tests/system/test_soak.py runs a short version of the same :func:`soak`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import socket
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import hiredis
import psutil

if __package__ in (None, ""):  # run as a script: make `tests` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.support.resp import encode_command as encode  # noqa: E402
from tests.support.servers import start_shardkv  # noqa: E402


@dataclass
class Stats:
    ops: int = 0  # commands whose replies were checked
    churns: int = 0  # connect / three commands / disconnect cycles
    garbage: int = 0  # garbage connections
    errors: list[str] = field(default_factory=list)
    samples: list[dict] = field(default_factory=list)  # one a second


# -- the well-behaved clients -------------------------------------------------------


class Checker:
    """One connection's own keys and what they must hold."""

    def __init__(self, n: int, seed: int) -> None:
        self.rng = random.Random(seed * 7919 + n)
        p = f"soak:{n}:"
        self.strings = [f"{p}s{i}".encode() for i in range(8)]
        self.values: dict[bytes, bytes] = {}
        self.counter = f"{p}n".encode()
        self.count = 0
        self.hash = f"{p}h".encode()
        self.fields: dict[bytes, bytes] = {}
        self.set = f"{p}set".encode()
        self.members: set[bytes] = set()
        self.ttl_key = f"{p}t".encode()

    def step(self) -> tuple[bytes, list, list]:
        """The next batch: (request bytes, commands, expected replies)."""
        rng = self.rng
        op = rng.randrange(9)
        if op == 0:
            key = rng.choice(self.strings)
            value = rng.randbytes(rng.randrange(0, 300)) + b"\x00\r\n"
            self.values[key] = value
            cmds = [("SET", key, value), ("GET", key)]
            expect = [b"OK", value]
        elif op == 1:
            self.count += 1
            cmds = [("INCR", self.counter)]
            expect = [self.count]
        elif op == 2:
            key = rng.choice(self.strings)
            had = self.values.pop(key, None)
            cmds = [("DEL", key), ("EXISTS", key)]
            expect = [1 if had is not None else 0, 0]
        elif op == 3:
            keys = rng.sample(self.strings, 3)  # on different shards, mostly
            values = [rng.randbytes(20) for _ in keys]
            self.values.update(zip(keys, values, strict=True))
            cmds = [
                ("MSET", *[x for kv in zip(keys, values, strict=True) for x in kv]),
                ("MGET", *self.strings),
            ]
            expect = [b"OK", [self.values.get(k) for k in self.strings]]
        elif op == 4:
            f, v = b"f%d" % rng.randrange(20), rng.randbytes(10)
            new = f not in self.fields
            self.fields[f] = v
            cmds = [("HSET", self.hash, f, v), ("HGET", self.hash, f), ("HLEN", self.hash)]
            expect = [1 if new else 0, v, len(self.fields)]
        elif op == 5:
            m = b"m%d" % rng.randrange(30)
            new = m not in self.members
            self.members.add(m)
            cmds = [("SADD", self.set, m), ("SCARD", self.set), ("SISMEMBER", self.set, m)]
            expect = [1 if new else 0, len(self.members), 1]
        elif op == 6:
            cmds = [("SET", self.ttl_key, b"x", "EX", 1000), ("TTL", self.ttl_key), ("PERSIST", self.ttl_key)]
            expect = [b"OK", range(990, 1001), 1]
        elif op == 7:
            key = rng.choice(self.strings)
            extra = rng.randbytes(5)
            old = self.values.get(key, b"")
            self.values[key] = old + extra
            cmds = [("APPEND", key, extra), ("STRLEN", key)]
            expect = [len(old) + len(extra), len(old) + len(extra)]
        else:
            word = rng.randbytes(8)
            cmds = [("PING",), ("ECHO", word)]
            expect = [b"PONG", word]
        return b"".join(encode(*c) for c in cmds), cmds, expect


def matches(got: object, want: object) -> bool:
    if isinstance(want, range):
        return isinstance(got, int) and got in want
    return got == want


async def read_replies(reader: asyncio.StreamReader, parser: hiredis.Reader, n: int) -> list:
    out: list = []
    while True:
        while len(out) < n:
            reply = parser.gets()
            if reply is False:
                break
            out.append(reply)
        if len(out) == n:
            return out
        data = await reader.read(1 << 16)
        if not data:
            raise ConnectionError("the server closed the connection")
        parser.feed(data)


async def well_behaved(n: int, port: int, stop: asyncio.Event, stats: Stats, seed: int) -> None:
    checker = Checker(n, seed)
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
    except OSError as e:
        stats.errors.append(f"client {n}: cannot connect: {e}")
        return
    parser = hiredis.Reader()
    try:
        while not stop.is_set():
            request, cmds, expect = checker.step()
            writer.write(request)
            got = await read_replies(reader, parser, len(expect))
            for cmd, g, w in zip(cmds, got, expect, strict=True):
                if not matches(g, w):
                    stats.errors.append(f"client {n}: {cmd[0]} replied {g!r:.200}, expected {w!r:.200}")
            stats.ops += len(cmds)
    except (OSError, ConnectionError) as e:
        stats.errors.append(f"client {n}: {e!r}")
    finally:
        writer.close()


async def churner(n: int, port: int, stop: asyncio.Event, stats: Stats) -> None:
    key = f"soak:churn:{n}".encode()
    i = 0
    while not stop.is_set():
        i += 1
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"PING\r\n" + encode("SET", key, i) + encode("GET", key))
            got = await read_replies(reader, hiredis.Reader(), 3)
            if got != [b"PONG", b"OK", b"%d" % i]:
                stats.errors.append(f"churner {n}: {got!r:.200}")
            writer.close()
            await writer.wait_closed()
            stats.churns += 1
        except (OSError, ConnectionError) as e:
            stats.errors.append(f"churner {n}: {e!r}")
            await asyncio.sleep(0.1)


# -- the others -----------------------------------------------------------------------

_TOKENS = [b"*", b"$", b"\r", b"\n", b"\r\n", b"0", b"-1", b"99999999999", b'"', b"'", b"\x00", b" "]


def garbage_bytes(rng: random.Random) -> bytes:
    if rng.random() < 0.3:
        return rng.randbytes(rng.randrange(1, 4000))
    data = bytearray(
        encode(rng.choice([b"PING", b"ECHO", b"GET", b"EXISTS"]), rng.randbytes(rng.randrange(8)))
    )
    for _ in range(rng.randrange(1, 4)):
        i = rng.randrange(len(data) + 1)
        if rng.random() < 0.5 and data:
            del data[i : i + rng.randrange(1, 4)]
        else:
            data[i:i] = rng.choice(_TOKENS)
    return bytes(data)


async def garbage_sender(n: int, port: int, stop: asyncio.Event, stats: Stats, seed: int) -> None:
    rng = random.Random(seed * 31 + n)
    while not stop.is_set():
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(garbage_bytes(rng))
            try:
                await asyncio.wait_for(reader.read(1 << 16), 0.05)
            except TimeoutError:
                pass
            writer.close()
            await writer.wait_closed()
            stats.garbage += 1
        except OSError:
            await asyncio.sleep(0.05)


# -- watching the server ----------------------------------------------------------------


def processes(supervisor_pid: int) -> dict[int, psutil.Process]:
    sup = psutil.Process(supervisor_pid)
    return {p.pid: p for p in [sup, *sup.children(recursive=True)]}


def role(p: psutil.Process) -> str:
    try:
        name = p.name()
    except psutil.Error:
        return "gone"
    return name if name.startswith("shardkv") else "helper"


def is_acceptor(p: psutil.Process) -> bool:
    """``shardkv-accept``, or ``shardkv-accept<i>`` with several acceptors."""
    return role(p).startswith("shardkv-accept")


def sample(procs: dict[int, psutil.Process]) -> dict:
    rss = {}
    fds = None
    for pid, p in procs.items():
        try:
            rss[f"{role(p)}:{pid}"] = p.memory_info().rss
            if is_acceptor(p):
                fds = (fds or 0) + p.num_fds()
        except psutil.Error:
            rss[f"gone:{pid}"] = 0
    return {"t": time.monotonic(), "rss": rss, "acceptor_fds": fds}


def acceptors(procs: dict[int, psutil.Process]) -> list[psutil.Process]:
    return [p for p in procs.values() if is_acceptor(p)]


def acceptor_fds(procs: dict[int, psutil.Process]) -> int:
    """The open file descriptors of every acceptor, together."""
    return sum(p.num_fds() for p in acceptors(procs))


# -- the run --------------------------------------------------------------------------


async def _run(
    port: int, supervisor_pid: int, duration: float, clients: int, churners: int, garbage: int, seed: int
) -> Stats:
    stats = Stats()
    stop = asyncio.Event()
    procs = processes(supervisor_pid)
    tasks = [asyncio.create_task(well_behaved(n, port, stop, stats, seed)) for n in range(clients)]
    tasks += [asyncio.create_task(churner(n, port, stop, stats)) for n in range(churners)]
    tasks += [asyncio.create_task(garbage_sender(n, port, stop, stats, seed)) for n in range(garbage)]
    end = time.monotonic() + duration
    while time.monotonic() < end:
        await asyncio.sleep(min(1.0, max(end - time.monotonic(), 0)))
        stats.samples.append(sample(procs))
    stop.set()
    await asyncio.wait(tasks, timeout=30)
    return stats


def _call(s: socket.socket, reader: hiredis.Reader, args: list[bytes]) -> object:
    s.sendall(b"*%d\r\n" % len(args) + b"".join(b"$%d\r\n%s\r\n" % (len(a), a) for a in args))
    reply = False
    while reply is False:
        reader.feed(s.recv(65536))
        reply = reader.gets()
    return reply


def _open_long_lived_files(port: int, nacceptors: int) -> None:
    """One cross-shard write and its undoing on each acceptor: an acceptor
    opens its decisions file (shardkv.protocol.decisions) at its first
    commit and keeps it, so the descriptor count is taken after that, not
    before.  With several acceptors the kernel picks one per connection:
    connect until each has had its turn (acceptor i of K hands out the
    client ids i+1, i+1+K, ...)."""
    keys = [b"soak:warmup:%d" % i for i in range(16)]  # on more than one shard
    command = [b"MSET"] + [part for key in keys for part in (key, b"1")]
    done: set[int] = set()
    deadline = time.monotonic() + 60  # one may not listen yet on a loaded machine
    while len(done) < nacceptors:
        if time.monotonic() > deadline:
            raise RuntimeError(f"could not reach every one of the {nacceptors} acceptors")
        with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
            reader = hiredis.Reader()
            index = (int(_call(s, reader, [b"CLIENT", b"ID"])) - 1) % nacceptors  # type: ignore[call-overload]
            if index not in done:
                _call(s, reader, command)
                _call(s, reader, [b"DEL", *keys])
                done.add(index)
            s.sendall(b"QUIT\r\n")
            while s.recv(65536):  # until the acceptor has closed its end too
                pass
        time.sleep(0.01)


def soak(
    port: int,
    supervisor_pid: int,
    duration: float = 180,
    clients: int = 200,
    churners: int = 20,
    garbage: int = 10,
    warmup: float = 0.4,
    seed: int = 1,
) -> dict:
    """Run the soak against a running shardkv; return its figures and verdicts."""
    procs = processes(supervisor_pid)
    _open_long_lived_files(port, len(acceptors(procs)))
    fds_before = acceptor_fds(procs)
    started = time.monotonic()
    stats = asyncio.run(_run(port, supervisor_pid, duration, clients, churners, garbage, seed))
    elapsed = time.monotonic() - started
    # The clients have closed: the acceptor's descriptors come back.
    deadline = time.monotonic() + 10
    fds_after = acceptor_fds(procs)
    while fds_after != fds_before and time.monotonic() < deadline:
        time.sleep(0.2)
        fds_after = acceptor_fds(procs)
    after = processes(supervisor_pid)
    samples = stats.samples
    split = max(1, int(len(samples) * warmup))
    names = sorted(samples[0]["rss"]) if samples else []
    rss = {}
    for name in names:
        series = [s["rss"].get(name, 0) for s in samples]
        warm = series[split - 1]
        rss[name] = {
            "start": series[0],
            "after_warmup": warm,
            "max_after_warmup": max(series[split - 1 :]),
            "end": series[-1],
            "growth_after_warmup": max(series[split - 1 :]) - warm,
        }
    return {
        "duration_s": round(elapsed, 1),
        "clients": clients,
        "churners": churners,
        "garbage_senders": garbage,
        "ops_checked": stats.ops,
        "ops_per_s": round(stats.ops / max(elapsed, 1e-9)),
        "churn_cycles": stats.churns,
        "garbage_connections": stats.garbage,
        "errors": stats.errors[:50],
        "error_count": len(stats.errors),
        "same_processes": sorted(after) == sorted(procs),
        "acceptor_fds_before": fds_before,
        "acceptor_fds_peak": max((s["acceptor_fds"] or 0) for s in samples) if samples else None,
        "acceptor_fds_after": fds_after,
        "rss": rss,
    }


def stable(result: dict, slack_bytes: int = 16 << 20, slack_ratio: float = 0.15) -> list[str]:
    """The processes whose RSS grew after the warm-up by more than the slack."""
    out = []
    for name, r in result["rss"].items():
        if r["growth_after_warmup"] > max(slack_bytes, slack_ratio * r["after_warmup"]):
            out.append(f"{name} grew {r['growth_after_warmup'] >> 20} MB after warm-up")
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=180)
    parser.add_argument("--clients", type=int, default=200)
    parser.add_argument("--churners", type=int, default=20)
    parser.add_argument("--garbage", type=int, default=10)
    parser.add_argument("--warmup", type=float, default=0.4, help="fraction of the run that is warm-up")
    parser.add_argument("--shards", type=int, default=4)
    parser.add_argument("--port", type=int, help="soak a running shardkv (with --pid, its supervisor)")
    parser.add_argument("--pid", type=int)
    parser.add_argument("--json", help="also write the result here")
    args = parser.parse_args(argv)
    server = None
    if args.port:
        port, pid = args.port, args.pid
    else:
        server = start_shardkv(shards=args.shards)
        port, pid = server.port, server.proc.pid
    try:
        result = soak(port, pid, args.duration, args.clients, args.churners, args.garbage, args.warmup)
    finally:
        if server is not None:
            server.stop()
    problems = stable(result) + result["errors"]
    if not result["same_processes"]:
        problems.append("a process died or was restarted")
    if result["acceptor_fds_after"] != result["acceptor_fds_before"]:
        problems.append("the acceptor's file descriptors did not come back")
    print(json.dumps(result, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))
    for p in problems:
        print("PROBLEM:", p, file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
