"""The RESP request parser, with no I/O.

As h11's tests do, every input is fed three ways: whole, one byte at a
time, and followed by trailing bytes (the start of another command).  All
three must give the same commands, and the trailing bytes must stay in the
parser, ready to complete the next command.  The expected results follow
Redis 7.0's ``processInlineBuffer``/``processMultibulkBuffer``; the live
differential checks against a real redis-server are in test_fuzz.py and
test_limits.py.
"""

from __future__ import annotations

import pytest

from shardkv.protocol import errors
from shardkv.protocol.resp import (
    PROTO_INLINE_MAX_SIZE,
    PROTO_MBULK_BIG_ARG,
    ProtocolError,
    QueryBufferExceeded,
    RequestParser,
    ScriptsRead,
    encode_command,
    split_inline,
    strict_int,
)

# The start of a command: the parser must keep it, whole, after the input.
TRAILING = b"*2\r\n$3\r\nGET\r\n$3\r\nke"
TRAILING_REST = b"y\r\n"
TRAILING_ARGS = [b"GET", b"key"]


def feed_whole(data: bytes, **kw) -> tuple[list, RequestParser]:
    parser = RequestParser(**kw)
    return parser.feed(data), parser


def feed_bytewise(data: bytes, **kw) -> tuple[list, RequestParser]:
    parser = RequestParser(**kw)
    out = []
    for i in range(len(data)):
        out += parser.feed(data[i : i + 1])
    return out, parser


def args_of(commands: list) -> list[list[bytes]]:
    return [args for args, _ in commands]


def check(data: bytes, expected: list[list[bytes]], raws: list | None = None) -> None:
    """``data`` gives ``expected`` three ways and leaves nothing behind."""
    whole, parser = feed_whole(data)
    assert args_of(whole) == expected
    assert parser.buffered() == 0
    if raws is not None:
        assert [raw for _, raw in whole] == raws
    bytewise, parser = feed_bytewise(data)
    assert args_of(bytewise) == expected
    assert [raw for _, raw in bytewise] == [raw for _, raw in whole]
    assert parser.buffered() == 0
    for feed in (feed_whole, feed_bytewise):
        out, parser = feed(data + TRAILING)
        assert args_of(out) == expected
        assert parser.buffered() == len(TRAILING)
        rest = parser.feed(TRAILING_REST)
        assert rest == [(TRAILING_ARGS, TRAILING + TRAILING_REST)]
        assert parser.buffered() == 0


def check_error(data: bytes, message: str, before: list[list[bytes]] = (), **kw) -> None:
    """``data`` gives the commands ``before``, then ``message``, all three ways."""
    before = list(before)
    with pytest.raises(ProtocolError) as info:
        feed_whole(data, **kw)
    assert info.value.message == message
    assert args_of(info.value.commands) == before
    with pytest.raises(ProtocolError) as info:
        feed_whole(data + TRAILING, **kw)
    assert info.value.message == message
    parser = RequestParser(**kw)
    got: list = []
    with pytest.raises(ProtocolError) as info:
        for i in range(len(data)):
            got += parser.feed(data[i : i + 1])
    assert info.value.message == message
    assert args_of(got + info.value.commands) == before


def check_waits(data: bytes, **kw) -> None:
    """``data`` is no command and no error yet: the parser waits, as Redis does."""
    for feed in (feed_whole, feed_bytewise):
        out, parser = feed(data, **kw)
        assert out == []
        assert parser.buffered() == len(data)


# -- commands ------------------------------------------------------------------


def test_multibulk():
    data = b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$5\r\nvalue\r\n"
    check(data, [[b"SET", b"k", b"value"]], raws=[data])


def test_pipeline_keeps_each_commands_raw_bytes():
    one = encode_command([b"SET", b"a", b"1"])
    two = encode_command([b"GET", b"a"])
    check(one + two + one, [[b"SET", b"a", b"1"], [b"GET", b"a"], [b"SET", b"a", b"1"]], [one, two, one])


@pytest.mark.parametrize("commands", [2, 63, 64, 65, 200])
def test_pipeline_of_many_commands_read_at_once(commands):
    # hiredis reads them as one array of as many commands as the input
    # holds "\r\n*" plus one: below, at and above the table of array heads.
    raws = [encode_command([b"SET", b"k%d" % i, b"v"]) for i in range(commands)]
    check(b"".join(raws), [[b"SET", b"k%d" % i, b"v"] for i in range(commands)], raws)


@pytest.mark.parametrize("value", [b"\r\n*", b"x\r\n*2\r\n", b"\r\n*\r\n*"])
def test_arguments_that_look_like_the_start_of_a_command(value):
    # More "\r\n*" than commands: hiredis's array is incomplete, and each
    # command is read on its own; the commands and their bytes are the same.
    one = encode_command([b"SET", value, value])
    two = encode_command([b"GET", value])
    check(one + two, [[b"SET", value, value], [b"GET", value]], [one, two])


@pytest.mark.parametrize(
    "value",
    [b"", b"\r\n", b"\x00", b"a\r\nb", b"\xff\xfe\x80", b"*1\r\n$4\r\nPING\r\n", b"\r", b"\n" * 10],
)
def test_binary_bulks(value):
    check(encode_command([b"SET", value, value]), [[b"SET", value, value]])


def test_large_bulk_waits_for_all_of_it():
    value = bytes(range(256)) * 1000  # 256 KB: the parser collects chunks
    data = encode_command([b"SET", b"k", value])
    whole, _ = feed_whole(data)
    assert args_of(whole) == [[b"SET", b"k", value]]
    assert whole[0][1] == data
    parser = RequestParser()
    out = []
    for i in range(0, len(data), 1000):
        out += parser.feed(data[i : i + 1000])
    assert out == whole
    out, parser = feed_whole(data + TRAILING)
    assert args_of(out) == [[b"SET", b"k", value]]
    assert parser.feed(TRAILING_REST) == [(TRAILING_ARGS, TRAILING + TRAILING_REST)]


