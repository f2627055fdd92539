"""The supervisor: reads the config, starts the processes, watches them.

Start-up: if the data files in ``dir`` were written by another number of
shards, they are re-sharded first (:func:`shardkv.worker.persistence.reshard.prepare`).
Then one worker process per shard starts (``spawn`` context), each with two
pipes: a *data* pipe whose other end goes to the acceptor, and a *control*
pipe to the supervisor.  A worker loads its shard from disk and says
``loaded`` on its control pipe; once every worker has, the acceptor starts
with the data pipes' ends and begins to listen, so a client never sees a
server that is still loading.  A line per process logs its pid and role.

Then it waits on its children:

* a worker that dies is restarted at once, and its new data pipe is handed
  to the running acceptor over the acceptor's control socket
  (``send_fds``).  Commands that were in flight to the dead worker got
  ``-ERR shard unavailable`` from the acceptor; new ones wait in the pipe
  while the new worker loads the shard, and other shards carry on;
* a worker that cannot load its data (it exits with
  ``EXIT_LOAD_FAILED``), or that dies again and again before it has
  loaded, stops shardkv with status 1: restarting cannot help;
* if the acceptor dies, a new one is started; the workers keep running,
  and each gets a new data pipe over its control pipe;
* the acceptor reports each CONFIG SET, so that processes started later
  start with the settings in effect;
* if the supervisor itself dies, even by SIGKILL, the kernel sends the
  acceptor and every worker SIGTERM (:mod:`shardkv.runtime.parentdeath`): none of
  them outlives it, and the port is freed;
* SIGINT, SIGTERM (and SHUTDOWN, which the acceptor turns into SIGTERM)
  stop the acceptor, then the workers, which flush their AOF and save if
  they should.  The exit status is 0, or 1 if a worker could not save.
"""

from __future__ import annotations

import json
import logging
import multiprocessing as mp
import os
import signal
import socket
import sys
import time
from multiprocessing.connection import Connection, wait
from typing import Any

from shardkv import __version__
from shardkv.acceptor import main as acceptor
from shardkv.protocol import decisions
from shardkv.runtime import config
from shardkv.runtime.proctitle import set_name
from shardkv.worker import loop as worker_loop
from shardkv.worker.persistence import engine as persistence
from shardkv.worker.persistence import reshard
from shardkv.worker.persistence.files import LoadError

log = logging.getLogger("shardkv")

STOP_GRACE = 4.0  # seconds to wait for the acceptor before SIGKILL
WORKER_STOP_GRACE = 120.0  # a worker saving a big shard on its way out takes a while
MAX_EARLY_DEATHS = 5  # deaths in a row before loading that stop shardkv


