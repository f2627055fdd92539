"""Busy scripts and SCRIPT KILL where timing decides, against
redis-server 7.0.15 (at ``$SHARDKV_TEST_ACCEPTORS`` acceptors).

- A script that writes just as the kill comes: Redis decides the kill in
  the script's hook, so the write came first and the kill answers
  ``-UNKILLABLE``.  shardkv's acceptor answered ``+OK`` from the worker's
  last report, which said nothing was written yet, and the script wrote
  and ran on.  The worker now decides, atomically with the script's writes
  (``scripting._KillVerdict``).
- A cross-shard script sent while another script runs, before it is past
  busy-reply-threshold: Redis reads it at the threshold and answers it
  ``-BUSY``.  shardkv's one acceptor ran it after that script (its park
  waited behind that script on its shard); now the worker refuses the
  park (``_Answer.refusable_while_busy``).  Both scripts count themselves
  in one key, so the test tells that order from the reverse one.
- A kill that reaches the worker as the script reads a key of another
  shard: Redis reads the kill at the script's next hook and stops it.
  shardkv's run on the one shard stopped there to run again over both,
  the kill answered ``-NOTBUSY`` and the script ran on; now the worker
  stops it there, as killed (``Engine._leave``).
- The same kill as it writes, of a function, by FUNCTION KILL or by
  SCRIPT KILL: Redis checks for writes before the kind (``-UNKILLABLE``);
  shardkv's acceptor answered the other kind's ``-BUSY`` from the last
  report, and now asks the worker (``wire.REPORT_SIGNAL``).
- A kill queued in MULTI, its EXEC sent while a script runs: Redis reads
  the EXEC at the threshold and aborts it ``-BUSY``.  shardkv ran it at
  once, its kill answered from the last report (``-NOTBUSY``); the EXEC
  now waits as a kill does (``transactions._at_threshold``).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import pytest

from shardkv.protocol import errors
from tests.support.acceptors import client_on, every_acceptor_answers
from tests.support.placement import key_on
from tests.support.processes import wait_busy
from tests.support.resp import ErrorReply
from tests.support.servers import ServerProcess, start_redis, start_shardkv

WAIT = 60.0  # seconds for what must happen (a bound, not a timing check)
# Runs of a scenario whose kill, by the script's own clock, came outside the
# window it needs (see _missed): each server's runs are retried up to this
# many times in all, and only a run inside the window is compared.
ATTEMPTS = 5

NOW = "local function now() local t = redis.call('TIME') return t[1] * 1000000 + t[2] end "

# Past the threshold (100 ms: its hooks report it busy), at 150 ms, it
# enters one long C call (no count hook: Redis reads nothing meanwhile, and
# the worker decides nothing; about 2 s on either server), writes, and
# spins 300 ms more: its hooks read the kill sent during that call.
# (Its spins run plain Lua between their TIME calls: the hooks come every
# few ms however slow a call is.)
WRITES_AS_KILLED = (
    NOW + "local t0 = now() while now() - t0 < 150000 do for i = 1, 2000 do end end "
    "local c0 = now() string.find(string.rep('a', 22000), '.-b') local c1 = now() "
    "redis.call('SET', KEYS[1], 'written') "
    "local t1 = now() while now() - t1 < 300000 do for i = 1, 2000 do end end "
    "return {1, c0, c1}"
)
# (It returns 1 and its C call's bounds, in µs of its clock: see _missed.)
# When the kill is sent, in seconds after -BUSY was seen.  -BUSY comes once
# the script has run 100 ms (wall clock, however loaded the machine), so the
# kill comes at 350 ms of the script at the earliest, past its first spin
# (150 ms of wall clock), whenever the script started; before the C call's
# end (2 s of CPU at the least: later still on a loaded machine) unless
# this process is held up that long.
KILL_AFTER_BUSY = 0.25


# The module's pair of servers, started by its first test (see servers).
_SHARED: list[ServerProcess] = []


@pytest.fixture(scope="module", autouse=True)
def _stop_shared() -> Iterator[None]:
    yield
    while _SHARED:
        _SHARED.pop().stop()


def _reset(port: int, k: int) -> bool:
    """The shared server as a fresh one: every acceptor answering (no
    script left running), no key, script or library, busy-reply-threshold
    at its default; False if it cannot be made so."""
    if not every_acceptor_answers(port, k):
        return False
    try:
        with client_on(port, 0, k=k, timeout=WAIT) as c:
            for command in (
                ("FLUSHALL",),
                ("SCRIPT", "FLUSH"),
                ("FUNCTION", "FLUSH"),
                ("CONFIG", "SET", "busy-reply-threshold", "5000"),
            ):
                if c.command(*command) != b"OK":
                    return False
    except (OSError, ErrorReply):
        return False
    return True


@pytest.fixture
def servers() -> tuple[tuple[int, int], tuple[int, int]]:
    """((redis-server's port, 1), (shardkv's port, its acceptors)): shardkv
    of two shards.  Shared by the module's tests, reset before each; a
    test that left either one busy or deaf (a read that timed out, a
    script still running) has the pair replaced by a fresh one."""
    if _SHARED and not all(_reset(s.port, s.acceptors) for s in _SHARED):
        while _SHARED:
            _SHARED.pop().stop()
    if not _SHARED:
        _SHARED.append(start_redis())
        _SHARED.append(start_shardkv(shards=2))
    real, ours = _SHARED
    return (real.port, 1), (ours.port, ours.acceptors)


def _first_word(reply: object) -> object:
    return str(reply).split(" ")[0] if isinstance(reply, ErrorReply) else reply


def _now_us() -> int:
    """This process's clock as the scripts read theirs (TIME: the wall
    clock, in µs; the servers run on this machine)."""
    return time.time_ns() // 1000


class _Missed(Exception):
    """A run whose kill, by the script's own clock, was sent outside the
    window its scenario needs: it proves nothing either way."""


def _inside(run: Callable[[], list]) -> list:
    """``run()`` (a scenario on one server) again until its kill came
    inside the window, at most ATTEMPTS times; the same rule for both
    servers, and it reads only the script's clock: a run whose answers are
    wrong but whose kill came in time is returned, never retried."""
    for _ in range(ATTEMPTS - 1):
        try:
            return run()
        except _Missed as e:
            print(f"retried: {e}")  # (shown with -s, or when the test fails)
    try:
        return run()
    except _Missed as e:
        pytest.fail(f"the kill missed its window {ATTEMPTS} times: {e}")


# WRITES_AS_KILLED as a function.
WRITES_AS_KILLED_LIBRARY = (
    "#!lua name=killwrite\n"
    "redis.register_function('writes', function(KEYS) "
    + WRITES_AS_KILLED.replace("return {1, c0, c1}", "return {1, c0, c1} end)")
)


def _kill_as_it_writes(port: int, k: int, function: bool = False, kill: str = "SCRIPT") -> list:
    """The script (or the function: ``function``) killed by ``kill``
    during its C call: the kill's reply, the script's, and the key."""
    key = key_on(0, "killwrite", shards=2)
    killer = client_on(port, 0, k=k, timeout=WAIT)
    caller = client_on(port, 0, k=k, timeout=WAIT)
    try:
        killer.command("CONFIG", "SET", "busy-reply-threshold", "100")
        killer.command("DEL", key)
        if function:
            killer.command("FUNCTION", "LOAD", "REPLACE", WRITES_AS_KILLED_LIBRARY)
            caller.send("FCALL", "writes", 1, key)
        else:
            caller.send("EVAL", WRITES_AS_KILLED, 1, key)
        wait_busy(lambda: killer.command("GET", key))
        # (Nothing outside shows where the script is, and nothing is read
        # during its C call: the kill goes at a time after -BUSY, which the
        # script's own clock bounds from below; see KILL_AFTER_BUSY.)
        time.sleep(KILL_AFTER_BUSY)
        sent = _now_us()
        killer.send(kill, "KILL")
        got = [_first_word(killer.read_reply()), caller.read_reply()]
        got.append(killer.command("GET", key))
        if isinstance(got[1], list) and len(got[1]) == 3:
            # Its C call's bounds: the kill must have been sent during it.
            # (A kill sent before it, during the first spin, stops the script
            # unwritten; one after it finds the write made, whatever the
            # server does with a kill it holds, and proves nothing.)
            returned, c0, c1 = got[1]
            if not c0 <= sent <= c1:
                raise _Missed(f"kill sent at {sent}, the C call ran {c0}..{c1}: {got}")
            got[1] = returned
        killer.command("CONFIG", "SET", "busy-reply-threshold", "5000")
        if function:
            killer.command("FUNCTION", "DELETE", "killwrite")
        return got
    finally:
        killer.close()
        caller.close()


def test_a_kill_as_the_script_writes_finds_it_unkillable(servers) -> None:
    (real, _), (ours, k) = servers
    expected = _inside(lambda: _kill_as_it_writes(real, 1))
    assert expected == ["UNKILLABLE", 1, b"written"]
    assert _inside(lambda: _kill_as_it_writes(ours, k)) == expected


@pytest.mark.parametrize("kill", ["FUNCTION", "SCRIPT"])
def test_a_kill_of_a_function_as_it_writes_finds_it_unkillable(servers, kill: str) -> None:
    """The same with a function, killed by FUNCTION KILL, or by SCRIPT
    KILL: Redis checks for writes before the kind, in the hook, and
    answers ``-UNKILLABLE``; shardkv's acceptor answered the other kind's
    ``-BUSY`` from the last report (the worker is now asked to report at
    its next hook: wire.REPORT_SIGNAL)."""
    (real, _), (ours, k) = servers
    expected = _inside(lambda: _kill_as_it_writes(real, 1, True, kill))
    assert expected == ["UNKILLABLE", 1, b"written"]
    assert _inside(lambda: _kill_as_it_writes(ours, k, True, kill)) == expected


# A script that counts itself first (INCR) and spins 1.5 s by its clock,
# past the threshold (500 ms), then returns its count; and one over both
# shards that counts itself too (the same key), then writes the other.
COUNTS_AND_SPINS = (
    NOW + "local n = redis.call('INCR', KEYS[1]) local t0 = now() while now() - t0 < 1500000 do end return n"
)
COUNTS_ACROSS = "return {redis.call('INCR', KEYS[1]), redis.call('SET', KEYS[2], 'b')}"


def _cross_shard_behind_a_busy_script(port: int, k: int) -> list:
    """A script on shard 0, then (before its threshold) a script over both
    shards: their replies, the count, and whether the second one wrote on
    shard 1.  Each script's count says which ran first: the one on shard
    0 counts 1 unless the second ran before it (then 2); the second counts
    2 if it ran after it (1 before it), or answers ``-BUSY`` and counts
    nothing, as in Redis, which reads it at the first one's threshold."""
    counter, k1 = key_on(0, "behindbusy", shards=2), key_on(1, "behindbusy", shards=2)
    admin = client_on(port, 0, k=k, timeout=WAIT)
    caller = client_on(port, 0, k=k, timeout=WAIT)
    crossing = client_on(port, 0, k=k, timeout=WAIT)
    try:
        admin.command("CONFIG", "SET", "busy-reply-threshold", "500")
        admin.command("DEL", counter, k1)
        caller.send("EVAL", COUNTS_AND_SPINS, 1, counter)
        # (The first is read first: an order, not a timing check.  Read
        # after the threshold instead, on a loaded machine, the second
        # gets -BUSY as well, at once.)
        time.sleep(0.1)
        crossing.send("EVAL", COUNTS_ACROSS, 2, counter, k1)
        got = [caller.read_reply(), _first_word(crossing.read_reply())]
        got += [admin.command("GET", counter), admin.command("EXISTS", k1)]
        admin.command("CONFIG", "SET", "busy-reply-threshold", "5000")
        return got
    finally:
        for c in (admin, caller, crossing):
            c.close()


