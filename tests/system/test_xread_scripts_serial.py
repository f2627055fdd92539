"""Cross-shard XREADs beside pipelined cross-shard scripts through the other
acceptor: every reply must be one that Redis gives in some serial order of
the scripts (issue 22, strict serializability).

Streams ``S1`` and ``S2`` live on two shards.  A client of acceptor 0
pipelines scripts (EVALSHA mostly, EVAL too), each an atomic run of XADDs
to one or both streams, in a random order of the two, tagged with the
script's number; clients of acceptor 1 read both streams meanwhile (the
streams' order in the command random too): plain XREAD (from ``0`` or from
the IDs they last saw, with or without COUNT), XREAD BLOCK with ``$`` or
with the IDs they last saw, and XREADGROUP with and without BLOCK.  At the
end the streams' entries name the script of each, and each reply is
checked against the serial order of the scripts (their pipeline order):

* a reply served at once is every entry past the IDs asked (COUNT at most)
  of the scripts ``1..p``, for one ``p`` for all streams together, no
  earlier than the scripts answered before the read was sent and no later
  than those sent before its reply came: never one script's entry in one
  stream without its entry in the other, never a later script's entry
  without an earlier's;
* a reply to a read that blocked is one stream's entries past the IDs
  asked, whole scripts (COUNT aside), none answered before the read was
  sent (``$``: from a script's first entry in it);
* and exactly what Redis 7.0 serves after the whole
  script ``j`` that woke it (``handleClientsBlockedOnKeys``): the entries
  of ``j`` (COUNT at most) in the first of its streams that ``j`` wrote,
  that stream alone, nothing past the IDs asked before ``j``, and ``j``
  not answered before the read was sent (no entries of later scripts, nor
  of earlier ones: the "reads all entries" report).

redis-server and shardkv (two acceptors) must pass all three.  Before
the XREAD's ``__bwait``s went with its first try and its notified try
read up to the notification's ID (``__xreadupto``), about 30 of 450
reads a round failed the third: a woken ``XREAD BLOCK ... $ $`` served
from the stream a script wrote second, or with later scripts' entries
too (the report); a woken XREADGROUP's try read a later script's entries
too (1 read in about 4 rounds) until it did the same
(``__xgroupupto``).
``$SHARDKV_TEST_ROUNDS`` sets the rounds (2 unless told) and
``$SHARDKV_TEST_SCRIPTS`` the scripts of each (150 unless told); a round
stops early after ``ROUND_S`` seconds.
"""

from __future__ import annotations

import os
import random
import signal
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import pytest

from tests.support.acceptors import acceptor_pids, client_on
from tests.support.placement import key_on
from tests.support.resp import ErrorReply, RespClient, encode_command
from tests.support.servers import ServerProcess, start_redis, start_shardkv
from tests.support.waits import WAIT

pytestmark = pytest.mark.slow

ROUNDS = int(os.environ.get("SHARDKV_TEST_ROUNDS", "2"))
SCRIPTS = int(os.environ.get("SHARDKV_TEST_SCRIPTS", "150"))
ROUND_S = float(os.environ.get("SHARDKV_TEST_ROUND_S", "20"))
BLOCK_MS = 100
# Each script XADDs its number (ARGV[1]) to KEYS[1] or KEYS[2] as ARGV[2]'s
# digits say, in that order, and returns the IDs.
ADD = (
    "local ids = {} "
    "for i = 1, #ARGV[2] do "
    "ids[i] = redis.call('xadd', KEYS[tonumber(string.sub(ARGV[2], i, i))], '*', 'n', ARGV[1]) "
    "end return ids"
)
PLANS = ["12", "21", "1", "2", "112", "212", "122"]

ID = tuple[int, int]


def parse_id(raw: bytes | str) -> ID:
    text = raw.decode() if isinstance(raw, bytes) else raw
    ms, _, seq = text.partition("-")
    return int(ms), int(seq or 0)


