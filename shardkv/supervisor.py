"""The supervisor: reads the config, starts the processes, watches them.

It creates one pipe per shard, starts one worker process per shard and
the acceptor process, all with the ``spawn`` context, and logs a line per
process with its pid and role.  Then it waits on their sentinels:

* a worker that dies is logged and restarted on a fresh pipe, whose
  acceptor end is handed to the running acceptor over a control pipe
  (``send_handle``); until then the acceptor answers that shard's commands
  with ``-ERR shard unavailable``;
* if the acceptor dies, everything is restarted;
* SIGINT or SIGTERM stops the acceptor, then the workers, and exits 0.
"""

from __future__ import annotations

import logging
import multiprocessing as mp
import os
import signal
import sys
import time
from multiprocessing.connection import Connection, wait
from multiprocessing.reduction import send_handle
from typing import Any

from shardkv import __version__, acceptor, config
from shardkv.worker import process as worker_process

log = logging.getLogger("shardkv")

STOP_GRACE = 4.0  # seconds to wait for children before SIGKILL


class Supervisor:
    def __init__(self, cfg: dict[str, Any]) -> None:
        self.cfg = cfg
        self.ctx = mp.get_context("spawn")
        self.workers: list[Any] = [None] * cfg["shards"]
        self.acceptor: Any = None
        self.control: Connection | None = None
        self.stopping = False

    def _start_worker(self, index: int) -> Connection:
        """Start the worker of shard ``index``; return the acceptor's end of its pipe."""
        ours, theirs = self.ctx.Pipe()
        proc = self.ctx.Process(
            target=worker_process.serve,
            args=(theirs, index, self.cfg["shards"], self.cfg["hz"], self.cfg["loglevel"]),
            name=f"shardkv-worker-{index}",
        )
        proc.start()
        theirs.close()
        self.workers[index] = proc
        log.info("worker %d pid=%d", index, proc.pid)
        return ours

    def _start_all(self) -> None:
        ends = [self._start_worker(i) for i in range(self.cfg["shards"])]
        ctrl_ours, ctrl_theirs = self.ctx.Pipe()
        self.acceptor = self.ctx.Process(
            target=acceptor.serve, args=(self.cfg, ends, ctrl_theirs), name="shardkv-acceptor"
        )
        self.acceptor.start()
        ctrl_theirs.close()
        for end in ends:
            end.close()
        self.control = ctrl_ours
        log.info("acceptor pid=%d port=%d", self.acceptor.pid, self.cfg["port"])

    def _restart_worker(self, index: int) -> None:
        end = self._start_worker(index)
        try:
            self.control.send_bytes(b"shard %d" % index)  # type: ignore[union-attr]
            send_handle(self.control, end.fileno(), self.acceptor.pid)
        except OSError as e:
            log.warning("could not hand shard %d to the acceptor: %s", index, e)
        end.close()

    def request_stop(self, *_: object) -> None:
        self.stopping = True

    def run(self) -> int:
        signal.signal(signal.SIGINT, self.request_stop)
        signal.signal(signal.SIGTERM, self.request_stop)
        log.info("supervisor pid=%d shardkv %s, %d shards", os.getpid(), __version__, self.cfg["shards"])
        self._start_all()
        while not self.stopping:
            sentinels = {self.acceptor.sentinel: -1}
            sentinels.update({w.sentinel: i for i, w in enumerate(self.workers)})
            for ready in wait(list(sentinels), timeout=0.2):
                if self.stopping:
                    break
                index = sentinels[ready]
                if index < 0:
                    log.warning(
                        "acceptor pid=%d exited with %s; restarting all",
                        self.acceptor.pid,
                        self.acceptor.exitcode,
                    )
                    self._stop_children()
                    self._start_all()
                    break
                proc = self.workers[index]
                log.warning("worker %d pid=%d exited with %s; restarting it", index, proc.pid, proc.exitcode)
                self._restart_worker(index)
        self._stop_children()
        log.info("shardkv stopped")
        return 0

    def _stop_children(self) -> None:
        procs = [self.acceptor, *self.workers]
        if self.acceptor is not None and self.acceptor.is_alive():
            self.acceptor.terminate()
            self.acceptor.join(STOP_GRACE / 2)
        for w in self.workers:
            if w is not None and w.is_alive():
                w.terminate()
        deadline = time.monotonic() + STOP_GRACE / 2
        for p in procs:
            if p is not None:
                p.join(max(0.0, deadline - time.monotonic()))
                if p.is_alive():
                    log.warning("%s pid=%d did not stop; killing it", p.name, p.pid)
                    p.kill()
                    p.join(1)
        if self.control is not None:
            self.control.close()
            self.control = None


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
