"""The table of every configuration parameter: Redis 7.0's, and shardkv's own.

Facts from Redis 7.0.15's ``src/config.c`` (``static_configs``): each
parameter's name, alias, type, default, bounds and flags.  Flags:

* ``immutable``: CONFIG SET answers "can't set immutable config";
* ``protected``: refused unless ``enable-protected-configs`` allows the client;
* ``hidden``: CONFIG GET lists it only when asked by its exact name;
* ``sensitive``: its value is redacted from MONITOR;
* ``multi-arg``: CONFIG SET splits the value on spaces;
* ``fixed``: shardkv's own: Redis can change it at run time, shardkv cannot
  (yet), so CONFIG SET to another value answers "can't set immutable config"
  once the other checks pass (to the value it has, it changes nothing).

``used=True`` marks the parameters shardkv acts on; the others are accepted,
checked and reported as Redis does, and change nothing in shardkv.  Where
shardkv's default differs from Redis's, the comment says why.
"""

from __future__ import annotations

import os
from typing import Any, NamedTuple


class Row(NamedTuple):
    """One parameter: the arguments of its :class:`shardkv.runtime.config.Setting`,
    which config builds from this table (this module imports nothing of it)."""

    name: str
    kind: str
    default: Any
    flags: frozenset[str]
    options: dict[str, Any]  # Setting's keyword arguments: low, high, choices, alias, used, help ...


OBUF_DEFAULT = "normal 0 0 0 slave 268435456 67108864 60 pubsub 33554432 8388608 60"

INT_MAX = 2**31 - 1
INT_MIN = -(2**31)
UINT_MAX = 2**32 - 1
LONG_MAX = 2**63 - 1
ULLONG_MAX = 2**64 - 1

_OBUF_HELP = "Per class 'hard soft seconds': disconnect a subscriber whose unread output passes them."
_DATABASES_HELP = "Number of databases (SELECT 0 to databases-1)."

# Enums: (name, value) in Redis's order (its error lists them in this order,
# and CONFIG GET shows the first name of a value).
SUPERVISED = (("upstart", 1), ("systemd", 2), ("auto", 3), ("no", 0))
SYSLOG_FACILITY = (("user", 8), *((f"local{i}", 128 + 8 * i) for i in range(8)))
DISKLESS_LOAD = (("disabled", 0), ("on-empty-db", 1), ("swapdb", 2))
LOGLEVEL = (("debug", 0), ("verbose", 1), ("notice", 2), ("warning", 3))
MAXMEMORY_POLICY = (
    ("volatile-lru", 0), ("volatile-lfu", 1), ("volatile-random", 2), ("volatile-ttl", 3),
    ("allkeys-lru", 4), ("allkeys-lfu", 5), ("allkeys-random", 6), ("noeviction", 7),
)  # fmt: skip
APPENDFSYNC = (("everysec", 2), ("always", 1), ("no", 0))
OOM_SCORE_ADJ = (("no", 0), ("yes", 1), ("relative", 1), ("absolute", 2))
ACL_PUBSUB_DEFAULT = (("allchannels", 1), ("resetchannels", 0))
SANITIZE_DUMP_PAYLOAD = (("no", 0), ("yes", 1), ("clients", 2))
PROTECTED_ACTION = (("no", 0), ("yes", 1), ("local", 2))
ENDPOINT_TYPE = (("ip", 0), ("hostname", 1), ("unknown-endpoint", 2))
PROPAGATION_ERROR = (("ignore", 0), ("panic", 1), ("panic-on-replicas", 2))
SHUTDOWN_ON_SIGNAL = (("default", 0), ("save", 1), ("nosave", 2), ("now", 4), ("force", 8))
TLS_AUTH_CLIENTS = (("no", 0), ("yes", 1), ("optional", 2))


