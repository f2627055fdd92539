"""The acceptor's commands that a running Lua script calls.

Redis lets a script call PUBLISH, PUBSUB, COMMAND, INFO, MEMORY, SLOWLOG,
LASTSAVE and SWAPDB, which shardkv's acceptor answers, not a worker.  The
worker that runs the script asks with a ``Q`` frame on the pipe its batch
came on (:mod:`shardkv.protocol.wire`) and reads that pipe until the
answer, so nothing else runs on that shard meanwhile.  The acceptor answers
here, from its event loop, at once: it runs the command's ordinary handler
for a stand-in of the script's caller (Redis's fake Lua client), with the
script's protocol, and writes the ``A`` frame.  No client's command runs in
between, and no shard is asked a batch: PUBLISH delivers to the
subscribers and counts them, PUBSUB and COMMAND read the acceptor's
tables.  With several acceptors, PUBLISH, PUBSUB NUMSUB/CHANNELS/NUMPAT
and INFO (the acceptors' own figures) go round the bus as a client's do
(:mod:`shardkv.acceptor.pubsub`), and the ``A`` frame leaves once the
other acceptors answered (:meth:`_Caller.reply_later`): the script waits
that long, but no acceptor needs a shard to answer, so nothing can wait
on it.

What needs every shard's figures (INFO, MEMORY STATS and DOCTOR, SLOWLOG
GET/LEN/RESET, LASTSAVE) runs its ordinary handler too, whose question to
every shard goes in ``I`` frames (inquiries) rather than in batches: each
worker answers one as soon as it reads it, wherever it is (between
batches, parked for an operation, or inside a script waiting for an
``A`` frame, the asking shard included), so no shard can wait past it;
the ``A`` frame goes once every shard has answered.  With several
acceptors that holds for every pipe: a shard held, parked or running a
script for one acceptor still answers the other acceptors' ``I`` frames
(:meth:`shardkv.worker.loop.Pipes.recv_waiting`), so a script waiting for
its INFO never waits for a hold, and no cycle of waits can close through
it.  SWAPDB is the workers' (a script's write of every database, see
:mod:`shardkv.worker.scripting`).
"""

from __future__ import annotations

import itertools
from collections import deque
from collections.abc import Callable
from functools import partial
from time import perf_counter_ns
from typing import TYPE_CHECKING

from shardkv.acceptor import pubsub
from shardkv.acceptor.info import build_info
from shardkv.acceptor.replies import Slot, origin_of
from shardkv.protocol import bus, errors, wire
from shardkv.protocol.resp import Error, Verbatim, encode, encode_command, encode_error
from shardkv.protocol.wire import FRAME, Verb
from shardkv.runtime.cmdstats import LUA_CLIENT_ADDR, Stats, stat_name
from shardkv.runtime.scriptflushes import ScriptFlushes

if TYPE_CHECKING:
    from shardkv.acceptor.server import Acceptor
    from shardkv.acceptor.shardlink import ShardLink


def on_attach(server: Acceptor, link: ShardLink) -> None:
    """Answer the ``Q`` frames of the scripts that run on ``link``'s shard.
    (A new pipe: the worker before it, if any, is gone, and a generator it
    had borrowed comes back as it was lent.)"""
    link.on_script_query = lambda payload: answer(server, link, payload)
    GENERATOR.forget(link)
    held = _HELD.pop(link, None)  # a script's, whose worker is gone
    if held is not None:
        held.drop(server)
    number = _flush_numbers(server).current()
    if number:
        # The worker (or this acceptor) is new: the flushes numbered up to
        # this one were sent before this pipe, the later ones come on it.
        link.send_control(encode_command([Verb.SCRIPT, b"flushed", b"%d" % number]), _Ignore())
    if link.generation > 1:
        _restore_cjson(server, link)