@pytest.mark.parametrize("size", [100, 20_000, 32767, 32768, 40_000, 400_000])
@pytest.mark.parametrize("chunk", [None, 1000, 7])
def test_big_bulk_notes_bulks_of_32k_or_more(size, chunk):
    """``big_bulk``: the longest bulk of 32 KB or more (Redis's
    PROTO_MBULK_BIG_ARG), read whole or in pieces, canonical or not."""
    big = size if size >= PROTO_MBULK_BIG_ARG else 0
    for data in (
        encode_command([b"SET", b"k", b"v" * size]) + encode_command([b"GET", b"k"]),
        # Not canonical: the two bytes after a bulk are not looked at.
        b"*3\r\n$3\r\nSET\r\n$1\r\nk..$%d\r\n%s\r\n" % (size, b"v" * size),
    ):
        parser = RequestParser()
        if chunk is None:
            parser.feed(data)
        else:
            step = chunk if size < 100_000 or chunk > 100 else 4096
            for i in range(0, len(data), step):
                parser.feed(data[i : i + step])
        assert parser.big_bulk == big
        parser.big_bulk = 0
        parser.feed(encode_command([b"SET", b"k", b"v" * 50_000]))
        assert parser.big_bulk == 50_000


def test_empty_and_negative_multibulk_are_ignored():
    check(b"*0\r\n*-1\r\n*-100\r\n", [])
    check(b"*0\r\n*1\r\n$4\r\nPING\r\n*-1\r\n", [[b"PING"]])


def test_byte_after_cr_is_not_checked():
    # Redis finds the end of a header with strchr('\r') and skips two bytes.
    # Such a command has no raw bytes to forward: the worker's strict reader
    # would refuse them, so it is re-encoded.
    check(b"*1\rX$4\rYPING\r\n", [[b"PING"]], raws=[None])
    check(b"*2\r\n$3\r\nGET\r\n$1\rXk\r\n", [[b"GET", b"k"]], raws=[None])
    # ... nor are the two bytes after a bulk's data (a strict reader skips them too).
    check(b"*1\r\n$4\r\nPINGxy", [[b"PING"]], raws=[b"*1\r\n$4\r\nPINGxy"])


def test_inline():
    check(b"PING\r\n", [[b"PING"]], raws=[None])
    check(b"SET a b\nGET a\r\n", [[b"SET", b"a", b"b"], [b"GET", b"a"]])
    check(b"  SET   a \t b  \r\n", [[b"SET", b"a", b"b"]])
    check(b"\r\n\n   \r\n", [])  # empty lines are skipped


def test_inline_quotes():
    check(b"SET \"a b\" 'c d'\r\n", [[b"SET", b"a b", b"c d"]])
    check(b'ECHO "\\x41\\n\\t\\\\ \\"q\\""\r\n', [[b"ECHO", b'A\n\t\\ "q"']])
    check(b"ECHO 'it\\'s'\r\n", [[b"ECHO", b"it's"]])
    check(b'ECHO a"b c"\r\n', [[b"ECHO", b"ab c"]])
    check(b'ECHO ""\r\n', [[b"ECHO", b""]])


def test_inline_vertical_tab_and_form_feed_do_not_end_an_argument():
    # sdssplitargs skips any isspace() before an argument, but only
    # space, \t, \r, \n end one.
    check(b"SET a\vb c\fd\r\n", [[b"SET", b"a\vb", b"c\fd"]])
    check(b"\v\fSET \va\r\n", [[b"SET", b"a"]])
    check(b'ECHO "a"\vb\r\n', [[b"ECHO", b"a", b"b"]])


def test_inline_limit_is_64k():
    line = b"ECHO " + b"x" * (PROTO_INLINE_MAX_SIZE - 5)
    assert len(line) == PROTO_INLINE_MAX_SIZE
    check(line + b"\n", [[b"ECHO", b"x" * (PROTO_INLINE_MAX_SIZE - 5)]])
    check(line[:-1] + b"\r\n", [[b"ECHO", b"x" * (PROTO_INLINE_MAX_SIZE - 6)]])
    # 64 KB and "\r": Redis takes it in one read, refuses it when the "\n"
    # comes later (65537 bytes without a newline); so does the parser.
    assert args_of(feed_whole(line + b"\r\n")[0]) == [[b"ECHO", b"x" * (PROTO_INLINE_MAX_SIZE - 5)]]
    with pytest.raises(ProtocolError):
        RequestParser().feed(line + b"\r")
    # The limit holds only while no newline has come, as in Redis: a longer
    # line that arrives whole with its newline is a command...
    long_line = b"ECHO " + b"x" * 69_990
    assert args_of(feed_whole(long_line + b"\r\n")[0]) == [[b"ECHO", b"x" * 69_990]]
    assert args_of(feed_whole(line + b"xx\n")[0]) == [[b"ECHO", b"x" * (PROTO_INLINE_MAX_SIZE - 3)]]
    # (Redis reads 16 KB at a time: a line sent whole whose newline is not
    # in its first 80 KB passed 64 KB without one, and is refused.)
    check_error(b"PING " + b"x" * 100_000 + b"\r\n", errors.PROTO_BIG_INLINE)
    parser = RequestParser()
    assert parser.feed(long_line[:40_000]) == []
    assert args_of(parser.feed(long_line[40_000:] + b"\r\n")) == [[b"ECHO", b"x" * 69_990]]
    # ... but once more than 64 KB have come without one, it is refused.
    parser = RequestParser()
    assert parser.feed(line) == []
    with pytest.raises(ProtocolError) as info:
        parser.feed(b"x")
    assert info.value.message == errors.PROTO_BIG_INLINE
    with pytest.raises(ProtocolError) as info:
        RequestParser().feed(b"x" * (PROTO_INLINE_MAX_SIZE + 1))
    assert info.value.message == errors.PROTO_BIG_INLINE
    check_waits(b"x" * PROTO_INLINE_MAX_SIZE)


def test_nul_hides_a_line_as_redis_strchr_does():
    check_waits(b"GET a\x00b\r\n")
    check_waits(b"*1\x00\r\n")
    check_waits(b"*1\r\n$\x004\r\nPING\r\n")
    check_waits(b"*1\r\nx\x00\r\n")
    # ... until Redis's buffer passes the inline limit.
    check_error(b"GET \x00" + b"x" * PROTO_INLINE_MAX_SIZE, errors.PROTO_BIG_INLINE)
    check_error(b"*\x00" + b"1" * PROTO_INLINE_MAX_SIZE, errors.PROTO_BIG_MBULK_COUNT)


def test_incomplete_input_waits():
    for data in [b"*", b"*1", b"*1\r", b"*1\r\n", b"*1\r\n$", b"*1\r\n$4\r", b"*1\r\n$4\r\nPI", b"*1\r\nx"]:
        check_waits(data)
    check_waits(b"*2\r\n$4\r\nECHO\r\n$1\r\nx\r")


