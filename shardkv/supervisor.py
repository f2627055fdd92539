"""The supervisor: reads the config, starts the processes, watches them.

Start-up: if the data files in ``dir`` were written by another number of
shards, they are re-sharded first (:func:`shardkv.worker.persistence.reshard.prepare`).
Then one worker process per shard starts (``spawn`` context), each with
one *data* pipe per acceptor (``acceptors``, K: the worker gets the list,
pipe i for acceptor i) and a *control* pipe to the supervisor.  A worker
loads its shard from disk and says ``loaded`` on its control pipe.  The
K acceptors start with the workers and, as Redis does while it loads,
listen at once (with ``SO_REUSEPORT`` when K > 1, so the kernel spreads
the connections over them): until every worker has loaded, each answers
``-LOADING`` to every command without the ``loading`` flag, and INFO says
``loading:1``.  Once every worker has loaded, acceptor i is sent its end
of every worker's pipe i (``send_fds`` on a pipe of its own, which then
closes) and serves, with its index i (its coordinator number): no client
sees a shard before it has loaded, as no worker reads its pipes before.
A line per process logs its pid and role.

Then it waits on its children:

* a worker that dies is restarted at once, and its new data pipes are
  handed to the running acceptors, each its own, over each acceptor's
  control socket (``send_fds``, a ``pipe <shard>`` line), after a
  ``reloading <shard> <saved_at>`` line (the restart's time, the new
  worker's last save); a ``reloaded <shard>`` line follows once it has
  loaded.  Commands that were in flight to the dead worker got ``-ERR
  shard unavailable`` from the acceptor; meanwhile new ones for that shard
  get ``-LOADING`` from the acceptor, and other shards carry on;
* a worker that cannot load its data (it exits with
  ``EXIT_LOAD_FAILED``), or that dies again and again before it has
  loaded, stops shardkv with status 1: restarting cannot help;
* a worker that could not write or fsync its AOF with ``appendfsync
  always`` (it exits with ``EXIT_AOF_FAILED``) stops shardkv with status
  1 too, the other workers saving nothing (``nosave``), as Redis exits
  then: restarting it would acknowledge writes of a shard that cannot
  persist;
* if acceptor i dies, it alone is started again; the workers keep
  running, and each gets a new data pipe for i over its control pipe
  (the message is ``i``); the other acceptors keep serving, and it is
  told it restarted (it learns the script cache from them before it listens);
* with K > 1 it makes the shared count of each acceptor's clients
  (:mod:`shardkv.runtime.clientcount`: ``maxclients`` is their total)
  and zeroes a dead acceptor's count;
* it makes the shared number of the last SCRIPT FLUSH
  (:mod:`shardkv.runtime.scriptflushes`), one sequence for every
  acceptor, which each hands a restarted worker;
* an acceptor reports each CONFIG SET (a ``config`` line), so that
  processes started later start with the settings in effect; the
  supervisor passes it on to the other acceptors, which apply it too
  (with K > 1 numbered in the order it reads them, and the asker told its
  number: see :mod:`shardkv.acceptor.configorder`);
* with K > 1 it relays the bus between acceptors (:mod:`shardkv.protocol.bus`):
  a question of one acceptor goes to the others, and their answers come
  back to it once all have answered, or one died, or after
  ``bus.ANSWER_WITHIN`` seconds; a message goes to the others.  A CONFIG
  SET's ``sync`` (and ``listen``) question waits for every live acceptor: one that has not
  answered in ``bus.SYNC_WITHIN`` seconds is stuck, and is killed (and
  restarted with the new settings), so that an OK always means applied;
* if the supervisor itself dies, even by SIGKILL, the kernel sends the
  acceptors and every worker SIGTERM (:mod:`shardkv.runtime.parentdeath`):
  none of them outlives it, and the port is freed;
* SIGINT and SIGTERM stop as ``shutdown-on-sigint`` or
  ``shutdown-on-sigterm`` says (``default``: save when there are ``save``
  rules; ``save``; ``nosave``; ``force``: a failed save does not keep the
  server up).  The stop is handed to one acceptor (a ``stop`` line,
  :mod:`shardkv.protocol.bus`), which, once no script is busy (as Redis's
  serverCron runs the stop only then: meanwhile the server serves, SCRIPT
  KILL and SHUTDOWN NOSAVE work), has every shard save or not as SHUTDOWN
  does while the server still runs: if a shard cannot save, the shards
  are opened again and the server keeps serving, as Redis does ("Error
  trying to save the DB, can't exit."); a later signal tries again.  Once
  they are done, the acceptor sends ``SHUTDOWN_SIGNAL``, as its SHUTDOWN
  does.  An acceptor that does not begin within ``STOP_ANSWER_WITHIN``
  seconds (stopped, stuck) or dies meanwhile, and a stop with no acceptor
  (still loading), stop without it, the workers saving on their way out
  (but a stop before every worker has loaded at start saves nothing, and
  a worker still loading ends its load there, as Redis stops while it loads);
  shards not all stopped within ``WORKER_STOP_GRACE`` of its ``shutting``
  (a worker frozen or hung) stop without it too, the workers left killed
  after ``STOP_GRACE`` (status 1) (the acceptor's ``__ping``s before
  the ``__shutdown`` wait ``durability.SIGNAL_PING_WAIT`` at the most);
* a SIGINT while a signal's stop is pending (Redis's "You insist...
  exiting now.") kills every child at once, removes the temp files of
  their saves and exits 1;
* SHUTDOWN (which an acceptor turns into ``SHUTDOWN_SIGNAL`` once its
  shards are done) and the stops above that go on without an acceptor
  stop the acceptors, then the workers, which flush their AOF and save
  if they should: on a signal, as its flags say, which each worker is
  told (``STOP_FLAGS``) before its SIGTERM.  The exit status is 0, or 1
  if a worker could not save there: a worker dead before such a stop
  that saves could not either.
"""

