"""Lua scripts in the acceptor: the script cache, and where each script runs.

The acceptor keeps the script cache (SHA1 -> body): SCRIPT LOAD, EVAL and
SCRIPT EXISTS/FLUSH act on it, and EVALSHA of an unknown SHA1 is answered
``-NOSCRIPT`` here.  Each worker compiles a script the first time it gets
its body: the acceptor remembers which shards know which scripts, sends
EVALSHA as it came to a shard that knows the script, and the body (as
EVAL) to one that does not.  The cache does not persist, as in Redis.
A script is cached only if it compiles, which the acceptor checks first
(:func:`~shardkv.runtime.scriptsource.compiles`), as Redis caches none
that does not: the commands behind it never find it.

Where a script runs (see the README's architecture notes):

* Every declared key on one shard (one key, or keys with one hash tag), or
  no keys: the script runs inside that shard's worker (shard 0 for no
  keys), one command in the shard's FIFO, so it is atomic for free.
* Declared keys on several shards: the script runs as one
  :class:`~shardkv.acceptor.crossshard.AtomicOp`, which parks those shards and runs
  it on one of them with the others' keys imported; with one acceptor,
  the scripts of several clients that come together share one such
  operation (:func:`join_group`).
* A script that calls a command on an undeclared key of another shard (or
  one that needs every shard: KEYS, SCAN, DBSIZE, FLUSHALL, RANDOMKEY) is
  stopped by its worker before that call, everything it wrote undone, and
  its reply is the marker ``-SHARDKV-CROSS``; the acceptor runs it again as
  an AtomicOp with those keys too (or parking every shard, with all their
  keys, for the second kind), and remembers that the script escapes, so
  that its later runs go there at once: with the keys that runs with the
  same values of the arguments their names hold needed
  (:class:`~shardkv.acceptor.scriptcache.Escapes`), executed on the shard
  whose keys its earlier runs found largest (``ScriptCache.exported``).

A client's commands behind a script run after it, as in Redis: any
script may escape (one that has run to its end here without escaping,
``CACHE.settled``, too: other arguments, other data, a function replaced
through another acceptor), so its client waits
(:data:`~shardkv.acceptor.state.SCRIPTS`) for its reply, which comes after
its run again if it escapes, and what the client sent behind it, on any
shard, runs after the script's writes; inside EXEC too, for what the
client sends after the EXEC.  Only EVALSHAs that take the shortcut
(:func:`evalsha_fast`) go on behind a script that did, so that a client
pipelining them sends them as they come (see the README).
"""

from __future__ import annotations

import hashlib
import os
import signal
import time
from binascii import crc_hqx
from collections import deque
from collections.abc import Callable, Iterator
from collections.abc import Set as AbstractSet

from shardkv.acceptor import memorybudget, monitor, notifications, scriptcalls, slowlog, tracking
from shardkv.acceptor.blocking import (
    EAGER_KEYS,
    POP_KEYS,
    pops_wait_on,
    script_ran_across,
    serve_after_scripts,
    settle_script,
)
from shardkv.acceptor.client import Client
from shardkv.acceptor.crossshard import AtomicOp
from shardkv.acceptor.dispatch import HEADERS
from shardkv.acceptor.fanout import Gather
from shardkv.acceptor.replies import SCREENED, Sink, Slot
from shardkv.acceptor.scriptcache import CACHE, Escapes, declares_no_writes
from shardkv.acceptor.shardlink import (
    ENDED,
    KILLED,
    OTHER_KIND,
    UNKILLABLE,
    at_next_busy_change,
    at_threshold,
)
from shardkv.acceptor.state import SCRIPTS
from shardkv.protocol import bus, command_docs, errors, wire
from shardkv.protocol.commands import seen
from shardkv.protocol.resp import (
    Parsed,
    RequestParser,
    ScriptsRead,
    encode,
    encode_command,
    encode_error,
    strict_int,
)
from shardkv.protocol.router import LBRACE, key_slot
from shardkv.protocol.wire import Verb
from shardkv.runtime.cmdstats import stat_name
from shardkv.runtime.scriptsource import compiles

CROSS_MARKER = b"-SHARDKV-CROSS"
# The first bytes of a script's reply that _ScriptSlot looks into: an error,
# or an aggregate that may hold one.
_NOT_PLAIN = frozenset(b"-*%~")  # (as byte values)
# The errors of a script that does not load: the shard did not keep it.
LOAD_ERRORS = tuple(
    b"-" + e.partition("%")[0].encode()
    for e in (
        errors.SCRIPT_COMPILE,
        errors.SHEBANG_INVALID,
        errors.SHEBANG_NO_ENGINE,
        errors.SHEBANG_ENGINE,
        errors.SHEBANG_OPTION,
        errors.SHEBANG_FLAG,
    )
)

# The one error a shard refuses a script with that the acceptor's check
# compiled (both read its shebang and compile it with the same rules): its
# Lua ran out of memory, as a worker's state holds more (see _refused).  A
# script may return any other error of LOAD_ERRORS' texts itself
# (redis.error_reply): it is not forgotten for that.
REFUSED = b"-" + (errors.SCRIPT_COMPILE % "not enough memory").encode() + b"\r\n"


def forget_shard(server: object, link: object) -> None:
    """A worker (re)started: it knows no script."""
    CACHE.known.pop(link.index, None)  # type: ignore[attr-defined]


# For each shard, the replies of the scripts sent there with FLAG_MONITOR,
# in order, whose ``[lua]`` lines have not come yet (see monitor.Hold).
_MONITORED: dict[int, deque] = {}


def monitor_scripts(server: object, link: object) -> None:
    """MONITOR's ``[0 lua]`` lines: the commands a script called on ``link``'s
    shard, into the place its EVAL line left for them (a new pipe: the
    scripts sent to the old one are answered with errors, places emptied)."""
    waiting = _MONITORED[link.index] = deque()  # type: ignore[attr-defined]

    def on_calls(calls: list) -> None:
        # One M frame per script sent with FLAG_MONITOR, in order.  While the
        # shard takes part in a cross-shard operation, it may be its
        # executor's (for the scripts it ran): those go out now.
        if waiting and not link.ops:  # type: ignore[attr-defined]
            sink = waiting.popleft()
            if sink.hold is not None:
                sink.hold.fill(calls)
                sink.hold = None
                return
        for op in link.ops.values():  # type: ignore[attr-defined]
            lua = getattr(op, "lua", None)  # an EXEC's scripts' (see transactions._run_atomic)
            if lua is not None and op.executor == link.index:  # type: ignore[attr-defined]
                lua.extend(calls)
                return
        monitor.feed_script(server, calls)  # type: ignore[arg-type]

    link.on_script_calls = on_calls  # type: ignore[attr-defined]


def sha1hex(body: bytes) -> bytes:
    return hashlib.sha1(body).hexdigest().encode()


# -- EVAL and EVALSHA ------------------------------------------------------------


def eval_command(client: Client, args: list[bytes]) -> None:
    """EVAL script numkeys [key [key ...]] [arg [arg ...]]

    One the acceptor refuses (a bad numkeys, an EVALSHA of no script it
    knows) is refused once the shards' scripts that started before it
    ended, or gets ``-BUSY`` if one passes busy-reply-threshold meanwhile:
    Redis reads it then (see :func:`~shardkv.acceptor.blocking.serve_after_scripts`)."""
    if _eval_problem(args) is None:
        _eval(client, args)
    else:
        serve_after_scripts(client, _eval_or_refuse, args)


def _eval_problem(args: list[bytes]) -> str | None:
    """Why the acceptor refuses EVAL or EVALSHA ``args``, if it does."""
    n = strict_int(args[2])
    if n is None:
        return errors.NOT_INTEGER
    if n > len(args) - 3:
        return errors.NUMKEYS_TOO_BIG
    if n < 0:
        return errors.NUMKEYS_NEGATIVE
    if args[0][:7].lower() == b"evalsha" and CACHE.find(args[1].lower()) is None:
        return errors.NOSCRIPT
    return None


def _eval_or_refuse(client: Client, args: list[bytes]) -> None:
    """EVAL or EVALSHA ``args`` after the scripts, checked again (a SCRIPT
    LOAD may have come meanwhile)."""
    problem = _eval_problem(args)
    if problem is None:
        _eval(client, args)
    else:
        client.reply_error(problem)


def _eval(client: Client, args: list[bytes]) -> None:
    n = strict_int(args[2])
    assert n is not None  # (checked by _eval_problem)
    name = args[0].lower()
    ro = name.endswith(b"_ro")
    if name.startswith(b"evalsha"):
        sha = args[1].lower()
        body = CACHE.bodies[sha]
    else:
        body = args[1]
        sha = sha1hex(body)
        CACHE.fresh()  # (cached before another acceptor's SCRIPT FLUSH: cached again, with its number)
        if sha not in CACHE.bodies and compiles(body):  # (one that does not is never cached)
            number = scriptcalls.flush_number(client.server)
            CACHE.add(sha, body, number)
            _cached_everywhere(client, sha, body, number)
    keys = args[3 : 3 + n]
    rest = args[3 + n :]
    run_script(client, sha, body, ro, keys, rest, name=name.decode("latin-1"), called=args)


def _cached_everywhere(client: Client, sha: bytes, body: bytes, number: int) -> None:
    """EVAL, SCRIPT LOAD (or EVAL inside EXEC) cached a script new here:
    it goes to the shared log before the reply, so an EVALSHA read after
    that reply, through any acceptor, finds it (``ScriptCache.find``), as
    in Redis; the other acceptors are told too, and the reply never waits
    for them (a stopped or slow acceptor delays no other's clients)."""
    server_bus = client.server.bus
    if server_bus is None:
        return
    CACHE.logged(sha, body, number)
    server_bus.tell(bus.SCRIPT, [b"load", sha, body, b"%d" % number])


def evalsha_fast(client: Client, args: list[bytes], raw: bytes, header: bytes) -> bool:
    """EVALSHA's shortcut from Client._run: a cached script whose declared
    keys are on one shard that already compiled it goes there as it came,
    as a GET goes.  False for anything else (the ordinary path answers),
    and for a declared key that a cross-shard BLMOVE, BRPOPLPUSH or XREAD
    of any acceptor waits on (``EAGER_KEYS``): the ordinary path tries
    it, or waits for its try (``blocking.try_at_once``); a script on
    other keys keeps the shortcut while such waits exist (a job queue's
    workers), and one writing an undeclared key escapes as before.

    Written for one key, the usual case (locks, rate limiters): no loop
    over the keys, and the reply slot is filled in without a call of its
    ``__init__``, which costs more than the rest of the slot."""
    nargs = len(args)
    if nargs < 3:
        return False
    sha = args[1]
    CACHE.fresh()  # (another acceptor's SCRIPT FLUSH empties settled and known)
    if sha not in CACHE.settled or sha in CACHE.escaping:
        return False
    server = client.server
    if args[2] == b"1" and nargs > 3:  # one key: Router.shard_of, inline
        key = args[3]
        if EAGER_KEYS and key in EAGER_KEYS:
            return False
        shard = server.router.owners[key_slot(key) if LBRACE in key else crc_hqx(key, 0) & 16383]
    else:
        shard = _keys_shard(server, args)
        if shard < 0 or (EAGER_KEYS and any(key in EAGER_KEYS for key in args[3 : 3 + int(args[2])])):
            return False
    known = CACHE.known.get(shard)
    if known is None or sha not in known:
        return False
    if not client.state.script_sent():  # (never: nothing else holds a client that runs one)
        return False
    slot = _ScriptSlot()  # no __init__ of its own: its fields are set here
    slot.client = client
    slot.data = None
    slot.raw = raw  # not args: bytes are no work for the cyclic collector
    slot.db = client.db  # a retry runs in the database of the call
    client.pending.append(slot)
    server.links[shard].send(header, raw, slot, True)
    if EAGER_KEYS and args[0][-3:].lower() != b"_ro" and _may_write(CACHE.bodies.get(sha, b"")):
        settle_script(client, slot, shard, True)  # (see _run_on_shard; a pop's keys count in EAGER_KEYS)
    # The call counted here, as the ordinary path (Acceptor.run_local)
    # counts a script it sends: its time and latency are the run's, which
    # the shard counts (cmdstats.ScriptTimes).
    stats = server.stats
    (stats.by_bytes.get(args[0]) or stats.row_of(args))[0] += 1
    return True