def machine_acceptors(cores: int | None = None) -> int:
    """``acceptors auto``, the default: half the cores this process may run
    on (``cores``, when given), at least 1 and at most 256.

    The projection in README ("Projection on N cores") splits N cores
    between K acceptors and S workers in proportion to their CPU per
    request, which comes out at K about S about N / 2; so 1 on a 2-core
    machine (the shape shardkv always had), 8 on 16 cores.
    """
    if cores is None:
        try:
            cores = len(os.sched_getaffinity(0))
        except (AttributeError, OSError):  # not Linux
            cores = os.cpu_count() or 1
    return max(1, min(256, cores // 2))


def _flags(text: str) -> frozenset[str]:
    return frozenset(text.split())


def _bool(name: str, default: bool, flags: str = "", **kw: Any) -> Row:
    return Row(name, "bool", default, _flags(flags), kw)


def _str(name: str, default: str, flags: str = "", **kw: Any) -> Row:
    return Row(name, "str", default, _flags(flags), kw)


def _enum(name: str, default: str, choices: tuple, flags: str = "", **kw: Any) -> Row:
    return Row(name, "enum", default, _flags(flags), dict(choices=choices, **kw))


def _flagset(name: str, default: str, choices: tuple, flags: str = "", **kw: Any) -> Row:
    return Row(name, "flags", default, _flags(flags), dict(choices=choices, **kw))


def _number(kind: str):
    def make(name: str, default: int, low: int, high: int, flags: str = "", **kw: Any) -> Row:
        return Row(name, kind, default, _flags(flags), dict(low=low, high=high, **kw))

    return make


_int = _number("int")
_memory = _number("memory")
_octal = _number("octal")
_memory_percent = _number("percent")


def _special(name: str, default: str, flags: str = "", **kw: Any) -> Row:
    return Row(name, name, default, _flags(flags), kw)


_TABLE = [
    _bool("rdbchecksum", True, flags="immutable"),
    _bool("daemonize", False, flags="immutable"),
    _bool("io-threads-do-reads", False, flags="immutable"),
    _bool("always-show-logo", False, flags="immutable"),
    _bool("protected-mode", True, used=True, help="Refuse non-loopback clients when no password is set."),
    _bool("rdbcompression", True),
    _bool("rdb-del-sync-files", False),
    _bool("activerehashing", True),
    _bool(
        "stop-writes-on-bgsave-error",
        True,
        used=True,
        help="Refuse writes while the last background save failed (with save rules).",
    ),
    _bool("set-proc-title", True, flags="immutable"),
    _bool("dynamic-hz", True),
    _bool("lazyfree-lazy-eviction", False),
    _bool("lazyfree-lazy-expire", False),
    _bool("lazyfree-lazy-server-del", False),
    _bool("lazyfree-lazy-user-del", False),
    _bool("lazyfree-lazy-user-flush", False),
    _bool("repl-disable-tcp-nodelay", False),
    _bool("repl-diskless-sync", True),
    _bool("aof-rewrite-incremental-fsync", True),
    _bool("no-appendfsync-on-rewrite", False),
    _bool("cluster-require-full-coverage", True),
    _bool("rdb-save-incremental-fsync", True),
    _bool(
        "aof-load-truncated",
        True,
        used=True,
        help="At start, cut off a torn last AOF record with a warning; no: refuse to start.",
    ),
    _bool("aof-use-rdb-preamble", True),
    _bool("aof-timestamp-enabled", False),
    _bool("cluster-replica-no-failover", False, alias="cluster-slave-no-failover"),
    _bool("replica-lazy-flush", False, alias="slave-lazy-flush"),
    _bool("replica-serve-stale-data", True, alias="slave-serve-stale-data"),
    _bool("replica-read-only", True, alias="slave-read-only"),
    _bool("replica-ignore-maxmemory", True, alias="slave-ignore-maxmemory"),
    _bool("jemalloc-bg-thread", True),
    _bool("activedefrag", False),
    _bool("syslog-enabled", False, flags="immutable"),
    _bool("cluster-enabled", False, flags="immutable"),
    _bool("appendonly", False, used=True, help="Keep an append-only file per shard."),
    _bool("cluster-allow-reads-when-down", False),
    _bool("cluster-allow-pubsubshard-when-down", True),
    _bool("crash-log-enabled", True),
    _bool("crash-memcheck-enabled", True),
    _bool("use-exit-on-panic", False, flags="hidden"),
    _bool("disable-thp", True, flags="immutable"),
    _bool("cluster-allow-replica-migration", True),
    _bool("replica-announced", True),
    _bool("latency-tracking", True, used=True, help="Track per-command latency percentiles."),
    _bool("aof-disable-auto-gc", False),
    _bool("replica-ignore-disk-write-errors", False),
    _str("aclfile", "", flags="immutable"),
    _str("unixsocket", "", flags="immutable"),
    _str("pidfile", "", flags="immutable"),
    _str("replica-announce-ip", "", alias="slave-announce-ip"),
    _str("masteruser", "", flags="sensitive"),
    _str("cluster-announce-ip", ""),
    _str("cluster-config-file", "nodes.conf", flags="immutable"),
    _str("cluster-announce-hostname", ""),
    _str("syslog-ident", "redis", flags="immutable"),
    _str(
        "dbfilename",
        "dump.rdb",
        flags="protected",
        used=True,
        help="Snapshot file name; shard i uses NAME.shard-i.",
    ),
    _str(
        "appendfilename",
        "appendonly.aof",
        flags="immutable",
        used=True,
        help="AOF file name; shard i uses NAME.shard-i.",
    ),
    _str("appenddirname", "appendonlydir", flags="immutable"),
    _str("server_cpulist", "", flags="immutable"),
    _str("bio_cpulist", "", flags="immutable"),
    _str("aof_rewrite_cpulist", "", flags="immutable"),
    _str("bgsave_cpulist", "", flags="immutable"),
    _str("ignore-warnings", ""),
    _str("proc-title-template", "{title} {listen-addr} {server-mode}"),
    _str("bind-source-addr", ""),
    _str("logfile", "", flags="immutable", used=True, help="Log file; empty logs to standard error."),
    _str("masterauth", "", flags="sensitive"),
    _str(
        "requirepass",
        "",
        flags="sensitive",
        used=True,
        help="Password clients must AUTH with; empty for none.",
    ),
    _enum("supervised", "no", SUPERVISED, flags="immutable"),
    _enum("syslog-facility", "local0", SYSLOG_FACILITY, flags="immutable"),
    _enum("repl-diskless-load", "disabled", DISKLESS_LOAD),
    _enum("loglevel", "notice", LOGLEVEL, used=True, help="Log verbosity."),
    _enum(
        "maxmemory-policy", "noeviction", MAXMEMORY_POLICY, used=True, help="What to do at the memory limit."
    ),
    _enum("appendfsync", "everysec", APPENDFSYNC, used=True, help="When to fsync the AOF."),
    _enum("oom-score-adj", "no", OOM_SCORE_ADJ),
    _enum("acl-pubsub-default", "resetchannels", ACL_PUBSUB_DEFAULT),
    _enum("sanitize-dump-payload", "no", SANITIZE_DUMP_PAYLOAD),
    _enum(
        "enable-protected-configs",
        "no",
        PROTECTED_ACTION,
        flags="immutable",
        used=True,
        help="May CONFIG SET change dir and dbfilename: no, yes, or local (loopback clients).",
    ),
    _enum(
        "enable-debug-command",
        "no",
        PROTECTED_ACTION,
        flags="immutable",
        used=True,
        help="Allow DEBUG: no, yes, or local (from loopback connections only).",
    ),
    _enum("enable-module-command", "no", PROTECTED_ACTION, flags="immutable"),
    _enum("cluster-preferred-endpoint-type", "ip", ENDPOINT_TYPE),
    _enum("propagation-error-behavior", "ignore", PROPAGATION_ERROR),
    _flagset(
        "shutdown-on-sigint",
        "default",
        SHUTDOWN_ON_SIGNAL,
        flags="multi-arg",
        used=True,
        help="How SIGINT stops the server: default, save, nosave, now, force.",
    ),
    _flagset(
        "shutdown-on-sigterm",
        "default",
        SHUTDOWN_ON_SIGNAL,
        flags="multi-arg",
        used=True,
        help="How SIGTERM stops the server: default, save, nosave, now, force.",
    ),
    # (at most 65536: an entry header holds the database in 16 bits, see
    # shardkv.protocol.wire.DB_MASK; one past it would run in database 0)
    _int("databases", 16, 1, 65536, flags="immutable", used=True, help=_DATABASES_HELP),
    _int("port", 6379, 0, 65535, used=True, help="TCP port to listen on."),
    _int("io-threads", 1, 1, 128, flags="immutable"),
    _int(
        "auto-aof-rewrite-percentage",
        100,
        0,
        INT_MAX,
        used=True,
        help="Rewrite a shard's AOF once it has grown this many percent since its last rewrite; 0 never.",
    ),
    _int("cluster-replica-validity-factor", 10, 0, INT_MAX, alias="cluster-slave-validity-factor"),
    _int("list-max-listpack-size", -2, INT_MIN, INT_MAX, alias="list-max-ziplist-size"),
    _int("tcp-keepalive", 300, 0, INT_MAX),
    _int("cluster-migration-barrier", 1, 0, INT_MAX),
    _int("active-defrag-cycle-min", 1, 1, 99),
    _int("active-defrag-cycle-max", 25, 1, 99),
    _int("active-defrag-threshold-lower", 10, 0, 1000),
    _int("active-defrag-threshold-upper", 100, 0, 1000),
    _int("lfu-log-factor", 10, 0, INT_MAX, used=True, help="How slowly the LFU counter grows."),
    _int(
        "lfu-decay-time",
        1,
        0,
        INT_MAX,
        used=True,
        help="Minutes per halving step of the LFU counter; 0 never decays.",
    ),
    _int("replica-priority", 100, 0, INT_MAX, alias="slave-priority"),
    _int("repl-diskless-sync-delay", 5, 0, INT_MAX),
    _int("maxmemory-samples", 5, 1, INT_MAX, used=True, help="Keys sampled per eviction round."),
    _int("maxmemory-eviction-tenacity", 10, 0, 100),
    _int("timeout", 0, 0, INT_MAX, used=True, help="Close a client idle this many seconds; 0 never."),
    _int("replica-announce-port", 0, 0, 65535, alias="slave-announce-port"),
    _int("tcp-backlog", 511, 0, INT_MAX, flags="immutable"),
    _int("cluster-port", 0, 0, 65535, flags="immutable"),
    _int("cluster-announce-bus-port", 0, 0, 65535),
    _int("cluster-announce-port", 0, 0, 65535),
    _int("cluster-announce-tls-port", 0, 0, 65535),
    _int("repl-timeout", 60, 1, INT_MAX),
    _int("repl-ping-replica-period", 10, 1, INT_MAX, alias="repl-ping-slave-period"),
    _int("list-compress-depth", 0, 0, INT_MAX),
    _int(
        "rdb-key-save-delay",
        0,
        INT_MIN,
        INT_MAX,
        flags="hidden",
        used=True,
        help="Microseconds to sleep per key in a background save or rewrite (for tests).",
    ),
    _int(
        "key-load-delay",
        0,
        INT_MIN,
        INT_MAX,
        flags="hidden",
        used=True,
        help="Microseconds to sleep per key loaded from a snapshot (for tests).",
    ),
    _int("active-expire-effort", 1, 1, 10),
    _int("hz", 10, 0, INT_MAX, used=True, help="Active expiry cycles per second in each worker."),
    _int("min-replicas-to-write", 0, 0, INT_MAX, alias="min-slaves-to-write"),
    _int("min-replicas-max-lag", 10, 0, INT_MAX, alias="min-slaves-max-lag"),
    _int("watchdog-period", 0, 0, INT_MAX, flags="hidden"),
    _int("shutdown-timeout", 10, 0, INT_MAX),
    _int("repl-diskless-sync-max-replicas", 0, 0, INT_MAX),
    _int("maxclients", 10000, 1, UINT_MAX, unsigned=True, used=True, help="Most clients connected at once."),
    _octal("unixsocketperm", 0, 0, 511, unsigned=True, flags="immutable"),
    _int("socket-mark-id", 0, 0, UINT_MAX, unsigned=True, flags="immutable"),
    _int("active-defrag-max-scan-fields", 1000, 1, LONG_MAX),
    _int("slowlog-max-len", 128, 0, LONG_MAX, used=True, help="Entries the slow log keeps."),
    _int("acllog-max-len", 128, 0, LONG_MAX),
    _int(
        "busy-reply-threshold",
        5000,
        0,
        LONG_MAX,
        alias="lua-time-limit",
        used=True,
        help="Milliseconds a Lua script runs before other clients get -BUSY (alias lua-time-limit).",
    ),
    _int("cluster-node-timeout", 15000, 0, LONG_MAX),
    _int(
        "slowlog-log-slower-than",
        10000,
        -1,
        LONG_MAX,
        used=True,
        help="Log commands that run at least this many microseconds; -1 logs none, 0 every one.",
    ),
    _int(
        "latency-monitor-threshold",
        0,
        0,
        LONG_MAX,
        used=True,
        help="Record latency events of at least this many milliseconds; 0 records none.",
    ),
    _memory(
        "proto-max-bulk-len",
        536870912,
        1048576,
        LONG_MAX,
        used=True,
        help="Largest bulk string a client may send.",
    ),
    _int(
        "stream-node-max-entries",
        100,
        0,
        LONG_MAX,
        used=True,
        help="Most entries in one node of a stream; 0 for no limit.",
    ),
    _memory("repl-backlog-size", 1048576, 1, LONG_MAX),
    _memory(
        "maxmemory",
        0,
        0,
        ULLONG_MAX,
        unsigned=True,
        used=True,
        help="Memory limit in bytes, split evenly over shards; 0 for none.",
    ),
    _memory("cluster-link-sendbuf-limit", 0, 0, ULLONG_MAX, unsigned=True),
    _int(
        "hash-max-listpack-entries",
        512,
        0,
        LONG_MAX,
        unsigned=True,
        alias="hash-max-ziplist-entries",
        used=True,
        help="OBJECT ENCODING: a hash with more fields is a hashtable.",
    ),
    _int(
        "set-max-intset-entries",
        512,
        0,
        LONG_MAX,
        unsigned=True,
        used=True,
        help="OBJECT ENCODING: a set of more integers is a hashtable.",
    ),
    _int(
        "zset-max-listpack-entries",
        128,
        0,
        LONG_MAX,
        unsigned=True,
        alias="zset-max-ziplist-entries",
        used=True,
        help="OBJECT ENCODING: a sorted set with more members is a skiplist.",
    ),
    _memory("active-defrag-ignore-bytes", 104857600, 1, LONG_MAX, unsigned=True),
    _memory(
        "hash-max-listpack-value",
        64,
        0,
        LONG_MAX,
        unsigned=True,
        alias="hash-max-ziplist-value",
        used=True,
        help="OBJECT ENCODING: a hash with a longer field or value is a hashtable.",
    ),
    _memory(
        "stream-node-max-bytes",
        4096,
        0,
        LONG_MAX,
        unsigned=True,
        used=True,
        help="Most bytes in one node of a stream; 0 for no limit.",
    ),
    _memory(
        "zset-max-listpack-value",
        64,
        0,
        LONG_MAX,
        unsigned=True,
        alias="zset-max-ziplist-value",
        used=True,
        help="OBJECT ENCODING: a sorted set with a longer member is a skiplist.",
    ),
    _memory(
        "hll-sparse-max-bytes",
        3000,
        0,
        LONG_MAX,
        unsigned=True,
        used=True,
        help="Largest sparse HyperLogLog, header included; a bigger one turns dense.",
    ),
    _int("tracking-table-max-keys", 1000000, 0, LONG_MAX, unsigned=True),
    _memory(
        "client-query-buffer-limit",
        1073741824,
        1048576,
        LONG_MAX,
        unsigned=True,
        used=True,
        help="Largest unparsed input held per client.",
    ),
    _memory_percent("maxmemory-clients", 0, -100, LONG_MAX),
    _int("repl-backlog-ttl", 3600, 0, LONG_MAX),
    _memory(
        "auto-aof-rewrite-min-size",
        67108864,
        0,
        LONG_MAX,
        used=True,
        help="No automatic rewrite of a shard's AOF smaller than this.",
    ),
    _int("loading-process-events-interval-bytes", 2097152, 1024, INT_MAX, flags="hidden"),
    _int("tls-port", 0, 0, 65535),
    _int("tls-session-cache-size", 20480, 0, INT_MAX),
    _int("tls-session-cache-timeout", 300, 0, INT_MAX),
    _bool("tls-cluster", False),
    _bool("tls-replication", False),
    _enum("tls-auth-clients", "yes", TLS_AUTH_CLIENTS),
    _bool("tls-prefer-server-ciphers", False),
    _bool("tls-session-caching", True),
    _str("tls-cert-file", ""),
    _str("tls-key-file", ""),
    _str("tls-key-file-pass", ""),
    _str("tls-client-cert-file", ""),
    _str("tls-client-key-file", ""),
    _str("tls-client-key-file-pass", ""),
    _str("tls-dh-params-file", ""),
    _str("tls-ca-cert-file", ""),
    _str("tls-ca-cert-dir", ""),
    _str("tls-protocols", ""),
    _str("tls-ciphers", ""),
    _str("tls-ciphersuites", ""),
    _special("dir", ".", flags="protected fixed", used=True, help="Directory for snapshots and AOF files."),
    _special(
        "save",
        "",
        flags="multi-arg",
        used=True,
        help="Snapshot rules, '<seconds> <changes>' pairs; empty for none.",
    ),
    _special("client-output-buffer-limit", OBUF_DEFAULT, flags="multi-arg", used=True, help=_OBUF_HELP),
    _special("oom-score-adj-values", "0 200 800", flags="multi-arg"),
    _special("notify-keyspace-events", ""),
    _special(
        "bind",
        "127.0.0.1",
        flags="multi-arg fixed",
        used=True,
        help="Addresses to listen on, separated by spaces.",
    ),
    _special("replicaof", "", alias="slaveof", flags="immutable multi-arg"),
    _special(
        "latency-tracking-info-percentiles",
        "50 99 99.9",
        flags="multi-arg",
        used=True,
        help="The percentiles INFO latencystats reports, separated by spaces.",
    ),
]

# shardkv's own settings: hidden, so that CONFIG GET * lists Redis's names only
# (CONFIG GET shards answers).
_TABLE += [
    _int(
        "shards",
        4,
        1,
        1024,
        flags="immutable hidden",
        used=True,
        help="Number of worker processes, one shard each.",
    ),
    _int(
        "acceptors",
        machine_acceptors(),
        1,
        256,
        flags="immutable hidden",
        used=True,
        auto=machine_acceptors,
        help="Number of acceptor processes sharing the port (SO_REUSEPORT above 1); "
        "auto (the default): half the cores, at least 1.",
    ),
    _bool(
        "uvloop",
        True,
        flags="immutable hidden",
        used=True,
        help="Run the acceptor on uvloop when it is installed.",
    ),
]

TABLE: list[Row] = _TABLE