from __future__ import annotations

import json
import logging
import math
import multiprocessing as mp
import os
import signal
import socket
import sys
import time
from multiprocessing import resource_tracker
from multiprocessing.connection import Connection, wait
from typing import Any, NoReturn

from shardkv import __version__
from shardkv.protocol import bus, decisions
from shardkv.runtime import config, serverlog
from shardkv.runtime.clientcount import ClientCounts
from shardkv.runtime.exitcodes import (
    EXIT_AOF_FAILED,
    EXIT_CANNOT_LISTEN,
    EXIT_LOAD_FAILED,
    PIPES_MESSAGE,
    PIPES_PER_MESSAGE,
    SHUTDOWN_SIGNAL,
    STOP_FLAGS,
    stop_mode,
)
from shardkv.runtime.loadprogress import LoadProgress
from shardkv.runtime.proctitle import set_name
from shardkv.runtime.schedules import Schedules
from shardkv.runtime.scriptflags import ScriptFlags
from shardkv.runtime.scriptflushes import ScriptFlushes
from shardkv.runtime.slowlogfile import SlowLogFile
from shardkv.worker.persistence.files import Files, LoadError

# The acceptor's and the worker's code is imported in the child that runs
# it (_serve_acceptor, _serve_worker), not here: each spawned child runs
# main.py again, which imports this module, and a worker need not import
# the acceptor's code, nor the acceptor the worker's, nor the supervisor
# either.

log = logging.getLogger("shardkv")

STOP_GRACE = 4.0  # seconds to wait for the acceptor before SIGKILL
# A signal's stop that saves: how long the acceptor it is handed to has to
# say it has begun (``stopping``) before the supervisor stops without it.
STOP_ANSWER_WITHIN = 5.0
WORKER_STOP_GRACE = 120.0  # a worker saving a big shard on its way out takes a while
MAX_EARLY_DEATHS = 5  # deaths in a row before loading that stop shardkv


