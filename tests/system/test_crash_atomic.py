"""Cross-shard operations stay all-or-nothing when any process dies.

The end-to-end part holds one process at each step of each kind of
cross-shard operation (RENAME, MSET, MULTI/EXEC transfer, SMOVE,
SUNIONSTORE) with a fault point, SIGKILLs a worker or the acceptor,
and checks, against the reply the client got, the invariant, that no
acknowledged write was lost, that nothing was half-applied, and that no
shard hangs; then it crashes the whole server and checks every round's
keys after a restart from the AOF (``tests/system/faults.py`` loops the same
rounds).  The unit part drives a worker's side of the protocol directly.
"""

from __future__ import annotations

import marshal
import os
import signal
import threading
import time
from collections.abc import Callable

import psutil
import pytest
import redis

from shardkv.acceptor import crossshard
from shardkv.protocol import decisions, wire
from shardkv.protocol.resp import Error
from shardkv.runtime import config
from shardkv.worker.persistence.engine import Persistence
from shardkv.worker.shard import Prepared, Shard
from shardkv.worker.transfer import export_key
from tests.system import faults

# -- the messages ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "message",
    [
        wire.Run(1, {b"k": ("string", b"v", None)}, [[b"RENAME", b"k", b"j"]], 0, False, [b"k"]),
        wire.Prepare(2, {b"k": None}),
        wire.Decide(3, True),
        wire.Resolve({4: False, 5: True}),
        wire.Ran(6, [b"+OK\r\n"], {b"j": None}, wire.PREPARED),
        wire.Prepared(7),
        wire.Finished(8, False),
        wire.Refused(9, "not parked for this operation"),
        wire.InDoubt([10, 11]),
    ],
)
def test_every_control_message_round_trips(message):
    assert wire.decode_control(wire.encode_control(message)) == message


def test_answers_round_trip_with_errors():
    for message in (wire.Parked(1, {b"k": None}, {b"w": 3}), wire.PartPrepared(2, True, 5)):
        assert wire.decode_answer(wire.encode_answer(message)) == message
    back = wire.decode_answer(wire.encode_answer(wire.PartPrepared(3, False, Error("OOM x"))))
    assert type(back.value) is Error and back.value.message == "OOM x"  # type: ignore[union-attr]


@pytest.mark.parametrize("payload", [b"C", b"C\x00", b"C" + __import__("marshal").dumps(("Nope", 1))])
def test_a_malformed_control_frame_is_rejected(payload):
    with pytest.raises(wire.BadMessage):
        wire.decode_control(payload)


# -- a worker's side, driven directly --------------------------------------------------


class Pipe:
    """What a parked shard reads and sends, without a process."""

    def __init__(self, shard: Shard, frames: list[bytes]) -> None:
        self.frames = list(frames)
        self.sent: list = []
        self.replies: list[list] = []  # each R frame's answers
        shard.send = self.send
        shard.recv = self.recv

    def send(self, payload: bytes) -> None:
        if payload[:1] == b"C":
            self.sent.append(wire.decode_control(payload))
        elif payload[:1] == b"R":
            self.replies.append(wire.decode_replies(payload))

    def recv(self) -> bytes:
        if not self.frames:
            raise EOFError
        return self.frames.pop(0)


def _shard_with(*pairs: tuple[bytes, bytes]) -> Shard:
    shard = Shard(0, 1)
    for key, value in pairs:
        shard.execute([b"SET", key, value])
    return shard


def _park(shard: Shard, op: int, *args: bytes) -> bytes:
    body, parked = shard.enter([b"__prepare", b"%d" % op, *args])
    assert parked == op
    return body