def test_unauthenticated_one_command_at_a_time():
    parser = RequestParser(authenticated=False)
    data = b"AUTH pw\r\n*11\r\n"
    assert args_of(parser.feed(data)) == [[b"AUTH", b"pw"]]
    parser.authenticated = True  # what a successful AUTH does
    assert parser.feed(b"") == []
    assert parser.buffered() == 5
    args = [b"ECHO"] + [b"x"] * 10
    assert args_of(parser.feed(encode_command(args)[5:])) == [args]


def test_unauthenticated_limits():
    check_error(b"*11\r\n", errors.PROTO_UNAUTH_MULTIBULK, authenticated=False)
    check_error(b"*1\r\n$16385\r\n", errors.PROTO_UNAUTH_BULK, authenticated=False)
    check_waits(b"*10\r\n$16384\r\n", authenticated=False)
    parser = RequestParser(authenticated=False)
    assert args_of(parser.feed(b"PING\r\nPING\r\n")) == [[b"PING"]]
    assert args_of(parser.feed(b"*11\r\n")) == [[b"PING"]]  # one at a time
    with pytest.raises(ProtocolError) as info:
        parser.feed(b"")
    assert info.value.message == errors.PROTO_UNAUTH_MULTIBULK


def test_max_bulk_len():
    check_error(b"*1\r\n$1048577\r\n", errors.PROTO_BULK_LEN, max_bulk_len=1048576)
    check_waits(b"*1\r\n$1048576\r\n", max_bulk_len=1048576)


def test_query_buffer_limit():
    parser = RequestParser(max_query_buffer=1 << 20)
    assert parser.feed(b"*1\r\n$3000000\r\n" + b"x" * 500_000) == []
    parser.feed(b"x" * 500_000)
    with pytest.raises(QueryBufferExceeded) as info:
        parser.feed(b"x" * 100_000)
    assert info.value.message == ""  # closed without a reply
    with pytest.raises(QueryBufferExceeded):
        RequestParser(max_query_buffer=1 << 20).feed(b"*1\r\n$3000000\r\n" + b"x" * 1_100_000)


# -- errors --------------------------------------------------------------------


@pytest.mark.parametrize(
    "data, message",
    [
        (b"*x\r\n", errors.PROTO_MULTIBULK_LEN),
        (b"*\r\n", errors.PROTO_MULTIBULK_LEN),
        (b"*01\r\n", errors.PROTO_MULTIBULK_LEN),
        (b"*+1\r\n", errors.PROTO_MULTIBULK_LEN),
        (b"* 1\r\n", errors.PROTO_MULTIBULK_LEN),
        (b"*-0\r\n", errors.PROTO_MULTIBULK_LEN),
        (b"*2147483648\r\n", errors.PROTO_MULTIBULK_LEN),
        (b"*99999999999999999999999\r\n", errors.PROTO_MULTIBULK_LEN),
        (b"*" + b"9" * 5000 + b"\r\n", errors.PROTO_MULTIBULK_LEN),
        (b"*1\r\n$" + b"9" * 5000 + b"\r\n", errors.PROTO_BULK_LEN),
        (b"*1\r\n$99999999999999999999\r\n", errors.PROTO_BULK_LEN),
        (b"*1\r\n$x\r\n", errors.PROTO_BULK_LEN),
        (b"*1\r\n$-1\r\n", errors.PROTO_BULK_LEN),
        (b"*1\r\n$\r\n", errors.PROTO_BULK_LEN),
        (b"*1\r\n$01\r\n", errors.PROTO_BULK_LEN),
        (b"*1\r\n$536870913\r\n", errors.PROTO_BULK_LEN),
        (b"*1\r\nx\r\n", errors.PROTO_EXPECTED_DOLLAR % "x"),
        (b"*1\r\n:1\r\n", errors.PROTO_EXPECTED_DOLLAR % ":"),
        (b"*1\r\n\xff\r\n", errors.PROTO_EXPECTED_DOLLAR % "\xff"),
        (b"*1\r\n\r\n", errors.PROTO_EXPECTED_DOLLAR % "\r"),
        (b"*2\r\n$4\r\nECHO\r\n*1\r\n", errors.PROTO_EXPECTED_DOLLAR % "*"),
        (b'ECHO "a\r\n', errors.PROTO_UNBALANCED),
        (b"ECHO 'a\r\n", errors.PROTO_UNBALANCED),
        (b'ECHO "a"b\r\n', errors.PROTO_UNBALANCED),
        (b"ECHO 'a'b\r\n", errors.PROTO_UNBALANCED),
        (b'ECHO "a\\"\r\n', errors.PROTO_UNBALANCED),
        (b"*" + b"1" * (PROTO_INLINE_MAX_SIZE + 1), errors.PROTO_BIG_MBULK_COUNT),
        (b"*1\r\n$" + b"1" * (PROTO_INLINE_MAX_SIZE + 1), errors.PROTO_BIG_BULK_COUNT),
        (b"*" + b"1" * (PROTO_INLINE_MAX_SIZE + 1) + b"\r\n", errors.PROTO_BIG_MBULK_COUNT),
    ],
    ids=lambda v: repr(v[:24]) if isinstance(v, bytes) else "",
)
def test_protocol_errors(data, message):
    check_error(data, message)


def test_commands_before_an_error_come_with_it():
    check_error(b"PING\r\n*1\r\n$4\r\nECHO\r\n*x\r\n", errors.PROTO_MULTIBULK_LEN, [[b"PING"], [b"ECHO"]])
    check_error(b"PING\r\nECHO 'x\r\n", errors.PROTO_UNBALANCED, [[b"PING"]])
    check_error(b"PING\r\n*1\r\n$-5\r\n", errors.PROTO_BULK_LEN, [[b"PING"]])


# -- helpers -------------------------------------------------------------------


def test_strict_int_is_string2ll():
    assert [strict_int(s) for s in [b"0", b"1", b"-1", b"9223372036854775807"]] == [
        0,
        1,
        -1,
        9223372036854775807,
    ]
    assert strict_int(b"-9223372036854775808") == -9223372036854775808
    for bad in [b"", b"-", b"-0", b"01", b"+1", b" 1", b"1 ", b"1_0", b"9223372036854775808", b"\xd9\xa1"]:
        assert strict_int(bad) is None, bad