def next_flush_number(server: Acceptor) -> int:
    """A new SCRIPT FLUSH's number, one more than the last of every
    acceptor's."""
    return _flush_numbers(server).next()


def script_flush(server: Acceptor, number: int, done: Callable[[], None]) -> None:
    """SCRIPT FLUSH to every shard, with its number: one sequence for
    every acceptor (:mod:`shardkv.runtime.scriptflushes`), which a worker
    keeps and the cjson options its scripts set carry (see the worker's
    ``Engine.set_cjson``).  A control message, as a busy script's shard
    must run it too; one whose pipe is down (its worker died) loses it,
    and its new worker is handed the number when its pipe is attached
    (``__script flushed``, see :func:`on_attach`).  ``done`` is called
    once every shard has run it (or its pipe was down): a client's
    SCRIPT FLUSH answers no sooner, so that a SCRIPT LOAD read after that
    answer, through any acceptor, reaches each shard after the flush."""
    command = encode_command([Verb.SCRIPT, b"flush", b"%d" % number])
    waiting = _FlushWait(len(server.links), done)
    for link in server.links:
        link.send_control(command, waiting)
    if not server.links:
        done()


def flush_number(server: Acceptor) -> int:
    """The last SCRIPT FLUSH's number, of every acceptor (0: none yet):
    what a script cached now carries (``ScriptCache.add``)."""
    return _flush_numbers(server).current()


class _FlushWait:
    """Every shard's answer to one SCRIPT FLUSH."""

    __slots__ = ("left", "done")

    def __init__(self, left: int, done: Callable[[], None]) -> None:
        self.left = left
        self.done = done

    def deliver(self, body: bytes) -> None:
        self.left -= 1
        if self.left == 0:
            self.done()


def _flush_numbers(server: Acceptor) -> ScriptFlushes:
    numbers = server.script_flushes
    if numbers is None:  # an acceptor started without the supervisor's
        numbers = server.script_flushes = ScriptFlushes()
    return numbers


class _Ignore:
    __slots__ = ()

    def deliver(self, body: bytes) -> None:
        pass


def _restore_cjson(server: Acceptor, link: ShardLink, tried: tuple = ()) -> None:
    """``link``'s worker started again, with a fresh Lua state: it takes
    another shard's cjson options (``__cjsonstate``, an inquiry), as
    Redis's one Lua state keeps them until SCRIPT FLUSH or a restart of
    the whole server, unless they were set before a SCRIPT FLUSH that this
    worker was handed the number of (see :func:`on_attach`).  Not from a shard
    whose worker started again too and has not taken them yet (its fresh
    state has the defaults); another if the asked one answers an error (it
    went down).  (With one shard, or none other left, it keeps the
    defaults.)"""
    generation = link.generation
    _RESTORING[link] = generation
    for other in server.links:
        if other is not link and other.up and other not in tried and other not in _RESTORING:
            break
    else:
        _restored(link, generation)
        return

    def answer(value: object) -> None:
        if link.generation != generation:
            return  # another worker since: it asks again
        if not isinstance(value, list):
            _restore_cjson(server, link, (*tried, other))  # the other shard is gone
            return
        command = encode_command([Verb.SCRIPT, b"cjsonrestore", *value])
        _UNAPPLIED[link] = _UNAPPLIED.get(link, 0) + 1
        link.send_control(command, _Applied(link, generation))

    other.inquire([Verb.CJSON_STATE], answer)


# The links whose worker started again and has not taken another shard's
# cjson state yet (see _restore_cjson), with that worker's generation.
_RESTORING: dict[ShardLink, int] = {}


def _restored(link: ShardLink, generation: int) -> None:
    if _RESTORING.get(link) == generation:
        del _RESTORING[link]


