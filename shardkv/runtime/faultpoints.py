"""Named steps of the cross-shard commit protocol where a test can hold a process.

With ``SHARDKV_FAULT_FILE`` set in the environment, a process that reaches
a fault point reads that file, and stops itself (SIGSTOP) if the file
names the point, alone or as ``point@shard``.  The fault-injection tests
(``tests/system/test_crash_atomic.py``, ``tests/system/faults.py``) then kill a
process of their choice and let the held one go on, so every failure case
of :mod:`shardkv.acceptor.crossshard` is reached exactly.  Without the variable
(always, outside those tests) a fault point is one test of a constant.

Points: ``parked`` (a shard has answered ``__park``/``__prepare`` and
parked), ``ran`` (the executor has run the commands and logged its prepare
record, and not answered yet), ``prepared`` (a shard has logged its prepare
record and not answered ``Prepare`` yet), ``decided`` (a shard has received ``Decide``
and applied nothing yet), ``finished`` (it has answered ``Finished``),
``committed`` (the acceptor has recorded a commit and told no shard).
"""

from __future__ import annotations

import os
import signal

_FILE = os.environ.get("SHARDKV_FAULT_FILE") or None
ACTIVE = _FILE is not None


def hold(point: str, shard: int = -1) -> None:
    """Stop this process here if the fault file names ``point``."""
    if _FILE is None:
        return
    try:
        with open(_FILE) as f:
            named = f.read().split()
    except OSError:
        return
    if point in named or f"{point}@{shard}" in named:
        os.kill(os.getpid(), signal.SIGSTOP)
