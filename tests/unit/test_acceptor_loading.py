"""An acceptor started while the workers load (shardkv.acceptor.server):
it answers -LOADING to every command without the ``loading`` flag, as
Redis's processCommand does while it loads, sends nothing to a shard,
and serves once every worker's pipe has come from the supervisor."""

from __future__ import annotations

import asyncio
import os
import socket
from multiprocessing import Pipe

import pytest

from shardkv.acceptor import crossshard, wiring
from shardkv.protocol import commands, errors, wire
from shardkv.protocol.resp import encode_command
from shardkv.protocol.wire import Verb
from shardkv.runtime import config
from shardkv.runtime.exitcodes import PIPES_MESSAGE, PIPES_PER_MESSAGE
from shardkv.runtime.loadprogress import LoadProgress
from tests.support.resp import parse_info
from tests.unit.test_acceptor_dispatch import build, connect, keys_on_two_shards, replies, send

LOADING = b"-%s\r\n" % errors.LOADING.encode()


def _loading(nshards: int = 2):
    acceptor, links = build(nshards)
    acceptor.loading = True
    return acceptor, links


def test_only_the_loading_commands_run_while_the_shards_load() -> None:
    acceptor, links = _loading()
    client, transport = connect(acceptor)
    send(
        client,
        [b"PING"],
        [b"GET", b"k"],
        [b"SET", b"k", b"v"],
        [b"MGET", b"a", b"b"],
        [b"DBSIZE"],
        [b"ECHO", b"hi"],
        [b"CLIENT", b"ID"],
        [b"SELECT", b"0"],
        [b"CONFIG", b"GET", b"maxmemory"],
    )
    assert replies(acceptor, transport) == (
        LOADING * 5 + b"$2\r\nhi\r\n:%d\r\n+OK\r\n*2\r\n$9\r\nmaxmemory\r\n$1\r\n0\r\n" % client.id
    )
    assert not any(link.sent for link in links)  # nothing reached a shard


def test_the_commands_redis_runs_while_loading_are_those_with_the_loading_flag() -> None:
    """As Redis 7.0's table: HELLO, AUTH, QUIT, RESET and ECHO have the
    flag, PING does not; PUBSUB's container row does not (its subcommands do)."""
    for name in ("hello", "auth", "quit", "reset", "echo", "info", "select", "multi", "exec"):
        assert "loading" in commands.COMMANDS[name].flags, name
    for name in ("ping", "get", "set", "dbsize", "eval", "pubsub"):
        assert "loading" not in commands.COMMANDS[name].flags, name
    assert "loading" in commands.flags_of(commands.COMMANDS["pubsub"], [b"PUBSUB", b"NUMPAT"])


def test_a_transaction_with_a_command_refused_while_loading_aborts() -> None:
    acceptor, links = _loading()
    client, transport = connect(acceptor)
    send(client, [b"MULTI"], [b"SET", b"k", b"v"], [b"EXEC"])
    assert replies(acceptor, transport) == (
        b"+OK\r\n" + LOADING + b"-EXECABORT Transaction discarded because of previous errors.\r\n"
    )
    assert not any(link.sent for link in links)


def test_an_exec_whose_queue_holds_a_command_without_the_flag_is_refused() -> None:
    """Redis's ``cmd_inv_flags``: the queue decides for EXEC."""
    acceptor, links = build()
    client, transport = connect(acceptor)
    send(client, [b"MULTI"], [b"SET", b"k", b"v"])
    acceptor.loading = True
    send(client, [b"EXEC"])
    assert replies(acceptor, transport) == (
        b"+OK\r\n+QUEUED\r\n-EXECABORT Transaction discarded because of: %s\r\n" % errors.LOADING.encode()
    )
    assert not any(link.sent for link in links)


