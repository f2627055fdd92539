"""A blocked stream read and the writes that follow it, run step by step
on redis-server and on shardkv (tests/compat/test_streams_*.py): the
reader blocks on acceptor 0, the writer runs its steps from acceptor 1."""

from __future__ import annotations

import time

from tests.support.acceptors import client_on
from tests.support.resp import ErrorReply, RespClient
from tests.support.waits import WAIT


def blocked(c: RespClient) -> int:
    info = c.command("INFO", "clients")
    assert isinstance(info, bytes)
    return int(info.split(b"blocked_clients:")[1].split(b"\r\n")[0])


def wait_blocked(c: RespClient, n: int) -> None:
    deadline = time.monotonic() + WAIT
    while blocked(c) != n:
        assert time.monotonic() < deadline, f"never {n} blocked clients"
        time.sleep(0.01)


def wait_gone(c: RespClient, key: str) -> None:
    """Poll KEYS (which looks ``key`` up without deleting it) until its
    TTL passed."""
    deadline = time.monotonic() + WAIT
    while _has(c, key):
        assert time.monotonic() < deadline, f"{key} never expired"
        time.sleep(0.01)


def _has(c: RespClient, key: str) -> bool:
    keys = c.command("KEYS", "*")
    assert isinstance(keys, list)
    return key.encode() in keys


def reply(value: object) -> object:
    return f"error: {value}" if isinstance(value, ErrorReply) else value


def run_steps(port: int, acceptors: int, setup: list, read: list, steps: list) -> list:
    """Run ``setup``, block ``read`` on acceptor 0, then each of
    ``steps`` from acceptor 1: a command (its reply), ``"blocked"`` (how
    many clients are blocked), ``"served"`` (the blocked read's reply)
    ``("gone", key)`` (wait until the expiry deleted ``key``) or
    ``("pipelined", command, ...)`` (sent in one go); what each gave."""
    with client_on(port, 1, k=acceptors) as writer, client_on(port, 0, k=acceptors) as reader:
        writer.command("FLUSHALL")
        for command in setup:
            writer.command(*command)
        reader.send(*read)
        wait_blocked(writer, 1)
        out: list = []
        for step in steps:
            if step == "blocked":
                out.append(("blocked", blocked(writer)))
            elif step == "served":
                out.append(("served", reply(reader.read_reply())))
                wait_blocked(writer, 0)
            elif step[0] == "gone":
                wait_gone(writer, step[1])
            elif step[0] == "pipelined":
                for command in step[1:]:
                    writer.send(*command)
                out.extend((command[0], reply(writer.read_reply())) for command in step[1:])
            else:
                writer.send(*step)
                out.append((step[0], reply(writer.read_reply())))
        return out


def both(servers, setup: list, read: list, steps: list) -> list:
    """Run the steps on redis-server, then on shardkv (``servers``: the
    ``redis_and_shardkv_k12`` fixture); assert the same replies; return them."""
    real, ours, acceptors = servers
    expected = run_steps(real, 1, setup, read, steps)
    assert run_steps(ours, acceptors, setup, read, steps) == expected
    return expected
