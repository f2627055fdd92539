"""The one RESP client of the tests and the benchmarks.

It speaks RESP2 and RESP3 with its own encoder and its own reply reader, so
that what it checks never comes from the code under test, and it needs
neither redis-py nor anything from the ``shardkv`` package:

* :func:`parse_reply` reads one reply out of a buffer (sans-IO): its value
  and where it ends, or None while it is incomplete;
* :class:`RespClient` is one blocking connection.  ``call()`` and ``read()``
  give each reply's exact bytes (for tests that compare servers byte for
  byte); ``command()`` and ``read_reply()`` give its value.
"""

from __future__ import annotations

import socket
import time
from typing import TYPE_CHECKING, Self

if TYPE_CHECKING:
    from collections.abc import Iterable

RespValue = bytes | int | float | bool | list["RespValue"] | None

HOST = "127.0.0.1"


class ErrorReply(Exception):
    """A ``-ERR ...`` (or RESP3 ``!``) reply: the server refused a command."""


class _Incomplete(Exception):
    """The buffer ends before the reply does."""


def encode_command(*args: bytes | str | int | float) -> bytes:
    """One command as a RESP multibulk array."""
    parts = [b"*%d\r\n" % len(args)]
    for arg in args:
        if not isinstance(arg, bytes):
            arg = str(arg).encode()
        parts.append(b"$%d\r\n%s\r\n" % (len(arg), arg))
    return b"".join(parts)


def read_raw_reply(f) -> bytes:
    """One whole reply's bytes from a socket's file, as they came (RESP2 or 3)."""
    line = f.readline()
    kind = line[:1]
    if kind in b"$=!" and line[1:3] != b"-1":
        return line + f.read(int(line[1:-2]) + 2)
    if kind in b"*~>%|" and line[1:3] != b"-1":
        n = int(line[1:-2]) * (2 if kind in b"%|" else 1)
        return line + b"".join(read_raw_reply(f) for _ in range(n))
    return line


def parse_reply(buf: bytes, pos: int = 0) -> tuple[RespValue | ErrorReply, int] | None:
    """The reply that starts at ``buf[pos]`` and the offset just after it,
    or None if the buffer holds only part of it.

    Simple strings, bulk and verbatim strings are bytes; an error is an
    :class:`ErrorReply` (inside an aggregate, its text as bytes); RESP3 maps
    are flat ``[key, value, ...]`` lists, sets and pushes lists, attributes
    are skipped, and null, double, boolean and big number are mapped to
    None, float, bool and int.
    """
    try:
        return _scan(buf, pos)
    except _Incomplete:
        return None


def reply_end(buf: bytes, pos: int = 0) -> int:
    """Where the reply that starts at ``pos`` ends, or -1 if it is incomplete."""
    parsed = parse_reply(buf, pos)
    return -1 if parsed is None else parsed[1]


def _scan(buf: bytes, pos: int) -> tuple[RespValue | ErrorReply, int]:
    eol = buf.find(b"\r\n", pos)
    if eol < 0:
        raise _Incomplete
    kind, head, after = buf[pos : pos + 1], buf[pos + 1 : eol], eol + 2
    if kind == b"+":
        return head, after
    if kind == b"-":
        return ErrorReply(head.decode(errors="replace")), after
    if kind in (b":", b"("):
        return int(head), after
    if kind in (b"$", b"=", b"!"):
        size = int(head)
        if size < 0:
            return None, after
        end = after + size + 2
        if len(buf) < end:
            raise _Incomplete
        data = buf[after : after + size]
        return (ErrorReply(data.decode(errors="replace")) if kind == b"!" else data), end
    if kind in (b"*", b"~", b">", b"%", b"|"):
        count = int(head)
        if count < 0:
            return None, after
        items: list[RespValue] = []
        for _ in range(count * (2 if kind in (b"%", b"|") else 1)):
            item, after = _scan(buf, after)
            items.append(item.args[0].encode() if isinstance(item, ErrorReply) else item)
        if kind == b"|":  # an attribute: the reply it annotates follows
            return _scan(buf, after)
        return items, after
    if kind == b"_":
        return None, after
    if kind == b",":
        return float(head), after
    if kind == b"#":
        return head == b"t", after
    raise ConnectionError(f"unexpected RESP line {buf[pos : pos + 40]!r}")


