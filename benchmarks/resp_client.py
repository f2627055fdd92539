"""A minimal blocking RESP2 client for the benchmark harness.

It speaks just enough RESP to ask a server for PING, INFO or DBSIZE and to
stream pipelined SETs, so the harness needs neither redis-py nor anything from
the server package under test.
"""

from __future__ import annotations

import socket
import time
from typing import Self

RespValue = bytes | int | list["RespValue"] | None


class ErrorReply(Exception):
    """A `-ERR ...` reply from the server (the peer refused a command)."""


def encode_command(*args: bytes | str | int) -> bytes:
    """Encode one command as a RESP multibulk array."""
    parts = [b"*%d\r\n" % len(args)]
    for arg in args:
        if isinstance(arg, str):
            arg = arg.encode()
        elif isinstance(arg, int):
            arg = b"%d" % arg
        parts.append(b"$%d\r\n%s\r\n" % (len(arg), arg))
    return b"".join(parts)


class RespConnection:
    """One blocking TCP connection that sends commands and reads replies."""

    def __init__(self, host: str, port: int, timeout: float = 10.0) -> None:
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buffer = b""

    def close(self) -> None:
        """Close the socket; the connection is unusable afterwards."""
        self.sock.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def command(self, *args: bytes | str | int) -> RespValue:
        """Send one command and return its reply (raises ErrorReply on -ERR)."""
        self.sock.sendall(encode_command(*args))
        reply = self.read_reply()
        if isinstance(reply, ErrorReply):
            raise reply
        return reply

    def _fill(self) -> None:
        chunk = self.sock.recv(65536)
        if not chunk:
            raise ConnectionError("server closed the connection")
        self.buffer += chunk

    def _line(self) -> bytes:
        while (end := self.buffer.find(b"\r\n")) < 0:
            self._fill()
        line, self.buffer = self.buffer[:end], self.buffer[end + 2 :]
        return line

    def _exact(self, size: int) -> bytes:
        while len(self.buffer) < size + 2:
            self._fill()
        data, self.buffer = self.buffer[:size], self.buffer[size + 2 :]
        return data

    def read_reply(self) -> RespValue | ErrorReply:
        """Read one reply; RESP3 scalars that RESP2 servers never send are mapped too."""
        line = self._line()
        kind, rest = line[:1], line[1:]
        if kind == b"+":
            return rest
        if kind == b"-":
            return ErrorReply(rest.decode(errors="replace"))
        if kind == b":":
            return int(rest)
        if kind in (b"$", b"="):
            size = int(rest)
            return None if size < 0 else self._exact(size)
        if kind in (b"*", b"~", b">"):
            count = int(rest)
            if count < 0:
                return None
            return [self._checked(self.read_reply()) for _ in range(count)]
        if kind == b"%":
            return [self._checked(self.read_reply()) for _ in range(2 * int(rest))]
        if kind == b"_":
            return None
        raise ConnectionError(f"unexpected RESP line {line[:40]!r}")

    @staticmethod
    def _checked(value: RespValue | ErrorReply) -> RespValue:
        if isinstance(value, ErrorReply):
            return value.args[0].encode()
        return value


def ping_until_ready(host: str, port: int, timeout: float = 20.0) -> None:
    """Connect and PING until the server answers +PONG, or raise TimeoutError."""
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            with RespConnection(host, port, timeout=2.0) as conn:
                if conn.command("PING") == b"PONG":
                    return
        except (OSError, ErrorReply) as exc:
            last_error = exc
        time.sleep(0.05)
    raise TimeoutError(f"no +PONG from {host}:{port} within {timeout}s ({last_error})")


def parse_info(text: bytes) -> dict[str, str]:
    """Turn an INFO bulk reply into a field -> value dict."""
    fields = {}
    for line in text.decode(errors="replace").splitlines():
        if ":" in line and not line.startswith("#"):
            name, _, value = line.partition(":")
            fields[name.strip()] = value.strip()
    return fields
