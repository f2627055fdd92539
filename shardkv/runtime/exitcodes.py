"""The exit statuses by which a child tells the supervisor that starting
it again cannot help, so the supervisor stops shardkv instead; and the
signal by which an acceptor's SHUTDOWN stops it.

They live here, apart from the worker and the acceptor, so that the
supervisor can read them without importing either (see
:mod:`shardkv.supervisor`: each spawned child imports only its own side).
"""

from __future__ import annotations

import signal

EXIT_LOAD_FAILED = 3  # a worker that cannot load its data
EXIT_CANNOT_LISTEN = 3  # an acceptor that cannot listen on its port
# An acceptor's SHUTDOWN, once it has saved what it should (or was told
# NOSAVE or FORCE), stops the supervisor with this signal rather than
# SIGTERM: a stop by SIGTERM or SIGINT still has to save, and a shard whose
# worker is gone then could not (exit status 1).
SHUTDOWN_SIGNAL = signal.SIGUSR1
