"""A naive thread-per-client Redis server: the baseline shardkv is compared with.

This is the server a Python user would write first: `socket` plus one
`threading.Thread` per client, a small RESP parser, one global dict behind one
lock, and lazy expiry checked on read. It is deliberately not optimised, but
it is correct enough for redis-benchmark: it handles pipelined input, inline
commands (`PING\\r\\n`) and answers every command in a received chunk with one
`sendall`.

Commands: PING, ECHO, SET key value [EX s|PX ms], GET, INCR, MSET, DEL,
CONFIG GET (always an empty array). Anything else gets `-ERR unknown command`.

Run: python benchmarks/baseline_server.py --port 6380
"""

from __future__ import annotations

import argparse
import socket
import threading
import time

store: dict[bytes, bytes] = {}
expires: dict[bytes, float] = {}
lock = threading.Lock()


class ProtocolError(Exception):
    """The client sent bytes that are not RESP."""


def parse_command(buffer: bytes, start: int) -> tuple[list[bytes] | None, int]:
    """Parse one command at `start`; return (args, next pos), or (None, start) if incomplete."""
    end = buffer.find(b"\r\n", start)
    if end < 0:
        if len(buffer) - start > 65536:
            raise ProtocolError("command line too long")
        return None, start
    if buffer[start : start + 1] != b"*":
        return buffer[start:end].split(), end + 2
    count = int(buffer[start + 1 : end])
    pos = end + 2
    args = []
    for _ in range(count):
        end = buffer.find(b"\r\n", pos)
        if end < 0:
            return None, start
        if buffer[pos : pos + 1] != b"$":
            raise ProtocolError("expected '$'")
        size = int(buffer[pos + 1 : end])
        pos = end + 2 + size + 2
        if len(buffer) < pos:
            return None, start
        args.append(buffer[end + 2 : end + 2 + size])
    return args, pos


def bulk(value: bytes | None) -> bytes:
    """Encode a bulk string, or the nil bulk for None."""
    if value is None:
        return b"$-1\r\n"
    return b"$%d\r\n%s\r\n" % (len(value), value)


def get_live(key: bytes) -> bytes | None:
    """Return the key's value, deleting it first if it has expired (caller holds the lock)."""
    deadline = expires.get(key)
    if deadline is not None and deadline <= time.time():
        del store[key]
        del expires[key]
        return None
    return store.get(key)


def cmd_set(args: list[bytes]) -> bytes:
    """SET key value [EX seconds|PX milliseconds]"""
    if len(args) not in (3, 5):
        return b"-ERR syntax error\r\n"
    deadline = None
    if len(args) == 5:
        option = args[3].upper()
        try:
            amount = int(args[4])
        except ValueError:
            return b"-ERR value is not an integer or out of range\r\n"
        if amount <= 0:
            return b"-ERR invalid expire time in 'set' command\r\n"
        if option == b"EX":
            deadline = time.time() + amount
        elif option == b"PX":
            deadline = time.time() + amount / 1000
        else:
            return b"-ERR syntax error\r\n"
    with lock:
        store[args[1]] = args[2]
        if deadline is None:
            expires.pop(args[1], None)
        else:
            expires[args[1]] = deadline
    return b"+OK\r\n"


def cmd_get(args: list[bytes]) -> bytes:
    """GET key"""
    if len(args) != 2:
        return b"-ERR wrong number of arguments for 'get' command\r\n"
    with lock:
        return bulk(get_live(args[1]))


def cmd_incr(args: list[bytes]) -> bytes:
    """INCR key"""
    if len(args) != 2:
        return b"-ERR wrong number of arguments for 'incr' command\r\n"
    with lock:
        current = get_live(args[1])
        try:
            number = int(current or b"0") + 1
        except ValueError:
            return b"-ERR value is not an integer or out of range\r\n"
        store[args[1]] = b"%d" % number
    return b":%d\r\n" % number


def cmd_mset(args: list[bytes]) -> bytes:
    """MSET key value [key value ...]"""
    if len(args) < 3 or len(args) % 2 == 0:
        return b"-ERR wrong number of arguments for 'mset' command\r\n"
    with lock:
        for i in range(1, len(args), 2):
            store[args[i]] = args[i + 1]
            expires.pop(args[i], None)
    return b"+OK\r\n"


def cmd_del(args: list[bytes]) -> bytes:
    """DEL key [key ...]"""
    if len(args) < 2:
        return b"-ERR wrong number of arguments for 'del' command\r\n"
    removed = 0
    with lock:
        for key in args[1:]:
            if get_live(key) is not None:
                del store[key]
                expires.pop(key, None)
                removed += 1
    return b":%d\r\n" % removed


def execute(args: list[bytes]) -> bytes:
    """Run one command and return its encoded reply."""
    name = args[0].upper()
    if name == b"PING":
        return b"+PONG\r\n" if len(args) == 1 else bulk(args[1])
    if name == b"ECHO":
        return bulk(args[1]) if len(args) == 2 else b"-ERR wrong number of arguments for 'echo' command\r\n"
    if name == b"SET":
        return cmd_set(args)
    if name == b"GET":
        return cmd_get(args)
    if name == b"INCR":
        return cmd_incr(args)
    if name == b"MSET":
        return cmd_mset(args)
    if name == b"DEL":
        return cmd_del(args)
    if name == b"CONFIG" and len(args) >= 2 and args[1].upper() == b"GET":
        return b"*0\r\n"
    return b"-ERR unknown command '%s'\r\n" % args[0][:128]


def serve_client(conn: socket.socket) -> None:
    """Read commands from one client until it disconnects, answering each chunk at once."""
    buffer = b""
    with conn:
        while True:
            try:
                data = conn.recv(65536)
            except OSError:
                return
            if not data:
                return
            buffer += data
            replies = []
            pos = 0
            try:
                while pos < len(buffer):
                    args, pos = parse_command(buffer, pos)
                    if args is None:
                        break
                    if args:
                        replies.append(execute(args))
            except (ProtocolError, ValueError):
                conn.sendall(b"".join(replies) + b"-ERR Protocol error\r\n")
                return
            buffer = buffer[pos:]
            if replies:
                try:
                    conn.sendall(b"".join(replies))
                except OSError:
                    return


def main() -> None:
    """Listen on 127.0.0.1:PORT and start one thread per accepted client."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, default=6380, help="TCP port on 127.0.0.1 (default 6380)")
    options = parser.parse_args()
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", options.port))
    listener.listen(512)
    try:
        while True:
            conn, _ = listener.accept()
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            threading.Thread(target=serve_client, args=(conn,), daemon=True).start()
    except KeyboardInterrupt:
        pass
    finally:
        listener.close()


if __name__ == "__main__":
    main()