def test_info_says_loading_and_how_far_it_has_come() -> None:
    acceptor, links = _loading()
    acceptor.loading_since = 1000
    acceptor.load_progress = progress = LoadProgress(2)
    try:
        progress.begin(0, 300)
        progress.begin(1, 100)
        progress.advance(1, 100)
        client, transport = connect(acceptor)
        send(client, [b"INFO", b"persistence"])
        out = replies(acceptor, transport)
    finally:
        progress.close()
    info = parse_info(out[out.index(b"\r\n") + 2 :])
    assert info["loading"] == "1" and info["async_loading"] == "0"
    assert info["loading_start_time"] == "1000"
    assert (info["loading_total_bytes"], info["loading_loaded_bytes"]) == ("400", "100")
    assert info["loading_loaded_perc"] == "25.00"
    assert not any(link.sent for link in links)  # nothing asked of a shard still loading
    acceptor.loading = False
    send(client, [b"INFO", b"persistence"])
    assert all(link.sent for link in links)  # loaded: the shards' figures are asked


def test_info_gives_no_loading_total_before_every_shard_has_found_its_files() -> None:
    """Redis fixes loading_total_bytes as its load starts, so its
    loading_loaded_perc reaches 100 only at the end.  A shard whose worker
    has not found its files yet (not started, or started again) has no
    total: the sum is then 0, and the perc 0.00, as Redis's before it knows
    a total, not 100.00 over the shard that has loaded (before, it was).
    A shard with nothing to load publishes 0."""
    acceptor, links = _loading()
    acceptor.loading_since = 1000
    acceptor.load_progress = progress = LoadProgress(2)
    client, transport = connect(acceptor)

    def figures() -> tuple:
        send(client, [b"INFO", b"persistence"])
        out = replies(acceptor, transport)
        info = parse_info(out[out.index(b"\r\n") + 2 :])
        return info["loading_total_bytes"], info["loading_loaded_bytes"], info["loading_loaded_perc"]

    try:
        assert figures() == ("0", "0", "0.00")
        progress.begin(0, 300)
        progress.advance(0, 300)  # shard 0 has loaded, shard 1 has not begun
        assert figures() == ("0", "300", "0.00")
        progress.begin(1, 0)  # nothing to load
        assert figures() == ("300", "300", "100.00")
        progress.forget(1)  # its worker started again
        progress.begin(1, 100)
        assert figures() == ("400", "300", "75.00")
    finally:
        progress.close()


def _with_links(nshards: int):
    """An acceptor with its real links to the shards (none attached)."""
    cfg = config.defaults()
    cfg["shards"] = nshards
    acceptor = wiring.build(cfg)
    crossshard.coordinator_of(acceptor)
    return acceptor


def _serve_until(acceptor, pipes, check) -> None:
    """Run the acceptor's ``serve`` with ``pipes`` to come until ``check()``."""
    acceptor.config["port"] = 0  # no TCP listener

    async def run() -> None:
        task = asyncio.ensure_future(acceptor.serve([None] * acceptor.nshards, None, pipes))
        for _ in range(500):
            await asyncio.sleep(0.01)
            if check() or task.done():
                break
        if not task.done():
            acceptor.shutdown_requested.set_result(None)  # type: ignore[union-attr]
        await task

    try:
        asyncio.run(run())
    finally:
        acceptor.coordinator.close()


@pytest.mark.parametrize("shards", [1, 3, PIPES_PER_MESSAGE + 5])
def test_it_serves_once_every_workers_pipe_has_come(shards) -> None:
    acceptor = _with_links(shards)
    ours, theirs = Pipe()
    workers = [Pipe() for _ in range(shards)]
    with socket.socket(fileno=os.dup(ours.fileno())) as sock:
        ours.close()
        # What Supervisor._send_pipes sends: the ends in order, in batches.
        for first in range(0, shards, PIPES_PER_MESSAGE):
            batch = workers[first : first + PIPES_PER_MESSAGE]
            socket.send_fds(sock, [PIPES_MESSAGE], [pair[0].fileno() for pair in batch])
        _serve_until(acceptor, theirs, lambda: not acceptor.loading)
    assert not acceptor.loading
    for link, pair in zip(acceptor.links, workers, strict=True):  # each link is its worker's, in order
        attached = link.transport.get_extra_info("socket")  # type: ignore[union-attr]
        assert os.fstat(attached.fileno()).st_ino == os.fstat(pair[0].fileno()).st_ino
    for pair in workers:
        for conn in pair:
            conn.close()


