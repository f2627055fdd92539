"""The exit statuses by which a child tells the supervisor that starting
it again cannot help, so the supervisor stops shardkv instead.

They live here, apart from the worker and the acceptor, so that the
supervisor can read them without importing either (see
:mod:`shardkv.supervisor`: each spawned child imports only its own side).
"""

from __future__ import annotations

EXIT_LOAD_FAILED = 3  # a worker that cannot load its data
EXIT_CANNOT_LISTEN = 3  # an acceptor that cannot listen on its port
