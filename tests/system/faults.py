"""Fault injection for cross-shard operations: hold a process at a step, kill one.

Each round runs one cross-shard operation on keys of two shards (E, the
executor, and P, the other participant) of a 4-shard server with
``appendonly yes`` and ``appendfsync always``.  A fault point (see
:mod:`shardkv.runtime.faultpoints`) holds one process at a chosen step of the
commit protocol with SIGSTOP; then the round SIGKILLs the held process,
the other shard's worker, or the acceptor, and lets the held process go
on (SIGCONT).  Once the server has recovered, it checks, against the reply
the client got:

* the invariant of the operation (a bank total that stays constant, a
  value or a member in exactly one place);
* that an acknowledged operation was applied, and one answered with an
  error was not (a lost connection may have gone either way);
* that no half of an operation was applied;
* that every shard answers (no hang).

At the end the whole server is SIGKILLed and started again from its AOF,
and every round's keys must still hold what the round found.

    python tests/system/faults.py [--rounds 200] [--shards 4] [--seed 1]

prints rounds, kills, invariant violations, lost acknowledged writes, hangs.
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import psutil
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from shardkv.protocol.router import Router  # noqa: E402
from tests.support.servers import ServerProcess, free_port  # noqa: E402

KINDS = ("rename", "mset", "msetnx", "msetnx_no", "exec", "smove", "sunionstore", "del", "flushall", "script")
# The protocol steps each kind goes through (fan-outs have no run step).
POINTS = {
    "rename": ("parked", "ran", "prepared", "committed", "decided", "finished"),
    "exec": ("parked", "ran", "prepared", "committed", "decided", "finished"),
    "smove": ("parked", "ran", "prepared", "committed", "decided", "finished"),
    "sunionstore": ("parked", "ran", "committed", "decided", "finished"),
    "mset": ("parked", "committed", "decided", "finished"),
    "msetnx": ("parked", "committed", "decided", "finished"),
    # voted down: only the shard that set its key parks; the abort commits nothing
    "msetnx_no": ("parked", "decided", "finished"),
    "del": ("parked", "committed", "decided", "finished"),
    "flushall": ("parked", "committed", "decided", "finished"),
    "script": ("parked", "ran", "prepared", "committed", "decided", "finished"),
}
VICTIMS = ("held", "executor", "other", "acceptor")
# The kinds whose steps (but "committed") only one role reaches.
HELD_BY = {"msetnx_no": "executor"}
TIMEOUT = 30.0


@dataclass
class Tally:
    rounds: int = 0
    kills: int = 0
    not_reached: int = 0
    violations: int = 0
    lost: int = 0
    hangs: int = 0
    outcomes: dict = field(default_factory=dict)  # "ok"/"error"/"dropped" -> count
    problems: list = field(default_factory=list)

    def line(self) -> str:
        return (
            f"rounds {self.rounds}  kills {self.kills}  invariant violations {self.violations}  "
            f"lost acked writes {self.lost}  hangs {self.hangs}  (fault point not reached: "
            f"{self.not_reached}; replies: {dict(sorted(self.outcomes.items()))})"
        )


class Server:
    """A shardkv server whose processes a round can hold and kill."""

    def __init__(self, shards: int = 4, acceptors: int = 1) -> None:
        self.shards = shards
        self.acceptors = acceptors
        self.router = Router(shards)
        self.dir = tempfile.mkdtemp(prefix="shardkv-faults-")
        self.fault_file = os.path.join(self.dir, "faultpoints")
        Path(self.fault_file).write_text("")
        self.port = free_port()
        self.proc: ServerProcess | None = None

    def start(self) -> None:
        argv = [
            sys.executable, str(ROOT / "main.py"), "--port", str(self.port), "--shards", str(self.shards),
            "--appendonly", "yes", "--appendfsync", "always", "--dir", self.dir,
            "--acceptors", str(self.acceptors),
        ]  # fmt: skip
        env = dict(os.environ, PYTHONUNBUFFERED="1", SHARDKV_FAULT_FILE=self.fault_file)
        self.proc = ServerProcess(
            argv, self.port, cwd=ROOT, env=env, kind="shardkv", shards=self.shards, acceptors=self.acceptors
        )
        self.proc.wait_ready(60).wait_serving()

    def crash(self) -> None:
        """SIGKILL every process of the server at once, as a power cut would."""
        assert self.proc is not None
        everyone = [
            psutil.Process(self.proc.proc.pid),
            *psutil.Process(self.proc.proc.pid).children(recursive=True),
        ]
        for p in everyone:
            try:
                p.kill()
            except psutil.Error:
                pass
        self.proc.proc.wait(10)
        self.proc.stop()

    def stop(self) -> None:
        if self.proc is not None:
            for p in self._children():  # a held process would never stop
                try:
                    p.resume()
                except psutil.Error:
                    pass
            self.proc.stop(60)
            self.proc = None

    def cleanup(self) -> None:
        self.stop()
        for name in os.listdir(self.dir):
            os.unlink(os.path.join(self.dir, name))
        os.rmdir(self.dir)

    def _children(self) -> list:
        assert self.proc is not None
        try:
            return psutil.Process(self.proc.proc.pid).children()
        except psutil.Error:
            return []

    def acceptor_pid(self, index: int) -> int:
        """The pid of acceptor ``index`` (the only one when there is one)."""
        return self.pid("accept" if self.acceptors == 1 else f"accept{index}")

    def acceptor_of(self, client: redis.Redis) -> int:
        """The acceptor a client's connection reached: acceptor i of K hands
        out the CLIENT IDs i+1, i+1+K, ..."""
        return 0 if self.acceptors == 1 else (int(client.client_id()) - 1) % self.acceptors

    def pid(self, role: str) -> int:
        """The pid of ``shard<i>``, ``accept`` or ``accept<i>``."""
        for child in self._children():
            try:
                if child.name() == f"shardkv-{role}":
                    return child.pid
            except psutil.Error:
                continue
        return 0

    def client(self) -> redis.Redis:
        # No retries: a command resent after a lost connection would run twice.
        return redis.Redis(
            port=self.port, socket_timeout=TIMEOUT, decode_responses=True, retry=Retry(NoBackoff(), 0)
        )

    def key_on(self, shard: int, prefix: str) -> str:
        i = 0
        while True:
            key = f"{prefix}{i}"
            if self.router.shard_of(key.encode()) == shard:
                return key
            i += 1

    def hold(self, point: str) -> None:
        Path(self.fault_file).write_text(point)

    def release(self) -> None:
        Path(self.fault_file).write_text("")

    def recovered(self, limit: float = 60.0) -> bool:
        """Does every shard answer (a key of each), within ``limit`` seconds?"""
        deadline = time.monotonic() + limit
        keys = [self.key_on(s, "probe") for s in range(self.shards)]
        while time.monotonic() < deadline:
            try:
                c = redis.Redis(port=self.port, socket_timeout=5)
                for key in keys:
                    c.get(key)
                c.close()
                return True
            except (redis.RedisError, OSError):
                time.sleep(0.05)
        return False


# -- the operations -------------------------------------------------------------------
#
# Each kind: setup(c, E-key maker, P-key maker, tag) -> (keys, op, check), where op(c)
# runs the operation and check(c, outcome) returns (violation, lost) texts or None,
# outcome being "ok", "error" or "dropped" (no reply: the connection was lost).


def _applied(outcome: str, new: bool, old: bool) -> tuple[str | None, str | None]:
    """The state is exactly the new one (``new``), exactly the old (``old``), or neither."""
    if not new and not old:
        return "half-applied or invariant broken", None
    if outcome == "ok" and not new:
        return None, "acknowledged but not applied"
    if outcome == "error" and not old:
        return "answered with an error but applied", None
    return None, None


def kind_rename(c, e, p, tag, **_):
    src, dst = e("rn"), p("rn")
    value = f"v-{tag}"
    c.set(src, value)

    def op(c):
        return c.rename(src, dst)

    def check(c, outcome):
        s, d = c.get(src), c.get(dst)
        return _applied(outcome, s is None and d == value, s == value and d is None)

    return [src, dst], op, check


def kind_mset(c, e, p, tag, **_):
    a, b = e("ms"), p("ms")
    c.mset({a: "old", b: "old"})
    new = f"new-{tag}"

    def op(c):
        return c.mset({a: new, b: new})

    def check(c, outcome):
        va, vb = c.get(a), c.get(b)
        return _applied(outcome, va == vb == new, va == vb == "old")

    return [a, b], op, check


def kind_msetnx(c, e, p, tag, **_):
    a, b = e("nx"), p("nx")  # new keys (the tag is in them): every part sets its own
    new = f"new-{tag}"

    def op(c):
        return c.msetnx({a: new, b: new})

    def check(c, outcome):
        va, vb = c.get(a), c.get(b)
        return _applied(outcome, va == vb == new, va is None and vb is None)

    return [a, b], op, check


def kind_msetnx_no(c, e, p, tag, **_):
    """MSETNX voted down: P's key exists, so E's part, which set its new
    key, is undone; whatever dies, E's key is never left set."""
    a, b = e("nx"), p("nx")
    old = f"old-{tag}"
    c.set(b, old)

    def op(c):
        return c.msetnx({a: f"new-{tag}", b: f"new-{tag}"})

    def check(c, outcome):
        if c.get(a) is not None or c.get(b) != old:
            return "a part of an MSETNX voted down was applied", None
        return None, None

    return [a, b], op, check


