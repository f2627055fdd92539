"""Fuzzing: the parser alone, shardkv against redis-server, and a live storm.

1. The parser is fed random bytes and mutated RESP (Hypothesis, then a
   seeded fuzzer for volume).  It may only return commands, wait for more
   data, or raise ProtocolError with one of Redis's texts, and it must do
   the same whatever way the bytes are split into reads.
2. Mutated RESP goes to redis-server and to shardkv over raw sockets: the
   reply bytes, and whether the connection was closed, must be equal.
3. Many connections send garbage to a live shardkv while a well-behaved
   client runs commands and checks every reply: no process dies, and the
   client never sees an error.

The number of inputs each part tried is printed (run with ``-s``) and
asserted at the end, in test_inputs_tried.
"""

from __future__ import annotations

import random
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import psutil
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shardkv.protocol import errors
from shardkv.protocol.resp import ProtocolError, RequestParser, encode_command
from tests.support.rawsocket import exchange_many, read_until_quiet
from tests.support.servers import start_shardkv

pytestmark = pytest.mark.slow

TRIED = {"hypothesis": 0, "seeded": 0, "differential": 0, "live garbage": 0}

MESSAGES = {
    errors.PROTO_MULTIBULK_LEN,
    errors.PROTO_BULK_LEN,
    errors.PROTO_BIG_INLINE,
    errors.PROTO_UNBALANCED,
    errors.PROTO_BIG_MBULK_COUNT,
    errors.PROTO_BIG_BULK_COUNT,
    errors.PROTO_UNAUTH_MULTIBULK,
    errors.PROTO_UNAUTH_BULK,
}


def run_parser(chunks: list[bytes], authenticated: bool = True) -> tuple[list, str | None, int]:
    """Feed ``chunks``; return (commands, error message or None, bytes held)."""
    parser = RequestParser(authenticated=authenticated, max_bulk_len=1 << 20)
    commands: list = []
    for chunk in chunks:
        try:
            got = parser.feed(chunk)
            while not authenticated and got:  # one at a time: ask for the rest
                commands += got
                got = parser.feed(b"")
            commands += got
        except ProtocolError as e:
            assert e.message in MESSAGES or e.message.startswith("ERR Protocol error: expected '$', got ")
            return commands + e.commands, e.message, -1
    for args, raw in commands:
        assert isinstance(args, list) and args and all(type(a) is bytes for a in args)
        assert raw is None or type(raw) is bytes
        if raw is not None:  # the raw bytes parse back to the same arguments
            assert [a for a, _ in RequestParser().feed(raw)] == [args]
    return commands, None, parser.buffered()


def split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    return [data[a:b] for a, b in zip([0, *points], [*points, len(data)], strict=True)]


def check_input(data: bytes, cuts: list[int], authenticated: bool = True) -> None:
    whole = run_parser([data], authenticated)
    assert run_parser(split(data, cuts), authenticated) == whole
    if len(data) < 300:
        assert run_parser([data[i : i + 1] for i in range(len(data))], authenticated) == whole


# -- inputs --------------------------------------------------------------------

NAMES = [b"PING", b"ECHO", b"GET", b"SET", b"EXISTS", b"STRLEN"]
TOKENS = [b"*", b"$", b"\r", b"\n", b"\r\n", b"0", b"1", b"-", b"9", b'"', b"'", b"\\", b"\x00", b" ", b"\v"]


def valid_request(rng: random.Random) -> bytes:
    args = [rng.choice(NAMES)] + [
        bytes(rng.choice(b"ab\r\n\x00\xff x") for _ in range(rng.randrange(6)))
        for _ in range(rng.randrange(4))
    ]
    if rng.random() < 0.25:
        return b" ".join(a for a in args if a and b"\r" not in a and b"\n" not in a) + b"\r\n"
    return encode_command(args)


def mutate(rng: random.Random, data: bytes) -> bytes:
    b = bytearray(data)
    for _ in range(rng.randrange(1, 4)):
        op = rng.randrange(5)
        i = rng.randrange(len(b) + 1)
        if op == 0 and b:
            b[min(i, len(b) - 1)] = rng.randrange(256)
        elif op == 1:
            b[i:i] = rng.choice(TOKENS)
        elif op == 2 and b:
            del b[i : i + rng.randrange(1, 4)]
        elif op == 3:
            b[i:i] = b[i : i + rng.randrange(1, 8)]
        else:
            b[i:i] = str(rng.choice([0, -1, 10, 11, 16384, 16385, 2**31, 2**63])).encode()
    return bytes(b)


