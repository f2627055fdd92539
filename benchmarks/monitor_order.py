"""Does MONITOR at K=2 show a command after one whose reply came before it?

    python benchmarks/monitor_order.py [--rounds 50]

Starts shardkv with ``--shards 2 --acceptors 2``, a monitor on acceptor 0,
and for ``--rounds`` rounds: ``SET pN x`` through one connection, its
reply read, then ``ECHO eN`` through another (so the SET happened before
the ECHO in real time, and Redis, one process, shows the SET first).  The
rounds are played in three placements: SET on acceptor 1 and ECHO on 0
(the monitor's), SET on 0 and ECHO on 1, both on 1.  A round *fails* when
the monitor shows ``eN`` before ``pN``.  Prints the failures by placement.
See README.md, "MONITOR": before the replies waited for their lines
(``monitor.Fence``), the first placement failed in every round.
"""

from __future__ import annotations

import argparse
import socket
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.blocking_order import K, client_on  # noqa: E402
from tests.support.servers import start_shardkv  # noqa: E402

PLACEMENTS = {"SET on 1, ECHO on 0": (1, 0), "SET on 0, ECHO on 1": (0, 1), "both on 1": (1, 1)}


class Monitor:
    """A raw MONITOR connection on acceptor 0, read line by line."""

    def __init__(self, port: int) -> None:
        conn = client_on(port, 0)
        self.sock: socket.socket = conn.sock
        self.sock.settimeout(10)
        self.sock.sendall(b"MONITOR\r\n")
        self.buf = b""
        while b"+OK\r\n" not in self.buf:
            self.buf += self.sock.recv(65536)
        self.buf = self.buf.split(b"+OK\r\n", 1)[1]

    def line(self) -> bytes:
        while b"\r\n" not in self.buf:
            self.buf += self.sock.recv(65536)
        got, self.buf = self.buf.split(b"\r\n", 1)
        return got

    def first_of(self, a: bytes, b: bytes) -> bytes:
        """Which of the two quoted arguments shows first (other lines,
        such as the connections' CLIENT ID, are skipped); reads up to both."""
        seen: list[bytes] = []
        while len(seen) < 2:
            line = self.line()
            seen += [w for w in (a, b) if b'"%s"' % w in line]
        return seen[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=50, help="rounds per placement")
    args = parser.parse_args()
    server = start_shardkv(shards=2, acceptors=K)
    try:
        monitor = Monitor(server.port)
        for name, (first, second) in PLACEMENTS.items():
            a, b = client_on(server.port, first), client_on(server.port, second)
            failed = 0
            for i in range(args.rounds):
                p, e = f"p{first}{second}.{i}", f"e{first}{second}.{i}"
                a.command("SET", p, "x")
                b.command("ECHO", e)
                failed += monitor.first_of(p.encode(), e.encode()) == e.encode()
            print(f"{name}: ECHO shown first in {failed} of {args.rounds} rounds", flush=True)
            a.close()
            b.close()
    finally:
        server.stop()


if __name__ == "__main__":
    main()