class Supervisor:
    def __init__(self, cfg: dict[str, Any]) -> None:
        self.cfg = cfg
        self.ctx = mp.get_context("spawn")
        n = cfg["shards"]
        self.workers: list[Any] = [None] * n
        self.ctls: list[Connection | None] = [None] * n  # our end of each control pipe
        self.ends: list[Connection | None] = [None] * n  # acceptor ends not handed over yet
        self.loaded = [False] * n
        self.early_deaths = [0] * n
        self.acceptor: Any = None
        self.control: socket.socket | None = None  # to the acceptor
        self.control_buf = b""
        self.stopping = False
        self.status = 0

    # -- workers ----------------------------------------------------------------

    def _start_worker(self, index: int) -> None:
        ours, theirs = self.ctx.Pipe()
        ctl_ours, ctl_theirs = self.ctx.Pipe()
        proc = self.ctx.Process(
            target=worker_loop.serve,
            args=(theirs, ctl_theirs, index, self.cfg),
            name=f"shardkv-worker-{index}",
        )
        proc.start()
        theirs.close()
        ctl_theirs.close()
        self.workers[index] = proc
        self.ctls[index] = ctl_ours
        self.ends[index] = ours
        self.loaded[index] = False
        log.info("worker %d pid=%d", index, proc.pid)

    def _worker_loaded(self, index: int) -> None:
        try:
            message = self.ctls[index].recv_bytes()  # type: ignore[union-attr]
        except (EOFError, OSError):
            return  # it died; its sentinel says so
        if message != b"loaded":
            return
        self.loaded[index] = True
        self.early_deaths[index] = 0
        if self.acceptor is None and all(self.loaded):
            self._start_acceptor()

    def _hand_over(self, index: int) -> None:
        """Give the running acceptor the data pipe of worker ``index``."""
        end = self.ends[index]
        self.ends[index] = None
        if end is None:
            return
        try:
            socket.send_fds(self.control, [b"%d" % index], [end.fileno()])  # type: ignore[arg-type]
        except (OSError, TypeError) as e:
            log.warning("could not hand shard %d to the acceptor: %s", index, e)
        end.close()

    def _worker_died(self, index: int) -> None:
        proc = self.workers[index]
        proc.join(1)  # reap it, so that its exit code is known
        code = proc.exitcode
        for conn in (self.ctls[index], self.ends[index]):
            if conn is not None:
                conn.close()
        self.ctls[index] = self.ends[index] = None
        if code == persistence.EXIT_LOAD_FAILED:
            log.error("worker %d could not load its data (see above); stopping shardkv", index)
            self._fail()
            return
        if not self.loaded[index]:
            self.early_deaths[index] += 1
            if self.early_deaths[index] >= MAX_EARLY_DEATHS:
                log.error("worker %d died %d times before loading; stopping shardkv", index, MAX_EARLY_DEATHS)
                self._fail()
                return
        log.warning("worker %d pid=%d exited with %s; restarting it", index, proc.pid, code)
        self._start_worker(index)
        if self.acceptor is not None:
            self._hand_over(index)

    def _fail(self) -> None:
        self.status = 1
        self.stopping = True

    # -- the acceptor -------------------------------------------------------------

    def _start_acceptor(self) -> None:
        ends = list(self.ends)
        ctrl_ours, ctrl_theirs = self.ctx.Pipe()
        self.acceptor = self.ctx.Process(
            target=acceptor.serve, args=(self.cfg, ends, ctrl_theirs), name="shardkv-acceptor"
        )
        self.acceptor.start()
        ctrl_theirs.close()
        for i, end in enumerate(ends):
            if end is not None:
                end.close()
                self.ends[i] = None
        self.control = socket.socket(fileno=os.dup(ctrl_ours.fileno()))
        ctrl_ours.close()
        self.control_buf = b""
        log.info("acceptor pid=%d port=%d", self.acceptor.pid, self.cfg["port"])

    def _acceptor_died(self) -> None:
        self.acceptor.join(1)
        log.warning(
            "acceptor pid=%d exited with %s; restarting it", self.acceptor.pid, self.acceptor.exitcode
        )
        if self.control is not None:
            self.control.close()
            self.control = None
        # The workers keep their data: each gets a pipe to the new acceptor.
        for i, proc in enumerate(self.workers):
            if proc is None or self.ends[i] is not None or not proc.is_alive():
                continue
            ours, theirs = self.ctx.Pipe()
            try:
                with socket.socket(fileno=os.dup(self.ctls[i].fileno())) as sock:  # type: ignore[union-attr]
                    socket.send_fds(sock, [b"%d" % i], [theirs.fileno()])
                self.ends[i] = ours
            except OSError as e:
                log.warning("could not give worker %d a new pipe: %s", i, e)
                ours.close()
            theirs.close()
        self._start_acceptor()

    def _from_acceptor(self) -> None:
        """Messages from the acceptor: ``config {json}`` lines (CONFIG SET)."""
        try:
            data = self.control.recv(65536, socket.MSG_DONTWAIT)  # type: ignore[union-attr]
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            self.control.close()  # type: ignore[union-attr]
            self.control = None
            return
        self.control_buf += data
        *lines, self.control_buf = self.control_buf.split(b"\n")
        for line in lines:
            kind, _, payload = line.partition(b" ")
            if kind == b"config":
                try:
                    self.cfg.update(json.loads(payload))
                except ValueError:
                    log.warning("bad message from the acceptor: %r", line[:100])

    # -- running ------------------------------------------------------------------

    def request_stop(self, *_: object) -> None:
        self.stopping = True

    def _spawn(self, target: Any, args: tuple) -> Any:
        proc = self.ctx.Process(target=target, args=args, name="shardkv-reshard")
        proc.start()
        return proc

    def run(self) -> int:
        set_name("shardkv-super")
        signal.signal(signal.SIGINT, self.request_stop)
        signal.signal(signal.SIGTERM, self.request_stop)
        log.info("supervisor pid=%d shardkv %s, %d shards", os.getpid(), __version__, self.cfg["shards"])
        decisions.remove_stale(_alive)  # left by supervisors that were killed
        try:
            reshard.prepare(self.cfg, self._spawn)
        except (LoadError, OSError) as e:
            log.error("shardkv cannot start: %s", e)
            return 1
        for i in range(self.cfg["shards"]):
            self._start_worker(i)
        while not self.stopping:
            events: dict[Any, tuple[str, int, Any]] = {}
            if self.acceptor is not None:
                events[self.acceptor.sentinel] = ("acceptor", -1, self.acceptor)
            if self.control is not None:
                events[self.control] = ("control", -1, self.control)
            for i, proc in enumerate(self.workers):
                events[proc.sentinel] = ("worker", i, proc)
                if not self.loaded[i] and self.ctls[i] is not None:
                    events[self.ctls[i]] = ("loaded", i, self.ctls[i])
            ready = wait(list(events), timeout=0.5)
            # Loads first, deaths after: a worker may say "loaded" and die.
            for what, i, obj in sorted((events[r] for r in ready), key=lambda e: e[0] != "loaded"):
                if self.stopping:
                    break
                # An earlier event of this round may have replaced the object.
                if what == "loaded" and obj is self.ctls[i]:
                    self._worker_loaded(i)
                elif what == "worker" and obj is self.workers[i]:
                    self._worker_died(i)
                elif what == "control" and obj is self.control:
                    self._from_acceptor()
                elif what == "acceptor" and obj is self.acceptor:
                    self._acceptor_died()
        self._stop_children()
        # The acceptors' commit decisions without appendonly: no acceptor is left to need them.
        decisions.remove_volatile(os.getpid())
        log.info("shardkv stopped")
        return self.status

    def _stop_children(self) -> None:
        if self.acceptor is not None and self.acceptor.is_alive():
            self.acceptor.terminate()
            self.acceptor.join(STOP_GRACE)
            if self.acceptor.is_alive():
                log.warning("acceptor pid=%d did not stop; killing it", self.acceptor.pid)
                self.acceptor.kill()
                self.acceptor.join(1)
        # Now no command can reach a worker: each finishes, flushes and saves.
        for w in self.workers:
            if w is not None and w.is_alive():
                w.terminate()
        deadline = time.monotonic() + WORKER_STOP_GRACE
        for i, w in enumerate(self.workers):
            if w is None:
                continue
            w.join(max(0.0, deadline - time.monotonic()))
            if w.is_alive():
                log.warning("worker %d pid=%d did not stop; killing it", i, w.pid)
                w.kill()
                w.join(1)
                self.status = 1
            elif w.exitcode not in (0, -signal.SIGTERM, persistence.EXIT_LOAD_FAILED):
                log.error("worker %d exited with %s while stopping", i, w.exitcode)
                self.status = 1
        for conn in [*self.ctls, *self.ends]:
            if conn is not None:
                conn.close()
        if self.control is not None:
            self.control.close()
            self.control = None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True
    return True


def setup_logging(cfg: dict[str, Any]) -> None:
    handler: logging.Handler
    if cfg["logfile"]:
        handler = logging.FileHandler(cfg["logfile"])
    else:
        handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(process)d %(message)s"))
    root = logging.getLogger()
    root.addHandler(handler)
    root.setLevel(logging.WARNING if cfg["loglevel"] == "warning" else logging.INFO)


def main(argv: list[str] | None = None) -> int:
    try:
        cfg = config.load(argv)
    except config.ConfigError as e:
        print(f"shardkv: {e}", file=sys.stderr)
        return 2
    setup_logging(cfg)
    return Supervisor(cfg).run()
