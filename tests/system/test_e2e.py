"""shardkv end to end: `python main.py` in a subprocess, driven by redis-py,
redis-cli, redis-benchmark and raw sockets."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import subprocess
import time

import psutil
import pytest
import redis
import redis.asyncio

from tests.support.servers import start_shardkv


@pytest.fixture(scope="module")
def server():
    proc = start_shardkv(shards=4)
    yield proc
    proc.stop()


@pytest.fixture
def client(server):
    c = redis.Redis(port=server.port)
    c.flushall()
    yield c
    c.close()


def raw(port: int, data: bytes, expect: int, timeout: float = 10.0) -> bytes:
    """Send ``data`` and read until ``expect`` bytes have arrived."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(data)
        got = b""
        while len(got) < expect:
            chunk = s.recv(65536)
            if not chunk:
                break
            got += chunk
        return got


def test_processes(server):
    # `ps` shows the acceptor (acceptors 0..K-1 with several) and four
    # workers, named by role.
    k = int(os.environ.get("SHARDKV_TEST_ACCEPTORS", "1"))
    acceptors = ["shardkv-accept"] if k == 1 else [f"shardkv-accept{i}" for i in range(k)]
    names = sorted(c.name() for c in psutil.Process(server.proc.pid).children())
    assert [n for n in names if n.startswith("shardkv")] == [
        *acceptors,
        "shardkv-shard0",
        "shardkv-shard1",
        "shardkv-shard2",
        "shardkv-shard3",
    ], names
    log = server.output()
    assert "acceptor pid=" in log
    for i in range(4):
        assert f"worker {i} pid=" in log


def test_redis_py_resp3_and_resp2(server):
    for protocol in (3, 2):
        c = redis.Redis(port=server.port, protocol=protocol)
        assert c.ping() is True
        assert c.set("k", "v", px=100_000) is True
        assert c.get("k") == b"v"
        assert 0 < c.pttl("k") <= 100_000
        hello = c.execute_command("HELLO", protocol)
        if protocol == 2:  # a flat list of field, value
            hello = dict(zip(hello[::2], hello[1::2], strict=True))
        # HELLO's version lets clients turn client-side caching on (see shardkv.HELLO_VERSION).
        assert hello[b"proto"] == protocol and hello[b"version"] == b"7.4.0"
        assert c.info("server")["redis_version"].startswith("7.0")
        c.close()


def test_asyncio_client(server):
    async def main():
        c = redis.asyncio.Redis(port=server.port)
        await c.mset({f"a{i}": i for i in range(100)})
        values = await asyncio.gather(*(c.get(f"a{i}") for i in range(100)))
        await c.aclose()
        return values

    assert asyncio.run(main()) == [str(i).encode() for i in range(100)]


def test_mset_mget_across_all_shards(client, server):
    data = {f"key:{i}": f"value:{i}" for i in range(1000)}
    assert client.mset(data) is True
    assert client.mget(list(data)) == [v.encode() for v in data.values()]
    assert client.dbsize() == 1000
    info = client.info("shards")  # INFO keyspace has Redis's db lines only
    counts = [info[f"shard{i}"]["keys"] for i in range(4)]
    assert sum(counts) == 1000 and min(counts) > 150, counts
    assert client.delete(*data) == 1000


def test_pipeline_replies_in_order_across_shards(client):
    pipe = client.pipeline(transaction=False)
    for i in range(500):
        pipe.set(f"p{i}", i)
        pipe.get(f"p{i}")
        pipe.echo(f"e{i}")
        pipe.incr(f"n{i % 7}")
    replies = pipe.execute()
    for i in range(500):
        assert replies[4 * i : 4 * i + 3] == [True, str(i).encode(), f"e{i}".encode()]
    assert sorted(int(client.get(f"n{j}")) for j in range(7)) == sorted(
        len(range(j, 500, 7)) for j in range(7)
    )


def test_raw_pipelining_and_inline(server):
    cmds = b"".join(
        b"*3\r\n$3\r\nSET\r\n$%d\r\nk%d\r\n$1\r\nx\r\n" % (len(b"k%d" % i), i) for i in range(100)
    )
    cmds += b"PING\r\n" + b"*2\r\n$3\r\nGET\r\n$2\r\nk7\r\n" + b'ECHO "a b"\r\n'
    expected = b"+OK\r\n" * 100 + b"+PONG\r\n" + b"$1\r\nx\r\n" + b"$3\r\na b\r\n"
    assert raw(server.port, cmds, len(expected)) == expected


