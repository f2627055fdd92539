"""Peak memory of very large replies and values, against redis-server in
the same run (issue 15, finding 7).

    python benchmarks/bigreplies.py [--shards 4] [--count 10000000] [--mb 100] [--root DIR]

* ``SADD s 1..1000`` then ``SRANDMEMBER s -COUNT`` (the issue's figure is
  for -100000000; the default is smaller to fit a 2-core machine);
* ``SET`` then ``GET`` of one ``--mb`` MB value.

The client is a raw socket that reads and discards the reply, so only the
server's memory is measured: the summed RSS of all its processes, sampled
every 10 ms while the command runs, minus the RSS before it.  ``--root``
runs the shardkv of another checkout, to measure an older version.
"""

from __future__ import annotations

import argparse
import socket
import sys
import threading
import time
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.support.servers import ServerProcess, start_redis, start_shardkv  # noqa: E402


def rss(procs: list[psutil.Process]) -> int:
    total = 0
    for p in procs:
        try:
            total += p.memory_info().rss
        except psutil.NoSuchProcess:
            pass
    return total


class Peak:
    """The highest summed RSS of ``procs`` while the block runs."""

    def __init__(self, procs: list[psutil.Process]) -> None:
        self.procs = procs
        self.peak = 0
        self._stop = threading.Event()

    def __enter__(self) -> Peak:
        self.base = rss(self.procs)
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, rss(self.procs))
            time.sleep(0.01)

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, rss(self.procs))


def command(*args: bytes) -> bytes:
    return b"*%d\r\n" % len(args) + b"".join(b"$%d\r\n%s\r\n" % (len(a), a) for a in args)


def roundtrip(sock: socket.socket, request: bytes, reply_size: int | None = None) -> int:
    """Send ``request``, read one reply and discard it; its size in bytes.
    ``reply_size`` None: a one-line reply."""
    sock.sendall(request)
    got = 0
    buf = bytearray(1 << 20)
    if reply_size is None:
        data = b""
        while not data.endswith(b"\r\n"):
            data += sock.recv(65536)
        return len(data)
    while got < reply_size:
        n = sock.recv_into(buf)
        if not n:
            raise ConnectionError("closed")
        got += n
    return got


def srandmember_reply_size(count: int) -> int:
    # Members 1..1000: "$1\r\nX\r\n" is 7 bytes for 1-9, 8 for 10-99, 9 for
    # 100-999, 10 for 1000; the header "*N\r\n" is exact.  Reading stops at
    # the header's size plus the smallest possible body, then drains.
    return len(b"*%d\r\n" % count) + 7 * count


def drain(sock: socket.socket) -> None:
    sock.settimeout(0.5)
    try:
        while sock.recv(1 << 20):
            pass
    except TimeoutError:
        pass
    sock.settimeout(None)


def measure(server: ServerProcess, count: int, mb: int) -> dict[str, float]:
    root = psutil.Process(server.proc.pid)
    procs = [root, *root.children(recursive=True)]
    sock = socket.create_connection(("127.0.0.1", server.port))
    out = {}
    roundtrip(sock, command(b"SADD", b"s", *[b"%d" % i for i in range(1, 1001)]))
    with Peak(procs) as p:
        roundtrip(sock, command(b"SRANDMEMBER", b"s", b"-%d" % count), srandmember_reply_size(count))
        drain(sock)
    out[f"SRANDMEMBER s -{count}"] = (p.peak - p.base) / 2**20
    value = b"x" * (mb << 20)
    with Peak(procs) as p:
        roundtrip(sock, command(b"SET", b"big", value))
        roundtrip(sock, command(b"GET", b"big"), len(value) + len(b"$%d\r\n\r\n" % len(value)))
    out[f"SET+GET {mb} MB"] = (p.peak - p.base) / 2**20
    sock.close()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--shards", type=int, default=4)
    ap.add_argument("--count", type=int, default=10_000_000)
    ap.add_argument("--mb", type=int, default=100)
    ap.add_argument("--root", type=Path, default=Path(__file__).resolve().parent.parent)
    opts = ap.parse_args()
    results = {}
    for name, start in (
        ("redis-server", start_redis),
        (f"shardkv-{opts.shards}", lambda: start_shardkv(shards=opts.shards, root=opts.root.resolve())),
    ):
        server = start()
        try:
            results[name] = measure(server, opts.count, opts.mb)
        finally:
            server.stop()
    real, ours = results.values()
    print(f"| peak RSS above idle, MB | redis-server | shardkv-{opts.shards} | ratio |")
    print("|---|---|---|---|")
    for case in real:
        print(f"| {case} | {real[case]:.0f} | {ours[case]:.0f} | {ours[case] / max(real[case], 1):.2f} |")


if __name__ == "__main__":
    main()
