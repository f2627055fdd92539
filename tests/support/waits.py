"""Waits and reply helpers shared by the blocking tests that speak RESP
through ``tests.support.resp.RespClient``."""

from __future__ import annotations

import time

from tests.support.resp import ErrorReply, RespClient, parse_info

WAIT = 10.0  # seconds a test waits for something that must happen


def wait_blocked(c: RespClient, n: int) -> None:
    """Poll INFO clients until ``blocked_clients`` is ``n`` (fails after WAIT seconds)."""
    deadline = time.monotonic() + WAIT
    while parse_info(c.command("INFO", "clients"))["blocked_clients"] != str(n):  # type: ignore[arg-type]
        assert time.monotonic() < deadline, f"never {n} blocked clients"
        time.sleep(0.01)


def wait_called(c: RespClient, name: str, calls: int = 1) -> None:
    """Poll INFO commandstats until command ``name`` was called ``calls`` times."""
    deadline = time.monotonic() + WAIT
    field = "cmdstat_" + name.lower()
    prefix = f"calls={calls},"
    while not parse_info(c.command("INFO", "commandstats")).get(field, "").startswith(prefix):  # type: ignore[arg-type]
        assert time.monotonic() < deadline, f"{name} never counted {calls} times"
        time.sleep(0.01)


def reply_or_error(c: RespClient, *args: object) -> object:
    """The reply of ``args``, or ``"error: <text>"`` for an error reply."""
    try:
        return c.command(*args)  # type: ignore[arg-type]
    except ErrorReply as e:
        return f"error: {e}"


def read_or_error(c: RespClient) -> object:
    """The next reply on ``c``, or ``"error: <text>"`` for an error reply."""
    try:
        return c.read_reply()
    except ErrorReply as e:
        return f"error: {e}"
