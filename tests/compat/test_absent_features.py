"""The commands of what shardkv, like a standalone redis-server, does not
run: replication (ROLE, REPLICAOF, FAILOVER, PSYNC...), Redis Cluster
(ASKING, READONLY, READWRITE, RESTORE-ASKING) and modules (MODULE), and
LOLWUT.  Each has its row in the command table, as in Redis 7.0: COMMAND
INFO, DOCS, COUNT, LIST and GETKEYS show them as redis-server does, and
they answer as a redis-server with no replicas, cluster support disabled
and no modules (where shardkv differs, as README's "Not supported yet"
says, the test says so)."""

from __future__ import annotations

import pytest
import redis

from shardkv.protocol import command_docs, commands
from tests.compat.test_server_commands import assert_command_info_alike, plain
from tests.support.servers import start_redis, start_shardkv

NEW = [
    "asking", "failover", "lolwut", "module", "psync", "readonly", "readwrite", "replconf",
    "replicaof", "restore-asking", "role", "slaveof", "sync", "spublish", "ssubscribe", "sunsubscribe",
]  # fmt: skip


@pytest.mark.parametrize("protocol", [2, 3])
def test_command_info_and_docs_equal_redis(ports, protocol):
    """COMMAND INFO (flags, ACL categories, tips, key specs, subcommands
    compared by name) and COMMAND DOCS (summary, complexity, doc flags,
    history, arguments) of each, as redis-server's."""
    real = plain(ports["redis"], protocol)
    ours = plain(ports["shardkv"], protocol)
    assert_command_info_alike(real, ours, NEW)
    if protocol == 3:  # (maps: MODULE's subcommands in any order, as Redis's hash table has them)
        names = [*NEW, "module|load", "module|loadex", "module|list"]
        assert ours.execute_command("COMMAND", "DOCS", *names) == real.execute_command(
            "COMMAND", "DOCS", *names
        )
    for name in ("module|help", "module|unload", "restore-asking"):
        assert ours.execute_command("COMMAND", "INFO", name) == real.execute_command("COMMAND", "INFO", name)
    real.close()
    ours.close()


def test_command_count_and_list_add_them(ports):
    """COMMAND COUNT and LIST count each, as Redis 7.0.15's; what differs
    on purpose is what shardkv has that 7.0 has not (CLIENT SETINFO and
    NO-TOUCH, Redis 7.2's, which redis-py 5 and later send)."""
    real = plain(ports["redis"], 2)
    ours = plain(ports["shardkv"], 2)
    listed = set(ours.execute_command("COMMAND", "LIST"))
    for name in [*NEW, "module|list", "module|loadex"]:
        assert name.encode() in listed, name
    theirs = set(real.execute_command("COMMAND", "LIST"))
    assert listed - theirs == {b"client|setinfo", b"client|no-touch"}
    assert theirs <= listed
    count = ours.execute_command("COMMAND", "COUNT")
    assert count == len(commands.COMMANDS) == real.execute_command("COMMAND", "COUNT") == 240
    real.close()
    ours.close()


@pytest.mark.parametrize(
    "args",
    [
        ["restore-asking", "k", "0", "v"],
        ["restore-asking", "k"],
        ["lolwut"],
        ["role"],
        ["module", "load", "x"],
        ["asking"],
        ["spublish", "ch", "m"],
        ["ssubscribe", "a", "b"],
        ["sunsubscribe", "a"],
    ],
    ids=lambda a: " ".join(a),
)
def test_command_getkeys(compare_plain, args):
    compare_plain("COMMAND", "GETKEYS", *args)
    compare_plain("COMMAND", "GETKEYSANDFLAGS", *args)


def test_role_and_replication_info(compare_plain, ports):
    """ROLE: a master at offset 0 (INFO's master_repl_offset) with no replicas."""
    assert compare_plain("ROLE") == [b"master", 0, []]
    c = redis.Redis(port=ports["shardkv"])
    assert c.info("replication")["master_repl_offset"] == 0
    c.close()