# The spellings of EVALSHA that behind_shortcuts takes inline (any other
# goes through evalsha_fast).
_SHORTCUT_NAMES = frozenset((b"evalsha", b"EVALSHA", b"evalsha_ro", b"EVALSHA_RO"))
_NOWHERE: frozenset[int] = frozenset()


def behind_shortcuts(client: Client, rest: Iterator[Parsed], args: list[bytes], header: bytes) -> list[bytes]:
    """The commands after an EVALSHA that took its shortcut (its client
    waits, as the script may escape: ``ClientState.script_sent``), from
    Client._run: the EVALSHAs right behind it that take the shortcut too
    go on, so that a client pipelining them sends them as they come; the
    first other command and all after it wait for the scripts' replies.
    Returns the arguments of the last command that started.

    The usual one (one key, and any arguments: a lock's token; a settled
    script its shard compiled, spelled in one case) is :func:`evalsha_fast`
    inline: queued by shard and
    handed to each link in one call (``ShardLink.send_run``), as
    Client._run sends plain commands.  The cache's answers for one SHA1
    and one spelling are looked up once and kept while it repeats (a
    comparison, not a hash of each new argument): nothing here changes
    them, no reply being read.  Any other command takes its fast path,
    after those queued so far."""
    server = client.server
    state = client.state
    links = server.links
    pending = client.pending
    owners = server.router.owners
    db = client.db
    eager = EAGER_KEYS
    waits = state.blocked_token == SCRIPTS  # the client waits for scripts (script_sent)
    # While a cross-shard wait exists (its keys, a pop's too, are in
    # EAGER_KEYS), the shards the EVALSHAs taken inline may go to (None:
    # any, no such wait, the usual case: no test more per script), see
    # _shards_beside_waits.
    # ``only_writing``: those of them an EVALSHA of a script that may write
    # may go to (see _shards_beside_waits).
    only, only_writing = _shards_beside_waits(server, args) if eager else (None, _NOWHERE)
    # The SHA1 and spelling last taken (None: nothing yet, so that no
    # argument, the empty one included, matches a stale one).
    sha_ok: bytes | None = None
    name_ok: bytes | None = None
    knowing: AbstractSet[int] = _NOWHERE  # the shards that compiled ``sha_ok``
    row: list = []  # the counters of ``name_ok``
    runs: dict[int, list] = {}
    # The slots in ``pending`` from ``counted`` on are the scripts taken
    # since the counts (``state.scripts``, as scripts_sent counts them, and
    # ``row``'s calls, as evalsha_fast counts them) were last brought up to
    # date: once per change of spelling, and before anything that may
    # answer a script (a send, another command), not once per script.
    counted = len(pending)
    for command in rest:
        a, raw = command
        if waits and len(a) > 3 and a[2] == b"1" and raw is not None:  # (any arguments after the key)
            # One comparison each for the SHA1 and the spelling: one that
            # is not taken inline empties ``knowing``.
            sha = a[1]
            if sha != sha_ok:
                if sha in CACHE.settled and sha not in CACHE.escaping:
                    sha_ok = sha
                    knowing = {shard for shard, shas in CACHE.known.items() if sha in shas}
                    if only is not None:
                        knowing &= only_writing if _may_write(CACHE.bodies.get(sha, b"")) else only
                else:
                    sha_ok = None
                    knowing = _NOWHERE
            name = a[0]
            if name != name_ok:
                taken = len(pending) - counted  # counted in the row of the spelling before
                if taken:
                    state.scripts_sent(taken)
                    row[0] += taken
                    counted += taken
                if name in _SHORTCUT_NAMES:
                    name_ok = name
                    row = server.stats.row_of(a)
                else:
                    name_ok = sha_ok = None
                    knowing = _NOWHERE
            key = a[3]  # Router.shard_of, inline
            shard = owners[key_slot(key) if LBRACE in key else crc_hqx(key, 0) & 16383]
            if shard in knowing and not (eager and key in eager):  # (see evalsha_fast)
                slot = _ScriptSlot()
                slot.client = client
                slot.data = None
                slot.raw = raw
                slot.db = db
                pending.append(slot)
                run = runs.get(shard)
                if run is None:
                    runs[shard] = [raw, slot]
                else:
                    run.append(raw)
                    run.append(slot)
                args = a
                continue
        taken = len(pending) - counted
        if taken:
            state.scripts_sent(taken)
            row[0] += taken
        if runs:  # sent before anything that follows
            if only is None:
                for shard, run in runs.items():
                    links[shard].send_run(header, run)
            else:
                _send_runs(client, links, header, runs)
            runs = {}
        cmd = seen(a[0]) if raw is not None and only is None else None
        fast = None if cmd is None else server.fast_paths.get(cmd.name)
        if fast is None or not fast(client, a, raw, header):  # type: ignore[arg-type]
            state.hold((command,))
            state.hold(rest)
            break
        args = a
        waits = state.blocked_token == SCRIPTS
        sha_ok = name_ok = None  # taken anew, as what ran may change them
        knowing = _NOWHERE
        row = []
        counted = len(pending)
    else:
        taken = len(pending) - counted
        if taken:
            state.scripts_sent(taken)
            row[0] += taken
    if runs:
        if only is None:
            for shard, run in runs.items():
                links[shard].send_run(header, run)
        else:
            _send_runs(client, links, header, runs)
    return args


def _shards_beside_waits(server: object, args: list[bytes]) -> tuple[frozenset[int], frozenset[int]]:
    """The shards that the EVALSHAs pipelined behind ``args`` (one that
    took the shortcut) may go to inline while a cross-shard wait exists
    (see :func:`behind_shortcuts`), and those of them that one of a script
    that may write may go to.  A script on a shard where such a wait
    has a key may make a pop or move ready (its keyless ``__bsettle``
    holds its reply and its client's later commands, see
    blocking.settle_script), whose try writes another shard (a move's
    destination): Redis serves that client right after the script, so the
    EVALSHAs behind it go on only to its shard, which runs them after
    the script; one to another shard waits for the replies, as the
    client's other commands do.  A script on another shard makes nothing
    ready: those behind it go on to any such shard (``EVALSHA`` of a push
    to A, undeclared, on A's shard, ``EVALSHA`` of ``LRANGE B`` pipelined,
    a client in ``BLMOVE A B``: ``[x]``, it was ``[]``).

    Only a pop's shard pops in place, in the script's step: a move's
    source, or a stream of a cross-shard XREAD or XREADGROUP, is tried
    from its client's acceptor once the shard notified it, after the
    scripts sent with the one that made it ready.  So none that may write
    goes on inline to such a shard, nor anything behind one that may
    write there: Redis serves the waiter before the next script, which
    sees what the try took (``EVALSHA`` of ``rpush ARGV[1]; llen
    ARGV[1]``, 1 key on A's shard, A, three times pipelined, a client in
    ``BLMOVE A B``: 1, 1, 2, as in Redis; it was 1, 2, 3; issue 22).
    Such an EVALSHA waits for the replies and the settle, and goes on
    then, a round trip a script, only beside such a wait."""
    shard_of = server.shard_of  # type: ignore[attr-defined]
    first = shard_of(args[3]) if args[2] == b"1" and len(args) > 3 else _keys_shard(server, args)
    waited = {shard_of(key) for key in EAGER_KEYS}
    trying = {shard_of(key) for key, n in EAGER_KEYS.items() if n > POP_KEYS.get(key, 0)}
    if first in waited:
        if first not in trying:
            only = frozenset((first,))
        elif args[0][-3:].lower() != b"_ro" and _may_write(CACHE.bodies.get(args[1], b"")):
            only = _NOWHERE
        else:
            only = frozenset((first,))
    else:
        only = frozenset(range(len(server.links))) - waited  # type: ignore[attr-defined]
    return only, only - trying


def _send_runs(client: Client, links: list, header: bytes, runs: dict[int, list]) -> None:
    """Send each shard its run of EVALSHAs (``[raw, slot, ...]``), taken
    inline by :func:`behind_shortcuts` while a cross-shard wait exists,
    one keyless ``__bsettle`` behind each run (blocking.settle_script, as
    behind a script alone: the keys they write undeclared), the replies
    of the run waiting for it.  One for the run, not one a script: so
    pipelined EVALSHAs stay one run (one a script took 0.6x of their
    throughput beside a waiting cross-shard BLMOVE); they go only where
    nothing a script before them made ready writes (see
    :func:`_shards_beside_waits`)."""
    settle = client.state.blocked_token == SCRIPTS
    for shard, run in runs.items():
        links[shard].send_run(header, run)
        if settle:  # (an EVALSHA_RO among them or not)
            settle_script(client, run[1], shard, True)


def scripts_alike(
    client: Client, batch: ScriptsRead, first: list[bytes], header: bytes
) -> list[bytes] | None:
    """A read of one script's EVALSHAs of one key, from Client._run: the
    parser proved that every command has the first one's spelling, SHA1,
    key count and number of arguments (``RequestParser.feed_lazily``),
    and the client is plain, in database 0, while no key is waited on
    (``EAGER_KEYS``, ``POP_KEYS``: none of the settling behind a script
    or a run).  What :func:`evalsha_fast` and
    :func:`behind_shortcuts` do for each, with their tests of the
    spelling, the SHA1 and the key count made once for the read, and the
    shards that compiled the script a list by shard: per command, its
    key's shard and its slot.  The first command that its shard does not
    know, and all after it, wait for the scripts' replies (the ordinary
    path would answer it, after them, as behind_shortcuts does).

    ``batch``: the read's keys and encodings (its commands' arguments are
    made only for those that wait, see ScriptsRead).  None, and nothing
    of ``batch`` read, when the first command does not take the shortcut
    (the ordinary loop runs the read); else the arguments of the last
    command that started."""
    sha = first[1]
    CACHE.fresh()  # (another acceptor's SCRIPT FLUSH empties settled and known, as in evalsha_fast)
    if (
        EAGER_KEYS  # (Client._run tests it; a pop's keys count there too, see
        # blocking.POP_KEYS): the scripts' runs settle the waits behind them (_send_runs)
        or first[2] != b"1"
        or first[0] not in _SHORTCUT_NAMES
        or sha not in CACHE.settled
        or sha in CACHE.escaping
    ):
        return None
    server = client.server
    links = server.links
    known = CACHE.known
    # By shard, the run of commands queued for it (``[raw, slot, raw,
    # slot, ...]``, for ShardLink.send_run): None while it has none, False
    # for a shard that has not compiled the script.
    runs: list[list | bool | None] = [
        None if sha in known.get(shard, ()) else False for shard in range(len(links))
    ]
    by_crc = server.routes[client.resp3]  # (shard, slotted header) by the key's whole CRC16, as Client._run's
    key = first[3]
    state = client.state
    if (
        runs[by_crc[key_slot(key) if LBRACE in key else crc_hqx(key, 0)][0]] is False
        or not state.script_sent()
    ):
        return None
    pending = client.pending
    before = len(pending)
    db = client.db
    touched: list[int] = []
    # Each a _RunSlot: the last of each shard's run becomes a _ScriptSlot
    # below, the one that its client's wait counts for the run.
    new_slot, crc, lbrace = _RunSlot, crc_hqx, LBRACE
    for key, raw in zip(batch.keys(), batch.raws):  # noqa: B905 (as long as each other)
        shard = by_crc[key_slot(key) if lbrace in key else crc(key, 0)][0]
        slot = new_slot()  # (see evalsha_fast)
        slot.client = client
        slot.data = None
        slot.raw = raw
        slot.db = db
        run = runs[shard]
        if run:
            run.append(raw)  # type: ignore[union-attr]
            run.append(slot)  # type: ignore[union-attr]
        elif run is None:
            runs[shard] = [raw, slot]
            touched.append(shard)
        else:  # (not the first: see above) it waits, as in behind_shortcuts, and all after it
            state.hold(batch.commands_from(len(pending) - before))
            last = pending[-1].args()
            break
        pending.append(slot)
    else:
        last = batch.found[-1] if batch.found is not None else [*batch.head, key]
    taken = len(pending) - before
    # The wait counts one script a run, its last (script_sent counted the
    # first run's): the shard answers the others before it (see _RunSlot).
    if len(touched) > 1:
        state.scripts_sent(len(touched) - 1)
    server.stats.row_of(first)[0] += taken  # counted as evalsha_fast counts each
    for shard in touched:
        run = runs[shard]
        run[-1].__class__ = _ScriptSlot  # type: ignore[index]
        links[shard].send_run(header, run)  # type: ignore[arg-type]
    return last