def test_it_stops_if_the_supervisor_stops_before_the_shards_loaded() -> None:
    acceptor = _with_links(2)
    ours, theirs = Pipe()
    worker = Pipe()
    with socket.socket(fileno=os.dup(ours.fileno())) as sock:
        ours.close()
        socket.send_fds(sock, [PIPES_MESSAGE], [worker[0].fileno()])  # the second never comes
    _serve_until(acceptor, theirs, lambda: False)  # returns: serve ended on its own
    assert acceptor.loading
    assert all(link.transport is None for link in acceptor.links)
    for conn in worker:
        conn.close()


def test_config_set_resetstat_and_lastsave_answer_while_the_shards_load() -> None:
    """As Redis while it loads: CONFIG SET and CONFIG RESETSTAT say +OK and
    LASTSAVE the start time, with no shard to ask (they were refused with
    -ERR shard unavailable).  A worker whose pipe is attached already (the
    last are being attached) gets the new setting now; the others get
    every setting once attached."""
    acceptor, links = _loading()
    links[0].up = True  # type: ignore[attr-defined]
    links[1].up = False  # type: ignore[attr-defined]
    client, transport = connect(acceptor)
    send(
        client,
        [b"CONFIG", b"SET", b"maxmemory-policy", b"allkeys-lru"],
        [b"CONFIG", b"RESETSTAT"],
        [b"LASTSAVE"],
        [b"CONFIG", b"GET", b"maxmemory-policy"],
    )
    assert replies(acceptor, transport) == (
        b"+OK\r\n+OK\r\n:%d\r\n*2\r\n$16\r\nmaxmemory-policy\r\n$11\r\nallkeys-lru\r\n" % acceptor.lastsave
    )
    assert [body for _, body, _ in links[0].sent] == [
        encode_command([b"__config", b"maxmemory-policy", b"allkeys-lru"])
    ]
    assert not links[1].sent


# -- a worker restarted after the start reloads its shard -------------------------------


def test_commands_for_a_shard_that_reloads_get_loading_the_others_run() -> None:
    """A worker restarted after a crash reloads its shard (the supervisor's
    ``reloading`` line): Redis, one process, would answer -LOADING while it
    loads again; here the commands that may touch that shard do (a key of
    it, a command naming no key: PING, DBSIZE, a script with none), those
    whose keys are on the other shards and those with the ``loading`` flag
    run.  Before, they waited in the pipe for the load."""
    acceptor, links = build(2)
    here, there = keys_on_two_shards(acceptor)
    reloading = acceptor.shard_of(there)
    acceptor.reloading.add(reloading)
    client, transport = connect(acceptor)
    send(
        client,
        [b"GET", there],
        [b"SET", there, b"v"],
        [b"MGET", here, there],
        [b"DBSIZE"],
        [b"EVAL", b"return 1", b"0"],
        [b"PING"],
        [b"ECHO", b"hi"],
        [b"GET", here],  # (its reply waits for its shard's)
    )
    assert replies(acceptor, transport) == LOADING * 6 + b"$2\r\nhi\r\n"
    assert links[reloading].sent == []
    assert [body for _, body, _ in links[1 - reloading].sent] == [encode_command([b"GET", here])]
    acceptor.reloading.discard(reloading)  # its ``reloaded`` line
    send(client, [b"GET", there])
    assert [body for _, body, _ in links[reloading].sent] == [encode_command([b"GET", there])]


