"""The bus between acceptors: its frames on the control stream, mixed with lines."""

from __future__ import annotations

from shardkv.protocol import bus


def stream() -> tuple[bytes, list]:
    message = [bus.ASK, 7, 1, bus.PUBLISH, b"ch\nan", b"\r\nbus 3\n"]
    data = (
        b"pipe 2\n" + bus.frame(message) + b'config {"hz": 20}\n' + bus.frame([bus.ANSWERS, 7, [3, [b"x"]]])
    )
    expected = [
        (b"pipe", b"2"),
        (b"bus", message),
        (b"config", b'{"hz": 20}'),
        (b"bus", [bus.ANSWERS, 7, [3, [b"x"]]]),
    ]
    return data, expected


def test_lines_and_bus_frames_whole_or_byte_by_byte() -> None:
    data, expected = stream()
    assert bus.ControlReader().feed(data) == expected
    reader = bus.ControlReader()
    got = []
    for i in range(len(data)):
        got += reader.feed(data[i : i + 1])
    assert got == expected and reader.buf == b""


def test_a_partial_message_waits_for_the_rest() -> None:
    data, expected = stream()
    reader = bus.ControlReader()
    assert reader.feed(data + b"bus 12\n*1") == expected
    assert reader.feed(b"\r\n:12345\r\n") == [(b"bus", [12345])]


def test_the_acceptor_binds_one_handler_to_every_kind() -> None:
    from shardkv.acceptor.wiring import wiring

    bound = wiring()
    assert set(bound.bus_handlers) == set(bus.KINDS) and len(bus.KINDS) == len(set(bus.KINDS))
