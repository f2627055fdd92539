"""Blocking commands, the acceptor's side: BLPOP, BLMOVE, BZPOPMIN...

A blocked client holds up neither the acceptor nor any worker: its reply
slot just stays pending until the worker that owns its keys answers it
(see :mod:`shardkv.worker.blocking` for the worker's side and the whole
design, and :mod:`shardkv.protocol.wire` for the frames).  The client's later
commands are held until then (:meth:`Client.resume`), as Redis holds a
blocked client's input.

Keys on one shard (the usual case)
    The command goes to that shard with a fresh *token* in its entry
    header, and its *stamp* (``time.monotonic_ns()`` now, when the
    acceptor runs it) after its arguments: the worker keeps each key's
    waiters in the order of the stamps, so clients blocked through
    different acceptors are served in the order they blocked
    (``wire.FLAG_STAMP``).  The worker replies at once (an empty body if it blocked); a
    blocked command's reply comes later in a ``W`` frame for its token,
    which :attr:`ShardLink.blocked` hands to the command's
    :class:`_OneShard`.  If the client disconnects first, ``X<token>``
    tells the worker to forget it.  If the worker dies, the slot gets
    ``-ERR shard unavailable`` (:meth:`ShardLink.fail_all`).

Keys on several shards
    No worker can wait for keys it does not own, and popping must stay
    atomic (BLPOP pops from the first non-empty key in order), so
    :class:`_CrossShard` (1) runs the command atomically across its shards
    with :class:`~shardkv.acceptor.crossshard.AtomicOp`, where it cannot block; (2)
    if that found nothing, registers a ``__bwait`` on each shard, which
    pops nothing and answers when a key of its could serve the command
    (naming that key), or 0 when the timeout passes; (3) on the first such
    notification, cancels the other ``__bwait``s and starts again at (1),
    the command run on the key it names alone (as Redis serves a blocked
    client from the key made ready: a key of another type then serves
    nothing, and it waits again); on a 0 replies with a null array.
    A notification of a key that an atomic operation across shards (an
    EXEC, a script) made ready names that operation and the key's rank in
    it: then the other shards are asked first (``__bclaim``) whether that
    operation made one of the client's keys there ready before it, and
    the try runs on the first, as Redis serves a client from the first of
    its ready keys (:meth:`_CrossShard._ask_others`; a stream read's too,
    whose ``__bwait`` so notified keeps the operation and rank for the
    ``__bclaim`` though it claims no entry).
    BLPOP, BRPOP, BZPOPMIN, BZPOPMAX, BLMPOP and BZMPOP register
    ``__bpop`` instead: the shard pops for the client in its turn, as Redis
    serves it when the push ends, notifies the reply and waits in place for
    the verdict, which goes at once (:meth:`_CrossShard._served`: take for
    the first shard of a wait still on, the other shards' waits ended by
    ``__bdone``; give back otherwise, unseen); the client gets the reply
    once the shard logged the pop (:class:`_Taking`).  What a try or a
    taken pop served a client gone (or whose connection ends before the
    reply is out: :func:`lost_unwritten`) goes back to its key
    (``wire.pushed_back``).
    Otherwise only step (1) pops, so an element is popped once, for this client.
    Its ``__bwait`` entries carry the stamp of its first run, so they are notified
    in the order the clients blocked, each told whether an element was
    left at its turn (``wire.BWAIT_READY``), counting each ``__bwait``
    notified before it as taking as many as its command pops at most (1,
    or BLMPOP/BZMPOP's COUNT), or not (``wire.BWAIT_CLAIMED``); the shard
    counts them so (their *claims*) until each try has run: a ``__bdone``
    right behind the try, in its step, ends its claim and makes the key
    serve its waiters again (an element the try left goes to the next; a
    client that blocked after it on that key alone, on that shard, is
    served only then).
    A BLMOVE or BRPOPLPUSH's try after ``BWAIT_READY`` also asks
    ``__bdest`` of its destination: Redis serves the client it notified
    first, and a destination of another type gets it WRONGTYPE (nothing
    popped, the element left to the next waiter), so it does here even
    when that waiter took the element meanwhile; after ``BWAIT_CLAIMED``
    an empty source means waiting again, as Redis does not serve a client
    once the list is gone.  Redis moves the element as the push ends, so a command
    sent after the push (``DEL`` or ``SET`` of the destination) finds it
    moved; a try that waited for the notification would reach the
    destination's shard after that command.  So a write (or script, or
    EXEC) that names the source of such a wait of this acceptor makes it
    try at once, behind the write, in the same step (:func:`try_at_once`,
    with ``__bclaim``s as CLIENT UNBLOCK's inside EXEC; one whose try is
    still on its way tries once that is answered, the writer's reply and
    later commands waiting for it).  The acceptors tell each other the
    sources their such waits wait on (bus ``movers``): a write of one of
    another acceptor's sends ``__bsettle`` behind it, and its writer's
    reply and later commands wait until no claim on the key is left (the
    tries ran; :data:`SETTLE_WAIT_S` at most); and a move notified on such
    a key tries once the claims of the waiters that blocked before it have
    ended (``__bsettle key token``), so the tries of two acceptors' clients
    run in the order they blocked.  A cross-shard
    XREAD tries so too, on the stream written (not after a script or EXEC,
    served by their ranks), so separate XADDs to two of its streams serve
    it from the first, as in Redis.  A cross-shard XREADGROUP's ``__bwait``
    claims one entry, and its streams are told as a move's sources (for
    this acceptor's too): a write of one waits for the notified tries
    (``__bsettle``), and they run in the order their clients blocked.
    A key a cross-shard operation made ready notifies a ``__bpop`` (it
    claims, as a ``__bwait``): a transaction or script writing a key that a
    cross-shard pop of any acceptor waits on (:data:`POP_KEYS`, bus
    ``poppers``) sends ``__bsettle`` behind it too, and its client waits
    for those tries, as Redis serves the pop right after the EXEC; a plain
    write pops in place and sends one too, so that the writer's next
    command (a push to the client's other shard) comes after the verdict,
    as in Redis, where the client is served before that command runs.

Either way the client's later commands are held from the start, but it
counts as blocked (INFO's ``blocked_clients``, CLIENT LIST's ``b``) only
once its shards found nothing: the empty reply of its shard, or the null
of step (1).  Redis blocks a client and resolves XREAD's ``$`` in one step,
so a write that follows the sight of a blocked client must wake it; with
several acceptors such a write can otherwise reach a shard before the
command (behind a busy worker, or while a cross-shard try waits for its
holds), and ``$`` would stand for the written entry.

A client that disconnects while its step (1) runs cannot stop it: what
that step pops from a list or sorted set goes back to its key (a BLMOVE's
stays moved, an XREADGROUP's entries stay pending).

CLIENT UNBLOCK (:func:`unblock`)
    The shards decide, in their order, so an element popped for a client
    is always delivered, and a write sent before the CLIENT UNBLOCK serves
    the client first, as in Redis (``LPUSH k x`` + ``CLIENT UNBLOCK``
    pipelined: ``1, 0``, and the BLPOP gets ``x``).  A one-shard wait sends
    ``__unblock <token>`` to its shard, after whatever came before it there;
    the worker serves the keys made ready first, then answers 1 (it still
    waited, now forgotten: the client gets the null or ``-UNBLOCKED``) or 0
    (served or timed out: its ``W`` frame brings that reply).  A
    cross-shard wait is answered by a step (1): the one on its way, or a new
    one after its ``__bwait``s are cancelled; if it pops, the client gets
    that and CLIENT UNBLOCK replies 0, else 1.  Not a stream read's: a
    ``__bclaim`` (the shard serves what the writes before it made ready
    first) says whether a notification was on its way, before that new try
    (inside EXEC, in its step): the try then runs on the key it names, as
    after that notification, or, outside EXEC, there is none when none was
    (a null, 1); a BLMOVE notified ``BWAIT_READY`` whose destination holds
    another type gets WRONGTYPE (0), as Redis served it after the write.
    A stream read's (outside EXEC) tries its streams one at a time, until
    one serves, so it is served from one stream alone; a stream of another
    type serves nothing.  CLIENT UNBLOCK replies in
    its own client's order either way, once decided, and that client's
    later commands wait for it (:class:`UnblockReply`); a blocked client
    that goes away meanwhile loses what was served to it, as in Redis.
    Inside EXEC, a one-shard wait's ``__unblock`` (on this acceptor's
    pipe, also for another acceptor's client: :func:`unblock_located`)
    serves nothing first, as Redis serves after the whole EXEC (see
    :mod:`shardkv.acceptor.transactions`).

XREAD and XREADGROUP across shards
    The same, with three differences: only with BLOCK do they wait (the
    timeout is BLOCK's milliseconds); the first try also asks
    ``__xlastids`` for what ``$`` stands for, and the later tries use those
    IDs, as Redis resolves ``$`` once, when the command blocks (an XREAD
    BLOCK's first ``__bwait``s go with its first try, in its step, each
    shard resolving ``$`` as they come: the same moment; they are kept
    while the try runs, as an eager try's, so the first script after
    that moment serves it, from the stream that script wrote first;
    and a notified XREAD's try reads its stream only up to the last ID
    that the notification carries, the entries of the write that woke
    it: ``__xreadupto``); and each
    ``__bwait`` carries the group and each key's ID, so it answers 1 only
    when a key has entries for the command; when a key it waits on is
    written and is no stream (deleted) or has lost XREADGROUP's group, it
    answers the error Redis serves then (``-UNBLOCKED the stream key no
    longer exists``, ``-NOGROUP ...``), the command's reply.

WAIT (:func:`wait_for_replicas`)
    shardkv has no replicas, so a WAIT for one or more waits in the
    acceptor alone, no shard involved, until its timeout (for ever with 0),
    CLIENT UNBLOCK or the client's end, and answers 0, as Redis does with no
    replica (:class:`_NoReplicas`).  It counts as blocked at once.

For a new blocking command, add its name to ``TIMEOUT_FIRST`` if its
timeout is its first argument, and to ``SOURCE_ONLY`` if only its first key
can wake it.
"""

from __future__ import annotations

import functools
import itertools
import select
import time
from collections.abc import Callable
from time import perf_counter_ns
from typing import TYPE_CHECKING

import hiredis

from shardkv.acceptor import monitor
from shardkv.acceptor.crossshard import AtomicOp
from shardkv.acceptor.fanout import Gather
from shardkv.acceptor.replies import MUTED, Pushed, Sink, Slot, origin_of
from shardkv.acceptor.shardlink import BUSY_LINKS, busy_refusal
from shardkv.acceptor.state import AFTER_SCRIPTS, REPLY_ON, SCRIPTS
from shardkv.protocol import bus, errors, wire
from shardkv.protocol.args import parse_long_double
from shardkv.protocol.commands import lookup
from shardkv.protocol.resp import NULL_ARRAY, KeyedArrays, encode, encode_command, encode_error
from shardkv.protocol.wire import Verb
from shardkv.runtime.cmdstats import stat_name

if TYPE_CHECKING:
    from shardkv.acceptor.client import Client
    from shardkv.acceptor.server import Acceptor
    from shardkv.acceptor.shardlink import ShardLink
    from shardkv.protocol.commands import Command

# Commands whose timeout is the first argument, not the last.
TIMEOUT_FIRST = frozenset({"blmpop", "bzmpop"})
# Commands that wait on their first key only (the others are written).
SOURCE_ONLY = frozenset({"blmove", "brpoplpush"})
# Commands whose keys and IDs follow STREAMS, with an optional BLOCK <ms>.
STREAM_READS = frozenset({"xread", "xreadgroup"})

# The bodies of "nothing to pop now", in RESP2 (null array, null bulk) and RESP3.
_NULLS = frozenset({b"*-1\r\n", b"$-1\r\n", b"_\r\n"})
# The errors of a command refused before it ran (maxmemory, the disk, a
# script past busy-reply-threshold, whose shard refused the try's hold): a
# rejected call (see _CrossShard._count_try).
_REFUSALS = ("OOM ", "MISCONF ", "BUSY ")
_READY = b":1\r\n"  # also a __bwait's wire.BWAIT_READY
_CLAIMED = b":%d\r\n" % wire.BWAIT_CLAIMED
_SERVED = b":%d\r\n" % wire.BWAIT_SERVED
_SERVED_WAKE = wire.SERVED_WAKE
_NO_TIMEOUT = b"0.000"  # BLOCK 0, as _stream_options gives it
_TIMED_OUT = b":0\r\n"
_WRONGTYPE = encode_error(errors.WRONGTYPE)[:10]  # b"-WRONGTYPE"
# A blocked XREADGROUP's __bwait: its stream or its group is gone.
_STREAM_GONE = frozenset(encode_error(e) for e in (errors.UNBLOCKED_STREAM_DELETED, errors.NOGROUP_BLOCKED))

# CLIENT UNBLOCK's reply, once the shards decided: 1 (unblocked) or 0, or
# the -BUSY error (encoded) while a script is busy.
Answer = Callable[[int | bytes], None]

_tokens = itertools.count(1)
# Every blocked client's wait, by the client's blocked_token.
WAITING: dict[int, _OneShard | _CrossShard | _NoReplicas] = {}
# How many CLIENT UNBLOCKs of a wait are on their way to its shards, by token.
ASKED: dict[int, int] = {}
# This acceptor's cross-shard waits on lists and sorted sets, and its
# cross-shard XREADs, by each key they wait on, in the order they blocked;
# and those that try at once after a write of a key of theirs (BLMOVE,
# BRPOPLPUSH, XREAD), with the keys they wait on (how many such waits on
# each): a command naming one of those keys takes the slow path, which
# tries them (see :func:`try_at_once`); others stay on the inline path.
_BY_KEY: dict[bytes, dict[_CrossShard, None]] = {}
# The last cross-shard pop served to each client, with its reply, until
# the client goes (see lost_unwritten).
_UNWRITTEN: dict[Client, tuple[_CrossShard, bytes]] = {}
_READS: dict[bytes, dict[_CrossShard, None]] = {}
# This acceptor's cross-shard XREADGROUPs, by each stream they wait on: a
# write of one waits for their tries (``__bsettle``, see try_at_once).
_GROUP_READS: dict[bytes, dict[_CrossShard, None]] = {}
EAGER: dict[_CrossShard, None] = {}
# The sources of other acceptors' cross-shard BLMOVE/BRPOPLPUSH waits, and
# the streams of their cross-shard XREADGROUPs, by (acceptor, key): how many
# (bus ``movers``).  They count in EAGER_KEYS too.
_REMOTE_MOVERS: dict[tuple[int, bytes], int] = {}
# The same by key alone, all acceptors together (see _moved_elsewhere).
_REMOTE_KEYS: dict[bytes, int] = {}
EAGER_KEYS: dict[bytes, int] = {}
# The keys that cross-shard pops (BLPOP, BZPOPMIN, BLMPOP...: ``__bpop``)
# of every acceptor wait on, how many on each: a transaction or script
# writing one waits for their tries (``__bsettle``, see try_at_once), as a
# key a cross-shard operation made ready notifies them, and they try
# later; a plain write pops for them in place, and waits for that too
# (they count in EAGER_KEYS as well, so that it leaves the inline path:
# see _more_pops).  Another acceptor's, by (acceptor, key) too (bus
# ``poppers``).
POP_KEYS: dict[bytes, int] = {}
_REMOTE_POPS: dict[tuple[int, bytes], int] = {}


def decided_later(client: Client) -> bool:
    """Whether ``client``'s blocking command is still to be decided where
    Redis decided it at once: its shards have not answered it yet (Redis
    served it, or blocked it, as it read it), or a CLIENT UNBLOCK of it is
    on its way to them (Redis unblocked it as it read that).  A client that
    disconnects meanwhile runs the commands it sent after it if it is
    served or unblocked (see ``Client.connection_lost``)."""
    token = client.state.blocked_token
    return token > 0 and token in WAITING and (not client.state.blocked_shown or token in ASKED)


def _shown(client: Client, token: int) -> bool:
    """The blocking command ``token`` waits now (its shards found nothing):
    False if its client has gone meanwhile, which Redis freed, blocked,
    with what it had sent after it (forgotten now, the wait cancelled)."""
    client.state.show_blocked(token)
    if client.closed and token not in ASKED:
        client.server.client_left(client)
        return False
    return True


def block(client: Client, cmd: Command, args: list[bytes], keys: list[bytes]) -> None:
    """Run a blocking command for ``client`` (``keys`` is never empty)."""
    timed = _has_timeout(cmd, args)
    shard_of = client.server.shard_of
    first = shard_of(keys[0])
    for key in keys:
        if shard_of(key) != first:
            _CrossShard(client, cmd, args, keys, timed)
            return
    _OneShard(client, first, args, timed)