def _keys_shard(server: object, args: list[bytes]) -> int:
    """The shard of an EVALSHA's declared keys (0 for none), or -1 if they
    are on several shards or ``numkeys`` is not a count of them."""
    n = strict_int(args[2])
    if n is None or not 0 <= n <= len(args) - 3:
        return -1
    if not n:
        return 0
    shard_of = server.shard_of  # type: ignore[attr-defined]
    shard = shard_of(args[3])
    for i in range(4, 3 + n):
        if shard_of(args[i]) != shard:
            return -1
    return shard


def _failed(body: bytes) -> bool:
    """Does a script's reply make its call a failed one: an error, or an
    array (map, set) holding one, as Redis counts any error reply it
    writes during the call?  The reply's items are read one after the
    other, a bulk string's bytes skipped, without building them (a
    script's reply may nest 7995 levels deep)."""
    first = body[:1]
    if first == b"-":
        return True
    if first not in (b"*", b"%", b"~") or b"\r\n-" not in body:
        return False
    pos = 0
    end = len(body)
    try:
        while pos < end:
            kind = body[pos]
            if kind == 45:  # '-'
                return True
            eol = body.index(b"\r\n", pos)
            if kind == 36 or kind == 61:  # '$', '=': its bytes too
                n = int(body[pos + 1 : eol])
                pos = eol + 2 + (n + 2 if n >= 0 else 0)
            else:
                pos = eol + 2
    except ValueError:
        return False
    return False


class _ScriptResult(Slot):
    """The reply slot of EVAL, EVALSHA or FCALL: an error reply counts in
    that command's failed_calls, as Redis counts a script that fails (the
    error itself counted in errorstats where it arose).  For the slow log
    (see shardkv.acceptor.slowlog): the client's command ``called``, and
    the ``shard`` it was sent to, which logs it (None: it runs across
    shards, and the acceptor logs it, with the time its executor took,
    ``ran_ns``, that its _Retry sets).  ``generation``: the statistics'
    when the call was counted (see :func:`_rejected`)."""

    __slots__ = ("name", "called", "shard", "ran_ns", "generation")
    muted_in_place = True  # (a busy script may refuse it: see Slot)

    def __init__(self, client: Client, name: str, called: list[bytes]) -> None:
        Slot.__init__(self, client)
        self.name = name
        self.called = called
        self.shard: int | None = None
        self.ran_ns = 0
        self.generation = client.server.stats.generation

    def slow_called(self) -> list[bytes]:
        """How its client called it, for its slow log entry (``N`` frame)."""
        return self.called

    def deliver(self, body: bytes) -> None:
        if self.ran_ns == NOT_RUN:  # refused before it ran
            _rejected(self.client, self.name, body, self.generation)
        else:
            if _failed(body):
                self.client.server.stats._row(self.name)[3] += 1
            if self.shard is None and self.ran_ns != EXECUTOR_LOGGED:
                slowlog.log_script(self.client, self.called, self.ran_ns)
        Slot.deliver(self, body)


class _ScriptSlot(Slot):
    """The reply slot of an EVALSHA that took the shortcut: the reply is the
    client's, unless the script needs other shards (it runs again across
    them) or the shard no longer knows it.

    :func:`evalsha_fast` fills in its fields (``client``, ``data`` None,
    the call's ``raw`` bytes and ``db``, the database a retry runs in): it
    has no ``__init__``, whose call would cost more than the rest of the
    slot.  It keeps the call's bytes, not its arguments: a list kept until
    the reply comes is one more object for each young collection of
    CPython's cyclic collector to visit, and only the rare replies (an
    error, an array holding one) need the arguments, parsed again."""

    __slots__ = ("raw", "db")
    muted_in_place = True  # (a busy script may refuse it: see Slot)

    raw: bytes
    db: int

    # object's, not Slot's: ``_ScriptSlot()`` runs no Python code (the
    # call costs less than ``object.__new__(_ScriptSlot)``, whose
    # arguments are packed for a generic call).
    __init__ = object.__init__

    def args(self) -> list[bytes]:
        """The call's arguments (its bytes are canonical RESP, whole)."""
        return RequestParser().feed(self.raw)[0][0]

    def deliver(self, body: bytes) -> None:
        first = body[0]  # (a reply is never empty)
        if first in _NOT_PLAIN:  # one set lookup: a plain reply needs no more
            if first == 45:  # "-"
                self._error(body)
                return
            if _failed(body):  # an error in its array
                self.client.server.stats._row(stat_name(self.args()))[3] += 1
        # Slot.deliver, inline: the usual reply
        self.data = body
        client = self.client
        if not client.dirty:
            client.dirty = True
            client.server.dirty_clients.append(client)
        if client.state.script_answered() and client.waiting():
            client.server.loop.call_soon(client.resume)  # type: ignore[union-attr]

    def busy_refused(self) -> None:
        """The worker refused it with ``-BUSY`` (ShardLink._refused
        answered it): what the client sent behind it may run; not a call
        (see :func:`_uncounted`).  The EVALSHAs of its client's runs whose
        wait it kept (:class:`_RunSlot`) and that have not answered keep it
        now, each its own: the worker may have refused it alone, the script
        ahead of it in its run still running."""
        client = self.client
        _uncounted(client.server.stats.row_of(self.args()))
        for slot in client.pending:
            if type(slot) is _RunSlot and slot.data is None:
                slot.count()
        _answered(client)

    def _error(self, body: bytes) -> None:
        args = self.args()
        sha = args[1]
        if body.startswith(CROSS_MARKER):
            CACHE.settled.discard(sha)
            script = CACHE.bodies.get(sha)
            if script is not None:
                n = int(args[2])
                ro = args[0].lower() == b"evalsha_ro"
                keys, rest = args[3 : 3 + n], args[3 + n :]
                plain = _Plain(self)  # a Slot by its deliver()
                retry = _Retry(self.client, plain, sha, script, ro, keys, rest, b"", self.db, stat_name(args))  # type: ignore[arg-type]
                retry.start(*_parse_marker(body))
                return
            body = encode_error(errors.NOSCRIPT)
        elif body.startswith(b"-NOSCRIPT"):
            shard = self.client.server.shard_of(args[3]) if int(args[2]) else 0
            CACHE.knows(shard).discard(sha)
        self.client.server.stats._row(stat_name(args))[3] += 1
        Slot.deliver(self, body)
        _answered(self.client)

    def slow_called(self) -> list[bytes]:
        """How its client called it, for its slow log entry (``N`` frame)."""
        return self.args()


class _RunSlot(_ScriptSlot):
    """The reply slot of an EVALSHA of a run sent to one shard
    (:func:`scripts_alike`) but its last: the script may escape as any
    other, but its client's wait (``ClientState.script_sent``) counts the
    run once, for its last slot, a :class:`_ScriptSlot`, which the shard
    answers after this one.  So a plain reply (no error, no aggregate)
    needs nothing more than a plain slot's, and ShardLink._frame fills it
    so, inline (``replies.SCREENED``); any other reply (an escape, a
    retry, a failed call), and a refusal of the run's last slot that
    leaves it behind (:meth:`_ScriptSlot.busy_refused`), makes it count
    in the wait (:meth:`count`), a :class:`_ScriptSlot` from then on."""

    __slots__ = ()

    def count(self) -> None:
        """Keep its client's wait from now until its reply, as a
        :class:`_ScriptSlot` (the run's last one still on its way, or
        refused, ahead of its reply: the client still waits)."""
        self.__class__ = _ScriptSlot
        self.client.state.scripts_sent(1)

    def deliver(self, body: bytes) -> None:
        if body[0] in _NOT_PLAIN:
            self.count()
            _ScriptSlot.deliver(self, body)
            return
        Slot.deliver(self, body)

    def busy_refused(self) -> None:
        """The worker refused it with ``-BUSY``: not a call (see
        :func:`_uncounted`); its run's last slot keeps the wait."""
        _uncounted(self.client.server.stats.row_of(self.args()))


SCREENED[0] = _RunSlot


def _answered(client: Client) -> None:
    """A script the client's later commands wait for answered (see
    ``ClientState.script_sent``): they run once none is left on its way."""
    if client.state.script_answered() and client.waiting():
        client.server.loop.call_soon(client.resume)  # type: ignore[union-attr]


class _Plain:
    """A _ScriptSlot seen as a plain Slot (a retry's reply goes straight in),
    made when it escaped (``ran_ns``: its runs across shards, for the slow
    log, set by its _Retry)."""

    __slots__ = ("slot", "ran_ns")

    def __init__(self, slot: _ScriptSlot) -> None:
        self.slot = slot
        self.ran_ns = 0

    def deliver(self, body: bytes) -> None:
        slot = self.slot
        if self.ran_ns == NOT_RUN:  # refused before it ran
            _rejected(slot.client, stat_name(slot.args()), body)
        else:
            if _failed(body):
                slot.client.server.stats._row(stat_name(slot.args()))[3] += 1
            if self.ran_ns != EXECUTOR_LOGGED:
                slowlog.log_script(slot.client, slot.args(), self.ran_ns)  # (it ran across shards)
        Slot.deliver(slot, body)
        _answered(slot.client)


def _uncounted(row: list) -> None:
    """A script sent to one shard that the worker refused with ``-BUSY``
    (a script of another client's went past busy-reply-threshold there
    first): Redis refuses it in ``processCommand``, a rejected call (and
    ``errorstat_BUSY``, both counted by the worker), not a call; the call
    counted when it was sent is taken back (unless CONFIG RESETSTAT reset
    the row meanwhile)."""
    if row[0] > 0:
        row[0] -= 1


def _rejected(client: Client, name: str, body: bytes, generation: int | None = None) -> None:
    """A script across shards that never ran: the shards refused it
    before its run (``-BUSY`` from a shard busy with another script when
    they were to be held).  Redis refuses it in ``processCommand``, before
    it runs: a rejected call, not a call (counted when it was sent), and
    no slow log entry.  The call is taken back from the row that counted
    it: not after a CONFIG RESETSTAT read since (``generation``, the
    statistics' when it was counted; None: not known, then never below
    zero), which left no call to take back (calls=-1 before)."""
    stats = client.server.stats
    row = stats._row(name)
    if (stats.generation == generation) if generation is not None else row[0] > 0:
        row[0] -= 1
    stats.rejected(name, body[1:].split(b"\r\n", 1)[0].decode("latin-1"))


def run_script(
    client: Client,
    sha: bytes,
    body: bytes,
    ro: bool,
    keys: list[bytes],
    rest: list[bytes],
    fname: bytes = b"",
    name: str = "eval",
    called: list[bytes] | None = None,
) -> None:
    """Run a script (``body``, cached as ``sha``) or, with ``fname``, the
    function of that name (``sha`` is then ``f:`` + its name); ``name`` is
    the client's command, whose failed_calls count a failure, ``called``
    its arguments.

    Any script may escape: its client's later commands wait for its reply
    (inside EXEC, those sent after the EXEC; not behind another wait,
    which holds them)."""
    server = client.server
    shard_of = server.shard_of
    waits = client.state.script_sent()  # no Redis client waits so (not shown)
    escapes = CACHE.escaping.get(sha)
    if escapes is None:
        shard = shard_of(keys[0]) if keys else 0
        for key in keys:
            if shard_of(key) != shard:
                break
        else:
            _run_on_shard(client, shard, sha, body, ro, keys, rest, fname, name, waits, called or [])
            return
        escaping: tuple[int, list] = (0, [])
    else:
        escaping = escapes.needs([*keys, *rest])
    slot = _ScriptResult(client, name, called or [])
    client.pending.append(slot)
    server.scripts_sent += 1  # its executor times the run (see Acceptor.run_local)
    retry = _Retry(client, slot, sha, body, ro, keys, rest, fname, client.db, name, waits=waits)
    extra = escaping[1]
    if (
        escaping[0]
        or not waits
        or not _groupable(server, client)
        or pops_wait_on(keys)
        or (extra and (pops_wait_on(extra) or any(key in EAGER_KEYS for key in extra)))
    ):
        # (A cross-shard pop waits on a key of it, or a move on one its
        # earlier runs escaped to: its ``__bsettle``s or tries go behind
        # it now, see blocking.try_at_once, script_ran_across; a group
        # goes later.)
        retry.start(*escaping, escaped=False)
    else:
        join_group(server, retry, extra)