def kind_exec(c, e, p, tag, **_):
    x, y = e("acct"), p("acct")
    c.mset({x: 100})
    c.set(y, 100)

    def op(c):
        pipe = c.pipeline(transaction=True)
        pipe.decrby(x, 30)
        pipe.incrby(y, 30)
        return pipe.execute()

    def check(c, outcome):
        vx, vy = int(c.get(x) or 0), int(c.get(y) or 0)
        if vx + vy != 200:
            return f"bank total {vx + vy} != 200", None
        return _applied(outcome, (vx, vy) == (70, 130), (vx, vy) == (100, 100))

    return [x, y], op, check


def kind_smove(c, e, p, tag, **_):
    s1, s2 = e("set"), p("set")
    member = f"m-{tag}"
    c.sadd(s1, member, "stay")
    c.sadd(s2, "other")

    def op(c):
        return c.smove(s1, s2, member)

    def check(c, outcome):
        in1, in2 = c.sismember(s1, member), c.sismember(s2, member)
        return _applied(outcome, in2 and not in1, in1 and not in2)

    return [s1, s2], op, check


def kind_sunionstore(c, e, p, tag, **_):
    dst, src = e("dst"), p("src")
    c.sadd(dst, "old")
    c.sadd(src, f"a-{tag}", f"b-{tag}")

    def op(c):
        return c.sunionstore(dst, [src])

    def check(c, outcome):
        got = c.smembers(dst)
        return _applied(outcome, got == {f"a-{tag}", f"b-{tag}"}, got == {"old"})

    return [dst, src], op, check


