"""An acceptor started while the workers load (shardkv.supervisor): it
serves at once (answering -LOADING, see tests/unit/test_acceptor_loading.py),
with the pipe through which its ends of the workers' pipes come later; one
started once they have loaded gets them at once."""

from __future__ import annotations

import signal
from multiprocessing import Pipe
from multiprocessing.connection import Connection

import pytest

from shardkv import supervisor
from shardkv.acceptor import main as acceptor_main


@pytest.fixture
def served(monkeypatch) -> list[tuple]:
    """The arguments each acceptor.serve call got (it serves nothing here)."""
    calls: list[tuple] = []
    monkeypatch.setattr(acceptor_main, "serve", lambda *args, **kwargs: calls.append((args, kwargs)))
    previous = signal.getsignal(signal.SIGINT)
    yield calls
    signal.signal(signal.SIGINT, previous)


def _workers(n: int) -> tuple[list[Connection], list[Connection]]:
    """n pipes: the workers' ends and the acceptor's."""
    pairs = [Pipe() for _ in range(n)]
    return [p[0] for p in pairs], [p[1] for p in pairs]


def test_an_acceptor_started_while_the_workers_load_serves_at_once(served):
    ours, theirs = Pipe()
    # Nothing is sent: it does not wait for its pipes to serve.
    supervisor._serve_acceptor(theirs, {"port": 1}, [None] * 3, "control", 0)
    (((cfg, got, *rest), kwargs),) = served
    assert cfg == {"port": 1} and rest == ["control", 0]
    assert got == [None] * 3
    assert kwargs == {"loading": theirs}  # they come through it (Acceptor.serve)
    for conn in (ours, theirs):
        conn.close()


def test_an_acceptor_started_later_gets_its_pipes_at_once(served):
    workers, ends = _workers(2)
    supervisor._serve_acceptor(None, {"port": 1}, ends, "control", 0)
    (((cfg, got, *rest), kwargs),) = served
    assert got is ends
    assert kwargs == {"loading": None}
    for conn in [*workers, *ends]:
        conn.close()


class _Exited:
    """An acceptor process that has exited with ``exitcode``."""

    pid = 4242

    def __init__(self, exitcode: int) -> None:
        self.exitcode = exitcode

    def join(self, timeout: float) -> None:
        pass


@pytest.mark.parametrize(
    ("exitcode", "restarted", "failed"), [(1, [0], False), (supervisor.EXIT_CANNOT_LISTEN, [], True)]
)
def test_an_acceptor_dead_while_the_workers_load_restarts_unless_it_could_not_listen(
    exitcode: int, restarted: list[int], failed: bool
) -> None:
    """It listens at once, so a port it cannot take makes it exit before
    its pipes come: shardkv stops then, as Redis does (it was started
    again, and again, while the shards loaded); any other death restarts it."""
    sup = object.__new__(supervisor.Supervisor)
    ours, theirs = Pipe()
    sup.acceptors = [_Exited(exitcode)]  # type: ignore[list-item]
    sup.waiting = [ours]  # type: ignore[list-item]
    control, control_theirs = Pipe()
    sup.controls = [control]  # type: ignore[list-item]  # (read from its start)
    sup.questions = {}
    sup.stop_attempt = None
    sup.cfg = {"port": 1}  # type: ignore[assignment]
    started: list[int] = []
    fails: list[bool] = []
    sup._start_acceptor = lambda a, restarted=False: started.append(a)  # type: ignore[method-assign]
    sup._fail = lambda: fails.append(True)  # type: ignore[method-assign]
    sup._acceptor_died(0)
    assert started == restarted and bool(fails) is failed
    assert sup.waiting == [None] and ours.closed
    assert sup.controls == [None] and control.closed
    theirs.close()
    control_theirs.close()
