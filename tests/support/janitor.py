"""Removes the logs and folders of servers whose starter was killed.

A server started by :mod:`tests.support.servers` dies with the process
that started it (``PR_SET_PDEATHSIG``), but its log and its folder stay when
that process is killed before it could stop the server (an xdist worker at
Ctrl-C, a SIGKILL): nothing is left in it to remove them.  This process is
what is left.  ``servers`` starts one, in a session of its own (a Ctrl-C at
the terminal does not reach it), the first time it starts a server, and
tells it on its stdin, one JSON object a line:

- ``{"id": N, "paths": [...]}``: a server's log and folder, before it starts;
- ``{"id": N, "pid": P}``: its process, once started;
- ``{"id": N, "gone": true}``: stopped, its paths removed by its starter;
- ``{"exit": true}``: the starter exits normally, and what it did not
  stop stays where it is (the test run's leak check reports it).

At end of input without ``exit`` (the starter died), it waits for the
servers still listed to end (each got SIGTERM with its starter's death),
``WAIT_FOR_SERVERS`` seconds at most, then removes their paths and exits.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time

import psutil

# A shardkv stopped by SIGTERM saves and stops its workers first; stop()
# gives one 10 s before it kills it.
WAIT_FOR_SERVERS = 30.0
POLL = 0.05


def _alive(proc: psutil.Process) -> bool:
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _remove(path: str) -> None:
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path, ignore_errors=True)
    else:
        try:
            os.unlink(path)
        except OSError:
            pass


def main() -> None:
    paths: dict[int, list[str]] = {}
    procs: dict[int, psutil.Process] = {}
    for line in sys.stdin:
        message = json.loads(line)
        if message.get("exit"):
            return
        key = message["id"]
        if "paths" in message:
            paths[key] = message["paths"]
        elif "pid" in message:
            try:
                procs[key] = psutil.Process(message["pid"])
            except psutil.NoSuchProcess:
                pass
        elif message.get("gone"):
            paths.pop(key, None)
            procs.pop(key, None)
    waited = [proc for key, proc in procs.items() if key in paths]
    deadline = time.monotonic() + WAIT_FOR_SERVERS
    while any(_alive(proc) for proc in waited) and time.monotonic() < deadline:
        time.sleep(POLL)
    for listed in paths.values():
        for path in listed:
            _remove(path)


if __name__ == "__main__":
    main()
