"""The worker's end of its pipe: FrameReader, with no worker around it.

Frames are multiprocessing.Connection's (a 4-byte big-endian length, then
the payload), so the acceptor's side is played by a real Connection.
"""

from __future__ import annotations

import threading
import time
from multiprocessing import Pipe

import pytest

from shardkv.worker.frames import FrameReader


@pytest.fixture
def pipe():
    ours, theirs = Pipe()
    reader = FrameReader(ours)
    yield reader, theirs
    reader.close()
    ours.close()
    theirs.close()


def test_wait_gives_up_after_its_period(pipe):
    reader, _ = pipe
    reader.set_period(0.05)
    start = time.monotonic()
    assert reader.wait() is False
    assert 0.04 <= time.monotonic() - start < 1.0


def test_wait_returns_as_soon_as_a_frame_is_whole(pipe):
    reader, acceptor = pipe
    reader.set_period(5.0)
    acceptor.send_bytes(b"B" + b"x" * 100)
    start = time.monotonic()
    assert reader.wait() is True
    assert time.monotonic() - start < 1.0
    assert reader.recv() == b"B" + b"x" * 100


def test_frames_read_together_are_served_from_the_buffer(pipe):
    reader, acceptor = pipe
    reader.set_period(5.0)
    for i in range(3):
        acceptor.send_bytes(b"B%d" % i)
    time.sleep(0.05)
    assert reader.wait()
    assert reader.recv() == b"B0"
    # The other two came with the same recv: no system call needed to see them.
    assert reader.has_frame()
    assert reader.recv() == b"B1"
    assert reader.has_frame()
    assert reader.recv() == b"B2"
    assert not reader.has_frame()


def test_a_large_frame_in_pieces(pipe):
    reader, acceptor = pipe
    reader.set_period(5.0)
    payload = b"B" + bytes(range(256)) * 4096  # 1 MiB: several recvs
    sender = threading.Thread(target=acceptor.send_bytes, args=(payload,))
    sender.start()  # more than the socket buffer holds: it waits for the reads
    assert reader.wait()
    assert reader.recv() == payload
    sender.join(10)


@pytest.mark.parametrize(("read", "period"), [("wait", 5.0), ("recv", 0.02)])
def test_wait_and_recv_raise_eof_when_the_acceptor_has_gone(pipe, read, period):
    reader, acceptor = pipe
    reader.set_period(period)
    acceptor.close()
    with pytest.raises(EOFError):
        getattr(reader, read)()


def test_recv_waits_past_its_period_for_a_frame_in_pieces(pipe):
    """recv is one blocking read bounded by SO_RCVTIMEO: it reads again
    each time that runs out, until the frame is whole, and counts no
    ran-out read as the end of the pipe."""
    reader, acceptor = pipe
    reader.set_period(0.02)
    payload = b"C" + b"y" * 1000
    frame = len(payload).to_bytes(4, "big") + payload
    sock = acceptor

    def later() -> None:
        time.sleep(0.1)
        sock._send(frame[:3])  # type: ignore[attr-defined]  # half of the length, then a pause
        time.sleep(0.1)
        sock._send(frame[3:])  # type: ignore[attr-defined]

    writer = threading.Thread(target=later)
    writer.start()
    try:
        assert reader.recv() == payload
    finally:
        writer.join()