def kind_del(c, e, p, tag, **_):
    a, b = e("del"), p("del")
    c.set(a, "x")
    c.set(b, "x")

    def op(c):
        return c.delete(a, b)

    def check(c, outcome):
        n = c.exists(a) + c.exists(b)
        return _applied(outcome, n == 0, n == 2)

    return [a, b], op, check


def kind_flushall(c, e, p, tag, on_shard, shards):
    """FLUSHALL: a key on every shard, all gone or all there (the keys of
    the earlier rounds are read again after it, see one_round)."""
    keys = [on_shard(s, "fl") for s in range(shards)]
    c.mset(dict.fromkeys(keys, "x"))

    def op(c):
        return c.flushall()

    def check(c, outcome):
        n = c.exists(*keys)
        return _applied(outcome, n == 0, n == len(keys))

    return keys, op, check


TRANSFER = """
redis.call('DECRBY', KEYS[1], 30)
redis.call('INCRBY', KEYS[2], 30)
redis.call('INCR', ARGV[1])
return 1
"""


def kind_script(c, e, p, tag, **_):
    """A Lua transfer between two shards that also writes a key it did not
    declare, on the executor's shard: all three changes or none."""
    x, y, undeclared = e("sx"), p("sy"), e("su")
    c.mset({x: 100})
    c.set(y, 100)

    def op(c):
        return c.eval(TRANSFER, 2, x, y, undeclared)

    def check(c, outcome):
        vx, vy, vu = int(c.get(x) or 0), int(c.get(y) or 0), int(c.get(undeclared) or 0)
        if vx + vy != 200:
            return f"bank total {vx + vy} != 200 ({vx}, {vy}, {vu})", None
        return _applied(outcome, (vx, vy, vu) == (70, 130, 1), (vx, vy, vu) == (100, 100, 0))

    return [x, y, undeclared], op, check


