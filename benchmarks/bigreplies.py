"""Peak memory of very large replies and values, against redis-server in
the same run (issue 15, finding 7).

    python benchmarks/bigreplies.py [--shards 4] [--count 10000000] [--items 2000000] [--mb 100]
                                    [--cases srandmember,hrandfield,zrandmember,lrange,keys,setget]
                                    [--root DIR]

* ``SADD s 1..1000`` then ``SRANDMEMBER s -COUNT`` (the issue's figure is
  for -100000000; the default is smaller to fit a 2-core machine); the
  same with ``HRANDFIELD h -COUNT`` and ``ZRANDMEMBER z -COUNT`` on 1000
  fields / members;
* ``LRANGE l 0 -1`` of a list of ``--items`` elements;
* ``KEYS *`` with ``--items`` keys (spread over every shard);
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


def read_reply(sock: socket.socket, buf: bytearray) -> int:
    """Read one whole reply and discard it; its size in bytes.  The replies
    here are an array of bulk strings, a bulk string, or one line, and no
    element holds CRLF, so the reply ends at the CRLF its header foretells
    (counted at C speed, so that the client keeps up with the server)."""
    view = memoryview(buf)
    head = b""
    while b"\r\n" not in head:
        n = sock.recv_into(view)
        if not n:
            raise ConnectionError("closed")
        head += view[:n]
    total = len(head)
    first, _, rest = head.partition(b"\r\n")
    if first[:1] == b"*":
        need = 2 * int(first[1:])
    elif first[:1] == b"$" and int(first[1:]) >= 0:
        need = 1
    else:
        need = 0
    need -= rest.count(b"\r\n")
    last = rest[-1:]
    while need > 0:
        n = sock.recv_into(view)
        if not n:
            raise ConnectionError("closed")
        total += n
        need -= bytes(view[:n]).count(b"\r\n")
        if last == b"\r" and view[0] == 10:
            need -= 1
        last = bytes(view[n - 1 : n])
    assert need == 0, "more than one reply"
    return total


def load(sock: socket.socket, commands: list[bytes], buf: bytearray) -> None:
    """Send commands pipelined, 1000 at a time, and read their one-line replies."""
    view = memoryview(buf)
    for start in range(0, len(commands), 1000):
        batch = commands[start : start + 1000]
        sock.sendall(b"".join(batch))
        need, last = len(batch), b""
        while need > 0:
            n = sock.recv_into(view)
            if not n:
                raise ConnectionError("closed")
            data = last + bytes(view[:n])
            need -= data.count(b"\r\n")
            last = data[-1:] if data[-1:] == b"\r" else b""
            assert not data.startswith(b"-"), data[:200]


def measure(server: ServerProcess, count: int, items: int, mb: int, cases: list[str]) -> dict[str, float]:
    root = psutil.Process(server.proc.pid)
    procs = [root, *root.children(recursive=True)]
    sock = socket.create_connection(("127.0.0.1", server.port))
    buf = bytearray(1 << 20)
    out = {}

    def peak(name: str, request: bytes) -> None:
        with Peak(procs) as p:
            sock.sendall(request)
            read_reply(sock, buf)
        out[name] = (p.peak - p.base) / 2**20

    members = [b"%d" % i for i in range(1, 1001)]
    if "srandmember" in cases:
        load(sock, [command(b"SADD", b"s", *members)], buf)
        peak(f"SRANDMEMBER s -{count}", command(b"SRANDMEMBER", b"s", b"-%d" % count))
    if "hrandfield" in cases:
        load(sock, [command(b"HSET", b"h", *[m for m in members for _ in (0, 1)])], buf)
        peak(f"HRANDFIELD h -{count}", command(b"HRANDFIELD", b"h", b"-%d" % count))
    if "zrandmember" in cases:
        load(sock, [command(b"ZADD", b"z", *[m for m in members for _ in (0, 1)])], buf)
        peak(f"ZRANDMEMBER z -{count}", command(b"ZRANDMEMBER", b"z", b"-%d" % count))
    if "lrange" in cases:
        step = 10000
        load(
            sock,
            [
                command(b"RPUSH", b"l", *[b"%d" % i for i in range(s, min(s + step, items))])
                for s in range(0, items, step)
            ],
            buf,
        )
        peak(f"LRANGE l 0 -1 ({items} elements)", command(b"LRANGE", b"l", b"0", b"-1"))
        load(sock, [command(b"DEL", b"l")], buf)
    if "keys" in cases:
        load(sock, [command(b"SET", b"key:%d" % i, b"1") for i in range(items)], buf)
        peak(f"KEYS * ({items} keys)", command(b"KEYS", b"*"))
    if "setget" in cases:
        value = b"x" * (mb << 20)
        with Peak(procs) as p:
            sock.sendall(command(b"SET", b"big", value))
            read_reply(sock, buf)
            sock.sendall(command(b"GET", b"big"))
            read_reply(sock, buf)
        out[f"SET+GET {mb} MB"] = (p.peak - p.base) / 2**20
    sock.close()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--shards", type=int, default=4)
    ap.add_argument("--count", type=int, default=10_000_000)
    ap.add_argument("--items", type=int, default=2_000_000)
    ap.add_argument("--mb", type=int, default=100)
    ap.add_argument("--cases", default="srandmember,hrandfield,zrandmember,lrange,keys,setget")
    ap.add_argument("--root", type=Path, default=Path(__file__).resolve().parent.parent)
    opts = ap.parse_args()
    cases = opts.cases.split(",")
    results = {}
    for name, start in (
        ("redis-server", start_redis),
        (f"shardkv-{opts.shards}", lambda: start_shardkv(shards=opts.shards, root=opts.root.resolve())),
    ):
        server = start()
        try:
            results[name] = measure(server, opts.count, opts.items, opts.mb, cases)
        finally:
            server.stop()
    real, ours = results.values()
    print(f"| peak RSS above idle, MB | redis-server | shardkv-{opts.shards} | ratio |")
    print("|---|---|---|---|")
    for case in real:
        print(f"| {case} | {real[case]:.0f} | {ours[case]:.0f} | {ours[case] / max(real[case], 1):.2f} |")


if __name__ == "__main__":
    main()
