"""The bus between acceptors (``--acceptors K`` > 1): its messages, defined once.

With several acceptors, some commands need what the others know: PUBLISH
counts every subscriber, CLIENT LIST shows every connection, MONITOR sees
every command.  The acceptors talk through the supervisor, over the control
socket each acceptor already has (``socket.socketpair``, the one that
carries ``pipe <shard>`` and ``config <json>`` lines).  With one acceptor
there is no bus: nothing here is used.

On that socket, both ways, a message is either a line (``<kind> <payload>\\n``,
A's ``pipe`` and ``config``), or a bus frame: the line ``bus <n>\\n`` then
``n`` bytes, one RESP2 array (bulk strings, integers, nested arrays).
:class:`ControlReader` splits the stream into both.

Bus frames (the first element says what it is):

acceptor -> supervisor
    ``[ask, id, everyone, kind, *args]``: a question to the other acceptors
    (and to the asker too when ``everyone`` is 1: PUBLISH, so that every
    acceptor, the publisher's included, delivers in the supervisor's one
    order).  ``id`` is the asker's own number for it.
    ``[answer, origin, id, value]``: this acceptor's answer to question
    ``id`` of acceptor ``origin``.
    ``[tell, kind, *args]``: a message for every other acceptor, no answer.

supervisor -> acceptor
    ``[ask, origin, id, kind, *args]``: answer with ``[answer, origin, id, value]``.
    ``[answers, id, [value, ...]]``: the answers to this acceptor's
    question ``id``, from those that answered within :data:`ANSWER_WITHIN`
    seconds; an acceptor that is dead, restarting or stuck counts as
    nothing (it is simply not in the list).  ``sync`` (and ``listen``) is answered by every
    acceptor still alive: one that has not answered in :data:`SYNC_WITHIN`
    seconds is killed, and then counts as dead.
    ``[tell, origin, kind, *args]``: another acceptor's message.

The kinds (what ``args`` and the answer ``value`` are) are listed in
:data:`KINDS`; the acceptor binds a handler to each in
:mod:`shardkv.acceptor.wiring`.
"""

from __future__ import annotations

import os
from typing import Any

from shardkv.protocol.resp import decode_reply, encode

# How long the supervisor waits for the acceptors' answers to a question.
ANSWER_WITHIN = 2.0
# How long it waits for every acceptor to answer ``sync`` (CONFIG SET, which
# answers OK only once every live acceptor has applied it): one still
# silent then is stuck (stopped, or in a loop), and the supervisor kills it
# (SIGKILL) and starts it again, with the new settings; its death ends the
# wait.  Long, so that only a stuck one is killed: an acceptor still
# starting reads its control socket only once it runs its loop (at a load
# of 12-16 on 2 cores, 20-25 s after it was started), and 60 s leaves
# such a start more than twice that.  ``SHARDKV_SYNC_WITHIN`` (seconds) replaces it: for the
# tests alone, so that they need not wait that long.
SYNC_WITHIN = float(os.environ.get("SHARDKV_SYNC_WITHIN") or 60.0)

ASK = b"ask"
ANSWER = b"answer"
ANSWERS = b"answers"
TELL = b"tell"