def answer(server: Acceptor, link: ShardLink, payload: bytes) -> None:
    db, resp, args, since, ahead, at, noted, others = wire.decode_script_query(payload)
    verb = args[0] if args else b""
    if verb == Verb.RANDOM:
        GENERATOR.lend(link)
    elif verb == Verb.RANDOM_BACK:
        GENERATOR.give_back(link, int(args[1]))
    elif verb == Verb.HELD_DROP:
        held = _HELD.pop(link, None)
        if held is not None:
            held.drop(server)
    elif verb == Verb.CJSON:
        _share_cjson(server, link, args[1:])
    else:
        generation = link.generation

        def send(body: bytes) -> None:
            if link.generation == generation:  # not to a worker started since
                _send(link, body)

        if verb == Verb.HELD_COMMIT:
            _commit(server, _HELD.pop(link, None), send)
            return
        held = None
        if verb == Verb.HELD:
            args = args[1:]
            held = _HELD.get(link)
            if held is None:
                held = _HELD[link] = _Held(server)
        elsewhere = (link.index, *others) if others else ()
        call(server, db, resp == 3, args, send, held, since, _reply_slot(link, ahead, at), noted, elsewhere)


def _reply_slot(link: ShardLink, ahead: int, at: int = -1) -> Slot | None:
    """The reply slot of the script that asks, ``ahead`` replies on in
    ``link``'s queue (see wire.encode_script_query): a message its PUBLISH
    sends its own client goes before that reply, as Redis writes it while
    the script runs.  A cross-shard operation's script (its shard parked,
    :data:`wire.SCRIPT_PARKED`; one that escaped its shard, re-run so) is
    the one operation ``link`` takes part in (as scriptcaller.hold finds
    it): its one script's reply slot, if one of its client's pending
    replies or muted in place (``pubsub.place_of``; not an EXEC's part:
    see README); an EXEC's script, its place
    in the array (``at``: which of the run's replies is the script's).
    None if unknown (several clients' scripts run as one operation)."""
    parked = ahead == wire.SCRIPT_PARKED
    if parked and len(link.ops) == 1:
        sink: object = next(iter(link.ops.values()))
        places = getattr(sink, "places", None)
        if places and 0 <= at < len(places):  # an EXEC's script: in its place in the array
            return places[at]
        place = getattr(sink, "script_place", None)
        if place is not None:  # an EXEC's one script
            return place
    elif 0 <= ahead < len(link.fifo):
        sink = link.fifo[ahead]
    else:
        return None
    client, place = origin_of(sink)
    members = getattr(place, "members", None)  # (scripting._Group: scripts run as one operation)
    if parked and members is not None:
        if len(members) != 1:
            return None  # (which of them publishes is not known)
        client, place = origin_of(members[0])
    if client is None or not isinstance(place, Slot) or place.client is not client:
        return None
    if parked and pubsub.place_of(client.pending, place) < 0:  # (or the MutedSlot holding its place)
        return None
    return place


