"""The message format on the pipes between the acceptor and the workers.

Each pipe is a ``multiprocessing.Pipe()``: a Unix socket pair carrying
frames of a 4-byte big-endian length and a payload (``Connection``'s own
framing, so a worker can call ``recv_bytes``/``send_bytes``).  The first
byte of a payload says what it is.  Nothing on a pipe is pickled; the only
other codec is :mod:`marshal`, and only for values the sending process built
itself from plain ``bytes``/``int``/``list``/``tuple``/``dict``.

With several acceptors (``--acceptors K``) each worker has one pipe to
each, all carrying the frames below; what goes on which pipe is said
where it matters (``W``, ``E``, ``D``, ``S``, ``InDoubt``, ``__hold``).

Acceptor -> worker
------------------
``B`` *batch*: every command bound for this shard during one turn of the
    acceptor's event loop: ``*<2n>\\r\\n``, a RESP array header that
    counts the 2 items of each of its n entries, then the entries, each one
    a RESP integer header ``:<h>\\r\\n`` then the command as a RESP array
    of bulk strings, usually the very bytes the client sent.  (So the
    worker reads the whole payload as one array, with one call of hiredis,
    whatever the arguments hold: see :func:`decode_batch`.)  ``h & 0x1FF`` holds
    the FLAG_* bits below; ``(h >> 9) & 0xFFFF`` is the client's database
    (SELECT), 0 for most; ``h >> 25`` is a token that names a blocking
    command, 0 otherwise (see :mod:`shardkv.worker.blocking`).  Only an
    entry with a token may block; the same command without one replies
    as it would inside MULTI.  An entry with a token and
    :data:`FLAG_STAMP` carries one more argument after the command's own,
    its *stamp*: the ``time.monotonic_ns()`` (CLOCK_MONOTONIC, one clock
    for every process of the machine) at which its acceptor ran the
    command, in decimal (:func:`stamped_command`); the worker takes it off
    (:func:`take_stamp`) and orders each key's waiters by it, so that
    clients blocked through different acceptors are served in the order
    they blocked, whichever pipe brought its frame first (see
    :mod:`shardkv.worker.blocking`).  So the header of a plain command in
    database 0 is ``:0`` or ``:1`` (RESP3), and anything above
    :data:`PLAIN_MAX` needs a closer look (:func:`header_db`,
    :func:`header_token`).  A *slotted* header, negative, is the header
    of a plain single-key command in database 0 (no flag but RESP3, no
    token) that also carries its key's slot, as the acceptor's hot path
    computed it to route the command: :data:`SLOTTED` + the slot, plus
    :data:`SLOTTED_RESP3` for RESP3 (:func:`slotted_header`), so from
    ``:-32768`` to ``:-1``; ``h & SLOT_MASK`` is the slot, and the worker
    stores and finds the key by it without computing it again.  Every
    header at most :data:`PLAIN_MAX` is a plain entry, slotted or not.
``X`` *cancel*: ``X<token>`` in ASCII.  The client blocked under that
    token went away; forget it (a token the worker no longer knows, one
    already answered, is ignored).  Tokens are each acceptor's own: this
    cancels the token of the pipe it came on.  (CLIENT UNBLOCK, which needs
    an answer, is an entry of a batch instead: :attr:`Verb.UNBLOCK`.)
``H`` *behind*: ``H<token>`` in ASCII (several acceptors only): the
    client blocked under that token on this pipe has commands behind its
    blocking command; a write that serves it holds its batch's replies
    until they ran (:func:`encode_behind`; an unknown token is ignored).
``V`` *verdict*: ``V<token> <0|1>`` in ASCII: the answer to a
    ``BWAIT_SERVED`` wake of that token (see :data:`BWAIT_SERVED`), read
    by the shard that waits in place for it (:func:`encode_verdict`).
``C`` *control*: ``C`` + one control message (see below): a step of a
    cross-shard operation, or the answer to a worker's ``InDoubt``.
``A`` *answer*: ``A`` + a RESP reply body: the answer to the worker's
    ``Q`` frame (see below), written on the pipe the ``Q`` came on as soon
    as the acceptor reads it, outside any batch.
``I`` *inquiry*: ``I`` + marshal list of the args of an internal verb that
    only reads the shard's figures (``__info``, ``__lastsave``), outside
    any batch: the worker answers it with an ``I``
    frame as soon as it reads it, wherever it is (between batches, parked,
    waiting for an ``A``), before the frames it read earlier and has not
    run.  The acceptor asks so while a script waits for its answer to a
    ``Q`` frame that needs every shard's figures (INFO, LASTSAVE, MEMORY
    STATS): no shard can be parked or waiting past it.  With
    several acceptors, on every pipe: a shard held, parked or in a script
    for one acceptor still reads the others' pipes for their ``I`` frames,
    and answers each on the pipe it came on (their other frames wait, in
    order).  The answer acknowledges no write: it neither writes the AOF
    nor waits for it (a script's effects reach the AOF whole, after it
    ends, and an attempt rolled back never does), and it may pass replies
    the worker holds back until their writes are on disk.
``T`` *try hold* (several acceptors only): ``T`` alone.  ``__hold`` that
    never waits: the worker answers it with a ``T`` frame, ``T1`` if it
    made the shard exclusive to this pipe (as ``__hold`` does, until
    ``__release`` or until the pipe closes), ``T0`` if it did not.  It
    grants it only between batches, where it reads this pipe's frames
    anyway, and if the shard is free: held by nobody, and no other pipe
    has frames that wait for the shard (a ``__hold`` among them, maybe: a
    try never overtakes a waiting hold).  Wherever else it reads the
    ``T`` frame (the shard exclusive to another acceptor, or waiting
    parked, in doubt or in a script for its ``A`` frame, whichever
    acceptor it waits for) it answers ``T0`` at once, as it answers an
    ``I`` frame; so a try never waits for a hold.  The answers come in
    the order of the ``T`` frames on that pipe.  See
    :mod:`shardkv.acceptor.holds` for how a coordinator uses it.
``K`` *refusal candidates*: ``K`` + marshal (epoch, list of ints), the
    answer to the first busy report (``S``, busy true) of a script, one
    on every pipe that got it; ``epoch`` is the report's (which busy
    script of the worker it answers: a ``K`` frame that comes after the
    worker stopped waiting for it, at the script's end, is dropped,
    whenever it is read).  The entries the acceptor had sent to the worker
    and not had answered when it read the report (on the script's pipe,
    those after the script's entry) were sent before it knew: Redis
    reads such a command at busy-reply-threshold and answers it
    ``-BUSY``.  The list names, by their place among those entries (0:
    the first after the script's, or the first the worker has not run
    on another pipe), the ones that are a client's command standing
    alone (not a part of an EXEC, a fan-out or a cross-shard operation)
    of another client than the script's.  The worker refuses those of
    them Redis refuses while busy, and runs the rest after the script,
    as before (see :mod:`shardkv.worker.busyrefusal`).  Epochs
    :data:`BEHIND_TAIL_EVAL` and :data:`BEHIND_TAIL_FUNCTION` (several
    acceptors: another acceptor's cross-shard script went busy) number
    the places back from the frame (0: the last entry before it), and
    the worker answers them wherever it reads them (with no places where
    it ran them all).

Worker -> acceptor
------------------
``R`` *replies*: ``R``, a little-endian uint32 count N, N uint32 lengths,
    then N reply bodies.  They answer the next N entries this worker
    received, in order: the pipe is FIFO both ways, so no ids are needed.
    A body is RESP in the client's protocol, except for an entry sent with
    FLAG_PART (a marshal part value, see :func:`encode_part`) and for a
    blocking command that blocked (an empty body: its reply comes later in
    a ``W`` frame).
``P`` *piece*: ``P``, a byte that is 1 on the last piece and 0 before it,
    then a piece of one reply body.  A reply bigger than
    :data:`STREAM_MIN` (LRANGE of millions, SRANDMEMBER with a huge
    negative count, GET of a big value) leaves in pieces of
    :data:`STREAM_PIECE` bytes instead of inside an ``R`` frame: the ``R``
    frame of the replies before it goes first, then the pieces, which
    answer the next entry, then the rest of the batch's replies.  So no
    process ever copies the whole reply into a frame, and the acceptor
    writes each piece to the client as it comes.
``W`` *wake*: ``W`` + uint64 token + RESP body: the late reply to a
    command that blocked, served or timed out, on the pipe that command
    came on (whichever pipe brought the write that served it).  It always
    follows the ``R`` frame that carried the command's empty body.
``J`` *gated wake* (several acceptors only): ``J`` + marshal ``(W frame,
    waits)``: the ``W`` frame of a blocked command that a write served,
    whose batch's events also went to other pipes as ``O`` frames; its
    reply must not reach its client before each acceptor ``pipe`` of
    ``waits``, a list of ``(pipe, seq)``, has handed out this shard's
    ``O`` frame number ``seq``, as the ``G`` frame's gated replies (Redis
    writes the invalidations for the served client while it serves it:
    before its reply).
``C`` *control*: ``C`` + one control message: a parked worker's answer,
    or ``InDoubt``, the first frame a worker sends on every new pipe: on
    acceptor ``i``'s pipe it lists the operations in doubt whose
    coordinator is ``i`` (those of a coordinator ``>= K``: on pipe 0).

``S`` *script*: ``S`` + marshal ``(busy, pid, dirty, eval_mode, details...)``: a Lua
    script has run longer than ``busy-reply-threshold`` (busy true; sent
    again when it first writes), or the busy script is over (busy false,
    sent before the frame that carries its reply; it says when a kill
    stopped the script, if one did).  While a shard is busy the acceptor answers
    ``-BUSY`` for the commands it would send there, and SCRIPT KILL /
    FUNCTION KILL signal ``pid`` (SIGUSR1); the worker decides, in the
    script's count hook: it stops the script if it has not written (the
    end's report says killed), or it has written, and its report that says
    so came first.  Sent on every pipe.
``N`` *named entries*: ``N`` + marshal list of ``(ahead, id)``: commands
    that came on this pipe as a batch's entries ran past
    ``slowlog-log-slower-than``, and this worker logged them as the slow
    log's entries ``id`` (see :mod:`shardkv.runtime.slowlogfile`).
    ``ahead`` says which reply is the command's, as the ``S`` frame's
    caller does (``Shard.replies_ahead``): the acceptor finds its sink at
    that place in the link's queue, and writes that client's address and
    name (and how a script was called) for entry ``id`` (see
    :mod:`shardkv.acceptor.slowlog`).  One per batch's slow entries, sent
    when they are pushed, before the frame that carries their replies;
    only for commands that were logged.
``M`` *monitor*: ``M`` + marshal list of ``(database, args)``: the commands a
    script sent with FLAG_MONITOR called, in order, for MONITOR's ``[0 lua]``
    lines; sent before the frame that carries the script's reply, one for
    each such script (empty when it called nothing, or runs again across
    shards), so the acceptor matches them to its scripts in order.  The
    executor of a cross-shard operation sends one for the scripts it ran.
``L`` *ACL log*: ``L`` + marshal ``(caller, refusals)``: the calls a
    script sent with FLAG_ACL was refused (Redis's scriptVerifyACL logs
    each in ACL LOG, context ``lua``), each ``(reason, object)`` with
    ``acl.DENIED_*``'s reason and the command's full name, the key or the
    channel; ``caller`` is the first line of the entry's ACL argument
    (:func:`script_user`), as it came.  Sent before the frame that carries
    the script's reply, only when there are some, and never for a run
    that is undone to run again (an escape across shards).  The executor
    of a cross-shard operation sends one for the scripts it ran.
``Q`` *query*: ``Q`` + marshal ``(database, resp, args)``: a running script
    called a command the acceptor answers (PUBLISH, PUBSUB, COMMAND,
    INFO...).  The worker then reads its pipe until the ``A`` frame comes,
    keeping every other frame for later, as it does while parked: nothing
    else runs on the shard meanwhile, so the script stays atomic.  The
    acceptor answers from its event loop at once, without running any
    client's command, in the protocol ``resp`` (2 or 3, the script's
    ``redis.setresp``); ``database`` is the script's (SELECT).  Two verbs
    lend math.random's generator instead (:attr:`Verb.RANDOM`): its
    answer may wait until the script that holds the generator gives it back;
    three hold back what the calls of a script that may yet run again
    across shards leave behind (:attr:`Verb.HELD`).
``I`` *inquiry answer*: ``I`` + the verb's value as a part
    (:func:`encode_part`): the answer to the oldest ``I`` frame not yet
    answered on that pipe.
``T`` *try hold answer*: :data:`TRY_GRANTED` or :data:`TRY_REFUSED`, the
    answer to the oldest ``T`` frame not yet answered on that pipe.
``K`` *refused*: ``K`` + marshal (epoch, list of ints): which of the
    candidates of the pipe's ``K`` frame of that epoch (their places, as
    that frame numbered them) the worker refused, not run: the acceptor
    answers each ``-BUSY`` now, and drops the placeholder reply the
    worker sends for it in its turn.  Sent before the script's end is
    reported, or never (the acceptor's ``K`` frame came too late: the
    worker ran every entry; the acceptor forgets its candidates when it
    reads the end).
``U`` *script running*: :data:`RUNNING_FRAME` (``U1``) at a script's
    first count hook, before its busy-reply-threshold, and
    :data:`RAN_FRAME` (``U0``) when that script ends (before its reply,
    after its busy report's end if it went busy); on every pipe.
    While one is running, a command queued in MULTI waits for the shards'
    scripts as Redis, which reads nothing while a script runs, would
    (``transactions.queue``); a script too short to reach its first hook
    sends neither.  A pipe that closes ends it too.
``Z`` *stopped*: ``Z`` alone, the last frame on every pipe of a worker
    that ends at once for a SHUTDOWN NOSAVE while it runs a busy script:
    its pipes close next.  The server is stopping (the supervisor stops
    every acceptor next), so an acceptor closes the clients that wait on
    that shard, as Redis exits without answering them, instead of
    answering them ``-ERR shard unavailable`` as for a worker that died.
``D`` *disk*: ``D`` + the ``-MISCONF`` error text (UTF-8) this shard
    refuses writes with, or nothing once it can persist again; sent when
    that changes (and on a new pipe, if set), before any reply refused
    with it; on every pipe.  The acceptor then refuses PING, and writes queued in MULTI,
    as Redis's ``processCommand`` does.
``E`` *events*: ``E`` + marshal ``(bounds, events)``: keyspace events the
    shard noted (only while the acceptor wants some, see ``__events`` and
    :mod:`shardkv.worker.events`), each ``(db, key, class, event)`` in the
    order they happened.  ``bounds`` None: hand them out now (the sweeper's
    expirations, a cross-shard operation's before its ``Ran``).  Otherwise
    the frame comes just before an ``R`` frame, and ``bounds[i]`` is how
    many of the events come before that frame's reply ``i`` (the rest,
    after its last reply: blocked commands served after the batch).
    Each pipe gets the events its own ``__events`` mask selects: the pipe
    whose batch noted them as above (or as ``G``), every other one as an
    ``O`` frame, sent when the batch ends.  A command that spans shards
    gives its events to its own pipe only (see ``__events``).
``G`` *gated events* (several acceptors only): ``G`` + marshal ``(bounds,
    events, gated, waits)``: an ``E`` frame (``bounds``, ``events``) of a
    batch some of whose commands' events also went to other pipes (``O``):
    the replies whose indexes are in ``gated`` must not reach their clients
    before each acceptor ``pipe`` of ``waits``, a list of ``(pipe, seq)``,
    has handed out this shard's ``O`` frame number ``seq`` (see
    :mod:`shardkv.acceptor.causal`); a reply from the one whose write made
    a blocked command ready on is gated too when the events of serving it,
    after the batch, went to another pipe.  Sent instead of the ``E`` frame.
``O`` *other acceptors' events* (several acceptors only): ``O`` + marshal
    ``(seq, events)``: events of a command that came on another pipe (or
    of the sweeper) that this pipe's ``__events`` mask selects, to hand
    out at once; ``seq`` counts the ``O`` frames this worker sent on this
    pipe (1, 2, ...).  An empty one on the writer's own pipe, after the
    batch's ``R`` frame, marks the batch's events handed out there, for a
    ``J`` frame on another pipe that waits for it (``Shard.send_wakes``).

Control messages
----------------
Every message of the cross-shard commit protocol is one frozen dataclass
below, encoded by :func:`encode_control` and decoded by
:func:`decode_control` and nowhere else: a tag byte string, then the
fields in order, as one marshal tuple.  Each names its operation by
``op``, an integer unique to the acceptor that started it (see
:mod:`shardkv.acceptor.crossshard` for the protocol and its failure cases), so a
reply can never be taken for another operation's.

Two kinds of batch entries start an operation, both with ``FLAG_PARK``:
``__park <op> <nexport> key... watched...`` (answered with a
:class:`Parked` part) and ``__prepare <op> <command...>``, one shard's
part of a write fan-out (answered with a :class:`PartPrepared` part).
``__parkdb <op> <nexport> (db key)... (db key)...`` is ``__park`` with
each key's database: a key of another database than the entry's is named
``(db, key)`` in the states and versions that answer it, and in those a
:class:`Run` or :class:`Prepare` carries (``* *``: every key of the
entry's database; ``* **``: of every database).  ``__parkat <ms>``
before either is the same with the keys expired as of ``ms`` (see
:class:`Run`'s ``as_of``).

Internal verbs
--------------
Besides clients' commands, a batch carries the acceptor's own requests to
a shard: commands whose name starts with ``__`` (``__info``, ``__watch``,
``__bwait``...).  Every one is a constant of :class:`Verb`, the only place
that spells them; the command table does not hold them, so no client can
send one.

``__hold`` and ``__release`` (several acceptors only) make a shard
exclusive to one acceptor (so does a granted ``T`` frame, the ``__hold``
that never waits): after ``__hold`` (reply ``+OK``; an error if
that pipe already holds it) the worker runs only the frames of the pipe
it came on, whose later batches run as usual, until ``__release``
(``+OK``) or until that pipe closes; the other pipes' frames wait, in
order, but for their ``I`` frames, answered at once.  A shard
is exclusive in the same way to the coordinator it is parked, preparing
or prepared for, and stays so while that operation is in doubt after its
acceptor died, until the acceptor's new pipe resolves it.  A coordinator
holds every shard of a multi-shard command in ascending shard order, each
``+OK`` received before it sends the next ``__hold``, so that no two
coordinators deadlock (a ``T`` frame never waits, so tries may go to
every shard at once); single-shard commands never hold.
"""

