"""Shared fixtures.

``r`` is the differential fixture: a test that takes it runs twice, once
against a real redis-server and once against shardkv (4 shards), with a
flushed database each time.  Tests assert exact replies, so a test that
passes on both proves the replies are equal.  ``compare`` runs a command
on both servers at once and asserts the replies (errors included) match.
"""

from __future__ import annotations

import os
import shutil
import signal
import tempfile
import threading
from collections.abc import Iterator

import pytest
import redis

from tests.support import rundir
from tests.support.resp import RespClient
from tests.support.servers import ServerProcess, start_redis, start_shardkv

SERVERS = ["redis", "shardkv"]

# Every temporary file and folder of a test run goes into one private folder
# (the servers the tests start inherit TMPDIR).  At the end, anything left
# in it besides pytest's own tmp_path folders was leaked by a test or a
# helper: the run reports it and fails.  The folder is removed either way,
# so a run leaves nothing behind in the temp directory.
# Under pytest-xdist each worker is a process of its own that imports this
# file too: it shares the folder of the run that started it (inherited in
# TMPDIR), which that run checks and removes once every worker has ended.
# A run killed before it could remove its folder leaves it behind: the
# folder names its owner, and the next run removes it (tests.support.rundir).
_WORKER = "PYTEST_XDIST_WORKER" in os.environ and "SHARDKV_TESTS_TMP" in os.environ
_TMP = os.environ["SHARDKV_TESTS_TMP"] if _WORKER else rundir.make()
os.environ["SHARDKV_TESTS_TMP"] = _TMP
os.environ["TMPDIR"] = _TMP
# The suite starts hundreds of servers, each a supervisor, a worker per
# shard and its acceptors: Python processes that import all of shardkv.
# Where PYTHONDONTWRITEBYTECODE is set, every one of them compiled it again
# (about half of a worker's start-up CPU).  They share one bytecode cache
# in the run's folder instead, written by the first and removed with it.
_PYCACHE = "pycache"
os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
os.environ.setdefault("PYTHONPYCACHEPREFIX", os.path.join(_TMP, _PYCACHE))
os.environ["REDISCLI_HISTFILE"] = "/dev/null"  # redis-cli, which some tests run, keeps no history
tempfile.tempdir = _TMP


_PYTEST_PID = os.getpid()


def _interrupt(signum: int, frame: object) -> None:
    """SIGTERM ends the run as Ctrl-C does: pytest stops its fixtures (and
    the servers they started) and ends the session, and the run's folder
    is removed (an xdist worker's servers and files too, before its
    controller removes the folder).  A second SIGTERM ends it at once, as
    does SIGTERM in a process a test forked (it inherited this handler)."""
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    if os.getpid() != _PYTEST_PID:
        os.kill(os.getpid(), signal.SIGTERM)
        return
    raise KeyboardInterrupt


if (
    signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
    and threading.current_thread() is threading.main_thread()
):
    signal.signal(signal.SIGTERM, _interrupt)


# The suite, or a folder of it, runs in parallel by default: it mostly
# waits on the servers it starts, so several test processes (pytest-xdist,
# a test extra) finish it in far less time, even on 2 cores.  A file's tests
# stay together in one worker (--dist loadfile), sharing its module and
# session servers, as in a serial run.  A run that names test files (or
# tests) stays in one process: there, starting workers that each collect
# the tests again costs more than it saves.  Explicit options win: -n 0 or
# -p no:xdist runs serially, -n N in N workers; --pdb and --collect-only
# stay in one process.
XDIST_WORKERS = 2


@pytest.hookimpl(tryfirst=True)
def pytest_cmdline_main(config):
    if (
        config.pluginmanager.hasplugin("xdist")
        and "PYTEST_XDIST_WORKER" not in os.environ
        and config.getoption("numprocesses", None) is None
        and config.getoption("dist", "no") == "no"
        and not config.getoption("usepdb", False)
        and not config.getoption("collectonly", False)
        and all(os.path.isdir(arg) for arg in config.args)
    ):
        config.option.numprocesses = XDIST_WORKERS
        config.option.dist = "loadfile"


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session, exitstatus):
    if _WORKER:
        return  # the run that started this worker checks and removes the folder
    leaked = sorted(
        name
        for name in os.listdir(_TMP)
        if not name.startswith("pytest-of-") and name not in (_PYCACHE, rundir.OWNER)
    )
    shutil.rmtree(_TMP, ignore_errors=True)
    if leaked:
        shown = ", ".join(leaked[:20]) + (" ..." if len(leaked) > 20 else "")
        print(f"\nLEAK: the tests left {len(leaked)} file(s) in the temp directory: {shown}")
        if exitstatus != pytest.ExitCode.INTERRUPTED:  # (a test cut short may leave its files)
            session.exitstatus = 1