def test_a_parked_worker_refuses_another_operations_message_and_keeps_waiting():
    shard = _shard_with((b"a", b"1"))
    _park(shard, 5, b"MSET", b"a", b"2")
    pipe = Pipe(
        shard, [wire.encode_control(wire.Decide(4, True)), wire.encode_control(wire.Decide(5, False))]
    )
    shard.park([5])
    assert pipe.sent == [wire.Refused(4, "not parked for this operation"), wire.Finished(5, False)]
    assert shard.execute([b"GET", b"a"]) == b"1"  # aborted: undone


def _batch(*entries: tuple[bytes, list[bytes]]) -> bytes:
    parts = []
    for header, args in entries:
        parts.append(header)
        parts.append(b"*%d\r\n" % len(args) + b"".join(b"$%d\r\n%s\r\n" % (len(a), a) for a in args))
    return wire.batch_payload(parts)


def test_fan_out_parts_back_to_back_park_once_and_are_decided_in_any_order():
    """Parts of write fan-outs that follow each other in a batch, on keys
    that no part before them changed, are prepared together and answered in
    one frame: one park round decides them all, each by its own Decide."""
    shard = _shard_with((b"a", b"1"), (b"b", b"1"), (b"c", b"1"))
    park, plain = crossshard.park_header(0), wire.entry_header(0)
    batch = _batch(
        (park, [b"__prepare", b"1", b"MSET", b"a", b"2"]),
        (park, [b"__prepare", b"2", b"DEL", b"b", b"x"]),
        (park, [b"__prepare", b"3", b"DEL", b"missing"]),  # changes nothing: does not park
        (park, [b"__prepare", b"4", b"MSET", b"c", b"2"]),
        (park, [b"__prepare", b"5", b"MSET", b"a", b"3"]),  # ``a`` again: a round of its own
        (plain, [b"GET", b"a"]),
    )
    decide = [wire.Decide(2, True), wire.Decide(4, True), wire.Decide(1, False), wire.Decide(5, True)]
    pipe = Pipe(shard, [wire.encode_control(d) for d in decide])
    last = wire.decode_replies(shard.run_batch(batch))
    answer = wire.encode_answer
    assert pipe.replies == [
        [
            answer(wire.PartPrepared(1, True, "OK")),
            answer(wire.PartPrepared(2, True, 1)),
            answer(wire.PartPrepared(3, False, 0)),
            answer(wire.PartPrepared(4, True, "OK")),
        ],
        [answer(wire.PartPrepared(5, True, "OK"))],
    ]
    assert pipe.sent == [wire.Finished(d.op, d.commit) for d in decide]
    assert last == [b"$1\r\n3\r\n"]  # 1 aborted (undone), then 5 set it
    assert shard.execute([b"EXISTS", b"b"]) == 0 and shard.execute([b"GET", b"c"]) == b"2"
    assert not shard.prepared


def test_a_flush_part_is_not_prepared_with_the_parts_before_it():
    shard = _shard_with((b"a", b"1"))
    park = crossshard.park_header(0)
    batch = _batch(
        (park, [b"__prepare", b"1", b"MSET", b"b", b"2"]),
        (park, [b"__prepare", b"2", b"FLUSHALL"]),
    )
    decide = [wire.Decide(1, True), wire.Decide(2, False)]
    pipe = Pipe(shard, [wire.encode_control(d) for d in decide])
    shard.run_batch(batch)
    assert [len(r) for r in pipe.replies] == [1, 1]
    assert shard.execute([b"GET", b"a"]) == b"1" and shard.execute([b"GET", b"b"]) == b"2"


def test_a_worker_not_parked_refuses_a_control_message():
    shard = _shard_with()
    pipe = Pipe(shard, [])
    shard.refuse(wire.Decide(9, True))
    assert pipe.sent == [wire.Refused(9, "not parked for this operation")]


def test_a_write_fan_out_part_is_applied_only_on_commit_of_its_own_operation():
    shard = _shard_with((b"a", b"1"), (b"b", b"1"))
    body = _park(shard, 6, b"DEL", b"a", b"b")
    assert wire.decode_answer(body) == wire.PartPrepared(6, True, 2)
    Pipe(shard, [wire.encode_control(wire.Decide(6, True))])
    shard.park([6])
    assert shard.keyspace.dbsize() == 0 and not shard.prepared