class Supervisor:
    def __init__(self, cfg: dict[str, Any]) -> None:
        self.cfg = cfg
        self.ctx = mp.get_context("spawn")
        n = cfg["shards"]
        k = self.nacceptors = cfg.get("acceptors", 1)
        self.workers: list[Any] = [None] * n
        self.ctls: list[Connection | None] = [None] * n  # our end of each control pipe
        # ends[w][a]: acceptor a's end of worker w's data pipe, not handed over yet.
        self.ends: list[list[Connection | None]] = [[None] * k for _ in range(n)]
        self.loaded = [False] * n
        self.early_deaths = [0] * n
        # Each worker's last save as it starts (Unix seconds), Redis's
        # ``lastsave`` "at startup we consider the DB saved": the supervisor's
        # start for the first workers (and the acceptors), a restart's time
        # for a worker restarted later.  The worker takes it as its own and
        # the acceptors hear it in its ``reloading`` line, so that LASTSAVE
        # says the same while it reloads and once it has loaded.
        self.started_at = int(time.time())
        self.saved_at = [self.started_at] * n
        self.acceptors: list[Any] = [None] * k
        self.controls: list[socket.socket | None] = [None] * k  # to each acceptor
        # An acceptor started before every worker has loaded, answering
        # -LOADING until its pipes come: the socket they go through; None
        # for the others.  Its control socket is in ``controls`` from its
        # start: its bus (CLIENT LIST, PUBLISH, CONFIG SET at K > 1) and its
        # CONFIG SETs are relayed while the shards load, as Redis answers
        # them while it loads.
        self.waiting: list[socket.socket | None] = [None] * k
        self.config_number = 0  # K > 1: the CONFIG SETs numbered (shardkv.acceptor.configorder)
        self.readers = [bus.ControlReader() for _ in range(k)]
        # The bus (K > 1): questions of one acceptor to the others, waiting
        # for answers: (asker, its id) -> [acceptors still to answer, answers,
        # deadline, whether it is a CONFIG SET's sync].
        self.questions: dict[tuple[int, int], list] = {}
        # maxclients across the acceptors (K > 1): each one's clients, shared.
        self.client_counts = ClientCounts(k) if k > 1 else None
        # SCRIPT FLUSH's numbers: one sequence for every acceptor, which
        # outlives their restarts (a restarted worker is handed the last).
        self.script_flushes = ScriptFlushes()
        # The slow log: one for every acceptor and worker, which outlives
        # their restarts (see shardkv.runtime.slowlogfile).
        self.slow_log = SlowLogFile()
        # How far each worker's loading at start has come, for the
        # acceptors' INFO (see shardkv.runtime.loadprogress).
        self.load_progress = LoadProgress(n)
        # The saves each shard has scheduled, which outlive its worker (see
        # shardkv.runtime.schedules).
        self.schedules = Schedules(n)
        # Whether each shard may run a script, for the acceptors'
        # (un)subscribes (K > 1: see shardkv.runtime.scriptflags).
        self.script_flags = ScriptFlags(n) if k > 1 else None
        self.stopping = False
        self.shutdown = False  # the stop is an acceptor's SHUTDOWN (request_shutdown)
        self.stop_signal: int | None = None  # SIGINT or SIGTERM, the last one received (request_stop)
        self.signalled = False  # a signal not handled by the loop yet (_signal_stop)
        # A signal's stop handed to an acceptor: [its index, the time by
        # which it must say ``stopping`` (inf once it has, while it waits
        # for a busy script; once it says ``shutting``, the time by which
        # the shards must be done), whether it has said ``shutting``]; None
        # if none.
        self.stop_attempt: list[Any] | None = None
        # The shards had their grace under the acceptor's stop, which went
        # past it: _stop_children gives the workers STOP_GRACE only.
        self.workers_overdue = False
        self.status = 0
        self.fail_flags = ""  # how the workers stop after a failure (_fail)
        # Every worker has loaded once: before, a stop saves nothing (_stop_flags).
        self.started = False
        self.wakeup: socket.socket  # the signals' wake-up socket, while run() runs

    # -- workers ----------------------------------------------------------------

    def _start_worker(self, index: int, saved_at: int | None = None) -> None:
        """Start worker ``index``, saved as of ``saved_at`` (now if None, see ``saved_at``)."""
        # One data pipe per acceptor (its index is the pipe's place in the list).
        at = self.saved_at[index] = int(time.time()) if saved_at is None else saved_at
        pipes = [self.ctx.Pipe() for _ in range(self.nacceptors)]
        ctl_ours, ctl_theirs = self.ctx.Pipe()
        theirs = [pipe[1] for pipe in pipes]
        # INFO's loading total: unknown until this worker has found its files again.
        self.load_progress.forget(index)
        proc = self.ctx.Process(
            target=_serve_worker,
            args=(
                theirs,
                ctl_theirs,
                index,
                self.cfg,
                self.slow_log,
                self.load_progress,
                self.schedules,
                at,
                self.script_flags,
            ),
            name=f"shardkv-worker-{index}",
        )
        proc.start()
        for conn in theirs:
            conn.close()
        ctl_theirs.close()
        self.workers[index] = proc
        self.ctls[index] = ctl_ours
        self.ends[index] = [pipe[0] for pipe in pipes]
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
        if self.started:  # a worker restarted after the start
            self._tell_acceptors(bus.RELOADED_LINE + b" %d\n" % index)
        if all(self.loaded):
            self.started = True
            for a, proc in enumerate(self.acceptors):
                if proc is None:
                    self._start_acceptor(a)
                elif self.waiting[a] is not None:
                    self._send_pipes(a)

    def _hand_over(self, index: int) -> None:
        """Give each running acceptor its data pipe to worker ``index``."""
        for a, control in enumerate(self.controls):
            end = self.ends[index][a]
            if end is None or control is None or self.waiting[a] is not None:
                continue  # (one still waiting gets every pipe at once: _send_pipes)
            self.ends[index][a] = None
            try:
                socket.send_fds(control, [b"pipe %d\n" % index], [end.fileno()])
            except OSError as e:
                log.warning("could not hand shard %d to acceptor %d: %s", index, a, e)
            end.close()

    def _worker_died(self, index: int) -> None:
        proc = self.workers[index]
        proc.join(1)  # reap it, so that its exit code is known
        code = proc.exitcode
        for conn in (self.ctls[index], *self.ends[index]):
            if conn is not None:
                conn.close()
        self.ctls[index] = None
        self.ends[index] = [None] * self.nacceptors
        if code == EXIT_LOAD_FAILED:
            log.error("worker %d could not load its data (see above); stopping shardkv", index)
            self._fail()
            return
        if code == EXIT_AOF_FAILED:
            log.error("worker %d could not persist its AOF (see above); stopping shardkv", index)
            self._fail("nosave")
            return
        if not self.loaded[index]:
            self.early_deaths[index] += 1
            if self.early_deaths[index] >= MAX_EARLY_DEATHS:
                log.error("worker %d died %d times before loading; stopping shardkv", index, MAX_EARLY_DEATHS)
                self._fail()
                return
        log.warning("worker %d pid=%d exited with %s; restarting it", index, proc.pid, code)
        self._start_worker(index)
        if self.started:
            self._tell_acceptors(bus.RELOADING_LINE + b" %d %d\n" % (index, self.saved_at[index]))
        self._hand_over(index)

    def _tell_acceptors(self, line: bytes, only: int | None = None) -> None:
        """Send ``line`` to every acceptor that has its pipes (or to ``only``)."""
        for a, control in enumerate(self.controls):
            if control is None or self.waiting[a] is not None or (only is not None and a != only):
                continue
            try:
                control.sendall(line)
            except OSError as e:
                log.warning("could not tell acceptor %d %r: %s", a, line.strip(), e)

    def _fail(self, flags: str = "") -> None:
        """Stop shardkv with status 1; the workers stop as ``flags`` say
        (``STOP_FLAGS``; "": as with no signal's flags)."""
        self.status = 1
        self.fail_flags = flags
        self.stopping = True

    # -- the acceptor -------------------------------------------------------------

    def _start_acceptor(self, a: int, restarted: bool = False) -> None:
        """Start acceptor ``a`` with its ends of every worker's pipe
        (``restarted``: it died, and the others have served meanwhile).
        Before every worker has loaded, a first start sends them later
        (:meth:`_send_pipes`): meanwhile it listens and answers -LOADING."""
        early = not restarted and not all(self.loaded)
        ends: list[Connection | None] = [None] * len(self.workers)
        if not early:
            ends = [self.ends[w][a] for w in range(len(self.workers))]
        ctrl_ours, ctrl_theirs = self.ctx.Pipe()
        pipes_ours, pipes_theirs = self.ctx.Pipe() if early else (None, None)
        name = "shardkv-acceptor" if self.nacceptors == 1 else f"shardkv-acceptor-{a}"
        proc = self.acceptors[a] = self.ctx.Process(
            target=_serve_acceptor,
            args=(
                pipes_theirs,
                self.cfg,
                ends,
                ctrl_theirs,
                a,
                self.client_counts,
                restarted,
                self.config_number,
                self.script_flushes,
                self.slow_log,
                self.load_progress,
                self.started_at,
                self.script_flags,
            ),
            name=name,
        )
        proc.start()
        ctrl_theirs.close()
        for w, end in enumerate(ends):
            if end is not None:
                end.close()
                self.ends[w][a] = None
        control = socket.socket(fileno=os.dup(ctrl_ours.fileno()))
        ctrl_ours.close()
        self.readers[a] = bus.ControlReader()
        if pipes_ours is not None and pipes_theirs is not None:
            pipes_theirs.close()
            self.waiting[a] = socket.socket(fileno=os.dup(pipes_ours.fileno()))
            pipes_ours.close()
        self.controls[a] = control
        if self.nacceptors == 1:
            log.info("acceptor pid=%d port=%d", proc.pid, self.cfg["port"])
        else:
            log.info("acceptor pid=%d port=%d index=%d", proc.pid, self.cfg["port"], a)
        if restarted:
            for w, loaded in enumerate(self.loaded):
                if not loaded:  # a worker restarted meanwhile, still reloading
                    self._tell_acceptors(bus.RELOADING_LINE + b" %d %d\n" % (w, self.saved_at[w]), only=a)

    def _send_pipes(self, a: int) -> None:
        """Every worker has loaded: send acceptor ``a``, started meanwhile,
        its end of each worker's pipe, in order: it serves from then on."""
        sock = self.waiting[a]
        assert sock is not None
        self.waiting[a] = None
        ends = [self.ends[w][a] for w in range(len(self.workers))]
        try:
            for first in range(0, len(ends), PIPES_PER_MESSAGE):
                batch = ends[first : first + PIPES_PER_MESSAGE]
                socket.send_fds(sock, [PIPES_MESSAGE], [end.fileno() for end in batch])  # type: ignore[union-attr]
        except OSError as e:  # it died meanwhile: its sentinel says so, and it starts again
            log.warning("could not hand the shards to acceptor %d: %s", a, e)
            sock.close()
            return
        sock.close()
        for w, end in enumerate(ends):
            end.close()  # type: ignore[union-attr]
            self.ends[w][a] = None

    def _acceptor_died(self, a: int) -> None:
        """Acceptor ``a`` died: start it again; the others keep serving."""
        proc = self.acceptors[a]
        proc.join(1)
        if self.waiting[a] is not None:
            # It died waiting for its pipes, which the supervisor still
            # holds: start it again as it was, a first start (unless it
            # could not listen: it listens at once, while the shards load).
            self.waiting[a].close()  # type: ignore[union-attr]
            self.waiting[a] = None
            control = self.controls[a]
            if control is not None:
                control.close()
                self.controls[a] = None
            self._forget_acceptor(a)
            if proc.exitcode != EXIT_CANNOT_LISTEN:
                log.warning(
                    "acceptor pid=%d exited with %s before the shards loaded; restarting it",
                    proc.pid,
                    proc.exitcode,
                )
                self._start_acceptor(a)
                return
        if self.stop_attempt is not None and self.stop_attempt[0] == a:
            # Nobody else knows which shards it shut: stop without it.
            log.warning("acceptor pid=%d exited with %s during the stop; stopping", proc.pid, proc.exitcode)
            self.stop_attempt = None
            self.stopping = True
            return
        if proc.exitcode == EXIT_CANNOT_LISTEN:
            log.error(
                "acceptor %d cannot listen on port %d (see above); stopping shardkv", a, self.cfg["port"]
            )
            self._fail()
            return
        log.warning("acceptor pid=%d exited with %s; restarting it", proc.pid, proc.exitcode)
        if self.client_counts is not None:
            self.client_counts.set(a, 0)  # its clients went with it: the others may take their places
        control = self.controls[a]
        if control is not None:
            control.close()
            self.controls[a] = None
        self._forget_acceptor(a)
        # The workers keep their data: each gets a new pipe for acceptor a
        # (the message is the acceptor's index).
        for w, worker in enumerate(self.workers):
            if worker is None or self.ends[w][a] is not None or not worker.is_alive():
                continue
            ours, theirs = self.ctx.Pipe()
            try:
                with socket.socket(fileno=os.dup(self.ctls[w].fileno())) as sock:  # type: ignore[union-attr]
                    socket.send_fds(sock, [b"%d" % a], [theirs.fileno()])
                self.ends[w][a] = ours
            except OSError as e:
                log.warning("could not give worker %d a new pipe: %s", w, e)
                ours.close()
            theirs.close()
        self._start_acceptor(a, restarted=True)

    def _from_acceptor(self, a: int) -> None:
        """Messages from acceptor ``a``: ``config {json}`` lines (CONFIG SET),
        kept for the processes started later and passed on to the other
        acceptors, which apply them to themselves; and bus frames
        (:mod:`shardkv.protocol.bus`), relayed."""
        control = self.controls[a]
        try:
            data = control.recv(1 << 20, socket.MSG_DONTWAIT)  # type: ignore[union-attr]
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            control.close()  # type: ignore[union-attr]
            self.controls[a] = None
            self._forget_acceptor(a)
            return
        try:
            messages = self.readers[a].feed(data)
        except (ValueError, IndexError) as e:
            log.warning("bad message from acceptor %d: %s", a, e)
            self.readers[a] = bus.ControlReader()
            return
        for kind, payload in messages:
            if kind == b"bus":
                self._relay(a, payload)
            elif kind in (bus.STOPPING_LINE, bus.SHUTTING_LINE, bus.STOP_FAILED_LINE):
                self._stop_answer(a, kind)
            elif kind == bus.CONFIG_LINE:
                try:
                    self.cfg.update(config.from_wire(json.loads(payload)))
                except ValueError:
                    log.warning("bad message from acceptor %d: %r", a, payload[:100])
                    continue
                serverlog.set_level(self.cfg["loglevel"])  # (its own lines follow loglevel too)
                if self.nacceptors == 1:
                    continue
                # Numbered in the order read: the one order every acceptor
                # and worker ends in (see shardkv.acceptor.configorder).
                self.config_number += 1
                number = b"%d" % self.config_number
                line = bus.CONFIG_LINE + b" " + number + b" " + payload + b"\n"
                for other, sock in enumerate(self.controls):
                    if sock is None:
                        continue
                    try:
                        sock.sendall(line if other != a else bus.ORDERED_LINE + b" " + number + b"\n")
                    except OSError as e:
                        log.warning("could not pass CONFIG SET on to acceptor %d: %s", other, e)

    # -- the bus between acceptors ------------------------------------------------

    def _send_bus(self, a: int, message: list) -> bool:
        sock = self.controls[a]
        if sock is None:
            return False
        try:
            sock.sendall(bus.frame(message))
        except OSError as e:
            log.warning("bus: could not reach acceptor %d: %s", a, e)
            return False
        return True

    def _relay(self, a: int, message: list) -> None:
        """A bus frame from acceptor ``a``: pass a question or a message on,
        collect answers (see :mod:`shardkv.protocol.bus`)."""
        verb = message[0]
        if verb == bus.ASK:
            qid, everyone, rest = message[1], message[2], message[3:]
            waiting = set()
            for other in range(self.nacceptors):
                if (other != a or everyone) and self._send_bus(other, [bus.ASK, a, qid, *rest]):
                    waiting.add(other)
            sync = bool(rest) and rest[0] in (bus.SYNC, bus.LISTEN)
            # CONFIG SET (sync) answers once every acceptor has applied it,
            # as Redis's is applied when it answers OK: a slow one is waited
            # for, up to bus.SYNC_WITHIN (then _overdue kills it).  One that
            # dies stops the wait (_forget_acceptor); it is restarted with
            # the new config (self.cfg has it).  So does its ``listen``
            # (every acceptor says whether it can bind the new port).
            within = bus.SYNC_WITHIN if sync else bus.ANSWER_WITHIN
            if rest and rest[0] == bus.ABORT:
                # SHUTDOWN ABORT: each acceptor answers once its shards are
                # open again, up to its shutdown-timeout (the asker's, rest[1]).
                within += float(rest[1])
            question: list[Any] = [waiting, [], time.monotonic() + within, sync]
            self.questions[(a, qid)] = question
            if not waiting:
                self._answer(a, qid)
        elif verb == bus.ANSWER:
            origin, qid, value = message[1], message[2], message[3]
            asked = self.questions.get((origin, qid))
            if asked is not None and a in asked[0]:
                question = asked
                question[0].discard(a)
                question[1].append(value)
                if not question[0]:
                    self._answer(origin, qid)
        elif verb == bus.TELL:
            for other in range(self.nacceptors):
                if other != a:
                    self._send_bus(other, [bus.TELL, a, *message[1:]])

    def _answer(self, origin: int, qid: int) -> None:
        question = self.questions.pop((origin, qid))
        self._send_bus(origin, [bus.ANSWERS, qid, question[1]])

    def _forget_acceptor(self, a: int) -> None:
        """Acceptor ``a`` is gone: its questions go unanswered, and the
        others' questions stop waiting for it."""
        for (origin, qid), question in list(self.questions.items()):
            if origin == a:
                del self.questions[(origin, qid)]
            elif a in question[0]:
                question[0].discard(a)
                if not question[0]:
                    self._answer(origin, qid)

    def _overdue(self) -> None:
        now = time.monotonic()
        for key, question in list(self.questions.items()):
            if question[2] > now:
                continue
            if question[3]:
                self._kill_stuck(question)
            else:
                self._answer(*key)

    def _kill_stuck(self, question: list) -> None:
        """A CONFIG SET's ``sync`` question is overdue: the acceptors that
        have not answered are stuck (stopped, or in a loop), and an OK now
        would claim a setting they have not applied.  Kill them: each one's
        death ends the wait for it (_forget_acceptor), and it is started
        again with the new settings (_acceptor_died)."""
        question[2] = math.inf  # the deaths answer it
        for a in question[0]:
            proc = self.acceptors[a]
            if proc is None or proc.pid is None:
                continue
            log.warning(
                "acceptor %d pid=%d has not answered a CONFIG SET in %g s; killing it (it restarts with the settings in effect)",
                a,
                proc.pid,
                bus.SYNC_WITHIN,
            )
            proc.kill()  # SIGKILL: a stopped process dies of it too

    # -- running ------------------------------------------------------------------

    def request_stop(self, signum: int, frame: object = None) -> None:
        """SIGINT or SIGTERM: stop, as the signal's ``shutdown-on-sig*``
        setting says, once the loop sees it (_signal_stop).  A SIGINT while
        a signal's stop is pending exits at once (_exit_now)."""
        if signum == signal.SIGINT and self.stop_signal is not None:
            self._exit_now()
        self.stop_signal = signum
        self.signalled = True

    def _signal_stop(self) -> None:
        """A signal came (request_stop): hand the stop to an acceptor, which
        has the shards save (or not) once no script is busy, while the
        server still runs (see the module's docstring); stop now if no
        acceptor can see to it.  As in Redis, a signal while a stop is
        under way changes nothing (but a SIGINT, see request_stop)."""
        self.signalled = False
        if self.stop_signal is None:
            return
        # (Redis's lines, the first from its signal handler.)
        log.warning("Received %s scheduling shutdown...", signal.Signals(self.stop_signal).name)
        if self.stop_attempt is not None:
            return
        log.warning("User requested shutdown...")
        self._read_controls()
        flags = self._stop_flags()
        ready = [
            a
            for a, (proc, control) in enumerate(zip(self.acceptors, self.controls, strict=True))
            if proc is not None and control is not None and self.waiting[a] is None and proc.is_alive()
        ]
        if not ready:
            self.stopping = True
            return
        a = ready[0]
        try:
            self.controls[a].sendall(bus.STOP_LINE + b" " + flags.encode() + b"\n")  # type: ignore[union-attr]
        except OSError as e:
            log.warning("could not hand the stop to acceptor %d: %s", a, e)
            self.stopping = True
            return
        self.stop_attempt = [a, time.monotonic() + STOP_ANSWER_WITHIN, False]

    def _exit_now(self) -> NoReturn:
        """A SIGINT while a signal's stop is pending (waiting for a busy
        script, saving): as Redis's sigShutdownHandler, "the user really
        wanting to quit ASAP", exit at once with status 1, saving nothing.
        Every child is killed and reaped (a worker's forked save dies with
        it), and the temp files of the saves they were writing are removed,
        as Redis's rdbRemoveTempFile removes its own.  (In the signal
        handler, wherever the loop or the stop was.)"""
        log.warning("You insist... exiting now.")
        children = mp.active_children()  # every process started, stored or not yet
        for proc in children:
            proc.kill()
        for proc in children:
            proc.join()
        for index in range(self.cfg["shards"]):
            Files(self.cfg, index).remove_temp_files()
        decisions.remove_volatile(os.getpid())
        _stop_resource_tracker()
        logging.shutdown()
        os._exit(1)

    def _stop_answer(self, a: int, kind: bytes) -> None:
        """Acceptor ``a`` on the stop handed to it: ``stopping``, it has
        begun; ``stop-failed``, a shard could not save and every shard is
        open again: the server serves on, as Redis's does."""
        attempt = self.stop_attempt
        if attempt is None or attempt[0] != a:
            return
        if kind == bus.STOPPING_LINE:
            attempt[1] = math.inf
        elif kind == bus.SHUTTING_LINE:
            # A frozen or hung worker never answers its __shutdown: the
            # stop is bounded as the supervisor's own (WORKER_STOP_GRACE).
            attempt[1:] = [time.monotonic() + WORKER_STOP_GRACE, True]
        else:
            self.stop_attempt = None
            self.stop_signal = None

    def _stop_overdue(self) -> None:
        """The acceptor handed a stop has not begun it in time (stopped,
        stuck): stop without it, the workers saving on their way out.  Or
        its shards have not all stopped within WORKER_STOP_GRACE (a worker
        frozen or hung): stop without it, killing the workers left."""
        attempt = self.stop_attempt
        if attempt is None or attempt[1] > time.monotonic():
            return
        if attempt[2]:
            log.warning(
                "the shards have not stopped in %g s; stopping without acceptor %d",
                WORKER_STOP_GRACE,
                attempt[0],
            )
            self.workers_overdue = True
        else:
            log.warning(
                "acceptor %d has not begun the stop in %g s; stopping without it",
                attempt[0],
                STOP_ANSWER_WITHIN,
            )
        self.stop_attempt = None
        self.stopping = True

    def request_shutdown(self, *_: object) -> None:
        """An acceptor's SHUTDOWN: its shards have saved, or did not have to."""
        self.shutdown = True
        self.stopping = True

    def _spawn(self, target: Any, args: tuple) -> Any:
        proc = self.ctx.Process(target=target, args=args, name="shardkv-reshard")
        proc.start()
        return proc

    def run(self) -> int:
        set_name("shardkv-super")
        # A signal also writes a byte to this socket, which the loop below
        # waits on with everything else: a stop is seen at once, not at
        # the next wake-up.
        wakeup, self.wakeup = socket.socketpair()
        wakeup.setblocking(False)
        self.wakeup.setblocking(False)
        signal.set_wakeup_fd(wakeup.fileno(), warn_on_full_buffer=False)
        signal.signal(signal.SIGINT, self.request_stop)
        signal.signal(signal.SIGTERM, self.request_stop)
        signal.signal(SHUTDOWN_SIGNAL, self.request_shutdown)
        try:
            return self._run()
        finally:
            signal.set_wakeup_fd(-1)
            wakeup.close()
            self.wakeup.close()

    def _run(self) -> int:
        log.info(
            "supervisor pid=%d shardkv %s, %d shards%s",
            os.getpid(),
            __version__,
            self.cfg["shards"],
            f", {self.nacceptors} acceptors" if self.nacceptors > 1 else "",
        )
        decisions.remove_stale(_alive)  # left by supervisors that were killed
        from shardkv.worker.persistence import reshard

        try:
            reshard.prepare(self.cfg, self._spawn)
        except (LoadError, OSError) as e:
            log.error("shardkv cannot start: %s", e)
            return 1
        self.started_at = int(time.time())  # (after any re-sharding: Redis's initServer)
        for i in range(self.cfg["shards"]):
            self._start_worker(i, self.started_at)
        for a in range(self.nacceptors):
            self._start_acceptor(a)  # it imports its code while the workers load
        while not self.stopping:
            events: dict[Any, tuple[str, int, Any]] = {self.wakeup: ("signal", 0, self.wakeup)}
            for a, proc in enumerate(self.acceptors):
                if proc is not None:
                    events[proc.sentinel] = ("acceptor", a, proc)
            for a, control in enumerate(self.controls):
                if control is not None:
                    events[control] = ("control", a, control)
            for i, proc in enumerate(self.workers):
                events[proc.sentinel] = ("worker", i, proc)
                if not self.loaded[i] and self.ctls[i] is not None:
                    events[self.ctls[i]] = ("loaded", i, self.ctls[i])
            # Nothing is polled: every event wakes the wait; only a bus
            # question's deadline bounds it.
            deadlines = [question[2] for question in self.questions.values()]
            if self.stop_attempt is not None:
                deadlines.append(self.stop_attempt[1])
            first = min(deadlines, default=math.inf)
            timeout = None if first == math.inf else max(0.0, first - time.monotonic())
            ready = wait(list(events), timeout=timeout)
            if self.signalled:
                # First: what the acceptor is told of the stop goes before
                # the pipe of a worker restarted in this round.
                self._signal_stop()
            # Loads first, deaths after: a worker may say "loaded" and die.
            for what, i, obj in sorted((events[r] for r in ready), key=lambda e: e[0] != "loaded"):
                if self.stopping:
                    break
                # An earlier event of this round may have replaced the object.
                if what == "signal":
                    _drain(obj)
                elif what == "loaded" and obj is self.ctls[i]:
                    self._worker_loaded(i)
                elif what == "worker" and obj is self.workers[i]:
                    self._worker_died(i)
                elif what == "control" and obj is self.controls[i]:
                    self._from_acceptor(i)
                elif what == "acceptor" and obj is self.acceptors[i]:
                    self._acceptor_died(i)
            if self.questions:
                self._overdue()
            if self.stop_attempt is not None:
                self._stop_overdue()
        self._stop_children()
        # The acceptors' commit decisions without appendonly: no acceptor is left to need them.
        decisions.remove_volatile(os.getpid())
        log.info("shardkv stopped")
        return self.status

    def _stop_children(self) -> None:
        # A worker already dead when the stop begins (it died, and is not
        # restarted yet) died before it.  After a SHUTDOWN the acceptor has
        # decided (a SHUTDOWN that had to save it failed, unless FORCE) and,
        # as in Redis, the status is 0.  A stop by a signal saves as its
        # flags say (``save``, or ``save`` rules without ``nosave``): that
        # worker's shard could not, which is 1 unless ``force``, as for a
        # worker whose save fails (Redis does not exit 0 then).
        gone = {i for i, w in enumerate(self.workers) if w is not None and not w.is_alive()}
        flags = self._stop_flags()
        mode = stop_mode(flags)
        saves = mode == "save" or (mode == "default" and bool(self.cfg["save"]))
        unsaved_ok = self.shutdown or not saves or "force" in flags.split()
        running = [proc for proc in self.acceptors if proc is not None and proc.is_alive()]
        for proc in running:
            proc.terminate()
        deadline = time.monotonic() + STOP_GRACE
        for proc in running:
            proc.join(max(0.0, deadline - time.monotonic()))
            if proc.is_alive():
                log.warning("acceptor pid=%d did not stop; killing it", proc.pid)
                proc.kill()
                proc.join(1)
        # Now no command can reach a worker: each finishes, flushes and saves.
        for i, w in enumerate(self.workers):
            if w is not None and w.is_alive():
                if flags:
                    self._tell_stop_flags(i, flags)
                w.terminate()
            # A loaded worker whose acceptors are gone waits on its control
            # pipe for new ones: closing it wakes the worker at once (it
            # stops as when the supervisor dies).  One still loading says
            # "loaded" on it first, so its pipe stays open.
            ctl = self.ctls[i]
            if ctl is not None and self.loaded[i]:
                ctl.close()
                self.ctls[i] = None
        deadline = time.monotonic() + (STOP_GRACE if self.workers_overdue else WORKER_STOP_GRACE)
        for i, w in enumerate(self.workers):
            if w is None:
                continue
            w.join(max(0.0, deadline - time.monotonic()))
            if w.is_alive():
                log.warning("worker %d pid=%d did not stop; killing it", i, w.pid)
                w.kill()
                w.join(1)
                self.status = 1
            elif i in gone and unsaved_ok:
                log.warning("worker %d exited with %s before the server stopped", i, w.exitcode)
            elif i in gone:
                log.error(
                    "worker %d exited with %s before the server stopped; its shard could not save",
                    i,
                    w.exitcode,
                )
                self.status = 1
            elif w.exitcode not in (0, -signal.SIGTERM, EXIT_LOAD_FAILED, EXIT_AOF_FAILED):
                log.error("worker %d exited with %s while stopping", i, w.exitcode)
                self.status = 1
        for conn in [*self.ctls, *(end for ends in self.ends for end in ends)]:
            if conn is not None:
                conn.close()
        for a, control in enumerate(self.controls):
            if control is not None:
                control.close()
                self.controls[a] = None
        for a, waiting in enumerate(self.waiting):
            if waiting is not None:
                waiting.close()
            self.waiting[a] = None
        _stop_resource_tracker()

    def _read_controls(self) -> None:
        """What the acceptors sent and the loop has not read yet, before a
        signal's stop: a CONFIG SET's ``config`` line is sent before its OK,
        so a ``shutdown-on-sig*`` set just before the signal is in effect."""
        for a, control in enumerate(self.controls):
            if control is not None and wait([control], 0):
                self._from_acceptor(a)

    def _stop_flags(self) -> str:
        """The ``shutdown-on-sigterm`` or ``shutdown-on-sigint`` flags of a
        stop by that signal; "" for any other stop (SHUTDOWN has saved as
        it was told; a failure stops as _fail says, by default with the
        workers' defaults).  Any stop before every shard has loaded at
        start is ``nosave``, as Redis's shutdownCommand and signal handler
        turn any stop while it loads into SHUTDOWN_NOSAVE."""
        if not self.started:
            return "nosave"
        if self.status:
            return self.fail_flags
        if self.shutdown or self.stop_signal is None:
            return ""
        name = "shutdown-on-sigint" if self.stop_signal == signal.SIGINT else "shutdown-on-sigterm"
        return str(self.cfg.get(name, "default"))

    def _tell_stop_flags(self, index: int, flags: str) -> None:
        """Tell worker ``index`` how to shut down (``STOP_FLAGS``), before
        its SIGTERM: the message is in its control pipe when it stops."""
        ctl = self.ctls[index]
        if ctl is None:
            return
        try:
            with socket.socket(fileno=os.dup(ctl.fileno())) as sock:
                sock.sendall(STOP_FLAGS + flags.encode())
        except OSError as e:
            log.warning("could not tell worker %d how to shut down: %s", index, e)