@pytest.mark.parametrize(
    "args",
    [
        ["REPLICAOF", "NO", "ONE"],
        ["SLAVEOF", "no", "one"],
        ["REPLICAOF", "localhost", "x"],
        ["REPLICAOF", "localhost", "-1"],
        ["REPLICAOF", "localhost", "65536"],
        ["REPLICAOF", "no", "two"],
        ["SLAVEOF", "no"],
        ["FAILOVER"],
        ["FAILOVER", "ABORT"],
        ["FAILOVER", "abort", "x"],
        ["FAILOVER", "x"],
        ["FAILOVER", "TIMEOUT", "0"],
        ["FAILOVER", "TIMEOUT", "x"],
        ["FAILOVER", "TIMEOUT", "10"],
        ["FAILOVER", "TIMEOUT", "10", "TIMEOUT", "5"],
        ["FAILOVER", "TO", "h", "1"],
        ["FAILOVER", "TO", "h", "x"],
        ["FAILOVER", "TO", "h"],
        ["FAILOVER", "FORCE"],
        ["FAILOVER", "FORCE", "FORCE"],
        ["FAILOVER", "TO", "h", "1", "TIMEOUT", "5", "FORCE"],
        ["PSYNC", "x"],
        ["SYNC", "x"],
        ["REPLCONF", "a"],
        ["REPLCONF", "a", "b"],
        ["REPLCONF", "listening-port", "1", "x"],
        ["ROLE", "x"],
        ["ASKING"],
        ["READONLY"],
        ["READWRITE"],
        ["READONLY", "x"],
        ["LOLWUT"],
        ["LOLWUT", "x"],
        ["LOLWUT", "VERSION"],
        ["LOLWUT", "VERSION", "x"],
        ["LOLWUT", "VERSION", "7"],
        ["LOLWUT", "VERSION", "-1"],
        ["LOLWUT", "VERSION", "4"],
        ["LOLWUT", "VERSION", "5", "x"],
        ["LOLWUT", "VERSION", "6", "1", "x"],
        ["MODULE"],
        ["MODULE", "HELP"],
        ["MODULE", "help", "x"],
        ["MODULE", "LIST"],
        ["MODULE", "nosuch"],
        ["MODULE", "LOAD", "/nonexistent/module.so"],
        ["MODULE", "LOADEX", "/nonexistent/module.so", "CONFIG", "a", "b"],
        ["MODULE", "UNLOAD", "nosuch"],
        ["MODULE", "UNLOAD"],
    ],
    ids=lambda a: " ".join(a),
)
def test_answers_as_a_standalone_redis(compare_plain, args):
    """As a redis-server with no replicas, cluster-enabled no and
    enable-module-command no (the default: MODULE LOAD is refused)."""
    compare_plain(*args)


@pytest.mark.parametrize(
    "args",
    [
        ["REPLICAOF", "127.0.0.1", "6379"],
        ["SLAVEOF", "127.0.0.1", "0"],
        ["PSYNC", "?", "-1"],
        ["SYNC"],
        ["REPLCONF", "listening-port", "6380"],
    ],
    ids=lambda a: " ".join(a),
)
def test_replication_is_refused(ports, args):
    """Where a redis-server would become a replica, or serve one (which a
    test cannot leave it doing), shardkv answers that it does not replicate."""
    c = plain(ports["shardkv"], 2)
    with pytest.raises(redis.ResponseError, match="shardkv does not support replication"):
        c.execute_command(*args)
    assert c.execute_command("ROLE") == [b"master", 0, []]
    c.close()


def test_lolwut_art_versions_draw_only_their_caption(ports):
    """LOLWUT VERSION 5 and 6: Redis draws a random piece of art above its
    caption; shardkv answers the caption alone (see README)."""
    c = plain(ports["shardkv"], 2)
    assert c.execute_command("LOLWUT", "VERSION", "5", "1") == (
        b"Georg Nees - schotter, plotter on paper, 1968. Redis ver. 7.0.15\n"
    )
    real = plain(ports["redis"], 2)
    assert real.execute_command("LOLWUT", "VERSION", "5", "1").endswith(
        c.execute_command("LOLWUT", "VERSION", "5")
    )
    assert real.execute_command("LOLWUT", "VERSION", "6", "1", "1").endswith(
        c.execute_command("LOLWUT", "VERSION", "6")
    )
    real.close()
    c.close()


