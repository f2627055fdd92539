"""Server and connection commands, compared with a real redis-server.

Both have 16 databases (``databases``); tests/compat/test_databases.py covers
what is kept in each.
"""

from __future__ import annotations

import time

import pytest
import redis

from shardkv.protocol import command_docs, commands
from tests.support.processes import until
from tests.support.rawsocket import both_after
from tests.support.servers import start_redis, start_shardkv


def plain(port: int, protocol: int = 3) -> redis.Redis:
    """A client that hands back replies as they came, without redis-py's
    parsing of COMMAND, INFO and the like."""
    c = redis.Redis(port=port, protocol=protocol)
    c.response_callbacks.clear()
    return c


def assert_command_info_alike(real: redis.Redis, ours: redis.Redis, names: list[str]) -> None:
    """Every field of COMMAND INFO of `names` is redis-server's; the
    subcommands (field 9) compared in any order, as Redis's hash table
    lists them."""
    for theirs, mine in zip(
        real.execute_command("COMMAND", "INFO", *names),
        ours.execute_command("COMMAND", "INFO", *names),
        strict=True,
    ):
        theirs[9] = sorted(theirs[9], key=repr)
        mine[9] = sorted(mine[9], key=repr)
        assert mine == theirs, theirs[0]


def test_databases(compare):
    compare("CONFIG", "GET", "databases")
    for index in ("0", "1", "15", "-1", "16", "a", "01", "+0", "4294967296", "99999999999999999999"):
        compare("SELECT", index)
    for a, b in [
        ("0", "0"),
        ("0", "1"),
        ("1", "0"),
        ("15", "15"),
        ("0", "16"),
        ("a", "0"),
        ("0", "a"),
        ("-1", "0"),
        ("4294967296", "0"),
        ("0", "4294967296"),
        ("00", "0"),
    ]:
        compare("SWAPDB", a, b)
    compare("SELECT", "0")
    compare("SET", "d", "1")
    for db in ("1", "0", "16", "-1", "a", "4294967296"):
        compare("COPY", "d", "e", "DB", db)
    compare("COPY", "d", "e", "DB", "2", "foo")
    compare("COPY", "d", "e", "foo", "DB", "2")
    compare("SELECT")
    compare("SWAPDB", "0")
    compare("FLUSHALL")


def test_echo_time_lastsave_dbsize(compare, r):
    compare("ECHO", "hello")
    compare("ECHO", "")
    compare("ECHO", "\x00\xff\r\n")
    compare("ECHO")
    compare("ECHO", "a", "b")
    compare("TIME", "x")
    compare("LASTSAVE", "x")
    compare("DBSIZE", "x")
    seconds, micros = r.time()
    assert abs(seconds - time.time()) < 60 and 0 <= micros < 1_000_000
    assert isinstance(r.lastsave(), object)
    r.mset({"a": 1, "b": 2, "c": 3, "d": 4})
    assert r.dbsize() == 4


def test_flush(compare):
    for args in (["ASYNC"], ["SYNC"], ["async"], [], ["foo"], ["ASYNC", "SYNC"]):
        compare("MSET", "a", "1", "b", "2", "c", "3")
        compare("FLUSHALL", *args)
        compare("DBSIZE")
        compare("MSET", "a", "1", "b", "2")
        compare("FLUSHDB", *args)
        compare("DBSIZE")


