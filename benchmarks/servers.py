"""Start, watch and stop the servers under test, each on its own loopback port.

Every server runs in a subprocess that this module started; it is stopped by
its pid (SIGTERM, wait, then SIGKILL), never by name.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Self

import psutil

from benchmarks.resp_client import RespConnection, parse_info, ping_until_ready

REPO_ROOT = Path(__file__).resolve().parent.parent
HOST = "127.0.0.1"
STOP_TIMEOUT = 10.0
READY_TIMEOUT = 20.0

# Lines such as "acceptor pid=1234" or "worker 0 pid=1235" in the supervisor log.
ROLE_LOG_LINE = re.compile(
    r"\b(acceptor|worker\s*\d*|shard\s*\d*)\b\D{0,20}?pid\s*[=:]?\s*(\d+)", re.IGNORECASE
)


def free_port() -> int:
    """Return a loopback TCP port that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


class ServerStartError(RuntimeError):
    """A server exited or never answered PING; carries the reason and its log tail."""

    def __init__(self, label: str, reason: str, log_tail: str) -> None:
        super().__init__(f"{label} failed to start: {reason}\n{log_tail}".rstrip())
        self.label = label
        self.reason = reason
        self.log_tail = log_tail

    @property
    def brief(self) -> str:
        """One line: the reason and the server's last log line."""
        last = self.log_tail.strip().splitlines()[-1:] or [""]
        return f"{self.label}: {self.reason}" + (f" | {last[0]}" if last[0] else "")


@dataclass
class ServerSpec:
    """What to start: a label for reports, the shard count, and the command line."""

    kind: str  # "redis", "shardkv" or "baseline"
    shards: int | None
    argv: list[str]
    port: int
    cwd: Path = REPO_ROOT

    @property
    def label(self) -> str:
        """Short name used in tables and charts, e.g. `shardkv-4`."""
        return f"{self.kind}-{self.shards}" if self.shards else self.kind


def redis_spec(port: int, workdir: Path) -> ServerSpec:
    """A real redis-server with persistence off (start_server reports it if missing)."""
    binary = shutil.which("redis-server") or "redis-server"
    argv = [binary, "--port", str(port), "--bind", HOST, "--save", "", "--appendonly", "no"]
    argv += ["--dir", str(workdir), "--protected-mode", "no", "--daemonize", "no"]
    return ServerSpec("redis", None, argv, port)


def shardkv_spec(port: int, shards: int) -> ServerSpec:
    """shardkv as `python main.py --port P --shards N` from the repository root."""
    argv = [sys.executable, str(REPO_ROOT / "main.py"), "--port", str(port), "--shards", str(shards)]
    return ServerSpec("shardkv", shards, argv, port)


def baseline_spec(port: int) -> ServerSpec:
    """The naive thread-per-client server in benchmarks/baseline_server.py."""
    argv = [sys.executable, str(REPO_ROOT / "benchmarks" / "baseline_server.py"), "--port", str(port)]
    return ServerSpec("baseline", None, argv, port)


@dataclass
class RunningServer:
    """A started server: its process, its log file and helpers to inspect it."""

    spec: ServerSpec
    proc: subprocess.Popen[bytes]
    log_path: Path
    workdir: Path
    warnings: list[str] = field(default_factory=list)

    @property
    def port(self) -> int:
        """The loopback port the server listens on."""
        return self.spec.port

    def processes(self) -> list[psutil.Process]:
        """The root process followed by all of its live descendants."""
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
        logged = self._roles_from_log()
        roles = {procs[0].pid: "supervisor" if self.spec.kind == "shardkv" else self.spec.kind}
        unnamed = 0
        for proc in procs[1:]:
            role = logged.get(proc.pid) or _role_from_cmdline(proc)
            if role is None:
                role = f"child {unnamed}"
                unnamed += 1
            roles[proc.pid] = role
        return roles

    def _roles_from_log(self) -> dict[int, str]:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return {}
        roles = {}
        for match in ROLE_LOG_LINE.finditer(text):
            roles[int(match.group(2))] = " ".join(match.group(1).lower().split())
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
        """Summed RSS (and PSS where the kernel offers it) of the whole process tree."""
        rss = pss = 0
        for proc in self.processes():
            try:
                info = proc.memory_full_info()
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                continue
            rss += info.rss
            pss += getattr(info, "pss", info.rss)
        result = {"rss_sum": rss, "pss_sum": pss, "processes": len(self.processes())}
        if self.spec.kind == "redis":
            with RespConnection(HOST, self.port) as conn:
                info = parse_info(conn.command("INFO", "memory"))
            result["used_memory_rss"] = int(info["used_memory_rss"])
            result["used_memory"] = int(info["used_memory"])
        return result

    def log_tail(self, lines: int = 20) -> str:
        """The last lines the server wrote to stdout/stderr."""
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self) -> None:
        """SIGTERM the root process, wait, then SIGKILL it and any leftover children."""
        children = self.processes()[1:]
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.warnings.append(f"{self.spec.label}: no exit {STOP_TIMEOUT}s after SIGTERM; killed")
                children = self.processes()[1:] or children
                self.proc.kill()
                self.proc.wait()
        _, alive = psutil.wait_procs(children, timeout=STOP_TIMEOUT if children else 0)
        for proc in alive:
            self.warnings.append(f"{self.spec.label}: child pid {proc.pid} outlived its parent; killed")
            try:
                proc.kill()
            except psutil.NoSuchProcess:
                pass
        psutil.wait_procs(alive, timeout=5)
        shutil.rmtree(self.workdir, ignore_errors=True)

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


def start_server(spec: ServerSpec, ready_timeout: float = READY_TIMEOUT) -> RunningServer:
    """Start `spec`, wait for +PONG, and return it; raises ServerStartError otherwise."""
    workdir = Path(tempfile.mkdtemp(prefix=f"bench-{spec.label}-"))
    log_path = workdir / "server.log"
    with open(log_path, "wb") as log:
        try:
            proc = subprocess.Popen(
                spec.argv,
                cwd=spec.cwd,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )
        except OSError as exc:
            shutil.rmtree(workdir, ignore_errors=True)
            raise ServerStartError(spec.label, str(exc), "") from None
    server = RunningServer(spec, proc, log_path, workdir)
    try:
        _wait_ready(server, ready_timeout)
    except (RuntimeError, TimeoutError, OSError) as exc:
        tail = server.log_tail()
        server.stop()
        reason = f"not ready on port {spec.port} ({exc})"
        raise ServerStartError(spec.label, reason, tail) from None
    except KeyboardInterrupt:
        server.stop()
        raise
    return server


def _wait_ready(server: RunningServer, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if server.proc.poll() is not None:
            raise RuntimeError(f"exited with status {server.proc.returncode}")
        try:
            ping_until_ready(HOST, server.port, timeout=min(0.25, max(0.05, deadline - time.monotonic())))
            return
        except TimeoutError:
            if time.monotonic() >= deadline:
                raise
