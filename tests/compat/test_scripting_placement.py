"""A cross-shard script runs on the shard whose keys it found largest.

Once a script's runs have found one shard's keys large (a queue's hash of
messages), its later cross-shard runs execute on that shard, so those keys
no longer cross pipes (``AtomicOp``'s ``exported``).  Seen from outside
nothing changes: each run is atomic, also among concurrent ones, and the
replies and the data are Redis's.  (That the run moved, and a worker
killed in the middle of it: ``tests/system/test_crash_atomic.py``.)
"""

from __future__ import annotations

import threading

import redis

from tests.support.placement import key_on
from tests.support.resp import RespClient

# Declares only its counter; builds the names of the hash and the list
# (other shards' keys) from its arguments, as Dramatiq's dispatcher does.
WRITE = (
    "local n = redis.call('incr', KEYS[1])\n"
    "redis.call('hset', ARGV[1], 'n' .. n, ARGV[3])\n"
    "redis.call('rpush', ARGV[2], n)\n"
    "return n"
)
READ = "return {redis.call('get', KEYS[1]), redis.call('hlen', KEYS[2]), redis.call('llen', KEYS[3])}"
BIG = 200  # fields of 200 bytes: a hash of about 40 KB
THREADS, CALLS, READS = 4, 40, 200


def _run(port: int, counter: str, big: str, listed: str) -> dict:
    """The writers and a reader on one server: what they saw and left."""
    setup = redis.Redis(port=port, socket_timeout=30)
    setup.hset(big, mapping={f"f{i}": b"x" * 200 for i in range(BIG)})
    write = setup.script_load(WRITE)
    read = setup.script_load(READ)
    replies: list[int] = []
    torn: list = []
    errors: list[str] = []
    writing = threading.Event()
    writing.set()

    def writer() -> None:
        c = redis.Redis(port=port, socket_timeout=30)
        try:
            for _ in range(CALLS):
                replies.append(c.evalsha(write, 1, counter, big, listed, b"v" * 100))
        except redis.RedisError as e:
            errors.append(repr(e))
        finally:
            c.close()

    def reader() -> None:
        c = redis.Redis(port=port, socket_timeout=30)
        try:
            for _ in range(READS):
                if not writing.is_set():
                    break
                n, fields, length = c.evalsha(read, 3, counter, big, listed)
                n = int(n or 0)
                if fields - BIG != n or length != n:
                    torn.append((n, fields, length))
        except redis.RedisError as e:
            errors.append(repr(e))
        finally:
            c.close()

    # Once alone, so that its first run's escape is behind it; then at once.
    replies.append(setup.evalsha(write, 1, counter, big, listed, b"v" * 100))
    threads = [threading.Thread(target=writer) for _ in range(THREADS)]
    watcher = threading.Thread(target=reader)
    for t in (*threads, watcher):
        t.start()
    for t in threads:
        t.join(120)
    writing.clear()
    watcher.join(120)
    out = {
        "replies": sorted(replies),
        "torn": torn,
        "errors": errors,
        "counter": setup.get(counter),
        "fields": setup.hlen(big),
        "list": sorted(int(x) for x in setup.lrange(listed, 0, -1)),
        "read": setup.evalsha(read, 3, counter, big, listed),
    }
    setup.close()
    return out


def test_concurrent_runs_where_the_largest_keys_are_stay_atomic(redis_and_shardkv_k12):
    real_port, ours_port, _acceptors = redis_and_shardkv_k12
    counter, listed = key_on(0, "counter", shards=2), key_on(0, "list", shards=2)
    big = key_on(1, "queue.msgs", shards=2)
    for port in (real_port, ours_port):
        with redis.Redis(port=port) as c:
            c.flushall()
    real = _run(real_port, counter, big, listed)
    ours = _run(ours_port, counter, big, listed)
    assert real["torn"] == [] and real["errors"] == []
    assert ours == real
    assert ours["replies"] == list(range(1, THREADS * CALLS + 2))


# Declares a key of shard 0, writes one of shard 1 named by ARGV[1] (it
# escapes), with a payload ARGV[2] that names no key.
PAYLOAD = "redis.call('set', KEYS[1], 'x'); redis.call('set', ARGV[1], string.len(ARGV[2])); return redis.call('get', ARGV[1])"


def _payloads(port: int, declared: str, named: list[str]) -> dict:
    """Escaping runs with a 4 MB argument while another client PINGs (with
    a generous bound per reply: compiling the argument as a pattern, as the
    acceptor once did, took 10 s and more for each run)."""
    c = redis.Redis(port=port, socket_timeout=60)
    sha = c.script_load(PAYLOAD)
    pings: list = []
    errors: list[str] = []
    stop = threading.Event()

    def ping() -> None:
        with RespClient(port, timeout=5) as p:  # redis-py would retry a timeout
            try:
                while not stop.is_set() and len(pings) < 1000:
                    pings.append(p.command("PING"))
                    stop.wait(0.01)
            except OSError as e:
                errors.append(type(e).__name__)

    pinger = threading.Thread(target=ping)
    pinger.start()
    payload = b"\x01v" * (2 << 20)
    replies = [c.evalsha(sha, 1, declared, key, payload) for key in named]
    stop.set()
    pinger.join()
    out = {"replies": replies, "values": [c.get(k) for k in named], "errors": errors, "pinged": bool(pings)}
    c.close()
    return out


def test_an_escaping_run_with_a_large_argument_does_not_stall_other_clients(redis_and_shardkv_k12):
    real_port, ours_port, _acceptors = redis_and_shardkv_k12
    declared = key_on(0, "payload-counter", shards=2)
    named = [key_on(1, f"payload-{i}", shards=2) for i in range(3)]
    for port in (real_port, ours_port):
        with redis.Redis(port=port) as c:
            c.flushall()
    real = _payloads(real_port, declared, named)
    ours = _payloads(ours_port, declared, named)
    assert real["errors"] == [] and real["replies"] == [str(4 << 20).encode()] * 3
    assert ours == real