def test_config_get_set(compare):
    compare("CONFIG", "GET", "hz")
    compare("CONFIG", "GET", "maxmemory")
    compare("CONFIG", "GET", "MAXCLIENTS")  # the name comes back as asked
    compare("CONFIG", "GET", "Hz", "nosuch")
    compare("CONFIG", "GET", "nosuch")
    compare("CONFIG", "GET")
    try:
        compare("CONFIG", "SET", "hz", "20")
        compare("CONFIG", "GET", "hz")
        compare("CONFIG", "SET", "HZ", "1000")  # clamped to 500
        compare("CONFIG", "GET", "hz")
        compare("CONFIG", "SET", "hz", "0")  # clamped to 1
        compare("CONFIG", "GET", "hz")
        compare("CONFIG", "SET", "timeout", "0", "maxclients", "10000")
        for args in (
            ["hz", "abc"],
            ["hz", "1.5"],
            ["hz", "-1"],
            ["timeout", "99999999999"],
            ["maxclients", "0"],
            ["maxmemory", "abc"],
            ["maxmemory", "-1"],
            ["maxmemory-policy", "foo"],
            ["protected-mode", "maybe"],
            ["appendonly", "maybe"],
            ["loglevel", "foo"],
            ["proto-max-bulk-len", "10"],
            ["hz", "10", "hz", "11"],
            ["hz", "10", "maxclients", "5", "hz", "3"],
            ["hz", "10", "maxclients"],
            ["nosuch", "1"],
            ["requirepass"],
            ["hz"],
        ):
            compare("CONFIG", "SET", *args)
    finally:
        compare("CONFIG", "SET", "hz", "10")
    compare("CONFIG", "GET", "hz")


def test_config_get_pattern(ports):
    c = redis.Redis(port=ports["shardkv"])
    assert {"maxmemory", "maxmemory-policy"} <= set(c.config_get("maxmemory*"))
    assert set(c.config_get("HZ", "time?ut")) == {"HZ", "timeout"}
    c.close()


def test_config_other_subcommands(compare):
    compare("CONFIG", "RESETSTAT")
    compare("CONFIG", "RESETSTAT", "x")
    compare("CONFIG", "REWRITE")
    compare("CONFIG", "HELP")
    compare("CONFIG", "HELP", "x")
    compare("CONFIG", "FOO")
    compare("CONFIG")


def test_config_resetstat_clears_counters(r):
    r.set("k", "v", px=1)
    time.sleep(0.01)
    assert r.get("k") is None
    r.config_resetstat()
    stats = r.info("stats")
    assert stats["expired_keys"] == 0
    assert stats["total_commands_processed"] <= 2


@pytest.mark.parametrize("shards", [1, 2])
def test_total_forks_counts_every_fork_as_redis(shards):
    """INFO's total_forks counts each fork (BGSAVE, the rewrite that turns
    the AOF on, BGREWRITEAOF) as redis-server's, and CONFIG RESETSTAT zeroes
    it; each shard forks its own child, so shardkv's is the sum: once a
    shard for each of Redis's."""
    real = start_redis()
    ours = start_shardkv("--save", "", "--appendonly", "no", shards=shards)
    try:
        clients = [redis.Redis(port=real.port), redis.Redis(port=ours.port)]

        def idle(c: redis.Redis) -> bool:
            info = c.info("persistence")
            return not (
                info["rdb_bgsave_in_progress"]
                or info["aof_rewrite_in_progress"]
                or info["aof_rewrite_scheduled"]
            )

        def forks() -> list[int]:
            for c in clients:
                assert until(lambda c=c: idle(c), 30)
            return [c.info("stats")["total_forks"] for c in clients]

        assert forks() == [0, 0]
        for step, expected in (
            (lambda c: c.bgsave(), 1),
            (lambda c: c.config_set("appendonly", "yes"), 2),
            (lambda c: c.bgrewriteaof(), 3),
        ):
            for c in clients:
                step(c)
            assert forks() == [expected, expected * shards]
        for c in clients:
            assert c.config_resetstat()
        assert forks() == [0, 0]
        assert [c.info("stats")["latest_fork_usec"] for c in clients] == [0, 0]
    finally:
        real.stop()
        ours.stop()