def _settled(client: Client, sha: bytes, ran: bool = True) -> None:
    """A script that made its client wait (``state.SCRIPTS``) answered, its
    last run (if it ``ran``) not escaping: an EVALSHA of it may take the
    shortcut (an escape forgets that); run what the client sent behind it.
    An error reply settles nothing: a function not found (or refused, or
    failing before its calls) may still escape once it runs, and a name
    that never ran must not stay remembered."""
    if ran and (sha in CACHE.bodies or sha[:2] == b"f:"):
        CACHE.settled.add(sha)
    if client.state.script_answered():
        if client.waiting():
            client.server.loop.call_soon(client.resume)  # type: ignore[union-attr]
        elif client.pending and not client.closed:
            client.flush()


def _run_on_shard(
    client: Client,
    shard: int,
    sha: bytes,
    body: bytes,
    ro: bool,
    keys: list[bytes],
    rest: list[bytes],
    fname: bytes = b"",
    name: str = "eval",
    waits: bool = False,
    called: list[bytes] | None = None,
) -> None:
    flags = 0
    if fname:
        command = [b"fcall_ro" if ro else b"fcall", fname]
    elif sha in CACHE.knows(shard):
        command = [b"evalsha_ro" if ro else b"evalsha", sha]
        if not name.startswith("evalsha"):
            flags = wire.FLAG_AS_EVAL  # (the shard counts what it counts as EVAL's)
    else:
        command = [b"eval_ro" if ro else b"eval", body]
        if name.startswith("evalsha"):
            flags = wire.FLAG_AS_EVALSHA  # (the shard counts what it counts as EVALSHA's)
    command += [b"%d" % len(keys), *keys, *rest]
    slot = _ScriptResult(client, name, called or command)
    slot.shard = shard
    user_arg = script_user(client, name)
    if user_arg:  # its redis.call obeys the client's ACL user
        flags |= wire.FLAG_ACL
        command = [*command, user_arg]
    client.pending.append(slot)
    sink = _ShardReply(
        client, slot, shard, sha, body, ro, keys, rest, fname, client.db, name, user_arg, waits
    )
    header = client.headers[client.resp3]
    if client.server.monitors:  # the worker reports what the script calls
        flags |= wire.FLAG_MONITOR
        _MONITORED.setdefault(shard, deque()).append(sink)
        monitor.expect_lines(sink, called or [])
    if flags:
        if client.no_touch:
            flags |= wire.FLAG_NOTOUCH
        header = wire.entry_header(flags | (wire.FLAG_RESP3 if client.resp3 else 0), db=client.db)
    client.server.scripts_sent += 1  # the shard times the run (see Acceptor.run_local)
    client.server.links[shard].send(header, encode_command(command), sink)
    if waits and not ro and EAGER_KEYS and _may_write(body):  # (a pop's keys too, see blocking.POP_KEYS)
        settle_script(client, slot, shard, True)  # (the keys it writes undeclared, or after a SELECT)


def _may_write(body: bytes) -> bool:
    """Whether a script (``body``; a function's: b"") may write: not one
    whose shebang says ``no-writes``, which needs no keyless ``__bsettle``
    behind it (blocking.settle_script), as EVAL_RO's does not."""
    return body[:2] != b"#!" or not declares_no_writes(body)


class _ShardReply:
    """A script's reply from one shard: passed on, unless the script
    needs other shards (then it runs again, atomically across them)."""

    __slots__ = (
        "client",
        "slot",
        "shard",
        "sha",
        "body",
        "ro",
        "keys",
        "rest",
        "fname",
        "db",
        "hold",
        "name",
        "user_arg",
        "waits",
        "flushes",
        "number",
    )

    def __init__(
        self,
        client: Client,
        slot: _ScriptResult,
        shard: int,
        sha: bytes,
        body: bytes,
        ro: bool,
        keys: list[bytes],
        rest: list[bytes],
        fname: bytes,
        db: int,
        name: str,
        user_arg: bytes,
        waits: bool = False,
    ) -> None:
        self.waits = waits  # its client waits for its reply (run_script)
        self.fname = fname
        self.db = db  # the client's when it called the script
        self.name = name  # the client's command
        self.user_arg = user_arg  # its ACL argument (script_user)
        self.client = client
        self.slot = slot
        self.shard = shard
        self.sha = sha
        self.body = body
        self.ro = ro
        self.keys = keys
        self.rest = rest
        self.hold: monitor.Hold | monitor.LuaLines | None = None  # MONITOR's place for its [lua] lines
        self.flushes = CACHE.flushes  # as it is sent (ScriptCache.learned)
        self.number = _cached_at(sha)  # as it is sent: what a refusal forgets (_refused)

    @property
    def busy_slot(self) -> Slot:
        """The slot a shard may answer ``-BUSY`` directly, for a script sent
        before another one went busy there (see ShardLink._offer_refusals)."""
        return self.slot

    def busy_refused(self) -> None:
        """The worker refused the script with ``-BUSY`` (ShardLink._refused
        answered :attr:`busy_slot` itself, not :meth:`deliver`): it will
        not run, so its ACL LOG entries (none) are done, and the client's
        entries waiting behind it go in.  Not a call (see :func:`_uncounted`)."""
        _uncounted(self.client.server.stats._row(self.name))
        if self.user_arg:
            script_done(self.client, self.user_arg)
        if self.waits:
            _settled(self.client, self.sha, ran=False)

    def deliver(self, body: bytes) -> None:
        if self.hold is not None:  # no lines came (none called, or it runs again elsewhere)
            self.hold.fill([])
            self.hold = None
            waiting = _MONITORED.get(self.shard)
            if waiting and waiting[0] is self:
                waiting.popleft()
        if body[:1] == b"-":
            if body.startswith(CROSS_MARKER):
                CACHE.settled.discard(self.sha)
                everything, extra, written = _parse_marker(body)
                CACHE.learned(self.shard, self.sha, self.flushes)
                self.slot.shard = None  # it runs across shards: the acceptor logs it
                retry = _Retry(
                    self.client,
                    self.slot,
                    self.sha,
                    self.body,
                    self.ro,
                    self.keys,
                    self.rest,
                    self.fname,
                    self.db,
                    self.name,
                    self.user_arg,
                    self.waits,
                    self.number,
                )
                retry.start(everything, extra, written)
                return
            if self.fname:
                pass
            elif body.startswith(LOAD_ERRORS):
                if body == REFUSED:
                    _refused(self.client.server, self.sha, self.number)
            elif body.startswith(b"-NOSCRIPT"):
                CACHE.knows(self.shard).discard(self.sha)
                self._send_body()
                return
            else:
                CACHE.learned(self.shard, self.sha, self.flushes)
        else:
            CACHE.learned(self.shard, self.sha, self.flushes)
        if self.user_arg:
            script_done(self.client, self.user_arg)
        self.slot.deliver(body)
        if self.waits:
            _settled(self.client, self.sha, ran=body[:1] not in (b"-", b"!"))

    def _send_body(self) -> None:
        """The shard did not know the script sent by its SHA1: it ran
        another acceptor's SCRIPT FLUSH after the script's earlier reply
        had said that it knew it (its pipes are read in turn).  The
        acceptor has the body, and Redis answers no -NOSCRIPT to EVAL (nor
        to EVALSHA of a cached script): the script goes again, with its
        body (behind what its client sent after it, if it did not wait)."""
        client = self.client
        command = [
            b"eval_ro" if self.ro else b"eval",
            self.body,
            b"%d" % len(self.keys),
            *self.keys,
            *self.rest,
        ]
        flags = wire.FLAG_AS_EVALSHA if self.name.startswith("evalsha") else 0
        if self.user_arg:
            flags |= wire.FLAG_ACL
            command = [*command, self.user_arg]
        if client.server.monitors:
            flags |= wire.FLAG_MONITOR
            # (no line of its own: its [lua] lines go out as they come)
            _MONITORED.setdefault(self.shard, deque()).append(self)
        if client.no_touch:
            flags |= wire.FLAG_NOTOUCH
        header = wire.entry_header(flags | (wire.FLAG_RESP3 if client.resp3 else 0), db=self.db)
        self.flushes = CACHE.flushes
        client.server.links[self.shard].send(header, encode_command(command), self)


def script_user(client: Client, name: str) -> bytes:
    """The ACL argument of a script the client calls now with its command
    ``name`` (``wire.script_user``), or nothing for a user that may run
    everything.  Its caller part numbers what ACL LOG shows of the calls
    the worker refuses (``L`` frames, see ``Users.script_called``): as
    Redis's entry takes the caller's client info when it runs the script,
    inside EXEC its command is ``exec`` and its ``multi`` the queued count.
    Whoever sends it calls :func:`script_done` when the reply comes."""
    state = client.state
    user = state.user
    if user.unlimited:
        return b""
    users = client.server.users
    if state.in_exec:
        number = users.script_called(client, b"exec", state.exec_size, client.db)
    else:
        number = users.script_called(client, name.encode(), -1, client.db)
    return wire.script_user(number, user.wire())


def script_done(client: Client, user_arg: bytes) -> None:
    """The script sent with ``user_arg`` (:func:`script_user`, not empty)
    answered, or will not run: ACL LOG logs its refused calls, if any."""
    client.server.users.script_done(wire.parse_caller(user_arg))


# The runs of a script that may escape before its next run parks every
# shard, with every key of every database on its executor (as a FLUSHALL
# or SWAPDB in it does): a script whose key names are new at every run
# (made of TIME, of a counter...) would otherwise escape without end.
ESCAPES_BEFORE_EVERY_SHARD = 2


def _parse_marker(body: bytes) -> tuple[int, list, int]:
    """(every shard? 1: of the script's database, 2: of every one; keys;
    redis.log lines written) of a ``-SHARDKV-CROSS [*|**] key...
    [#written]`` reply, where a key is in hex, and ``db:hex`` for a key of
    another database (a SELECT in the script); ``written``: the lines the
    undone run had written, which its run again drops."""
    words = body[len(CROSS_MARKER) :].split()
    written = int(words.pop()[1:]) if words and words[-1][:1] == b"#" else 0
    everything = len(words[0]) if words and words[0] in (b"*", b"**") else 0
    keys: list = []
    for w in words[1 if everything else 0 :]:
        db, colon, key = w.partition(b":")
        keys.append((int(db), bytes.fromhex(key.decode())) if colon else bytes.fromhex(w.decode()))
    return everything, keys, written