class _Held:
    """What the calls of a script that may yet run again across shards left
    behind, held back until it ends (``Q`` frames of :attr:`Verb.HELD`):
    their counts (commandstats, errorstats) and PUBLISH's deliveries.  Redis
    runs a script once; shardkv's first run, on one shard of several, may
    stop where a call needs another shard and run again across shards
    (:mod:`shardkv.acceptor.scripting`), whose calls ask again: only the
    run that ends counts and publishes (:attr:`Verb.HELD_COMMIT`; the one
    that stops sends :attr:`Verb.HELD_DROP`)."""

    __slots__ = ("stats", "publishes", "tokens", "before")

    def __init__(self, server: Acceptor) -> None:
        self.stats = Stats()
        self.stats.align(server.stats)
        # Each delivers its PUBLISH, then calls the function it is given.
        self.publishes: list[Callable[[Callable[[], None]], None]] = []
        self.tokens: list[int] = []  # K > 1: the other acceptors keep whom each PUBLISH reaches
        self.before: Slot | None = None  # the calling script's reply slot (see _reply_slot)

    def publish(
        self,
        server: Acceptor,
        caller: _Caller,
        channel: bytes,
        message: bytes,
        since: int,
        shard: bool = False,
        noted: int = -1,
        elsewhere: tuple[int, ...] = (),
    ) -> None:
        """A held PUBLISH: answer how many it reaches; deliver at the commit
        to exactly those it counted (still connected), as Redis, where no
        one (un)subscribes while a script runs: with several acceptors,
        each keeps its own (bus.HELD_COUNT) until told (bus.HELD_PUBLISH).
        Nor does it reach those that subscribed after the script started
        (``since``: see pubsub.publish_message; ``shard``: an SPUBLISH);
        there, after the events the script noted before it (``elsewhere``:
        see :func:`call`)."""
        here = pubsub.receivers(channel, message, since, shard)
        before = self.before  # (this script's: an EXEC's scripts each have theirs)
        bus_ = server.bus
        if bus_ is None:

            def now(done: Callable[[], None]) -> None:
                pubsub.deliver(server, here, before, noted)
                done()

            self.publishes.append(now)
            caller.reply(len(here))
            return
        token = next(_TOKENS)
        self.tokens.append(token)

        def later(done: Callable[[], None]) -> None:
            pubsub.deliver(server, here, before, noted)
            bus_.ask(bus.HELD_PUBLISH, [token, 1], lambda answers: done(), failed=lambda e: done())

        self.publishes.append(later)
        bus_.ask(
            bus.HELD_COUNT,
            [token, channel, message, since, int(shard), *elsewhere],
            lambda answers: caller.reply(len(here) + sum(answers)),
            failed=caller.reply_error,
        )

    def drop(self, server: Acceptor) -> None:
        """The script stopped to run again across shards: the other acceptors
        forget whom its PUBLISHes reached (the run across shards asks again)."""
        if self.tokens and server.bus is not None:
            for token in self.tokens:
                server.bus.tell(bus.HELD_PUBLISH, [token, 0])
        _forget(server, self)


_TOKENS = itertools.count(1)


_HELD: dict[ShardLink, _Held] = {}


def _forget(server: Acceptor, held: _Held | None) -> None:
    """``held`` is done with: its counters no longer follow the server's
    settings (Stats.align made them)."""
    if held is not None and server.stats.apart is held.stats:
        server.stats.apart = None


def _commit(server: Acceptor, held: _Held | None, send: Callable[[bytes], None]) -> None:
    """The script ended: count its held calls and deliver its PUBLISHes, in
    order; answer once every message is out (before the script's reply)."""
    if held is None:
        send(b"+OK\r\n")
        return
    held.stats.drain(server.stats)
    _forget(server, held)
    left = [len(held.publishes) + 1]

    def one_done() -> None:
        left[0] -= 1
        if not left[0]:
            send(b"+OK\r\n")

    for deliver in held.publishes:
        deliver(one_done)
    one_done()


def _share_cjson(server: Acceptor, origin: ShardLink, options: list[bytes]) -> None:
    """A script set cjson's options on ``origin``'s shard: every other shard
    takes them (Redis's one Lua state keeps them for every later script),
    each before anything this acceptor sends it after the script's reply.

    The forward is a control message (``send_control``): a shard whose own
    script is past busy-reply-threshold takes it when that script ends,
    where a ``-BUSY`` would leave it with its old options for good.  Which
    of two setters' options hold, and whether a SCRIPT FLUSH reset them,
    each worker decides from the stamp the options carry (see the worker's
    ``Engine.set_cjson``); ``origin`` still gets its own options again
    after a forward that its worker has not run yet (its stamp drops the
    older of the two)."""
    encoded = encode_command([Verb.SCRIPT, b"cjson", *options])
    for link in server.links:
        if link is not origin or _UNAPPLIED.get(link):
            _UNAPPLIED[link] = _UNAPPLIED.get(link, 0) + 1
            link.send_control(encoded, _Applied(link))


