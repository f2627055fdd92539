"""CLIENT PAUSE told to another acceptor ends when the command's pause does.

With several acceptors, the one that runs CLIENT PAUSE asks the others to
pause their clients too (``bus.PAUSE``).  The message carries the pause's
end, not its timeout: an acceptor that hears of it late (descheduled on a
loaded machine) used to pause from then on for the whole timeout, so its
pause outlived the command's, and as a worker leaves expired keys in place
while any acceptor pauses, a GET after the pause's end did not delete the
key (tests/compat/test_controls.py's
test_client_pause_times_out_and_expiry_waits at K=2 with the other acceptor
stopped for 0.97 s: 1 try in 16).  In one process, with fake links and loop.
"""

from __future__ import annotations

import asyncio
import time

import pytest

from shardkv.acceptor import pause
from shardkv.acceptor.commands.connection import bus_pause
from shardkv.protocol.resp import encode_command
from shardkv.protocol.wire import Verb
from tests.unit.test_acceptor_dispatch import build


@pytest.fixture
def acceptor():
    acceptor, links = build()
    acceptor.loop = asyncio.new_event_loop()
    yield acceptor, links
    acceptor.loop.close()


def test_another_acceptors_pause_ends_at_the_commands_end(acceptor):
    server, links = acceptor
    end = time.monotonic() + 5.0
    bus_pause(server, 0, [round(end * 1e6), pause.WRITE])
    assert server.pause_type == pause.WRITE
    assert server.pause_end == pytest.approx(end, abs=1e-5)
    assert links[0].bodies() == [encode_command([Verb.PAUSE, b"1", b"%d" % round(end * 1e6)])]


def test_a_pause_heard_of_after_its_end_pauses_nothing(acceptor):
    server, links = acceptor
    bus_pause(server, 0, [round((time.monotonic() - 0.5) * 1e6), pause.WRITE])
    assert server.pause_type == pause.NONE
    assert links[0].bodies() == []


def test_a_later_end_wins_and_an_earlier_one_keeps_it(acceptor):
    server, links = acceptor
    now = time.monotonic()
    pause.start(server, now + 5.0, pause.WRITE)
    pause.start(server, now + 2.0, pause.ALL)
    assert (server.pause_type, server.pause_end) == (pause.ALL, now + 5.0)
    pause.start(server, now + 9.0, pause.WRITE)
    assert (server.pause_type, server.pause_end) == (pause.ALL, now + 9.0)
    # The workers are told each new end, which ends their side of the pause.
    told = [encode_command([Verb.PAUSE, b"1", b"%d" % round(end * 1e6)]) for end in (now + 5.0, now + 9.0)]
    assert links[0].bodies() == told