SETUPS: dict[str, Callable] = {
    "rename": kind_rename,
    "mset": kind_mset,
    "msetnx": kind_msetnx,
    "msetnx_no": kind_msetnx_no,
    "exec": kind_exec,
    "smove": kind_smove,
    "sunionstore": kind_sunionstore,
    "del": kind_del,
    "flushall": kind_flushall,
    "script": kind_script,
}


def _stopped(pid: int, limit: float) -> bool:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        try:
            if psutil.Process(pid).status() == psutil.STATUS_STOPPED:
                return True
        except psutil.Error:
            return False
        time.sleep(0.01)
    return False


def until_stopped(pids: list[int], limit: float) -> int | None:
    """The index in ``pids`` of the first process seen held (SIGSTOP) at a
    fault point within ``limit`` seconds; None if none was."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        for i, pid in enumerate(pids):
            try:
                if psutil.Process(pid).status() == psutil.STATUS_STOPPED:
                    return i
            except psutil.Error:
                continue
        time.sleep(0.01)
    return None


def _gone(pid: int, limit: float) -> None:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        try:
            if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
                return
        except psutil.Error:
            return
        time.sleep(0.01)


def one_round(
    server: Server, tally: Tally, kind: str, point: str, hold_role: str, victim: str, tag: str, final: dict
) -> None:
    """Run one round; add its figures to ``tally`` and its keys' end state to ``final``."""
    tally.rounds += 1
    shards = list(range(server.shards))
    rnd = random.Random(tag)
    e_shard, p_shard = rnd.sample(shards, 2)
    c = server.client()
    keys, op, check = SETUPS[kind](
        c,
        lambda prefix: server.key_on(e_shard, f"{tag}:{prefix}:e"),
        lambda prefix: server.key_on(p_shard, f"{tag}:{prefix}:p"),
        tag,
        on_shard=lambda shard, prefix: server.key_on(shard, f"{tag}:{prefix}:{shard}"),
        shards=server.shards,
    )
    # The operation's connection, made now: with several acceptors, the one
    # it reached is the operation's coordinator (held or killed below).
    client = server.client()
    coordinator = server.acceptor_of(client)
    if point == "committed":
        held_pid = server.acceptor_pid(coordinator)
        server.hold("committed")
    else:
        held_shard = e_shard if hold_role == "executor" else p_shard
        held_pid = server.pid(f"shard{held_shard}")
        server.hold(f"{point}@{held_shard}")
    result: dict = {}

    def run() -> None:
        try:
            op(client)
            result["outcome"] = "ok"
        except redis.ResponseError as ex:
            result["outcome"] = "error"
            result["error"] = str(ex)
        except (redis.ConnectionError, redis.TimeoutError, OSError) as ex:
            result["outcome"] = "dropped"
            result["error"] = repr(ex)
        finally:
            client.close()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    reached = _stopped(held_pid, 5.0)
    server.release()
    if reached:
        victim_pid = {
            "held": held_pid,
            "executor": server.pid(f"shard{e_shard}"),
            "other": server.pid(f"shard{p_shard}"),
            "acceptor": server.acceptor_pid(coordinator),
        }[victim]
        try:
            os.kill(victim_pid, signal.SIGKILL)
            tally.kills += 1
        except OSError:
            pass
        if victim_pid != held_pid:
            # Let the others see the death before the held process goes on.
            _gone(victim_pid, 5.0)
            time.sleep(0.1)
            try:
                os.kill(held_pid, signal.SIGCONT)
            except OSError:
                pass
    else:
        tally.not_reached += 1
        try:
            os.kill(held_pid, signal.SIGCONT)
        except OSError:
            pass
    thread.join(TIMEOUT + 5)
    where = f"{kind} held at {point} ({hold_role}), killed {victim if reached else 'nothing'}"
    if thread.is_alive() or not server.recovered():
        tally.hangs += 1
        tally.problems.append(f"hang: {where}")
        return
    outcome = result.get("outcome", "dropped")
    tally.outcomes[outcome] = tally.outcomes.get(outcome, 0) + 1
    c = server.client()
    violation, lost = check(c, outcome)
    if violation:
        tally.violations += 1
        tally.problems.append(f"violation: {where}: {violation} (reply: {outcome} {result.get('error', '')})")
    if lost:
        tally.lost += 1
        tally.problems.append(f"lost: {where}: {lost}")
    if kind == "flushall":  # the earlier rounds' keys: gone or not, as on every shard
        for earlier, (earlier_check, _) in list(final.items()):
            final[earlier] = (earlier_check, _dump(c, list(earlier)))
    final[tuple(keys)] = (check, _dump(c, keys))
    c.close()