@pytest.fixture(scope="session")
def redis_proc():
    proc = start_redis()
    yield proc
    proc.stop()


@pytest.fixture(scope="session")
def shardkv_proc():
    proc = start_shardkv(shards=4)
    yield proc
    proc.stop()


@pytest.fixture(scope="module")
def redis_and_shardkv() -> Iterator[tuple[ServerProcess, ServerProcess]]:
    """A redis-server and a shardkv of two shards (``$SHARDKV_TEST_ACCEPTORS``
    acceptors) of the module's own, for tests that must not share the
    session's: they stop a worker, or leave clients behind that still run."""
    real = start_redis()
    ours = start_shardkv(shards=2)
    yield real, ours
    real.stop()
    ours.stop()


@pytest.fixture(scope="module", params=[1, 2], ids=["1-shard", "2-shards"])
def redis_and_shardkv_s12(request) -> Iterator[tuple[int, int]]:
    """(redis-server's port, shardkv's port): a redis-server and a shardkv
    of the module's own, the shardkv with one shard, then with two, for
    tests whose counts differ where a script's keys may span shards."""
    real = start_redis()
    ours = start_shardkv(shards=request.param)
    yield real.port, ours.port
    real.stop()
    ours.stop()


@pytest.fixture(scope="module", params=[1, 2], ids=["k1", "k2"])
def redis_and_shardkv_k12(request) -> Iterator[tuple[int, int, int]]:
    """(redis-server's port, shardkv's port, its acceptors): a redis-server
    and a shardkv of two shards of the module's own, the shardkv with one
    acceptor, then with two, for tests that compare the two counts."""
    acceptors = request.param
    real = start_redis()
    ours = start_shardkv(shards=2, acceptors=acceptors)
    yield real.port, ours.port, acceptors
    real.stop()
    ours.stop()


@pytest.fixture(scope="session")
def ports(request):
    """Lazily start only the servers a test run needs."""

    class Ports:
        def __getitem__(self, name: str) -> int:
            return request.getfixturevalue(f"{name}_proc").port

    return Ports()


def _client(port: int, protocol: int = 3) -> redis.Redis:
    return redis.Redis(port=port, protocol=protocol, socket_timeout=30)


def _flushall(port: int) -> None:
    """FLUSHALL on a connection of its own, closed before the test starts:
    RESP2 with no client library's handshake (redis-py's HELLO and CLIENT
    SETINFO would add three round trips to every test)."""
    with RespClient(port, timeout=30) as c:
        c.command("FLUSHALL")  # raises on an error reply, as redis-py did


@pytest.fixture(params=SERVERS)
def server(request, ports) -> int:
    """The port of each server in turn, with its database flushed."""
    port = ports[request.param]
    _flushall(port)
    return port


@pytest.fixture
def r(server):
    """A redis-py client (RESP3, the default of redis-py 8) to each server in turn."""
    c = _client(server)
    yield c
    c.close()


@pytest.fixture
def r2(server):
    """A redis-py client speaking RESP2 to each server in turn."""
    c = _client(server, protocol=2)
    yield c
    c.close()


class Compare:
    """Runs the same command on redis-server and shardkv and compares."""

    def __init__(self, real: redis.Redis, ours: redis.Redis) -> None:
        self.real = real
        self.ours = ours

    @staticmethod
    def _run(client: redis.Redis, args: tuple) -> object:
        try:
            return client.execute_command(*args)
        except redis.ResponseError as e:
            return ("error", str(e))

    def __call__(self, *args: object, unordered: bool = False) -> object:
        expected = self._run(self.real, args)
        got = self._run(self.ours, args)
        if unordered and isinstance(expected, list) and isinstance(got, list):
            expected, got = sorted(expected, key=repr), sorted(got, key=repr)
        assert got == expected, f"{args!r}: redis replied {expected!r}, shardkv replied {got!r}"
        return got


@pytest.fixture(params=[3, 2], ids=["resp3", "resp2"])
def compare(request, ports) -> Compare:
    """Both servers, flushed, behind one callable that asserts equal replies."""
    real = redis.Redis(port=ports["redis"], protocol=request.param)
    ours = redis.Redis(port=ports["shardkv"], protocol=request.param)
    real.flushall()
    ours.flushall()
    yield Compare(real, ours)
    real.close()
    ours.close()


@pytest.fixture(params=[3, 2], ids=["resp3", "resp2"])
def compare_plain(request, ports) -> Compare:
    """Like ``compare`` (not flushed), with replies as they came: without
    redis-py's parsing of COMMAND, INFO and the like."""
    real = redis.Redis(port=ports["redis"], protocol=request.param)
    ours = redis.Redis(port=ports["shardkv"], protocol=request.param)
    real.response_callbacks.clear()
    ours.response_callbacks.clear()
    yield Compare(real, ours)
    real.close()
    ours.close()