from __future__ import annotations

import marshal
import signal
import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from operator import attrgetter
from typing import Any

from shardkv.protocol.resp import Error, encode_command

FLAG_RESP3 = 1  # encode the reply in RESP3
FLAG_PART = 2  # one shard's part of a command that spans shards
FLAG_PARK = 4  # stop here for a cross-shard operation (see crossshard)
FLAG_MONITOR = 8  # a script with MONITOR on: report the commands it calls (``M``)
FLAG_AS_EVAL = 16  # an EVAL[_RO] sent as EVALSHA[_RO] (the shard has its body): EVAL's counts
FLAG_AS_EVALSHA = 32  # an EVALSHA[_RO] sent as EVAL[_RO] (the shard lacks the body): EVALSHA's counts
FLAG_AS_CALLED = FLAG_AS_EVAL | FLAG_AS_EVALSHA  # a script's call counted as the client's command
FLAG_STAMP = 64  # a blocking entry's last argument is its stamp (see ``B`` above)
# A script's entry whose last argument is the client's ACL user
# (:func:`script_user`: who calls, then the rules of ``acl.User.wire``),
# which its redis.call obeys; a user that may run everything sends none.
FLAG_ACL = 128
# The entry of a client with CLIENT NO-TOUCH on: its lookups leave the keys'
# access clocks (see shardkv.worker.access.no_touch).
FLAG_NOTOUCH = 256