@dataclass
class Read:
    """One read's command and what came back, with when."""

    kind: str  # "plain", "dollar", "ids", "group", "group-block"
    keys: list[str]
    ids: list[ID] | None  # None for ``$``
    count: int | None
    sent: float
    came: float = 0.0
    reply: object = None


@dataclass
class Round:
    s1: str
    s2: str
    plans: dict[int, str] = field(default_factory=dict)  # script -> plan
    sent: dict[int, float] = field(default_factory=dict)
    answered: dict[int, float] = field(default_factory=dict)
    reads: list[Read] = field(default_factory=list)
    entries: dict[str, list[tuple[ID, int]]] = field(default_factory=dict)

    def stream(self, digit: str) -> str:
        return self.s1 if digit == "1" else self.s2

    def answered_before(self, t: float) -> int:
        """How many scripts (a prefix: one client's pipeline) were answered before ``t``."""
        return sum(1 for came in self.answered.values() if came < t)

    def sent_before(self, t: float) -> int:
        return max((n for n, sent in self.sent.items() if sent < t), default=0)

    def after(self, key: str, id_: ID) -> list[tuple[ID, int]]:
        return [e for e in self.entries[key] if e[0] > id_]


def _entries(reply: object) -> dict[str, list[ID]]:
    """An XREAD reply (RESP2) as {stream: [ID, ...]}, in the reply's order."""
    out: dict[str, list[ID]] = {}
    if reply is None:
        return out
    assert isinstance(reply, list), reply
    for key, items in reply:
        out[key.decode()] = [parse_id(item[0]) for item in items]
    return out


def _at_once(rnd: Round, read: Read, got: dict[str, list[ID]]) -> str | None:
    """Why ``got`` is no reply served at once after some prefix of the
    scripts (None when it is one)."""
    assert read.ids is not None
    lo, hi = rnd.answered_before(read.sent), rnd.sent_before(read.came)
    order = [k for k in read.keys if k in got]
    if order != list(got):
        return f"streams out of order: {list(got)}"
    for key, id_ in zip(read.keys, read.ids, strict=True):
        past = rnd.after(key, id_)
        ids = got.get(key, [])
        if key in got and not ids:
            return f"{key} present with no entries"
        if [e[0] for e in past[: len(ids)]] != ids:
            return f"{key}: {ids} is not the start of the entries past {id_}"
        if ids:
            lo = max(lo, past[len(ids) - 1][1])
        if (read.count is None or len(ids) < read.count) and len(ids) < len(past):
            hi = min(hi, past[len(ids)][1] - 1)
    if lo > hi:
        return f"no prefix of the scripts gives it (between {lo} and {hi})"
    return None


