"""The acceptor process's entry point: build the acceptor, run its loop.

The supervisor starts :func:`serve` in a child process with the pipes to
the workers.  :func:`shardkv.acceptor.wiring.build` puts the acceptor
together; :meth:`shardkv.acceptor.server.Acceptor.serve` listens.
"""

from __future__ import annotations

import asyncio
import dataclasses
import signal
from multiprocessing.connection import Connection
from typing import Any

from shardkv.acceptor import crossshard, wiring
from shardkv.acceptor.scriptcache import CACHE
from shardkv.acceptor.server import Acceptor
from shardkv.protocol import bus
from shardkv.runtime import faultpoints, gctuning, serverlog
from shardkv.runtime.clientcount import ClientCounts
from shardkv.runtime.loadprogress import LoadProgress
from shardkv.runtime.parentdeath import die_with_parent
from shardkv.runtime.proctitle import set_name
from shardkv.runtime.scriptflags import ScriptFlags
from shardkv.runtime.scriptflushes import ScriptFlushes
from shardkv.runtime.slowlogfile import SlowLogFile


def serve(
    config: dict[str, Any],
    pipes: list[Connection],
    control: Connection | None = None,
    index: int = 0,
    client_counts: ClientCounts | None = None,
    restarted: bool = False,
    config_number: int = 0,
    script_flushes: ScriptFlushes | None = None,
    slow_log: SlowLogFile | None = None,
    load_progress: LoadProgress | None = None,
    started_at: int = 0,
    script_flags: ScriptFlags | None = None,
    *,
    loading: Connection | None = None,
) -> None:
    """The entry point of acceptor process ``index`` (its coordinator number);
    ``client_counts``: every acceptor's clients, for ``maxclients`` (K > 1);
    ``restarted``: the supervisor started it again after it died;
    ``config_number``: the last CONFIG SET's number (K > 1), whose values
    ``config`` has (see shardkv.acceptor.configorder);
    ``script_flushes``: the last SCRIPT FLUSH's number, shared by every
    acceptor (see shardkv.runtime.scriptflushes); ``slow_log``: the slow
    log every process shares (see shardkv.runtime.slowlogfile);
    ``load_progress``: how far the workers' loading has come (INFO, see
    shardkv.runtime.loadprogress); ``started_at``: when the supervisor
    started the workers first (Unix seconds), the server's last save until
    a shard saves, as Redis's at startup (LASTSAVE while they load, see
    :attr:`Acceptor.lastsave`); ``script_flags``: whether each shard may
    run a script (K > 1, see shardkv.runtime.scriptflags); ``loading``: started while the workers load, it listens at once and
    answers -LOADING until its ``pipes`` come through this pipe from the
    supervisor (see :meth:`shardkv.acceptor.server.Acceptor.serve`)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the supervisor decides
    die_with_parent()  # SIGTERM (close the port and exit) if the supervisor dies
    nacceptors = config.get("acceptors", 1)
    set_name("shardkv-accept" if nacceptors == 1 else f"shardkv-accept{index}")
    serverlog.setup(config)
    acceptor = wiring.build(config)
    acceptor.set_index(index, nacceptors)
    acceptor.restarted = restarted
    acceptor.config_order.last = config_number
    if faultpoints.ACTIVE:  # the fault-injection tests only
        acceptor.client_class = faultpoints.faulty_client(acceptor.client_class)
        acceptor.local = local = dict(acceptor.local)
        faultpoints.faulty_handlers(local, ("echo",))
        handlers = dict(acceptor.wiring.bus_handlers)
        faultpoints.faulty_bus_handlers(handlers, (bus.PUBSUB, bus.KILL))
        acceptor.wiring = dataclasses.replace(acceptor.wiring, bus_handlers=handlers)
    if client_counts is not None:
        client_counts.set(index, 0)  # a restarted acceptor's clients are gone
        acceptor.client_counts = client_counts
    if script_flushes is not None:
        acceptor.script_flushes = script_flushes
        if nacceptors > 1:  # the script cache's log (see shardkv.runtime.scriptflushes)
            CACHE.log = script_flushes
    if slow_log is not None:
        acceptor.stats.shared = slow_log
    acceptor.load_progress = load_progress
    acceptor.script_flags = script_flags
    if started_at:
        acceptor.lastsave = started_at
    crossshard.coordinator_of(acceptor)  # before any pipe: a worker's first frame is for it
    loop_factory = None
    if config.get("uvloop"):
        try:
            import uvloop  # optional: plain asyncio without it

            loop_factory = uvloop.new_event_loop
            acceptor.event_loop_name = "uvloop"
        except ImportError:
            pass
    signal.signal(signal.SIGTERM, lambda *_: _stop(acceptor))
    gctuning.settle()
    try:
        with asyncio.Runner(loop_factory=loop_factory) as runner:
            runner.run(acceptor.serve(pipes, control, loading))
    finally:
        acceptor.coordinator.close()  # type: ignore[attr-defined]


def _stop(acceptor: Acceptor) -> None:
    """SIGTERM: ask the loop to shut down; before it runs, exit at once.
    A SIGTERM that arrives once the loop is closed (the acceptor is already
    shutting down) changes nothing and says nothing."""
    fut = acceptor.shutdown_requested
    if acceptor.loop is not None and fut is not None:
        try:
            acceptor.loop.call_soon_threadsafe(lambda: fut.done() or fut.set_result(None))  # type: ignore[func-returns-value]
        except RuntimeError:  # "Event loop is closed": already stopping
            pass
    else:
        raise SystemExit(0)