CONFIG_NUMBER = b"#"  # __config's mark of a number (see Verb.CONFIG)

BATCH = 66  # b"B"
CANCEL = 88  # b"X"
# acceptor -> worker, several acceptors only: the blocked command of this
# token (``H<token>``) has commands pipelined behind it (see encode_behind).
BEHIND = 72  # b"H"
CONTROL = 67  # b"C"
REPLIES = 82  # b"R"
WAKE = 87  # b"W"
GATED_WAKE = 74  # b"J"
SCRIPT = 83  # b"S"
MONITOR = 77  # b"M"
ACL_LOG = 76  # b"L"
SLOW_NAMES = 78  # b"N"
DISK = 68  # b"D"
PIECE = 80  # b"P"

STREAM_MIN = 1 << 22  # replies bigger than this leave in pieces (``P``)
STREAM_PIECE = 1 << 22
EVENTS = 69  # b"E"
GATED_EVENTS = 71  # b"G"
OTHERS_EVENTS = 79  # b"O"
SCRIPT_QUERY = 81  # b"Q"
SCRIPT_ANSWER = 65  # b"A"
INQUIRY = 73  # b"I", both ways
TRY_HOLD = 84  # b"T", both ways
VERDICT = 86  # b"V": acceptor -> worker, see encode_verdict
TRY_FRAME = b"T"  # acceptor -> worker: hold the shard for me if it is free now
TRY_GRANTED = b"T1"  # worker -> acceptor: held for you until __release
TRY_REFUSED = b"T0"  # worker -> acceptor: not held (the shard was not free)
REFUSALS = 75  # b"K", both ways: a busy script's refusal candidates, and those refused
RUNNING = 85  # b"U": a script is running, or ended (see ``U`` above)
RUNNING_FRAME = b"U1"
RAN_FRAME = b"U0"
STOPPED = 90  # b"Z": this worker ends now for a SHUTDOWN NOSAVE (see ``Z`` above)
STOPPED_FRAME = b"Z"

# Each frame on a pipe: a length as multiprocessing.Connection writes it
# (signed 32-bit, big-endian), then the payload.
FRAME = struct.Struct("!i")
_U32 = struct.Struct("<I")
_U64 = struct.Struct("<Q")

try:
    from hiredis import HiredisError as _HiredisError
    from hiredis import Reader as _HiredisReader
except ImportError:  # pragma: no cover - hiredis is a dependency
    _HiredisReader = None  # type: ignore[assignment, misc]
    _HiredisError = ValueError  # type: ignore[assignment, misc]


# A header at most this is a plain entry in database 0 (RESP3 or PART at most).
PLAIN_MAX = FLAG_RESP3 | FLAG_PART
DB_SHIFT = 9
DB_MASK = 0xFFFF  # so at most 65536 databases
TOKEN_SHIFT = 25


# A slotted header (see ``B`` above): SLOTTED + the key's slot, plus
# SLOTTED_RESP3 for RESP3; the slot is ``header & SLOT_MASK``.
SLOTTED = -32768
SLOTTED_RESP3 = 16384
SLOT_MASK = 16383


def entry_header(flags: int, token: int = 0, db: int = 0) -> bytes:
    return b":%d\r\n" % (flags | (db << DB_SHIFT) | (token << TOKEN_SHIFT))


def slotted_header(slot: int, resp3: bool) -> bytes:
    """The header of a plain command on a key of ``slot``, in database 0."""
    return b":%d\r\n" % (SLOTTED + slot + (SLOTTED_RESP3 if resp3 else 0))


def header_resp3(header: int) -> int:
    """Whether the entry's reply is RESP3 (nonzero), slotted or not."""
    return header & FLAG_RESP3 if header >= 0 else header & SLOTTED_RESP3


def header_db(header: int) -> int:
    return (header >> DB_SHIFT) & DB_MASK if header >= 0 else 0


def header_token(header: int) -> int:
    return header >> TOKEN_SHIFT if header >= 0 else 0


def stamped_command(args: list[bytes], stamp: int) -> bytes:
    """A blocking entry's command with its stamp after it (send it with
    :data:`FLAG_STAMP` in the header)."""
    return encode_command([*args, b"%d" % stamp])


def take_stamp(header: int, args: list[bytes]) -> int:
    """The stamp of a blocking entry, taken off ``args``; 0 if it has none."""
    return int(args.pop()) if header & FLAG_STAMP else 0


def batch_frame(out: list[bytes]) -> bytes:
    """The ``B`` frame, its length included, of ``out``: ``[header,
    command, header, command, ...]``, each already encoded, as the
    acceptor queues them.  (Joined, then framed: one more copy of the
    bytes, cheaper than a ``len`` per entry.)"""
    body = b"".join(out)
    head = b"B*%d\r\n" % len(out)
    return b"".join((FRAME.pack(len(head) + len(body)), head, body))


def batch_payload(out: list[bytes]) -> bytes:
    """The ``B`` payload (no length) of ``out``, as :func:`batch_frame`."""
    return b"B*%d\r\n%s" % (len(out), b"".join(out))


def encode_batch(entries: list[Any]) -> bytes:
    """A ``B`` payload of ``[header, args, ...]``, as the acceptor writes one
    (a worker's rewrite of a batch it keeps, see :func:`decode_batch`)."""
    out = []
    for j in range(0, len(entries), 2):
        out.append(b":%d\r\n" % entries[j])
        out.append(encode_command(entries[j + 1]))
    return batch_payload(out)


def decode_batch(payload: bytes) -> list[Any]:
    """The ``[header, args, header, args, ...]`` of a ``B`` payload.

    The payload is one RESP array (its count comes first, see ``B``
    above): hiredis reads it whole with one ``gets``, a call that costs
    more than the decoding of a short entry.  Its reader is kept for the
    next payload (making one costs as much as decoding a few entries),
    unless it read a big payload (its buffer would stay that big) or a
    bad one: anything but one whole array and nothing after it, a whole
    array followed by part of an entry too (:class:`BadMessage`; the
    reader, which holds the rest, is dropped)."""
    if _HiredisReader is not None:
        reader = _BATCH_READERS.pop() if _BATCH_READERS else _HiredisReader()
        reader.feed(payload, 1)
        try:
            items = reader.gets()
        except _HiredisError as e:
            raise BadMessage(f"a B frame that is not one whole array: {e}") from None
        if type(items) is not list or reader.has_data():
            raise BadMessage(f"a B frame that is not one whole array: {payload[:64]!r}")
        if len(payload) <= _KEEP_READER_MAX:
            _BATCH_READERS.append(reader)
        return items
    return _decode_batch_py(payload)


# decode_batch's reader, kept between payloads of at most _KEEP_READER_MAX
# bytes (hiredis's own limit on the buffer it keeps, 64 KiB by default).
_BATCH_READERS: list[Any] = []
_KEEP_READER_MAX = 1 << 16