def test_info_sections(r):
    """The sections, and the fields tools read, exist on both servers."""
    r.set("k", "v", ex=100)
    port = r.connection_pool.connection_kwargs["port"]
    text = plain(port).execute_command("INFO")
    headers = [line for line in text.decode().split("\r\n") if line.startswith("#")]
    assert headers == [
        "# Server",
        "# Clients",
        "# Memory",
        "# Persistence",
        "# Stats",
        "# Replication",
        "# CPU",
        "# Modules",
        "# Errorstats",
        "# Cluster",
        "# Keyspace",
    ]
    info = r.info("everything")
    for field in (
        "redis_version",
        "redis_mode",
        "process_id",
        "run_id",
        "tcp_port",
        "uptime_in_seconds",
        "hz",
        "connected_clients",
        "maxclients",
        "blocked_clients",
        "used_memory",
        "used_memory_human",
        "used_memory_rss",
        "used_memory_peak",
        "maxmemory",
        "maxmemory_policy",
        "loading",
        "rdb_last_save_time",
        "aof_enabled",
        "total_connections_received",
        "total_commands_processed",
        "instantaneous_ops_per_sec",
        "expired_keys",
        "evicted_keys",
        "pubsub_channels",
        "role",
        "connected_slaves",
        "master_replid",
        "used_cpu_sys",
        "used_cpu_user",
        "cluster_enabled",
    ):
        assert field in info, field
    assert info["redis_version"] == "7.0.15"
    assert info["role"] == "master"
    assert info["db0"]["keys"] == 1 and info["db0"]["expires"] == 1
    assert 0 <= info["db0"]["avg_ttl"] <= 100_000  # an estimate on both
    assert plain(port).execute_command("INFO", "nosuchsection") == b""
    one = plain(port).execute_command("INFO", "server", "CLIENTS").decode()
    assert [x for x in one.split("\r\n") if x.startswith("#")] == ["# Server", "# Clients"]


def test_info_shards_section(ports):
    """shardkv's own section: one line per worker."""
    c = redis.Redis(port=ports["shardkv"])
    shards = c.info("shards")
    assert sorted(shards) == ["shard0", "shard1", "shard2", "shard3"]
    assert all("pid" in v for v in shards.values())
    c.close()


def test_config_set_reaches_every_worker(ports):
    """CONFIG SET replies once every worker has the new value (hz here)."""
    c = redis.Redis(port=ports["shardkv"])
    try:
        assert c.config_set("hz", 25)
        assert {v["hz"] for v in c.info("shards").values()} == {25}
        assert c.info("server")["hz"] == 25
    finally:
        c.config_set("hz", 10)
    assert {v["hz"] for v in c.info("shards").values()} == {10}
    c.close()


# -- COMMAND ------------------------------------------------------------------

# Differences in the command table that are deliberate: OBJECT's key
# position is its subcommands' (2); so are XGROUP's and XINFO's, with their
# subcommands' write/readonly flag (the AOF and the blocked XREADGROUP's
# wake-up go by it).
TABLE_EXCEPTIONS = {"object", "xgroup", "xinfo", "memory"}


def test_command_info_matches_redis(ports):
    """Arity, flags and key positions of every command shardkv has, as
    COMMAND INFO reports them."""
    real = plain(ports["redis"], 2)
    ours = plain(ports["shardkv"], 2)
    names = [n for n in commands.COMMANDS if n not in TABLE_EXCEPTIONS]
    theirs = real.execute_command("COMMAND", "INFO", *names)
    mine = ours.execute_command("COMMAND", "INFO", *names)
    for name, t, m in zip(names, theirs, mine, strict=True):
        assert m is not None, name
        if t is None:
            continue  # not a Redis 7.0 command
        assert m[:2] == t[:2], name  # name, arity
        assert m[3:6] == t[3:6], name  # first key, last key, step
        assert set(m[2]) - set(t[2]) <= KNOWN_EXTRA_FLAGS, name
    real.close()
    ours.close()


# Flags the command table gives some commands that Redis 7.0 does not.
KNOWN_EXTRA_FLAGS = {b"stale", b"admin", b"readonly", b"pubsub", b"loading"}


@pytest.mark.parametrize("container", ["client", "config", "command", "object", "pubsub", "cluster"])
def test_subcommand_flags_match_redis(ports, container):
    """Each subcommand's own flags (MONITOR hides the admin ones), as
    COMMAND INFO reports them in its subcommands element."""
    real = plain(ports["redis"], 2)
    ours = plain(ports["shardkv"], 2)
    theirs = {sub[0]: sub[2] for sub in real.execute_command("COMMAND", "INFO", container)[0][9]}
    mine = {sub[0]: sub[2] for sub in ours.execute_command("COMMAND", "INFO", container)[0][9]}
    compared = [name for name in mine if name in theirs]  # CLIENT SETINFO and NO-TOUCH are Redis 7.2's
    assert len(compared) >= len(mine) - 2
    for name in compared:
        assert mine[name] == theirs[name], name
    real.close()
    ours.close()