def test_a_part_that_changes_nothing_does_not_park():
    shard = _shard_with()
    body, parked = shard.enter([b"__prepare", b"7", b"DEL", b"missing"])
    assert parked is None and wire.decode_answer(body) == wire.PartPrepared(7, False, 0)


def test_acceptor_lost_while_parked_keeps_a_prepared_part_in_doubt_until_resolved():
    shard = _shard_with((b"a", b"1"))
    _park(shard, 8, b"MSET", b"a", b"2")
    Pipe(shard, [])  # the acceptor's pipe closes
    with pytest.raises(EOFError):
        shard.park([8])
    assert list(shard.prepared) == [8]
    # The next acceptor: InDoubt first, then nothing runs before Resolve.
    batch = wire.batch_payload([wire.entry_header(0), b"*2\r\n$3\r\nGET\r\n$1\r\na\r\n"])
    pipe = Pipe(shard, [batch, wire.encode_control(wire.Resolve({8: True}))])
    shard.report_in_doubt()
    assert pipe.sent == [wire.InDoubt([8]), wire.Finished(8, True)]
    assert shard.backlog == [batch]  # kept, in order, for after
    assert shard.execute([b"GET", b"a"]) == b"2"


def test_acceptor_lost_while_parked_with_nothing_prepared_resumes():
    shard = _shard_with((b"a", b"1"))
    parked = shard.park_reply([b"__park", b"9", b"0", b"a"])
    assert parked.op == 9 and parked.states == {}
    Pipe(shard, [])
    with pytest.raises(EOFError):
        shard.park([9])
    assert not shard.prepared
    pipe = Pipe(shard, [])
    shard.report_in_doubt()
    assert pipe.sent == [wire.InDoubt([])]


def test_executor_prepares_its_own_changes_and_undoes_them_on_abort():
    shard = _shard_with((b"src", b"v"))
    before = export_key(shard.keyspace, b"src")
    ran = shard.run_foreign(wire.Run(10, {b"dst": None}, [[b"RENAME", b"src", b"dst"]], 0, False, [b"src"]))
    assert ran.own == wire.PREPARED and ran.after == {b"dst": ("string", b"v", None)}
    assert shard.execute([b"EXISTS", b"src"]) == 0  # applied while parked
    shard.decide(10, False)
    assert export_key(shard.keyspace, b"src") == before


def test_a_part_left_in_doubt_by_a_restart_commits_in_its_own_database():
    shard = _shard_with()
    shard.keyspace.select(1)
    shard.execute([b"SET", b"a", b"1"])
    _park(shard, 11, b"MSET", b"a", b"2")
    part = shard.prepared[11]
    # After a restart the part is known from the AOF only (not in memory),
    # and the shard sits in database 0.
    shard.decide(11, False)
    shard.prepared[11] = Prepared(part.states, None, part.db)
    shard.keyspace.select(0)
    Pipe(shard, [wire.encode_control(wire.Resolve({11: True}))])
    shard.report_in_doubt()
    assert shard.execute([b"EXISTS", b"a"]) == 0
    shard.keyspace.select(1)
    assert shard.execute([b"GET", b"a"]) == b"2"


