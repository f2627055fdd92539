"""Each shard's flag that it may run a script, for the acceptors' (un)subscribes (K > 1).

A SUBSCRIBE or UNSUBSCRIBE (and the P and S variants) waits, as in Redis,
for the scripts that run (:func:`shardkv.acceptor.blocking.serve_after_scripts`):
with one acceptor its own shard links say whether one may run; with
several, another acceptor's scripts are not seen there, and the wait was a
round trip to every shard.  So the supervisor makes one small shared file
(:class:`ScriptFlags`, a ``memfd``) with one slot per shard, and hands it
to every worker and acceptor it starts (K > 1 only).  Worker ``i`` alone
writes slot ``i``: 1 *before* it starts a script, parks for a cross-shard
operation, or is held (``__hold``, a granted ``T`` frame) or has prepared
one (``Keyspace.raise_flag``), and 0 again between frames once none of
those is left (``Pipes.lower_flag``: after the batch whose script ended,
its reply written or queued).  A slot set while nothing of the kind goes
on only costs the round trip; a worker started again writes its slot from
what it has (a prepared operation in doubt: 1).

An acceptor reads the slots after it has read the (un)subscribe, and
skips the round trip when all are 0 (and no link of its own has a command
to answer or an operation, as with one acceptor).  Why that is safe: the
worker's store of 1 comes, in its program order, before everything the
script, park or hold does, and whatever of it another process can see
leaves through a system call (a pipe write, the script's ``Q`` frames,
its reply, another acceptor's bus frames), whose kernel locks order the
store before the frame's read.  So an acceptor that reads 0 has read
nothing that such a script caused, and the (un)subscribe, one step of the
acceptor's single thread, comes before every frame of that script the
acceptor reads later: its PUBLISH counts and PUBSUB calls see the
(un)subscribe whole, and its PUBLISH passes over a subscriber stamped
after its run's start (``pubsub.publish_message``'s ``since``), exactly
as for a script that started after a ``__ping`` came back.  A slot of 0
read while the script already ended and its reply or held PUBLISHes are
still on their way is what a ``__ping`` answered after that script also
allowed (the acceptor's own script's reply: its link still has the
command to answer, and it waits).  An 8-byte aligned store is atomic, and
only the low byte ever changes.
"""

from __future__ import annotations

from shardkv.runtime.sharedslots import SharedSlots


class ScriptFlags(SharedSlots):
    """Whether each of ``n`` shards may run a script (1) or surely runs none (0), shared between processes."""

    NAME = "shardkv-scriptflags"

    def any_raised(self) -> bool:
        """Whether some shard may run a script, be parked, held or prepared."""
        return any(self.slots)