@pytest.mark.parametrize("container", ["object", "memory", "xgroup", "xinfo"])
def test_subcommand_keys_match_redis(ports, container):
    """Each subcommand's key positions and key specs, as COMMAND INFO
    reports them in its subcommands element (OBJECT ENCODING's key...)."""
    rows = {}
    for name in ("redis", "shardkv"):
        client = plain(ports[name], 2)
        rows[name] = {
            sub[0]: sub[3:6] + sub[8:9] for sub in client.execute_command("COMMAND", "INFO", container)[0][9]
        }
        client.close()
    assert rows["shardkv"] == rows["redis"]


def test_command_subcommands(compare_plain):
    compare = compare_plain
    compare("COMMAND", "INFO", "get", "nosuch")
    compare("COMMAND", "COUNT", "x")
    compare("COMMAND", "INFO", "nosuchcommand")
    compare("COMMAND", "DOCS", "nosuch")
    compare("COMMAND", "LIST", "FILTERBY")
    compare("COMMAND", "LIST", "x")
    compare("COMMAND", "LIST", "FILTERBY", "foo", "x")
    compare("COMMAND", "FOO")
    compare("COMMAND", "HELP", "x")
    compare("COMMAND", "GETKEYS")
    compare("COMMAND", "GETKEYS", "get")
    for args in (
        ["get", "a"],
        ["get", "a", "b"],
        ["set", "a", "b"],
        ["set", "a"],
        ["mset", "a", "1", "b", "2"],
        ["ping", "x"],
        ["nosuch", "a"],
        ["zunionstore", "d", "2", "a", "b"],
        ["zunionstore", "d", "0", "a", "b"],
        ["zunionstore", "d", "3", "a"],
        ["zunionstore", "d", "x", "a", "b"],
        ["zinter", "2", "a", "b", "WEIGHTS", "1", "2"],
        ["lmpop", "2", "a", "b", "left"],
        ["lmpop", "-1", "a", "left"],
        ["blmpop", "0", "1", "a", "LEFT"],
        ["del", "a", "b", "c"],
        ["rename", "a", "b"],
        ["blpop", "a", "b", "0"],
        ["sintercard", "2", "a", "b", "LIMIT", "1"],
        ["SET", "a", "b"],
    ):
        compare("COMMAND", "GETKEYS", *args)


GETKEYS_CASES = [
    # numkeys that Redis's key specs (string2ll) refuse: its genericGetKeys
    # reads them with atoi ("1x" is 1, "abc" 0, 2**32 + 1 is 1)
    ["eval", "s", "01", "k"],
    ["eval", "s", " 1", "k"],
    ["eval", "s", "1 ", "k"],
    ["eval", "s", "1x", "k"],
    ["eval", "s", "+1", "k"],
    ["eval", "s", "\t2", "k", "j"],
    ["eval", "s", "1.5", "k"],
    ["eval", "s", "4294967297", "k"],
    ["eval", "s", "2147483649", "k"],
    ["eval", "s", "99999999999999999999", "k"],
    ["eval", "s", "-1", "k"],
    ["eval", "s", "2", "k"],
    ["eval", "s", "abc", "k"],
    ["evalsha_ro", "s", "1x", "k"],
    ["fcall", "f", "x", "k"],
    ["fcall_ro", "f", "1y", "k"],
    ["zunionstore", "d", "1x", "k"],
    ["zdiffstore", "d", "01", "k"],
    ["zinter", "1x", "k"],
    ["zinter", "01", "k"],
    ["zintercard", "1x", "k"],
    ["zdiff", "1x", "k"],
    ["sintercard", "01", "k"],
    ["lmpop", "1x", "k", "LEFT"],
    ["lmpop", "01", "k", "LEFT"],
    ["blmpop", "0", "1x", "k", "LEFT"],
    ["zmpop", "1x", "k", "MIN"],
    ["bzmpop", "0", "01", "k", "MIN"],
    # a container's subcommand: its own keys, or none
    ["object", "help"],
    ["object", "encoding", "k"],
    ["object", "encoding"],
    ["object", "nosuch", "k"],
    ["object"],
    ["memory", "help"],
    ["memory", "usage", "k"],
    ["xinfo", "help"],
    ["config", "get", "x"],
    ["ping"],
    ["xread", "streams", "a", "b", "0"],
    ["xread", "count", "1", "streams", "a"],
]