def test_replayed_prepare_and_commit_records_apply_in_the_database_they_were_logged_in(tmp_path):
    shard = _shard_with()
    persistence = Persistence(shard.keyspace, 0, 1, dict(config.defaults(), dir=str(tmp_path)))
    states = {b"k": ("string", b"v", None)}
    shard.keyspace.select(3)  # as a SELECT 3 record before them would
    persistence._outcome(wire.Verb.XPREPARE, [wire.Verb.XPREPARE, b"12", marshal.dumps(states)])
    persistence._outcome(wire.Verb.XPREPARE, [wire.Verb.XPREPARE, b"13", marshal.dumps(states)])
    assert persistence.in_doubt[13][0] == 3
    shard.keyspace.select(0)  # the commit record comes after another database's records
    persistence._outcome(wire.Verb.XCOMMIT, [wire.Verb.XCOMMIT, b"12"])
    assert shard.execute([b"EXISTS", b"k"]) == 0
    shard.keyspace.select(3)
    assert shard.execute([b"GET", b"k"]) == b"v"


# -- decisions per coordinator ------------------------------------------------------


class _Link:
    def __init__(self, index: int) -> None:
        self.index = index
        self.sent: list[bytes] = []
        self.orphan = None

    def send_frame(self, payload: bytes) -> None:
        self.sent.append(payload)


class _Acceptor:
    def __init__(self, cfg: dict, nshards: int) -> None:
        self.config = cfg
        self.links = [_Link(i) for i in range(nshards)]


def test_each_coordinator_has_its_own_decisions_file_and_ids(tmp_path):
    cfg = {
        "dir": str(tmp_path),
        "appendfilename": "appendonly.aof",
        "appendonly": True,
        "appendfsync": "always",
    }
    first, second = (crossshard.Coordinator(_Acceptor(cfg, 2), index) for index in (0, 1))
    a, b = first.new_id(), second.new_id()
    assert (decisions.op_coordinator(a), decisions.op_coordinator(b)) == (0, 1)
    assert first.commit(a, {0}) is None and second.commit(b, {1}) is None
    assert decisions.read_committed(decisions.durable_path(cfg, 0)) == {a}
    assert decisions.read_committed(decisions.durable_path(cfg, 1)) == {b}
    assert decisions.read_all_committed(cfg) == {a, b}  # re-sharding reads them all


def test_a_restarted_coordinator_resolves_from_its_own_file_and_others_from_theirs(tmp_path):
    cfg = {
        "dir": str(tmp_path),
        "appendfilename": "appendonly.aof",
        "appendonly": True,
        "appendfsync": "always",
    }
    mine, theirs = crossshard.Coordinator(_Acceptor(cfg, 1), 0), crossshard.Coordinator(_Acceptor(cfg, 1), 1)
    committed, aborted, foreign = mine.new_id(), mine.new_id(), theirs.new_id()
    mine.commit(committed, {0})
    theirs.commit(foreign, {0})
    legacy = tmp_path / "appendonly.aof.decisions"  # the file's name before coordinators had numbers
    old = mine.new_id()
    legacy.write_bytes(b"C %d\n" % old)
    server = _Acceptor(cfg, 1)
    restarted = crossshard.Coordinator(server, 0)
    restarted.in_doubt(server.links[0], wire.InDoubt([committed, aborted, foreign, old]))
    resolve = wire.decode_control(server.links[0].sent[0])
    assert resolve == wire.Resolve({committed: True, aborted: False, foreign: True, old: True})
    for op, commit in resolve.outcomes.items():  # type: ignore[union-attr]
        if commit:
            restarted.finished(op, 0)
    # Every shard has finished: this coordinator's files are emptied, the other's kept.
    assert decisions.read_committed(decisions.durable_path(cfg, 0)) == set()
    assert not legacy.exists()
    assert decisions.read_committed(decisions.durable_path(cfg, 1)) == {foreign}


