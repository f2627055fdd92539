"""Are blocked clients on different acceptors served in the order they sent?

    python benchmarks/blocking_order.py [--rounds 60] [--root DIR] [--stream]

Starts shardkv with ``--shards 4 --acceptors 2`` and plays Redis's own
``unit/type/list`` test "BRPOPLPUSH with multiple blocked clients" for
``--rounds`` rounds: ``rd1 BRPOPLPUSH blist target1 0`` and ``rd2
BRPOPLPUSH blist target2 0`` sent one after the other on two connections,
without waiting for either to block, then ``LPUSH blist foo`` from a
third; ``target1`` holds a string.  Redis serves rd1 first (WRONGTYPE, the
element stays) and then rd2 (``foo``).  rd1 and rd2 are on different
acceptors (swapped every round), and the LPUSH's connection is on rd1's
acceptor in half the rounds and on rd2's in the other half.  A round
*fails* when a reply is not Redis's within 3 s (rd1 still blocked: rd2
was queued first and took the element).  Prints the failures by the
LPUSH's placement, and the total.  ``--root`` runs another checkout's
``main.py`` (to compare with an older commit).

``--stream`` plays unit/type/stream-cgroups' "Blocking XREADGROUP: key
deleted" instead: ``rd XREADGROUP ... BLOCK 0 ... >`` sent without waiting,
then ``DEL mystream`` from ``r``, with rd and r on different acceptors in
half the rounds and on the same one in the other half.  Redis answers
``-UNBLOCKED the stream key no longer exists``; a round *fails* when the
XREADGROUP ran after the DEL (``-NOGROUP``).  ``--gap MS`` waits that long
between the two sends.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.support.resp import RespClient  # noqa: E402
from tests.support.servers import start_shardkv  # noqa: E402

K = 2
READ_TIMEOUT = 3.0


def client_on(port: int, index: int) -> RespClient:
    """A connection that reached acceptor ``index`` (acceptor i of K hands out ids i+1, i+1+K...)."""
    for _ in range(400):
        c = RespClient(port)
        if (int(c.command("CLIENT", "ID")) - 1) % K == index:  # type: ignore[arg-type]
            return c
        c.close()
    raise SystemExit("no connection landed on that acceptor")


def play(port: int, first: int, pusher: int) -> str | None:
    """One round, rd1 on acceptor ``first``, rd2 on the other, the LPUSH
    on ``pusher``: None if the replies are Redis's, else what came."""
    rd1, rd2, r = client_on(port, first), client_on(port, 1 - first), client_on(port, pusher)
    try:
        r.command("DEL", "blist{t}", "target1{t}", "target2{t}")
        r.command("SET", "target1{t}", "nolist")
        rd1.send("BRPOPLPUSH", "blist{t}", "target1{t}", "0")
        rd2.send("BRPOPLPUSH", "blist{t}", "target2{t}", "0")
        r.command("LPUSH", "blist{t}", "foo")
        got = []
        for c in (rd1, rd2):
            c.sock.settimeout(READ_TIMEOUT)
            try:
                got.append(c.read_reply())
            except TimeoutError:
                got.append("(blocked)")
        ok = str(got[0]).startswith("WRONGTYPE") and got[1] == b"foo"
        ok = ok and r.command("LRANGE", "target2{t}", "0", "-1") == [b"foo"]
        return None if ok else repr(got)
    finally:
        for c in (rd1, rd2, r):
            c.close()


def play_stream(port: int, reader: int, writer: int, gap: float) -> str | None:
    """One round of "Blocking XREADGROUP: key deleted", rd on acceptor
    ``reader`` and r on ``writer``: None if rd gets Redis's reply."""
    rd, r = client_on(port, reader), client_on(port, writer)
    try:
        r.command("DEL", "mystream")
        r.command("XADD", "mystream", "666", "f", "v")
        r.command("XGROUP", "CREATE", "mystream", "mygroup", "$")
        rd.send("XREADGROUP", "GROUP", "mygroup", "Alice", "BLOCK", "0", "STREAMS", "mystream", ">")
        if gap:
            time.sleep(gap)
        r.command("DEL", "mystream")
        rd.sock.settimeout(READ_TIMEOUT)
        try:
            got = rd.read_reply()
        except TimeoutError:
            got = "(blocked)"
        return None if "no longer exists" in str(got) else repr(got)
    finally:
        rd.close()
        r.close()


def main_stream(port: int, rounds: int, gap: float) -> None:
    failed = {"other": 0, "same": 0}
    for i in range(rounds):
        reader = i % 2
        placement = "other" if (i // 2) % 2 == 0 else "same"
        writer = 1 - reader if placement == "other" else reader
        outcome = play_stream(port, reader, writer, gap)
        if outcome is not None:
            failed[placement] += 1
            print(f"round {i}: rd on {reader}, DEL on the {placement} acceptor: {outcome}", flush=True)
    for placement, n in failed.items():
        print(f"DEL on the {placement} acceptor: {n} of about {rounds // 2} rounds failed")
    print(f"failed: {sum(failed.values())} of {rounds}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=60)
    parser.add_argument("--root", type=Path, default=None, help="a checkout to run (default: this one)")
    parser.add_argument("--stream", action="store_true", help="stream-cgroups' XREADGROUP + DEL instead")
    parser.add_argument("--gap", type=float, default=0.0, help="ms between the two sends (--stream)")
    args = parser.parse_args()
    server = start_shardkv(shards=4, acceptors=K, **({"root": args.root} if args.root else {}))
    if args.stream:
        try:
            main_stream(server.port, args.rounds, args.gap / 1000)
        finally:
            server.stop()
        return
    failed = {"rd1's": 0, "rd2's": 0}
    try:
        for i in range(args.rounds):
            first = i % 2
            placement = "rd1's" if (i // 2) % 2 == 0 else "rd2's"
            pusher = first if placement == "rd1's" else 1 - first
            outcome = play(server.port, first, pusher)
            if outcome is not None:
                failed[placement] += 1
                print(f"round {i}: rd1 on {first}, LPUSH on {placement} acceptor: {outcome}", flush=True)
    finally:
        server.stop()
    half = args.rounds // 2
    for placement, n in failed.items():
        print(f"LPUSH on {placement} acceptor: {n} of about {half} rounds failed")
    print(f"failed: {sum(failed.values())} of {args.rounds}")


if __name__ == "__main__":
    main()