def test_a_cross_shard_script_sent_before_the_threshold_gets_busy(servers) -> None:
    """shardkv ran the second script after the first (its park waited
    behind it on shard 0): ``[1, [2, OK], 2, 1]``; run before it, it would
    show ``[2, [1, OK], 2, 1]``."""
    (real, _), (ours, k) = servers
    expected = _cross_shard_behind_a_busy_script(real, 1)
    assert expected == [1, "BUSY", b"1", 0]
    assert _cross_shard_behind_a_busy_script(ours, k) == expected


# As WRITES_AS_KILLED, but it reads a key it did not declare, of the other
# shard, where it wrote, and spins 1.5 s more: on shardkv its run on its
# one shard stops there and it runs again over both shards.  (If it is not
# killed, it returns 1 and its end, in µs of its clock.)
ESCAPES_AS_KILLED = (
    NOW + "local t0 = now() while now() - t0 < 150000 do for i = 1, 2000 do end end "
    "string.find(string.rep('a', 22000), '.-b') "
    "redis.call('GET', ARGV[1]) "
    "local t1 = now() while now() - t1 < 1500000 do for i = 1, 2000 do end end "
    "return {1, now()}"
)


def _kill_as_it_crosses_shards(port: int, k: int) -> list:
    key, other = key_on(0, "killcross", shards=2), key_on(1, "killcross", shards=2)
    killer = client_on(port, 0, k=k, timeout=WAIT)
    caller = client_on(port, 0, k=k, timeout=WAIT)
    try:
        killer.command("CONFIG", "SET", "busy-reply-threshold", "100")
        caller.send("EVAL", ESCAPES_AS_KILLED, 1, key, other)
        wait_busy(lambda: killer.command("GET", key))
        time.sleep(KILL_AFTER_BUSY)  # (during the C call: see KILL_AFTER_BUSY)
        sent = _now_us()
        killer.send("SCRIPT", "KILL")
        got = [_first_word(killer.read_reply()), _first_word(caller.read_reply())]
        if isinstance(got[1], list) and got[1][1] < sent:
            # It had ended, by its clock, before the kill was sent.
            raise _Missed(f"kill sent at {sent}, the script ended at {got[1][1]}: {got}")
        killer.send("SCRIPT", "KILL")
        got.append(_first_word(killer.read_reply()))
        killer.command("CONFIG", "SET", "busy-reply-threshold", "5000")
        return got
    finally:
        killer.close()
        caller.close()