def test_a_settled_coordinator_empties_its_file_only_once_it_has_grown(tmp_path, monkeypatch):
    """After the first time every shard has reported, an operation that
    every shard has finished costs no truncation (a syscall per operation):
    its line stays until the file holds CLEAR_AT bytes, and it still says
    that operation committed."""
    cfg = {
        "dir": str(tmp_path),
        "appendfilename": "appendonly.aof",
        "appendonly": True,
        "appendfsync": "no",
    }
    server = _Acceptor(cfg, 1)
    coordinator = crossshard.Coordinator(server, 0)
    coordinator.in_doubt(server.links[0], wire.InDoubt([]))
    truncations = []
    real_ftruncate = decisions.os.ftruncate
    monkeypatch.setattr(
        decisions.os, "ftruncate", lambda fd, n: truncations.append(fd) or real_ftruncate(fd, n)
    )
    path = decisions.durable_path(cfg, 0)
    first = coordinator.new_id()
    assert coordinator.commit(first, {0}) is None
    coordinator.finished(first, 0)
    assert truncations == [] and decisions.read_committed(path) == {first}
    monkeypatch.setattr(crossshard, "CLEAR_AT", 2 * os.path.getsize(path))
    second = coordinator.new_id()
    assert coordinator.commit(second, {0}) is None
    coordinator.finished(second, 0)
    assert len(truncations) == 1 and decisions.read_committed(path) == set()
    coordinator.close()


@pytest.mark.parametrize(
    ("appendonly", "fsync", "at_commit", "once_a_second"),
    [(True, "always", 1, 0), (True, "everysec", 0, 1), (True, "no", 0, 0), (False, "always", 0, 0)],
)
def test_the_decisions_file_is_fsynced_as_the_aof_is(
    tmp_path, monkeypatch, appendonly, fsync, at_commit, once_a_second
):
    """always: before the reply; everysec: by the cron, once a second for
    what was written since; appendfsync no or no AOF: never."""
    cfg = {
        "dir": str(tmp_path),
        "appendfilename": "appendonly.aof",
        "appendonly": appendonly,
        "appendfsync": fsync,
    }
    coordinator = crossshard.Coordinator(_Acceptor(cfg, 2), 0)
    calls = []
    real_fsync = decisions.os.fsync
    monkeypatch.setattr(decisions.os, "fsync", lambda fd: calls.append(fd) or real_fsync(fd))
    assert coordinator.commit(coordinator.new_id(), {0}) is None
    assert coordinator.commit(coordinator.new_id(), {1}) is None
    assert len(calls) == 2 * at_commit
    coordinator.sync()
    coordinator.sync()  # nothing new: no second fsync
    assert len(calls) == 2 * at_commit + once_a_second
    coordinator.close()
    decisions.remove_volatile(os.getppid())  # without AOF: the file in the temporary directory


# -- processes killed at every step ------------------------------------------------------


def _cases() -> list[tuple[str, str, str, str]]:
    """Each step of each kind once, the held process and the victim taking
    turns (DEL, a write fan-out like MSET, only in tests/system/faults.py: CI's time)."""
    out = []
    n = 0
    for kind in faults.KINDS:
        if kind == "del":
            continue
        for point in faults.POINTS[kind]:
            if point == "committed":
                hold = "acceptor"
            elif point == "ran":
                hold = "executor"
            elif point == "prepared":
                hold = "other"
            elif kind in faults.HELD_BY:
                hold = faults.HELD_BY[kind]
            else:
                hold = ("executor", "other")[n % 2]
            out.append((kind, point, hold, faults.VICTIMS[n % len(faults.VICTIMS)]))
            n += 1
    return out


CASES = _cases()
# A cross-shard script whose executor holds at parked while the acceptor
# dies: its worker used to send the script's MONITOR lines before it had
# prepared its changes, and a failed send left them applied, unprepared.
if ("script", "parked", "executor", "acceptor") not in CASES:
    CASES.append(("script", "parked", "executor", "acceptor"))


@pytest.fixture(scope="module", params=[1, 2], ids=["1-acceptor", "2-acceptors"])
def rig(request):
    """The server of the rounds: one acceptor, then two (each round's
    operation is coordinated by the acceptor its connection reached)."""
    server = faults.Server(4, request.param)
    server.start()
    final: dict = {}
    try:
        yield server, final
    finally:
        server.cleanup()