def fuzz_input(rng: random.Random) -> bytes:
    data = b"".join(valid_request(rng) for _ in range(rng.randrange(1, 4)))
    return mutate(rng, data) if rng.random() < 0.9 else data


# -- 1. the parser -----------------------------------------------------------------


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=200), st.lists(st.integers(0, 1000), max_size=6), st.booleans())
def test_parser_random_bytes(data, cuts, authenticated):
    TRIED["hypothesis"] += 1
    check_input(data, cuts, authenticated)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.randoms(use_true_random=False), st.lists(st.integers(0, 1000), max_size=6), st.booleans())
def test_parser_mutated_resp(rng, cuts, authenticated):
    TRIED["hypothesis"] += 1
    check_input(fuzz_input(rng), cuts, authenticated)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.sampled_from(TOKENS + [b"PING", b"ECHO", b"x"]), max_size=40), st.lists(st.integers()))
def test_parser_token_soup(tokens, cuts):
    TRIED["hypothesis"] += 1
    check_input(b"".join(tokens), cuts)


def test_parser_seeded():
    rng = random.Random(7)
    for _ in range(20_000):
        data = fuzz_input(rng)
        check_input(data, [rng.randrange(1000) for _ in range(3)], authenticated=rng.random() < 0.8)
        TRIED["seeded"] += 1


def test_parser_big_inputs():
    """Mutations around the 64 KB and bulk-size limits."""
    rng = random.Random(11)
    for _ in range(40):
        size = rng.choice([65535, 65536, 65537, 70000, 200_000])
        data = rng.choice(
            [
                b"ECHO " + b"x" * size + b"\r\n",
                b"*1\r\n$%d\r\n" % size + b"y" * size + b"\r\n",
                b"*" + b"1" * size,
                b"*1\r\n$" + b"2" * size + b"\r\n",
                b"GET " + b"\x00" * size,
            ]
        )
        data = mutate(rng, data) if rng.random() < 0.5 else data
        check_input(data, [rng.randrange(size) for _ in range(4)])
        step = rng.choice([1, 997, 4096])  # long lines collected across many reads
        assert run_parser([data[i : i + step] for i in range(0, len(data), step)]) == run_parser([data])
        TRIED["seeded"] += 1


# -- 2. shardkv against redis-server ---------------------------------------------------


WRITES = {b"set"}
READS = {b"get", b"exists", b"strlen"}


def rounds(inputs: list[bytes], most: int = 100) -> list[list[int]]:
    """The inputs' indexes in rounds of at most ``most`` connections run at
    once, a round after the previous one is over, so that no two inputs of
    one round touch a key that one of them writes (as the parser reads them,
    the server's parser: every argument after a key command's name counts
    as a key).  Within a round the connections run concurrently, and Redis
    itself does not order concurrent connections (a SET on one and an EXISTS
    of the same key on another may come in either order, and with several
    acceptors they do); so the replies are then the same whatever the
    interleaving, and a difference is shardkv's, not the schedule's.  A
    reader or writer comes in a later round than every earlier input that
    writes its keys, a writer also later than their earlier readers."""
    sizes: list[int] = []
    placed: list[int] = []
    last_write: dict[bytes, int] = {}
    last_read: dict[bytes, int] = {}
    for data in inputs:
        try:
            commands = [args for args, _ in RequestParser().feed(data)]
        except ProtocolError as e:
            commands = [args for args, _ in e.commands]
        reads: set[bytes] = set()
        writes: set[bytes] = set()
        for args in commands:
            name = args[0].lower()
            if name in WRITES:
                writes.update(args[1:])
            elif name in READS:
                reads.update(args[1:])
        at = max(
            [0]
            + [last_write.get(k, -1) + 1 for k in reads | writes]
            + [last_read.get(k, -1) + 1 for k in writes]
        )
        while at < len(sizes) and sizes[at] >= most:
            at += 1
        if at == len(sizes):
            sizes.append(0)
        sizes[at] += 1
        for k in writes:
            last_write[k] = max(last_write.get(k, -1), at)
        for k in reads:
            last_read[k] = max(last_read.get(k, -1), at)
        placed.append(at)
    out: list[list[int]] = [[] for _ in sizes]
    for i, at in enumerate(placed):
        out[at].append(i)
    return out