class _Retry(Sink):
    """Runs a script as one atomic operation over the shards it needs,
    again with more of them each time it finds it needs more."""

    __slots__ = (
        "client",
        "slot",
        "sha",
        "body",
        "ro",
        "keys",
        "rest",
        "fname",
        "db",
        "name",
        "everything",
        "extra",
        "user_arg",
        "written",
        "waits",
        "escapes",
        "number",
        "op",
        "ran_ns",
        "ran",
    )

    def __init__(
        self,
        client: Client,
        slot: Slot,
        sha: bytes,
        body: bytes,
        ro: bool,
        keys: list[bytes],
        rest: list[bytes],
        fname: bytes = b"",
        db: int = 0,
        name: str = "eval",
        user_arg: bytes | None = None,
        waits: bool = False,
        number: int | None = None,
    ) -> None:
        self.waits = waits  # its client waits for its reply (run_script)
        self.escapes = 0  # its runs that escaped (ESCAPES_BEFORE_EVERY_SHARD)
        self.op: AtomicOp | None = None  # its run now
        self.ran_ns = 0  # the time its runs' executors took (AtomicOp.run_ns)
        self.ran = False  # a run of it was sent (AtomicOp.run_sent)
        # The script's number in the cache as it was first sent (as a
        # _ShardReply's, if it came from one): what a refusal forgets.
        self.number = _cached_at(sha) if number is None else number
        self.fname = fname
        self.name = name  # the client's command (its failed_calls, read-only if _ro)
        # Its ACL argument (script_user), as it was when the client called it.
        self.user_arg = script_user(client, name) if user_arg is None else user_arg
        self.client = client
        self.slot = slot
        self.sha = sha
        self.body = body
        self.ro = ro
        self.keys = keys
        self.rest = rest
        self.db = db  # the client's when it called the script
        self.everything = 0
        self.extra: list = []
        # The redis.log lines its last undone run had written (those it
        # dropped as written before included): its next run drops as many.
        self.written = 0

    def start(self, everything: int, extra: list, written: int = 0, escaped: bool = True) -> None:
        """Run it across the shards of its keys and of ``extra`` (every
        shard if ``everything``); ``escaped``: a run of it just needed them
        (not: they are what its runs with these arguments needed before)."""
        client = self.client
        self.written = written
        if escaped:
            self.escapes += 1
            if self.escapes > ESCAPES_BEFORE_EVERY_SHARD:
                everything = 2
        self.everything = max(self.everything, everything)
        self.extra = list(dict.fromkeys([*self.extra, *extra]))
        if escaped:
            _learn(self.sha, [*self.keys, *self.rest], self.everything, self.extra)
        # It runs again even if the client has gone (its reply is dropped):
        # Redis runs a command to its end once it has read it.
        command = self.command()
        # The waits on the keys it may write that dispatch did not look up
        # (its declared keys', unless a run of it escaped since) try or are
        # waited for behind it, in its step (blocking.script_ran_across).
        # And any key it writes that no run named (of another database too,
        # after a SELECT in it): a keyless __bsettle on each shard it parks
        # (blocking.settle_script).
        settle = [*self.keys, *self.extra] if self.escapes else [k for k in self.extra if k not in self.keys]
        unnamed = not self.ro and bool(EAGER_KEYS) and _may_write(self.body)  # (see _run_on_shard)
        holds = client.server.holds if settle or self.everything or unnamed else None
        if holds is not None:
            holds.begin()
        try:
            saved = client.pending
            client.pending = deque()
            try:
                marker: bool | bytes = (False, True, b"**")[self.everything]
                keys = [*self.keys, *self.extra]
                exported = CACHE.exported.setdefault(self.sha, {})
                op = AtomicOp(
                    client,
                    [command],
                    keys,
                    _first,
                    None,
                    marker,
                    self.db,
                    exported=exported,
                    name=self.name.encode(),
                )
            finally:
                client.pending = saved
            op.slot = self  # type: ignore[assignment]
            op.first_script_run = self.first_run()
            self.op = op
            slot = self.slot
            if type(slot) is _Plain:
                slot = slot.slot
            if settle or self.everything:
                script_ran_across(client, slot, settle, self.everything, op.shards if unnamed else [])
            elif unnamed and self.waits:
                for shard in op.shards:
                    settle_script(client, slot, shard)
        finally:
            if holds is not None:
                holds.end()

    def first_run(self) -> bool:
        """No run of it has been sent, nor did one escape: nothing of it ran yet."""
        return not self.ran and not self.escapes

    def command(self) -> list[bytes]:
        """What its executor runs in its place (``__eval`` or ``__fcall``)."""
        return [
            Verb.FCALL if self.fname else Verb.EVAL,
            b"%d" % self.everything,
            self.name.encode(),
            self.user_arg,  # its redis.call obeys the client's ACL user
            b"%d" % self.written,
            self.fname or self.body,
            b"%d" % len(self.keys),
            *self.keys,
            *self.rest,
        ]

    def deliver(self, body: bytes) -> None:
        if self.op is not None:
            self.ran_ns += self.op.run_ns
            if self.op.run_sent:
                self.ran = True
        if body.startswith(CROSS_MARKER):
            CACHE.settled.discard(self.sha)
            self.start(*_parse_marker(body))
            return
        # NOT_RUN: no run of it was sent (the shards refused to be held for it).
        self.answer(body, self.ran_ns if self.ran else NOT_RUN)

    def answer(self, body: bytes, ran_ns: int) -> None:
        """Its reply, after the run of ``ran_ns`` (for the acceptor's slow
        log entry; or NOT_RUN, EXECUTOR_LOGGED) that did not escape."""
        if not self.fname and body == REFUSED:
            _refused(self.client.server, self.sha, self.number)
        if self.user_arg:
            script_done(self.client, self.user_arg)
        self.slot.ran_ns = ran_ns  # type: ignore[attr-defined]
        self.slot.deliver(body)
        if self.waits:
            _settled(self.client, self.sha, ran=body[:1] not in (b"-", b"!"))


# -- Cross-shard scripts of one turn, under one park ---------------------------------

# A script's reply slot's ``ran_ns`` when no run of it was sent (the shards
# refused to be held for it), and when its executor logged it in the slow
# log itself (one of a group's, below).
NOT_RUN = -1
EXECUTOR_LOGGED = -2

# The most scripts one group runs: its Run, Ran and Prepare carry them all.
GROUP_MAX = 64


class ScriptGroups:
    """The acceptor's cross-shard scripts that wait to run in a group (see
    :func:`join_group`), and the shards its groups have parked."""

    __slots__ = ("server", "waiting", "parked", "due")

    def __init__(self, server: object) -> None:
        self.server = server
        self.waiting: list[tuple[_Retry, set[int]]] = []  # in the order they came, with their shards
        self.parked: dict[int, int] = {}  # shard -> groups that parked it, undecided
        self.due = False  # a pass is queued for the end of this turn

    def add(self, retry: _Retry, shards: set[int]) -> None:
        self.waiting.append((retry, shards))
        if not self.due and not (shards & self.parked.keys()):
            self.due = True
            self.server.at_turn_end(self.run)  # type: ignore[attr-defined]

    def run(self) -> None:
        """End of a turn: start the scripts whose shards no group holds,
        grouped by database and protocol, in the order they came; one whose
        shards a group holds waits for its decision, and so does any one
        after it that needs one of the same shards (none overtakes it)."""
        self.due = False
        parked = self.parked
        held: set[int] = set()
        waiting: list[tuple[_Retry, set[int]]] = []
        going: dict[tuple[int, bool], list[tuple[_Retry, set[int]]]] = {}
        for member in self.waiting:
            shards = member[1]
            if shards & held or shards & parked.keys():
                waiting.append(member)
                held |= shards
            else:
                retry = member[0]
                going.setdefault((retry.db, retry.client.resp3), []).append(member)
        self.waiting = waiting
        if not _quiet(self.server, monitors=False):
            # Keyspace events or tracking switched on since they were read
            # (later in their turn, or while they waited): each alone, as
            # one not grouped (see _groupable).
            for members in going.values():
                for retry, _ in members:
                    retry.start(0, [], escaped=False)
            return
        for members in going.values():
            for at in range(0, len(members), GROUP_MAX):
                _Group(self, members[at : at + GROUP_MAX])

    def decided(self, shards: set[int]) -> None:
        """A group's operation is decided (or undone to run again): the
        scripts that waited for its shards go at the end of this turn, their
        parks in the write that takes its ``Decide`` frames."""
        parked = self.parked
        for shard in shards:
            left = parked[shard] - 1
            if left:
                parked[shard] = left
            else:
                del parked[shard]
        if self.waiting and not self.due:
            self.due = True
            self.server.at_turn_end(self.run)  # type: ignore[attr-defined]


def _groupable(server: object, client: Client) -> bool:
    """May a cross-shard script of ``client`` run in a group (see
    :func:`join_group`)?  Only where nothing sees the difference: one
    acceptor (several take holds step by step), nobody monitoring (a
    script's ``[lua]`` lines follow its own line), no keyspace events or
    tracking (a group's events are handed out together, each shard's in
    turn, as one operation's), not inside a transaction (what the EXEC
    sends after it would leave first).  Its caller checks that the
    client's later commands wait for its reply (``script_sent``): were
    they held by another wait, that one may end before the group goes."""
    return not client.state.in_exec and _quiet(server)


def _quiet(server: object, monitors: bool = True) -> bool:
    """(_groupable) Does nothing on the server see a group?  ScriptGroups.run
    asks again as a group starts, but for ``monitors``: a MONITOR started
    since its scripts were read sees none of their lines (see _Group), as
    in Redis, where they ran before it."""
    return (
        server.holds is None  # type: ignore[attr-defined]
        and not (monitors and server.monitors)  # type: ignore[attr-defined]
        and not notifications.own_mask(server)
        and not tracking.events_mask(server)
    )


def refuse_waiting(server: object, link: object) -> None:
    """A script of a group went past busy-reply-threshold on ``link``'s
    shard: the cross-shard scripts that wait for that group's decision
    (those of ScriptGroups.waiting that need the shard, which the group
    parked) were read after the group's, while it ran, and Redis, which
    runs nothing else meanwhile, reads them at the threshold and answers
    them ``-BUSY``: so do we, each a rejected call, unrun.  (They ran after
    it, each past the threshold again if it looped: one SCRIPT KILL each.)
    With several acceptors (no groups), a read across shards still waiting
    for its holds is so refused (``Holds.refuse_reads``), and so is a
    cross-shard script's first run, a client's single command or write
    across shards (``Holds.refuse_parks``); and when the busy script is
    another acceptor's operation's, the commands this acceptor sent the
    other shards, which that operation may have parked, are offered to
    their workers (``ShardLink.offer_tail``)."""
    shard = link.index  # type: ignore[attr-defined]

    def on_busy(busy: bytes) -> None:
        holds = server.holds  # type: ignore[attr-defined]
        if holds is not None:
            holds.refuse_reads(busy)
            holds.refuse_parks(busy)
            if link.busy_elsewhere:  # type: ignore[attr-defined]
                eval_mode = link.script[2]  # type: ignore[attr-defined]
                for other in server.links:  # type: ignore[attr-defined]
                    if other is not link:
                        other.offer_tail(eval_mode)
        groups = server.script_groups  # type: ignore[attr-defined]
        if groups is None or shard not in groups.parked:
            return
        refused = [member for member in groups.waiting if shard in member[1]]
        if not refused:
            return
        groups.waiting = [member for member in groups.waiting if shard not in member[1]]
        for retry, _ in refused:
            retry.answer(busy, NOT_RUN)

    link.on_busy = on_busy  # type: ignore[attr-defined]


def join_group(server: object, retry: _Retry, extra: list) -> None:
    """Run ``retry``'s script across shards with the other cross-shard
    scripts sent meanwhile, as one operation: one park of the shards they
    need, one ``Run`` on one executor with their ``__eval``s in the order
    they came (each its own reply, as an EXEC of scripts runs), one
    prepare and one decision for all, where each alone took those four
    round trips, one after the other.  It goes at the end of this loop
    turn, with the others of the turn; or, while a group holds one of its
    shards (its parks would wait there anyway), once that group is decided,
    with all that came meanwhile.

    Nothing sees it wait: its client waits for its reply anyway (any
    script may escape, ``ClientState.script_sent``), and no reply has been
    given that depends on it.  Commands that other clients send meanwhile
    may run before it, as they may before any command not answered yet."""
    retry.extra = list(dict.fromkeys([*retry.extra, *extra]))
    shard_of = server.shard_of  # type: ignore[attr-defined]
    shards = {shard_of(key[1] if type(key) is tuple else key) for key in (*retry.keys, *retry.extra)}
    if len(shards) < 2:  # (what it escaped to before is on one shard: it commits there alone)
        retry.start(0, [], escaped=False)
        return
    groups = server.script_groups  # type: ignore[attr-defined]
    if groups is None:
        groups = server.script_groups = ScriptGroups(server)  # type: ignore[attr-defined]
    groups.add(retry, shards)