@pytest.mark.slow
@pytest.mark.parametrize(("kind", "point", "hold", "victim"), CASES, ids=["-".join(c) for c in CASES])
def test_kill_at_a_step_leaves_all_or_nothing(rig, kind, point, hold, victim):
    server, final = rig
    tally = faults.Tally()
    faults.one_round(server, tally, kind, point, hold, victim, f"t{len(final)}-{kind}-{point}", final)
    assert tally.not_reached == 0, "the fault point was never reached"
    assert (tally.violations, tally.lost, tally.hangs) == (0, 0, 0), tally.problems


@pytest.mark.slow
def test_after_a_crash_of_the_whole_server_every_round_is_as_it_was(rig):
    server, final = rig
    assert len(final) == len(CASES)
    tally = faults.Tally()
    faults.after_restart(server, tally, final)
    assert tally.lost == 0, tally.problems


# -- a Decide right behind its Prepare -------------------------------------------------


def test_a_participant_reads_a_decide_that_came_with_its_prepare():
    """The executor dies after its Ran: the acceptor sends the other shard
    its Prepare, then at once the Decide (abort), both read together once
    that shard goes on.  Reading the WATCHes sent while a script was busy
    on Prepare (shardkv.worker.busywatch) once took the Decide off the pipe
    into the backlog, where the parked shard never looked: it stayed
    parked, and its keys never answered again."""
    server = faults.Server(2, 1)
    server.start()
    try:
        c = server.client()
        x, y = server.key_on(0, "x"), server.key_on(1, "y")
        # Which shard executes is the coordinator's choice: hold whichever runs.
        server.hold("ran")
        result: dict = {}
        client = server.client()

        def run() -> None:
            try:
                pipe = client.pipeline(transaction=True)
                pipe.set(x, 1)
                pipe.set(y, 1)
                result["reply"] = pipe.execute()
            except (redis.RedisError, OSError) as ex:
                result["error"] = repr(ex)

        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        pids = [server.pid("shard0"), server.pid("shard1")]
        deadline = time.monotonic() + 10
        held = None
        while held is None and time.monotonic() < deadline:
            for shard, pid in enumerate(pids):
                if psutil.Process(pid).status() == psutil.STATUS_STOPPED:
                    held = shard
            time.sleep(0.01)
        server.release()
        assert held is not None, "the executor never reached 'ran'"
        executor, other = pids[held], pids[1 - held]
        os.kill(other, signal.SIGSTOP)
        os.kill(executor, signal.SIGCONT)  # its Ran goes out: the other shard's Prepare waits on its pipe
        time.sleep(1.0)
        os.kill(executor, signal.SIGKILL)  # the acceptor aborts: the Decide lands behind the Prepare
        faults._gone(executor, 5.0)
        time.sleep(1.0)
        os.kill(other, signal.SIGCONT)
        thread.join(15)
        probe = redis.Redis(port=server.port, socket_timeout=10, decode_responses=True)
        try:
            assert probe.get((x, y)[1 - held]) is None  # aborted, and answered
        finally:
            probe.close()
        assert server.recovered(20)
        c.close()
    finally:
        server.cleanup()


# -- where a script's cross-shard run goes ---------------------------------------------

# Declares its counter; names a hash on another shard from its arguments.
_MOVING = "redis.call('incr', KEYS[1])\nredis.call('hset', ARGV[1], ARGV[2], 'v')\nreturn redis.call('hlen', ARGV[1])"


@pytest.fixture(scope="module", params=[1, 2], ids=["1-acceptor", "2-acceptors"])
def script_rig(request):
    """A server of three shards, one acceptor then two, held at fault points."""
    server = faults.Server(3, request.param)
    server.start()
    try:
        yield server
    finally:
        server.cleanup()