def test_split_inline():
    assert split_inline(b"a b") == [b"a", b"b"]
    assert split_inline(b"") == []
    assert split_inline(b'"\\x4g"') == [b"x4g"]  # not a hex escape: the x stands
    assert split_inline(b'"\\a\\b\\r"') == [b"\a\b\r"]
    with pytest.raises(ProtocolError):
        split_inline(b'"abc\\')


# -- the hiredis fast path gives what the Python parser gives ------------------

ELEMENTS = [
    b"$3\r\nGET\r\n",
    b"$1\r\nk\r\n",
    b"$0\r\n\r\n",
    b"$5\r\na\r\nb\r\r\n",  # CRLF inside a value
    b"$03\r\nabc\r\n",  # leading zero: Redis refuses it
    b"+k\r\n",  # not a bulk
    b":1\r\n",
    b"*1\r\n$1\r\nx\r\n",  # nested
    b"$-1\r\n",
    b"$2\r\nab\n\n",  # the bytes after a bulk are never checked
    b"$1\rxk\r\n",  # header ended by '\r' alone
    b"%1\r\n$1\r\na\r\n$1\r\nb\r\n",  # RESP3 map
    b"~1\r\n$1\r\na\r\n",
]


def _python_only(**kw) -> RequestParser:
    parser = RequestParser(**kw)
    parser._reader = None  # the pure-Python path, which follows Redis
    return parser


def _outcome(parser: RequestParser, chunks: list[bytes]) -> list:
    out: list = []
    for chunk in chunks:
        try:
            out.append(parser.feed(chunk))
        except ProtocolError as e:
            out.append(("error", e.message, e.commands))
            break
    out.append(parser.buffered())
    return out


@pytest.mark.parametrize("seed", range(300))
def test_fast_path_agrees_with_the_python_parser(seed):
    """Random runs of well-formed and odd commands, cut at random places,
    give the same commands, raw bytes, errors and leftovers either way."""
    import random

    rng = random.Random(seed)
    commands = []
    for _ in range(rng.randint(1, 12)):
        if rng.random() < 0.7:
            args = [
                bytes(rng.choice(b"ab\r\n*$:+0") for _ in range(rng.randint(0, 12)))
                for _ in range(rng.randint(1, 4))
            ]
            commands.append(encode_command(args))
        else:
            elements = [rng.choice(ELEMENTS) for _ in range(rng.randint(1, 3))]
            commands.append(b"*%d\r\n" % len(elements) + b"".join(elements))
    data = b"".join(commands)
    cuts = sorted(rng.sample(range(1, len(data)), min(rng.randint(0, 3), len(data) - 1)))
    chunks = [data[i:j] for i, j in zip([0, *cuts], [*cuts, len(data)], strict=True)]
    assert _outcome(RequestParser(), chunks) == _outcome(_python_only(), chunks)


def test_fast_path_keeps_the_raw_bytes_and_reads_them_once():
    data = b"".join(encode_command([b"SET", b"k%d" % i, b"v" * i]) for i in range(16))
    parser = RequestParser()
    out = parser.feed(data)
    assert [raw for _, raw in out] == [encode_command([b"SET", b"k%d" % i, b"v" * i]) for i in range(16)]
    assert parser.buffered() == 0
    assert parser.feed(TRAILING) == [] and parser.feed(TRAILING_REST) == [
        (TRAILING_ARGS, TRAILING + TRAILING_REST)
    ]


class _CountingReader:
    """A hiredis reader that counts the bytes it is fed and its gets calls."""

    fed = 0
    gets_calls = 0

    def __init__(self) -> None:
        import hiredis

        self._reader = hiredis.Reader()

    def feed(self, data: bytes, offset: int = 0, length: int = -1) -> None:
        _CountingReader.fed += len(data) - offset if length < 0 else length
        self._reader.feed(data, offset, length)

    def gets(self):
        _CountingReader.gets_calls += 1
        return self._reader.gets()

    def has_data(self) -> bool:
        return self._reader.has_data()


def _parse_work(monkeypatch, data: bytes, parser: RequestParser | None = None) -> tuple[list, int, int, bool]:
    """The commands of ``data`` fed whole (to ``parser``, counting from
    now on), the bytes fed to hiredis, its gets calls, and whether the
    Python parser (the long way) read a whole read."""
    from shardkv.protocol import resp

    monkeypatch.setattr(resp, "_HiredisReader", _CountingReader)
    _CountingReader.fed = _CountingReader.gets_calls = 0
    long_way = []
    canonical = RequestParser._feed_canonical
    monkeypatch.setattr(
        RequestParser,
        "_feed_canonical",
        lambda p, d, split=False: canonical(p, d, split) or long_way.append(d),
    )
    if parser is None:
        parser = RequestParser()
    parser._reader = _CountingReader()  # type: ignore[assignment]
    out = parser.feed(data) if data else []
    return out, _CountingReader.fed, _CountingReader.gets_calls, bool(long_way)


@pytest.mark.parametrize("value", [b"v", b"\r\n*x", b"x\r\n*2\r\n$3\r\n"])
def test_a_read_of_whole_commands_is_parsed_once(monkeypatch, value):
    """16 commands read at once reach hiredis once, in one or two gets
    calls, also when their arguments hold "\\r\\n*" (more command starts
    than commands: the array around them is completed with integers)."""
    raws = [encode_command([b"SET", b"k%d" % i, value]) for i in range(16)]
    data = b"".join(raws)
    out, fed, gets_calls, long_way = _parse_work(monkeypatch, data)
    assert out == [([b"SET", b"k%d" % i, value], raw) for i, raw in enumerate(raws)]
    assert not long_way
    assert gets_calls <= 2
    assert fed <= len(data) + 8 + 4 * data.count(b"\r\n*")  # the array's header, the integers


@pytest.mark.parametrize("cut", [1, 5, 17, 30, 38, 45])
def test_a_read_that_ends_inside_a_command_is_parsed_once(monkeypatch, cut):
    """A read that ends inside a command: hiredis reads the commands before
    the last start of one, once, in one gets call, and the long way only
    that last command's start, which it keeps (also when the read ends
    with a line's end inside it: cuts 17, 30, 38)."""
    raws = [encode_command([b"SET", b"k%d" % i, b"v" * 20]) for i in range(16)]
    data = b"".join(raws)[:-cut]
    head = len(b"".join(raws[:15]))
    parser = RequestParser()
    out, fed, gets_calls, _ = _parse_work(monkeypatch, data, parser)
    assert out == [([b"SET", b"k%d" % i, b"v" * 20], raw) for i, raw in enumerate(raws[:15])]
    assert parser.buffered() == len(data) - head
    if data[-1] != 10:
        assert gets_calls == 1 and fed == head + len(b"*15\r\n")
    else:  # read first as whole commands, then again to the last start
        assert gets_calls <= 3 and fed <= 2 * head + len(data) - head + 16 + 4 * 15
    assert parser.feed(b"".join(raws)[-cut:]) == [([b"SET", b"k15", b"v" * 20], raws[15])]
    assert parser.buffered() == 0