def _woken(rnd: Round, read: Read, got: dict[str, list[ID]], exact: bool) -> str | None:
    """Why ``got`` is no reply of a read that blocked and was woken (None
    when it is one).  Not ``exact``: one stream, a run of its entries
    past the IDs asked (``$``: from the first entry of a script not
    answered before the read was sent), whole scripts unless COUNT cut
    it, none sent after the reply came.  ``exact``: what Redis serves
    after the script ``j`` that woke it, that is ``j``'s entries alone in
    the first stream that ``j`` wrote."""
    if len(got) != 1:
        return f"woken with {len(got)} streams"
    ((key, ids),) = got.items()
    entries = rnd.entries[key]
    at = next((i for i, e in enumerate(entries) if e[0] == ids[0]), -1)
    run = entries[at : at + len(ids)]
    if at < 0 or [e[0] for e in run] != ids:
        return f"{ids} is no run of {key}'s entries"
    if read.count is not None and len(ids) > read.count:
        return f"{len(ids)} entries for COUNT {read.count}"
    j = run[0][1]
    if read.ids is not None:
        id_ = read.ids[read.keys.index(key)]
        if rnd.after(key, id_)[0][0] != ids[0]:
            return f"{key}: {ids} is not the start of the entries past {id_}"
    elif at and entries[at - 1][1] == j:
        return f"{key}: served from the middle of script {j}'s entries"
    if (read.count is None or len(ids) < read.count) and at + len(ids) < len(entries):
        if entries[at + len(ids)][1] == run[-1][1]:
            return f"{key}: served part of script {run[-1][1]}'s entries"
    if j <= rnd.answered_before(read.sent):
        return f"script {j} was answered before the read was sent"
    if run[-1][1] > rnd.sent_before(read.came):
        return f"script {run[-1][1]} was sent after the reply came"
    if not exact:
        return None
    scripts = sorted({e[1] for e in run})
    if len(scripts) != 1:
        return f"woken with the entries of scripts {scripts}"
    own = [e[0] for e in entries if e[1] == j]
    if ids != own[: read.count or None]:
        return f"script {j}'s entries in {key} are {own}, served {ids}"
    first = next(rnd.stream(d) for d in rnd.plans[j] if rnd.stream(d) in read.keys)
    if key != first:
        return f"served from {key}, script {j} wrote {first} first"
    if read.ids is not None:
        for k, id_ in zip(read.keys, read.ids, strict=True):
            past = rnd.after(k, id_)
            if past and past[0][1] < j:
                return f"{k} had entries past {id_} before script {j} (of script {past[0][1]})"
    return None


def check(rnd: Round, exact: bool = True) -> list[str]:
    """Every read of the round that no serial order explains, with why;
    not ``exact``: a woken read's reply need only be a run of its stream
    (see :func:`_woken`)."""
    bad = []
    for read in rnd.reads:
        if isinstance(read.reply, ErrorReply):
            bad.append(f"{read}: error")
            continue
        got = _entries(read.reply)
        if not got:
            if read.kind in ("plain", "group") and read.ids is not None:
                why = _at_once(rnd, read, got)
                if why:
                    bad.append(f"{read.kind} {read}: {why}")
            continue
        whys = []
        if read.ids is not None:
            whys.append(_at_once(rnd, read, got))
        if read.kind not in ("plain", "group"):
            whys.append(_woken(rnd, read, got, exact))
        if all(whys):
            bad.append(f"{read.kind} {read.keys} ids={read.ids} count={read.count}: {got}: {whys}")
    return bad


def _writer(rnd: Round, c: RespClient, sha: str, rng: random.Random, stop: float) -> None:
    n = 0
    while n < SCRIPTS and time.monotonic() < stop:
        batch = []
        for _ in range(rng.randint(1, 8)):
            if n == SCRIPTS:
                break
            n += 1
            plan = rng.choice(PLANS)
            rnd.plans[n] = plan
            if rng.random() < 0.8:
                batch.append(["EVALSHA", sha, 2, rnd.s1, rnd.s2, n, plan])
            else:
                batch.append(["EVAL", ADD, 2, rnd.s1, rnd.s2, n, plan])
        t = time.monotonic()
        for m in range(n - len(batch) + 1, n + 1):
            rnd.sent[m] = t
        c.sock.sendall(b"".join(encode_command(*args) for args in batch))
        for m in range(n - len(batch) + 1, n + 1):
            reply = c.read_reply()
            assert not isinstance(reply, ErrorReply), reply
            rnd.answered[m] = time.monotonic()
        if rng.random() < 0.3:
            time.sleep(rng.random() * 0.005)


