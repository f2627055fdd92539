"""How the acceptor is put together: every handler and hook, bound in one place.

:func:`build` makes the :class:`~shardkv.acceptor.server.Acceptor` that the
process runs (:mod:`shardkv.acceptor.main`) and that the benchmarks and unit
tests drive.  It binds each row of the command table whose route is
``local`` to exactly one handler, and lists the interceptors and hooks in
the order they run.  Nothing is registered by importing a module: what is
not written here is not called.  :func:`check` refuses, at start-up, a
``local`` row with no handler and a handler with no ``local`` row.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from shardkv.acceptor import (
    blocking,
    causal,
    crossshard,
    diskerrors,
    durability,
    latency,
    limits,
    listeners,
    memory,
    memorybudget,
    migrate,
    monitor,
    notifications,
    pause,
    pubsub,
    scriptcalls,
    scripting,
    security,
    slowlog,
    tracking,
    transactions,
    users,
)
from shardkv.acceptor.commands import command, config, connection, generic, replication, server
from shardkv.acceptor.server import Acceptor, LocalHandler, Wiring
from shardkv.protocol import bus
from shardkv.protocol.commands import COMMANDS, Command
from shardkv.runtime import serverlog


class WiringError(RuntimeError):
    """The handlers do not match the command table's ``local`` rows."""


def local_handlers() -> dict[str, LocalHandler]:
    """The commands the acceptor answers itself, grouped as Redis groups them."""
    return {
        # connection
        "ping": connection.ping,
        "echo": connection.echo,
        "quit": connection.quit_,
        "hello": connection.hello,
        "auth": users.auth,
        "select": connection.select,
        "client": connection.client_cmd,
        "reset": pubsub.reset,
        # server
        "command": command.command,
        "config": config.config_cmd,
        "info": server.info,
        "time": server.time_,
        "lastsave": durability.lastsave,
        "debug": server.debug,
        "swapdb": server.swapdb,
        "shutdown": durability.shutdown,
        "monitor": server.monitor_,
        "slowlog": slowlog.slowlog,
        "latency": latency.latency,
        "memory": memory.memory,
        "cluster": server.cluster,
        "acl": users.acl_command,
        "lolwut": server.lolwut,
        "module": server.module,
        # replication: a master without replicas
        "role": replication.role,
        "replicaof": replication.replicaof,
        "slaveof": replication.replicaof,
        "failover": replication.failover,
        "psync": replication.psync,
        "sync": replication.psync,
        "replconf": replication.replconf,
        # cluster: disabled
        "asking": server.cluster_only,
        "readonly": server.cluster_only,
        "readwrite": server.cluster_only,
        # generic
        "wait": generic.wait,
        "scan": generic.scan,
        "migrate": migrate.migrate,
        # transactions
        "multi": transactions.multi,
        "exec": transactions.exec_,
        "discard": transactions.discard,
        "watch": transactions.watch,
        "unwatch": transactions.unwatch,
        # scripting
        "eval": scripting.eval_command,
        "evalsha": scripting.eval_command,
        "eval_ro": scripting.eval_command,
        "evalsha_ro": scripting.eval_command,
        "script": scripting.script_command,
        "fcall": scripting.fcall_command,
        "fcall_ro": scripting.fcall_command,
        "function": scripting.function_command,
        # pubsub
        "subscribe": pubsub.subscribe,
        "unsubscribe": pubsub.unsubscribe,
        "psubscribe": pubsub.psubscribe,
        "punsubscribe": pubsub.punsubscribe,
        "publish": pubsub.publish,
        "pubsub": pubsub.pubsub,
        "ssubscribe": pubsub.ssubscribe,
        "sunsubscribe": pubsub.sunsubscribe,
        "spublish": pubsub.spublish,
    }


def _bus_hello(server: Acceptor, origin: int, args: list) -> None:
    """Acceptor ``origin`` (re)started: it has no monitors yet, and its
    EXECs that pinned clients here will never say how they ended."""
    monitor.bus_hello(server, origin, args)
    blocking.unpin_all(server, origin)
    blocking.forget_movers(origin)