def _decode_batch_py(payload: bytes) -> list[Any]:
    out: list[Any] = []
    find = payload.find
    eol = find(b"\r\n", 1)
    if payload[1] != 42:  # '*'
        raise BadMessage(f"a B frame that is not one whole array: {payload[:64]!r}")
    items = int(payload[2:eol])
    pos = eol + 2
    for _ in range(items):
        eol = find(b"\r\n", pos)
        if payload[pos] == 58:  # ':'
            out.append(int(payload[pos + 1 : eol]))
            pos = eol + 2
            continue
        count = int(payload[pos + 1 : eol])
        pos = eol + 2
        args = []
        for _ in range(count):
            eol = find(b"\r\n", pos)
            size = int(payload[pos + 1 : eol])
            pos = eol + 2
            args.append(payload[pos : pos + size])
            pos += size + 2
        out.append(args)
    if pos != len(payload):
        raise BadMessage(f"a B frame whose count leaves items unread: {payload[:64]!r}")
    return out


def encode_replies(bodies: list[bytes]) -> bytes:
    n = len(bodies)
    if n < _SIZES_CACHED:  # (no format made and looked up in struct's cache per payload)
        return b"".join((_REPLIES_HEADS[n], _SIZES[n].pack(*map(len, bodies)), *bodies))
    return b"".join((b"R", _U32.pack(n), struct.pack("<%dI" % n, *map(len, bodies)), *bodies))


# encode_replies's kind and count, and the packer of the sizes, for the usual counts.
_SIZES_CACHED = 256
_REPLIES_HEADS = [b"R" + _U32.pack(n) for n in range(_SIZES_CACHED)]
_SIZES = [struct.Struct("<%dI" % n) for n in range(_SIZES_CACHED)]


def count_replies(payload: bytes) -> int:
    """How many replies an ``R`` payload holds."""
    (n,) = _U32.unpack_from(payload, 1)
    return int(n)


def reply_sizes(payload: bytes) -> tuple[int, tuple[int, ...]]:
    """Where an ``R`` payload's first reply body starts, and the sizes of
    its bodies, which follow one another from there: a reader that slices
    them itself makes no list of them (the acceptor's ``ShardLink``)."""
    (n,) = _U32.unpack_from(payload, 1)
    return 5 + 4 * n, struct.unpack_from("<%dI" % n, payload, 5)


def decode_replies(payload: bytes) -> list[bytes]:
    pos, sizes = reply_sizes(payload)
    out: list[bytes] = []
    append = out.append
    for size in sizes:  # once per reply: kept short
        end = pos + size
        append(payload[pos:end])
        pos = end
    return out


def encode_wake(token: int, body: bytes) -> bytes:
    return b"W" + _U64.pack(token) + body


def decode_wake(payload: bytes) -> tuple[int, bytes]:
    return _U64.unpack_from(payload, 1)[0], payload[9:]


def encode_gated_wake(wake: bytes, waits: list[tuple[int, int]]) -> bytes:
    return b"J" + marshal.dumps((wake, waits))


def decode_gated_wake(payload: bytes) -> tuple[bytes, list[tuple[int, int]]]:
    wake, waits = marshal.loads(payload[1:])
    return wake, waits


def encode_verdict(token: int, take: bool) -> bytes:
    """``V`` (acceptor -> worker): the verdict on the ``BWAIT_SERVED`` of
    ``token``: take what was popped (deliver it) or give it back."""
    return b"V%d %d" % (token, take)


def decode_verdict(payload: bytes) -> tuple[int, bool]:
    token, take = payload[1:].split(b" ")
    return int(token), take == b"1"


def encode_piece(piece: bytes | memoryview, last: bool) -> bytes:
    return b"".join((b"P\x01" if last else b"P\x00", piece))


def decode_piece(payload: bytes) -> tuple[bytes, bool]:
    """The piece of a reply body, and whether it is the last."""
    return payload[2:], payload[1] == 1


def encode_disk(misconf: str | None) -> bytes:
    return b"D" + (misconf or "").encode()


def decode_disk(payload: bytes) -> str | None:
    return payload[1:].decode() or None


def encode_part(value: Any) -> bytes:
    """A part reply: an int, a str, None, a list of RESP bodies, or an error."""
    if type(value) is Error:
        return marshal.dumps(("E", value.message))
    return marshal.dumps(value)


def decode_part(body: bytes) -> object:
    value = marshal.loads(body)
    if type(value) is tuple:
        return Error(value[1])
    return value


# -- control messages ------------------------------------------------------------
#
# acceptor -> worker: Run, Prepare, Decide, Resolve
# worker -> acceptor: Ran, Prepared, Finished, Refused, InDoubt
# batch-entry answers (inside an R frame): Parked, PartPrepared