def _dump(c: redis.Redis, keys: list[str]) -> list:
    out = []
    for key in keys:
        kind = c.type(key)
        if kind == "string":
            out.append(c.get(key))
        elif kind == "set":
            out.append(sorted(c.smembers(key)))
        else:
            out.append(kind)
    return out


def after_restart(server: Server, tally: Tally, final: dict) -> None:
    """Crash the whole server, start it from its AOF: every round's keys as they were."""
    server.crash()
    server.start()
    c = server.client()
    for keys, (_, expected) in final.items():
        got = _dump(c, list(keys))
        if got != expected:
            tally.lost += 1
            tally.problems.append(f"after restart: {keys}: {got} != {expected}")
    c.close()


def plan(rounds: int | None, seed: int) -> list[tuple[str, str, str, str]]:
    """Every (kind, point, held role, victim), shuffled, repeated or cut to ``rounds``."""
    cases = []
    for kind in KINDS:
        for point in POINTS[kind]:
            holds = (
                ("acceptor",)
                if point == "committed"
                else ("executor",)
                if point == "ran"
                else ("executor", "other")
            )
            if point == "prepared":
                holds = ("other",)
            if kind in HELD_BY:
                holds = (HELD_BY[kind],)
            for hold in holds:
                for victim in VICTIMS:
                    cases.append((kind, point, hold, victim))
    rnd = random.Random(seed)
    rnd.shuffle(cases)
    if rounds is None:
        return cases
    out = []
    while len(out) < rounds:
        out.extend(cases)
    return out[:rounds]


def run_rounds(cases: list, shards: int = 4, restart: bool = True, log=None, acceptors: int = 1) -> Tally:
    tally = Tally()
    server = Server(shards, acceptors)
    final: dict = {}
    try:
        server.start()
        for n, (kind, point, hold, victim) in enumerate(cases):
            one_round(server, tally, kind, point, hold, victim, f"r{n}", final)
            if log is not None:
                log(n, tally)
        if restart:
            after_restart(server, tally, final)
    finally:
        server.cleanup()
    return tally


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=None, help="default: every case once")
    parser.add_argument("--shards", type=int, default=4)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--acceptors", type=int, default=1)
    args = parser.parse_args()
    cases = plan(args.rounds, args.seed)
    t0 = time.monotonic()

    def progress(n: int, tally: Tally) -> None:
        if (n + 1) % 20 == 0:
            print(f"  {n + 1}/{len(cases)}: {tally.line()}", flush=True)

    tally = run_rounds(cases, args.shards, log=progress, acceptors=args.acceptors)
    print(tally.line())
    print(
        f"({len(cases)} rounds in {time.monotonic() - t0:.0f} s, then a crash and restart of the whole server)"
    )
    for problem in tally.problems:
        print("  " + problem)


if __name__ == "__main__":
    main()