def test_a_transaction_touching_a_shard_that_reloads_aborts() -> None:
    acceptor, links = build(2)
    here, there = keys_on_two_shards(acceptor)
    acceptor.reloading.add(acceptor.shard_of(there))
    client, transport = connect(acceptor)
    send(client, [b"MULTI"], [b"SET", here, b"v"], [b"SET", there, b"v"], [b"EXEC"])
    assert replies(acceptor, transport) == (
        b"+OK\r\n+QUEUED\r\n" + LOADING + b"-EXECABORT Transaction discarded because of previous errors.\r\n"
    )
    assert not any(link.sent for link in links)


def test_info_while_a_shard_reloads_answers_at_once_and_says_loading() -> None:
    """INFO has the ``loading`` flag: Redis, loading again after its
    restart, answers it at once with ``loading:1`` and how far it has
    come.  Here INFO asks only the shards that serve (the keys of the
    reloading one are not counted yet, as Redis counts the keys loaded so
    far) and says ``loading:1`` with the reloading shard's progress.
    Before, it asked that shard too and waited for its whole load, then
    said ``loading:0``."""
    acceptor, links = build(2)
    acceptor.load_progress = progress = LoadProgress(2)
    try:
        progress.begin(0, 300)
        progress.advance(0, 300)  # loaded at start
        progress.begin(1, 100)  # restarted: loads again
        progress.advance(1, 25)
        acceptor.reloading.add(1)
        acceptor.loading_since = 1000  # (when its ``reloading`` line came)
        client, transport = connect(acceptor)
        send(client, [b"INFO", b"persistence", b"keyspace", b"shards"])
        assert links[1].sent == []  # the reloading shard is not asked
        assert links[0].bodies() == [encode_command([Verb.INFO])]
        figures = {"aof_enabled": 0, "rdb_changes_since_last_save": 0}
        links[0].answer(wire.encode_part([7, 0, 0, 0, 1, figures, {"dbs": {0: [7, 0, 0, 0]}}]))
        out = replies(acceptor, transport)
    finally:
        progress.close()
    info = parse_info(out[out.index(b"\r\n") + 2 :])
    assert info["loading"] == "1"
    assert info["loading_start_time"] == "1000"
    assert (info["loading_total_bytes"], info["loading_loaded_bytes"]) == ("100", "25")
    assert info["loading_loaded_perc"] == "25.00"
    assert info["db0"].startswith("keys=7,")
    assert info["shard0"].startswith("keys=7,") and info["shard1"].startswith("keys=0,")  # each in its place
    acceptor.reloading.discard(1)  # its ``reloaded`` line
    send(client, [b"INFO", b"persistence"])
    assert links[1].bodies() == [encode_command([Verb.INFO])]


def test_a_reloading_shards_lastsave_is_the_restart_the_supervisor_timed() -> None:
    """The supervisor's ``reloading <shard> <saved_at>`` line carries the
    time it gave the restarted worker as its last save (its own __lastsave
    once it has loaded): LASTSAVE and INFO's rdb_last_save_time say it
    meanwhile, exactly.  Before, the acceptor took its own time of hearing
    the line, seconds off the worker's on a loaded machine."""
    acceptor, links = build(1)
    ours, theirs = socket.socketpair()
    try:
        theirs.sendall(b"reloading 0 1234\n")
        acceptor._on_control(ours)
    finally:
        ours.close()
        theirs.close()
    assert acceptor.reloading == {0} and acceptor.loading_since > 1234
    client, transport = connect(acceptor)
    send(client, [b"LASTSAVE"], [b"INFO", b"persistence"])
    out = replies(acceptor, transport)
    assert out.startswith(b":1234\r\n") and not links[0].sent
    assert parse_info(out[out.index(b"\r\n", 7) + 2 :])["rdb_last_save_time"] == "1234"