def _reader(rnd: Round, c: RespClient, kind: str, rng: random.Random, done: threading.Event) -> None:
    """Reads of one kind until the writer is done (and one more after)."""
    seen: dict[str, ID] = {rnd.s1: (0, 0), rnd.s2: (0, 0)}
    last = False
    while not last:
        last = done.is_set()
        keys = [rnd.s1, rnd.s2]
        rng.shuffle(keys)
        count = rng.choice([None, 1, 2, 5])
        head = ["COUNT", count] if count else []
        ids: list[ID] | None
        if kind == "plain":
            ids = [seen[k] if rng.random() < 0.5 else (0, 0) for k in keys]
            args = ["XREAD", *head, "STREAMS", *keys, *(f"{a}-{b}" for a, b in ids)]
        elif kind == "dollar":
            ids = None
            args = ["XREAD", *head, "BLOCK", BLOCK_MS, "STREAMS", *keys, "$", "$"]
        elif kind == "ids":
            ids = [seen[k] for k in keys]
            args = ["XREAD", *head, "BLOCK", BLOCK_MS, "STREAMS", *keys, *(f"{a}-{b}" for a, b in ids)]
        else:  # group, group-block: the IDs are those the group delivered last
            ids = [seen[k] for k in keys]
            block = ["BLOCK", BLOCK_MS] if kind == "group-block" else []
            args = ["XREADGROUP", "GROUP", kind, "c", *head, *block, "STREAMS", *keys, ">", ">"]
        read = Read(kind, keys, ids, count, time.monotonic())
        c.send(*args)
        read.reply = c.read_reply()
        read.came = time.monotonic()
        rnd.reads.append(read)
        for key, got in _entries(read.reply).items():
            if got:
                seen[key] = max(seen[key], got[-1])


def run_round(server: ServerProcess, acceptors: int, n: int, seed: int) -> Round:
    rng = random.Random(seed)
    prefix = f"xs{seed}r{n}"
    rnd = Round(key_on(0, prefix + "a", shards=2), key_on(1, prefix + "b", shards=2))
    conns: list[RespClient] = []

    def on(acceptor: int) -> RespClient:
        c = client_on(server.port, acceptor, k=acceptors)
        conns.append(c)
        return c

    try:
        setup = on(0)
        sha = setup.command("SCRIPT", "LOAD", ADD).decode()  # type: ignore[union-attr]
        for key in (rnd.s1, rnd.s2):  # a group for each reader of groups
            for group in ("group", "group-block"):
                setup.command("XGROUP", "CREATE", key, group, "$", "MKSTREAM")
        writer = on(0)
        kinds = ["plain", "dollar", "dollar", "ids", "group", "group-block"]
        readers = [on(1) for _ in kinds]
        done = threading.Event()
        errors: list[BaseException] = []

        def guard(fn: Callable[[], None]) -> Callable[[], None]:
            def run() -> None:
                try:
                    fn()
                except BaseException as e:  # noqa: BLE001 - reported by the test
                    errors.append(e)

            return run

        threads = [
            threading.Thread(
                target=guard(lambda c=c, k=k, i=i: _reader(rnd, c, k, random.Random(seed * 31 + i), done))
            )
            for i, (c, k) in enumerate(zip(readers, kinds, strict=True))
        ]
        for t in threads:
            t.start()
        guard(lambda: _writer(rnd, writer, sha, rng, time.monotonic() + ROUND_S))()
        done.set()
        for t in threads:
            t.join(ROUND_S + 10)
        assert not errors, errors
        for key in (rnd.s1, rnd.s2):
            rnd.entries[key] = [
                (parse_id(item[0]), int(item[1][1]))  # type: ignore[index]
                for item in setup.command("XRANGE", key, "-", "+")  # type: ignore[union-attr]
            ]
        return rnd
    finally:
        for c in conns:
            c.close()


@pytest.fixture(scope="module", params=["shardkv", "redis"])
def server(request) -> Iterator[tuple[ServerProcess, int]]:
    if request.param == "redis":
        proc = start_redis()
        k = 1
    else:
        k = 2
        proc = start_shardkv(shards=2, acceptors=k)
    yield proc, k
    proc.stop()


def _blocked(observer: RespClient, client_id: int) -> None:
    """Wait until CLIENT LIST shows the client blocked."""
    deadline = time.monotonic() + WAIT
    while b" flags=b " not in observer.command("CLIENT", "LIST", "ID", client_id):  # type: ignore[operator]
        assert time.monotonic() < deadline, f"client {client_id} never shown blocked"
        time.sleep(0.001)