def wiring() -> Wiring:
    """Everything the acceptor calls outside its own modules, in order."""
    return Wiring(
        local=local_handlers(),
        fast_paths={"evalsha": scripting.evalsha_fast, "evalsha_ro": scripting.evalsha_fast},
        behind_shortcuts=scripting.behind_shortcuts,
        scripts_alike=scripting.scripts_alike,
        interceptors=(transactions.queue, listeners.bind_before_exec),
        cross_shard=crossshard.run_cross_shard,
        atomic_fan_out=crossshard.run_write_fan_out,
        block=blocking.block,
        discard_transaction=transactions.discard_transaction,
        on_connect=(pubsub.on_connect, security.on_connect),
        on_disconnect=(
            blocking.on_disconnect,
            monitor.stop,
            pause.forget,
            pubsub.on_disconnect,
            tracking.on_disconnect,
            transactions.on_disconnect,
        ),
        on_reset=(tracking.disable,),
        on_attach=(
            config.config_to_worker,
            notifications.on_attach,
            memorybudget.on_attach,
            scripting.forget_shard,
            scripting.monitor_scripts,
            scripting.refuse_waiting,
            users.log_script_refusals,
            slowlog.on_attach,
            scriptcalls.on_attach,
            diskerrors.on_attach,
            durability.on_attach,
        ),
        on_config=(
            listeners.on_config,
            durability.tell_supervisor,
            limits.on_config,
            memorybudget.on_config,
            pubsub.on_config,
            security.on_config,
            slowlog.on_config,
            tracking.on_config,
            serverlog.on_config,
        ),
        on_resetstat=(slowlog.on_resetstat,),
        # The decisions file's everysec fsync; MIGRATE's idle connections.
        on_cron=(crossshard.sync_decisions, migrate.close_idle, tracking.drop_answered),
        after_command=tracking.after_command,
        exec_ran=tracking.exec_ran,
        atomic_exec_reads=tracking.atomic_exec_reads,
        expect_tracking=tracking.expect_tracking,
        written_before_on=tracking.written_before_on,
        expect_subscriptions=notifications.expect_subscriptions,
        exec_script=scripting.ExecScript.parse,
        client_subcommands={
            b"TRACKING": tracking.client_tracking,
            b"CACHING": tracking.client_caching,
            b"GETREDIR": tracking.client_getredir,
            b"TRACKINGINFO": tracking.client_trackinginfo,
        },
        tracking_totals=tracking.totals,
        config_set_changes=config.config_set_changes,
        # Keyspace notifications publish before client-side caching invalidates.
        event_listeners=(notifications.publish, tracking.on_events, memorybudget.on_events),
        event_masks=(notifications.own_mask, tracking.events_mask, memorybudget.events_mask),
        on_subscriptions=(notifications.on_subscriptions,),
        # The bus between acceptors (K > 1 only): one handler per kind.
        bus_handlers={
            bus.PUBLISH: pubsub.bus_publish,
            bus.SPUBLISH: pubsub.bus_spublish,
            bus.HELD_COUNT: pubsub.bus_held_count,
            bus.HELD_PUBLISH: pubsub.bus_held_publish,
            bus.PUBSUB: pubsub.bus_pubsub,
            bus.CLIENTS: connection.bus_clients,
            bus.KILL: connection.bus_kill,
            bus.UNBLOCK: connection.bus_unblock,
            bus.UNPIN: connection.bus_unpin,
            bus.MOVERS: blocking.bus_movers,
            bus.POPPERS: blocking.bus_poppers,
            bus.MOVERS_NOW: blocking.bus_movers_now,
            bus.LOCATE: connection.bus_locate,
            bus.PAUSE: connection.bus_pause,
            bus.HAS_CLIENT: tracking.bus_has_client,
            bus.INVALIDATE: tracking.bus_invalidate,
            bus.BROKEN: tracking.bus_broken,
            bus.BEHIND: tracking.bus_behind,
            bus.UNPAUSE: connection.bus_unpause,
            bus.INFO: server.bus_info,
            bus.SYNC: config.bus_sync,
            bus.LISTEN: listeners.bus_listen,
            bus.UNLISTEN: listeners.bus_unlisten,
            bus.RESETSTAT: config.bus_resetstat,
            bus.ACL: users.bus_acl,
            bus.MONITORING: monitor.bus_monitoring,
            bus.MONITORS: monitor.bus_monitors,
            bus.MONITOR: monitor.bus_monitor,
            bus.HELLO: _bus_hello,
            bus.EVENTS: notifications.bus_events,
            bus.SEEN: causal.bus_seen,
            bus.SCRIPT: scripting.bus_script,
            bus.SCRIPT_KILLED: scripting.bus_script_killed,
            bus.OOM: memorybudget.bus_oom,
            bus.ABORT: durability.bus_abort,
        },
        stop_by_signal=durability.stop_by_signal,
        on_bus_start=(monitor.on_bus_start,),
        on_reloaded=(durability.on_reloaded,),
        on_restart=(scripting.learn_scripts, users.learn_users, blocking.learn_movers),
    )


def check(
    handlers: Mapping[str, LocalHandler],
    table: Mapping[str, Command] = COMMANDS,
    fast_paths: Mapping[str, object] | None = None,
) -> None:
    """Raise :class:`WiringError` unless ``handlers`` has exactly one entry
    for each ``local`` row of ``table``, and none for any other name; a fast
    path is a shortcut of one of those handlers."""
    rows = {name for name, cmd in table.items() if cmd.route == "local"}
    missing = sorted(rows - handlers.keys())
    extra = sorted(handlers.keys() - rows)
    problems = []
    stray = sorted((fast_paths or {}).keys() - handlers.keys())
    if stray:
        problems.append("fast paths of no local handler: " + ", ".join(stray))
    if missing:
        problems.append("local commands with no handler: " + ", ".join(missing))
    if extra:
        problems.append("handlers with no local row in the command table: " + ", ".join(extra))
    if problems:
        raise WiringError("; ".join(problems))


def build(config: dict[str, Any]) -> Acceptor:
    """The acceptor for ``config``, wired; fails loudly on a wiring mistake."""
    bound = wiring()
    check(bound.local, fast_paths=bound.fast_paths)
    acceptor = Acceptor(config, bound)
    acceptor.users.client_info = connection.client_info_line  # ACL LOG's client-info
    acceptor.users.client_then = connection.client_then  # (a script's, as it was called)
    return acceptor