# Per link: the cjson forwards sent that its worker has not answered yet.
_UNAPPLIED: dict[ShardLink, int] = {}


class _Applied:
    """The sink of a cjson forward: its worker has run it (or the pipe is
    down, and the forward with it)."""

    __slots__ = ("link", "restores")

    def __init__(self, link: ShardLink, restores: int = 0) -> None:
        self.link = link
        self.restores = restores  # (a cjsonrestore: the generation of the worker that took it)

    def deliver(self, body: bytes) -> None:
        if self.restores:
            _restored(self.link, self.restores)
        left = _UNAPPLIED.get(self.link, 0) - 1
        if left > 0:
            _UNAPPLIED[self.link] = left
        else:
            _UNAPPLIED.pop(self.link, None)


def _send(link: ShardLink, body: bytes) -> None:
    frame = wire.encode_script_answer(body)
    if link.transport is not None:
        link.transport.write(FRAME.pack(len(frame)) + frame)


class _Generator:
    """math.random's state: Redis has one redisLrand48 for the whole server,
    seeded once at start, so every script draws from one sequence.  Each
    shard has a Lua state of its own, so the acceptor keeps the state and
    lends it to the first script that draws, which gives it back when it
    ends (before its reply); a script on another shard that draws
    meanwhile waits for it.  Scripts therefore draw in the order in which
    they first draw: the order they were sent in, unless they run at once on
    different shards (pipelined, or from several clients)."""

    def __init__(self) -> None:
        self.state = wire.RANDOM_SEED
        self.lent_to: ShardLink | None = None
        self.lent_state = self.state
        self.waiting: deque[ShardLink] = deque()

    def lend(self, link: ShardLink) -> None:
        if self.lent_to is None:
            self.lent_to = link
            self.lent_state = self.state
            _send(link, b":%d\r\n" % self.state)
        else:
            self.waiting.append(link)

    def give_back(self, link: ShardLink, state: int) -> None:
        if link is not self.lent_to:
            return  # from a worker whose loan was already taken back
        self.state = state
        self.lent_to = None
        while self.waiting and self.lent_to is None:
            waiter = self.waiting.popleft()
            if waiter.up:
                self.lend(waiter)

    def forget(self, link: ShardLink) -> None:
        if link in self.waiting:
            self.waiting = deque(w for w in self.waiting if w is not link)
        if link is self.lent_to:
            self.give_back(link, self.lent_state)


GENERATOR = _Generator()


class _Caller:
    """The script's stand-in client: it keeps the reply, encoded in the
    script's protocol (``redis.setresp``), and hands it to ``done``; a
    handler's question to every shard goes in ``I`` frames."""

    __slots__ = ("server", "resp3", "db", "done", "stats")

    def __init__(
        self, server: Acceptor, db: int, resp3: bool, done: Callable[[bytes], None], stats: Stats
    ) -> None:
        self.server = server
        self.resp3 = resp3
        self.db = db
        self.done = done
        self.stats = stats  # where its error counts (see _Held)

    def reply(self, value: object) -> None:
        self.done(encode(value, self.resp3))

    def reply_later(self) -> Callable[[object], None]:
        """For a reply the other acceptors add to (K > 1: PUBLISH's count,
        PUBSUB's): the script waits until the returned function is called
        with the value."""
        return self.reply

    def reply_error(self, message: str) -> None:
        self.stats.error(message)
        self.done(encode_error(message))

    def query_all(
        self, args: list[bytes], merge: Callable[[list], object], shards: list[int] | None = None
    ) -> None:
        """Ask every shard (or those of ``shards``) ``args`` (see
        :meth:`ShardLink.inquire`); reply with ``merge`` of their values, or
        the first error among them."""
        links = self.server.links if shards is None else [self.server.links[s] for s in shards]
        parts: list = [None] * len(links)
        left = [len(links)]

        def answered(i: int, value: object) -> None:
            parts[i] = value
            left[0] -= 1
            if left[0]:
                return
            failed = [p for p in parts if type(p) is Error]
            if failed:
                self.reply_error(failed[0].message)
            else:
                self.reply(merge(parts))

        for i, link in enumerate(links):
            link.inquire(args, partial(answered, i))