@pytest.mark.parametrize("args", GETKEYS_CASES, ids=lambda a: " ".join(a))
@pytest.mark.parametrize("sub", ["GETKEYS", "GETKEYSANDFLAGS"])
def test_command_getkeys_as_redis_finds_them(compare_plain, sub, args):
    """COMMAND GETKEYS and GETKEYSANDFLAGS as Redis's getKeysSubcommandImpl:
    the subcommand's keys (or "The command has no key arguments"), and
    the keys of a numkeys its key specs cannot read from the command's
    own finder (genericGetKeys, with C's atoi)."""
    compare_plain("COMMAND", sub, *args)


SCRIPTING_COMMANDS = [
    "eval", "evalsha", "eval_ro", "evalsha_ro", "fcall", "fcall_ro", "script|load", "script|exists",
    "script|flush", "script|kill", "function|load", "function|list", "function|delete", "function|flush",
    "function|dump", "function|restore", "function|stats", "function|kill", "get", "set", "config|get",
]  # fmt: skip


@pytest.mark.parametrize("protocol", [2, 3])
def test_command_info_of_scripting_commands_byte_for_byte(ports, protocol):
    """COMMAND INFO of the scripting commands (and a few others) and
    GETKEYSANDFLAGS, byte for byte: flags, ACL categories, tips, key specs
    and their flags are RESP3 sets (``~``) and tips bulk strings, as Redis's."""
    request = (b"HELLO 3\r\n" if protocol == 3 else b"") + b"ECHO info\r\n"
    for name in SCRIPTING_COMMANDS:
        request += b"COMMAND INFO %s\r\n" % name.encode()
    request += b"COMMAND GETKEYSANDFLAGS set a b\r\nCOMMAND GETKEYSANDFLAGS eval s 2 a b\r\n"
    # (Not both(): HELLO's reply differs, and waiting for as many bytes as
    # Redis sent waited out REPLY_WAIT, 20 s.)
    real, ours = both_after(ports, request, b"info\r\n")
    assert (b"~2\r\n+readonly" in real) == (protocol == 3)
    assert ours == real


def test_command_info_key_specs_match_redis(ports):
    """The key specs (flags, begin_search, find_keys, notes) of every
    command shardkv has are redis-server's, in RESP2 and RESP3."""
    names = [n for n in commands.COMMANDS if n not in TABLE_EXCEPTIONS]
    for protocol in (2, 3):
        real = plain(ports["redis"], protocol)
        ours = plain(ports["shardkv"], protocol)
        theirs = real.execute_command("COMMAND", "INFO", *names)
        mine = ours.execute_command("COMMAND", "INFO", *names)
        for name, t, m in zip(names, theirs, mine, strict=True):
            if t is not None:  # a Redis 7.0 command
                assert m[8] == t[8], name
        real.close()
        ours.close()


def test_cluster_is_disabled(compare_plain):
    """CLUSTER exists, as in a redis-server with cluster support disabled:
    each subcommand answers that, after the checks of the subcommand and
    its arity, in a transaction and in a script too; and COMMAND LIST
    FILTERBY PATTERN finds its subcommands."""
    compare = compare_plain
    for args in (
        ["HELP"],
        ["INFO"],
        ["KEYSLOT", "foo"],
        ["COUNTKEYSINSLOT", "1"],
        ["SLOTS"],
        ["RESET", "HARD"],
        ["nosuch"],
        ["INFO", "x"],
        ["KEYSLOT"],
    ):
        compare("CLUSTER", *args)
    compare("CLUSTER")
    compare("EVAL", "return redis.pcall('cluster', 'info')", "0")
    compare("EVAL", "return redis.pcall('cluster', 'reset')", "0")
    compare("EVAL", "return redis.pcall('cluster', 'nosuch')", "0")
    assert compare("COMMAND", "LIST", "FILTERBY", "PATTERN", "cl*help", unordered=True) == [
        b"client|help",
        b"cluster|help",
    ]