def test_reads_that_begin_inside_a_command_take_the_fast_path(monkeypatch):
    """A bulk load: reads of a fixed size, each beginning and ending inside
    a command.  The long way finishes the command an earlier read began and
    hands the rest of the read to hiredis, so hiredis reads all but a
    command's worth of bytes per read."""
    commands = [[b"SET", b"key:%06d" % i, b"x" * (i % 50)] for i in range(2000)]
    raws = [encode_command(args) for args in commands]
    data = b"".join(raws)
    parser = RequestParser()
    out, fed, _, _ = _parse_work(monkeypatch, b"", parser)
    for i in range(0, len(data), 4096):
        out += parser.feed(data[i : i + 4096])
    reads = -(-len(data) // 4096)
    assert out == list(zip(commands, raws, strict=True))
    longest = max(map(len, raws))
    from shardkv.protocol import resp

    assert resp._HiredisReader.fed >= len(data) - 2 * longest * reads  # type: ignore[attr-defined]
    # A read that ends with "\r\n" inside a command is read a second time
    # by hiredis (first as whole commands), never by the long way.
    again = sum(4096 + 8 for i in range(0, len(data), 4096) if data[i : i + 4096].endswith(b"\n"))
    assert resp._HiredisReader.fed <= len(data) + 8 * reads + again  # type: ignore[attr-defined]


@pytest.mark.parametrize("seed", range(60))
def test_a_pipeline_cut_anywhere_gives_what_it_gives_whole(seed):
    """Canonical commands of every size (some with "\r\n*" or CRLF in an
    argument, some bulks past the long way's wait threshold) cut at random
    places give the commands, raw bytes and leftovers the whole gives, and
    what the Python parser gives."""
    import random

    rng = random.Random(seed)
    values = [b"v", b"\r\n*x", b"\r\n", b"*3\r\n", b"", b"x" * 1000, b"y" * 70000]
    commands = [
        encode_command(
            [rng.choice([b"SET", b"GET", b"HSET"]), b"k%d" % i, *rng.sample(values, rng.randint(0, 2))]
        )
        for i in range(rng.randint(1, 60))
    ]
    data = b"".join(commands)
    cuts = sorted(rng.sample(range(1, len(data)), min(rng.randint(1, 12), len(data) - 1)))
    chunks = [data[i:j] for i, j in zip([0, *cuts], [*cuts, len(data)], strict=True)]
    whole = RequestParser().feed(data)
    assert [raw for _, raw in whole] == commands
    cut = _outcome(RequestParser(), chunks)
    assert [c for part in cut[:-1] for c in part] == whole and cut[-1] == 0
    assert cut == _outcome(_python_only(), chunks)


@pytest.mark.parametrize("shape", [[b"GET", b"key:1"], [b"SET", b"key:1", b"xxx"]])
@pytest.mark.parametrize("odd_at", [0, 1, 7, 15])
@pytest.mark.parametrize(
    "odd",
    [
        encode_command([b"SET", b"k", b"v", b"EX", b"10"]),  # another shape
        encode_command([b"GET"]),
        encode_command([b"SET", b"k", b"v" * 1024]),  # past the header tables
        encode_command([b"GET", b"k" * 1024]),
        b"*3\r\n$3\r\nSET\r\n+k\r\n$1\r\nv\r\n",  # not a bulk
        b"*2\r\n$3\r\nGET\r\n:1\r\n",
        b"*2\r\n$3\r\nGET\r\n*1\r\n$1\r\nk\r\n",  # nested
        b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$-1\r\n",
        b"*2\r\n$3\r\nGET\r\n$03\r\nkey\r\n",  # leading zero
        b"*2\r\n$3\r\nGET\r\n$2\r\nabXY",  # the bytes after a bulk
        b"$3\r\nGET\r\n",  # a bulk, not a command
    ],
)
def test_a_read_of_one_shape_but_one_command_agrees_with_the_python_parser(shape, odd_at, odd):
    """A read of GET- or SET-shaped commands alone is encoded in one go
    (``_encode_alike``); one command of any other shape or form among them
    gives, on the fast path, what the long way gives."""
    commands = [encode_command(shape)] * 16
    commands[odd_at] = odd
    data = b"".join(commands)
    assert _outcome(RequestParser(), [data]) == _outcome(_python_only(), [data])
    assert _outcome(RequestParser(), [data + TRAILING]) == _outcome(_python_only(), [data + TRAILING])
    alike = RequestParser().feed(b"".join([encode_command(shape)] * 16))
    assert alike == [(shape, encode_command(shape))] * 16


_SHA = b"e0e1f9fabfc9d4800c877a703b823ac0578ff8db"
_SHA2 = b"a42059b356c875f0717db19a51f6aaca9ae659ea"


@pytest.mark.parametrize(
    ("read", "named"),
    [
        ([[b"GET", b"k%d" % i] for i in range(16)], [b"GET", b"k0"]),
        ([[b"SET", b"k%d" % i, b"v" * i] for i in range(16)], [b"SET", b"k0", b""]),
        ([[b"SET", b"k", b"v"], [b"SET", b"k", b"w"]], [b"SET", b"k", b"v"]),
        ([[b"GET", b"k"]], None),  # one command: the loop per command costs no more
        ([[b"GET", b"a"], [b"get", b"b"], [b"GET", b"c"]], None),  # another spelling
        ([[b"GET", b"a"], [b"EXISTS", b"b"], [b"GET", b"c"]], None),  # another name, one shape
        ([[b"GET", b"a"], [b"GET", b"b"], [b"EXISTS", b"c"]], None),
        ([[b"GET", b"a"], [b"GET", b"b", b"c"], [b"GET", b"c"]], None),  # another shape
        # 4 arguments, the first three alike (_encode_scripts, below)
        ([[b"HSET", b"h", b"f", b"v"]] * 3, [b"HSET", b"h", b"f", b"v"]),
        ([[b"HSET", b"h", b"f%d" % i, b"v"] for i in range(3)], None),
        ([[b"GET", b"k" * 1024]] * 3, None),  # past the header tables
        ([[b"G" * 1024, b"k"]] * 3, None),
        # One script's EVALSHAs of one key (_encode_scripts): encoded as
        # the first one's, told by it; any other among them as it is.
        ([[b"EVALSHA", _SHA, b"1", b"k%d" % i] for i in range(16)], [b"EVALSHA", _SHA, b"1", b"k0"]),
        (
            [[b"EVALSHA", _SHA, b"1", b"k%d" % i, b"t" * i] for i in range(16)],
            [b"EVALSHA", _SHA, b"1", b"k0", b""],
        ),
        (
            [[b"EVALSHA", _SHA, b"1", b"a"], [b"EVALSHA", _SHA2, b"1", b"b"], [b"EVALSHA", _SHA, b"1", b"c"]],
            None,
        ),
        (
            [[b"EVALSHA", _SHA, b"1", b"a"], [b"EVALSHA", _SHA, b"2", b"b"], [b"EVALSHA", _SHA, b"1", b"c"]],
            None,
        ),
        (
            [[b"EVALSHA", _SHA, b"1", b"a"], [b"evalsha", _SHA, b"1", b"b"], [b"EVALSHA", _SHA, b"1", b"c"]],
            None,
        ),
        (
            [
                [b"EVALSHA", _SHA, b"1", b"a"],
                [b"EVALSHA", _SHA, b"1", b"b", b"t"],
                [b"EVALSHA", _SHA, b"1", b"c"],
            ],
            None,
        ),
        (
            [
                [b"EVALSHA", _SHA, b"1", b"a"],
                [b"EVALSHA", _SHA, b"1", b"k" * 1024],
                [b"EVALSHA", _SHA, b"1", b"c"],
            ],
            None,
        ),
        ([[b"EVALSHA", b"s" * 1024, b"1", b"a"]] * 3, None),
    ],
)
def test_a_read_of_one_name_is_told_with_its_commands(read, named):
    """``feed_lazily`` tells a whole read of commands of one name and of 2
    or 3 arguments, or of 4 or 5 and the same first three (one script's
    EVALSHAs of one key), by its first command's arguments
    (``Client._run`` then looks the name up once), and gives the
    commands it gives otherwise."""
    data = b"".join(encode_command(args) for args in read)
    count, told, commands = RequestParser().feed_lazily(data)
    assert told == named
    assert count == len(read) and list(commands) == [(args, encode_command(args)) for args in read]
    assert _outcome(RequestParser(), [data]) == _outcome(_python_only(), [data])
    # A read that ends inside a command tells nothing.
    assert RequestParser().feed_lazily(data + TRAILING)[1] is None


def test_a_read_like_the_last_scripts_is_read_without_hiredis(monkeypatch):
    """After a read of one script's EVALSHAs of one key, a read that starts
    with the same first three arguments goes to ``_feed_scripts`` (split
    at each ``*``, no hiredis): it gives what the long way gives, and the
    reads it cannot prove (a key that holds ``*`` or the head, a long key,
    another script or shape among them, a read that ends inside a command)
    are read the usual way, the same."""
    taken: list = []
    feed_scripts = RequestParser._feed_scripts

    def counted(self: RequestParser, data: bytes):
        found = feed_scripts(self, data)
        taken.append(found is not None)
        return found

    monkeypatch.setattr(RequestParser, "_feed_scripts", counted)

    def evalshas(*keys: bytes, sha: bytes = _SHA) -> list[list[bytes]]:
        return [[b"EVALSHA", sha, b"1", key] for key in keys]

    first = evalshas(b"a", b"b")
    reads = [
        (evalshas(*(b"key:%d" % i for i in range(16))), True),
        (evalshas(b"", b"k" * 9, b"k" * 10, b"k" * 99, b"k" * 100, b"k" * 1023), True),
        (evalshas(b"x", b"y"), True),
        (evalshas(b"x"), False),  # one command: the usual way
        (evalshas(b"a*b", b"c"), False),
        (evalshas(b"a*b", b"c", b"d"), False),
        # (Split no more times than the read can hold commands: a "*" in
        # the last key is in the last part, its key, and the check passes.)
        (evalshas(b"c", b"*4\r\n$1\r\n"), True),
        (evalshas(b"c", encode_command(first[0])), False),
        (evalshas(b"c", b"k" * 1024), False),
        (evalshas(b"a", b"b") + evalshas(b"c", sha=_SHA2), False),
        (evalshas(b"a") + [[b"EVALSHA", _SHA, b"1", b"b", b"t"]], False),
        (evalshas(b"a") + [[b"GET", b"b"]], False),
    ]
    parser = RequestParser()
    assert parser.feed_lazily(b"".join(encode_command(args) for args in first))[1] == first[0]
    for read, fast in reads:
        taken.clear()
        data = b"".join(encode_command(args) for args in read)
        count, told, commands = parser.feed_lazily(data)
        assert taken == [fast]
        assert count == len(read) and list(commands) == [(args, encode_command(args)) for args in read]
        assert told == (read[0] if fast else RequestParser().feed_lazily(data)[1])
        assert _outcome(RequestParser(), [data]) == _outcome(_python_only(), [data])
        # Cut inside a command, at the end or before it: the usual way's leftovers.
        for cut in (len(data) - 3, len(data) - len(encode_command(read[-1])) + 5):
            assert _outcome(parser, [data[:cut], data[cut:]]) == _outcome(
                _python_only(), [data[:cut], data[cut:]]
            )


def test_a_read_of_one_scripts_evalshas_makes_its_arguments_when_asked():
    """A read of one script's EVALSHAs of one key comes as a ``ScriptsRead``:
    its keys and encodings, all ``scripting.scripts_alike`` needs.  Split
    without hiredis (``_feed_scripts``), it has no arguments until they
    are asked for (the commands that wait behind a shard that has not
    compiled the script, a client that waits); then, and from any
    command on, they are the long way's, as they are for a read that
    hiredis parsed (whose keys are taken from its arguments)."""
    head = [b"EVALSHA", _SHA, b"1"]
    first = [[*head, b"a"], [*head, b"b"]]
    parser = RequestParser()
    _, _, commands = parser.feed_lazily(b"".join(encode_command(args) for args in first))
    assert type(commands) is ScriptsRead and commands.found is not None
    assert commands.keys() == [b"a", b"b"] and list(commands) == [
        (args, encode_command(args)) for args in first
    ]
    read = [[*head, b"key:%d" % i] for i in range(5)]
    pairs = [(args, encode_command(args)) for args in read]
    for start in (0, 1, 4, 5):
        count, told, commands = parser.feed_lazily(b"".join(raw for _, raw in pairs))
        assert count == 5 and told == read[0]
        assert type(commands) is ScriptsRead and commands.found is None
        assert commands.keys() == [args[3] for args in read] and commands.raws == [raw for _, raw in pairs]
        assert list(commands.commands_from(start)) == pairs[start:]
        assert list(commands) == pairs


def test_a_read_of_stars_behind_the_scripts_head_costs_what_the_read_does():
    """``_feed_scripts`` splits a read at each ``*``: a read that starts
    with the last script's head and then holds ``*`` after ``*`` (hostile
    bytes, or keys of stars) made a part, a key and an encoding per byte,
    about 280 bytes held per byte read (73 MB for one 256 KB read, 25 to
    80 times the time of the usual way).  It is split into no more parts
    than the read can hold commands: it is read the usual way, as a
    parser that never saw the head reads it, holding a few bytes per byte."""
    import tracemalloc

    head = [b"EVALSHA", _SHA, b"1"]
    starred = b"".join(encode_command([*head, b"*" * 1000]) for _ in range(16))
    for data in (encode_command([*head, b"k"]) + b"*" * 65536, starred, starred + b"$-1\r\n"):
        parser = RequestParser()
        parser.feed(encode_command([*head, b"a"]) + encode_command([*head, b"b"]))
        tracemalloc.start()
        try:
            found = _outcome(parser, [data])
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert found == _outcome(RequestParser(), [data]) == _outcome(_python_only(), [data])
        assert peak < 8 * len(data)


def test_the_scripts_tables_are_made_once_for_short_heads_alone():
    """The table ``_feed_scripts`` reads a key's start in is made per head
    length.  Kept 8 at most, all dropped at the 9th, a client that sent
    heads of 9 lengths in turn made one (over 1,000 entries) per read, 10
    times the parse of a short read; and a parser kept its own for good
    (up to 4,000 entries for a head of three 1,023-byte arguments: 64 MB
    for 1,000 clients).  Now a head longer than 128 bytes is read the
    usual way, unnoted, and a table, once made, serves every parser."""
    from shardkv.protocol import resp

    def noted(args: list[bytes]) -> RequestParser:
        parser = RequestParser()
        read = encode_command([*args, b"a"]) + encode_command([*args, b"b"])
        assert args_of(parser.feed(read)) == [[*args, b"a"], [*args, b"b"]]
        return parser

    first = noted([b"HSET", b"h", b"f"])
    table = first._script_starts
    for n in range(2, 40):  # heads of 38 more lengths
        assert noted([b"HSET", b"h" * n, b"f"])._script_head
    assert noted([b"HSET", b"h", b"f"])._script_starts is table
    long = noted([b"HSET", b"h" * 100, b"f" * 20])
    assert not long._script_head and not long._script_starts
    data = encode_command([b"HSET", b"h" * 100, b"f" * 20, b"c"]) * 2
    assert _outcome(long, [data]) == _outcome(_python_only(), [data])
    assert len(resp._KEY_STARTS) <= 128


@pytest.mark.parametrize("size", [0, 1, 9, 10, 1023, 1024, 1025, 70000])
@pytest.mark.parametrize("count", [1, 2, 3, 4, 5, 6, 63, 64, 65, 300])
def test_fast_path_raw_bytes_past_its_header_tables(size, count):
    """The fast path's encoding has header tables for bulks under 1024
    bytes and commands under 64 arguments, and formats the others: every
    size gives the canonical bytes, on the fast path as on the long way
    (its one join of 2 to 5 arguments too)."""
    args = [b"x" * size] * count
    data = encode_command(args) + encode_command([b"GET", b"k"])
    out, _ = feed_whole(data)
    assert out == [(args, encode_command(args)), ([b"GET", b"k"], encode_command([b"GET", b"k"]))]
    assert _outcome(RequestParser(), [data]) == _outcome(_python_only(), [data])


@pytest.mark.parametrize(
    "header",
    [
        b"*2147483647\r\n",
        b"*99999\r\n",
        b"*1\r\n*2147483647\r\n",
        b"*2\r\n$1\r\nkXY~2147483647\r\n",  # hiredis skips the 2 bytes after a bulk unread
        b"*1\r\n>2147483647\r\n",
    ],
)
def test_huge_counts_never_reach_hiredis(header):
    """hiredis would allocate the announced array first (seconds, gigabytes)."""
    parser = RequestParser()
    reader = parser._reader
    try:
        parser.feed(header)
    except ProtocolError:
        pass  # "expected '$', got '*'" for the nested one, as from Redis
    assert parser._reader is reader and not reader.has_data()  # hiredis never saw it


@pytest.mark.parametrize("seed", range(20))
def test_the_guard_before_hiredis_finds_five_digits_after_an_aggregate_byte(seed):
    """_may_allocate_big (five ``\\d``s spelled out, for speed) says what
    ``[*%~>|]\\d{5}`` anywhere in the read says, at every count of digits."""
    import random
    import re

    from shardkv.protocol.resp import _may_allocate_big

    rng = random.Random(seed)
    old = re.compile(rb"[*%~>|]\d{5}")
    for _ in range(200):
        data = bytes(rng.choice(b"*%~>|$\r\n0123456789ab") for _ in range(rng.randint(1, 40)))
        assert _may_allocate_big(data) == (old.search(data) is not None), data
    for byte in b"*%~>|":
        assert not _may_allocate_big(b"*3\r\n%c1234\r\n" % byte)
        assert _may_allocate_big(b"*3\r\n%c12345" % byte)


@pytest.mark.slow  # parses 540,000 commands
def test_idle_parsers_do_not_keep_their_largest_read():
    """hiredis keeps its buffer's capacity until its next feed: after a big
    pipelined read, an idle connection must not hold on to it (300 clients
    that each sent 236 KB would otherwise keep ~70 MB)."""
    import gc

    import psutil

    data = b"".join(encode_command([b"SET", b"k%d" % i, b"v" * 100]) for i in range(1800))
    gc.collect()
    before = psutil.Process().memory_info().rss
    parsers = []
    for _ in range(300):
        parser = RequestParser()
        assert len(parser.feed(data)) == 1800
        parsers.append(parser)
    gc.collect()
    grown = psutil.Process().memory_info().rss - before
    assert grown < 20 * 1024 * 1024, f"{grown / 2**20:.1f} MiB held by 300 idle parsers"


def test_long_bulk_arrays_are_encoded_a_slice_at_a_time():
    """An array past BIG_ARRAY bulk strings is encoded slice by slice, to
    the same bytes; one with another element falls back to the general path."""
    from shardkv.protocol.resp import BIG_ARRAY, Raw, encode, encode_bulk_choices

    values = [b"v%d" % i for i in range(BIG_ARRAY * 2 + 5)]
    expected = b"*%d\r\n" % len(values) + b"".join(b"$%d\r\n%s\r\n" % (len(v), v) for v in values)
    assert encode(values) == expected
    assert (
        encode([*values, 7]) == expected.replace(b"*%d" % len(values), b"*%d" % (len(values) + 1)) + b":7\r\n"
    )
    drawn = encode_bulk_choices((b"a", b"bc"), 5, 1 << 20)
    assert type(drawn) is Raw
    body = bytes(encode(drawn))
    assert body.startswith(b"*5\r\n") and body.count(b"\r\n") == 1 + 2 * 5


def test_drawn_replies_stop_past_their_room():
    """A reply drawn at random (SRANDMEMBER, HRANDFIELD, ZRANDMEMBER with
    a negative count) stops once it is past the room it was given: no
    reply (bulk strings) or the error (pairs, encoded later), and it never
    grows much past the room (a slice holds at most _DRAW_STEP bytes, or
    one element)."""
    from shardkv.protocol.resp import PairChoices, encode, encode_bulk_choices, least_reply

    big = b"x" * (1 << 20)
    assert encode_bulk_choices((b"a", big), 1000, 1 << 24) is None  # about 500 MB if built
    assert bytes(encode(encode_bulk_choices((b"a",), 1000, 1 << 24))) == b"*1000\r\n" + b"$1\r\na\r\n" * 1000
    for resp3 in (False, True):
        assert encode(PairChoices(((big, big), (b"a", b"b")), 1000, 1 << 24), resp3) == (
            b"-ERR value is out of range\r\n"
        )
        fits = PairChoices(((b"f", b"v"),), 3, 1 << 24)
        assert encode(fits, resp3) == encode(fits.drawn(), resp3)
    assert least_reply([3, 1, 2], 10) == 10 * len(b"$1\r\nx\r\n")


def test_pair_draws_that_may_not_fit_are_drawn_by_the_handler():
    """PairChoices.fits draws the pairs when k of the biggest could pass
    the room: False when they do not fit (the handler's error, counted),
    else the reply (and a script's list) draws the same pairs again."""
    from shardkv.protocol.resp import PairChoices, Pairs, encode

    big = b"x" * (1 << 20)
    assert PairChoices(((big, big), (b"a", b"b")), 1000, 1 << 24).fits() is False
    small = PairChoices(((b"f", b"v"), (b"g", 1.5)), 1000, 1 << 24)
    assert small.fits() and small.seed is None  # cannot pass: nothing drawn
    pairs = ((b"f" * 1000, b"v"), (b"g", 2.5))
    for resp3 in (False, True):
        k = 2000
        room = len(encode(Pairs([pairs[0]] * k), resp3)) - 1  # all of the big one: past it
        mixed = PairChoices(pairs, k, room)
        assert mixed.fits() and mixed.seed is not None
        body = encode(mixed, resp3)
        assert body == encode(mixed.drawn(), resp3) and len(body) <= room


@pytest.mark.parametrize("n", [0, 1, 9, 10, 99, 100])
def test_least_reply_is_never_more_than_the_reply(n):
    """The bound a handler refuses by at once (SRANDMEMBER s -count...) is
    at most the reply it would build: a reply that fits its room is never
    refused for its RESP around the members, pairs or not, RESP2 or 3."""
    from shardkv.protocol.resp import BIG_ARRAY, PairChoices, encode, encode_bulk_choices, least_reply

    member = b"m" * n
    k = BIG_ARRAY + 1
    drawn = bytes(encode(encode_bulk_choices((member, member + b"x"), k, 1 << 40)))
    assert least_reply([n, n + 1], k) == k * len(encode(member)) <= len(drawn)
    for resp3 in (False, True):
        for pair in ((member, b""), (b"", member), (member, 0.0), (member, 1.5)):
            body = encode(PairChoices((pair,), k, 1 << 40), resp3)
            sizes = [len(pair[0]) + (len(pair[1]) if type(pair[1]) is bytes else 0)]
            assert least_reply(sizes, k, pairs=True) <= len(body)


@pytest.mark.parametrize("extra", [[], [b"tok"]])
def test_one_scripts_evalshas_are_encoded_as_the_first_ones(monkeypatch, extra):
    """_encode_scripts measures and joins only each EVALSHA's key (and
    argument), with the first one's name, SHA1 and key count: the encodings
    of a read of one script's EVALSHAs, which the parser gives as the
    read's (no other encoding made), and of a read with another among
    them encodings that do not join to it (the caller's check)."""
    from shardkv.protocol import resp
    from shardkv.protocol.resp import _encode_scripts

    made: list = []
    monkeypatch.setattr(
        resp, "_encode_scripts", lambda found: made.append(_encode_scripts(found)) or made[-1]
    )
    monkeypatch.setattr(resp, "_encode_alike", lambda found: made.append("alike"))

    same = [[b"EVALSHA", _SHA, b"1", b"key:%d" % i, *extra] for i in range(16)]
    assert _encode_scripts(same) == [encode_command(args) for args in same]
    for odd in ([b"EVALSHA", _SHA2, b"1", b"k", *extra], [b"evalsha", _SHA, b"1", b"k", *extra]):
        mixed = [*same[:7], odd, *same[8:]]
        encoded = _encode_scripts(mixed)
        assert encoded is not None
        assert b"".join(encoded) != b"".join(encode_command(args) for args in mixed)
    assert _encode_scripts([*same[:15], [b"EVALSHA", _SHA2, b"1", b"k", *extra]]) is None
    assert _encode_scripts([[b"GET", b"k"]] * 3) is None

    _, _, commands = RequestParser().feed_lazily(b"".join(encode_command(args) for args in same))
    assert [raw for _, raw in commands] == made[0] and made == [made[0]]