def call(
    server: Acceptor,
    db: int,
    resp3: bool,
    args: list[bytes],
    done: Callable[[bytes], None],
    held: _Held | None = None,
    since: int = 0,
    before: Slot | None = None,
    noted: int = -1,
    elsewhere: tuple[int, ...] = (),
) -> None:
    """Answer ``args`` called from a script: ``done`` gets the reply body
    (at once, or once every shard asked has answered), counted in the
    command statistics as Redis counts a script's calls (in ``held``'s
    until the script ends, if given).  ``since``: when the script's run
    started (time.monotonic_ns()), for its PUBLISH (see
    pubsub.publish_message); ``before``: the script's reply slot, which
    its PUBLISH's message to its own client precedes, after the first
    ``noted`` of the script's events (-1: all); ``elsewhere``: the shard,
    then ``pipe, seq, count`` for each other acceptor, whose subscribers
    get the message after the first ``count`` events of that shard's
    ``O`` frame ``seq`` (see wire.encode_script_query)."""
    name = args[0].lower()
    stats = server.stats if held is None else held.stats
    stats.error_mark = stats.error_events  # (as Acceptor.run_local: see Stats.error_mark)
    start = perf_counter_ns()

    def finished(body: bytes) -> None:
        row = stats._row(stat_name(args))
        if stats.error_events != stats.error_mark:
            row[3] += 1
            stats.error_mark = stats.error_events
        ns = perf_counter_ns() - start
        stats.record_latency(row, ns)
        if ns >= stats.slow_threshold_ns >= 0:  # logged as Redis logs its Lua client's calls
            stats.slow(args, ns // 1000, LUA_CLIENT_ADDR)
        done(body)

    caller = _Caller(server, db, resp3, finished, stats)
    if name in (b"publish", b"spublish") and len(args) == 3 and (held is not None or since):
        shard = name == b"spublish"
        if held is not None:
            held.before = before
            held.publish(server, caller, args[1], args[2], since, shard, noted, elsewhere)
        elif server.bus is None:
            caller.reply(pubsub.publish_message(server, args[1], args[2], before, since, shard, noted=noted))
        else:
            token = pubsub.script_publishing(before, noted)

            def counted(counts: list) -> None:
                pubsub.script_published(token)
                caller.reply(sum(counts))

            def failed(message: str) -> None:
                pubsub.script_published(token)
                caller.reply_error(message)

            server.bus.ask(
                bus.SPUBLISH if shard else bus.PUBLISH,
                [args[1], args[2], token, since, *elsewhere],
                counted,
                everyone=True,
                failed=failed,
            )
    elif name == b"info":
        # Every acceptor's clients counted, as a client's INFO counts
        # them, then the shards' figures, in ``I`` frames; with the
        # script's calls held so far, as Redis's INFO has them.
        sections = [a.decode("latin-1").lower() for a in args[1:]]
        own = server.stats.report_with(held.stats if held is not None else None)

        def with_shards(others: list | None) -> None:
            caller.query_all(
                [Verb.INFO], lambda parts: Verbatim(build_info(server, sections, parts, own, others).encode())
            )

        if server.bus is None:
            with_shards(None)
        else:
            server.bus.ask(bus.INFO, [], with_shards, failed=caller.reply_error)
    else:
        handler = server.local.get(name.decode("latin-1"))
        if handler is None:  # the worker asks only for the commands above
            caller.reply_error(errors.SCRIPT_CALL_UNSUPPORTED % name.decode("latin-1"))
        else:
            handler(caller, args)  # type: ignore[arg-type]