def test_a_woken_xread_reads_the_entries_of_the_script_that_woke_it(server) -> None:
    """``XREAD BLOCK 0 STREAMS b a $ $`` through acceptor 1, then three
    pipelined EVALSHAs through acceptor 0, each XADDing to ``a`` then
    ``b``: Redis serves the reader right after the first script, ``a``'s
    entry of it alone.  Acceptor 1 is stopped (SIGSTOP) while the scripts
    run, so its try comes after all three: it read all three entries of
    ``a``, as the notification carried no bound (issue 22)."""
    proc, k = server
    a, b = key_on(0, "woken-a", shards=2), key_on(1, "woken-b", shards=2)
    reader, writer, observer = (
        client_on(proc.port, 1, k=k),
        client_on(proc.port, 0, k=k),
        client_on(proc.port, 0, k=k),
    )
    try:
        sha = writer.command("SCRIPT", "LOAD", ADD).decode()  # type: ignore[union-attr]
        reader_id = int(reader.command("CLIENT", "ID"))  # type: ignore[arg-type]
        reader.send("XREAD", "BLOCK", 0, "STREAMS", b, a, "$", "$")
        _blocked(observer, reader_id)
        stopped = acceptor_pids(proc)[1] if k > 1 else None
        if stopped is not None:
            os.kill(stopped, signal.SIGSTOP)
        try:
            writer.sock.sendall(b"".join(encode_command("EVALSHA", sha, 2, a, b, n, "12") for n in (1, 2, 3)))
            first = [writer.read_reply() for _ in range(3)][0]
        finally:
            if stopped is not None:
                os.kill(stopped, signal.SIGCONT)
        assert reader.read_reply() == [[a.encode(), [[first[0], [b"n", b"1"]]]]]  # type: ignore[index]
    finally:
        for c in (reader, writer, observer):
            c.close()


def test_a_woken_xreadgroup_reads_the_entries_of_the_script_that_woke_it(server) -> None:
    """``XREADGROUP GROUP g c BLOCK 0 STREAMS b a > >`` through acceptor
    1, then three pipelined EVALSHAs through acceptor 0, each XADDing to
    ``a`` then ``b``: Redis serves the reader right after the first
    script, ``a``'s entry of it alone, which its group delivers to it (in
    its PEL, the group's last-delivered ID), the later scripts' entries
    left to the next read.  Acceptor 1 is stopped (SIGSTOP) while the
    scripts run, so its try comes after all three: it read all three
    entries of ``a`` (issue 22)."""
    proc, k = server
    a, b = key_on(0, "woken-ga", shards=2), key_on(1, "woken-gb", shards=2)
    reader, writer, observer = (
        client_on(proc.port, 1, k=k),
        client_on(proc.port, 0, k=k),
        client_on(proc.port, 0, k=k),
    )
    try:
        for key in (a, b):
            observer.command("DEL", key)
            observer.command("XGROUP", "CREATE", key, "g", "$", "MKSTREAM")
        sha = writer.command("SCRIPT", "LOAD", ADD).decode()  # type: ignore[union-attr]
        reader_id = int(reader.command("CLIENT", "ID"))  # type: ignore[arg-type]
        reader.send("XREADGROUP", "GROUP", "g", "c", "BLOCK", 0, "STREAMS", b, a, ">", ">")
        _blocked(observer, reader_id)
        stopped = acceptor_pids(proc)[1] if k > 1 else None
        if stopped is not None:
            os.kill(stopped, signal.SIGSTOP)
        try:
            writer.sock.sendall(b"".join(encode_command("EVALSHA", sha, 2, a, b, n, "12") for n in (1, 2, 3)))
            ids = [writer.read_reply() for _ in range(3)]
        finally:
            if stopped is not None:
                os.kill(stopped, signal.SIGCONT)
        first = ids[0][0]  # type: ignore[index]
        assert reader.read_reply() == [[a.encode(), [[first, [b"n", b"1"]]]]]
        assert observer.command("XPENDING", a, "g", "-", "+", 10, "c")[0][0] == first  # type: ignore[index]
        assert len(observer.command("XPENDING", a, "g", "-", "+", 10)) == 1  # type: ignore[arg-type]
        groups = observer.command("XINFO", "GROUPS", a)
        assert groups[0][groups[0].index(b"last-delivered-id") + 1] == first  # type: ignore[index,union-attr]
        rest = reader.command("XREADGROUP", "GROUP", "g", "c", "STREAMS", a, ">")
        assert rest == [[a.encode(), [[ids[1][0], [b"n", b"2"]], [ids[2][0], [b"n", b"3"]]]]]  # type: ignore[index]
    finally:
        for c in (reader, writer, observer):
            c.close()