class _Group(Sink):
    """Scripts of several clients run as one operation (see join_group),
    as an EXEC of scripts runs: the executor logs each script's slow log
    entry itself (``Run.log_scripts``) after its calls, with its own time.
    It is the operation's reply slot: at the commit each member gets its
    own body; an abort gives each the operation's error; when any of them
    escaped, the run is undone and each runs again alone (the one that
    escaped with the shards it needs)."""

    __slots__ = ("groups", "members", "shards", "op", "client")

    def __init__(self, groups: ScriptGroups, members: list[tuple[_Retry, set[int]]]) -> None:
        self.groups = groups
        self.members = [retry for retry, _ in members]
        first = self.members[0]
        self.client = first.client  # (whose the operation is: origin_of)
        self.op: AtomicOp | None = None
        self.shards: set[int] = set()
        commands = []
        keys: list = []
        shas = set()
        for retry, shards in members:
            commands.append(retry.command())
            keys += retry.keys
            keys += retry.extra
            shas.add(retry.sha)
            self.shards |= shards
        parked = groups.parked
        for shard in self.shards:  # (before the operation, which may be decided at once)
            parked[shard] = parked.get(shard, 0) + 1
        # (where its keys were largest, if they all run one script)
        exported = CACHE.exported.setdefault(first.sha, {}) if len(shas) == 1 else None
        op = AtomicOp(
            first.client,
            commands,
            keys,
            _no_reply,
            None,
            False,
            first.db,
            self,  # type: ignore[arg-type]  # (a sink, as _Retry is for its run)
            None,
            self._escaped,
            exported,
            group=True,
            name=first.name.encode(),
            no_touch=[at for at, retry in enumerate(self.members) if retry.client.no_touch],
        )
        # Its scripts' calls, for MONITOR (see scripting's on_calls): none
        # is shown, each script read while no one monitored (_groupable).
        op.lua = []
        op.first_script_run = all(retry.first_run() for retry in self.members)
        self.op = op
        for retry in self.members:
            retry.op = op

    def _escaped(self, bodies: list[bytes]) -> Callable[[], None] | None:
        """(AtomicOp's ``escaped``) Did any member escape?  Then what runs
        each of them again alone, once the run is undone."""
        if not any(body.startswith(CROSS_MARKER) for body in bodies):
            return None

        op = self.op
        run_ns = op.run_ns if op is not None else 0
        # The redis.log lines each wrote before it ended (wire.Ran.written):
        # its run again drops as many, so that each shows once.
        written = op.written if op is not None else []

        def again() -> None:
            self.groups.decided(self.shards)
            for at, (retry, body) in enumerate(zip(self.members, bodies, strict=True)):
                retry.op = None
                if body.startswith(CROSS_MARKER):
                    retry.ran = True  # (undone: its next run is not its first)
                    CACHE.settled.discard(retry.sha)
                    retry.start(*_parse_marker(body))
                elif body.startswith(_KILLED):
                    # Ended by SCRIPT KILL, which stops only a script that
                    # wrote nothing: its reply does not depend on the
                    # others' writes undone, and it runs no more (as in
                    # Redis, where what comes next finds it gone).
                    retry.ran_ns += run_ns
                    retry.answer(body, retry.ran_ns)
                elif body in _REFUSED:  # behind one past busy-reply-threshold: it never ran
                    retry.answer(body, NOT_RUN)
                else:
                    retry.ran = True  # (undone: its next run is not its first)
                    retry.start(0, [], written[at] if at < len(written) else 0, escaped=False)

        return again

    def deliver(self, body: bytes) -> None:
        self.groups.decided(self.shards)
        op = self.op
        if op is None or not op.bodies:  # aborted before its run came back: its error, to each
            for retry in self.members:
                retry.deliver(body)
            return
        # It ran (and the executor logged each script): each its own
        # reply, or, aborted after its run (a shard lost, the decision not
        # recorded), the operation's error.
        committed = op.decision
        logged = op.logged
        for i, (retry, reply) in enumerate(zip(self.members, op.bodies, strict=True)):
            retry.op = None
            retry.ran = True
            entry_id = logged[i] if i < len(logged) else -1
            if entry_id >= 0:  # (its SLOWLOG entry, logged by the executor)
                slowlog.note_script(retry.client, entry_id, retry.slot.slow_called(), retry.client.name)  # type: ignore[attr-defined]
            if committed and reply in _REFUSED:  # (it never ran: a rejected call)
                retry.answer(reply, NOT_RUN)
            else:
                retry.answer(reply if committed else body, EXECUTOR_LOGGED)


_KILLED = b"-" + errors.SCRIPT_KILLED.encode()
# A group's script answered -BUSY by the executor, unrun (see wire.Run.group).
_REFUSED = frozenset(b"-%s\r\n" % message.encode() for message in (errors.BUSY, errors.BUSY_FUNCTION))


def _no_reply(bodies: list[bytes]) -> bytes:
    return b""  # (each member's comes from the bodies: _Group.deliver)


def _cached_at(sha: bytes) -> int:
    """The number of the script ``sha`` in the cache now
    (``ScriptCache.numbers``), as EVAL or EVALSHA sends it: a refusal of
    that call forgets it if cached at that number or before (see
    :func:`_refused`); -1 if not cached (it forgets nothing)."""
    return CACHE.numbers.get(sha, -1)


def _refused(server, sha: bytes, number: int) -> None:
    """A shard did not compile the script ``sha`` that EVAL or EVALSHA
    sent it, cached at ``number`` then (:func:`_cached_at`): its Lua ran
    out of memory, where the acceptor's check
    (:func:`~shardkv.runtime.scriptsource.compiles`) did not, as a
    worker's state holds more.  Every acceptor forgets it (EVAL told them
    of it) if cached at that number or before, as no shard runs it: a
    SCRIPT FLUSH and a SCRIPT LOAD of it while the call was on its way
    cached it again at a later number, and it stays."""
    if CACHE.forget(sha, number) and server.bus is not None:
        CACHE.logged(sha, None, number)  # (an acceptor reading the log after it does not cache it)
        server.bus.tell(bus.SCRIPT, [b"forget", sha, b"%d" % number])


def _learn(sha: bytes, args: list[bytes], everything: int, extra: list) -> None:
    """A run of ``sha`` with ``args`` (its declared keys, then its other
    arguments) needed ``extra`` keys (every shard if ``everything``): its
    later runs with these arguments go straight to as many shards."""
    escapes = CACHE.escaping.get(sha)
    if escapes is None:
        escapes = CACHE.escaping[sha] = Escapes()
    escapes.learn(args, everything, extra)


def _first(bodies: list[bytes]) -> bytes:
    return bodies[0]


class ExecScript:
    """A script queued in a transaction that runs as one atomic operation
    (see shardkv.acceptor.transactions): the ``__eval`` or ``__fcall`` the
    operation's executor runs in the script's place among the queued
    commands, the keys it needs (those it declares, and those it escaped
    to before), and what a run that escaped teaches (:meth:`escaped`)."""

    __slots__ = (
        "sha",
        "body",
        "fname",
        "name",
        "called",
        "keys",
        "rest",
        "user_arg",
        "written",
        "everything",
        "extra",
        "escapes",
    )

    def __init__(
        self, client: Client, sha: bytes, body: bytes, fname: bytes, name: str, args: list[bytes]
    ) -> None:
        self.escapes = 0  # its runs that escaped (ESCAPES_BEFORE_EVERY_SHARD)
        n = int(args[2])
        self.sha = sha
        self.body = body
        self.fname = fname
        self.name = name  # the client's command, read-only if _ro
        self.called = args  # as the client called it (its SLOWLOG entry)
        self.keys = args[3 : 3 + n]
        self.rest = args[3 + n :]
        self.user_arg = script_user(client, name)  # its redis.call obeys the client's ACL user
        self.written = 0  # the redis.log lines its last undone run wrote
        escapes = CACHE.escaping.get(sha)
        self.everything, self.extra = (0, []) if escapes is None else escapes.needs([*self.keys, *self.rest])

    @staticmethod
    def parse(client: Client, args: list[bytes]) -> ExecScript | None:
        """The queued script of ``args``; None for one the ordinary path
        answers with an error (its numkeys, an EVALSHA not cached)."""
        n = strict_int(args[2])
        if n is None or not 0 <= n <= len(args) - 3:
            return None
        name = args[0].lower()
        if name.startswith(b"fcall"):
            return ExecScript(client, b"f:" + args[1], b"", args[1], name.decode("latin-1"), args)
        if name.startswith(b"evalsha"):
            sha = args[1].lower()
            body = CACHE.find(sha)
            if body is None:
                return None
        else:
            body = args[1]
            sha = sha1hex(body)
            CACHE.fresh()
            if sha not in CACHE.bodies and compiles(body):  # (as eval_command caches it)
                number = scriptcalls.flush_number(client.server)
                CACHE.add(sha, body, number)
                _cached_everywhere(client, sha, body, number)  # EVALSHA through another acceptor finds it
        return ExecScript(client, sha, body, b"", name.decode("latin-1"), args)

    def command(self) -> list[bytes]:
        """What the executor runs (as _Retry.start sends it)."""
        return [
            Verb.FCALL if self.fname else Verb.EVAL,
            b"%d" % self.everything,
            self.name.encode(),
            self.user_arg,
            b"%d" % self.written,
            self.fname or self.body,
            b"%d" % len(self.keys),
            *self.keys,
            *self.rest,
        ]

    def needs(self) -> list:
        return [*self.keys, *self.extra]

    def escaped(self, body: bytes, written: int = 0) -> bool:
        """Did its run (``body``, its reply) escape?  Then its next run
        needs the shards it named too, and so do its later runs.  Not: it
        ended, having written ``written`` redis.log lines (wire.Ran.written),
        which its next run, if another script escaped, drops."""
        if not body.startswith(CROSS_MARKER):
            self.written = written
            return False
        everything, extra, self.written = _parse_marker(body)
        self.escapes += 1
        if self.escapes > ESCAPES_BEFORE_EVERY_SHARD:
            everything = 2
        self.everything = max(self.everything, everything)
        self.extra = list(dict.fromkeys([*self.extra, *extra]))
        _learn(self.sha, [*self.keys, *self.rest], self.everything, self.extra)
        CACHE.settled.discard(self.sha)
        return True

    def slow_logged(self, client: Client, entry_id: int, name: bytes) -> None:
        """The executor logged its run as the slow log's entry ``entry_id``
        (wire.Ran.logged): the entry names the client (``name``, its name
        as the script ran) and its command."""
        slowlog.note_script(client, entry_id, self.called, name)

    def answered(self, client: Client, body: bytes) -> None:
        """Its reply, in EXEC's array: a call of its command (the executor
        counts the calls it makes), a failed one if it failed."""
        row = client.server.stats._row(self.name)
        row[0] += 1
        if _failed(body):
            row[3] += 1

    def done(self, client: Client) -> None:
        """The transaction is decided: ACL LOG logs its refused calls."""
        if self.user_arg:
            script_done(client, self.user_arg)


# -- SCRIPT ----------------------------------------------------------------------

_SCRIPT_HELP = [
    "SCRIPT <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
    "DEBUG (YES|SYNC|NO)",
    "    Set the debug mode for subsequent scripts executed.",
    "EXISTS <sha1> [<sha1> ...]",
    "    Return information about the existence of the scripts in the script cache.",
    "FLUSH [ASYNC|SYNC]",
    "    Flush the Lua scripts cache. Very dangerous on replicas.",
    "    When called without the optional mode argument, the behavior is determined by the",
    "    lazyfree-lazy-user-flush configuration directive. Valid modes are:",
    "    * ASYNC: Asynchronously flush the scripts cache.",
    "    * SYNC: Synchronously flush the scripts cache.",
    "KILL",
    "    Kill the currently executing Lua script.",
    "LOAD <script>",
    "    Load a script into the scripts cache without executing it.",
    "HELP",
    "    Prints this help.",
]


def script_command(client: Client, args: list[bytes]) -> None:
    """SCRIPT subcommand [argument ...]"""
    problem = command_docs.check_subcommand(args)
    if problem:
        client.reply_error(problem)
        return
    sub = args[1].lower()
    n = len(args)
    if sub == b"load":
        _script_load(client, args[2])
    elif sub == b"exists":
        client.reply([0 if CACHE.find(sha.lower()) is None else 1 for sha in args[2:]])
    elif sub == b"flush":
        if n > 3 or (n == 3 and args[2].upper() not in (b"ASYNC", b"SYNC")):
            client.reply_error("ERR SCRIPT FLUSH only support SYNC|ASYNC option")
            return
        _script_flush(client)
    elif sub == b"kill":
        kill_script(client, eval_mode=True)
    elif sub == b"help":
        client.reply(list(_SCRIPT_HELP))
    elif sub == b"debug":
        mode = args[2].upper()
        if client.state.in_exec:
            client.reply_error(errors.SCRIPT_DEBUG_IN_MULTI)
        elif mode == b"NO":
            client.reply("OK")
        elif mode in (b"YES", b"SYNC"):
            client.reply_error(errors.SCRIPT_DEBUG_UNSUPPORTED)
        else:
            client.reply_error(errors.SCRIPT_DEBUG_MODE)
    else:
        client.reply_error(errors.SYNTAX)