def _stop_resource_tracker() -> None:
    """Stop and reap multiprocessing's resource tracker, which the ``spawn``
    context started with the first child: it would otherwise outlive the
    supervisor, as a zombie until someone reaps it.  (Nothing of shardkv
    registers resources with it; its children are gone by now.)"""
    stop = getattr(resource_tracker._resource_tracker, "_stop", None)
    if stop is not None:
        try:
            stop()
        except (OSError, ChildProcessError):
            pass


def _serve_acceptor(pipes: Connection | None, cfg: dict[str, Any], ends: list, *args: Any) -> None:
    """An acceptor process's entry point (see :func:`shardkv.acceptor.main.serve`).
    With ``pipes``, it was started while the workers load (``ends`` are
    all None): it listens at once and answers -LOADING until its ends of
    their pipes come through ``pipes`` (sent by :meth:`Supervisor._send_pipes`);
    it exits if the supervisor stops first."""
    from shardkv.acceptor import main as acceptor

    acceptor.serve(cfg, ends, *args, loading=pipes)


def _serve_worker(*args: Any) -> None:
    """A worker process's entry point (see :func:`shardkv.worker.loop.serve`)."""
    from shardkv.worker import loop as worker_loop

    worker_loop.serve(*args)


def _drain(sock: socket.socket) -> None:
    """Read the signal wake-up bytes that are there."""
    try:
        while sock.recv(4096):
            pass
    except OSError:  # BlockingIOError: all read
        pass


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True
    return True


def main(argv: list[str] | None = None) -> int:
    try:
        cfg = config.load(argv)
    except config.ConfigError as e:
        print(f"shardkv: {e}", file=sys.stderr)
        return 2
    serverlog.setup(cfg)
    if not cfg["port"]:
        # Redis exits so when it has no TCP port, no TLS port and no unix
        # socket; shardkv listens on no unix socket (it has no effect here).
        log.warning("Configured to not listen anywhere, exiting.")
        return 1
    return Supervisor(cfg).run()