def test_cluster_in_a_transaction(ports):
    for port in (ports["redis"], ports["shardkv"]):
        c = plain(port, 2)
        p = c.pipeline(transaction=True)
        p.execute_command("CLUSTER", "INFO")
        (result,) = p.execute(raise_on_error=False)
        assert str(result) == "This instance has cluster support disabled"
        c.close()


def test_command_getkeysandflags(compare_plain):
    """Each key with the flags of its key spec, or, where those vary with
    the arguments (SET's GET, BITFIELD's writes, SORT's STORE), with the
    flags the command's own key finder gives."""
    for args in (
        ["set", "k1", "v1"],
        ["set", "k", "v", "EX", "10", "GET"],
        ["mset", "k1", "v1", "k2", "v2"],
        ["LMOVE", "k1", "k2", "left", "right"],
        ["blmove", "a", "b", "left", "left", "0"],
        ["sort", "k1", "store", "k2"],
        ["sort", "k1", "by", "w*", "get", "#", "store", "d"],
        ["sort_ro", "k1", "by", "x"],
        ["bitfield", "k", "get", "u8", "0"],
        ["bitfield", "k", "overflow", "wrap", "get", "u8", "0"],
        ["bitfield", "k", "set", "u8", "0", "1"],
        ["bitfield_ro", "k", "get", "u8", "0"],
        ["xread", "count", "2", "streams", "a", "b", "0", "0"],
        ["xreadgroup", "group", "g", "c", "streams", "a", "0"],
        ["zunionstore", "d", "2", "a", "b"],
        ["eval", "return 1", "2", "a", "b"],
        ["fcall", "f", "1", "a"],
        ["georadius", "g", "1", "2", "3", "km", "store", "s", "storedist", "t"],
        ["georadiusbymember", "g", "m", "3", "km", "storedist", "t"],
        ["geosearchstore", "d", "s", "frommember", "m", "byradius", "1", "km"],
        ["del", "a", "b"],
        ["rename", "a", "b"],
        ["renamenx", "a", "b"],
        ["copy", "a", "b"],
        ["smove", "a", "b", "m"],
        ["bitop", "and", "d", "a", "b"],
        ["lmpop", "2", "a", "b", "left"],
        ["bzmpop", "0", "1", "a", "min"],
        ["pfcount", "a", "b"],
        ["pfmerge", "d", "a", "b"],
        ["getex", "a"],
        ["xadd", "s", "*", "f", "v"],
        ["exists", "a", "b"],
        ["msetnx", "a", "1"],
        ["get"],
        ["nosuch", "a"],
        ["zunionstore", "d", "x", "a"],
        ["georadius", "g", "1", "2", "3", "km", "store"],  # (a last STORE is no keyword)
        ["object", "encoding", "k"],  # subcommands: their own key specs
        ["memory", "usage", "k"],
        ["xinfo", "stream", "s"],
        ["xgroup", "create", "s", "g", "$"],
        ["xgroup", "destroy", "s", "g"],
    ):
        compare_plain("COMMAND", "GETKEYSANDFLAGS", *args)


def test_command_count_and_list(r):
    r = plain(r.connection_pool.connection_kwargs["port"])
    if b"shardkv_version" in r.execute_command("INFO", "server"):
        assert r.execute_command("COMMAND", "COUNT") == len(commands.COMMANDS)
        listed = r.execute_command("COMMAND", "LIST")
        # Every command, and every subcommand as container|sub, as Redis 7.0.
        subs = [s.name for subs in command_docs.SUBCOMMANDS.values() for s in subs.values()]
        assert sorted(listed) == sorted(n.encode() for n in [*commands.COMMANDS, *subs])
    assert b"client|list" in r.execute_command("COMMAND", "LIST")
    assert sorted(r.execute_command("COMMAND", "LIST", "FILTERBY", "PATTERN", "config|*re*")) == [
        b"config|resetstat",
        b"config|rewrite",
    ]
    matched = r.execute_command("COMMAND", "LIST", "FILTERBY", "PATTERN", "z*ra*")
    assert b"zrange" in matched and b"get" not in matched
    assert b"zadd" in r.execute_command("COMMAND", "LIST", "FILTERBY", "ACLCAT", "sortedset")