def _has_timeout(cmd: Command, args: list[bytes]) -> bool:
    """Whether the command, once blocked, waits with a timeout: Redis 7.0
    puts a blocked client in its timeout table (INFO's
    ``clients_in_timeout_table``) only then, not for a timeout of 0 (for
    ever).  A timeout the shard refuses never blocks, so any answer does."""
    if cmd.name in STREAM_READS:
        timeout, _ = _stream_options(args)
        return timeout is not None and timeout != _NO_TIMEOUT
    value = parse_long_double(args[1] if cmd.name in TIMEOUT_FIRST else args[-1])
    return value is None or value != 0


def in_timeout_table(token: int) -> bool:
    """Whether the blocked command ``token`` (a client's ``blocked_token``)
    is one Redis would have in its timeout table (see :func:`_has_timeout`)."""
    wait = WAITING.get(token)
    return wait is not None and wait.timed


def _gone(client: Client) -> bool:
    """Whether nothing written to ``client`` reaches it any more: its
    connection is lost, or closing (its end read, or killed), though its
    wait may not be cancelled yet (see :meth:`Client.connection_lost`)."""
    transport = client.transport
    return client.closed or transport is None or transport.is_closing()


def _blocked(client: Client) -> int:
    """Hold ``client``'s later commands under a fresh token; it counts as
    blocked only once its shards found nothing (``state.show_blocked``)."""
    token = next(_tokens)
    client.state.block(token, shown=False)
    return token


def tell_behind(client: Client) -> None:
    """Several acceptors: tell the shard of ``client``'s one-shard blocking
    command, once, that commands wait behind it (an ``H`` frame, after
    the command's entry): a push that serves it then holds its replies
    until they ran (``Shard.gate_on_behind``), as Redis runs a served
    client's buffered commands before it writes the push's reply.  With one
    acceptor the served client's wake and the push's reply come in one
    read, and its commands go before the pusher's next command anyway."""
    wait = WAITING.get(client.state.blocked_token)
    if type(wait) is _OneShard and not wait.told and client.state.held and client.server.bus is not None:
        wait.told = True
        wait.link.queue_frame(wire.encode_behind(wait.token))


def _unblocked(client: Client, token: int) -> None:
    WAITING.pop(token, None)
    if client.state.unblock(token):
        if client.waiting():
            client.server.loop.call_soon(client.resume)  # type: ignore[union-attr]


class _OneShard:
    """A blocking command whose keys all live on one shard: the sink of its
    reply, in the R frame (empty if it blocked) and then the W frame."""

    __slots__ = ("client", "slot", "link", "token", "done", "timed", "after", "behind", "told", "resumed")

    def __init__(self, client: Client, shard: int, args: list[bytes], timed: bool) -> None:
        self.client = client
        self.timed = timed
        # Several acceptors: its shard was told that its client has commands
        # behind it (tell_behind); and what waits until they ran once it
        # was served (when_resumed), until its reply comes.
        self.told = False
        self.resumed: list[Callable[[list], None]] | None = None
        # What waits for its reply to be written (see after_reply), if anything.
        self.after: list[Callable[[], None]] | None = None
        # Where that waits once its reply came, behind one still to come.
        self.behind: _AfterWritten | None = None
        self.slot = Slot(client)
        client.pending.append(self.slot)
        self.token = token = _blocked(client)
        self.done = False
        WAITING[token] = self
        self.link = link = client.server.links[shard]
        if link.up:
            link.blocked[token] = self
        flags = wire.FLAG_STAMP | (wire.FLAG_RESP3 if client.resp3 else 0)
        if client.no_touch:
            flags |= wire.FLAG_NOTOUCH
        link.send(
            wire.entry_header(flags, token, client.db), wire.stamped_command(args, time.monotonic_ns()), self
        )

    def deliver(self, body: bytes) -> None:
        if self.done:
            return
        if not body:  # empty: it blocked, the reply comes later
            _shown(self.client, self.token)
            return
        self.done = True
        self.link.blocked.pop(self.token, None)
        self.slot.deliver(body)
        _unblocked(self.client, self.token)
        self._written()
        resumed, self.resumed = self.resumed, None
        for answer in resumed or ():
            self._after_resumed(answer)

    def when_resumed(self, answer: Callable[[list], None]) -> None:
        """Call ``answer([])`` once the commands its client pipelined behind
        it, run once its reply came (``Client.resume``, called soon after),
        have run on their shards: the ``seen`` answer that a push's replies
        wait for (``Shard.gate_on_behind``)."""
        if self.done:
            self._after_resumed(answer)
        else:
            if self.resumed is None:
                self.resumed = []
            self.resumed.append(answer)

    def _after_resumed(self, answer: Callable[[list], None]) -> None:
        client = self.client
        # (Behind the client's resume, which _unblocked asked for first.)
        client.server.loop.call_soon(after_earlier_commands, client, lambda: answer([]))  # type: ignore[union-attr]

    def after_reply(self, then: Callable[[], None]) -> None:
        """Call ``then`` once this command's reply is written (or it ends
        without one): what a write run after the one that served it caused
        for others on behalf of its client (an invalidation for its REDIRECT
        target), which Redis writes after that reply, as it serves the
        client before it runs the next command.  The reply may wait (a
        ``J`` frame) while this acceptor hands those events out, or, come,
        behind a reply still to come (see :meth:`unwritten`)."""
        if self.done:
            self._after_written([then])
            return
        if self.after is None:
            self.after = []
        self.after.append(then)

    def unwritten(self) -> bool:
        """Whether its reply is not written yet (and what waits for it has
        not run): not come, or come behind a reply still to come."""
        if not self.done:
            return True
        behind = self.behind
        if behind is not None and behind.after is not None:
            return True
        client = self.client
        return not client.closed and any(item is self.slot for item in client.pending)

    def _written(self) -> None:
        after, self.after = self.after, None
        if after:
            self._after_written(after)

    def _after_written(self, after: list[Callable[[], None]]) -> None:
        client = self.client
        client.flush()  # its reply first
        behind = self.behind
        if behind is not None and behind.after is not None:
            behind.after += after  # (already waiting for it)
            return
        pending = client.pending
        if not client.closed and any(item is self.slot for item in pending):
            # (behind the reply of a command it sent before, still to
            # come, which Redis wrote before it ran this one: once
            # both are written)
            at = next(i for i, item in enumerate(pending) if item is self.slot)
            self.behind = _AfterWritten(client, after)
            pending.insert(at + 1, self.behind)
            return
        for then in after:
            then()

    def cancel(self) -> None:
        """The client went away."""
        self.done = True
        WAITING.pop(self.token, None)
        if self.link.blocked.pop(self.token, None) is not None:
            self.link.send_frame(b"X%d" % self.token)
        self._written()

    def unblock(self, error: bool, answer: Answer, after: int = -1, pin: Pin | None = None) -> None:
        """CLIENT UNBLOCK: the shard decides (``__unblock``, after what came
        before it on the pipe; inside EXEC, ``after`` is what it waits for
        there, see :meth:`shardkv.worker.blocking.Waiters.unblock`): see
        :class:`_Unblocking`.  Outside EXEC, once every other shard has
        run what it had (:class:`_AfterOthers`)."""
        if after < 0:
            others = [link for link in self.client.server.links if link is not self.link and link.up]
            if others:
                _AfterOthers(others, answer, lambda: self._ask(error, answer, after))
                return
        self._ask(error, answer, after)

    def _ask(self, error: bool, answer: Answer, after: int) -> None:
        if self.done:
            answer(0)  # served meanwhile, or its client went away
            return
        if after < 0 and BUSY_LINKS and (busy := busy_refusal()):  # a script went busy meanwhile
            answer(busy)
            return
        link = self.link
        link.unblocks_sent += 1
        seq = link.unblocks_sent
        args = [Verb.UNBLOCK, b"%d" % self.token, b"%d" % link.busy_scripts, b"%d" % seq]
        if after >= 0:
            args.append(b"%d" % after)
        command = encode_command(args)
        link.send_control(command, _Unblocking(self, error, answer, seq), in_step=after >= 0)

    def unblocked(self, error: bool) -> None:
        """The shard forgot the waiter: answer the command as if it timed
        out, or with ``-UNBLOCKED``."""
        if self.done:
            return  # the client went away meanwhile
        self.done = True
        self.link.blocked.pop(self.token, None)
        self.slot.deliver(_unblocked_body(self.client, error))
        _unblocked(self.client, self.token)
        self._written()


class _AfterWritten:
    """Among a client's pending replies, right after a served blocked
    command's reply that came behind one still to come: ``after`` (see
    _OneShard.after_reply) waits until both are written, or the client
    is gone.  Ready (empty) at once: each read of it (Client.flush reads
    every pending reply's) looks, on a turn of the loop of its own, for
    whether it was written."""

    __slots__ = ("client", "after", "soon")

    # Its client's connection gone, it is read as the rest is dropped,
    # which runs ``after``.
    stays_when_gone = True

    def __init__(self, client: Client, after: list[Callable[[], None]]) -> None:
        self.client = client
        self.after: list[Callable[[], None]] | None = after
        self.soon = False

    @property
    def data(self) -> bytes:
        if not self.soon and self.after is not None:
            self.soon = True
            loop = self.client.server.loop
            if loop is None:  # (no event loop: a unit test's server)
                self._check()
            else:
                loop.call_soon(self._check)
        return b""

    def _check(self) -> None:
        self.soon = False
        client = self.client
        if not client.closed:
            client.flush()
            if any(item is self for item in client.pending):
                return  # (read before its turn: read again as the rest comes)
        after, self.after = self.after, None
        for then in after or ():
            then()


class _AfterOthers:
    """CLIENT UNBLOCK of a one-shard wait, outside EXEC: Redis runs nothing
    while a script runs, and once the script is past busy-reply-threshold
    it answers CLIENT UNBLOCK ``-BUSY`` (no allow-busy flag), wherever the
    blocked client waits.  A script on another shard than the wait's would
    not delay the ``__unblock``, so a ``__ping`` goes to every other shard
    first, and ``then`` (the ``__unblock``) only once all answered; if one
    of them reports a busy script meanwhile, ``-BUSY`` now, and nothing is
    unblocked (the client stays blocked).  An EXEC with CLIENT UNBLOCK
    does the same, on every shard (:func:`after_scripts`)."""

    __slots__ = ("left", "answer", "then", "refused")

    def __init__(self, links: list[ShardLink], answer: Answer, then: Callable[[], None]) -> None:
        self.left = len(links)
        self.answer = answer
        self.then = then
        self.refused = False
        for link in links:
            link.send_control(_PING, self)

    def refuse_when_busy(self, ran: int, busy: bytes) -> None:
        if not self.refused:
            self.refused = True
            self.answer(busy)

    def deliver(self, body: bytes) -> None:
        self.left -= 1
        if not self.left and not self.refused:
            self.then()


_PING = encode_command([Verb.PING])


def after_scripts(server: Acceptor, refused: Answer, then: Callable[[], None]) -> None:
    """Call ``then`` once every shard has answered a ``__ping`` (it ran the
    scripts it had), or ``refused`` with the ``-BUSY`` error if one of them
    reports a script past busy-reply-threshold meanwhile (see
    :class:`_AfterOthers`): an EXEC with CLIENT UNBLOCK."""
    links = [link for link in server.links if link.up]
    if links:
        _AfterOthers(links, refused, then)
    else:
        then()


def serve_after_scripts(
    client: Client,
    run: Callable[[Client, list[bytes]], None],
    args: list[bytes],
    settled: Callable[[], object] | None = None,
    flagged: bool = False,
) -> None:
    """Run the acceptor's own command ``args`` (``run(client, args)``) once
    no shard runs a script that started before it: every shard has
    answered a ``__ping`` sent now (a shard running a script, parked or
    held for one, answers after it).  Redis runs nothing while a script
    runs, and reads such a command when the script ends, or at
    busy-reply-threshold, where it answers it ``-BUSY`` (no allow-busy
    flag): a shard that reports a script past the threshold meanwhile
    makes it ``-BUSY`` here, nothing done.  An (un)subscribe, CLIENT KILL,
    CLIENT PAUSE... (see README, busy scripts).  Meanwhile the client's
    later commands wait, as a blocked client's do (not shown as blocked).
    Inside EXEC (its step is the transaction's) it runs at once, and so it
    does with one acceptor when no shard has a command of its to answer
    or takes part in a cross-shard operation: none runs a script then.
    ``settled``: called once it is decided, before it runs or is refused.
    ``flagged``: with several acceptors, it runs at once too when no
    shard's script flag is set (an (un)subscribe's: see
    :mod:`shardkv.runtime.scriptflags`), read after the command was.

    One that waits is counted (INFO commandstats, errorstats) once
    decided, as Redis counts it when it reads it: a call when it runs, a
    rejected call and a ``BUSY`` error when refused
    (``Acceptor.calls_deferred``), and its MONITOR line goes when it ran."""
    server = client.server
    if client.state.in_exec or (
        (server.holds is None or (flagged and _no_script_flag(server)))
        and not any(link.fifo or link.ops for link in server.links)
    ):
        run(client, args)
        return
    client.state.block(AFTER_SCRIPTS, shown=False)
    server.calls_deferred += 1
    # Read under CLIENT REPLY OFF or SKIP (Dispatch._execute_quietly): its
    # replies, which come later, are dropped too, unless it turns them back
    # on (CLIENT REPLY ON, a subscribed client's RESET), as Redis clears the
    # flags before it adds its reply.
    mode = client.state.reply_mode
    quiet = mode != REPLY_ON

    def finish(refused: int | bytes | None) -> None:
        if settled is not None:
            settled()
        if not client.state.unblock(AFTER_SCRIPTS) or (client.closed and client not in server.leaving):
            # (one whose connection is gone while it still runs what it
            # sent, Acceptor.leaving, runs it, as Redis ran what it read)
            return
        since = len(client.pending)
        state = client.state
        mute = quiet
        if refused is None:
            cmd = lookup(args[0])
            assert cmd is not None  # (it was read as one)
            now = state.reply_mode  # (ON again after a SKIP: Dispatch._execute_quietly)
            if quiet:
                state.set_reply_mode(mode)  # as it was read
            server.run_counted(client, cmd, args, run)
            if quiet:
                if state.reply_mode == REPLY_ON:
                    mute = False  # it turned them on: its reply goes
                elif state.reply_mode == mode:
                    state.set_reply_mode(now)
            if server.monitors:  # shown once it ran, after its replies, as Redis's call() does
                monitor.feed(client, cmd, args, since=since)
        else:
            _refused_after_scripts(client, args, refused)
        if mute:
            _mute_since(client, since)
        if client.closing and not client.closed:
            # It closes after its replies (a CLIENT KILL of itself): what it
            # sent after runs no more (resume would skip it, and not write
            # the kill's reply), as Redis's CLIENT_CLOSE_AFTER_REPLY.
            client.flush()
        elif client.waiting():
            server.loop.call_soon(client.resume)  # type: ignore[union-attr]
        elif client.pending:
            client.flush()

    after_scripts(server, finish, lambda: finish(None))


def _no_script_flag(server: Acceptor) -> bool:
    """K > 1: whether no shard says it may run a script, or is parked,
    held or prepared for an operation (see :mod:`shardkv.runtime.scriptflags`)."""
    flags = server.script_flags
    return flags is not None and not flags.any_raised() and not _unread_frames(server)


def _unread_frames(server: Acceptor) -> bool:
    """Whether a shard link has bytes this acceptor has not read yet.  A
    slot read 0 may be one cleared after a script that ended: the frames
    it sent this acceptor (its keyspace events, an ``O`` frame) were
    written before the clear, but may wait unread behind the
    (un)subscribe; served first, the (un)subscribe would come before the
    script's events though after its PUBLISHes (a ``__ping``'s answer
    comes behind them on the pipe)."""
    poller = select.poll()
    for link in server.links:
        transport = link.transport
        if transport is not None:
            poller.register(transport.get_extra_info("socket").fileno(), select.POLLIN)
    return bool(poller.poll(0))


def _refused_after_scripts(client: Client, args: list[bytes], refused: int | bytes) -> None:
    """``args``, which waited for the shards' scripts, is refused (a shard's
    ``-BUSY``): its error, counted as dispatch's reject counts one; an
    EXEC's is ``EXECABORT`` with it, the transaction discarded (Dispatch.reject)."""
    message = refused.decode("latin-1")[1:].strip() if isinstance(refused, bytes) else str(refused)
    if args[0].lower() == b"exec":
        client.reject(lookup(args[0]), args, message)
        return
    client.server.stats.rejected(stat_name(args), message)
    client.pending.append(encode_error(message))


def _mute_since(client: Client, since: int) -> None:
    """CLIENT REPLY OFF or SKIP: the replies from ``since`` on are dropped
    (messages pushed meanwhile stay)."""
    pending = client.pending
    for i in range(since, len(pending)):
        if type(pending[i]) is not Pushed:
            pending[i] = MUTED