class RespClient:
    """One blocking TCP connection: send commands, read replies.

    With ``protocol=3`` it starts with ``HELLO 3``.
    """

    def __init__(self, port: int, host: str = HOST, *, protocol: int = 2, timeout: float = 10.0) -> None:
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b""
        if protocol == 3:
            hello = self.call("HELLO", "3")
            if not hello.startswith(b"%"):
                self.close()
                raise ErrorReply(f"HELLO 3 refused: {hello!r}")

    def close(self) -> None:
        """Close the socket; the connection is unusable afterwards."""
        self.sock.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def send(self, *args: bytes | str | int | float) -> None:
        """Send one command without reading its reply."""
        self.sock.sendall(encode_command(*args))

    def _next(self) -> tuple[RespValue | ErrorReply, bytes]:
        while (parsed := parse_reply(self.buf)) is None:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("server closed the connection")
            self.buf += chunk
        value, end = parsed
        raw, self.buf = self.buf[:end], self.buf[end:]
        return value, raw

    def read(self) -> bytes:
        """The exact bytes of the next reply."""
        return self._next()[1]

    def call(self, *args: bytes | str | int | float) -> bytes:
        """Send one command and return the exact bytes of its reply."""
        self.send(*args)
        return self.read()

    def read_reply(self) -> RespValue | ErrorReply:
        """The value of the next reply; an error reply is returned, not raised."""
        return self._next()[0]

    def command(self, *args: bytes | str | int | float) -> RespValue:
        """Send one command and return its reply's value (raises ErrorReply on an error)."""
        self.send(*args)
        reply = self.read_reply()
        if isinstance(reply, ErrorReply):
            raise reply
        return reply

    def closed(self) -> bool:
        """True when the server has closed the connection (after what was read)."""
        try:
            return self.sock.recv(1) == b""
        except OSError:
            return True


def ping_until_ready(port: int, host: str = HOST, timeout: float = 20.0) -> None:
    """Connect and PING until the server answers +PONG, or raise TimeoutError."""
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            with RespClient(port, host, timeout=2.0) as conn:
                if conn.command("PING") == b"PONG":
                    return
        except (OSError, ErrorReply) as exc:
            last_error = exc
        time.sleep(0.05)
    raise TimeoutError(f"no +PONG from {host}:{port} within {timeout}s ({last_error})")


def parse_info(text: bytes) -> dict[str, str]:
    """An INFO bulk reply as a field -> value dict."""
    fields = {}
    for line in text.decode(errors="replace").splitlines():
        if ":" in line and not line.startswith("#"):
            name, _, value = line.partition(":")
            fields[name.strip()] = value.strip()
    return fields


def call_counts(c: RespClient, names: Iterable[str]) -> list:
    """What INFO counts of the calls of ``names`` and of errors: for each
    name with a commandstats row, ``name:calls,rejected_calls,failed_calls``;
    then the errorstat lines, sorted; then total_error_replies."""
    info = parse_info(c.command("INFO", "everything"))  # type: ignore[arg-type]
    rows = []
    for name in names:
        line = info.get(f"cmdstat_{name}")
        if line is not None:
            fields = dict(f.split("=") for f in line.split(","))
            rows.append(f"{name}:" + ",".join(fields[f] for f in ("calls", "rejected_calls", "failed_calls")))
    errors = sorted(f"{k}={v}" for k, v in info.items() if k.startswith("errorstat_"))
    return [rows, errors, info["total_error_replies"]]