def test_a_kill_as_the_script_moves_across_shards_stops_it(servers) -> None:
    """The kill reaches the worker as the script leaves its one shard to
    run again over both: Redis reads it at the next hook, which stops the
    script.  shardkv's acceptor took the run's end for the script's and
    answered ``-NOTBUSY`` while the script ran on, to its end."""
    (real, _), (ours, k) = servers
    expected = _inside(lambda: _kill_as_it_crosses_shards(real, 1))
    assert expected == [b"OK", "ERR", "NOTBUSY"]
    assert _inside(lambda: _kill_as_it_crosses_shards(ours, k)) == expected


KINDS_LIBRARY = (
    "#!lua name=killkinds\n" + NOW + "redis.register_function('writespin', function(keys) "
    "redis.call('SET', keys[1], 'w') local t0 = now() while now() - t0 < 1500000 do end return {1, now()} end) "
    "redis.register_function{function_name='spin', callback=function() while true do end end, "
    "flags={'no-writes'}}"
)
WRITE_SPIN = (
    "redis.call('SET', KEYS[1], 'w') "
    + NOW
    + "local t0 = now() while now() - t0 < 1500000 do end return {1, now()}"
)
# (The writing ones return 1 and their end, in µs of their clock.)


def _kills_of_each_kind(port: int, k: int) -> list:
    """SCRIPT KILL and FUNCTION KILL of a busy function and a busy EVAL,
    each written or not: the replies, whole."""
    key = key_on(0, "killkinds", shards=2)
    killer = client_on(port, 0, k=k, timeout=WAIT)
    caller = client_on(port, 0, k=k, timeout=WAIT)
    got: list = []

    def kill(kind: str) -> int:
        sent = _now_us()
        killer.send(kind, "KILL")
        got.append(str(killer.read_reply()))
        return sent

    try:
        killer.command("CONFIG", "SET", "busy-reply-threshold", "100")
        killer.command("FUNCTION", "LOAD", "REPLACE", KINDS_LIBRARY)
        for call, first, then in (
            (("FCALL", "writespin", 1, key), "SCRIPT", "FUNCTION"),
            (("EVAL", WRITE_SPIN, 1, key), "FUNCTION", "SCRIPT"),
            (("FCALL", "spin", 1, key), "SCRIPT", "FUNCTION"),
            (("EVAL", "while true do end", 1, key), "FUNCTION", "SCRIPT"),
        ):
            caller.send(*call)
            wait_busy(lambda: killer.command("GET", key))
            sent = kill(first)  # the other kind
            kill(then)
            reply = caller.read_reply()
            if isinstance(reply, list):
                if reply[1] < sent:
                    # It had ended, by its clock, before the first kill.
                    raise _Missed(f"kill sent at {sent}, the script ended at {reply[1]}: {got}")
                reply = reply[0]
            got.append(_first_word(reply))
        killer.command("FUNCTION", "DELETE", "killkinds")
        killer.command("CONFIG", "SET", "busy-reply-threshold", "5000")
        return got
    finally:
        killer.close()
        caller.close()


