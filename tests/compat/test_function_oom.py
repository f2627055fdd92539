"""FCALL, FCALL_RO, and an EXEC that queued an FCALL, under ``maxmemory 1``
(noeviction), compared with redis-server: a function with neither
``no-writes`` nor ``allow-oom`` makes FCALL and FCALL_RO ``denyoom``
(fcallGetCommandFlags), so ``processCommand`` refuses them with OOM (a
rejected call, nothing logged) and an EXEC that queued one with
EXECABORT; a ``no-writes`` or ``allow-oom`` function runs, and so does
FUNCTION DELETE, after which the FCALL finds no function.  The
function is loaded through one acceptor and called through another
(with two), as the acceptor that refuses must know the worker's flags.
"""

from __future__ import annotations

from tests.support.acceptors import client_on
from tests.support.resp import RespClient, encode_command, parse_info

LIB = (
    "#!lua name=oomfn\n"
    "redis.register_function('fw', function(k, a) return 1 end)\n"
    "redis.register_function{function_name='fr', callback=function(k, a) return 2 end, flags={'no-writes'}}\n"
    "redis.register_function{function_name='fo', callback=function(k, a) return 3 end, flags={'allow-oom'}}\n"
)
CALLS = [
    ("FCALL", "fw"),
    ("FCALL_RO", "fw"),
    ("FCALL", "FW"),
    ("FCALL", "fr"),
    ("FCALL_RO", "fr"),
    ("FCALL", "fo"),
    ("FCALL_RO", "fo"),
    ("FCALL", "nosuch"),
]


def _scenario(port: int, acceptors: int) -> list:
    admin = client_on(port, 0, k=acceptors) if acceptors > 1 else RespClient(port)
    caller = client_on(port, 1, k=acceptors) if acceptors > 1 else RespClient(port)
    queuing = [client_on(port, 1, k=acceptors) if acceptors > 1 else RespClient(port) for _ in range(3)]
    try:
        admin.command("CONFIG", "SET", "maxmemory", "0")
        admin.call("FUNCTION", "FLUSH")
        admin.command("FUNCTION", "LOAD", LIB)
        admin.command("CONFIG", "SET", "maxmemory-policy", "noeviction")
        admin.command("CONFIG", "SET", "slowlog-log-slower-than", "0")
        for q, name in zip(queuing, ("fw", "fr", "fo"), strict=True):  # queued before OOM
            q.command("MULTI")
            q.command("FCALL", name, 0)
        admin.command("SLOWLOG", "RESET")
        admin.command("CONFIG", "RESETSTAT")
        admin.command("CONFIG", "SET", "maxmemory", "1")
        replies = [caller.call(cmd, name, 0)[:60] for cmd, name in CALLS]
        replies += [q.call("EXEC")[:60] for q in queuing]
        replies.append(caller.call("FUNCTION", "DELETE", "oomfn"))  # not denyoom: it runs
        replies.append(caller.call("FCALL", "fw", 0)[:60])  # not found, not refused
        info = parse_info(admin.command("INFO", "everything"))  # type: ignore[arg-type]
        admin.command("CONFIG", "SET", "maxmemory", "0")
        counted = {}
        for k, v in info.items():
            if k.startswith(("cmdstat_fcall", "cmdstat_exec")):
                fields = dict(f.split("=") for f in v.split(","))
                counted[k] = ",".join(fields[f] for f in ("calls", "rejected_calls", "failed_calls"))
            elif k.startswith("errorstat_"):
                counted[k] = v
        logged = sorted(
            bytes(e[3][0]).upper() + b" " + bytes(e[3][1])
            for e in admin.command("SLOWLOG", "GET", "-1")  # type: ignore[union-attr]
            if bytes(e[3][0]).upper() in (b"FCALL", b"FCALL_RO", b"EXEC")
        )
        return [replies, counted, logged]
    finally:
        admin.command("CONFIG", "SET", "maxmemory", "0")
        admin.command("CONFIG", "SET", "slowlog-log-slower-than", "10000")
        admin.call("FUNCTION", "FLUSH")
        for c in (admin, caller, *queuing):
            c.close()


def test_fcall_of_a_function_that_may_use_memory_is_refused_at_oom(redis_and_shardkv_k12) -> None:
    real, ours, acceptors = redis_and_shardkv_k12
    want = _scenario(real, 1)
    assert all(r.startswith(b"-OOM command not allowed") for r in want[0][:3]), want
    assert want[0][8].startswith(b"-EXECABORT")
    assert want[1]["cmdstat_fcall"] == "6,2,2"  # fw, FW rejected; nosuch, fw once deleted failed
    assert _scenario(ours, acceptors) == want


def _pipelined_behind_delete(port: int, acceptors: int) -> list:
    """FUNCTION DELETE at OOM with FCALLs of its functions pipelined right
    behind it, on one connection; then a DELETE of no library."""
    admin = client_on(port, 0, k=acceptors) if acceptors > 1 else RespClient(port)
    caller = client_on(port, 1, k=acceptors) if acceptors > 1 else RespClient(port)
    try:
        admin.command("CONFIG", "SET", "maxmemory", "0")
        admin.call("FUNCTION", "FLUSH")
        admin.command("FUNCTION", "LOAD", LIB)
        admin.command("CONFIG", "SET", "maxmemory-policy", "noeviction")
        admin.command("CONFIG", "SET", "maxmemory", "1")
        pipeline = [
            ("FUNCTION", "DELETE", "oomfn"),
            ("FCALL", "fw", 0),
            ("FCALL_RO", "fw", 0),
            ("FCALL", "fr", 0),
            ("FUNCTION", "DELETE", "oomfn"),
            ("PING",),
        ]
        caller.sock.sendall(b"".join(encode_command(*c) for c in pipeline))
        return [caller.read()[:60] for _ in pipeline]
    finally:
        admin.command("CONFIG", "SET", "maxmemory", "0")
        admin.call("FUNCTION", "FLUSH")
        admin.close()
        caller.close()


def test_fcall_pipelined_behind_function_delete_at_oom_finds_no_function(redis_and_shardkv_k12) -> None:
    """The FCALLs find no function, as in Redis (they were refused with
    OOM: checked as they arrived, before the DELETE's refresh of the
    refused functions came back); the DELETE of no library answers (its
    client waited forever)."""
    real, ours, acceptors = redis_and_shardkv_k12
    want = _pipelined_behind_delete(real, 1)
    assert want[1].startswith(b"-ERR Function not found"), want
    assert _pipelined_behind_delete(ours, acceptors) == want