def exchange_in_rounds(port: int, inputs: list[bytes], order: list[list[int]]) -> list[tuple[bytes, bool]]:
    results: list = [None] * len(inputs)
    for indexes in order:
        for i, result in zip(
            indexes, exchange_many(port, [inputs[i] for i in indexes], idle=0.4), strict=True
        ):
            results[i] = result
    return results


def test_differential_against_redis(ports):
    """The same mutated RESP to both servers: the same bytes back, the same close."""
    rng = random.Random(3)
    inputs = [fuzz_input(rng) for _ in range(300)]
    inputs += [b"*1\r\n$4\r\nPING\r\n" + bytes([c]) + b"\r\n" for c in range(256)]  # expected '$', got c
    order = rounds(inputs)
    # The two servers are independent: each runs its rounds beside the
    # other's (each round ends with 0.4 s of quiet, 16 rounds here).
    with ThreadPoolExecutor(2) as pool:
        real_run = pool.submit(exchange_in_rounds, ports["redis"], inputs, order)
        ours_run = pool.submit(exchange_in_rounds, ports["shardkv"], inputs, order)
        real, ours = real_run.result(), ours_run.result()
    TRIED["differential"] += len(inputs)
    diffs = [(data, r, o) for data, r, o in zip(inputs, real, ours, strict=True) if r != o]
    assert not diffs, "\n".join(f"{d!r}:\n  redis   {r!r}\n  shardkv {o!r}" for d, r, o in diffs[:5])


# -- 3. a live storm of garbage --------------------------------------------------------


@pytest.fixture(scope="module")
def storm_server():
    proc = start_shardkv(shards=3)
    yield proc
    proc.stop()


def process_tree(proc) -> dict[int, str]:
    parent = psutil.Process(proc.proc.pid)
    return {p.pid: p.status() for p in [parent, *parent.children(recursive=True)]}


def test_garbage_storm_with_normal_traffic(storm_server):
    port = storm_server.port
    before = process_tree(storm_server)
    assert len(before) >= 1 + 1 + 3  # supervisor, acceptor, 3 workers (+ multiprocessing's helper)
    stop = threading.Event()
    sent = [0] * 16
    failures: list[str] = []

    def garbage(n: int) -> None:
        rng = random.Random(100 + n)
        while not stop.is_set():
            data = rng.choice([fuzz_input(rng), rng.randbytes(rng.randrange(1, 3000))])
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
                    s.sendall(data)
                    read_until_quiet(s, 0.05)
            except OSError:
                pass
            sent[n] += 1

    threads = [threading.Thread(target=garbage, args=(n,), daemon=True) for n in range(16)]
    for t in threads:
        t.start()
    import redis

    client = redis.Redis(port=port, socket_timeout=30)
    try:
        deadline = time.monotonic() + 5
        i = 0
        while time.monotonic() < deadline:
            # Garbage may hold valid commands too, but never these key names.
            key = f"norm:{i % 50}".encode()
            value = b"v\x00\r\n%d" % i
            try:
                assert client.set(key, value) is True
                assert client.get(key) == value
                assert client.incr("norm:counter") == i + 1
                assert client.mset({"norm:a": i, "norm:b": i, "norm:c": i}) is True
                assert client.mget("norm:a", "norm:b", "norm:c") == [b"%d" % i] * 3
                assert client.echo(value) == value
            except (AssertionError, redis.RedisError) as e:
                failures.append(f"{i}: {e!r}")
                break
            i += 1
    finally:
        stop.set()
        for t in threads:
            t.join(10)
        client.close()
    TRIED["live garbage"] += sum(sent)
    assert not failures, failures
    assert i > 50
    after = process_tree(storm_server)
    assert after.keys() == before.keys()  # same pids, none restarted or dead
    assert all(status != psutil.STATUS_ZOMBIE for status in after.values())


def test_inputs_tried():
    print("\nfuzz inputs tried:", TRIED, "total", sum(TRIED.values()))
    assert TRIED["hypothesis"] >= 500
    assert TRIED["seeded"] >= 20_000
