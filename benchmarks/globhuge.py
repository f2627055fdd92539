"""The glob matcher alone on hostile patterns of a megabyte against strings of
a megabyte (issue: ``a?`` 500k times then ``*`` once took seconds to
compile into a regular expression): parsing, the first match (which
builds the matcher) and a second one, per shape.

    PYTHONPATH=. python benchmarks/globhuge.py [NAME ...]

NAME picks the shapes whose names contain it.  ``--root DIR`` imports
``shardkv`` from another checkout, to time an older version.

    PYTHONPATH=. python benchmarks/globhuge.py --servers [--sizes 64K,1M,16M,100M]

times, on redis-server and on shardkv in the same run, each command that
takes a glob pattern with hostile patterns of each size (many ``*?``,
``[ab]`` classes, ``\\x`` escapes, one unclosed ``[``, a run of ``?``,
nested ``[[]``, a run of ``*`` then ``x``) over 0, 1 and 10,000 keys
(KEYS, SCAN and HSCAN; the others once): milliseconds per command, the
ratio shardkv / redis-server (the best of 3 up to 1 MiB), and for shardkv the longest a ``PING`` from
another client waited meanwhile.  A command with no reply within
``--timeout`` seconds is reported so (the server is then started anew and
the larger sizes of that shape and command are "skipped").  ``--root`` here
starts the shardkv of another checkout.
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

M = 1_000_000
SHAPES: list[tuple[str, bytes, bytes, bool]] = [
    ("a? x500k *", b"a?" * 500_000 + b"*", b"a" * M, False),
    ("a? x500k * nocase", b"a?" * 500_000 + b"*", b"A" * M, True),
    ("* a? x500k", b"*" + b"a?" * 500_000, b"ab" * 500_000, False),
    ("a? x250k * a? x250k", b"a?" * 250_000 + b"*" + b"a?" * 250_000, b"a" * M, False),
    ("? x1M", b"?" * M, b"a" * M, False),
    ("* x1M", b"*" * M, b"a" * M, False),
    ("*? x500k (nesting)", b"*?" * 500_000, b"a" * M, False),
    ("[ab]c x200k *", b"[ab]c" * 200_000 + b"*", b"ac" * 500_000, False),
    ("[a-z] x200k *", b"[a-z]" * 200_000 + b"*", b"q" * M, False),
    ("[ab][cd] x100k *", b"[ab][cd]" * 100_000 + b"*", b"ac" * 500_000, False),
    ("\\x x500k", b"\\x" * 500_000, b"x" * 500_000, False),
    ("\\?\\* x250k", b"\\?\\*" * 250_000, b"?*" * 250_000, False),
    ("[ x1M (unclosed)", b"[" * M, b"[", False),
    ("[^ x500k ]", b"[^" * 500_000 + b"]", b"a", False),
    ("*b a? x250k * (middle)", b"*b" + b"a?" * 250_000 + b"*", b"ab" * 500_000, False),
    ("* a? x250k b * (middle)", b"*" + b"a?" * 250_000 + b"b*", b"a" * M, False),
    ("* [ab] x999 c *", b"*" + b"[ab]" * 999 + b"c*", b"a" * M, False),
    ("*[ab][b] x300 *", b"*[ab][b]" * 300 + b"*", b"ab" * 500_000, False),
]


SERVER_SHAPES: dict[str, Callable[[int], bytes]] = {
    "*? (nesting)": lambda n: b"*?" * (n // 2),
    "[ab] classes": lambda n: b"[ab]" * (n // 4),
    "\\x escapes": lambda n: b"\\x" * (n // 2),
    "[ unclosed": lambda n: b"[" * n,
    "? run": lambda n: b"?" * n,
    "[[] nested": lambda n: b"[[]" * (n // 3),
    "* run then x": lambda n: b"*" * (n - 1) + b"x",
}
KEYSPACE_COMMANDS = ["KEYS", "SCAN", "HSCAN"]
OTHER_COMMANDS = ["PSUBSCRIBE", "PUBLISH", "PUNSUBSCRIBE", "PUBSUB CHANNELS", "CONFIG GET"]
OTHER_COMMANDS += ["COMMAND LIST", "FUNCTION LIST", "ACL SETUSER", "GET (ACL ~pattern)"]


def _size(text: str) -> int:
    units = {"K": 1 << 10, "M": 1 << 20}
    return int(text[:-1]) * units[text[-1]] if text[-1] in units else int(text)


class Subscriber:
    """A connection for PSUBSCRIBE and PUNSUBSCRIBE: each call sends one
    and reads its reply (an array of three), skipping the messages before
    it (redis-py's client waits for more)."""

    def __init__(self, port: int, timeout: float) -> None:
        import socket

        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.file = self.sock.makefile("rb")

    def call(self, *args: bytes) -> None:
        import redis

        self.sock.sendall(b"*%d\r\n" % len(args) + b"".join(b"$%d\r\n%s\r\n" % (len(a), a) for a in args))
        try:
            while self._reply()[0] != args[0].lower():
                pass
        except OSError as e:  # socket.timeout
            raise redis.TimeoutError(str(e)) from None

    def _reply(self) -> list[bytes]:
        head = self.file.readline()
        if not head:  # closed: the reply passed the pubsub output buffer limit
            raise ConnectionResetError("closed by the server")
        out = []
        for _ in range(int(head[1:])):  # "*3": kind, name, count
            line = self.file.readline()
            out.append(self.file.read(int(line[1:]) + 2)[:-2] if line[:1] == b"$" else line[1:-2])
        return out


class Bench:
    """One server, its clients, and a PING from another client every 2 ms
    while a command is timed (the longest wait is kept)."""

    def __init__(self, start: Callable[[], object], timeout: float) -> None:
        self.start, self.timeout = start, timeout
        self.server: object = None
        self.keys = -1
        self._up()

    def _up(self) -> None:
        import redis
        from redis.backoff import NoBackoff
        from redis.retry import Retry

        self.server = self.start()
        port = self.server.port  # type: ignore[attr-defined]
        self.c, self.user, self.probe = (
            redis.Redis(port=port, socket_timeout=self.timeout, retry=Retry(NoBackoff(), 0)) for _ in range(3)
        )
        self.sub = Subscriber(port, self.timeout)
        self.keys = -1

    def restart(self) -> None:
        self.server.stop()  # type: ignore[attr-defined]
        self._up()

    def load(self, n: int) -> None:
        if n == self.keys:
            return
        self.c.flushall()
        for k in range(0, n, 1000):
            self.c.mset({b"key:%d" % i: b"v" for i in range(k, min(n, k + 1000))})
            self.c.hset(b"hash", mapping={b"field:%d" % i: b"v" for i in range(k, min(n, k + 1000))})
        self.keys = n

    def run(self, command: str, pattern: bytes) -> Callable[[], object]:
        c, p = self.c, pattern
        calls: dict[str, Callable[[], object]] = {
            "KEYS": lambda: c.execute_command("KEYS", p),
            "SCAN": lambda: c.execute_command("SCAN", 0, "MATCH", p, "COUNT", 10_000),
            "HSCAN": lambda: c.execute_command("HSCAN", "hash", 0, "MATCH", p, "COUNT", 10_000),
            "PSUBSCRIBE": lambda: self.sub.call(b"PSUBSCRIBE", p),
            "PUBLISH": lambda: c.execute_command("PUBLISH", "key:1", "m"),
            "PUNSUBSCRIBE": lambda: self.sub.call(b"PUNSUBSCRIBE", p),
            "PUBSUB CHANNELS": lambda: c.execute_command("PUBSUB", "CHANNELS", p),
            "CONFIG GET": lambda: c.execute_command("CONFIG", "GET", p),
            "COMMAND LIST": lambda: c.command_list(pattern=p),  # (execute_command parses as COMMAND)
            "FUNCTION LIST": lambda: c.execute_command("FUNCTION", "LIST", "LIBRARYNAME", p),
            "ACL SETUSER": lambda: c.execute_command(
                "ACL", "SETUSER", "u", "on", "nopass", b"~" + p, "+@all"
            ),
            "GET (ACL ~pattern)": lambda: self.user.execute_command("GET", "key:1"),
        }
        return calls[command]

    def time(self, command: str, pattern: bytes) -> tuple[float, float] | None:
        """Seconds the command took, and the longest PING meanwhile; None:
        no reply in time."""
        import redis

        if command == "GET (ACL ~pattern)":
            self.user.execute_command("AUTH", "u", "x")
        fn = self.run(command, pattern)
        done = threading.Event()
        waits = [0.0]

        def ping() -> None:
            while not done.is_set():
                t = time.perf_counter()
                try:
                    self.probe.ping()
                except redis.RedisError:
                    waits.append(self.timeout)
                    return
                waits.append(time.perf_counter() - t)
                done.wait(0.002)

        thread = threading.Thread(target=ping, daemon=True)
        thread.start()
        t = time.perf_counter()
        try:
            fn()
        except redis.TimeoutError:
            return None
        except redis.ResponseError:  # an error reply is a reply (GET: no permission)
            pass
        except ConnectionResetError:  # so is closing (a pubsub reply past its buffer limit)
            self.sub = Subscriber(self.server.port, self.timeout)  # type: ignore[attr-defined]
        finally:
            elapsed = time.perf_counter() - t
            done.set()
            thread.join()
        if command == "GET (ACL ~pattern)":
            self.user.execute_command("AUTH", "default", "x")
        return elapsed, max(waits)


def servers(args: argparse.Namespace) -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from tests.support.servers import start_redis, start_shardkv

    root = Path(args.root).resolve() if args.root else Path(__file__).resolve().parent.parent
    benches = {
        "redis-server": Bench(start_redis, args.timeout),
        "shardkv": Bench(lambda: start_shardkv(shards=args.shards, root=root), args.timeout),
    }
    sizes = [_size(s) for s in args.sizes.split(",")]
    skipped: set[tuple[str, str, str]] = set()
    print("| shape | size | command | keys | redis-server ms | shardkv ms | ratio | shardkv PING max ms |")
    print("|---|---|---|---|---|---|---|---|")
    try:
        for shape, make in SERVER_SHAPES.items():
            if args.names and not any(n in shape for n in args.names):
                continue
            for size in sizes:
                pattern = make(size)
                runs = [(c, n) for c in KEYSPACE_COMMANDS for n in (0, 1, 10_000)]
                runs += [(c, 0) for c in OTHER_COMMANDS]
                for command, keys in runs:
                    row: dict[str, tuple[float, float] | None] = {}
                    cells = []
                    for name, bench in benches.items():
                        if (name, shape, command) in skipped:
                            row[name] = None
                            cells.append("skipped")
                            continue
                        bench.load(keys)
                        runs_ = [bench.time(command, pattern) for _ in range(3 if size <= 1 << 20 else 1)]
                        row[name] = None if None in runs_ else min(runs_)  # type: ignore[type-var]
                        if row[name] is None:
                            skipped.add((name, shape, command))
                            bench.restart()
                        r = row[name]
                        cells.append(f"{r[0] * 1000:.1f}" if r else f"> {args.timeout * 1000:.0f}")
                    real, ours = row["redis-server"], row["shardkv"]
                    ratio = f"{ours[0] / real[0]:.1f}x" if real and ours else "-"
                    wait = f"{ours[1] * 1000:.1f}" if ours else "-"
                    label = f"{size >> 20} MiB" if size >= 1 << 20 else f"{size >> 10} KiB"
                    print(
                        f"| {shape} | {label} | {command} | {keys} | {' | '.join(cells)} | {ratio} | {wait} |"
                    )
                    sys.stdout.flush()
    finally:
        for bench in benches.values():
            bench.server.stop()  # type: ignore[attr-defined]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*")
    parser.add_argument("--root", help="a checkout whose shardkv to time")
    parser.add_argument("--servers", action="store_true", help="time commands on redis-server and shardkv")
    parser.add_argument("--sizes", default="64K,1M,16M,100M")
    parser.add_argument("--shards", type=int, default=4)
    parser.add_argument("--timeout", type=float, default=30.0)
    args = parser.parse_args()
    if args.servers:
        servers(args)
        return
    if args.root:
        sys.path.insert(0, args.root)
    from shardkv.protocol import glob

    compile_: Callable[[bytes, bool], Callable[[bytes], bool]] = getattr(glob, "_compile", None) or (
        lambda p, nocase: glob.compile_glob.__wrapped__(p, nocase)  # type: ignore[attr-defined]
    )
    for name, pattern, string, nocase in SHAPES:
        if args.names and not any(n in name for n in args.names):
            continue
        t0 = time.perf_counter()
        match = compile_(pattern, nocase)
        t1 = time.perf_counter()
        first = match(string)
        t2 = time.perf_counter()
        match(string)
        t3 = time.perf_counter()
        print(
            f"{name:26s} parse {t1 - t0:7.3f}s  first {t2 - t1:7.3f}s  again {t3 - t2:7.3f}s  -> {first}",
            flush=True,
        )


if __name__ == "__main__":
    main()