def test_kills_of_the_other_kind_answer_as_redis(servers) -> None:
    """Redis's scriptKill checks for writes before the kind: a kill of the
    other kind finds a script that wrote unkillable, and one that did not
    busy (``-BUSY``, naming the kill that fits)."""
    (real, _), (ours, k) = servers
    expected = _inside(lambda: _kills_of_each_kind(real, 1))
    assert expected[:2] == [errors.UNKILLABLE] * 2
    assert expected[9:11] == [errors.BUSY, "b'OK'"]
    assert _inside(lambda: _kills_of_each_kind(ours, k)) == expected


EXEC_KILLS_LIBRARY = (
    "#!lua name=execkills\n"
    "redis.register_function{function_name='spin', callback=function() while true do end end, "
    "flags={'no-writes'}}"
)
# A script that ends before the threshold (500 ms), by its own clock.
SHORT_SPIN = NOW + "local t0 = now() while now() - t0 < 300000 do end return 1"


def _exec_holding_a_kill(port: int, k: int) -> list:
    """``MULTI``, a kill of each kind, ``EXEC``, sent (by a client of each
    acceptor) while a script (an EVAL, a function) runs, before its
    threshold; and while one runs that ends before it: the replies.  The
    busy ones are stopped after, by the kill that fits."""
    got: list = []
    admin = client_on(port, 0, k=k, timeout=WAIT)
    try:
        admin.command("CONFIG", "SET", "busy-reply-threshold", "500")
        admin.command("FUNCTION", "LOAD", "REPLACE", EXEC_KILLS_LIBRARY)
        for where in range(k):
            for call, stop in (
                (("EVAL", "while true do end", 0), "SCRIPT"),
                (("FCALL", "spin", 0), "FUNCTION"),
                (("EVAL", SHORT_SPIN, 0), None),
            ):
                for kill in ("SCRIPT", "FUNCTION"):
                    caller = client_on(port, 0, k=k, timeout=WAIT)
                    queuer = client_on(port, where, k=k, timeout=WAIT)
                    try:
                        caller.send(*call)
                        # (Before the threshold, unless the machine is slow:
                        # after it, the EXEC gets -BUSY too, at once.)
                        time.sleep(0.1)
                        queuer.send("MULTI")
                        queuer.send(kill, "KILL")
                        queuer.send("EXEC")
                        got.append([str(queuer.read_reply()) for _ in range(3)])
                        if stop is not None:
                            got.append(str(admin.command(stop, "KILL")))
                        got.append(_first_word(caller.read_reply()))
                    finally:
                        caller.close()
                        queuer.close()
        admin.command("FUNCTION", "DELETE", "execkills")
        admin.command("CONFIG", "SET", "busy-reply-threshold", "5000")
        return got
    finally:
        admin.close()


def test_an_exec_holding_a_kill_is_answered_as_redis_reads_it(servers) -> None:
    """A kill (either kind) queued in MULTI, its EXEC sent while a script
    runs: Redis reads the EXEC at the threshold and aborts it with the
    running script's ``-BUSY`` (EXEC has no allow-busy flag), whatever
    the kill's kind; after a script that ended before, the kill finds none
    (``-NOTBUSY``).  shardkv ran such an EXEC at once, and its kill
    answered from the last report: ``-NOTBUSY`` while the script ran on,
    or a kill of the script (or the other kind's ``-BUSY``) from a report
    it had since outgrown."""
    (real, _), (ours, k) = servers
    expected = _exec_holding_a_kill(real, 1)
    aborted = str(ErrorReply(errors.EXECABORT_BECAUSE % errors.BUSY))
    assert expected[:3] == [["b'OK'", "b'QUEUED'", aborted], "b'OK'", "ERR"]
    assert expected[-2:] == [["b'OK'", "b'QUEUED'", f"[b'{errors.NOTBUSY}']"], 1]
    assert _exec_holding_a_kill(ours, k) == expected * k