def _hint(arg: dict) -> str:
    """An argument as redis-cli shows it in a hint."""
    kind = arg[b"type"]
    token = arg.get(b"token")
    flags = set(arg.get(b"flags", []))
    if kind == b"pure-token":
        text = token.decode()
    elif kind == b"oneof":
        text = "|".join(_hint(c) for c in arg[b"arguments"])
    elif kind == b"block":
        text = " ".join(_hint(c) for c in arg[b"arguments"])
    else:
        text = arg[b"name"].decode()
    if b"multiple" in flags:
        repeat = text  # the token repeats only with multiple_token
        if token and kind != b"pure-token":
            text = token.decode() + " " + text
            if b"multiple_token" in flags:
                repeat = text
        text += " [" + repeat + " ...]"
    elif token and kind != b"pure-token":
        text = token.decode() + " " + text
    if b"optional" in flags:
        text = "[" + text + "]"
    return text


def _all_hints(port: int) -> dict[str, tuple]:
    c = plain(port)
    docs = c.execute_command("COMMAND", "DOCS")
    c.close()
    out = {}
    for name, doc in docs.items():
        out[name.decode()] = (" ".join(_hint(a) for a in doc.get(b"arguments", [])), doc[b"group"])
        for sub, subdoc in (doc.get(b"subcommands") or {}).items():
            out[sub.decode()] = (" ".join(_hint(a) for a in subdoc.get(b"arguments", [])), subdoc[b"group"])
    return out


def test_command_docs_give_redis_cli_the_same_hints(ports):
    """redis-cli builds its hints from COMMAND DOCS: for every command and
    subcommand shardkv documents, the hint and group match Redis 7.0's."""
    theirs = _all_hints(ports["redis"])
    mine = _all_hints(ports["shardkv"])
    assert set(commands.COMMANDS) <= set(mine)
    newer = {"client|setinfo", "client|no-touch"}  # Redis 7.2 subcommands
    compared = 0
    for name, hint in mine.items():
        if name in newer:
            continue
        assert name in theirs, name
        assert hint == theirs[name], name
        compared += 1
    assert compared > 190


def test_command_docs_shape(r):
    docs = plain(r.connection_pool.connection_kwargs["port"]).execute_command(
        "COMMAND", "DOCS", "set", "client|kill", "nosuch", "get|x"
    )
    assert set(docs) == {b"set", b"client|kill"}
    assert docs[b"set"][b"group"] == b"string"
    assert docs[b"set"][b"arguments"][0] == {b"name": b"key", b"type": b"key", b"key_spec_index": 0}


def test_command_docs_every_syntax_parses():
    for doc in command_docs.DOCS.values():
        assert isinstance(doc.arguments, list), doc.name
    for subs in command_docs.SUBCOMMANDS.values():
        for doc in subs.values():
            assert isinstance(doc.arguments, list), doc.name
    assert set(command_docs.DOCS) == set(commands.COMMANDS)


# -- CLIENT -------------------------------------------------------------------


def test_client_errors(compare):
    for args in (
        ["ID", "x"],
        ["GETNAME", "x"],
        ["SETNAME"],
        ["SETNAME", "a b"],
        ["SETNAME", "a\nb"],
        ["FOO"],
        ["KILL"],
        ["KILL", "1.2.3.4:5"],
        ["KILL", "ID", "999999"],
        ["KILL", "ID", "abc"],
        ["KILL", "ID", "0"],
        ["KILL", "ID", "-1"],
        ["KILL", "foo", "bar"],
        ["KILL", "TYPE", "foo"],
        ["KILL", "TYPE", "master"],
        ["KILL", "addr"],
        ["KILL", "ADDR", "1.1.1.1:1", "SKIPME", "no"],
        ["KILL", "SKIPME", "maybe"],
        ["KILL", "ID", "1", "ID"],
        ["LIST", "foo"],
        ["LIST", "TYPE", "foo"],
        ["LIST", "TYPE", "normal", "x"],
        ["LIST", "TYPE", "master"],
        ["LIST", "TYPE", "PUBSUB"],
        ["LIST", "ID", "abc"],
        ["LIST", "ID", "0"],
        ["LIST", "ID", "-5"],
        ["LIST", "ID", "1", "abc"],
        ["NO-EVICT", "on"],
        ["NO-EVICT", "maybe"],
        ["NO-EVICT"],
        ["HELP", "x"],
        ["GETREDIR"],
        ["TRACKINGINFO"],
        ["INFO", "x"],
    ):
        compare("CLIENT", *args)
    compare("CLIENT")