@pytest.mark.parametrize("n", range(ROUNDS))
def test_xreads_beside_pipelined_scripts_are_serial(server, n) -> None:
    proc, k = server
    seed = int(os.environ.get("SHARDKV_TEST_SEED", "0")) or random.randrange(1 << 30)
    rnd = run_round(proc, k, n, seed)
    bad = check(rnd)
    assert not bad, f"seed {seed}: {len(bad)} of {len(rnd.reads)} reads:\n" + "\n".join(bad[:10])


def test_a_stream_named_twice_waits_past_its_first_id(server) -> None:
    """``XREAD BLOCK 0 STREAMS a b a 6-0 $ 7-0`` (``a``'s last ID 5-0)
    through acceptor 1, then ``XADD a 6-5`` and ``XADD a 8-0`` through
    acceptor 0: Redis blocks on ``a`` past its first ID (blockForKeys
    keeps the first of a key named twice) and serves ``6-5`` alone.  The
    cross-shard ``__bwait`` waited past the last one (7-0), so ``6-5``
    woke nothing, and ``8-0`` woke a try from 6-0: both entries."""
    proc, k = server
    a, b = key_on(0, "twice-a", shards=2), key_on(1, "twice-b", shards=2)
    reader, writer = client_on(proc.port, 1, k=k), client_on(proc.port, 0, k=k)
    try:
        writer.command("XADD", a, "5-0", "f", "v")
        reader_id = int(reader.command("CLIENT", "ID"))  # type: ignore[arg-type]
        reader.send("XREAD", "BLOCK", 0, "STREAMS", a, b, a, "6-0", "$", "7-0")
        _blocked(writer, reader_id)
        writer.command("XADD", a, "6-5", "f", "v")
        writer.command("XADD", a, "8-0", "f", "v")
        assert reader.read_reply() == [[a.encode(), [[b"6-5", [b"f", b"v"]]]]]
    finally:
        for c in (reader, writer):
            c.close()


def test_a_stream_named_twice_is_read_at_each_place(server) -> None:
    """``XREAD STREAMS a b a 9-0 0 0`` and ``... a b a 0 0 0`` (``a``
    and ``b`` at 5-0) across shards: Redis reads every place in the
    command's order, ``b`` then ``a``, and ``a`` twice.  The merge of the
    shards' parts kept one reply per stream, at its first place."""
    proc, k = server
    a, b = key_on(0, "places-a", shards=2), key_on(1, "places-b", shards=2)
    c = client_on(proc.port, 1, k=k)
    try:
        c.command("XADD", a, "5-0", "f", "v")
        c.command("XADD", b, "5-0", "f", "v")
        entry = [[b"5-0", [b"f", b"v"]]]
        assert c.command("XREAD", "STREAMS", a, b, a, "9-0", "0", "0") == [
            [b.encode(), entry],
            [a.encode(), entry],
        ]
        both = [[a.encode(), entry], [b.encode(), entry], [a.encode(), entry]]
        assert c.command("XREAD", "BLOCK", 0, "STREAMS", a, b, a, "0", "0", "0") == both
    finally:
        c.close()