@pytest.mark.parametrize(
    "script",
    [
        "return redis.pcall('asking')",
        "return redis.pcall('readonly')",
        "return redis.pcall('lolwut')",
        "return redis.pcall('lolwut', 'version', 'x')",
        "return redis.pcall('module', 'help')",
        "return redis.pcall('module', 'list')",
        "return redis.pcall('role')",
        "return redis.pcall('replicaof', 'no', 'one')",
        "return redis.pcall('failover')",
        "return redis.pcall('replconf')",
        "return redis.pcall('sync')",
        "return redis.pcall('psync', 'a')",
    ],
)
def test_in_scripts(compare_plain, script):
    compare_plain("EVAL", script, "0")


def test_in_a_transaction(ports):
    """ROLE and REPLICAOF NO ONE are queued and run; PSYNC and SYNC are
    refused inside MULTI (no_multi); a protected MODULE LOAD is refused as
    it is queued, and EXEC aborts."""
    for commands_, aborted in (
        (
            [
                ("ROLE",),
                ("REPLICAOF", "NO", "ONE"),
                ("ASKING",),
                ("LOLWUT",),
                ("MODULE", "LIST"),
                ("FAILOVER",),
            ],
            False,
        ),
        ([("SYNC",)], True),
        ([("PSYNC", "a", "1")], True),
        ([("MODULE", "LOAD", "x")], True),
    ):
        out = []
        for port in (ports["redis"], ports["shardkv"]):
            c = plain(port, 2)
            p = c.pipeline(transaction=True)
            for args in commands_:
                p.execute_command(*args)
            try:
                out.append(
                    [str(x) if isinstance(x, Exception) else x for x in p.execute(raise_on_error=False)]
                )
            except redis.ResponseError as e:
                out.append(("aborted", str(e)))
            c.close()
        assert out[0] == out[1]
        assert (out[0][0] == "aborted") == aborted


def test_restore_asking_restores(compare):
    """RESTORE-ASKING is RESTORE (in a standalone redis-server too)."""
    compare("SET", "src", "hello")
    payload = compare("DUMP", "src")
    compare("RESTORE-ASKING", "dst", "0", payload)
    compare("GET", "dst")
    compare("RESTORE-ASKING", "dst", "0", payload)
    compare("RESTORE-ASKING", "dst", "0", payload, "REPLACE")
    compare("RESTORE-ASKING", "dst", "0", "bad")
    compare("OBJECT", "ENCODING", "dst")


def test_module_commands_where_allowed():
    """With enable-module-command yes: MODULE LOAD, LOADEX and UNLOAD fail
    as Redis's do when no module has that file or name."""
    real = start_redis("--enable-module-command", "yes")
    ours = start_shardkv("--enable-module-command", "yes", shards=1)
    try:
        for args in (
            ["MODULE", "LOAD", "/nonexistent/module.so"],
            ["MODULE", "LOADEX", "/nonexistent/module.so", "ARGS", "1"],
            ["MODULE", "UNLOAD", "nosuch"],
            ["MODULE", "LIST"],
        ):
            replies = []
            for server in (real, ours):
                c = plain(server.port, 2)
                try:
                    replies.append(c.execute_command(*args))
                except redis.ResponseError as e:
                    replies.append(str(e))
                c.close()
            assert replies[0] == replies[1], args
    finally:
        real.stop()
        ours.stop()


def test_docs_rows_parse():
    for name in NEW:
        assert name in command_docs.DOCS
    assert set(command_docs.SUBCOMMANDS["module"]) == {"help", "list", "load", "loadex", "unload"}