def _script_flush(client: Client) -> None:
    """SCRIPT FLUSH: this acceptor's cache at once (the client's later
    commands find it empty), then every shard; +OK once every shard has
    run it (a SCRIPT LOAD or EVAL read after it, through any acceptor,
    reaches each shard after the flush).  The other acceptors are not
    waited for: the flush's number in the shared file is past the last
    one each applied, and each applies it before it next looks at its
    cache (``ScriptCache.fresh``), so an EVALSHA read after the +OK,
    through any acceptor, answers NOSCRIPT, and a stopped acceptor delays
    no other's clients.  They are told too (the bus), so that an idle one
    lets go of the scripts' memory."""
    slot = Slot(client)
    client.pending.append(slot)
    server = client.server
    number = scriptcalls.next_flush_number(server)
    CACHE.flush(number)
    if server.bus is not None:
        server.bus.tell(bus.SCRIPT, [b"flush", b"%d" % number])
    scriptcalls.script_flush(server, number, lambda: slot.deliver(b"+OK\r\n"))


class _Loaded:
    """SCRIPT LOAD's reply from the shard that compiled the script."""

    __slots__ = ("slot", "sha", "body", "shard", "flushes", "number", "added")

    def __init__(self, slot: Slot, sha: bytes, body: bytes, shard: int, number: int, added: bool) -> None:
        self.slot = slot
        self.added = added  # this SCRIPT LOAD cached it (it was not)
        self.sha = sha
        self.body = body
        self.shard = shard
        self.flushes = CACHE.flushes  # as it is sent: a SCRIPT FLUSH since came after it
        self.number = number  # the last flush's, of every acceptor, as it was read

    def deliver(self, body: bytes) -> None:
        if body[:1] == b"-":
            # Refused though it compiled here (the shard was busy, or its
            # Lua ran out of memory): Redis would have cached nothing.
            # The other acceptors were told of it (see _script_load): they
            # forget it too.
            if self.added and CACHE.numbers.get(self.sha) == self.number:
                _refused(self.slot.client.server, self.sha, self.number)
            self.slot.deliver(body)
            return
        CACHE.learned(self.shard, self.sha, self.flushes)
        self.slot.deliver(body)


def bus_script(server, origin: int, args: list) -> int | list[bytes]:
    """Another acceptor's SCRIPT LOAD or EVAL (``load sha body number``,
    the last SCRIPT FLUSH's number as it read it), or its SCRIPT FLUSH
    (``flush number``, once every shard ran it): the script cache is the
    same in every acceptor, whatever order they reach it in
    (``ScriptCache.add``); ``forget sha number``: a shard did not compile
    it (see _refused); ``dump``: every script here, with its number,
    for a restarted acceptor."""
    if len(args) == 4 and args[0] == b"load":
        CACHE.add(args[1], args[2], int(args[3]))
    elif len(args) == 2 and args[0] == b"flush":
        number = int(args[1])
        if number > CACHE.last_flush:  # (not applied here yet: see ScriptCache.fresh)
            CACHE.flush(number)
    elif len(args) == 3 and args[0] == b"forget":
        CACHE.forget(args[1], int(args[2]))
    elif args and args[0] == b"dump":
        CACHE.fresh()
        return [
            part
            for sha, body in CACHE.bodies.items()
            for part in (sha, body, b"%d" % CACHE.numbers.get(sha, 0))
        ]
    return 1


async def learn_scripts(server) -> None:
    """A restarted acceptor, before it listens: the scripts the others have
    (Redis forgets a script only on SCRIPT FLUSH or a restart of the whole
    server, so an EVALSHA through it must not answer NOSCRIPT for a script
    loaded before)."""
    done = server.loop.create_future()
    server.bus.ask(bus.SCRIPT, [b"dump"], done.set_result)
    for answer in await done:
        if isinstance(answer, list):
            for i in range(0, len(answer) - 2, 3):
                CACHE.add(answer[i], answer[i + 1], int(answer[i + 2]))


def _script_load(client: Client, body: bytes) -> None:
    """Cached as it is read, so that the client's next commands find it
    (an EVALSHA sends it with its body until a shard knows it), if it
    compiles (checked here, as Redis checks before it caches: the commands
    behind one that does not never find it); shard 0 compiles it too, and
    answers (the SHA1, or why it does not compile)."""
    sha = sha1hex(body)
    CACHE.fresh()
    number = scriptcalls.flush_number(client.server)
    added = sha not in CACHE.bodies
    news = added or CACHE.numbers.get(sha, 0) < number
    if not added or compiles(body):
        CACHE.add(sha, body, number)
        if news:
            # Logged now, not at shard 0's answer: an EVAL of it behind
            # this load finds it cached and logs nothing, and may answer
            # first (its keys on another shard); an EVALSHA after that
            # reply, through any acceptor, finds it.  Logged only when news
            # to the others: cached here now, or at a later flush's number
            # than it had (a script loaded at each connection is logged once).
            _cached_everywhere(client, sha, body, number)
    slot = Slot(client)
    client.pending.append(slot)
    client.server.links[0].send(
        HEADERS[client.resp3],
        encode_command([Verb.SCRIPT, b"load", body]),
        _Loaded(slot, sha, body, 0, number, added),
    )


def kill_script(client: Client, eval_mode: bool) -> None:
    """SCRIPT KILL / FUNCTION KILL: stop the busy script if it has not
    written (its worker is signalled; its count hook stops it).

    Redis reads nothing while a script runs until it is past
    busy-reply-threshold: a kill sent before that is read then, and kills
    it, or after the script's end, and finds nothing (``-NOTBUSY``).  So a
    kill read while no worker has reported a busy script waits
    (:func:`at_threshold`), unless nothing can be running.  Inside EXEC
    it finds none: Redis runs no EXEC beside a busy script (it refuses it
    ``-BUSY``; so does shardkv, as Redis would read it, see
    transactions._at_threshold), so a script busy now started after the
    EXEC was read, and a kill of it by the last report, answered as the
    script's kind or writes were then, was wrong."""
    server = client.server
    if client.state.in_exec:
        client.reply_error(errors.NOTBUSY)
        return
    slot = Slot(client)
    client.pending.append(slot)
    busy = _busy_scripts(server)
    if not busy:
        at_threshold(server, lambda: _answer_kill(slot, eval_mode))
    elif all(link.kill_sent for link in busy):
        _KillAfterKill(slot, eval_mode, busy)
    else:
        _answer_kill(slot, eval_mode)


def _kill_busy(server: object, eval_mode: bool) -> tuple[str | None, list, list]:
    """Signal the busy scripts' workers to stop those that can be: (the
    error for those that cannot, or None; what was signalled, each
    ``[shard, pid, epoch]``; the links asked, see below).  Each script is
    decided as Redis decides its one: none busy, ``-NOTBUSY``; one has
    written, ``-UNKILLABLE``; one of the other kind (EVAL, function), the
    ``-BUSY`` that names the other kill; else its worker is signalled,
    and decides whether it stopped it (see _KillVerdict).  Several shards
    may each run a busy script (Redis runs one): the kill stops every one
    it can, and its error is the worst of the others', ``-UNKILLABLE``
    first.  Redis checks for writes before the kind, in the script's hook:
    the worker of a script of the other kind that had not written as last
    reported is asked to report it at its next hook (wire.REPORT_SIGNAL;
    it may have written since)."""
    busy = _busy_scripts(server)
    if not busy:
        return errors.NOTBUSY, [], []
    problem = None
    killed = []
    asked = []
    for link in busy:
        pid, dirty, script_eval = link.script[:3]
        if dirty:
            problem = errors.UNKILLABLE
        elif script_eval != eval_mode:
            if _signal(pid, wire.REPORT_SIGNAL):
                asked.append(link)
            elif problem is None:
                problem = _other_kind(eval_mode)
        else:
            killed.append([link.index, pid, link.script_epoch])
            _signal(pid, signal.SIGUSR1)
    return problem, killed, asked


def _busy_scripts(server: object) -> list:
    """The links whose worker reported a busy script and still runs: one
    whose worker closed its end of the pipe (it died), though the link
    does not know it yet, runs none, as for the ``-BUSY`` refusals
    (shardlink.busy_refusal).  The end read may come after a kill read in
    the same turn of the loop: the pipe's reset (the worker died with
    frames of this acceptor unread) tells the link only in the transport's
    ``connection_lost``, called later, and the kill found the dead script
    busy: ``-UNKILLABLE``, after its caller was told of the death."""
    return [
        link
        for link in server.links  # type: ignore[attr-defined]
        if link.script is not None and not link.worker_closed()
    ]


def _other_kind(eval_mode: bool) -> str:
    """The error of a kill of the other kind than the busy script's."""
    return errors.BUSY_FUNCTION if eval_mode else errors.BUSY


def _signal(pid: int, signum: int) -> bool:
    try:
        os.kill(pid, signum)
    except OSError:  # (the worker is gone: its link hears it)
        return False
    return True


def _tell_killed(server: object, killed: list, then: Callable[[], None] | None) -> None:
    """With several acceptors, tell the others which scripts this one
    signalled to stop, and call ``then`` once they know (at once with one
    acceptor): a kill read by another acceptor after this one's ``+OK``
    then waits for the scripts' ends and finds nothing, as in Redis, whose
    kill stops the script before it reads anything more (it signalled the
    worker again and answered ``+OK``).  An acceptor that does not answer
    in time (stopped, dead) counts as knowing."""
    bus_ = server.bus  # type: ignore[attr-defined]
    if bus_ is None:
        if then is not None:
            then()
        return
    bus_.ask(bus.SCRIPT_KILLED, killed, lambda answers: then() if then is not None else None)


def bus_script_killed(server, origin: int, args: list) -> int:
    """Another acceptor signalled these busy scripts to stop, each
    ``[shard, pid, epoch]`` (see _tell_killed)."""
    links = server.links
    for shard, pid, epoch in args:
        shard = int(shard)
        if 0 <= shard < len(links):
            links[shard].killed_elsewhere(int(pid), int(epoch))
    return 1


def _answer_kill(slot: Slot, eval_mode: bool) -> None:
    """A kill decided now, as one read now (it may have waited): answered
    at once if no script can be killed, else once the workers signalled
    have decided."""
    server = slot.client.server
    signalled = time.monotonic()
    problem, killed, asked = _kill_busy(server, eval_mode)
    if killed or asked:
        _KillVerdict(slot, eval_mode, killed, asked, signalled, problem)
    else:
        assert problem is not None  # (nothing signalled: the reason why)
        server.stats.error(problem)
        _deliver(slot, encode_error(problem))