def test_exact_errors(server):
    cases = [
        (
            b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n*1\r\n$3\r\nGET\r\n",
            b"-ERR wrong number of arguments for 'get' command\r\n",
        ),
        (b"FOO bar baz\r\n", b"-ERR unknown command 'FOO', with args beginning with: 'bar' 'baz' \r\n"),
        (b"SET k v XX NX\r\n", b"-ERR syntax error\r\n"),
        (b"SET k v\r\nINCR k\r\n", b"+OK\r\n-ERR value is not an integer or out of range\r\n"),
    ]
    for data, expected in cases:
        got = raw(server.port, data, len(expected))
        assert got.endswith(expected), (data, got)


def test_expiry_through_get(client):
    client.set("short", "v", px=100)
    assert client.get("short") == b"v"
    time.sleep(0.15)
    assert client.get("short") is None


def test_sweeper_expires_unread_keys(client):
    pipe = client.pipeline(transaction=False)
    for i in range(10_000):
        pipe.set(f"ttl:{i}", "v", px=100)
    pipe.execute()
    deadline = time.monotonic() + 10
    while client.dbsize() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert client.dbsize() == 0


@pytest.mark.skipif(not shutil.which("redis-cli"), reason="redis-cli is not installed")
def test_redis_cli(server):
    def cli(*args: str) -> str:
        return subprocess.run(
            ["redis-cli", "-p", str(server.port), *args], capture_output=True, text=True, timeout=30
        ).stdout.strip()

    assert cli("set", "k", "v", "px", "1500") == "OK"
    assert cli("get", "k") == "v"
    assert cli("config", "get", "port") == f"port\n{server.port}"


@pytest.mark.slow
@pytest.mark.skipif(not shutil.which("redis-benchmark"), reason="redis-benchmark is not installed")
def test_redis_benchmark_runs_clean(server):
    proc = subprocess.run(
        ["redis-benchmark", "-p", str(server.port), "-t", "set,get,mset", "-P", "16", "-r", "100000",
         "-n", "20000", "-q"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    assert "Could not fetch server CONFIG" not in out
    assert "ERR" not in out
    for test in ("SET", "GET", "MSET"):
        assert test in out


@pytest.mark.slow
def test_worker_restart_keeps_other_shards(server):
    c = redis.Redis(port=server.port)
    c.flushall()
    c.mset({f"r{i}": i for i in range(400)})
    before = c.info("shards")
    victim = psutil.Process(int(c.info("shards")["shard1"]["pid"]))
    victim.kill()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            info = c.info("shards")
            if int(info["shard1"]["pid"]) != victim.pid:
                break
        except redis.ResponseError:
            pass
        time.sleep(0.05)
    info = c.info("shards")
    assert int(info["shard1"]["pid"]) != victim.pid
    assert info["shard1"]["keys"] == 0  # no persistence: the shard comes back empty
    for shard in (0, 2, 3):
        assert info[f"shard{shard}"]["keys"] == before[f"shard{shard}"]["keys"]


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_stops_cleanly(sig):
    proc = start_shardkv(shards=2)
    children = psutil.Process(proc.proc.pid).children(recursive=True)
    start = time.monotonic()
    proc.signal(sig)
    code = proc.proc.wait(10)
    assert code == 0
    assert time.monotonic() - start < 5
    time.sleep(0.2)
    assert not [c for c in children if c.is_running() and c.status() != psutil.STATUS_ZOMBIE]
    proc.stop()


@pytest.mark.slow
def test_config_file_drives_startup(tmp_path):
    from tests.support.servers import free_port

    port = free_port()
    cfg = tmp_path / "shardkv.toml"
    cfg.write_text(f"port = {port}\nshards = 3\nhz = 20\nmaxclients = 77\n")
    proc = start_shardkv("--config", str(cfg), shards=3, port=port)
    try:
        c = redis.Redis(port=port)
        assert c.config_get("hz") == {"hz": "20"}
        assert c.config_get("maxclients") == {"maxclients": "77"}
        assert c.config_get("shards") == {"shards": "3"}
        names = [p.name() for p in psutil.Process(proc.proc.pid).children()]
        assert sum(n.startswith("shardkv-shard") for n in names) == 3
        c.close()
    finally:
        proc.stop()