@dataclass(frozen=True, slots=True)
class Run:
    """To the executor: install ``states`` (other shards' keys), run
    ``commands``; answer :class:`Ran`.  The executor prepares its own
    changes, or, when it is ``alone`` in the operation, commits them."""

    op: int
    states: dict[Any, Any]
    commands: list[Any]
    resp3: int
    alone: bool
    own: list[bytes]  # the executor's own keys the operation names; [b"*"]: every key
    clocks: dict[Any, Any] = field(default_factory=dict)  # the states' keys' access clocks
    # An EXEC's scripts (see acceptor.transactions._run_atomic): the executor
    # logs each in its slow log, after its calls, as Redis does (Ran.logged).
    log_scripts: bool = False
    # Unix ms: the commands run with keys expired as of then, not now (0):
    # an EXEC with scripts, each run (again, after a script escaped) as of
    # the first's start (Redis's time stands still while EXEC runs).
    as_of: int = 0
    # The address and name of the client whose commands these are: their
    # slow log entries name it, as Redis's do (a command's entry of a
    # batch is named by the acceptor instead, see acceptor.slowlog).
    client: tuple[str, bytes] = ("", b"")
    # False: the executor neither counts nor logs the commands (a blocking
    # command's try across shards, which the acceptor counts as Redis
    # counts the command: see acceptor.blocking._CrossShard._count_try).
    counted: bool = True
    # [position in commands, name]: the client's name from that command on
    # (a CLIENT SETNAME queued before it, which the acceptor runs).
    names: list[Any] = field(default_factory=list)
    # The commands are several clients' scripts (acceptor.scripting._Group),
    # not one client's EXEC: once one of them is past busy-reply-threshold,
    # each after it is answered -BUSY without running, as Redis answers
    # the clients it reads at the threshold.
    group: bool = False
    # A blocking command's try after a notification (see
    # acceptor.blocking._CrossShard.attempt): it serves the blocked client,
    # counted in dirty as Redis counts a served command (none for a list's
    # pop or move, the consumer it creates for an XREADGROUP).
    served: bool = False
    # The positions in ``commands`` of those of a client with CLIENT NO-TOUCH
    # on (each runs inside shardkv.worker.access.no_touch, as that client's
    # entry would): every one of its client's, or a group's members' own.
    no_touch: list[Any] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Prepare:
    """To a participant: make these keys of yours hold these states
    tentatively, log the prepare record (durably, as ``appendfsync`` asks),
    answer :class:`Prepared`, and wait for :class:`Decide`."""

    op: int
    states: dict[Any, Any]
    clocks: dict[Any, Any] = field(default_factory=dict)  # their access clocks (never logged)
    # The keys the operation made hold a value a blocked command pops, with
    # their ranks among all such keys of it (see Ran.ranks).
    ranks: dict[Any, int] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Decide:
    """The operation's outcome, to every shard parked for it: apply what was
    prepared (``commit``) or undo it; answer :class:`Finished`; resume."""

    op: int
    commit: bool
    # Undone to run again (an EXEC whose script escaped): the shard keeps
    # the sweeper's time at the operation's ``__parkat`` until the run
    # again parks it (see Keyspace.exec_frozen).
    again: bool = False
    # Committed, an EXEC whose CONFIG SET of notify-keyspace-events ran in
    # its place (see Shard._run_foreign): the setting's letters after it,
    # in force from the commit on, so that the blocked clients its writes
    # serve notify as it says, as Redis serves them after EXEC (the
    # acceptor's ``__config`` that sets it comes behind).
    notify: str | None = None
    # Committed, a run whose FLUSHALL (a script's, a WATCHed EXEC's) ran:
    # each shard saves as Redis's FLUSHALL does (see Saves.flushed_all).
    flushed: bool = False
    # Committed: the access clocks of this shard's keys that the run read
    # (or TOUCHed) and left as they were (see Ran.clocks), as Redis's
    # lookups stamp them; those it changed came with their Prepare.
    clocks: dict[Any, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Resolve:
    """The answer to :class:`InDoubt`: the outcome of each operation."""

    outcomes: dict[int, bool]  # op -> commit


@dataclass(frozen=True, slots=True)
class Ran:
    """The executor's answer to :class:`Run`.  ``after``: the new states of
    the other shards' keys that changed.  ``own``: what the executor did
    with its own changes: ``NOTHING``, ``PREPARED`` or (alone) ``COMMITTED``."""

    op: int
    bodies: list[Any]
    after: dict[Any, Any]
    own: int
    # The access clocks of ``after``'s keys, and of the other shards' keys
    # the run left as they were but whose clocks it changed (read, TOUCH).
    clocks: dict[Any, Any] = field(default_factory=dict)
    # With Run.log_scripts: each script's slow log entry id, in order
    # (-1: not logged), for the acceptor to name its client in it.
    logged: list[int] = field(default_factory=list)
    # Each script's redis.log lines it wrote or dropped before it ended (past
    # LOGS_HELD, or busy: worker.scripting.Engine.ran_written), in order:
    # should a script of the run escape, each runs again, dropping as many.
    written: list[int] = field(default_factory=list)
    # The keys of ``after`` the commands made hold a list, sorted set or
    # stream, each with its place among every such key of the run, the
    # executor's too (worker.blocking.note_ready): the shards' notifications
    # of clients blocked on several of them carry it.
    ranks: dict[Any, int] = field(default_factory=dict)
    # For each of ``bodies``, where its command's keyspace events end among
    # the events the executor sent just before this (the ``E`` frame), as
    # an offset from their end (0: the last one; empty: none noted): the
    # acceptor puts each command's events before its part of EXEC's array.
    bounds: list[int] = field(default_factory=list)
    # A FLUSHALL ran (see Decide.flushed).
    flushed: bool = False


@dataclass(frozen=True, slots=True)
class Prepared:
    op: int


@dataclass(frozen=True, slots=True)
class Finished:
    """A shard applied (or undid) its part after :class:`Decide` or
    :class:`Resolve`, and has logged that."""

    op: int
    commit: bool


@dataclass(frozen=True, slots=True)
class Refused:
    """A worker got a control message for an operation it is not parked
    for (after a restart, say): it did nothing."""

    op: int
    reason: str


@dataclass(frozen=True, slots=True)
class InDoubt:
    """The first frame a worker sends on each new pipe: the operations it
    has prepared and whose outcome it does not know.  It runs nothing
    until the :class:`Resolve` for them has come (when there are any)."""

    ops: list[int]


@dataclass(frozen=True, slots=True)
class Parked:
    """A shard's answer to ``__park``: the states of the keys it exports,
    the versions of the watched keys; it is now parked for ``op``."""

    op: int
    states: dict[Any, Any]
    versions: dict[Any, Any]
    clocks: dict[Any, Any] = field(default_factory=dict)  # the access clocks of the keys exported


@dataclass(frozen=True, slots=True)
class PartPrepared:
    """A shard's answer to ``__prepare``: its part's reply ``value``
    (:func:`encode_part`'s values); ``prepared``: it changed keys, logged
    the prepare record and is parked for ``op``; otherwise it went on."""

    op: int
    prepared: bool
    value: object


# What the executor did with its own changes (Ran.own).
NOTHING, PREPARED, COMMITTED = 0, 1, 2

_MESSAGES = (Run, Prepare, Decide, Resolve, Ran, Prepared, Finished, Refused, InDoubt, Parked, PartPrepared)
_BY_TAG = {cls.__name__: cls for cls in _MESSAGES}
Control = (
    Run | Prepare | Decide | Resolve | Ran | Prepared | Finished | Refused | InDoubt | Parked | PartPrepared
)


class BadMessage(ValueError):
    """A control frame that is not one of the messages above."""


def _fields_of(cls: type) -> Callable[[Any], tuple[Any, ...]]:
    """What gives a message's fields as one tuple (one C call where it has
    several, not a getattr each)."""
    names: tuple[str, ...] = cls.__slots__  # type: ignore[attr-defined]
    if len(names) == 1:
        name = names[0]
        return lambda message: (getattr(message, name),)
    return attrgetter(*names)


_FIELDS = {cls: _fields_of(cls) for cls in _MESSAGES}


def _encode_message(message: Control) -> bytes:
    cls = type(message)
    fields = _FIELDS[cls](message)
    if cls is PartPrepared and type(message.value) is Error:  # type: ignore[union-attr]
        fields = (message.op, message.prepared, ("E", message.value.message))  # type: ignore[union-attr]
    return marshal.dumps((cls.__name__, *fields))


def _decode_message(data: bytes) -> Control:
    try:
        tag, *fields = marshal.loads(data)
        cls = _BY_TAG[tag]
        message = cls(*fields)
    except (ValueError, TypeError, KeyError, EOFError) as e:
        raise BadMessage(f"bad control message: {e}") from None
    if cls is PartPrepared and type(message.value) is tuple:  # type: ignore[union-attr]
        message = PartPrepared(message.op, message.prepared, Error(message.value[1]))  # type: ignore[union-attr]
    return message


def encode_control(message: Control) -> bytes:
    """A ``C`` frame's payload."""
    return b"C" + _encode_message(message)


def decode_control(payload: bytes) -> Control:
    """The message of a ``C`` frame; :class:`BadMessage` if it is none."""
    return _decode_message(payload[1:])


def encode_answer(message: Parked | PartPrepared) -> bytes:
    """The reply body of a ``__park``/``__prepare`` entry (in an ``R`` frame)."""
    return _encode_message(message)


def decode_answer(body: bytes) -> Control:
    return _decode_message(body)


# A busy report's place for a script that a cross-shard operation runs on
# its parked shards (see Shard.replies_ahead).
SCRIPT_PARKED = -2


# The signal that asks a worker to report its busy script (an ``S``
# frame) at the script's next count hook: a SCRIPT KILL of a function or
# a FUNCTION KILL of an EVAL, which Redis answers as the script is at that
# hook (``-UNKILLABLE`` if it has written, else the ``-BUSY`` that names
# the other kill).  SIGUSR1 is the kill's own; SIGUSR2, SHUTDOWN NOSAVE's.
REPORT_SIGNAL = signal.SIGRTMIN


def encode_script_state(
    busy: bool,
    pid: int,
    dirty: bool,
    eval_mode: bool,
    unblocks: tuple[Any, ...] = (0, {}, {}),
    *details: Any,
    caller: tuple[int, int] = (-1, -1),
    epoch: int = 0,
    killed_at: float = 0.0,
    reported_at: float = 0.0,
) -> bytes:
    """``unblocks``: the scripts that went busy on this shard so far, the
    count when each pipe's acceptor was lost (it counts from there), and
    the ``seq`` of the last ``__unblock`` it ran from each pipe (see
    :attr:`Verb.UNBLOCK`); ``details``: the function's name, its command,
    when it started (time.time()), and the shard's library and function
    counts (for FUNCTION STATS while it is busy); ``caller``: the pipe the
    script's command came on and how many replies that pipe's acceptor
    awaits before the script's ((-1, -1) when unknown, and
    :data:`SCRIPT_PARKED` for an operation's script: see
    ``Shard.replies_ahead``); ``epoch``: which busy script of the worker
    this is, for the ``K`` frames; ``killed_at``: (in the report of its
    end) when SCRIPT KILL or FUNCTION KILL stopped it (``time.monotonic()``,
    one clock for every process on the machine), 0 if none did;
    ``reported_at``: when the report was made (that clock: a kill of the
    other kind takes only a report made after it signalled, see
    ``ShardLink.kind_checks``).  Decoded: (busy, pid, dirty, eval_mode,
    unblocks, caller, epoch, killed_at, reported_at, *details)."""
    return b"S" + marshal.dumps(
        (busy, pid, dirty, eval_mode, unblocks, caller, epoch, killed_at, reported_at, *details)
    )


def decode_script_state(payload: bytes) -> tuple[Any, ...]:
    state: tuple[Any, ...] = marshal.loads(payload[1:])
    return state


# In an M frame of an operation's run of several commands: the end of one
# script's calls (see Shard.run_foreign).
SCRIPT_END: tuple[int, list[bytes]] = (-1, [])


def encode_monitor(calls: list[tuple[int, list[bytes]]]) -> bytes:
    return b"M" + marshal.dumps(calls)


def decode_monitor(payload: bytes) -> list[tuple[int, list[bytes]]]:
    calls: list[tuple[int, list[bytes]]] = marshal.loads(payload[1:])
    return calls


def encode_slow_names(named: list[tuple[int, int]]) -> bytes:
    return b"N" + marshal.dumps(named)


def decode_slow_names(payload: bytes) -> list[tuple[int, int]]:
    named: list[tuple[int, int]] = marshal.loads(payload[1:])
    return named


def script_user(caller: int, rules: bytes) -> bytes:
    """A script's ACL argument (FLAG_ACL, and ``__eval``/``__fcall``'s
    ``user``): ``caller``, the number under which the client's acceptor
    keeps what ACL LOG shows of the script's refusals (the client info as it
    was when the client called the script, see ``Users.script_called``),
    a newline, then the user's rules."""
    return b"%d\n%s" % (caller, rules)


def split_script_user(argument: bytes) -> tuple[bytes, bytes]:
    """(caller, rules) of a :func:`script_user` argument."""
    caller, _, rules = argument.partition(b"\n")
    return caller, rules


def parse_caller(caller: bytes) -> int:
    """The number of a :func:`script_user` caller (or of the argument)."""
    return int(caller.partition(b"\n")[0])


def encode_acl_log(caller: bytes, refusals: list[tuple[int, bytes]]) -> bytes:
    return b"L" + marshal.dumps((caller, refusals))


def decode_acl_log(payload: bytes) -> tuple[bytes, list[tuple[int, bytes]]]:
    caller, refusals = marshal.loads(payload[1:])
    return caller, refusals


# The state of Redis's redisLrand48 (math.random) when the server starts.
RANDOM_SEED = 0x1234ABCD330E


def encode_script_query(
    db: int,
    resp: int,
    args: list[bytes],
    since: int = 0,
    ahead: int = -1,
    at: int = -1,
    noted: int = -1,
    others: tuple[int, ...] = (),
) -> bytes:
    """``since``: the time.monotonic_ns() the script's run started (a
    PUBLISH of it does not reach those that subscribed later).  ``ahead``:
    how many replies the acceptor awaits on this pipe before the script's
    (``Shard.replies_ahead``; -1: unknown), where it finds the script's
    client and reply slot (its own message goes before that reply).
    ``at``: with :data:`SCRIPT_PARKED`, a script among an operation's
    commands (an EXEC's), its reply's place among the run's replies
    (``Shard.run_reply_at``; -1: unknown or alone).  ``noted``: how many
    events the script's command noted before this call (-1: unknown), which
    its client gets before a PUBLISH's message, as Redis writes them as the
    script's calls run.  ``others``: for each other pipe that gets events
    of the batch (an ``O`` frame at its end), ``pipe, seq, count``: that
    frame's number and how many of its events were noted before this
    call, which that pipe's acceptor hands out before a PUBLISH's message."""
    return b"Q" + marshal.dumps((db, resp, args, since, ahead, at, noted, others))


def decode_script_query(
    payload: bytes,
) -> tuple[int, int, list[bytes], int, int, int, int, tuple[int, ...]]:
    db, resp, args, since, ahead, at, noted, others = marshal.loads(payload[1:])
    return db, resp, args, since, ahead, at, noted, others


def encode_script_answer(body: bytes) -> bytes:
    return b"A" + body


def decode_script_answer(payload: bytes) -> bytes:
    return payload[1:]


# The epoch of a ``K`` frame that the acceptor sends a shard parked for a
# cross-shard operation whose script, run on another shard, went busy
# (EVAL's, FCALL's): what waits behind the park is refused so as well.
PARKED_BEHIND_EVAL = -1
PARKED_BEHIND_FUNCTION = -2
# The epoch of a ``K`` frame that an acceptor sends the other shards when
# another acceptor's cross-shard operation's script went busy (several
# acceptors): what it sent them waits behind that operation's parks, or
# ran; its places count back from the frame (see ShardLink.offer_tail).
BEHIND_TAIL_EVAL = -3
BEHIND_TAIL_FUNCTION = -4
TAIL_EPOCHS = (BEHIND_TAIL_EVAL, BEHIND_TAIL_FUNCTION)
FUNCTION_EPOCHS = (PARKED_BEHIND_FUNCTION, BEHIND_TAIL_FUNCTION)


def encode_refusals(epoch: int, places: list[int]) -> bytes:
    """A ``K`` frame, either way: the busy script it is about (its
    ``epoch``), and places among the entries that followed it."""
    return b"K" + marshal.dumps((epoch, places))


def decode_refusals(payload: bytes) -> tuple[int, list[int]]:
    try:
        epoch, places = marshal.loads(payload[1:])
    except (EOFError, ValueError, TypeError):
        raise BadMessage("bad refusals") from None
    if type(epoch) is not int or type(places) is not list or not all(type(p) is int for p in places):
        raise BadMessage("bad refusals")
    return epoch, places


def decode_refusals_epoch(payload: bytes) -> int | None:
    """A ``K`` frame's epoch; None if it cannot be read."""
    try:
        return decode_refusals(payload)[0]
    except BadMessage:
        return None


def encode_inquiry(args: list[bytes]) -> bytes:
    return b"I" + marshal.dumps(args)


def decode_inquiry(payload: bytes) -> list[bytes]:
    args = marshal.loads(payload[1:])
    if type(args) is not list or not all(type(a) is bytes for a in args):
        raise BadMessage("bad inquiry")
    return args


def encode_inquiry_answer(value: Any) -> bytes:
    return b"I" + encode_part(value)


def decode_inquiry_answer(payload: bytes) -> object:
    return decode_part(payload[1:])


# Redis's NOTIFY_KEYSPACE and NOTIFY_KEYEVENT (K and E), in an event's class:
# the channels a notification of it goes to, as notify-keyspace-events said
# when its command ran in the shard (Redis decides as the command runs, so a
# CONFIG SET that the acceptor ran before the event came back changes
# nothing about it).  In an ``__events`` mask: this acceptor has clients
# subscribed where they may hear such channels (see shardkv.worker.events).
EVENT_KEYSPACE = 1 << 0
EVENT_KEYEVENT = 1 << 1
# Event classes of shardkv's own, beside Redis's NOTIFY_* flags (1 << 2 to
# 1 << 14), for client-side caching only; never published as notifications.
EVENT_FLUSH = 1 << 15  # FLUSHDB/FLUSHALL ran: a null invalidation to every tracking client
EVENT_SCRIPT_READ = 1 << 16  # a script called a read-only command: its declared keys are read
# For maxmemory (see shardkv.acceptor.memorybudget): a command found its
# shard over its part of maxmemory with nothing to evict; key: b"<shard> <bytes over>".
EVENT_STARVED = 1 << 17
# Beside an event's class: Redis writes this event after its command's
# reply (``addReply`` before ``notifyKeyspaceEvent``: RPUSH, HSET, EXPIRE...),
# so the command's own subscribing client gets it after the reply, where
# the events of most commands come before it (see shardkv.worker.events,
# AFTER_REPLY).  Never in a mask: it selects no pipe.
EVENT_AFTER_REPLY = 1 << 18
# Beside an event's class: Redis writes this event inside its command's
# reply, as it builds it (ZPOPMIN's pop event after the array's header,
# XREADGROUP's ``xgroup-createconsumer`` after its stream's name...), so the
# command's own RESP3 subscribing client gets it there: after the reply's
# first header, then ``cls >> EVENT_IN_REPLY_SHIFT & EVENT_IN_REPLY_SKIP``
# whole elements, then (EVENT_IN_REPLY_INNER) the header of the element
# that follows (see shardkv.worker.events, IN_REPLY).  Never in a mask.
EVENT_IN_REPLY = 1 << 19
EVENT_IN_REPLY_INNER = 1 << 20
EVENT_IN_REPLY_SHIFT = 22
EVENT_IN_REPLY_SKIP = (1 << 25) - 1
# Beside an event's class: an event of a blocked command that a write
# served (its client's reply comes later, in a ``W`` frame): Redis writes
# it once it serves the client, where the write's own events reach that
# client at once, before the reply it still waits for.  Never in a mask.
# A single-shard wait's names the waiter served, ``cls >> EVENT_WAITER_SHIFT``:
# its token, shifted by EVENT_WAITER_PIPE_BITS, and the pipe (the acceptor)
# it came on; it keeps EVENT_IN_REPLY (a BZPOPMIN's pop): its own client
# gets it inside the reply.
EVENT_SERVED = 1 << 21
EVENT_WAITER_SHIFT = 48
# Beside EVENT_SERVED, naming the waiter: Redis signals this change of the
# served command with its client current (``signalModifiedKey(receiver,
# ...)``), so under BCAST the key's last changer is that client, whom
# NOLOOP does not tell, and no one else (see shardkv.worker.events,
# SERVED_SIGNALS); without it, the served change signals nothing, the
# key's last changer staying.  (The IN_REPLY skip's top bit, never that
# high.)  Never in a mask.
EVENT_SERVED_OWN = 1 << 47
EVENT_WAITER_PIPE_BITS = 8


def encode_events(bounds: list[int] | None, events: list[tuple[int, bytes, int, bytes]]) -> bytes:
    return b"E" + marshal.dumps((bounds, events))


def decode_events(payload: bytes) -> tuple[list[int] | None, list[tuple[int, bytes, int, bytes]]]:
    decoded: tuple[list[int] | None, list[tuple[int, bytes, int, bytes]]] = marshal.loads(payload[1:])
    return decoded


Event = tuple[int, bytes, int, bytes]  # (db, key, class, event)


def encode_gated_events(
    bounds: list[int] | None, events: list[Event], gated: list[int], waits: list[tuple[int, int]]
) -> bytes:
    return b"G" + marshal.dumps((bounds, events, gated, waits))


def decode_gated_events(
    payload: bytes,
) -> tuple[list[int] | None, list[Event], list[int], list[tuple[int, int]]]:
    decoded: tuple[list[int] | None, list[Event], list[int], list[tuple[int, int]]] = marshal.loads(
        payload[1:]
    )
    return decoded


def encode_behind(token: int) -> bytes:
    """An ``H`` frame: the client of the blocked command ``token`` has
    commands pipelined behind it; a push that serves it then has its
    batch's replies wait until they ran (``shardkv.worker.loop``)."""
    return b"H%d" % token


def encode_others_events(
    seq: int, events: list[tuple[int, bytes, int, bytes]], writer: tuple[int, list[int]] | None = None
) -> bytes:
    """An ``O`` frame: ``writer``, for the events of a client's commands, is
    (the pipe that ran them, for each event the index of its command's
    reply in that pipe's next ``R`` frame, -1 for none: a blocked command
    served after the batch); None for the sweeper's."""
    return b"O" + marshal.dumps((seq, events, writer))


def decode_others_events(
    payload: bytes,
) -> tuple[int, list[tuple[int, bytes, int, bytes]], tuple[int, list[int]] | None]:
    decoded: tuple[int, list[tuple[int, bytes, int, bytes]], tuple[int, list[int]] | None] = marshal.loads(
        payload[1:]
    )
    return decoded


# -- internal verbs --------------------------------------------------------------


# A __bwait's notification (shardkv.worker.blocking): the waiters of a key
# are notified in the order they blocked, each __bwait counted as taking its
# count of elements (it pops nothing; its client's try after the
# notification may), until its __bdone.
# BWAIT_READY: an element was left for it at its turn, as Redis would serve
# that client; BWAIT_CLAIMED: earlier waiters may take every element, so a
# BLMOVE's try finding a destination of another type waits again, where
# Redis would not have served it (its list was gone at its turn).
BWAIT_READY = 1
BWAIT_CLAIMED = 2
# BWAIT_SERVED: a __bpop's notification, [BWAIT_SERVED, key, reply]: the
# shard popped for its client at its turn, as Redis serves it when the push
# ends, and waits in place for the acceptor's verdict on that token (a ``V``
# frame, see encode_verdict): taken, it logs the pop and wakes the token
# again with ``:1``, the acceptor's cue to deliver the reply; not taken (or
# none within its bound, or the pipe lost), the element goes back to the
# key's head unseen.  A late taking verdict, after the bound, is answered
# ``:0`` (the acceptor then tries, as after BWAIT_READY).
BWAIT_SERVED = 3
SERVED_WAKE = b"*3\r\n:3\r\n"  # how a BWAIT_SERVED wake's body begins


def pushed_back(name: bytes, where: bytes, key: bytes, popped: list[Any]) -> list[bytes]:
    """The command that puts back at ``key``'s head what the blocking pop
    ``name`` (BLPOP, BRPOP, BLMPOP with ``where`` LEFT or RIGHT, BZPOPMIN,
    BZPOPMAX, BZMPOP) popped from it, ``popped`` its reply: BLPOP's element
    goes back to the left, BRPOP's to the right, BLMPOP's in reverse order
    (the first popped ends at the head); a sorted set's members with their
    scores.  What a shard popped for a client that another shard served
    first, or that went away, goes back so (shardkv.worker.blocking,
    shardkv.acceptor.blocking)."""
    name = name.lower()
    if name in (b"bzpopmin", b"bzpopmax"):
        return [b"ZADD", key, _score(popped[2]), popped[1]]
    if name == b"bzmpop":
        return [b"ZADD", key, *(x for pair in popped[1] for x in (_score(pair[1]), pair[0]))]
    if name == b"blmpop":
        left = where.lower() == b"left"
        elements = popped[1]
    else:
        left = name == b"blpop"
        elements = [popped[1]]
    return [b"LPUSH" if left else b"RPUSH", key, *reversed(elements)]


def _score(score: object) -> bytes:
    return score if type(score) is bytes else repr(score).encode()


class Verb:
    """Every internal verb: the name of a command the acceptor sends a shard
    (or a shard writes in its AOF), never a client.  :data:`HANDLED` are run
    by a worker's command handler; :data:`PARK`, :data:`PARKDB`,
    :data:`PARK_AT` and :data:`PREPARE` by the shard itself (``FLAG_PARK`` entries), and
    :data:`SELECT` and :data:`XREADGROUP_UPTO` by the executor of a cross-shard operation; :data:`RANDOM`
    and :data:`RANDOM_BACK` travel in ``Q`` frames, to the acceptor; :data:`XPREPARE`, :data:`XCOMMIT`
    and :data:`XABORT` are records of a shard's AOF only."""

    # Cross-shard operations (see shardkv.acceptor.crossshard).
    PARK = b"__park"  # __park op nexport key... watched...: export, park
    PARKDB = b"__parkdb"  # __parkdb op nexport (db key)... (db key)...: the same, keys of any database
    # __parkat ms __park... (or __parkdb...): the same, keys expired as of
    # ``ms`` (an EXEC with scripts: see Run.as_of)
    PARK_AT = b"__parkat"
    SELECT = b"__select"  # in a Run's commands: __select db, the database of the commands after it
    PREPARE = b"__prepare"  # __prepare op command...: a write fan-out's part
    XPREPARE = b"__XPREPARE"  # AOF: __XPREPARE op states
    XCOMMIT = b"__XCOMMIT"  # AOF: __XCOMMIT op
    XABORT = b"__XABORT"  # AOF: __XABORT op
    STATE = b"__state"  # AOF: __state key payload, a key of a type no command re-creates
    # Transactions and blocking commands.
    WATCH = b"__watch"
    # __watchb key...: a __watch sent while a script is busy (on any shard),
    # which a worker may run ahead, as Redis reads a WATCH while a script is
    # busy (see shardkv.worker.busywatch); what it leaves in the batch then:
    # __watched version..., its reply (the versions it read).
    WATCH_BUSY = b"__watchb"
    WATCHED = b"__watched"
    UNWATCH = b"__unwatch"
    # __bwait command timeout elapsed-ms count key... -> 0 (timed out), or,
    # once a key can serve the command, [BWAIT_READY or BWAIT_CLAIMED (see
    # above), that key]; ``count``: how many elements its notification counts as taken
    # (BLMPOP/BZMPOP's COUNT, else 1), its *claim* on the key until its
    # __bdone.  (XREAD/XREADGROUP: __bwait command timeout elapsed-ms group
    # key id [key id ...], which claims nothing: [BWAIT_READY, key], or an
    # XREADGROUP's error; made ready by a cross-shard operation, [BWAIT_READY,
    # key, op, rank], kept for one __bclaim or __bdone; an XREAD's made ready
    # as it waits ends with the stream's last ID then, for __xreadupto.  An
    # XREAD's ``$`` stands for the stream's last ID as the __bwait comes.)
    BWAIT = b"__bwait"
    # __bpop timeout elapsed-ms count at nkeys key... command... -> a __bwait
    # (the same answers and claims) of a BLPOP, BRPOP, BZPOPMIN, BZPOPMAX,
    # BLMPOP or BZMPOP across shards that pops for its client: a key made
    # ready by a plain write serves it in its turn with ``command`` (the
    # client's command on one key, that key at ``at``), and it is notified
    # [BWAIT_SERVED, key, reply] (the reply in its client's protocol: the
    # entry's FLAG_RESP3).  (A key that can serve it as it comes notifies
    # it BWAIT_READY: its client tries.)  The shard pops only while it is
    # free, and then waits in place for the verdict (see BWAIT_SERVED and
    # encode_verdict).
    BPOP = b"__bpop"
    # __bclaim token -> the notification ([BWAIT_READY or BWAIT_CLAIMED, key]) of
    # the __bwait of ``token`` on this pipe whose claim is not done, else 0
    # (a __bwait still waiting is forgotten).  The keys made ready before it
    # serve first, as Redis serves a blocked client right after the write:
    # sent in the step of a try that CLIENT UNBLOCK asks for, before it.
    # __bclaim token keep: one still waiting is kept (an eager try's, see
    # shardkv.acceptor.blocking.try_at_once).
    BCLAIM = b"__bclaim"
    # __bsettle key (with a token) -> 1 once no cross-shard wait's notified
    # __bwait (or __bpop) claims ``key`` (its try has run), at once if none
    # does, else later, in a W frame: the writer of the source of another
    # acceptor's cross-shard BLMOVE, or of a cross-shard XREADGROUP's
    # stream, waits for it, and so does a transaction or script writing a
    # key of a cross-shard pop (shardkv.acceptor.blocking.try_at_once).
    # __bsettle (no key) -> 1 once every claim left has ended
    # (shardkv.worker.blocking.bsettle; a note of its pipe is dropped):
    # behind a run parked across shards or an EXEC's, whose undeclared
    # keys (or another database's, after a SELECT) the acceptor cannot
    # name (blocking.settle_script).
    BSETTLE = b"__bsettle"
    # __bsettlealone -> the same, behind a script sent to one shard alone
    # (not parked): the claims that the scripts of its pipe since the last
    # one wrote made, or on keys they wrote; none noted, they made none
    # (Waiters.script_wrote): at once.
    BSETTLE_ALONE = b"__bsettlealone"
    # __bdone token -> the same; then that claim is done (its try has run,
    # or there will be none): its key serves its waiters again, the element
    # no longer counted as taken (shardkv.worker.blocking).
    # __bdone token new-token: the __bwait (waiting, or its claim done, if
    # that claim was BWAIT_CLAIMED) then waits on under ``new-token``, in
    # its place among its key's waiters: a cross-shard move's try, which
    # keeps its place while it runs; -1 if there was none (it timed out
    # meanwhile: nothing waits under ``new-token``).
    BDONE = b"__bdone"
    # __bdest destination source -> 0, or WRONGTYPE if the destination
    # holds another type than a list, or 1 if the source does: the second
    # command of a cross-shard BLMOVE/BRPOPLPUSH's try after its __bwait
    # was notified, whose source another waiter may have
    # emptied meanwhile (Redis serves the notified client first, and its
    # serve checks the destination before it pops; see shardkv.acceptor.blocking).
    # Only after BWAIT_READY does its empty result and WRONGTYPE here make
    # the client's reply WRONGTYPE.
    BDEST = b"__bdest"
    # __btry command... -> the blocking command (not BLMOVE/BRPOPLPUSH, not
    # a stream read), unable to wait, with its keys of another type than it
    # pops passed over (no WRONGTYPE): the try of a cross-shard wait that an
    # EXEC's CLIENT UNBLOCK asks for (shardkv.acceptor.blocking), as Redis
    # serves a blocked client from a ready key of that type only.
    BTRY = b"__btry"
    # __unblock token seen seq -> 1 (it still waited: forgotten) or 0 (served
    # or timed out): CLIENT UNBLOCK of a command blocked on this shard
    # (shardkv.worker.blocking); -1, nothing done, when a script went busy
    # after the acceptor sent it (``seen``: the busy scripts the acceptor
    # knew of; ``seq``: its count of __unblocks on this pipe): the acceptor
    # answered -BUSY when the script's busy report came.
    # A fifth argument, inside EXEC: nothing is served first (0), or it
    # runs only if the operation it names committed (else -2, nothing done).
    UNBLOCK = b"__unblock"
    # __serve -> OK: serve the waiters of the keys made ready so far (before
    # an EXEC whose __unblock serves nothing first, and after a transaction's
    # commands behind __defer).
    SERVE = b"__serve"
    # __defer -> OK: serve nobody after each command until __serve or the
    # batch's end (a transaction's commands routed one by one: Redis serves
    # after EXEC).
    DEFER = b"__defer"
    XREAD = b"__xread"
    # __xreadupto last-id [COUNT count] STREAMS key id: a woken cross-shard
    # XREAD's try on the stream its notification named, up to the ID that
    # notification carries (see shardkv.acceptor.blocking).
    XREAD_UPTO = b"__xreadupto"
    # __xgroupupto key last-id XREADGROUP ...: a woken cross-shard
    # XREADGROUP's try, the XREADGROUP it carries, which delivers the
    # entries of ``key`` up to ``last-id`` alone, the ID its notification
    # carries (see shardkv.acceptor.blocking) -> the XREADGROUP's reply.
    # The executor runs it as that XREADGROUP, with its bound
    # (shardkv.worker.commands.streams.bounded_read).
    XREADGROUP_UPTO = b"__xgroupupto"
    XLASTIDS = b"__xlastids"
    # Scripts and functions.
    EVAL = b"__eval"
    FCALL = b"__fcall"
    SCRIPT = b"__script"
    FUNCTION = b"__function"
    # An inquiry (``I`` frame): the names of the shard's functions that may
    # write (no ``no-writes`` flag), lowercase; the acceptor asks while
    # writes are refused for a disk error (see shardkv.acceptor.diskerrors).
    FUNCTION_WRITERS = b"__fwriters"
    # An inquiry (``I`` frame): the names of the shard's functions whose
    # FCALL is ``denyoom`` (neither ``no-writes`` nor ``allow-oom``),
    # lowercase; the acceptor asks while out of memory (see
    # shardkv.acceptor.memorybudget.learn_oom_functions).
    FUNCTION_DENYOOM = b"__fdenyoom"
    # An inquiry (``I`` frame) -> 1, answered after the worker's ``D`` frame
    # if its -MISCONF state changed since this pipe last heard it: with
    # several acceptors, what another acceptor's CONFIG SET changed in the
    # worker has reached this one once it is answered (see
    # shardkv.acceptor.commands.config.bus_sync).
    SETTLED = b"__settled"
    # In a ``Q`` frame: a script's first math.random or math.randomseed
    # borrows the server's one generator state (the answer, an integer);
    # the script's end gives it back (``__randomback state``, no answer).
    RANDOM = b"__random"
    RANDOM_BACK = b"__randomback"
    # In ``Q`` frames of a script that may yet run again across shards (a
    # shard of several): ``__held command...`` asks as a plain ``Q`` frame
    # does, but the acceptor holds back what the call leaves behind (its
    # counts in INFO commandstats and errorstats, PUBLISH's deliveries:
    # PUBLISH answers how many would receive it) until the script ends:
    # ``__heldcommit`` (answered with ``+OK`` once delivered, before the
    # script's reply) keeps it, ``__helddrop`` (no answer) drops it, as the
    # script's run across shards asks again.
    HELD = b"__held"
    HELD_COMMIT = b"__heldcommit"
    HELD_DROP = b"__helddrop"
    # In a ``Q`` frame (no answer): ``__cjson eval|function flushes start
    # shard option...``, a script set cjson's options (after the shard's
    # SCRIPT FLUSH numbered ``flushes``, the script started at ``start`` there);
    # the acceptor sends them on to every other shard (``__script cjson
    # ...``) before the script's reply.
    CJSON = b"__cjson"
    # An inquiry (``I`` frame): a shard's last SCRIPT FLUSH's number and cjson
    # options, which a worker started again takes (``__script cjsonrestore``,
    # see shardkv.acceptor.scriptcalls.on_attach).
    CJSON_STATE = b"__cjsonstate"
    # Server commands' parts in each shard.
    PING = b"__ping"
    SCAN = b"__scan"
    INFO = b"__info"
    # __config [# number] name value [name value ...]: settings; with
    # several acceptors numbered in their one order of CONFIG SETs (see
    # shardkv.acceptor.configorder), ``#`` being CONFIG_NUMBER.
    CONFIG = b"__config"
    OOM = b"__oom"
    RESETSTAT = b"__resetstat"
    CMDSTATS = b"__cmdstats"
    PAUSE = b"__pause"
    # __misconf [text] -> OK: the -MISCONF text this pipe's acceptor refuses
    # writes with (some shard cannot persist: its ``D`` frames), or none any
    # more.  A script's write call is refused with it, and a script that may
    # write (no ``no-writes`` flag) at its start, as in Redis, whose one
    # process refuses them all (see shardkv.acceptor.diskerrors).
    MISCONF = b"__misconf"
    LASTSAVE = b"__lastsave"
    # __schedule save|rewrite -> OK: a BGSAVE or BGREWRITEAOF inside EXEC,
    # which the operation's executor scheduled, is scheduled on this shard
    # too (see shardkv.acceptor.transactions).
    SCHEDULE = b"__schedule"
    PERSISTENCE = b"__persistence"
    # __events <mask> -> OK: the event classes this pipe's acceptor wants now,
    # its interest: the notify-keyspace-events classes only while one of its
    # clients may hear them, every class while one tracks keys (see
    # shardkv.acceptor.notifications); in effect for whatever the worker
    # runs after it answered.
    EVENTS = b"__events"
    MEMORY = b"__memory"  # maxmemory's parts: __memory figure | limit n | give n evict | take n
    # Several acceptors: a coordinator's exclusive use of a shard.
    HOLD = b"__hold"  # __hold: read only this pipe until __release
    RELEASE = b"__release"  # __release: read every pipe again
    SHUTDOWN = b"__shutdown"
    # __migdel key payload [key payload ...] -> how many it deleted: MIGRATE's
    # local delete, sent as a write fan-out's part (``__prepare``): each key
    # whose DUMP is still ``payload`` (what was sent to the target) goes.
    MIGRATE_DEL = b"__migdel"

    HANDLED: frozenset[bytes] = frozenset()  # filled in below
    ALL: frozenset[bytes] = frozenset()


Verb.ALL = frozenset(value for name, value in vars(Verb).items() if name.isupper() and type(value) is bytes)
Verb.HANDLED = Verb.ALL - {
    Verb.PARK,
    Verb.PARKDB,
    Verb.PARK_AT,
    Verb.SELECT,
    Verb.PREPARE,
    Verb.XREADGROUP_UPTO,
    Verb.XPREPARE,
    Verb.XCOMMIT,
    Verb.XABORT,
    Verb.RANDOM,
    Verb.RANDOM_BACK,
    Verb.HELD,
    Verb.HELD_COMMIT,
    Verb.HELD_DROP,
    Verb.CJSON,
}
