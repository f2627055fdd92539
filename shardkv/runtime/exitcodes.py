"""The exit statuses by which a child tells the supervisor that starting
it again cannot help (or must not), so the supervisor stops shardkv instead; the
signal by which an acceptor's SHUTDOWN stops it; and the message by which
it tells a worker how a signal's stop shuts down; and the message that
hands an acceptor started while the shards load its ends of their pipes.

They live here, apart from the worker and the acceptor, so that the
supervisor can read them without importing either (see
:mod:`shardkv.supervisor`: each spawned child imports only its own side).
"""

from __future__ import annotations

import signal

EXIT_LOAD_FAILED = 3  # a worker that cannot load its data
EXIT_CANNOT_LISTEN = 3  # an acceptor that cannot listen on its port
# A worker that could not write or fsync its AOF with ``appendfsync
# always``: as Redis's flushAppendOnlyFile, which exits (status 1) then,
# shardkv stops with status 1, saving nothing.
EXIT_AOF_FAILED = 4
# An acceptor's SHUTDOWN, once it has saved what it should (or was told
# NOSAVE or FORCE), stops the supervisor with this signal rather than
# SIGTERM: a stop by SIGTERM or SIGINT still has to save, and a shard whose
# worker is gone then could not (exit status 1).
SHUTDOWN_SIGNAL = signal.SIGUSR1
# A stop by SIGTERM or SIGINT: the supervisor's last message on each
# worker's control pipe before its SIGTERM, followed by the flags that
# ``shutdown-on-sigterm`` or ``shutdown-on-sigint`` holds, as CONFIG GET
# shows them ("default", "nosave", "save force" ...).  A worker that heard
# none (the supervisor died, or it stops for another reason) shuts down as
# with "default".
STOP_FLAGS = b"stop-flags "
# An acceptor started while the workers load listens at once and answers
# -LOADING until the supervisor, once every worker has loaded, sends it its
# end of each worker's data pipe: in order, in messages of this one byte
# with at most PIPES_PER_MESSAGE of them as ancillary data (Linux passes at
# most 253 descriptors in one).  An empty read: the supervisor stopped.
PIPES_MESSAGE = b"p"
PIPES_PER_MESSAGE = 200


def stop_mode(flags: str) -> str:
    """The save mode of a stop's flags: ``save`` (always), ``nosave``
    (never) or ``default`` (when there are ``save`` rules), as Redis's
    ``finishShutdown`` reads SHUTDOWN_SAVE and SHUTDOWN_NOSAVE.  (``now``
    waits for no replicas, and shardkv has none: neither does Redis
    without them; ``force`` is read by the caller.)"""
    names = flags.split()
    return "save" if "save" in names else "nosave" if "nosave" in names else "default"