def queue_after_scripts(
    client: Client, args: list[bytes], queue: Callable[[], None], allow_busy: bool = False
) -> None:
    """Queue inside MULTI the acceptor's own command ``args`` that waits for
    the shards' scripts outside it (CLIENT KILL, PAUSE, UNPAUSE, WAIT: see
    :func:`serve_after_scripts`), or any while a worker runs a script
    (``transactions.queue``): ``queue()`` (which answers ``QUEUED``)
    once every shard answered a ``__ping``.  Redis checks busy scripts for
    a command being queued as for one it runs: it reads it after the
    script, or answers it ``-BUSY`` at busy-reply-threshold, and the
    transaction then aborts (``EXECABORT``).  So a shard that reports a
    script past the threshold meanwhile makes it ``-BUSY`` here, a rejected
    call, nothing queued; but for an ``allow_busy`` one (SCRIPT KILL,
    AUTH...), which Redis queues then.  Meanwhile the client's later
    commands (its EXEC) wait.  At once when no script can run (see
    serve_after_scripts)."""
    server = client.server
    if server.holds is None and not any(link.fifo or link.ops for link in server.links):
        queue()
        return
    client.state.block(AFTER_SCRIPTS, shown=False)
    quiet = client.state.reply_mode != REPLY_ON

    def finish(refused: int | bytes | None) -> None:
        if not client.state.unblock(AFTER_SCRIPTS) or (client.closed and client not in server.leaving):
            # (one whose connection is gone while it waits, Acceptor.leaving,
            # queues it and runs the rest it sent, its EXEC, as Redis ran
            # what it read: see serve_after_scripts)
            return
        since = len(client.pending)
        if refused is None or allow_busy:
            queue()
        else:
            client.state.reject_in_multi()
            _refused_after_scripts(client, args, refused)
        if quiet:
            _mute_since(client, since)
        if client.waiting():
            server.loop.call_soon(client.resume)  # type: ignore[union-attr]
        elif client.pending:
            client.flush()

    after_scripts(server, finish, lambda: finish(None))


class _Unblocking:
    """The sink of ``__unblock`` for a :class:`_OneShard` (None: another
    acceptor's, see :func:`unblock_located`): 1, the waiter still waited
    and is forgotten (CLIENT UNBLOCK replies 1); anything else (0: served
    or timed out, its ``W`` frame delivers that reply; an error: the shard
    is gone, and the wait gets its error) replies 0."""

    __slots__ = ("wait", "error", "answer", "seq", "refused")

    def __init__(self, wait: _OneShard | None, error: bool, answer: Answer, seq: int) -> None:
        self.wait = wait
        self.error = error
        self.answer = answer
        self.seq = seq  # its number among the __unblocks on its pipe
        self.refused = False

    def refuse_when_busy(self, ran: int, busy: bytes) -> None:
        """A script went busy on the shard, which had run the ``__unblock``s
        up to ``ran``: if this one was not, CLIENT UNBLOCK gets ``-BUSY``
        now, as in Redis, and the shard will refuse it (the client stays
        blocked)."""
        if self.seq > ran and not self.refused:
            self.refused = True
            self.answer(busy)

    def deliver(self, body: bytes) -> None:
        if self.refused:
            return  # answered -BUSY; the shard did nothing (it replies -1)
        if body == _READY:
            if self.wait is not None:
                self.wait.unblocked(self.error)
            self.answer(1)
        else:
            self.answer(0)


def _notification(body: bytes) -> tuple[bytes, bytes | None, tuple]:
    """A ``__bwait``'s notification, or a ``__bclaim``'s answer:
    ``[notification, key]`` or ``[notification, key, op, rank]`` as (the
    notification, ``:1`` or ``:2``, the key made ready, and ``(op, rank)``:
    the cross-shard operation that made it ready and its rank among the
    keys it did, or ``()``); any other body as it is, with no key."""
    if body[:1] != b"*":
        return body, None, ()
    reader = hiredis.Reader()
    reader.feed(body)
    notification, key, *order = reader.gets()
    if notification != wire.BWAIT_SERVED and order and type(order[-1]) is bytes:
        order.pop()  # a stream read's stream's last ID (see _upto)
    return b":%d\r\n" % notification, key, tuple(order)


def _upto(body: bytes) -> bytes | None:
    """The stream's last ID that a stream read's notification (or the
    answer of a ``__bclaim`` of it) ends with, as the write that woke it
    ended (``wire.Verb.BWAIT``), or None: its try reads up to that entry
    alone (an XREAD's ``__xreadupto``, an XREADGROUP's ``__xgroupupto``)."""
    if body[:1] != b"*":
        return None
    reader = hiredis.Reader()
    reader.feed(body)
    items = reader.gets()
    if items[0] != wire.BWAIT_SERVED and len(items) > 2 and type(items[-1]) is bytes:
        return items[-1]
    return None


def _first_ready(claims: list[tuple[_Notify, bytes, bytes | None, tuple]]) -> int:
    """The index of the claim to serve from among ``claims`` (``(notify,
    notification, key, order)`` each, see :func:`_notification`; -1 when
    none names a key): the first that names one, unless one operation made
    several ready, then the one it made ready first (its lowest rank), as
    Redis serves a blocked client from the first of its ready keys.  Only
    among those notified ``BWAIT_READY``, if any: Redis serves the client
    from the first ready key that still holds an element at its turn, and
    one notified ``BWAIT_CLAIMED`` had its elements counted for the clients
    before it (the client ``BLPOP b z 0``, then ``BLPOP a b 0``, then
    ``MULTI``, ``RPUSH b x``, ``RPUSH a y``, ``EXEC``: the second gets
    ``[a, y]``, not the first's ``x``)."""
    ready = any(key is not None and body == _READY for _, body, key, _ in claims)
    best = -1
    for i, (_, body, key, order) in enumerate(claims):
        if key is None or (ready and body != _READY):
            continue
        if best < 0:
            best = i
            continue
        first = claims[best][3]
        if order and first and order[0] == first[0] and order[1] < first[1]:
            best = i
    return best


def _ranked(
    claims: list[tuple[_Notify, bytes, bytes | None, tuple]],
) -> list[tuple[_Notify, bytes, bytes]] | None:
    """The claims of ``claims`` that name a key, ``(notify, notification,
    key)`` each, in the order one cross-shard operation made their keys
    ready (their ranks), when that operation made several of them ready,
    or one notified ``BWAIT_CLAIMED``; else None (see
    :meth:`_CrossShard._after_claimants`)."""
    named = [(rank, notify, body, key) for notify, body, key, rank in claims if key is not None]
    if not named or any(len(rank) != 2 or rank[0] != named[0][0][0] for rank, _, _, _ in named):
        return None  # (one notified by a plain write, or by another operation)
    if len(named) == 1 and named[0][2] != _CLAIMED:
        return None
    named.sort(key=lambda claim: claim[0][1])
    return [(notify, body, key) for _, notify, body, key in named]


class _Notify:
    """One shard's ``__bwait`` for a :class:`_CrossShard`."""

    __slots__ = ("wait", "link", "token")

    def __init__(self, wait: _CrossShard, link: ShardLink, token: int) -> None:
        self.wait = wait
        self.link = link
        self.token = token

    def deliver(self, body: bytes) -> None:
        if body:
            self.link.blocked.pop(self.token, None)
            self.wait.notified(self, body)
        self.wait.reached(self)  # (empty: it waits there now)

    def cancel(self) -> None:
        if self.link.blocked.pop(self.token, None) is not None:
            if self.wait.read_only:  # (an XREAD's claims nothing)
                self.link.send_frame(b"X%d" % self.token)
            else:  # it may have claimed elements meanwhile, its wake on its way
                self.link.send_control(self.verb(Verb.BDONE), _IGNORE)

    def verb(self, verb: bytes, *more: bytes) -> bytes:
        """``__bclaim`` or ``__bdone`` of this ``__bwait`` (``more``: its
        ``keep`` or new token, see :meth:`_CrossShard.serve_now`)."""
        return encode_command([verb, b"%d" % self.token, *more])


class _Taking:
    """The sink of a shard's answer to a taking verdict (see
    :meth:`_CrossShard._served`)."""

    __slots__ = ("wait", "key", "reply", "asking")

    def __init__(self, wait: _CrossShard, key: bytes, reply: bytes, asking: bool) -> None:
        self.wait = wait
        self.key = key
        self.reply = reply
        self.asking = asking

    def deliver(self, body: bytes) -> None:
        if body:
            self.wait.taken(self, body)


class _Asking:
    """A ``__bpop``'s place in its link's waits while CLIENT UNBLOCK asks
    its shards (:meth:`_CrossShard._ask`): a ``BWAIT_SERVED`` that comes
    meanwhile is taken (the push came first); any other notification is
    left to the ``__bclaim``'s answer."""

    __slots__ = ("notify",)

    def __init__(self, notify: _Notify) -> None:
        self.notify = notify

    def deliver(self, body: bytes) -> None:
        if body.startswith(_SERVED_WAKE):
            _, key, order = _notification(body)
            self.notify.wait._served(self.notify, key, order[0], asking=True)  # type: ignore[arg-type]


class _ClaimAnswer:
    """The sink of a try's ``__bclaim`` (``wait`` given: it learns whether
    the claim was ``BWAIT_READY``) or ``__bdone``.  Refused (a busy script,
    holds not taken), the try was too: a ``__bdone`` that is never refused
    ends the claim (or forgets the ``__bwait``) instead."""

    __slots__ = ("notify", "wait", "kept")

    def __init__(self, notify: _Notify, wait: _CrossShard | None = None, kept: _Notify | None = None) -> None:
        self.notify = notify
        self.wait = wait
        self.kept = kept  # its __bwait's under a new token (see _CrossShard.serve_now)

    def deliver(self, body: bytes) -> None:
        kept = self.kept
        if body[:1] == b"-":
            link = self.notify.link
            if link.up:
                link.send_control(self.notify.verb(Verb.BDONE), _IGNORE)
            if kept is not None:  # nothing waits on under the new token
                kept.wait.lose_kept()
        elif _notification(body)[0] == _READY:
            if self.wait is not None:
                self.wait.ready_claim = True
            if kept is not None:  # served at its turn: the shard keeps no __bwait
                kept.wait.lose_kept(kept)
        elif kept is not None and body == b":-1\r\n":
            # (The __bdone's.)  No __bwait waited any more (it timed out,
            # its wake dropped as the try began): a new one, sent after the
            # try, times out.
            kept.wait.lose_kept(kept)


class _Question:
    """The ``__bclaim``s of a CLIENT UNBLOCK's question (see
    :meth:`_CrossShard._ask`): once all answered, the wait decides."""

    __slots__ = ("wait", "notifies", "answers", "left", "then")

    def __init__(
        self,
        wait: _CrossShard,
        notifies: list[_Notify],
        then: Callable[[list[_Notify], list[bytes]], None] | None = None,
    ) -> None:
        self.wait = wait
        self.notifies = notifies
        self.answers = [b""] * len(notifies)
        self.left = len(notifies)
        self.then = then or wait.asked  # (or a notification's question: _CrossShard._ask_others)

    def answered(self, notify: _Notify, body: bytes) -> None:
        self.answers[self.notifies.index(notify)] = body
        self.left -= 1
        if not self.left:
            self.then(self.notifies, self.answers)


class _Asked:
    """The sink of one ``__bclaim`` of a :class:`_Question`."""

    __slots__ = ("question", "notify")

    def __init__(self, question: _Question, notify: _Notify) -> None:
        self.question = question
        self.notify = notify

    def deliver(self, body: bytes) -> None:
        self.question.answered(self.notify, body)


class _Ignore:
    """A sink for replies nobody waits for (a cancelled ``__bwait``'s ``__bdone``)."""

    __slots__ = ()

    def deliver(self, body: bytes) -> None:
        pass


_IGNORE = _Ignore()


class _Attempt(Sink):
    """The sink of one atomic try of a :class:`_CrossShard`."""

    __slots__ = ("wait",)

    def __init__(self, wait: _CrossShard) -> None:
        self.wait = wait

    @property
    def reply_place(self) -> Slot:
        """Its command's reply slot, in its client's reply order (the try's
        own operation took its slot out again: see
        :meth:`_CrossShard.attempt`): a try that committed (a move served)
        and whose reply cannot be built closes the client there, after the
        replies before it (``_Operation._unanswerable``); its subscribing
        client hears the try's keyspace events around that slot, as Redis
        writes them around the reply (``notifications.publish``).  (Not
        ``slot``: :func:`~shardkv.acceptor.replies.origin_of` would then
        hand the try's invalidations and its room to that slot.)"""
        return self.wait.slot

    def deliver(self, body: bytes) -> None:
        self.wait.attempted(body)


def _first_body(bodies: list[bytes]) -> bytes:
    return bodies[0]


def _count(name: str, args: list[bytes]) -> bytes:
    """How many elements the command pops at most: BLMPOP/BZMPOP's COUNT
    (``timeout numkeys key... where [COUNT count]``), else 1."""
    if name in TIMEOUT_FIRST:
        try:
            rest = args[3 + int(args[2]) :]
        except ValueError:
            return b"1"
        if len(rest) == 3 and rest[1].lower() == b"count" and rest[2].isdigit():
            return rest[2]
    return b"1"