class _KillVerdict:
    """A SCRIPT KILL (FUNCTION KILL) that signalled busy scripts' workers:
    its answer waits for what each decided (``ShardLink.kill_verdicts``).
    Redis decides a kill in the script's hook, between two of its
    commands, so a script that has written is never killed and its kill
    answers ``-UNKILLABLE``.  The acceptor only knows what the worker last
    reported: a script may write after that report, before the signal
    comes, and the acceptor's ``+OK`` at the signal was wrong.  So the
    worker decides, in its count hook, atomically with the script's
    writes: it stops the script (its end's report says killed: ``+OK``,
    once the other acceptors know, see _tell_killed), or its report that
    the script wrote comes first (``-UNKILLABLE``); a script that ended
    before its hook saw the kill makes the kill one read after it,
    decided anew (``-NOTBUSY``).  So does a script stopped before this
    kill's signal, by an earlier kill (through another acceptor, one
    restarted since included, that this one was not told of): the end's
    report says when the worker stopped it, on the machine's one
    monotonic clock, so a kill read after that ``+OK`` never answers
    ``+OK`` again.  The workers of busy scripts of the other kind, asked
    (``asked``), report them at their next hook: ``-UNKILLABLE`` if they
    have written, else the ``-BUSY`` that names the other kill.
    ``problem``: the error for the busy scripts known to have written
    (see _kill_busy), its answer once it stopped one (and
    ``-UNKILLABLE`` before any other)."""

    __slots__ = ("slot", "eval_mode", "killed", "left", "verdicts", "signalled", "problem")

    def __init__(
        self, slot: Slot, eval_mode: bool, killed: list, asked: list, signalled: float, problem: str | None
    ) -> None:
        self.slot = slot
        self.eval_mode = eval_mode
        self.killed = killed  # each [shard, pid, epoch], as signalled
        self.signalled = signalled  # time.monotonic() before the signals
        self.problem = problem
        self.left = len(killed) + len(asked)
        self.verdicts: set[str] = set()
        links = slot.client.server.links
        for shard, _, _ in killed:  # (signalled in this turn: no frame of theirs read yet)
            links[shard].kill_verdicts.append(self._told)
        for link in asked:
            link.kind_checks.append((signalled, self._told))

    def _told(self, verdict: str, killed_at: float) -> None:
        if verdict == KILLED and killed_at < self.signalled:
            verdict = ENDED  # stopped by an earlier kill: this one comes after it
        self.verdicts.add(verdict)
        self.left -= 1
        if self.left:
            return
        slot = self.slot
        server = slot.client.server
        verdicts = self.verdicts
        problem = errors.UNKILLABLE if UNKILLABLE in verdicts else self.problem
        if problem is None and OTHER_KIND in verdicts:
            problem = _other_kind(self.eval_mode)
        if KILLED in verdicts:
            _tell_killed(server, self.killed, lambda: self._answer(problem))
        elif UNKILLABLE in verdicts or OTHER_KIND in verdicts:
            self._answer(problem)
        else:
            _answer_kill(slot, self.eval_mode)  # (those it signalled ended first: as if read now)

    def _answer(self, problem: str | None) -> None:
        slot = self.slot
        if problem is None:
            _deliver(slot, encode("OK", slot.client.resp3))
        else:
            slot.client.server.stats.error(problem)
            _deliver(slot, encode_error(problem))


def _deliver(slot: Slot, body: bytes) -> None:
    slot.deliver(body)
    slot.client.server.flush_clients_soon()  # (at a turn's end, or after a bus answer, no frame's read writes it)


class _KillAfterKill:
    """A SCRIPT KILL (FUNCTION KILL) read while every busy script has been
    signalled to stop by this acceptor already (``ShardLink.kill_sent``),
    its end not yet reported: Redis's kill stops the script before it
    reads anything more, so a kill read after it finds the script gone
    (``-NOTBUSY``).  It waits for those scripts' ends (or their links'),
    then is decided as one read then.  (A second kill answered ``+OK``
    while the worker had not stopped yet, and a test that kills until
    the scripts' clients have their replies counted two kills under load.)"""

    __slots__ = ("slot", "eval_mode", "killed")

    def __init__(self, slot: Slot, eval_mode: bool, killed: list) -> None:
        self.slot = slot
        self.eval_mode = eval_mode
        self.killed = killed
        at_next_busy_change(self._busy_changed)

    def _busy_changed(self) -> None:
        if any(link.kill_sent for link in self.killed):
            at_next_busy_change(self._busy_changed)
        else:
            _answer_kill(self.slot, self.eval_mode)


def script_error(body: bytes) -> bytes:
    return encode_error(body.decode("latin-1"))


# -- FCALL and FUNCTION --------------------------------------------------------------


def fcall_command(client: Client, args: list[bytes]) -> None:
    """FCALL function numkeys [key [key ...]] [arg [arg ...]]"""
    n = strict_int(args[2])
    if n is None or not 0 <= n <= len(args) - 3:
        # the shard answers with the right error (the function first, then
        # numkeys), logged there as a script's run (see _ScriptResult)
        slot = _ScriptResult(client, args[0].lower().decode("latin-1"), args)
        slot.shard = 0
        client.pending.append(slot)
        client.server.scripts_sent += 1  # the shard times it (see Acceptor.run_local)
        client.server.links[0].send(client.headers[client.resp3], encode_command(args), slot)
        return
    ro = args[0].lower() == b"fcall_ro"
    name = "fcall_ro" if ro else "fcall"
    run_script(
        client,
        b"f:" + args[1],
        b"",
        ro,
        args[3 : 3 + n],
        args[3 + n :],
        fname=args[1],
        name=name,
        called=args,
    )


def _first_part(parts: list) -> object:
    return parts[0]


def _all_shards(client: Client, command: list[bytes]) -> None:
    """A change to the libraries: every shard in one step; shard 0's reply."""
    encoded = encode_command(command)
    client.fan_out({s: encoded for s in range(len(client.server.links))}, _first_part)


REFRESHING = -16  # a client's blocked_token while its FUNCTION DELETE at OOM refreshes the denyoom functions


class _DeletedAtOom(Slot):
    """FUNCTION DELETE's reply slot at OOM: once every shard answered (the
    library deleted, or an error: no such library), ``then``."""

    __slots__ = ("then",)

    def __init__(self, client: Client, then: Callable[[], None]) -> None:
        super().__init__(client)
        self.then: Callable[[], None] | None = then

    def deliver(self, body: bytes) -> None:
        super().deliver(body)
        then, self.then = self.then, None
        if then is not None:
            then()


def _delete_at_oom(client: Client, library: bytes) -> None:
    """FUNCTION DELETE while out of memory (it is not ``denyoom``): the
    acceptor then asks anew which functions are refused
    (:func:`shardkv.acceptor.memorybudget.learn_oom_functions`), once
    every shard answered, and the client's next commands wait for that
    (outside EXEC, :data:`REFRESHING`), so that its next FCALL of a
    deleted function is not refused with OOM but finds no function, as in
    Redis: one pipelined behind the DELETE too (until 5 December it was
    checked as it arrived, against the list of before; and a DELETE of
    no library, which every shard refuses, left the client waiting
    forever)."""
    server = client.server
    waits = not client.state.in_exec
    if waits:
        client.state.block(REFRESHING, shown=False)

    def refreshed() -> None:
        if waits and client.state.unblock(REFRESHING) and client.waiting():
            server.loop.call_soon(client.resume)  # type: ignore[union-attr]

    slot = _DeletedAtOom(client, lambda: memorybudget.learn_oom_functions(server, refreshed))
    client.pending.append(slot)
    gather = Gather(slot, len(server.links), _first_part, client.resp3)
    header = client.part_headers[client.resp3]
    body = encode_command([Verb.FUNCTION, b"delete", library])
    for shard, link in enumerate(server.links):
        link.send(header, body, gather.sink(shard))


_FUNCTION_HELP = [
    "FUNCTION <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
    "LOAD [REPLACE] <FUNCTION CODE>",
    "    Create a new library with the given library name and code.",
    "DELETE <LIBRARY NAME>",
    "    Delete the given library.",
    "LIST [LIBRARYNAME PATTERN] [WITHCODE]",
    "    Return general information on all the libraries:",
    "    * Library name",
    "    * The engine used to run the Library",
    "    * Library description",
    "    * Functions list",
    "    * Library code (if WITHCODE is given)",
    "    It also possible to get only function that matches a pattern using LIBRARYNAME argument.",
    "STATS",
    "    Return information about the current function running:",
    "    * Function name",
    "    * Command used to run the function",
    "    * Duration in MS that the function is running",
    "    If no function is running, return nil",
    "    In addition, returns a list of available engines.",
    "KILL",
    "    Kill the current running function.",
    "FLUSH [ASYNC|SYNC]",
    "    Delete all the libraries.",
    "    When called without the optional mode argument, the behavior is determined by the",
    "    lazyfree-lazy-user-flush configuration directive. Valid modes are:",
    "    * ASYNC: Asynchronously flush the libraries.",
    "    * SYNC: Synchronously flush the libraries.",
    "DUMP",
    "    Return a serialized payload representing the current libraries, can be restored using FUNCTION RESTORE command",
    "RESTORE <PAYLOAD> [FLUSH|APPEND|REPLACE]",
    "    Restore the libraries represented by the given payload, it is possible to give a restore policy to",
    "    control how to handle existing libraries (default APPEND):",
    "    * FLUSH: delete all existing libraries.",
    "    * APPEND: appends the restored libraries to the existing libraries. On collision, abort.",
    "    * REPLACE: appends the restored libraries to the existing libraries, On collision, replace the old",
    "      libraries with the new libraries (notice that even on this option there is a chance of failure",
    "      in case of functions name collision with another library).",
    "HELP",
    "    Prints this help.",
]


def function_command(client: Client, args: list[bytes]) -> None:
    """FUNCTION subcommand [argument ...]"""
    problem = command_docs.check_subcommand(args)
    if problem:
        client.reply_error(problem)
        return
    sub = args[1].lower()
    n = len(args)
    if sub in (b"load", b"delete", b"flush", b"restore"):
        # A function replaced may now escape, and one gone must not stay
        # remembered: its next FCALL makes its client wait again.
        CACHE.settled.difference_update([s for s in CACHE.settled if s[:2] == b"f:"])
    if sub == b"load":
        replace = False
        for option in args[2:-1]:
            if option.lower() != b"replace":
                client.reply_error("ERR Unknown option given: " + option.decode("latin-1"))
                return
            replace = True
        _all_shards(client, [Verb.FUNCTION, b"load", b"1" if replace else b"0", args[-1]])
    elif sub == b"delete":
        if client.server.oom:
            _delete_at_oom(client, args[2])
        else:
            _all_shards(client, [Verb.FUNCTION, b"delete", args[2]])
    elif sub == b"flush":
        if n == 3 and args[2].upper() not in (b"ASYNC", b"SYNC"):
            client.reply_error("ERR FUNCTION FLUSH only supports SYNC|ASYNC option")
            return
        if n > 3:
            client.reply_error(
                "ERR unknown subcommand or wrong number of arguments for '%s'. Try FUNCTION HELP."
                % args[1].decode("latin-1")
            )
            return
        _all_shards(client, [Verb.FUNCTION, b"flush"])
        client.server.function_denyoom = frozenset()
    elif sub == b"restore":
        if n > 4:
            client.reply_error(
                "ERR unknown subcommand or wrong number of arguments for '%s'. Try FUNCTION HELP."
                % args[1].decode("latin-1")
            )
            return
        policy = args[3].upper() if n >= 4 else b"APPEND"
        if policy not in (b"FLUSH", b"APPEND", b"REPLACE"):
            client.reply_error(
                "ERR Wrong restore policy given, value should be either FLUSH, APPEND or REPLACE."
            )
            return
        _all_shards(client, [Verb.FUNCTION, b"restore", args[2], policy])
    elif sub == b"list":
        with_code = False
        pattern = None
        i = 2
        while i < n:
            word = args[i].lower()
            if not with_code and word == b"withcode":
                with_code = True
            elif pattern is None and word == b"libraryname":
                if i >= n - 1:
                    client.reply_error("ERR library name argument was not given")
                    return
                i += 1
                pattern = args[i]
            else:
                client.reply_error("ERR Unknown argument " + args[i].decode("latin-1"))
                return
            i += 1
        command = [
            Verb.FUNCTION,
            b"list",
            pattern or b"",
            b"1" if with_code else b"0",
            b"1" if pattern else b"0",
        ]
        client.send(0, command, None)
    elif sub == b"dump":
        client.send(0, [Verb.FUNCTION, b"dump"], None)
    elif sub == b"stats":
        busy = [link.script for link in client.server.links if link.script is not None]
        if any(script[2] for script in busy):
            # A busy EVAL: Redis's functionStatsCommand answers slowevalerr
            # (its shard, which runs it, could answer only after it).
            client.reply_error(errors.BUSY)
        elif busy:
            client.reply(_running_stats(busy[0]))
        else:
            client.send(0, [Verb.FUNCTION, b"stats"], None)
    elif sub == b"kill":
        kill_script(client, eval_mode=False)
    elif sub == b"help":
        client.reply(list(_FUNCTION_HELP))
    else:
        client.reply_error(errors.SYNTAX)


def _running_stats(script: tuple) -> dict:
    """FUNCTION STATS while a function is busy (its shard cannot answer):
    from what the worker reported (see wire.SCRIPT)."""
    _pid, _dirty, _eval, name, command, started, nlibs, nfuncs = script
    duration = int((time.time() - started) * 1000)
    return {
        b"running_script": {b"name": name, b"command": list(command), b"duration_ms": duration},
        b"engines": {b"LUA": {b"libraries_count": nlibs, b"functions_count": nfuncs}},
    }