def test_client_name_id_info_list(r):
    assert r.client_getname() is None
    assert r.client_setname("worker-1") is True
    assert r.client_getname() in (b"worker-1", "worker-1")
    cid = r.client_id()
    assert isinstance(cid, int) and cid > 0
    info = r.execute_command("CLIENT", "INFO")
    info = info if isinstance(info, str) else info.decode()
    assert f"id={cid} " in info and "name=worker-1 " in info and info.endswith("\n")
    listed = r.execute_command("CLIENT", "LIST", "ID", cid)
    listed = listed if isinstance(listed, str) else listed.decode()
    assert listed.count("\n") == 1 and f"id={cid} " in listed
    assert r.client_setname("") is True
    assert r.client_getname() is None


def test_client_kill(r):
    port = r.connection_pool.connection_kwargs["port"]
    other = redis.Redis(port=port, protocol=2)
    other.ping()
    other_id = other.client_id()
    assert r.execute_command("CLIENT", "KILL", "ID", other_id) == 1
    assert r.execute_command("CLIENT", "KILL", "ID", other_id) == 0
    other.close()
    victim = redis.Redis(port=port, protocol=2)
    victim.ping()
    vid = victim.client_id()
    addr = [
        line.split(" addr=")[1].split(" ")[0]
        for line in r.execute_command("CLIENT", "LIST", "ID", vid).decode().splitlines()
    ][0]
    assert r.execute_command("CLIENT", "KILL", addr) in (b"OK", "OK", True)
    victim.close()


def test_wait_and_debug(compare, ports):
    compare("WAIT", "0", "0")
    compare("WAIT", "a", "0")
    compare("WAIT", "0", "-1")
    compare("WAIT", "0", "a")
    # Both refuse DEBUG, as Redis 7 with enable-debug-command no (the
    # default); tests/compat/test_controls.py runs it where it is allowed.
    compare("DEBUG", "SLEEP", "0")
    compare("DEBUG", "HELP")


def test_command_info_of_hll_geo_sort_equals_redis(ports):
    """Every field of COMMAND INFO (flags, ACL categories, key specs with
    their notes) of the HyperLogLog, geo and SORT commands is redis-server's."""
    names = [
        "pfadd", "pfcount", "pfmerge", "pfdebug", "pfselftest", "sort", "sort_ro", "geoadd",
        "geodist", "geohash", "geopos", "geosearch", "geosearchstore", "georadius",
        "georadius_ro", "georadiusbymember", "georadiusbymember_ro",
    ]  # fmt: skip
    for protocol in (2, 3):
        real = plain(ports["redis"], protocol)
        ours = plain(ports["shardkv"], protocol)
        assert ours.execute_command("COMMAND", "INFO", *names) == real.execute_command(
            "COMMAND", "INFO", *names
        )
        real.close()
        ours.close()


@pytest.mark.parametrize("protocol", [2, 3])
def test_command_info_of_scripting_equals_redis(ports, protocol):
    """Every field of COMMAND INFO of the scripting commands (flags, ACL
    categories, key specs with their notes, subcommands with their tips)
    is redis-server's; subcommands compared by name."""
    names = ["eval", "evalsha", "eval_ro", "evalsha_ro", "fcall", "fcall_ro", "script", "function"]
    real = plain(ports["redis"], protocol)
    ours = plain(ports["shardkv"], protocol)
    assert_command_info_alike(real, ours, names)
    real.close()
    ours.close()