class _CrossShard:
    """A blocking command whose keys live on several shards (see the module
    docstring): try atomically, wait for a notification, try again."""

    def __init__(
        self, client: Client, cmd: Command, args: list[bytes], keys: list[bytes], timed: bool
    ) -> None:
        self.client = client
        self.timed = timed
        self.args = args
        self.argv = args  # as sent (``args`` gets XREAD's ``$`` resolved): its slow log entry
        self.keys = keys
        self.slot = Slot(client)
        client.pending.append(self.slot)
        self.token = _blocked(client)
        WAITING[self.token] = self
        self.done = False
        self.started = time.monotonic()
        self.stamp = time.monotonic_ns()  # its place among each key's waiters (wire.FLAG_STAMP)
        self.stream = cmd.name in STREAM_READS
        self.read_only = cmd.name == "xread"
        self.move = cmd.name in SOURCE_ONLY
        self.mpop = cmd.name in TIMEOUT_FIRST
        # The elements its __bwait's notification counts as taken (COUNT).
        self.count = _count(cmd.name, args)
        # This try's claim was notified BWAIT_READY: a BLMOVE's try replies
        # its destination's WRONGTYPE (see _served_move).
        self.ready_claim = False
        self.resolved = False
        # The try on its way runs on a ready key alone, or is one after
        # CLIENT UNBLOCK: a WRONGTYPE is nothing to serve (see attempt).
        self.on_key = False
        # A stream read's CLIENT UNBLOCK: the streams its tries, one per
        # stream, have still to read (see unblock).
        self.unread: list[bytes] = []
        # The try on its way is one of serve_now: refused (a script went
        # busy), it found nothing to serve.
        self.eager = False
        if self.stream:
            self.timeout, self.group = _stream_options(args)
        else:
            self.timeout = args[1] if cmd.name in TIMEOUT_FIRST else args[-1]
        shard_of = client.server.shard_of
        self.wait_keys: dict[int, list[bytes]] = {}
        for key in dict.fromkeys(keys[:1] if cmd.name in SOURCE_ONLY else keys):
            self.wait_keys.setdefault(shard_of(key), []).append(key)
        self.notifies: list[_Notify] = []
        # The __bwaits sent before the client was shown blocked that their
        # shards have not answered yet (see _wait_on).
        self.unreached: dict[_Notify, None] = {}
        # Its claims make a write of its keys wait for its try (see
        # try_at_once): a move's, an XREADGROUP's.
        self.claiming = self.move or (self.stream and not self.read_only)
        registry = _registry(self)
        for waited in self.wait_keys.values():
            for key in waited:
                registry.setdefault(key, {})[self] = None
        # A pop's keys make a transaction or script writing them wait for
        # its try (see try_at_once), until it is done (see _forget_keys).
        self.popping = not self.stream and not self.move
        if self.popping:
            for waited in self.wait_keys.values():
                for key in waited:
                    _more_pops(key, 1)
            if client.server.bus is not None:  # (one message for all its keys)
                client.server.bus.tell(bus.POPPERS, [1, *keys_of(self)])
        if self.claiming or self.read_only:
            EAGER[self] = None
            for waited in self.wait_keys.values():
                for key in waited:
                    EAGER_KEYS[key] = EAGER_KEYS.get(key, 0) + 1
                    if self.claiming and client.server.bus is not None:
                        client.server.bus.tell(bus.MOVERS, [1, key])
        self.trying = False  # an atomic try is on its way
        # Called once the try on its way is answered: a pusher's client
        # that waits for it (see try_at_once).
        self.after_try: list[Callable[[], None]] = []
        self.served = False  # a try has run: the next serves the client (see attempt)
        self.taking = False  # a shard was told to take what it popped (see _served)
        # An eager try's __bwaits, which wait on under new tokens, in their
        # places, while it runs; the notifications they got meanwhile; and
        # whether a shard refused the try's step (then they wait no more).
        # See serve_now.
        self.kept: list[_Notify] = []
        self.noticed: list[tuple[_Notify, bytes]] = []
        self.kept_lost = False
        # Tries answered so far, when the one on its way began and its
        # operation (None: XREAD's parts), see _count_try.
        self.tries = 0
        self.try_began = 0
        self.op: AtomicOp | None = None
        self.blocked_ns = 0  # how long its first try took, when it blocked
        # CLIENT UNBLOCKs waiting for the try's outcome: (error, answer, the
        # pin of their EXEC or None).
        self.unblocking: list[tuple[bool, Answer, Pin | None]] = []
        # An EXEC's CLIENT UNBLOCK unblocked it: (error, that EXEC's pin),
        # until the EXEC is decided (see :class:`Pin`).
        self.pinned: tuple[bool, Pin] | None = None
        self.attempt()

    def attempt(
        self,
        notified: bytes = b"",
        done: tuple[_Notify, ...] = (),
        ask: list[_Notify] | None = None,
        ready_key: bytes | None = None,
        unblocked: bool = False,
        keep: dict[_Notify, _Notify] | None = None,
        ranked: list[bytes] | None = None,
        upto: bytes | None = None,
    ) -> None:
        """Try atomically; ``notified``: the notification of a ``__bwait``
        (``_READY`` or ``_CLAIMED``) this try follows, or b"" (the first
        try, or after a CLIENT UNBLOCK).  ``done``: the ``__bwait``s whose
        claims end after this try (``__bdone`` right behind it, in its
        step: its key serves the waiters after it again).  ``ask``: those
        of a try that CLIENT UNBLOCK asks for, whose notifications may be
        on their way: each ``__bclaim`` before the try says (a BLMOVE's
        ``BWAIT_READY`` makes its destination's WRONGTYPE the reply, as
        Redis served it after the write before CLIENT UNBLOCK), and each
        ``__bdone`` after it; a key of another type is nothing to serve
        then (Redis's CLIENT UNBLOCK reads no key: an EXEC's, whose try
        reads them all, ahead of its writes, gives no WRONGTYPE: ``SET b
        s``, ``MULTI``, ``CLIENT UNBLOCK``, ``EXEC``: ``[1]``, and a null).
        ``ready_key``: the key the notification
        names: the try runs the command on that key alone (not a BLMOVE's,
        which has one), as Redis serves a blocked client from the key made
        ready (``serveClientsBlockedOnKey``), its other keys unread; that
        key holding another type then is nothing to serve (see
        :meth:`attempted`).  ``unblocked``: a stream read's try after
        CLIENT UNBLOCK, which reads all its streams: one that holds another
        type by then is nothing to serve either (Redis serves a blocked
        XREAD only from a stream made ready, and CLIENT UNBLOCK gives the
        others their null: ``XREAD BLOCK 0 STREAMS b a $ $``, ``SET b s``,
        ``CLIENT UNBLOCK``: a null, and 1).  ``keep``: an eager try's (see
        :meth:`serve_now`): each ``__bwait`` of ``ask`` is kept by its
        ``__bclaim`` and waits on, after the try, under the token of its
        ``_Notify`` there (its ``__bdone``'s new token).  ``ranked``: a
        pop's keys that one cross-shard operation made ready, in its order
        (see :meth:`_after_claimants`): the try reads those alone, in that
        order, a key of another type passed over (``__btry``).  ``upto``:
        an XREAD's notified stream's last ID as the write that woke it
        ended, which the try reads up to alone (see :func:`_upto`)."""
        client = self.client
        self.trying = True
        self.try_began = perf_counter_ns()
        # A try after the first serves the blocked client: counted in dirty
        # as Redis counts a served command (wire.Run.served).
        served, self.served = self.served, True
        args, keys = self.args, self.keys
        self.on_key = (
            ready_key is not None or unblocked or ask is not None or ranked is not None
        ) and not self.move
        if ready_key is not None and self.on_key:
            args, keys = self._on_key(ready_key), [ready_key]
        elif ranked is not None:
            args, keys = self._on_keys(ranked), ranked
        if ready_key is None:
            upto = None
        if self.read_only:
            self._attempt_parts(args, keys, upto)
            return
        # An XREADGROUP BLOCK's first __bwaits go with its first try, in
        # its step, as an XREAD's (see _attempt_parts).
        first_wait = self.stream and not self.resolved and self.timeout is not None
        first_wait = first_wait and not self.notifies and not self.kept
        holds = client.server.holds if done or ask or first_wait else None
        if holds is not None:
            holds.begin()  # __bclaim, the try and __bdone: one step
        try:
            self.ready_claim = notified == _READY
            for notify in ask or ():
                kept = keep.get(notify) if keep is not None else None
                claim = notify.verb(Verb.BCLAIM) if kept is None else notify.verb(Verb.BCLAIM, b"keep")
                notify.link.send_control(claim, _ClaimAnswer(notify, self, kept), in_step=True)
            # (Its executor counts nothing: see _count_try.)
            if self.stream and not self.resolved:
                commands = [self.args, [Verb.XLASTIDS, *self.keys]]
                op = AtomicOp(client, commands, self.keys, self._resolve, counted=False, served=served)
                op.whole_reply = True  # (the read's reply)
            elif self.move and (self.ready_claim or ask):
                # Redis serves the client it notified first: a destination of
                # another type gets it WRONGTYPE, even when the source is empty
                # again (a waiter on it alone took the element meanwhile).
                commands = [self.args, [Verb.BDEST, self.args[2], self.args[1]]]
                op = AtomicOp(client, commands, self.keys, self._served_move, counted=False, served=served)
            elif upto is not None:
                # An XREADGROUP woken by a write: the entries up to the last
                # ID its notification carries, that write's (see _upto).
                bounded: list[bytes] = [Verb.XREADGROUP_UPTO, ready_key, upto, *args]  # type: ignore[list-item]  # a key here
                op = AtomicOp(
                    client, [bounded], self.keys, _first_body, counted=False, name=self.args[0], served=served
                )
                op.whole_reply = True
            else:
                if ask is not None or ranked is not None:  # (not a stream read's, nor a BLMOVE's)
                    args = [Verb.BTRY, *args]  # its keys of another type passed over
                op = AtomicOp(
                    client, [args], self.keys, _first_body, counted=False, name=self.args[0], served=served
                )
                op.whole_reply = True
            self.op = op
            if first_wait:
                self._wait_on(first=True)
            for notify in (*(ask or ()), *done):
                kept = keep.get(notify) if keep is not None else None
                if kept is None:
                    notify.link.send_control(notify.verb(Verb.BDONE), _ClaimAnswer(notify), in_step=True)
                else:
                    renew = notify.verb(Verb.BDONE, b"%d" % kept.token)
                    notify.link.send_control(renew, _ClaimAnswer(notify, None, kept), in_step=True)
        finally:
            if holds is not None:
                holds.end()
        # The operation queued a reply slot of its own; the client's place
        # in the reply order is ours, so take that one out again.
        if client.pending and client.pending[-1] is op.slot:
            client.pending.pop()
        op.slot = _Attempt(self)  # type: ignore[assignment]

    def _attempt_parts(self, args: list[bytes], keys: list[bytes], upto: bytes | None = None) -> None:
        """XREAD (``args``, of ``keys``): a read-only try needs no parking.
        One ``__xread`` part per shard, all queued in this one step (so
        they see one moment of the global order), merged in the order of
        the keys; the first try also asks each shard what ``$`` stands for
        (``__xlastids``).  ``upto``: a notified try's bound (one key,
        ``__xreadupto``)."""
        client = self.client
        links = client.server.links
        shard_of = client.server.shard_of
        n = len(keys)
        at = len(args) - n
        head = [Verb.XREAD, *args[1 : at - n]] if upto is None else [Verb.XREAD_UPTO, upto, *args[1 : at - n]]
        groups: dict[int, list[int]] = {}
        for i, key in enumerate(keys):
            groups.setdefault(shard_of(key), []).append(i)
        shards = list(groups.items())
        # A stream named twice on a shard goes in another part of it (as
        # many as it is named), so that each part's reply, which names a
        # stream once, tells which of its places read what: Redis reads
        # every place, in the command's order.
        reads: list[tuple[int, list[int]]] = []
        for shard, idx in shards:
            runs: list[list[int]] = []
            for i in idx:
                run = next((run for run in runs if all(keys[j] != keys[i] for j in run)), None)
                if run is None:
                    runs.append([i])
                else:
                    run.append(i)
            reads += [(shard, run) for run in runs]
        resolve = not self.resolved
        bodies = [
            encode_command([*head, *(keys[i] for i in idx), *(args[at + i] for i in idx)]) for _, idx in reads
        ]
        if resolve:
            bodies += [encode_command([Verb.XLASTIDS, *(keys[i] for i in idx)]) for _, idx in shards]

        def merge(parts: list) -> object:
            if resolve:
                args = list(self.args)
                for (_, idx), last in zip(shards, parts[len(reads) :], strict=True):
                    for i, id_ in zip(idx, last, strict=False):
                        if args[at + i] == b"$":
                            args[at + i] = id_
                self.args = args
                self.resolved = True
            found: dict[int, list] = {}
            for (_, idx), part in zip(reads, parts, strict=False):
                read = dict(part)
                for i in idx:
                    if keys[i] in read:
                        found[i] = read[keys[i]]
            out = KeyedArrays((keys[i], found[i]) for i in range(n) if i in found)
            return out if out else NULL_ARRAY

        gather = Gather(_Attempt(self), len(bodies), merge, client.resp3)
        header = client.part_headers[client.resp3]
        holds = client.server.holds  # several acceptors: the parts go under holds
        if holds is not None:
            holds.begin()
        try:
            for i, ((shard, _), body) in enumerate(zip(reads + shards, bodies, strict=False)):
                links[shard].send(header, body, gather.sink(i))
            if resolve and self.timeout is not None and not self.notifies and not self.kept:
                # Its __bwaits go with its first try, in its step, kept
                # meanwhile (as an eager try's, see serve_now): Redis
                # blocks a client where its try found nothing, so the
                # first script after that moment serves it, from the
                # stream that script wrote first.  Sent once the try had
                # found nothing, they came after the scripts meanwhile,
                # and answered at once, whichever reached the acceptor
                # first serving it, with every entry since.
                self._wait_on(first=True)
        finally:
            if holds is not None:
                holds.end()

    def _on_key(self, key: bytes) -> list[bytes]:
        """The command on its key ``key`` alone (see :meth:`attempt`)."""
        args = self.args
        if self.stream:
            n = len(self.keys)
            at = len(args) - n
            return [*args[: at - n], key, args[at + self.keys.index(key)]]
        if self.mpop:  # timeout numkeys key... where [COUNT count]
            return [args[0], args[1], b"1", key, *args[3 + int(args[2]) :]]
        return [args[0], key, args[-1]]

    def _on_keys(self, keys: list[bytes]) -> list[bytes]:
        """A pop (not a stream read, nor a move) on ``keys`` alone, in that order."""
        args = self.args
        if self.mpop:  # timeout numkeys key... where [COUNT count]
            return [args[0], args[1], b"%d" % len(keys), *keys, *args[3 + int(args[2]) :]]
        return [args[0], *keys, args[-1]]

    def _served_move(self, bodies: list[bytes]) -> bytes:
        """A BLMOVE's try after ``BWAIT_READY``: what the command did, or the
        destination's WRONGTYPE (``__bdest``) when it found nothing to move,
        counted as the command's error (see _count_try).  (After CLIENT
        UNBLOCK's ``__bclaim``: only if that said ``BWAIT_READY``.)  A
        WRONGTYPE of its source (``__bdest`` says 1: the write that made
        the try ran ``SET`` of it) is nothing to serve: Redis serves a
        blocked client only from a list, so it waits on."""
        if bodies[0].startswith(_WRONGTYPE) and len(bodies) > 1 and bodies[1] == b":1\r\n":
            return encode(NULL_ARRAY, self.client.resp3)
        if self.ready_claim and bodies[0] in _NULLS and len(bodies) > 1 and bodies[1][:1] == b"-":
            return bodies[1]
        return bodies[0]

    def _resolve(self, bodies: list[bytes]) -> bytes:
        """The first try of XREAD/XREADGROUP: put the IDs ``$`` stood for in
        place of ``$``, for the tries after a wait."""
        self.resolved = True
        if len(bodies) > 1 and bodies[1][:1] == b"*":
            reader = hiredis.Reader()
            reader.feed(bodies[1])
            ids = reader.gets()
            n = len(self.keys)
            at = len(self.args) - n
            args = list(self.args)
            for i in range(n):
                if args[at + i] == b"$" and isinstance(ids, list) and i < len(ids):
                    args[at + i] = ids[i]
            self.args = args
        return bodies[0]

    def _count_try(self, body: bytes, final: bool) -> None:
        """Count a try as Redis's ``call()`` counts the command (no shard
        counts a try: wire.Run.counted, and XREAD's parts are uncounted):
        the first, a call, with a latency sample and a slow log entry
        unless it blocked (not ``final``: Redis's call() adds neither for
        a client it blocked); a later one that answers the command, its
        serving (``updateStatsOnUnblock``: its time, latency and slow log
        entry, a failed call if it failed, no call); a later one that finds
        nothing (it blocks on), nothing.  A first try refused for memory,
        the disk or a busy script is a rejected call, as Redis rejects the
        command."""
        self.tries += 1
        if self.tries > 1 and not final:
            return
        op = self.op
        ns = op.run_ns if op is not None and op.run_ns else perf_counter_ns() - self.try_began
        stats = self.client.server.stats
        name = stat_name(self.args)
        if not final:
            stats.blocked(name, ns)
            self.blocked_ns = ns
            return
        error = body[1:-2].decode("latin-1") if body[:1] == b"-" else None
        if self.tries == 1:
            if error is not None and error.startswith(_REFUSALS):
                stats.rejected(name, error)
                return
            stats.record(name, ns, error)
        else:
            stats.unblocked(name, ns, error)
        client = self.client
        stats.slow(self.argv, ns // 1000, client.addr, client.name)

    def attempted(self, body: bytes) -> None:
        try:
            self._answered(body)
        finally:
            self._tried()

    def busy(self) -> bool:
        """A try of this move is on its way (see :func:`try_at_once`)."""
        return self.trying and not self.done and self.pinned is None

    def _tried(self) -> None:
        """The try on its way was answered: those waiting for it go on."""
        waiting, self.after_try = self.after_try, []
        for then in waiting:
            then()

    def _answered(self, body: bytes) -> None:
        self.trying = False
        kept, self.kept = self.kept, []
        noticed, self.noticed = self.noticed, []
        if self.kept_lost:
            self.kept_lost = False
            self._release(kept)
            kept, noticed = [], []
        if kept:
            if not self._attempted(body, kept=True):
                self._release(kept)  # it goes on another way: they wait no more
                return
            # It waits on: on the __bwaits kept in their places, notified
            # meanwhile maybe (no new ones: see serve_now).
            self.notifies = kept
            for notify, note in noticed:
                self.notified(notify, note)
            return
        self._attempted(body)

    def _release(self, kept: list[_Notify]) -> None:
        """The ``__bwait``s that waited on under new tokens during an eager
        try (see :meth:`serve_now`) end: forgotten, or their claims done."""
        for notify in kept:
            link = notify.link
            link.blocked.pop(notify.token, None)
            if link.up:
                link.send_control(notify.verb(Verb.BDONE), _IGNORE)

    def lose_kept(self, kept: _Notify | None = None) -> None:
        """No ``__bwait`` waits on under the new token of ``kept`` (None:
        any of them): a shard refused the try's step (the refusal's
        ``__bdone`` forgot the old one), or its claim was ``BWAIT_READY``
        (the shard forgets it, as before); so the wait sends a new one once
        the try is answered, as before."""
        if kept is not None:
            if kept in self.kept:  # (its try still runs)
                self.kept.remove(kept)
                kept.link.blocked.pop(kept.token, None)
            elif kept in self.notifies and kept.link.blocked.get(kept.token) is kept and not self.trying:
                self.notifies.remove(kept)
                del kept.link.blocked[kept.token]
                if not self.notifies and not self.done:
                    self._wait_on()
            return
        if self.trying:
            self.kept_lost = True
            return
        if self.done or not self.notifies:
            return
        lost = [n for n in self.notifies if n.link.blocked.get(n.token) is n]
        if len(lost) < len(self.notifies):
            return  # (notified meanwhile: its try is on its way)
        self._release(lost)
        self.notifies = []
        self._wait_on()

    def _attempted(self, body: bytes, kept: bool = False) -> bool:
        """The try answered ``body``: the client gets it, or waits on (new
        ``__bwait``s, unless ``kept``: then True, and the caller has it wait
        on those it kept)."""
        if self.eager:
            self.eager = False
            if body[:1] == b"-" and not body.startswith(_WRONGTYPE):
                body = encode(NULL_ARRAY, self.client.resp3)  # refused: it waits on
        if self.on_key and body.startswith(_WRONGTYPE):
            # Its ready key (or a stream a CLIENT UNBLOCK's try read)
            # holds another type now: Redis 7.0 serves a blocked client
            # only from a key of the type it pops, so it waits on.
            body = encode(NULL_ARRAY, self.client.resp3)
        final = body not in _NULLS or (self.stream and self.timeout is None)
        self._count_try(body, final)
        if self.unread:
            if not final and not self.done and self.unblocking:
                self.attempt(ready_key=self.unread.pop(0))  # (see unblock)
                return False
            self.unread = []
        if (self.done or _gone(self.client)) and body not in _NULLS and body[:1] != b"-":
            if not (self.stream or self.move):
                self._push_back(body)
        if self.done:
            self._answer_unblocks(body in _NULLS)
            return False
        if final:
            self.finish(body)
            return False
        while self.unblocking:  # nothing to pop: now the CLIENT UNBLOCK answers it
            error, answer, pin = self.unblocking.pop(0)
            if pin is not None and pin.ran is None:  # an EXEC's: its client waits for the EXEC
                self._pin(error, pin)
                answer(1)
                return False
            if pin is None or pin.ran:  # (an EXEC already decided: no need to wait)
                self.finish(_unblocked_body(self.client, error, self.args, self.blocked_ns))
                answer(1)
                return False
            answer(0)  # an EXEC that did not run: as if it never was
        # Every shard ran the try (and resolved $): from now on a write wakes
        # the __bwaits below, wherever it comes from, once they are there.
        if kept:  # (there already: they waited on in their places)
            return _shown(self.client, self.token)
        if self.client.closed and self.token not in ASKED:
            _shown(self.client, self.token)  # gone meanwhile: forgotten now
            return False
        self._wait_on()
        return False

    def _wait_on(self, first: bool = False) -> None:
        """Send a new ``__bwait`` (or ``__bpop``) to each of its shards.
        ``first``: an XREAD's, with its first try, in its step (see
        :meth:`_attempt_parts`): kept while the try runs (:attr:`kept`),
        its ``$``s resolved by the shards, and the client shown blocked
        once the try found nothing (:meth:`_attempted`).
        With several acceptors a client not shown blocked yet is shown once
        each shard has answered its own (:meth:`reached`), as a one-shard
        wait is once its shard says it waits: it used to be shown as they
        were sent, and a write through another acceptor that saw it blocked
        could still reach a shard first, and be served as if it came before
        the block (``RPUSH A x``, ``DEL A`` in one read: DEL 1, the client
        left waiting).  With one, every write reaches a shard on the link
        behind them: shown as they are sent, so a CLIENT UNBLOCK read after
        a read through each of its shards answers 1, as in Redis (``SET f
        1``, ``BLPOP a b 0`` in one read; another client sees f, reads b,
        unblocks: it answered 0 while the waits were on their way)."""
        state = self.client.state
        showing = state.blocked_token == self.token and not state.blocked_shown and not first
        later = showing and self.client.server.nacceptors > 1
        self.unreached = {}
        links = self.client.server.links
        elapsed = b"%d" % int((time.monotonic() - self.started) * 1000)
        name = self.args[0]
        if self.stream:
            n = len(self.keys)
            # A stream named twice waits past its first ID, as Redis's
            # blockForKeys keeps the first (and the tries read from it).
            ids: dict[bytes, bytes] = {}
            for key, id_ in zip(self.keys, self.args[len(self.args) - n :], strict=False):
                ids.setdefault(key, id_)
        for shard, keys in self.wait_keys.items():
            link = links[shard]
            notify = _Notify(self, link, next(_tokens))
            (self.kept if first else self.notifies).append(notify)
            if link.up:
                link.blocked[notify.token] = notify
            flags = wire.FLAG_STAMP
            if self.client.no_touch:  # (its shards' pops for it: as its client)
                flags |= wire.FLAG_NOTOUCH
            if self.stream:
                pairs = [x for key in keys for x in (key, ids[key])]
                bwait = [Verb.BWAIT, name, self.timeout, elapsed, self.group, *pairs]
            elif self.move:
                bwait = [Verb.BWAIT, name, self.timeout, elapsed, self.count, *keys]
            else:  # its shards pop for it (see _served)
                on_key = self._on_key(keys[0])
                at = b"%d" % on_key.index(keys[0])
                bwait = [Verb.BPOP, self.timeout, elapsed, self.count, at, b"%d" % len(keys), *keys, *on_key]
                if self.client.resp3:
                    flags |= wire.FLAG_RESP3
            command = wire.stamped_command(bwait, self.stamp)  # type: ignore[arg-type]  # timeout and group are set
            if later and link.up:
                self.unreached[notify] = None
            link.send(wire.entry_header(flags, notify.token, self.client.db), command, notify)
            if self.done:  # that shard is down
                return
        if showing and not self.unreached:
            _shown(self.client, self.token)

    def reached(self, notify: _Notify) -> None:
        """The shard of ``notify`` answered it first (it waits there, or
        notified at once): once all have, the client is shown blocked (see
        :meth:`_wait_on`)."""
        unreached = self.unreached
        if notify in unreached:
            del unreached[notify]
            if not unreached and not self.done:
                _shown(self.client, self.token)

    def notified(self, notify: _Notify, body: bytes) -> None:
        raw = body
        upto = _upto(body) if self.stream else None
        body, key, order = _notification(body)
        if body == _SERVED:
            self._served(notify, key, order[0])  # type: ignore[arg-type]  # a served key
            return
        if notify in self.kept:  # its eager try runs: after it (see serve_now)
            self.noticed.append((notify, raw))
            return
        if self.done or notify not in self.notifies:
            return  # a late answer from a round already over
        if order and len(self.notifies) > 1:
            # An XREAD's claim (of no element) ends now; an XREADGROUP's
            # (one entry) ends behind its try, in its step, as a move's
            # (``done``): ended here, the keyless ``__bsettle`` behind an
            # EXEC of a script that made it ready found no claim, and the
            # writer's next XADD came before the try, which read that entry
            # too (``MULTI``, ``EVAL`` of ``XADD A``, ``EXEC``, ``EVAL`` of
            # ``XADD A`` pipelined, a client in ``XREADGROUP ... STREAMS A
            # B``: Redis serves it the first entry alone).
            if self.read_only:
                notify.link.send_control(notify.verb(Verb.BDONE), _IGNORE)
            self._ask_others(notify, (notify, body, key, order), upto)
            return
        self._cancel_notifies()
        if key is not None:
            if self.claiming and (_moved_elsewhere(key) or (POP_KEYS and key in POP_KEYS)):
                self._after_earlier(notify, body, key, upto)
                return
            # A move's __bwait with nothing left at its turn keeps its place
            # while the try runs (see serve_now).
            keep = self._keep((notify,)) if self.move and body == _CLAIMED else None
            done = () if self.read_only else (notify,)
            self.attempt(notified=body, done=done, ready_key=key, keep=keep, upto=upto)
        elif body == _TIMED_OUT:
            self.finish(encode(NULL_ARRAY, self.client.resp3))
        else:
            if body in _STREAM_GONE:
                # An XREADGROUP's stream or group is gone: Redis serves it
                # that error (no try: it would fail NOGROUP, naming the
                # key), counted as its updateStatsOnUnblock counts it.
                client = self.client
                stats = client.server.stats
                ns = self.blocked_ns  # (Redis's: its first run's, and the reply's, ~0)
                stats.unblocked(stat_name(self.args), ns, body[1:-2].decode("latin-1"))
                stats.slow(self.argv, ns // 1000, client.addr, client.name)
            self.finish(body)  # an error: as above, or the shard is gone

    def _after_earlier(self, notify: _Notify, body: bytes, key: bytes, upto: bytes | None = None) -> None:
        """A move notified on a source that another acceptor's cross-shard
        moves wait on too: its try waits until the tries of those that
        blocked before it have run (``__bsettle key token``), as Redis
        serves a key's clients in the order they blocked; the tries of two
        acceptors' clients used to run in the order they reached the
        shards, and the later client could take the earlier one's
        element.  So too on a key that a cross-shard pop waits on
        (:data:`POP_KEYS`): an EXEC or script making it ready notifies
        the pop and the move behind it (``BWAIT_CLAIMED``), and the move's
        try took the element the pop's, waiting for its own claimants
        (see :meth:`_after_claimants`), was to take
        (``blmove-two-shards-exec-dest-of-a-pop``)."""
        self.trying = True
        link = notify.link

        def go(_: object) -> None:
            if self.done:  # its client went meanwhile: its claim ends
                self.trying = False
                if link.up:
                    link.send_control(notify.verb(Verb.BDONE), _IGNORE)
                self._tried()
                return
            keep = self._keep((notify,)) if self.move and body == _CLAIMED else None
            self.attempt(notified=body, done=(notify,), ready_key=key, keep=keep, upto=upto)

        settle = _Settled(link, go)
        link.blocked[settle.token] = settle
        command = encode_command([Verb.BSETTLE, key, b"%d" % notify.token])
        link.send(wire.entry_header(0, settle.token, self.client.db), command, settle)
        settle.bound(self.client.server)

    def _push_back(self, body: bytes) -> None:
        """The client went away while its try popped ``body`` (a list's or
        sorted set's elements), or before (its reply is dropped): they go
        back to the head of their key, as what a shard popped for it and
        could not hand over does (see :meth:`_served`), not lost."""
        reader = hiredis.Reader()
        reader.feed(body)
        popped = reader.gets()
        if type(popped) is not list or not popped:
            return
        args = self.args
        where = args[3 + int(args[2])] if self.mpop and args[0].lower() == b"blmpop" else b""
        back = wire.pushed_back(args[0], where, popped[0], popped)
        client = self.client
        link = client.server.links[client.server.shard_of(popped[0])]
        link.send(wire.entry_header(0, 0, client.db), encode_command(back), _IGNORE)

    def _served(self, notify: _Notify, key: bytes, reply: bytes, asking: bool = False) -> None:
        """A ``__bpop``'s shard popped for the client (``reply``, from
        ``key``), as Redis serves it when the push ends, and waits in place
        for this verdict, which goes at once, never waiting on a shard: the
        first shard that served a wait still on is told to take it (its
        other ``__bpop``s end: one that served meanwhile finds no wait and
        gives back: ``ShardLink`` answers a wake it lists no wait for), the client gets the reply
        once the shard answers that it logged the pop (:class:`_Taking`);
        a wait already over (a timeout, a try on its way, its client gone)
        has it given back, unseen.  ``asking``: a CLIENT UNBLOCK asks the
        shards (:meth:`_ask`): the push came first, so the client gets it
        and CLIENT UNBLOCK answers 0."""
        take = (
            not self.done
            and not self.taking
            and self.pinned is None
            and not _gone(self.client)
            and (asking or (notify in self.notifies and not self.trying))
        )
        link = notify.link
        link.send_frame(wire.encode_verdict(notify.token, take))
        if not take:
            return
        self.trying = self.taking = True
        others = [other for other in self.notifies if other is not notify]
        self.notifies = []
        for other in others:
            other.cancel()
        link.blocked[notify.token] = _Taking(self, key, reply, asking)

    def taken(self, taking: _Taking, body: bytes) -> None:
        """The shard answered a taking verdict (see :meth:`_served`):
        ``:1``, it logged the pop, so the client gets the reply now; ``:0``,
        it had given the element back (it waited past its bound): try on
        that key, as after ``BWAIT_READY``; an error: the shard is gone."""
        asking = taking.asking
        self.taking = False
        if body == _READY:
            reply = taking.reply
            if self.done or _gone(self.client):
                self._push_back(reply)  # (a client gone meanwhile: visible, see the README)
                if self.done:
                    return
            self.trying = False
            self.try_began = perf_counter_ns()
            self.op = None
            self._count_try(reply, True)
            self.finish(reply)
            return
        if asking or self.done:
            return  # (CLIENT UNBLOCK's question decides)
        self.trying = False
        if body == _TIMED_OUT:
            self.attempt(ready_key=taking.key)
        else:
            self.finish(body)

    def _ask_others(
        self, notify: _Notify, claim: tuple[_Notify, bytes, bytes | None, tuple], upto: bytes | None
    ) -> None:
        """A cross-shard operation made the key of ``notify`` ready: it may
        have made others of this client's keys ready on other shards before
        it, whose notifications are on their way, and Redis serves the
        client from the key made ready first (its ready keys' order).  So
        the other shards are asked first (``__bclaim``, in one step, which
        also ends their waits), and the try runs on the key with the lowest
        rank in that operation (:meth:`_claimed`).  A stream read's too:
        its ``__bwait``s claim nothing, but one so notified keeps the
        operation and rank until a ``__bclaim`` or ``__bdone`` reads them
        (its own gets a ``__bdone`` now), so the client gets the entries of
        the stream written first alone, as Redis 7.0 serves it
        (``serveClientsBlockedOnStreamKey``), up to its entries then
        (``upto``, and the answers', see :func:`_upto`)."""
        others = [other for other in self.notifies if other is not notify]
        self.notifies = []
        for other in others:
            other.link.blocked.pop(other.token, None)
        self._send_claims(
            _Question(self, others, lambda notifies, answers: self._claimed(claim, notifies, answers, upto))
        )

    def _claimed(
        self, claim: tuple, notifies: list[_Notify], answers: list[bytes], upto: bytes | None
    ) -> None:
        """The other shards answered :meth:`_ask_others` (``claim``: the
        notification that asked them): try on the key the operation made
        ready first; every claim ends after the try."""
        claims = [claim]
        claims += [(other, *_notification(answer)) for other, answer in zip(notifies, answers, strict=True)]
        done = tuple(claim[0] for claim in claims)
        if self._claims_abandoned(claims):
            return
        if not (self.stream or self.move):
            ranked = _ranked(claims)
            if ranked is not None:
                self._after_claimants(ranked, done)
                return
        best = _first_ready(claims)
        _, notified, key, _ = claims[best]
        if self.stream:
            upto = (upto, *map(_upto, answers))[best]
        self.attempt(notified=notified, done=done, ready_key=key, upto=upto)

    def _after_claimants(self, ranked: list[tuple[_Notify, bytes, bytes]], done: tuple[_Notify, ...]) -> None:
        """A pop that one cross-shard operation (an EXEC, a script) made
        ready on several of its shards (``ranked``: ``(notify,
        notification, key)`` in the order the operation made the keys
        ready): Redis serves its clients right after the operation, key by
        key in that order, each key's clients in the order they blocked, so
        a client finds a key emptied by those before it and is served from
        its next ready key.  So the try waits until the tries of the
        clients that blocked before it and hold claims on its keys have run
        (``__bsettle key token``, on each key up to its first notified
        ``BWAIT_READY``, whose element is counted for it, and that one:
        the clients before it there, notified too, pop first, as a BLMPOP
        or BZMPOP with a COUNT may pop more than the one left for it, and
        two clients made ready there by two elements, through two
        acceptors, each took the other's now and then: the later one's
        try reached the shard first), then pops from
        the first of those keys that holds an element, in one step with
        its ``__bdone``s (so a writer's ``__bsettle`` of those keys answers
        only after it).  Its try used to run on one key alone, as soon as
        notified: a client notified ``BWAIT_CLAIMED`` took the element of
        the client before it, or, finding its key empty, waited again and
        was served after the writer's next command (``MULTI``, ``RPUSH B
        y``, ``RPUSH A x``, ``EXEC``, ``LLEN A`` pipelined, two clients in
        ``BLPOP A B 0`` through two acceptors: LLEN 1, Redis 0; issue 22)."""
        keys = [key for _, _, key in ranked]
        behind: list[tuple[_Notify, bytes]] = []
        for notify, notified, key in ranked:
            behind.append((notify, key))
            if notified == _READY:
                break
        self.trying = True
        server = self.client.server
        left = len(behind)

        def go(_: object) -> None:
            nonlocal left
            left -= 1
            if left:
                return
            if self.done:  # its client went meanwhile: its claims end
                self.trying = False
                for notify in done:
                    if notify.link.up:
                        notify.link.send_control(notify.verb(Verb.BDONE), _IGNORE)
                self._tried()
                return
            self.attempt(done=done, ranked=keys)

        for notify, key in behind:
            link = notify.link
            settle = _Settled(link, go)
            link.blocked[settle.token] = settle
            command = encode_command([Verb.BSETTLE, key, b"%d" % notify.token])
            link.send(wire.entry_header(0, settle.token, self.client.db), command, settle)
            settle.bound(server)

    def _cancel_notifies(self) -> None:
        notifies, self.notifies = self.notifies, []
        for notify in notifies:
            notify.cancel()

    def _forget_keys(self) -> None:
        """Done: no longer among the waits of its keys (see :data:`_BY_KEY`)."""
        eager = EAGER.pop(self, 0) is None  # (once: finish and drop both call it)
        popping, self.popping = self.popping, False
        teller = self.client.server.bus
        registry = _registry(self)
        for waited in self.wait_keys.values():
            for key in waited:
                waits = registry.get(key)
                if waits is not None:
                    waits.pop(self, None)
                    if not waits:
                        del registry[key]
                if eager:
                    _less_eager(key)
                    if self.claiming and teller is not None:
                        teller.tell(bus.MOVERS, [-1, key])
                if popping:
                    _less_pops(key, 1)
        if popping and teller is not None:
            teller.tell(bus.POPPERS, [-1, *keys_of(self)])

    def serve_now(self, key: bytes, signals: bool = False) -> None:
        """A command writing its key ``key`` was just sent (see
        :func:`try_at_once`): try at once, in the same step, behind it.
        An XREAD reads that stream alone, as after its notification: Redis
        serves it as that command ends, from that stream, before a later
        write of another of its streams (pipelined XADDs to two shards);
        ``signals``: that command signals the key ready (see
        :data:`SIGNALS`), and it reads as a notified try.
        A BLMOVE's ``key`` is its source.
        Redis moves the element as that command ends, so a later command
        on the destination (``DEL``, ``SET``) comes after the move; a try
        that waited for the source's notification would reach the
        destination's shard after it.  The ``__bclaim`` before the try
        says whether that command made the source serve it (the keys made
        ready before it served first), as for CLIENT UNBLOCK inside EXEC.
        Its ``__bwait`` keeps its place among its key's waiters meanwhile,
        unless it was notified ``BWAIT_READY`` (served at its turn):
        ``__bclaim ... keep`` does not forget it, and the ``__bdone`` behind
        the try has it wait on under a new token (a claim it had then done),
        whose notifications, while the try runs, wait for its outcome
        (:attr:`noticed`); a try that finds nothing waits on that one, one
        that serves it ends it (``__bdone``).  So does a notified try after
        ``BWAIT_CLAIMED`` (:meth:`notified`).  (It
        used to forget it and send a new one once the try had found
        nothing, and a client blocked on the source alone after it, on that
        shard, was served a push that came meanwhile: ``BLMOVE a b``,
        ``BLMOVE a b``, ``BLPOP a``, then ``RPUSH a x``, ``RPUSH a y``: the
        second client blocked, the third served ``y``.)"""
        if self.done or self.trying or self.pinned is not None or not self.notifies:
            return
        if self.read_only:
            self._cancel_notifies()
            self.attempt(ready_key=key, upto=_NO_BOUND if signals else None)
            return
        notifies, self.notifies = self.notifies, []
        for notify in notifies:
            notify.link.blocked.pop(notify.token, None)
        self.eager = True
        self.attempt(ask=notifies, keep=self._keep(notifies))

    def _keep(self, notifies: list[_Notify] | tuple[_Notify, ...]) -> dict[_Notify, _Notify] | None:
        """The new tokens under which ``notifies``' ``__bwait``s wait on,
        in their places, while a try runs (see :meth:`serve_now`), each
        listed on its link; None if a shard is down (nothing kept)."""
        keep: dict[_Notify, _Notify] = {}
        for notify in notifies:
            link = notify.link
            if not link.up:
                for kept in keep.values():
                    kept.link.blocked.pop(kept.token, None)
                return None
            kept = keep[notify] = _Notify(self, link, next(_tokens))
            link.blocked[kept.token] = kept
        self.kept = list(keep.values())
        return keep or None

    def finish(self, body: bytes) -> None:
        self.done = True
        self._forget_keys()
        self._cancel_notifies()
        self.slot.deliver(body)
        if body not in _NULLS and body[:1] != b"-" and not (self.stream or self.move or _gone(self.client)):
            _UNWRITTEN[self.client] = (self, body)  # until written (see lost_unwritten)
        _unblocked(self.client, self.token)
        self._answer_unblocks(False)

    def cancel(self) -> None:
        """The client went away (a try on its way still pops: see the
        module docstring)."""
        self.done = True
        WAITING.pop(self.token, None)
        self._forget_keys()
        self._cancel_notifies()

    def unblock(self, error: bool, answer: Answer, after: int = -1, pin: Pin | None = None) -> None:
        """CLIENT UNBLOCK: only a try pops, so the command is answered by
        one: the one on its way, or a new one, queued after what came before
        the CLIENT UNBLOCK.  If it pops, the client gets that (as Redis
        serves it before the CLIENT UNBLOCK runs), and CLIENT UNBLOCK
        replies 0; if it finds nothing, the client gets the null or
        ``-UNBLOCKED``, and CLIENT UNBLOCK replies 1.  An EXEC's (``pin``)
        pins the wait instead, until the EXEC is decided (see :class:`Pin`).
        Pinned, the wait tries nothing: another CLIENT UNBLOCK of that EXEC
        replies 0, anyone else's waits for the EXEC's outcome."""
        if self.pinned is not None:
            if pin is self.pinned[1]:
                answer(0)
            else:
                self.unblocking.append((error, answer, pin))
            return
        self.unblocking.append((error, answer, pin))
        if not self.trying:
            if self.stream:
                # Its streams written before the CLIENT UNBLOCK may have
                # notified it (their wakes on their way): Redis served it
                # from one stream alone, so it tries each in turn, until
                # one serves (an XREADGROUP delivers no other stream's
                # entries).  An EXEC's tries all at once, in its step,
                # ahead of the EXEC's writes.
                self._cancel_notifies()
                if pin is None:
                    self.unread = list(dict.fromkeys(self.keys))
                    self.attempt(ready_key=self.unread.pop(0))
                else:
                    self.attempt(unblocked=True)
                return
            # A write before the CLIENT UNBLOCK may have notified it (its
            # wake on its way): __bclaims say, before the try (an EXEC's
            # CLIENT UNBLOCK: in its step, see _ask).
            notifies, self.notifies = self.notifies, []
            for notify in notifies:
                link = notify.link
                if pin is None and link.blocked.pop(notify.token, None) is not None:
                    link.blocked[notify.token] = _Asking(notify)  # (a BWAIT_SERVED meanwhile is taken)
                else:
                    link.blocked.pop(notify.token, None)
            if pin is None and notifies:
                self._ask(notifies)
            else:
                self.attempt(ask=notifies)

    def _ask(self, notifies: list[_Notify]) -> None:
        """CLIENT UNBLOCK outside EXEC: ask each shard first whether a
        notification was on its way (``__bclaim``, one step, after the keys
        made ready before it were served); then try on the key it names,
        as after that notification, or, with none, answer as a try that
        found nothing: Redis serves a blocked client only from a key made
        ready, of the type it pops, so a key of another type makes no
        WRONGTYPE (``BLPOP b a 0``, ``SET b s``, ``CLIENT UNBLOCK``: a null,
        and 1).  (An EXEC's CLIENT UNBLOCK runs ahead of its writes, its
        try too, so its __bclaims go in the try's step instead:
        :meth:`attempt`.)"""
        self._send_claims(_Question(self, notifies))

    def _send_claims(self, question: _Question) -> None:
        """Send the ``__bclaim`` of each ``__bwait`` of ``question``, all in
        one step (under the holds, with several acceptors), so they see one
        moment of the global order; the try waits for their answers."""
        self.trying = True
        self.try_began = perf_counter_ns()
        holds = self.client.server.holds
        if holds is not None:
            holds.begin()
        try:
            for notify in question.notifies:
                notify.link.send_control(notify.verb(Verb.BCLAIM), _Asked(question, notify), in_step=True)
        finally:
            if holds is not None:
                holds.end()

    def _claims_abandoned(self, claims: list[tuple[_Notify, bytes, bytes | None, tuple]]) -> bool:
        """Whether the client went away while its ``__bclaim``s were asked:
        then each claim they found ends (``__bdone``), nothing popped, and
        the CLIENT UNBLOCKs waiting are answered."""
        if not self.done:
            return False
        self.trying = False
        self._tried()
        for notify, _, key, _ in claims:
            if key is not None and notify.link.up:
                notify.link.send_control(notify.verb(Verb.BDONE), _IGNORE)
        self._answer_unblocks(True)
        return True

    def asked(self, notifies: list[_Notify], answers: list[bytes]) -> None:
        """The ``__bclaim``s of :meth:`_ask` answered (in the order of
        ``notifies``)."""
        for notify in notifies:
            if type(notify.link.blocked.get(notify.token)) is _Asking:
                del notify.link.blocked[notify.token]
        claims = [(notify, *_notification(body)) for notify, body in zip(notifies, answers, strict=True)]
        if self._claims_abandoned(claims):
            return
        if any(body[:1] == b"-" for body in answers):  # refused: as an EXEC's (__bclaim again, no harm)
            self.attempt(ask=notifies)
            return
        first = _first_ready(claims)
        if first >= 0:
            _, notified, key, _ = claims[first]
            self.attempt(notified=notified, done=tuple(notifies), ready_key=key)
            return
        self.attempted(encode(NULL_ARRAY, self.client.resp3))

    def _pin(self, error: bool, pin: Pin) -> None:
        """An EXEC's CLIENT UNBLOCK found nothing to pop: wait for nothing,
        try nothing, until the EXEC is decided.  Its other CLIENT UNBLOCKs
        of this client reply 0 (it is unblocked)."""
        self.pinned = (error, pin)
        pin.waits.append(self)
        unblocking, self.unblocking = self.unblocking, []
        for entry in unblocking:
            if entry[2] is pin:
                entry[1](0)
            else:
                self.unblocking.append(entry)

    def unpinned(self, pin: Pin, ran: bool) -> None:
        """The EXEC that pinned the wait is decided: if it ran, the client
        gets its null or ``-UNBLOCKED`` (and the CLIENT UNBLOCKs that came
        meanwhile reply 0); if not, it waits again, as if that EXEC's
        UNBLOCKs never were (a try first, which also answers the other
        CLIENT UNBLOCKs that came meanwhile)."""
        if self.pinned is None or self.pinned[1] is not pin:
            return
        error = self.pinned[0]
        self.pinned = None
        if self.done:  # its client went away
            self._answer_unblocks(False)
        elif ran:
            self.finish(_unblocked_body(self.client, error, self.args, self.blocked_ns))
        else:
            self.attempt()

    def _answer_unblocks(self, first: bool) -> None:
        """Answer the CLIENT UNBLOCKs still waiting: 1 for the first when
        ``first`` (it unblocked a client that went away meanwhile), else 0."""
        unblocking, self.unblocking = self.unblocking, []
        for i, (_, answer, _pin) in enumerate(unblocking):
            answer(1 if first and i == 0 else 0)


# Longer WAIT timeouts never end in practice (Redis's own overflows, and
# its timeout table then never fires): such a WAIT gets no timer.
_LONGEST_TIMER_MS = 10**12


class _NoReplicas:
    """A WAIT for replicas that never come: the acceptor answers it with 0
    when its timeout passes, or when CLIENT UNBLOCK asks (0 as if it timed
    out, or ``-UNBLOCKED``), as Redis's ``replyToBlockedClientTimedOut``
    does for WAIT.  Meanwhile the client's later commands are held."""

    __slots__ = ("client", "slot", "token", "done", "timed", "timer")

    def __init__(self, client: Client, timeout_ms: int) -> None:
        self.client = client
        self.timed = timeout_ms > 0
        self.slot = Slot(client)
        client.pending.append(self.slot)
        self.token = token = next(_tokens)
        client.state.block(token)  # no shard to ask: blocked as Redis shows it at once
        self.done = False
        WAITING[token] = self
        self.timer = None
        if 0 < timeout_ms <= _LONGEST_TIMER_MS:
            self.timer = client.server.loop.call_later(timeout_ms / 1000, self.finish, False)  # type: ignore[union-attr]

    def finish(self, error: bool) -> None:
        """Answer 0 (its timeout passed, or CLIENT UNBLOCK ... TIMEOUT) or
        ``-UNBLOCKED`` (CLIENT UNBLOCK ... ERROR)."""
        if self.done:
            return
        self.done = True
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        client = self.client
        self.slot.deliver(encode_error(errors.UNBLOCKED) if error else encode(0, client.resp3))
        _unblocked(client, self.token)
        server = client.server
        server.loop.call_soon(server.flush_dirty_clients)  # type: ignore[union-attr]

    def cancel(self) -> None:
        """The client went away."""
        self.done = True
        WAITING.pop(self.token, None)
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None

    def unblock(self, error: bool, answer: Answer, after: int = -1, pin: Pin | None = None) -> None:
        """CLIENT UNBLOCK: nothing can serve a WAIT meanwhile, so it is unblocked."""
        if not self.done:
            client = self.client
            # (its time before it blocked: taken as 0)
            client.server.stats.unblocked_by_client([b"wait"], 0, error, client.addr, client.name)
        self.finish(error)
        answer(1)


def wait_for_replicas(client: Client, timeout_ms: int) -> None:
    """WAIT for one or more replicas (there are none), outside MULTI: the
    client blocks for ``timeout_ms`` (0: for ever) and gets 0."""
    _NoReplicas(client, timeout_ms)


# Commands whose writes follow another order than their keys' (a script
# writes its keys in any order): a stream read is served by their
# operation's ranks (see _CrossShard._ask_others), not tried at once.
RANKED = frozenset({"exec", "eval", "evalsha", "fcall"})


def _registry(wait: _CrossShard) -> dict[bytes, dict[_CrossShard, None]]:
    """The waits by key that ``wait`` is among (see :data:`_BY_KEY`)."""
    if not wait.stream:
        return _BY_KEY
    return _READS if wait.read_only else _GROUP_READS


def _less_eager(key: bytes) -> None:
    left = EAGER_KEYS.pop(key) - 1
    if left:
        EAGER_KEYS[key] = left


def bus_movers(server: Acceptor, origin: int, args: list) -> None:
    """Acceptor ``origin``'s cross-shard BLMOVE/BRPOPLPUSH waits on the
    source ``args[1]`` now (``args[0]``: 1), or no longer (-1); or all of
    them now (0, then each key and how many wait on it), in place of
    those it told before (see :func:`learn_movers`)."""
    if args[0] == 0:
        forget_movers(origin)
        for i in range(1, len(args) - 1, 2):
            key, n = args[i], args[i + 1]
            _REMOTE_MOVERS[origin, key] = n
            EAGER_KEYS[key] = EAGER_KEYS.get(key, 0) + n
            _REMOTE_KEYS[key] = _REMOTE_KEYS.get(key, 0) + n
        return
    key = args[1]
    n = _REMOTE_MOVERS.get((origin, key), 0) + args[0]
    if args[0] > 0:
        EAGER_KEYS[key] = EAGER_KEYS.get(key, 0) + 1
        _REMOTE_KEYS[key] = _REMOTE_KEYS.get(key, 0) + 1
    elif (origin, key) in _REMOTE_MOVERS:
        _less_eager(key)
        _less_remote(key, 1)
    if n > 0:
        _REMOTE_MOVERS[origin, key] = n
    else:
        _REMOTE_MOVERS.pop((origin, key), None)


def bus_poppers(server: Acceptor, origin: int, args: list) -> None:
    """A cross-shard pop of acceptor ``origin`` waits on the keys
    ``args[1:]`` now (``args[0]``: 1; one message for all its keys), or
    no longer (-1); or all of them now (0, then each key and how many wait
    on it), in place of those it told before (see :func:`learn_movers`)."""
    if args[0] == 0:
        for held in [held for held in _REMOTE_POPS if held[0] == origin]:
            _less_pops(held[1], _REMOTE_POPS.pop(held))
        for i in range(1, len(args) - 1, 2):
            key, n = args[i], args[i + 1]
            _REMOTE_POPS[origin, key] = n
            _more_pops(key, n)
        return
    more = args[0] > 0
    for key in args[1:]:
        held = (origin, key)
        if more:
            _REMOTE_POPS[held] = _REMOTE_POPS.get(held, 0) + 1
            _more_pops(key, 1)
        elif held in _REMOTE_POPS:
            _less(_REMOTE_POPS, held, 1)
            _less_pops(key, 1)


def keys_of(wait: _CrossShard) -> list[bytes]:
    """The keys ``wait`` waits on, each once."""
    return [key for waited in wait.wait_keys.values() for key in waited]


def pops_wait_on(keys: list[bytes]) -> bool:
    """Whether a cross-shard pop of any acceptor waits on one of ``keys``
    (see :data:`POP_KEYS`)."""
    return bool(POP_KEYS) and any(key in POP_KEYS for key in keys)


def _less(counts: dict, key: object, n: int) -> None:
    left = counts.pop(key) - n
    if left:
        counts[key] = left


def _more_pops(key: bytes, n: int) -> None:
    """``n`` more cross-shard pops wait on ``key`` (see :data:`POP_KEYS`);
    they count in :data:`EAGER_KEYS` too, so that a plain write of it
    leaves the inline path and waits for their verdicts (``__bsettle``)."""
    POP_KEYS[key] = POP_KEYS.get(key, 0) + n
    EAGER_KEYS[key] = EAGER_KEYS.get(key, 0) + n


def _less_pops(key: bytes, n: int) -> None:
    _less(POP_KEYS, key, n)
    _less(EAGER_KEYS, key, n)


def _less_remote(key: bytes, n: int) -> None:
    _less(_REMOTE_KEYS, key, n)


def _moved_elsewhere(key: bytes) -> bool:
    """Whether another acceptor's cross-shard move waits on ``key``: a
    dict look-up: every write off the inline path asks, for each key it
    writes, while any cross-shard wait exists (it used to scan every other
    acceptor's movers: with 10,000 of them, ~0.26 ms a key)."""
    return key in _REMOTE_KEYS


def forget_movers(origin: int) -> None:
    """Acceptor ``origin`` (re)started: its waits are gone (its pops' too)."""
    for held in [held for held in _REMOTE_MOVERS if held[0] == origin]:
        n = _REMOTE_MOVERS.pop(held)
        _less_remote(held[1], n)
        for _ in range(n):
            _less_eager(held[1])
    for held in [held for held in _REMOTE_POPS if held[0] == origin]:
        _less_pops(held[1], _REMOTE_POPS.pop(held))


def bus_movers_now(server: Acceptor, origin: int, args: list) -> int:
    """Acceptor ``origin`` restarted: tell every other acceptor the keys
    this one's moves wait on now (``MOVERS [0, key, n, ...]``), and its
    pops (``POPPERS [0, ...]``), as its ``MOVERS`` and ``POPPERS`` told
    them one by one, ahead of the answer (1) and of those that follow."""
    moves: dict[bytes, int] = {}
    pops: dict[bytes, int] = {}
    waits = dict.fromkeys([*EAGER, *(wait for wait in WAITING.values() if type(wait) is _CrossShard)])
    for wait in waits:
        for counts, counted in ((moves, wait.claiming and wait in EAGER), (pops, wait.popping)):
            if counted:
                for waited in wait.wait_keys.values():
                    for key in waited:
                        counts[key] = counts.get(key, 0) + 1
    for kind, counts in ((bus.MOVERS, moves), (bus.POPPERS, pops)):
        told: list = [0]
        for key, n in counts.items():
            told += (key, n)
        server.bus.tell(kind, told)  # type: ignore[union-attr]
    return 1


async def learn_movers(server: Acceptor) -> None:
    """A restarted acceptor, before it listens: the keys the other
    acceptors' cross-shard moves wait on (it used to learn them only as
    their clients blocked again, so a push through it to such a source
    did not wait for the move: its client's next command, on the
    destination, could come first); and those their cross-shard pops
    wait on.  Each tells all of its own (``MOVERS [0, ...]``, ``POPPERS
    [0, ...]``, through the supervisor, in order with those it tells
    after), then answers."""
    done = server.loop.create_future()  # type: ignore[union-attr]
    server.bus.ask(bus.MOVERS_NOW, [], done.set_result)  # type: ignore[union-attr]
    await done


# A client's blocked_token while its write waits for the tries of the
# cross-shard moves it may serve (see try_at_once).
MOVES_FIRST = -18


def try_at_once(client: Client, cmd: Command, keys: list[bytes], at: int) -> None:
    """``cmd`` of ``client``, writing ``keys``, was just sent (its replies
    from ``client.pending[at]`` on): the cross-shard BLMOVE and BRPOPLPUSH
    waits of this acceptor on any of them (their source) try at once,
    behind it (:meth:`_CrossShard.serve_now`), in the order they blocked,
    as Redis serves a list's blocked clients when the command that pushed
    ends.  One whose try is still on its way (a push before this one made
    it try, and that try may find nothing) tries once that try is
    answered, and so does every one behind it on that key, in order;
    meanwhile ``client``'s reply and later commands wait
    (:data:`MOVES_FIRST`), so that it, and whoever reads its reply, sees
    the element moved, as in Redis (``RPUSH A a``, ``RPUSH A b``, ``LRANGE
    B 0 -1`` pipelined, two clients in ``BLMOVE A B``: ``[a, b]``; it used
    to be ``[a]``, the second try coming after the LRANGE).  Not those
    behind another cross-shard wait on that key (a BLPOP): its
    notification, on its way, comes first, and its try takes the element
    (so they try after their own notifications).  And its cross-shard
    XREADs on them, on the first such key (not after a transaction or
    script: see :data:`RANKED`); not an XREADGROUP, which would take
    entries that a waiter on that shard alone, blocked before it, is
    served first: a write of its stream waits for its notified try as a
    write of another acceptor's move's source does (``__bsettle``), its
    ``__bwait`` claiming one entry.  A transaction or script (``cmd`` in
    :data:`RANKED`) waits so for the tries of the cross-shard pops of any
    acceptor on the keys it writes (:data:`POP_KEYS`): it notifies them
    (a cross-shard operation's ready key does), and Redis serves them right
    after it (``MULTI``, ``RPUSH A x``, ``RPUSH B y``, ``EXEC``, ``LLEN A``
    pipelined, a client in ``BLPOP B A 0``: the client gets ``x``, LLEN 0;
    it used to be 1, the try coming after the LLEN); a plain write of
    such a key waits so for its in-place pop's verdict (issue 22)."""
    xreads = cmd.name not in NO_ENTRY_WRITES
    signals, signaled = cmd.name in SIGNALS, keys[1:] if cmd.name in SIGNALS_DESTINATION else None
    _try_written(client, keys, at, cmd.name not in RANKED, xreads=xreads, signals=signals, signaled=signaled)


# Stream writes that add no entry: Redis serves no XREAD after one, but
# after an XGROUP DESTROY (it signals the key ready: a read whose ID the
# stream's last ID is past gets an empty array), which the read's
# notification alone brings (a try reads the entries there, not the
# signal): its cross-shard XREADs wait on their notifications, their
# ``__bwait``s kept (an eager try cancelled them, and a DESTROY that came
# before the new ones went unseen).
NO_ENTRY_WRITES = frozenset({"xgroup", "xsetid", "xdel", "xack", "xtrim", "xclaim", "xautoclaim"})

# Writes that signal a stream key ready in Redis (an XADD; dbAdd's new
# key): an XREAD's eager try after one reads as a notified one
# (``__xreadupto``, bound by no ID), served once the stream's last ID is
# past its own, the entries past it there or not (an empty array for a
# stream whose last ID an XSETID moved, renamed onto the key), not only
# by an entry there.
SIGNALS = frozenset({"xadd", "rename", "renamenx", "copy", "move", "restore"})
# Of those, the ones that signal their destination alone, not the source
# they delete or read: an XREAD's eager try on the source would read
# nothing, and, its try under way, the destination's could not start.
SIGNALS_DESTINATION = frozenset({"rename", "renamenx", "copy"})
# (no ID is past it: a try's bound that bounds nothing)
_NO_BOUND = b"18446744073709551615-18446744073709551615"


def script_ran_across(client: Client, slot: object, keys: list, everything: int, shards: list[int]) -> None:
    """A script of ``client`` (its reply ``slot``) was just sent across
    shards (a run again after it escaped, or its first run with the keys
    its earlier runs escaped to): behind it, the waits on the keys it may
    write that its declared keys did not name (``keys``: those, a tuple
    for a key of another database, left out: its ``__bsettle`` would ask
    the script's) try, or are waited for, as :func:`try_at_once` has them
    for a script's declared keys, so that its reply and its client's later
    commands see the pop or move done, as in Redis, which serves them
    right after the script (``EVAL "redis.call('rpush', ARGV[1], 'x')" 1
    {B}w A``, ``LLEN A`` pipelined, a client in ``BLPOP B A 0``: the
    client gets ``x``, LLEN 0; it was 1).  ``everything``: the run parks
    every shard, its keys unknown: every key of a cross-shard pop or of
    another acceptor's move is settled (a ``__bsettle`` on a key no
    notified try claims answers at once), not this acceptor's moves'
    (their tries are notified, as before).  ``shards``: those the run
    parked: a keyless ``__bsettle`` behind it on each waits for every
    claim there (see :func:`settle_script`: a key it wrote that none of
    its runs named, of its own database or of another one after a SELECT
    in it).  Nothing while no such wait exists."""
    if not (EAGER_KEYS or POP_KEYS):
        return
    if everything:
        keys, only_settle = list(dict.fromkeys([*POP_KEYS, *_REMOTE_KEYS, *_GROUP_READS])), True
    else:
        keys = [key for key in keys if type(key) is bytes]
        only_settle = False
    pending = client.pending
    at = next((i for i, queued in enumerate(pending) if queued is slot), len(pending))
    _try_written(client, keys, at, False, only_settle, stack=True, shards=shards)


def settle_script(client: Client, slot: object, shard: int, alone: bool = False) -> None:
    """A script of ``client`` that may write (not ``_RO``) was just sent to
    ``shard`` alone, its reply ``slot``, while a cross-shard wait exists:
    a keyless ``__bsettle`` goes right behind it, which the shard answers
    once every claim left after the script has ended (the tries of the
    waits that its writes notified have run), and the script's reply and
    the client's later commands wait for it, as for one more script on
    its way (``ClientState.scripts_sent``), so that they see the pop or
    move done, as in Redis, which serves the blocked clients right after
    the script.  Dispatch looks up only the keys the script declares
    (:func:`try_at_once`); this covers those it writes undeclared on its
    own shard and those of another database after a SELECT in it
    (``EVAL "redis.call('rpush', ARGV[1], 'x')" 1 {A}w A``, ``LRANGE B 0
    -1`` pipelined, a client in ``BLMOVE A B``: ``[x]``, it was ``[]``;
    issue 22).  No wait claims, or the script's writes notified none: it
    answers at once, in the script's batch, with no round trip more.  The
    client waits for its scripts already (``SCRIPTS``; else for something
    else, which holds its commands: nothing then).  The shard waits only
    for the claims the scripts of this pipe since the last one made
    (shardkv.worker.blocking.bsettle): ``alone``, sent to it alone, not
    parked: if they noted none, they made none (``__bsettlealone``)."""
    if client.closing or client.state.blocked_token != SCRIPTS:
        return
    link = client.server.links[shard]
    if not link.up:
        return
    hold = Slot(client)
    pending = client.pending
    at = len(pending)
    for i in range(len(pending) - 1, -1, -1):
        if pending[i] is slot:
            at = i
            break
    pending.insert(at, hold)  # the script's reply waits too
    client.state.scripts_sent(1)

    def answered(_: object) -> None:
        hold.deliver(b"")
        state = client.state
        if state.script_answered():
            if client.waiting():
                client.server.loop.call_soon(client.resume)  # type: ignore[union-attr]
            elif client.pending and not client.closed:
                client.flush()

    settle = _Settled(link, answered)
    link.blocked[settle.token] = settle
    link.send(wire.entry_header(0, settle.token, client.db), _SETTLE_ALONE if alone else _SETTLE_ALL, settle)
    settle.bound_once_waiting(client.server)


_SETTLE_ALL = encode_command([Verb.BSETTLE])
_SETTLE_ALONE = encode_command([Verb.BSETTLE_ALONE])


def _try_written(
    client: Client,
    keys: list[bytes],
    at: int,
    reads: bool,
    only_settle: bool = False,
    stack: bool = False,
    shards: list[int] | None = None,
    xreads: bool = True,
    signals: bool = False,
    signaled: list[bytes] | None = None,
) -> None:
    """(See :func:`try_at_once`; ``reads``: not a transaction's or
    script's; ``xreads``: its XREADs try too (see :data:`NO_ENTRY_WRITES`),
    as notified ones if ``signals`` (see :data:`SIGNALS`), on the keys
    ``signaled`` alone if given (see :data:`SIGNALS_DESTINATION`);
    ``only_settle``: no wait of this acceptor's tries now;
    ``stack``: see :func:`_after_tries`; ``shards``: a keyless
    ``__bsettle`` on each, see :func:`settle_script`.)"""
    late: list[tuple[_CrossShard, bytes]] = []
    remote = [key for key in dict.fromkeys(keys) if key in _GROUP_READS or _moved_elsewhere(key)]
    # A transaction's or script's key of a cross-shard pop: it notifies
    # the pop, whose try it waits for too (see POP_KEYS).
    settle: list = remote  # (keys; and shards, see shards)
    if POP_KEYS:
        settle = remote + [key for key in dict.fromkeys(keys) if key in POP_KEYS and key not in remote]
    if shards:
        settle = [*settle, *shards]
    for key in () if only_settle else dict.fromkeys(keys):
        waits = _BY_KEY.get(key)
        # (A transaction's or script's key of a cross-shard pop: its moves
        # try on their notifications, after the pops before them.)
        if waits is not None and key not in remote and (reads or key not in POP_KEYS):
            behind = False
            for wait in list(waits):
                if not wait.move:
                    break
                if behind or wait.busy():
                    behind = True
                    late.append((wait, key))
                else:
                    wait.serve_now(key)
        if reads and xreads and (signaled is None or key in signaled):
            for wait in list(_READS.get(key, ())):
                wait.serve_now(key, signals)
    if late or settle:
        _after_tries(client, late, settle, at, stack)


# The clients whose replies and later commands wait for tries
# (MOVES_FIRST) of several _after_tries (one stacked on another, see
# its ``stack``), with how many each still waits for.
_SETTLING: dict[Client, int] = {}


# How long a __bsettle is waited for at most: the claims it waits for are
# other acceptors' clients', and an acceptor stopped (not dead: a dead
# one's claims end) must not hold up the others' writers for ever.
SETTLE_WAIT_S = 1.0


class _Settled:
    """The sink of a ``__bsettle``: its 1 (at once, or in a ``W`` frame),
    the error of a shard gone, or :data:`SETTLE_WAIT_S` passing calls
    ``then``, once."""

    __slots__ = ("link", "token", "then", "timer", "server")

    def __init__(self, link: ShardLink, then: Callable[[object], None]) -> None:
        self.link = link
        self.token = next(_tokens)
        self.then: Callable[[object], None] | None = then
        self.timer: object = None
        self.server: Acceptor | None = None

    def bound(self, server: Acceptor) -> None:
        """Call ``then`` after :data:`SETTLE_WAIT_S` at the latest."""
        self.timer = server.loop.call_later(SETTLE_WAIT_S, self.answered)  # type: ignore[union-attr]

    def bound_once_waiting(self, server: Acceptor) -> None:
        """The same, from the shard's answer that it waits (no timer for
        one it answers at once, the usual case: a timer made and cancelled
        was most of the price of a script's keyless ``__bsettle``).  For a
        ``__bsettle`` right behind a write of the same client, in its
        pipe: the shard answers it right after the write, whose own reply
        comes no sooner (or the link's loss answers both)."""
        self.server = server

    def deliver(self, body: bytes) -> None:
        if body:  # (empty: it waits, its W frame comes later)
            self.answered()
        elif self.server is not None and self.then is not None and self.timer is None:
            self.bound(self.server)

    def answered(self) -> None:
        self.link.blocked.pop(self.token, None)
        then, self.then = self.then, None
        if self.timer is not None:
            self.timer.cancel()  # type: ignore[attr-defined]
            self.timer = None
        if then is not None:
            then(self)


def _after_tries(
    client: Client, late: list[tuple[_CrossShard, bytes]], remote: list, at: int, stack: bool = False
) -> None:
    """Have the waits of ``late`` try at once (each on its key), in order,
    once every try of theirs on its way is answered, and wait for the
    tries of other acceptors' cross-shard moves on the keys ``remote``
    (``__bsettle``, sent now, behind the write; a shard's number there: a
    keyless one, see :func:`settle_script`); ``client``'s replies from
    ``at`` on, and its later commands, wait until then (see
    :func:`try_at_once`).  A client that waits for something else already
    (an EXEC deciding) does not: those waits try on their notifications,
    as before.  One that waits for a script's reply (the script just sent,
    which writes a key of a cross-shard pop) waits for both; with
    ``stack`` (a script's run again, across shards, see
    :func:`script_ran_across`), one that waits for such tries already (its
    declared keys') waits for all (:data:`_SETTLING`)."""
    state = client.state
    token = state.blocked_token
    if (token and token != SCRIPTS and not (stack and token == MOVES_FIRST)) or client.closing:
        for wait, key in late:  # (none waits: those not trying try now)
            if not wait.busy():
                wait.serve_now(key)
        return
    server = client.server
    hold = Slot(client)
    pending = client.pending
    pending.insert(min(at, len(pending)), hold)  # the write's reply waits too
    if stack and token == MOVES_FIRST:  # (the wait it joins counts as one)
        _SETTLING[client] = _SETTLING.get(client, 1) + 1
    else:
        state.block(MOVES_FIRST, shown=False)
    busy: dict[object, None] = {wait: None for wait, _ in late if wait.busy()}
    links = server.links
    shard_of = server.shard_of
    settles: list[tuple[_Settled, bytes]] = []

    def tried(done: object) -> None:
        if done not in busy:
            return  # (said already)
        del busy[done]
        if busy:
            return
        for wait, key in late:
            if not wait.busy():  # (one trying on a notification tries already)
                wait.serve_now(key)
        hold.deliver(b"")
        left = _SETTLING.pop(client, 0)
        if left > 1:  # (another stacked on it, see stack)
            _SETTLING[client] = left - 1
            return
        if not state.settled(MOVES_FIRST) or (client.closed and client not in server.leaving):
            return
        if client.waiting():
            server.loop.call_soon(client.resume)  # type: ignore[union-attr]
        elif client.pending:
            client.flush()

    for key in remote:
        link = links[key if type(key) is int else shard_of(key)]
        if link.up:
            settle = _Settled(link, tried)
            settles.append((settle, key))
            busy[settle] = None
    for wait, _ in late:
        if wait in busy:
            wait.after_try.append(functools.partial(tried, wait))
    for settle, key in settles:
        settle.link.blocked[settle.token] = settle
        command = _SETTLE_ALL if type(key) is int else encode_command([Verb.BSETTLE, key])
        settle.link.send(wire.entry_header(0, settle.token, client.db), command, settle)
        if type(key) is int:  # (behind the script's run, see settle_script)
            settle.bound_once_waiting(server)
        else:
            settle.bound(server)
    if not busy:
        busy[None] = None
        tried(None)


def written_keys(cmd: Command, args: list[bytes], multi: list | None) -> list[bytes]:
    """The keys that ``cmd`` names and may push to (an EXEC's: those of the
    writes it queued): a write's or a script's, not a blocking command's
    (it pushes to a list only when served, and then serves the waiters
    itself).  Only those try the waits on them: a try that finds nothing
    leaves its wait with no ``__bwait`` until the new one is there, and a
    waiter on its shard behind it could take an element meanwhile."""
    if cmd.name == "exec" and multi:
        return [key for queued, queued_args in multi for key in written_keys(queued, queued_args, None)]
    flags = cmd.flags
    if "blocking" in flags or ("write" not in flags and "may_replicate" not in flags):
        return []
    return cmd.keys(args)


def _stream_options(args: list[bytes]) -> tuple[bytes | None, bytes]:
    """XREAD/XREADGROUP's BLOCK (as seconds for ``__bwait``, None without
    it) and group name (empty for XREAD), read before STREAMS."""
    timeout = None
    group = b""
    for i in range(1, len(args) - 1):
        word = args[i].lower()
        if word == b"streams":
            break
        if word == b"block":
            ms = int(args[i + 1]) if args[i + 1].isdigit() else 0
            timeout = b"%d.%03d" % divmod(ms, 1000)
        elif word == b"group" and i + 2 < len(args):
            group = args[i + 1]
    return timeout, group


def unblock(client: Client, error: bool, answer: Answer, after: int = -1, pin: Pin | None = None) -> None:
    """CLIENT UNBLOCK: ``answer(1)`` once the blocked command of ``client``
    is answered as if it timed out, or with ``-UNBLOCKED``; ``answer(0)``
    when ``client`` is not blocked on keys, or not yet (its shards have not
    run the command: in Redis's order the command comes after the CLIENT
    UNBLOCK, so it runs, and may block, as if nothing happened), or when a
    write that came before the CLIENT UNBLOCK served it (Redis serves a
    blocked client right after the command that wrote its key).  But a
    cross-shard wait this acceptor has read, its first try or its
    ``__bwait``s still on their way (not shown blocked yet), is decided by
    that try, or asked as a shown one is (outside EXEC): this acceptor read
    the command first, and a client that saw its effects (``SET f 1``,
    ``BLPOP a b 0`` in one read, then ``GET f`` and CLIENT UNBLOCK through
    either acceptor) saw it blocked in Redis, which answers 1; it answered
    0, and the client waited on.

    The shards decide, in their order, so an element popped for the client
    is always delivered: a one-shard wait asks its shard (``__unblock``),
    a cross-shard one tries once more (:meth:`_CrossShard.unblock`).
    ``answer`` may be called before this returns.  ``after``: -1 outside
    EXEC; inside, what a one-shard wait's ``__unblock`` waits for on its
    shard (see :attr:`shardkv.acceptor.state.ClientState.unblock_after`).
    ``pin``: an EXEC's CLIENT UNBLOCK run ahead of its commands, which
    holds a cross-shard wait it unblocks until the EXEC is decided (see
    :class:`Pin`).
    """
    state = client.state
    token = state.blocked_token
    wait = WAITING.get(token) if token > 0 else None
    if (
        wait is None
        or wait.done
        or not (state.blocked or (type(wait) is _CrossShard and after < 0 and pin is None))
    ):
        answer(0)
        return
    # A script is busy: Redis refuses CLIENT UNBLOCK (no allow-busy flag).
    if BUSY_LINKS and (busy := busy_refusal()):
        answer(busy)
        return
    ASKED[token] = ASKED.get(token, 0) + 1

    def answered(value: int | bytes) -> None:
        left = ASKED.pop(token, 1) - 1
        if left:
            ASKED[token] = left
        answer(value)
        if client.closed:  # gone meanwhile: if it still waits, as Redis frees a blocked client
            client.server.loop.call_soon(_left_blocked, client, token)  # type: ignore[union-attr]

    wait.unblock(error, answered, after, pin)


def _left_blocked(client: Client, token: int) -> None:
    """A CLIENT UNBLOCK of the wait ``token`` of a client that has gone did
    not unblock it (refused, or an EXEC's that did not run): the client is
    forgotten, its wait cancelled, with what it sent after it."""
    if client.state.blocked_token == token and token not in ASKED:
        client.server.client_left(client)


def waiting_shard(client: Client) -> int | None:
    """The shard of ``client``'s wait, if it waits on one shard (None: not
    blocked, or across shards)."""
    token = client.state.blocked_token
    wait = WAITING.get(token) if token > 0 else None
    return wait.link.index if type(wait) is _OneShard and not wait.done else None


def located(client: Client) -> list[int] | None:
    """``[pipe, shard, token]``: where ``client`` waits, if blocked (as
    Redis shows it) on one shard; ``pipe`` is this acceptor's there."""
    shard = waiting_shard(client) if client.state.blocked else None
    if shard is None:
        return None
    return [client.server.links[shard].pipe_index, shard, client.state.blocked_token]


def unblock_located(client: Client, where: list[int], error: bool, answer: Answer) -> None:
    """CLIENT UNBLOCK, inside ``client``'s EXEC, of another acceptor's
    client that waits on one shard (``where``, see :func:`located`): its
    ``__unblock`` goes on this acceptor's pipe, in the transaction's place
    (``after``, see :attr:`ClientState.unblock_after`); if it still waited,
    the worker sends its null or ``-UNBLOCKED`` to that acceptor's pipe
    itself, as a timeout's."""
    # A script is busy: Redis refuses CLIENT UNBLOCK (no allow-busy flag).
    if BUSY_LINKS and (busy := busy_refusal()):
        answer(busy)
        return
    pipe, shard, token = where
    link = client.server.links[shard]
    link.unblocks_sent += 1
    seq = link.unblocks_sent
    after = max(client.state.unblock_after, 0)
    numbers = (token, link.busy_scripts, seq, after, pipe, int(error))
    command = encode_command([Verb.UNBLOCK, *(b"%d" % n for n in numbers)])
    link.send_control(command, _Unblocking(None, error, answer, seq), in_step=True)


_pin_ids = itertools.count(1)


class Pin:
    """An EXEC's hold on the cross-shard waits its CLIENT UNBLOCKs unblock.

    Redis serves the clients a transaction's writes woke only after EXEC,
    so a CLIENT UNBLOCK inside it finds its client still blocked, and that
    client gets its null (or ``-UNBLOCKED``) after the EXEC, and only if
    the EXEC ran (a watched key may have changed).  A cross-shard wait is
    decided by a try, the only thing that pops, which must come before the
    transaction's writes (or it would pop them): the EXEC runs those
    UNBLOCKs ahead of its commands, under WATCH too, each with the EXEC's
    pin.  A try that finds nothing then answers the UNBLOCK 1 and *pins*
    the wait instead of answering its client: it waits for no key and
    tries nothing until the EXEC is decided (:meth:`release`).  If the EXEC
    ran, the client gets its null or ``-UNBLOCKED`` once the transaction's
    writes are applied, so what it (or anyone it tells) reads next sees
    them, with several acceptors too; if it did not, the wait goes on as
    if those UNBLOCKs never were.  Another acceptor's client is pinned by
    that acceptor, under the EXEC's acceptor and pin id
    (:data:`REMOTE_PINS`, from the bus's ``unblock``), and released by the
    EXEC's acceptor's ``unpin``; if that acceptor restarted first (its
    ``hello``), the wait goes on."""

    __slots__ = ("id", "waits", "remote", "ran")

    def __init__(self, id_: int = 0) -> None:
        self.id = id_ or next(_pin_ids)
        self.waits: list[_CrossShard] = []
        self.remote = False  # it was sent to other acceptors: unpin tells them
        # Once released: whether the EXEC ran.  A try still on its way then
        # answers its client at once (see :meth:`_CrossShard.attempted`).
        self.ran: bool | None = None

    def release(self, server: Acceptor, ran: bool) -> None:
        """The EXEC is decided (``ran``: it ran) and its writes applied."""
        self.ran = ran
        waits, self.waits = self.waits, []
        for wait in waits:
            wait.unpinned(self, ran)
        if self.remote and server.bus is not None:
            self.remote = False
            server.bus.tell(bus.UNPIN, [self.id, int(ran)])


# The pins of other acceptors' EXECs, by (acceptor, pin id).
REMOTE_PINS: dict[tuple[int, int], Pin] = {}


def remote_pin(origin: int, pin_id: int) -> Pin:
    """The pin of acceptor ``origin``'s EXEC ``pin_id`` (bus ``unblock``)."""
    pin = REMOTE_PINS.get((origin, pin_id))
    if pin is None:
        pin = REMOTE_PINS[origin, pin_id] = Pin(pin_id)
    return pin


def unpin(server: Acceptor, origin: int, pin_id: int, ran: bool) -> None:
    """Acceptor ``origin``'s EXEC ``pin_id`` is decided (bus ``unpin``)."""
    pin = REMOTE_PINS.pop((origin, pin_id), None)
    if pin is not None:
        pin.release(server, ran)


def unpin_all(server: Acceptor, origin: int) -> None:
    """Acceptor ``origin`` (re)started: its EXECs will never say how they
    ended, so the waits they pinned go on."""
    for key in [key for key in REMOTE_PINS if key[0] == origin]:
        REMOTE_PINS.pop(key).release(server, False)


UNBLOCKING = -4  # a client's blocked_token while its CLIENT UNBLOCK waits for the decision


class UnblockReply(Slot):
    """CLIENT UNBLOCK's place in its client's reply order, filled once the
    shards decided (:meth:`answer`).  Meanwhile the client's later commands
    wait (:data:`UNBLOCKING`, never shown as blocked), as Redis runs them
    after the CLIENT UNBLOCK: a write of theirs cannot reach the blocked
    client's shard before the CLIENT UNBLOCK does (with several acceptors,
    the question goes through the bus and the blocked client's acceptor)."""

    __slots__ = ("holding", "then", "args", "start", "ns")

    def __init__(self, client: Client, args: list[bytes] | None = None) -> None:
        super().__init__(client)
        client.pending.append(self)
        self.holding = not client.state.blocked_token  # not inside an EXEC that waits
        if self.holding:
            client.state.block(UNBLOCKING, shown=False)
        # Called once decided (an EXEC whose other commands wait for it).
        self.then: Callable[[], None] | None = None
        # A CLIENT UNBLOCK outside EXEC (``args``, as the client sent it) is
        # counted once decided, as Redis counts it when it reads it: a call,
        # or a rejected call and a ``BUSY`` error when a busy script refuses
        # it (``Acceptor.calls_deferred``).  Its time is its own run's
        # (:meth:`ran`), not its wait for the shards' scripts: Redis reads it
        # once the script ended and runs it at once (timed to the decision,
        # one sent while a script ran had a slow log entry Redis has not).
        self.args = None if client.state.in_exec else args
        self.ns: int | None = None
        if self.args is not None:
            client.server.calls_deferred += 1
            self.start = perf_counter_ns()

    def ran(self) -> None:
        """CLIENT UNBLOCK's own run is over (it asked the shards): its time,
        unless already decided (then timed as it was)."""
        if self.args is not None:
            self.ns = perf_counter_ns() - self.start

    def answer(self, unblocked: int | bytes) -> None:
        if isinstance(unblocked, bytes):  # a busy script's -BUSY
            args, self.args = self.args, None
            if args is not None:  # refused, as Redis's processCommand does
                message = unblocked.decode("latin-1")[1:].strip()
                self.client.server.stats.rejected(stat_name(args), message)
            self.deliver(unblocked)
        else:
            self.deliver(b":%d\r\n" % unblocked)

    def deliver(self, body: bytes) -> None:
        args = self.args
        if args is not None:  # decided: a call (it ran, or failed)
            self.args = None
            client = self.client
            stats = client.server.stats
            ns = self.ns if self.ns is not None else perf_counter_ns() - self.start
            name = stat_name(args)
            if body[:1] == b"-":  # (a shard that failed)
                stats.failed(name, body[1:].split(b"\r\n", 1)[0].decode("latin-1"))
            stats.record_latency(stats._row(name), ns)
            stats.slow(args, ns // 1000, client.addr, client.name)
        super().deliver(body)
        if self.holding:
            self.holding = False
            _unblocked(self.client, UNBLOCKING)
        then, self.then = self.then, None
        if then is not None:
            then()


class _Ran:
    """The sink of the ``__ping`` of :func:`after_earlier_commands`."""

    __slots__ = ("left", "then")

    def __init__(self, left: int, then: Callable[[], None]) -> None:
        self.left = left
        self.then = then

    def deliver(self, body: bytes) -> None:
        self.left -= 1
        if self.left == 0:
            self.then()


def after_earlier_commands(client: Client, then: Callable[[], None]) -> None:
    """Call ``then`` once the shards ran ``client``'s commands still on
    their way (a ``__ping`` behind them on each pipe that has one; at once
    when none).  With several acceptors, the CLIENT UNBLOCK of another
    acceptor's client goes through the bus and that acceptor's pipes, and
    could reach a shard before the write its client sent just before it
    (``LPUSH k x`` + ``CLIENT UNBLOCK``).  Only those pipes: a shard busy
    with something else must not delay the UNBLOCK past its target's
    command (which then would run first)."""
    links = [
        link
        for link in client.server.links
        if link.up and any(origin_of(sink)[0] is client for sink in link.fifo)
    ]
    if not links:
        then()
        return
    ran = _Ran(len(links), then)
    command = encode_command([Verb.PING])
    for link in links:
        link.send_control(command, ran)


def after_this_step(server: Acceptor, then: Callable[[], None]) -> None:
    """Call ``then`` once every shard has run what this step of the
    acceptor's order sent it (a ``__ping`` that leaves with the step, in
    its place, on every pipe that is up; with several acceptors a step may
    wait for its holds, so the pipes' queues say nothing yet)."""
    links = [link for link in server.links if link.up]
    if not links:
        then()
        return
    ran = _Ran(len(links), then)
    for link in links:
        link.send_control(_PING, ran, in_step=True)


def _unblocked_body(client: Client, error: bool, args: list[bytes] | None = None, ns: int = 0) -> bytes:
    """The reply of a command CLIENT UNBLOCK unblocked, counted as Redis
    counts it (Stats.unblocked_by_client; ``args``: the command, which ran
    for ``ns`` before it blocked, None when its shard counts it, a
    one-shard wait's)."""
    client.server.stats.unblocked_by_client(args, ns, error, client.addr, client.name)
    return encode_error(errors.UNBLOCKED) if error else encode(NULL_ARRAY, client.resp3)


def lost_unwritten(client: Client) -> None:
    """``client``'s connection is lost, its replies not yet written
    dropped: if one of them is what its last cross-shard pop took (behind a
    reply not ready yet, such as a step's gate), that goes back to its key,
    as what a shard popped for a client gone does, not lost."""
    served = _UNWRITTEN.pop(client, None)
    if served is not None and served[0].slot in client.pending:
        served[0]._push_back(served[1])


def on_disconnect(client: Client) -> None:
    _UNWRITTEN.pop(client, None)
    client.state.take_held()  # they will never run
    wait = WAITING.pop(client.state.blocked_token, None) if client.state.blocked_token else None
    if wait is not None:
        wait.cancel()