def _run_held(
    server: faults.Server, run: Callable[[], object], shards: list[int]
) -> tuple[dict, int | None, threading.Thread]:
    """Run ``run`` in a thread while the fault file names a point: (its
    reply or error, the index in ``shards`` of the worker held there, if
    one was before the reply came; the fault file is emptied by then)."""
    result: dict = {}

    def call() -> None:
        try:
            result["reply"] = run()
        except (redis.RedisError, OSError) as ex:
            result["error"] = str(ex)

    thread = threading.Thread(target=call, daemon=True)
    thread.start()
    pids = [server.pid(f"shard{i}") for i in shards]
    held = None
    deadline = time.monotonic() + 30
    while held is None and thread.is_alive() and time.monotonic() < deadline:
        held = faults.until_stopped(pids, 0.05)
    server.release()
    return result, held, thread


@pytest.mark.slow
def test_a_script_runs_where_its_largest_keys_are_and_a_kill_there_undoes_it(script_rig):
    """A script declares a key of shard 0 and writes a hash of 40 KB on
    shard 1: once a run has found that hash large, the next cross-shard run
    executes on shard 1 (before, always on its first key's shard 0, the
    hash shipped to it and back on every call).  Killed there after it ran
    and prepared, the run is undone on both shards; the script runs again
    once the worker is back."""
    server = script_rig
    c = server.client()
    counter, big = server.key_on(0, "counter"), server.key_on(1, "queue.msgs")
    c.hset(big, mapping={f"f{i}": "x" * 200 for i in range(200)})
    sha = c.script_load(_MOVING)
    assert c.evalsha(sha, 1, counter, big, "a") == 201  # escapes, runs again across shards
    assert c.evalsha(sha, 1, counter, big, "b") == 202
    server.hold("ran")
    result, held, thread = _run_held(server, lambda: c.evalsha(sha, 1, counter, big, "c"), [0, 1])
    assert held == 1, f"the run did not execute on the shard of the large hash: {held}"
    pid = server.pid("shard1")
    os.kill(pid, signal.SIGKILL)  # it ran and prepared its own part
    faults._gone(pid, 5.0)
    thread.join(30)
    assert "reply" not in result and "rolled back" in result.get("error", ""), result
    assert server.recovered(30)
    probe = server.client()
    try:
        assert probe.get(counter) == "2"
        assert probe.hlen(big) == 202 and not probe.hexists(big, "c")
        assert probe.evalsha(sha, 1, counter, big, "d") == 203
        assert probe.get(counter) == "3"
    finally:
        probe.close()
    c.close()


@pytest.mark.slow
def test_a_call_parks_only_the_shards_its_own_arguments_named_before(script_rig):
    """A script that builds a key name from its argument, called for a key
    of shard 1 and for one of shard 2: a later call for shard 1's key parks
    shards 0 and 1 only (before, every key any call needed: shard 2 too)."""
    server = script_rig
    c = server.client()
    counter = server.key_on(0, "calls")
    qa, qb = server.key_on(1, "qa"), server.key_on(2, "qb")
    sha = c.script_load("redis.call('incr', KEYS[1])\nreturn redis.call('rpush', ARGV[1], ARGV[2])")
    assert c.evalsha(sha, 1, counter, qa, "x") == 1
    assert c.evalsha(sha, 1, counter, qb, "x") == 1
    assert c.evalsha(sha, 1, counter, qa, "y") == 2
    server.hold("parked@2")
    result, held, thread = _run_held(server, lambda: c.evalsha(sha, 1, counter, qa, "z"), [2])
    if held is not None:
        os.kill(server.pid("shard2"), signal.SIGCONT)
    thread.join(30)
    assert held is None, "the call parked shard 2, whose key only another call named"
    assert result == {"reply": 3}
    assert c.evalsha(sha, 1, counter, qb, "y") == 2  # and the other call still gets its keys
    assert c.lrange(qa, 0, -1) == ["x", "y", "z"] and c.get(counter) == "5"
    c.close()