# Questions (answered) and messages (told), by kind:
PUBLISH = b"publish"  # ask everyone [channel, message, (client id, script's since)] -> receivers here
SPUBLISH = b"spublish"  # as PUBLISH, of a shard channel (SSUBSCRIBE's)
PUBSUB = b"pubsub"  # ask [sub, *args] -> NUMSUB: counts; CHANNELS: names; NUMPAT: patterns
CLIENTS = b"clients"  # ask [type or b"", *ids] -> [CLIENT LIST line, ...] with ids
KILL = b"kill"  # ask [*CLIENT KILL filters] -> how many it closed
UNBLOCK = b"unblock"  # ask [id, 1 for ERROR, EXEC's pin id or absent] -> 1 if it unblocked that client (once decided)
UNPIN = b"unpin"  # tell [pin id, 1 if the EXEC ran]: the clients its UNBLOCKs pinned get their null, or wait again
# tell [1 or -1, key]: a cross-shard BLMOVE/BRPOPLPUSH of the teller waits on
# that source (database aside), or a cross-shard XREADGROUP on that stream,
# or no longer: a write of it here waits for its try (__bsettle, see
# shardkv.acceptor.blocking.try_at_once).  tell [0, key, n, key, n, ...]:
# all of them now, in place of those told before (see MOVERS_NOW).
MOVERS = b"movers"
# tell [1 or -1, key, ...]: a cross-shard BLPOP, BRPOP, BZPOPMIN, BZPOPMAX,
# BLMPOP or BZMPOP of the teller waits on those keys (database aside), or
# no longer (one message for all its keys): a transaction or script written
# here that writes one waits for its try (__bsettle, see
# shardkv.acceptor.blocking.try_at_once).  tell [0, key, n, ...]: all of
# them now, as MOVERS's.
POPPERS = b"poppers"
# ask [] -> 1 once the answerer told all its movers and poppers now
# (MOVERS [0, ...], POPPERS [0, ...]), ahead of its answer and of its later
# MOVERS and POPPERS: a restarted acceptor asks before it listens.
MOVERS_NOW = b"movers_now"
LOCATE = (
    b"locate"  # ask [id, ...] -> [[id, pipe, shard, token], ...]: those of its clients blocked on one shard
)
PAUSE = b"pause"  # ask [end (time.monotonic() in microseconds), mode] -> 1 once it paused its clients too
UNPAUSE = b"unpause"  # ask [] -> 1 once it ended its pause
HAS_CLIENT = b"has_client"  # ask [id] -> 1 if that client is its
# INVALIDATE and EVENTS are asked (answer: None) instead of told while a
# reply waits for them (see shardkv.acceptor.causal).
# tell [target id, tracking id, its RESP3, keys, null, (the asker's command that made it: see
# tracking.bus_invalidate) acceptor, shard or -1, seq or relay number, reply or event]: CLIENT TRACKING REDIRECT
INVALIDATE = b"invalidate"
BROKEN = b"broken"  # tell [tracking id, target id]: the client it redirects to is gone
# ask [acceptor, shard or -1, seq or relay number, reply or event] (as INVALIDATE's) -> 1 if
# that command of the acceptor's came behind one of its client's not yet answered (tracking.bus_behind)
BEHIND = b"behind"
# ask [] -> 1: what the asker sent before (CONFIG SET's config line) has
# arrived, and what the workers did about it (asked once they answered the
# asker's ``__config``) has reached this acceptor too (see
# shardkv.acceptor.commands.config.bus_sync); the supervisor waits for every live acceptor, past ANSWER_WITHIN
# (up to SYNC_WITHIN, then it kills those still silent).
SYNC = b"sync"
# ask [port] -> 1 once it bound that port (its sockets kept for the CONFIG SET
# that asked, whose config line follows), 0 if it cannot: a CONFIG SET port
# fails everywhere then; waited for as SYNC is.  tell [port]: that CONFIG
# SET failed, close them.
LISTEN = b"listen"
UNLISTEN = b"unlisten"
# ask everyone, the asker too [setuser, number, name, *rules] or [deluser, number, *names] -> 1
# (number: the asker's for that change); ask everyone but the asker [logreset] -> 1;
# [dump] -> [name rules, ...]; [log] -> its ACL LOG entries [[count, reason, context, object, user, ms, info], ...]
ACL = b"acl"
RESETSTAT = b"resetstat"  # ask [] -> 1 once it reset its counters (CONFIG RESETSTAT)
INFO = b"info"  # ask [] -> [name, value, ...] of INFO clients/stats figures and its command statistics
MONITORING = b"monitoring"  # ask [] -> 1 if it has a MONITOR client
MONITORS = b"monitors"  # tell [0 or 1]: it has (no longer has) MONITOR clients
# ask [[[place, lines], ...] (fills of places sent before), then lines or a new place
# number, in order] -> 1 once queued for its monitors: MONITOR lines of its commands
MONITOR = b"monitor"
HELLO = b"hello"  # tell []: a (re)started acceptor, which has no clients yet
# tell [relay number, [db, key, class, event], ...]: a multi-shard command's keyspace events, in order
EVENTS = b"events"
SEEN = b"seen"  # ask [shard, seq for acceptor 0, 1, ...] -> 1 once it handed out that shard's O frame seq
# The script cache: ask/tell [b"load", sha, body, number] or [b"flush", number] -> 1 (number:
# the last SCRIPT FLUSH's, or this one's; see ScriptCache.add); tell [b"forget", sha, number]:
# a shard refused to compile the script cached at that number (ScriptCache.forget); ask [b"dump"] ->
# [sha, body, number, ...], every script it has (a restarted acceptor's, before it listens).
SCRIPT = b"script"
# ask [[shard, pid, epoch], ...] -> 1 once it knows: the asker signalled those
# busy scripts (their worker's pid, and epoch as their ``S`` frame says) to stop
# (SCRIPT KILL, FUNCTION KILL), and answers ``+OK`` only after this, so a kill
# read here after that ``+OK`` waits for their ends (see
# shardkv.acceptor.scripting._KillAfterKill).
SCRIPT_KILLED = b"scriptkilled"
OOM = b"oom"  # ask [0 or 1] -> 1 once it took that as its OOM state (maxmemory shared out anew)
# A script's PUBLISH held back until the script ends (see shardkv.acceptor.scriptcalls):
# ask [token, channel, message, since, 1 for a shard channel] -> receivers here, kept for the token
HELD_COUNT = b"heldcount"
HELD_PUBLISH = b"heldpublish"  # ask [token, 1] -> 1 once delivered to those kept; tell [token, 0]: dropped
# ask [shutdown-timeout] -> 1 if it cancelled a stop of its own, once its
# shards are open again (SHUTDOWN ABORT, see shardkv.acceptor.durability),
# else 0; the supervisor waits ANSWER_WITHIN plus that many seconds, the
# longest an acceptor waits for its shards to open again.
ABORT = b"abort"

KINDS = (
    PUBLISH,
    SPUBLISH,
    HELD_COUNT,
    HELD_PUBLISH,
    PUBSUB,
    CLIENTS,
    KILL,
    UNBLOCK,
    UNPIN,
    MOVERS,
    POPPERS,
    MOVERS_NOW,
    LOCATE,
    PAUSE,
    UNPAUSE,
    HAS_CLIENT,
    INVALIDATE,
    BROKEN,
    BEHIND,
    SYNC,
    LISTEN,
    UNLISTEN,
    RESETSTAT,
    ACL,
    INFO,
    MONITORING,
    MONITORS,
    MONITOR,
    HELLO,
    EVENTS,
    SEEN,
    SCRIPT,
    SCRIPT_KILLED,
    OOM,
    ABORT,
)


# Lines on the control socket besides ``pipe`` and ``bus`` (CONFIG SET, see
# shardkv.acceptor.configorder).  acceptor -> supervisor: ``config <json>``,
# the changes of a CONFIG SET it applied.  supervisor -> the other acceptors
# (K > 1): ``config <n> <json>``, that CONFIG SET, number ``n`` in the
# supervisor's one order; -> the asker: ``ordered <n>``, its number.
CONFIG_LINE = b"config"
ORDERED_LINE = b"ordered"
# A stop by SIGTERM or SIGINT (see shardkv.supervisor and
# shardkv.acceptor.durability.stop_by_signal), with K = 1 too.
# supervisor -> one acceptor: ``stop <flags>``, once no script is busy,
# shut every shard down as SHUTDOWN would with those ``shutdown-on-sig*``
# flags.  acceptor -> supervisor: ``stopping``
# as it begins; ``shutting`` once it has sent the shards their
# ``__shutdown`` (past any busy script: from then the supervisor bounds the
# wait, a frozen worker never answering); then ``SHUTDOWN_SIGNAL`` once the shards are done (or a save
# failed with ``force``), or ``stop-failed`` once a failed save has opened
# them again: the server serves on, as Redis does.
STOP_LINE = b"stop"
STOPPING_LINE = b"stopping"
SHUTTING_LINE = b"shutting"
STOP_FAILED_LINE = b"stop-failed"
# A worker restarted after the start (it died) reloads its shard.
# supervisor -> every acceptor: ``reloading <shard> <saved_at>`` (the new
# worker's last save, its start in Unix seconds) before its new pipe
# (and to an acceptor restarted meanwhile), ``reloaded <shard>`` once it
# has loaded; meanwhile a command for that shard gets -LOADING (see
# shardkv.acceptor.dispatch), as Redis answers while it loads again.
RELOADING_LINE = b"reloading"
RELOADED_LINE = b"reloaded"


def frame(message: list[Any]) -> bytes:
    """A bus message as it goes on the control socket."""
    body = encode(message)
    return b"bus %d\n%s" % (len(body), body)


class ControlReader:
    """Splits a control socket's stream into lines and bus messages (sans-IO)."""

    def __init__(self) -> None:
        self.buf = b""

    def feed(self, data: bytes) -> list[tuple[bytes, Any]]:
        """``(kind, payload)`` of each whole message: a line's kind and the
        rest of it, or ``(b"bus", the decoded array)``."""
        buf = self.buf + data
        out: list[tuple[bytes, Any]] = []
        pos = 0
        while True:
            eol = buf.find(b"\n", pos)
            if eol < 0:
                break
            kind, _, payload = buf[pos:eol].partition(b" ")
            if kind == b"bus":
                n = int(payload)
                end = eol + 1 + n
                if len(buf) < end:
                    break
                out.append((kind, decode_reply(buf[eol + 1 : end])))
                pos = end
            else:
                out.append((kind, payload))
                pos = eol + 1
        self.buf = buf[pos:]
        return out
