"""RESP, sans I/O: a request parser and a reply encoder.

Nothing here touches a socket.  :class:`RequestParser` is fed the bytes a
client sent and hands back complete commands; :func:`encode` turns a reply
value into the bytes of RESP2 or RESP3.  The acceptor parses with it and
both the acceptor and the workers encode with it.

Reply values are plain Python objects, so command code never thinks about
the protocol version:

=================  ======================  ===========================
Python value       RESP2                   RESP3
=================  ======================  ===========================
``bytes``          bulk string             bulk string
``str``            simple string ``+``     simple string ``+``
``int``            integer ``:``           integer ``:``
``bool``           integer ``:1``/``:0``   boolean ``#t``/``#f``
``None``           null bulk ``$-1``       null ``_``
``float``          bulk string (%.17g)     double ``,``
``HumanDouble``    bulk string (its text)  double ``,``
``list``/``tuple`` array ``*``             array ``*``
``dict``           flat array              map ``%``
``set``            array                   set ``~``
:class:`Error`     error ``-``             error ``-``
:data:`NULL_ARRAY` ``*-1``                 null ``_``
:class:`Verbatim`  bulk string             verbatim ``=``
:class:`Push`      array                   push ``>``
:class:`Pairs`     flat array              array of 2-arrays
:class:`KeyedArrays` array of 2-arrays    map ``%``
:class:`MapPairs`  flat array              map ``%`` (keys may repeat)
:class:`Raw`       the bytes as they are   the bytes as they are
=================  ======================  ===========================
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Iterator
from itertools import chain
from operator import itemgetter
from typing import Any

from shardkv.protocol import errors

try:  # C speed for the common case; see RequestParser._feed_canonical
    from hiredis import Reader as _HiredisReader
except ImportError:  # pragma: no cover - hiredis is a dependency
    _HiredisReader = None  # type: ignore[assignment, misc]

PROTO_INLINE_MAX_SIZE = 64 * 1024
PROTO_IOBUF_LEN = 16 * 1024  # what Redis reads from a client at a time
PROTO_MBULK_BIG_ARG = 32 * 1024  # a bulk this long gets a query buffer of its size (see big_bulk)
# Input with an aggregate header of 5 digits or more never goes to hiredis:
# it allocates an array of the announced size before the elements come, and
# freeing one of 2**31 takes seconds.  (Not anchored at line starts: hiredis
# skips the two bytes after a bulk without looking at them.)
# (Five ``\d``s, not ``\d{5}``: at each ``*`` tried, a repeat costs more to
# set up than the first ``\d`` that fails.)
_BIG_ARRAY = re.compile(rb"\*\d\d\d\d\d")  # a literal first byte: a fast scan
_BIG_AGGREGATE = re.compile(rb"[*%~>|]\d\d\d\d\d")  # a class: a slow one


_READER_KEEP = 16 * 1024  # a hiredis reader fed more is replaced once done
_LONG_BULK_HEAD = re.compile(rb"\$\d{5}")  # a bulk of 10,000 bytes or more, maybe

# The canonical headers of the usual sizes, ``$<len>`` (its ``\r\n`` comes
# from the join) and ``*<n>\r\n``: see RequestParser._feed_canonical.
_BULK_HEADS = [b"$%d" % i for i in range(1024)]
# Where a key shorter than 1024 bytes starts in its bulk, ``$<len>\r\n<key>\r\n``,
# by the bulk's length (its digits and the key's make each length one
# key's): None where no key's bulk has that length.
_KEY_AT: list[int | None] = [None] * (1023 + 4 + 5 + 1)
for _n in range(1024):
    _KEY_AT[_n + len(str(_n)) + 5] = len(str(_n)) + 3
del _n
# RequestParser._feed_scripts reads behind a head of at most this many
# bytes (an EVALSHA's is 71, an EVALSHA_RO's 74): its tables, one per
# head length, are then 128 at most (about 1 MB), each made once and
# shared by every parser, and a client that sends heads of many lengths
# in turn has none made again nor any kept for it alone.
_SCRIPT_HEAD_MAX = 128
_KEY_STARTS: dict[int, list[int | None]] = {}  # by the length before the bulk


def _key_starts(skip: int) -> list[int | None]:
    """Where a key shorter than 1024 bytes starts in ``skip`` bytes and
    its bulk, by their length (:data:`_KEY_AT` shifted by ``skip``):
    RequestParser._feed_scripts's table for the head it reads behind."""
    starts = _KEY_STARTS.get(skip)
    if starts is None:
        starts = [None] * skip
        starts += [None if at is None else skip + at for at in _KEY_AT]
        _KEY_STARTS[skip] = starts
    return starts


_ARRAY_HEADS = [b"*%d\r\n" % i for i in range(64)]
_FILLER = b":0\r\n"  # an element that completes an array: see RequestParser._fewer_commands
# A command's first two headers in one, for 2 to 5 arguments (``*3\r\n$3``):
# most commands are GET-, SET- or EVALSHA-shaped, and those are re-encoded
# with one join and no loop per argument.
_HEADS_OF_2 = [_ARRAY_HEADS[2] + head for head in _BULK_HEADS]
_HEADS_OF_3 = [_ARRAY_HEADS[3] + head for head in _BULK_HEADS]
_HEADS_OF_4 = [_ARRAY_HEADS[4] + head for head in _BULK_HEADS]
_HEADS_OF_5 = [_ARRAY_HEADS[5] + head for head in _BULK_HEADS]


def _encode_alike(found: list[Any]) -> list[bytes] | None:
    """The canonical encodings of ``found``'s commands (see
    RequestParser._feed_canonical) when they are all of the first one's
    shape, GET's (2 arguments), SET's (3), or EVALSHA's of one key (4, or 5
    with one argument: a lock's release), each shorter than 1024 bytes;
    else None, and the caller encodes them one by one.  One comprehension,
    no test per command: a command of another shape raises as it is
    unpacked (or an argument that is not bytes as it is measured or
    joined), and so does a long argument (an IndexError)."""
    heads = _BULK_HEADS
    join = b"\r\n".join
    try:
        first = len(found[0])
        if len(found[-1]) != first:  # mixed shapes (most show at the end): told cheaper than by a raise
            return None
        if first == 3:
            heads_3 = _HEADS_OF_3
            return [join((heads_3[len(a)], a, heads[len(b)], b, heads[len(c)], c, b"")) for a, b, c in found]
        if first == 2:
            heads_2 = _HEADS_OF_2
            return [join((heads_2[len(a)], a, heads[len(b)], b, b"")) for a, b in found]
        if first == 4:
            heads_4 = _HEADS_OF_4
            return [
                join((heads_4[len(a)], a, heads[len(b)], b, heads[len(c)], c, heads[len(d)], d, b""))
                for a, b, c, d in found
            ]
        if first == 5:
            heads_5 = _HEADS_OF_5
            return [
                join(
                    (
                        heads_5[len(a)],
                        a,
                        heads[len(b)],
                        b,
                        heads[len(c)],
                        c,
                        heads[len(d)],
                        d,
                        heads[len(e)],
                        e,
                        b"",
                    )
                )
                for a, b, c, d, e in found
            ]
    except Exception:  # noqa: BLE001 - another shape: one by one
        pass
    return None


def _encode_named(found: list[Any]) -> list[bytes] | None:
    """The canonical encodings of ``found``'s commands as if each had the
    first one's name, when the first and the last have its name and
    shape, GET's (2 arguments) or SET's (3), each argument shorter than
    1024 bytes; else None.  Whether every one has that name is what the
    caller's check proves, that they join to the read: canonical RESP is
    read one way only, so a read equal to these encodings holds these
    commands.  One comprehension, the name's header and the name one
    element of each join (no ``len`` of it), and no test per command;
    another shape raises as it is unpacked (or an argument that is not
    bytes as it is measured or joined), a long argument as its header is
    looked up (an IndexError)."""
    heads = _BULK_HEADS
    join = b"\r\n".join
    try:
        first = found[0]
        last = found[-1]
        # (Mixed names or shapes mostly show at the end: told cheaper than by a failed check.)
        if len(last) != len(first) or last[0] != first[0]:
            return None
        name = first[0]
        if len(first) == 3:
            named = _HEADS_OF_3[len(name)] + b"\r\n" + name
            return [join((named, heads[len(b)], b, heads[len(c)], c, b"")) for _, b, c in found]
        if len(first) == 2:
            named = _HEADS_OF_2[len(name)] + b"\r\n" + name
            return [join((named, heads[len(b)], b, b"")) for _, b in found]
    except Exception:  # noqa: BLE001 - another shape or form: the caller encodes them otherwise
        pass
    return None


def _encode_scripts(found: list[Any]) -> list[bytes] | None:
    """:func:`_encode_named` for EVALSHA's shapes of one key (4 arguments,
    or 5 with one argument: a lock's release): the canonical encodings of
    ``found``'s commands as if each had the first one's first three
    arguments (its name, SHA1 and key count), when the first and the last
    have them, and 4 or 5 arguments each, every one shorter than 1024
    bytes; else None.  Again the caller's check that they join to the read
    proves every one has them; the key and the argument are all that is
    measured and joined per command."""
    heads = _BULK_HEADS
    join = b"\r\n".join
    try:
        first = found[0]
        last = found[-1]
        n = len(first)
        if len(last) != n or last[2] != first[2] or last[1] != first[1] or last[0] != first[0]:
            return None
        name, sha, numkeys = first[0], first[1], first[2]
        if n == 4:
            named = join((_HEADS_OF_4[len(name)], name, heads[len(sha)], sha, heads[len(numkeys)], numkeys))
            return [join((named, heads[len(d)], d, b"")) for _, _, _, d in found]
        if n == 5:
            named = join((_HEADS_OF_5[len(name)], name, heads[len(sha)], sha, heads[len(numkeys)], numkeys))
            return [join((named, heads[len(d)], d, heads[len(e)], e, b"")) for _, _, _, d, e in found]
    except Exception:  # noqa: BLE001 - another shape or form: the caller encodes them otherwise
        pass
    return None


def _may_allocate_big(data: bytes) -> bool:
    if _BIG_ARRAY.search(data):
        return True
    # Maps, sets, pushes, attributes: rare enough to be looked for byte by byte.
    if 37 in data or 126 in data or 62 in data or 124 in data:  # % ~ > |
        return _BIG_AGGREGATE.search(data) is not None
    return False


DEFAULT_MAX_BULK_LEN = 512 * 1024 * 1024
INT_MAX = 2**31 - 1
# Redis refuses larger multibulk counts and bulk lengths from clients that
# have not authenticated yet.
UNAUTH_MAX_MULTIBULK = 10
UNAUTH_MAX_BULK = 16384


DEFAULT_MAX_QUERY_BUFFER = 1024**3  # client-query-buffer-limit
_LONG_LINE = 1024  # a partial line longer than this is collected, not re-joined


# A parsed command: its arguments, and its exact RESP bytes (None for an
# inline command, or one that must be re-encoded); see RequestParser.
Parsed = tuple[list[bytes], bytes | None]


_FOURTH = itemgetter(3)  # a script's first key (see ScriptsRead.keys)


class ScriptsRead:
    """A read of one script's EVALSHAs of one key (see
    :meth:`RequestParser.feed_lazily`; a read of 4 or 5 arguments alike
    in their first three, told as such): each command's key and
    encoding, all the shortcut of such a read needs
    (``scripting.scripts_alike``), and, iterated as any read is, its
    commands, ``(args, raw)`` pairs.  A read that
    :meth:`RequestParser._feed_scripts` split has its keys alone, and
    their arguments are made when first asked for: the shortcut takes
    the whole read without them, so no list per command is made and
    freed, nor visited by CPython's cyclic collector.  One that hiredis
    read has its arguments, and its keys are taken from them when asked
    for (it may be another command's read: HSET of one field)."""

    __slots__ = ("_keys", "raws", "head", "found")

    def __init__(
        self,
        keys: list[bytes] | None,
        raws: list[bytes],
        head: tuple[bytes, bytes, bytes],
        found: list[list[bytes]] | None,
    ) -> None:
        self._keys = keys  # each command's fourth argument (None: not taken yet)
        self.raws = raws
        self.head = head  # every command's first three arguments
        self.found = found  # the commands' arguments (None: not made yet)

    def __iter__(self) -> Iterator[Parsed]:
        return zip(self.args(), self.raws)  # noqa: B905 (as long as each other)

    def keys(self) -> list[bytes]:
        """Each command's fourth argument (a script's first key), in order."""
        keys = self._keys
        if keys is None:  # (a C loop: as cheap as the shortcut's ``args[3]`` per command was)
            keys = self._keys = list(map(_FOURTH, self.args()))
        return keys

    def args(self) -> list[list[bytes]]:
        """Each command's arguments, in order."""
        found = self.found
        if found is None:
            name, sha, numkeys = self.head
            found = self.found = [[name, sha, numkeys, key] for key in self._keys]  # type: ignore[union-attr]
        return found

    def commands_from(self, start: int) -> Iterator[Parsed]:
        """The commands from the ``start``-th on, as ``(args, raw)`` pairs."""
        return zip(self.args()[start:], self.raws[start:])  # noqa: B905 (as long as each other)


class ProtocolError(Exception):
    """The client broke the protocol; reply with ``message`` and hang up.

    ``commands`` are the complete commands that came before the bad bytes
    in the same :meth:`RequestParser.feed`: Redis runs those first.
    """

    def __init__(self, message: str, commands: list[Parsed] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.commands = commands or []


class QueryBufferExceeded(ProtocolError):
    """Unparsed input passed ``client-query-buffer-limit``: Redis logs it and
    closes the connection without a reply (``message`` is empty)."""

    def __init__(self, held: int, commands: list[Parsed] | None = None) -> None:
        super().__init__("", commands)
        self.held = held


class Error:
    """An error reply.  ``message`` is the full text without the ``-``."""

    __slots__ = ("message",)

    def __init__(self, message: str) -> None:
        self.message = message

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Error) and other.message == self.message

    def __hash__(self) -> int:
        return hash(self.message)

    def __repr__(self) -> str:
        return f"Error({self.message!r})"


class Verbatim:
    """A verbatim string (RESP3 ``=``), such as INFO's text."""

    __slots__ = ("text", "format")

    def __init__(self, text: bytes, format: bytes = b"txt") -> None:
        self.text = text
        self.format = format


class Push(list[Any]):
    """An out-of-band push message (RESP3 ``>``), used by Pub/Sub."""

    __slots__ = ()


class Pairs(list[Any]):
    """A list of 2-tuples: RESP3 nests each pair, RESP2 flattens them.

    The shape of HRANDFIELD ... WITHVALUES and ZRANGE ... WITHSCORES.
    """

    __slots__ = ()


class KeyedArrays(list[Any]):
    """A list of ``(key, value)``: an array of 2-arrays in RESP2, a map in
    RESP3 (XREAD's reply)."""

    __slots__ = ()


class MapPairs(list[Any]):
    """A list of ``(key, value)`` in a given order, a key maybe more than
    once: a flat array in RESP2, a map in RESP3 (LATENCY HISTOGRAM's
    reply, one entry per command asked, as Redis repeats them)."""

    __slots__ = ()


class OrderedSet(list[Any]):
    """A set reply in a given order: a set (``~``) in RESP3, an array in
    RESP2, as Redis's ``addReplySetLen`` (COMMAND INFO's flags...)."""

    __slots__ = ()


class Raw:
    """Bytes already encoded in the connection's protocol."""

    __slots__ = ("data",)

    def __init__(self, data: bytes) -> None:
        self.data = data


class HumanDouble:
    """A double already written as text: a bulk string in RESP2, a double
    (``,``) in RESP3, as Redis's ``addReplyHumanLongDouble`` (GEOPOS)."""

    __slots__ = ("text",)

    def __init__(self, text: bytes) -> None:
        self.text = text


class _NullArray:
    __slots__ = ()

    def __repr__(self) -> str:
        return "NULL_ARRAY"


NULL_ARRAY = _NullArray()

OK = "OK"


# -- parsing -----------------------------------------------------------------


def strict_int(s: bytes) -> int | None:
    """Parse ``s`` the way Redis's ``string2ll`` does, or return None.

    Unlike ``int()`` it rejects spaces, ``+``, ``_`` and leading zeros, and
    values outside the signed 64-bit range.
    """
    if len(s) > 20:  # also keeps int() off huge digit strings
        return None
    if s.isdigit():
        if s[0] == 48 and len(s) > 1:
            return None
        v = int(s)
        return v if v <= 9223372036854775807 else None
    if len(s) > 1 and s[0] == 45 and s[1] != 48 and s[1:].isdigit():
        v = -int(s[1:])
        return v if v >= -9223372036854775808 else None
    return None


_ESCAPES = {ord("n"): 10, ord("r"): 13, ord("t"): 9, ord("b"): 8, ord("a"): 7}
_HEX = b"0123456789abcdefABCDEF"
_SPACE = b" \n\r\t\v\f"  # C's isspace(): what separates arguments
_TOKEN_END = b" \n\r\t"  # what ends an unquoted argument (\v and \f do not)


def split_inline(line: bytes) -> list[bytes]:
    """Split an inline command the way Redis's ``sdssplitargs`` does.

    Double quotes take C escapes (``\\n``, ``\\x41``...), single quotes take
    only ``\\'``.  A closing quote must be followed by a space or the end.
    Raises :class:`ProtocolError` on unbalanced quotes.
    """
    if b'"' not in line and b"'" not in line and b"\v" not in line and b"\f" not in line:
        return line.split()
    args: list[bytes] = []
    i, n = 0, len(line)
    while True:
        while i < n and line[i] in _SPACE:
            i += 1
        if i >= n:
            return args
        cur = bytearray()
        inq = insq = False
        while True:
            if inq:
                if i >= n:
                    raise ProtocolError(errors.PROTO_UNBALANCED)
                c = line[i]
                if (
                    c == 92
                    and i + 3 < n
                    and line[i + 1] == 120
                    and line[i + 2] in _HEX
                    and line[i + 3] in _HEX
                ):
                    cur.append(int(line[i + 2 : i + 4], 16))
                    i += 3
                elif c == 92 and i + 1 < n:
                    i += 1
                    cur.append(_ESCAPES.get(line[i], line[i]))
                elif c == 34:
                    if i + 1 < n and line[i + 1] not in _SPACE:
                        raise ProtocolError(errors.PROTO_UNBALANCED)
                    i += 1
                    break
                else:
                    cur.append(c)
            elif insq:
                if i >= n:
                    raise ProtocolError(errors.PROTO_UNBALANCED)
                c = line[i]
                if c == 92 and i + 1 < n and line[i + 1] == 39:
                    i += 1
                    cur.append(39)
                elif c == 39:
                    if i + 1 < n and line[i + 1] not in _SPACE:
                        raise ProtocolError(errors.PROTO_UNBALANCED)
                    i += 1
                    break
                else:
                    cur.append(c)
            else:
                if i >= n:
                    break
                c = line[i]
                if c in _TOKEN_END:
                    break
                if c == 34:
                    inq = True
                elif c == 39:
                    insq = True
                else:
                    cur.append(c)
            i += 1
        args.append(bytes(cur))


def _encode(args: list[bytes]) -> bytes:
    """A command's canonical RESP (see RequestParser._feed_canonical), for
    any count of arguments of any length; raises for anything but a
    non-empty list of bytes (``*0``, ``*-1``, or not a command at all)."""
    if not args:
        raise ValueError
    heads = _BULK_HEADS
    parts = []
    for a in args:
        n = len(a)
        parts.append(heads[n] if n < 1024 else b"$%d" % n)
        parts.append(a)
    parts.append(b"")
    n = len(args)
    return (_ARRAY_HEADS[n] if n < 64 else b"*%d\r\n" % n) + b"\r\n".join(parts)


class RequestParser:
    """Turns the bytes a client sends into commands.

    ``feed(data)`` returns the list of commands completed by ``data``.  Each
    command is a pair ``(args, raw)``: ``args`` is the list of arguments and
    ``raw`` the exact RESP bytes of the command (``None`` for an inline
    command), so it can be forwarded without re-encoding.

    It accepts RESP arrays of bulk strings and inline commands, ignores
    ``*0`` and ``*-1`` as Redis does, and raises :class:`ProtocolError`
    with Redis's text for anything else.  After an error the parser is
    spent: the connection must be closed.

    It reads a line as Redis's ``processMultibulkBuffer`` does: a header
    ends at the first ``\\r`` (the byte after it is skipped unread), and a
    NUL byte before that ``\\r`` hides the line, because Redis finds it with
    ``strchr``.  So the same bytes give the same commands, the same error,
    or the same wait for more data, as on a real Redis.

    While ``authenticated`` is false, ``feed`` returns at most one command
    and keeps the rest: the caller runs it (it may be AUTH), then calls
    ``feed(b"")`` for the next, so the next header is checked against the
    unauthenticated limits only if the client is still unauthenticated.

    Most reads are whole commands in canonical RESP, the only form real
    clients send.  Those go through hiredis (see :meth:`_feed_canonical`);
    everything else, and anything in doubt, through the Python code that
    follows Redis byte by byte.
    """

    __slots__ = (
        "_buf",
        "_args",
        "_remaining",
        "_bulklen",
        "_raw_parts",
        "_wait",
        "_chunks",
        "_have",
        "_needle",
        "_hidden",
        "_too_big",
        "max_bulk_len",
        "max_query_buffer",
        "authenticated",
        "big_bulk",
        "_reader",
        "_script_head",
        "_script_args",
        "_script_starts",
    )

    def __init__(
        self,
        max_bulk_len: int = DEFAULT_MAX_BULK_LEN,
        authenticated: bool = True,
        max_query_buffer: int = DEFAULT_MAX_QUERY_BUFFER,
    ) -> None:
        self._buf = b""  # unconsumed bytes
        self._args: list[bytes] = []  # arguments of a multibulk in progress
        self._remaining = 0  # bulks still expected by that multibulk
        self._bulklen = -1  # length of the bulk being read, -1 for a header
        self._raw_parts: list[bytes | None] = []  # bytes of that command already consumed
        self._wait = 0  # don't parse until this many bytes are buffered
        self._chunks: list[bytes] = []
        self._have = 0
        # A long line still coming (see _hold): the byte that ends it, whether
        # a NUL hides it for good, and the error once it passes 64 KB.
        self._needle = b""
        self._hidden = False
        self._too_big = ""
        self.max_bulk_len = max_bulk_len
        self.max_query_buffer = max_query_buffer
        self.authenticated = authenticated
        # The longest bulk of PROTO_MBULK_BIG_ARG bytes or more begun since
        # the caller last set this to 0 (the acceptor's query-buffer
        # accounting, shardkv.acceptor.querybuf): noted only where such a
        # bulk can be, off the path of small commands.
        self.big_bulk = 0
        self._reader = _HiredisReader() if _HiredisReader is not None else None
        # The first three arguments of the last read of one script's
        # EVALSHAs of one key (its name, SHA1 and key count; see
        # _encode_scripts), and their encoding with the array's header:
        # the next read that starts with them is read by _feed_scripts.
        self._script_head = b""
        self._script_args: tuple[bytes, bytes, bytes] | None = None
        self._script_starts: list[int | None] = []  # where each part's key starts, by its length

    def buffered(self) -> int:
        """How many bytes are held, waiting for the rest of a command."""
        return len(self._buf) + self._have + sum(len(p) for p in self._raw_parts if p is not None)

    def bulk_length(self) -> int:
        """The length of the bulk being read, -1 when none is."""
        return self._bulklen if self._remaining else -1

    def feed(self, data: bytes) -> list[Parsed]:
        """The commands that ``data`` completes, in a list (see :meth:`feed_lazily`)."""
        _, _, commands = self.feed_lazily(data)
        return commands if type(commands) is list else list(commands)

    def feed_lazily(self, data: bytes) -> tuple[int, list[bytes] | None, Iterable[Parsed]]:
        """How many commands ``data`` completes, the first one's arguments
        if it is a read of whole canonical commands that all have that
        name and that many arguments, 2 or 3, or 4 or 5 with its first
        three arguments (one script's EVALSHAs of one key; else None),
        and the commands.

        For a read of whole canonical commands, the usual one, they come
        as an iterator over the parsed arguments and their encodings side
        by side (a ``zip``), not as a list of pairs: a loop that unpacks
        each pair as it goes (``Client._run``) then makes no tuple per
        command, since ``zip`` hands out its one tuple again once the
        loop has let go of it.  Anything else gives a list.  A read of
        one name (a pipeline repeats one) lets ``Client._run`` look its
        name up and count its arguments once, not per command.
        """
        out: list[Parsed] = []
        # Whether the long way, once it has finished a command begun in an
        # earlier read, hands the rest of this one to the fast path: a bulk
        # load's reads end, and so begin, inside commands.
        handoff = False
        whole = (
            data[:1] == b"*"
            and not self._buf
            and not self._remaining
            and not self._wait
            and not self._needle
            and self.authenticated
            and self._reader is not None
            and len(data) <= self.max_bulk_len
            and len(data) <= self.max_query_buffer
        )
        if whole and self._script_head and data.startswith(self._script_head):
            scripts = self._feed_scripts(data)
            if scripts is not None:
                keys, raws = scripts
                head = self._script_args
                return len(keys), [*head, keys[0]], ScriptsRead(keys, raws, head, None)  # type: ignore[misc, arg-type]
        if whole and not _may_allocate_big(data):
            canonical = self._feed_canonical(data)
            if canonical is not None:
                found, raws, named = canonical
                if not self._buf:
                    if named is not None and len(named) > 3:  # (maybe) one script's EVALSHAs of one key
                        return (
                            len(found),
                            named,
                            ScriptsRead(None, raws, (named[0], named[1], named[2]), found),
                        )
                    # (As long as each other, one made from the other; a
                    # keyword would be parsed per read.)
                    return len(found), named, zip(found, raws)  # noqa: B905
                # The read ends inside a command: the long way reads that
                # command's start, which _feed_canonical left in _buf.
                out = list(zip(found, raws, strict=True))
                data = self._buf
                self._buf = b""
        elif self.authenticated and self._reader is not None:
            handoff = bool(self._buf or self._remaining or self._wait or self._needle)
        if self._wait:
            # A large bulk is on its way: collect chunks, join them once.
            self._chunks.append(data)
            self._have += len(data)
            if self._have < self._wait:
                if self._have > self.max_query_buffer:
                    raise QueryBufferExceeded(self._have)
                return 0, None, []
            buf = b"".join(self._chunks)
            self._chunks = []
            self._have = self._wait = 0
        elif self._needle:
            # A long line is on its way: look for its end in new data only.
            self._chunks.append(data)
            self._have += len(data)
            if self._hidden or data.find(self._needle) < 0:
                if self._have > PROTO_INLINE_MAX_SIZE:
                    raise ProtocolError(self._too_big)
                return 0, None, []
            buf = b"".join(self._chunks)
            self._chunks = []
            self._have = 0
            self._needle = b""
        elif self._buf:
            buf = self._buf + data
        else:
            buf = data
        pos = 0
        n = len(buf)
        find = buf.find
        one = not self.authenticated
        while pos < n:
            if handoff and not self._remaining and not self._raw_parts and buf[pos] == 42:
                # The command begun in an earlier read is done: the rest
                # of this read may be whole commands (see _feed_canonical).
                handoff = False
                rest = buf[pos:]
                if (
                    len(rest) <= self.max_bulk_len
                    and len(rest) <= self.max_query_buffer
                    and not _may_allocate_big(rest)
                ):
                    held, self._buf = self._buf, b""
                    canonical = self._feed_canonical(rest)
                    if canonical is None:
                        self._buf = held  # as the long way left it
                    else:
                        out += zip(canonical[0], canonical[1], strict=True)
                        if not self._buf:
                            return len(out), None, out
                        buf = self._buf  # the start of the command it ends inside
                        self._buf = held
                        pos = 0
                        n = len(buf)
                        find = buf.find
            start = pos
            if not self._remaining:
                if buf[pos] != 42:  # not '*': an inline command
                    eol = find(b"\n", pos)
                    if eol < 0 or find(b"\0", pos, eol) >= 0:
                        # No line yet (for Redis, a NUL ends the buffer).
                        if n - pos > PROTO_INLINE_MAX_SIZE:
                            raise ProtocolError(errors.PROTO_BIG_INLINE, out)
                        break
                    line = buf[pos:eol]
                    pos = eol + 1
                    if len(line) >= PROTO_INLINE_MAX_SIZE + PROTO_IOBUF_LEN:
                        # Redis reads 16 KB at a time and gives up once more
                        # than 64 KB have come without a newline: a line sent
                        # whole is refused when its newline is not within
                        # the first 80 KB (a 70,000-byte line is a command).
                        raise ProtocolError(errors.PROTO_BIG_INLINE, out)
                    if line.endswith(b"\r"):
                        line = line[:-1]
                    try:
                        args = split_inline(line)
                    except ProtocolError as e:
                        raise ProtocolError(e.message, out) from None
                    if args:
                        out.append((args, None))
                        if one:
                            break
                    continue
                eol = find(b"\r\n", pos)
                count = strict_int(buf[pos + 1 : eol]) if eol >= 0 else None
                if count is None or count > INT_MAX:
                    # Not a plain header: see where Redis ends this line.
                    eol = _redis_line(buf, pos, n, errors.PROTO_BIG_MBULK_COUNT, out)
                    if eol < 0:
                        break
                    count = strict_int(buf[pos + 1 : eol])
                    if count is None or count > INT_MAX:
                        raise ProtocolError(errors.PROTO_MULTIBULK_LEN, out)
                    self._raw_parts.append(None)  # odd line ending: not forwardable
                if count > UNAUTH_MAX_MULTIBULK and not self.authenticated:
                    raise ProtocolError(errors.PROTO_UNAUTH_MULTIBULK, out)
                pos = eol + 2
                if count <= 0:
                    continue
                self._remaining = count
                self._args = []
            args = self._args
            remaining = self._remaining
            bulklen = self._bulklen
            while remaining:
                if bulklen < 0:
                    eol = find(b"\r\n", pos)
                    digits = buf[pos + 1 : eol]  # strict_int, inlined: this runs per argument
                    if (
                        eol > 0
                        and buf[pos] == 36  # '$'
                        and digits.isdigit()
                        and (digits[0] != 48 or len(digits) == 1)
                        and len(digits) < 20
                    ):
                        bulklen = int(digits)
                    if bulklen < 0 or bulklen > self.max_bulk_len:
                        # Not a plain header: see where Redis ends this line.
                        eol = _redis_line(buf, pos, n, errors.PROTO_BIG_BULK_COUNT, out)
                        if eol < 0:
                            bulklen = -1
                            break
                        if buf[pos] != 36:
                            raise ProtocolError(errors.PROTO_EXPECTED_DOLLAR % chr(buf[pos]), out)
                        bulklen = strict_int(buf[pos + 1 : eol])  # type: ignore[assignment]
                        if bulklen is None or bulklen < 0 or bulklen > self.max_bulk_len:
                            raise ProtocolError(errors.PROTO_BULK_LEN, out)
                        self._raw_parts.append(None)  # odd line ending: not forwardable
                    if bulklen > UNAUTH_MAX_BULK:
                        if not self.authenticated:
                            raise ProtocolError(errors.PROTO_UNAUTH_BULK, out)
                        if bulklen >= PROTO_MBULK_BIG_ARG and bulklen > self.big_bulk:
                            self.big_bulk = bulklen
                    pos = eol + 2
                end = pos + bulklen
                if end + 2 > n:
                    break
                args.append(buf[pos:end])
                pos = end + 2
                bulklen = -1
                remaining -= 1
            self._remaining = remaining
            self._bulklen = bulklen
            if remaining:
                # The command continues in data not yet received.
                self._raw_parts.append(buf[start:pos])
                rest = buf[pos:]
                if bulklen >= 0 and bulklen + 2 - len(rest) > 65536:
                    self._chunks = [rest]
                    self._have = len(rest)
                    self._wait = bulklen + 2
                    self._buf = b""
                    if self._have > self.max_query_buffer:
                        raise QueryBufferExceeded(self._have, out)
                    return len(out), None, out
                if bulklen < 0 and len(rest) > _LONG_LINE:
                    self._hold(rest, b"\r", errors.PROTO_BIG_BULK_COUNT)
                else:
                    self._buf = rest
                return len(out), None, out
            if self._raw_parts:
                parts = self._raw_parts
                self._raw_parts = []
                # None marks a header Redis reads but a strict RESP reader
                # (the worker's) would not: such a command is re-encoded.
                parts.append(buf[start:pos])
                out.append((args, None if None in parts else b"".join(parts)))  # type: ignore[arg-type]
            else:
                out.append((args, buf[start:pos]))
            if one:
                break
        if n - pos > _LONG_LINE:
            if buf[pos] == 42:
                self._hold(buf[pos:], b"\r", errors.PROTO_BIG_MBULK_COUNT)
            else:
                self._hold(buf[pos:], b"\n", errors.PROTO_BIG_INLINE)
        else:
            self._buf = buf[pos:] if pos < n else b""
        return len(out), None, out

    def _feed_canonical(
        self, data: bytes, split: bool = False
    ) -> tuple[list[Any], list[bytes], list[bytes] | None] | None:
        """The commands in ``data`` if it is exactly whole commands in
        canonical form (``*<n>`` then ``$<len>`` bulks, no leading zeros),
        as two lists side by side, their arguments and their encodings,
        and the first one's arguments when every one has its name and
        number of arguments, 2 or 3 (or 4 or 5 and its first three
        arguments: :func:`_encode_scripts`), and ``data`` ends with the last one
        (else None: see :meth:`feed_lazily`); else None, and
        :meth:`feed_lazily` parses it the long way.

        hiredis parses, each byte once: a read with more than one command
        goes to hiredis inside one array, so one ``gets`` call returns them
        all.  A read that ends inside a command (it does not end with
        ``\\n``, or, read whole, it was not whole commands: ``split``)
        goes to hiredis up to its last ``\\r\\n*``; the rest, that
        command's start, is left in ``_buf`` for the long way, which checks
        the limits as it reads it.  Re-encoding what it found and
        finding ``data`` again, byte for byte, proves the input was
        canonical RESP, which every parser, Redis's included, reads the same
        way.  The encodings are the ``raw`` bytes the worker gets.  Called
        only while nothing is buffered (at a command's start), so falling
        back loses nothing.

        The encoding is one ``b"\\r\\n".join`` of the headers (from tables
        for the usual sizes) and the arguments: what hiredis's
        ``pack_command`` gives, without its ``sprintf`` per argument (about
        1k instructions each).  Anything but a list of bytes raises (``len`` of an
        integer, a join of a list) or encodes as something ``data`` is not:
        the long way decides.
        """
        count = data.count(b"\r\n*")
        end = len(data)
        if split or data[-1] != 10:  # whole commands end with "\r\n": this read ends inside one
            # hiredis reads the commands before the last start of one, the
            # long way that last one (see feed); if an argument holds
            # "\r\n*", the check below fails and the long way reads it all.
            if not count:
                return None
            count -= 1
            end = data.rfind(b"\r\n*") + 2
        reader = self._reader
        raws: list[bytes] = []
        heads = _BULK_HEADS
        join = b"\r\n".join
        try:
            if count:
                # One array around the read's commands, so that one gets call
                # returns them all (a call costs about as much as the parse
                # of a short command): ``count + 1`` of them, unless an
                # argument holds "\r\n*" (see _fewer_commands).
                array = _ARRAY_HEADS[count + 1] if count < 63 else b"*%d\r\n" % (count + 1)
                if end == len(data):
                    reader.feed(array + data)  # type: ignore[union-attr]
                else:
                    reader.feed(array)  # type: ignore[union-attr]
                    reader.feed(data, 0, end)  # type: ignore[union-attr]
                found = reader.gets()  # type: ignore[union-attr]
                if found is False:
                    if end != len(data):
                        raise ValueError  # "\r\n*" in an argument, and the read ends inside a command
                    found = self._fewer_commands(count)
                if end == len(data):
                    # A whole read of commands of one name and of GET's or
                    # SET's shape (a pipeline repeats one): encoded with that
                    # name, and proved to be such a read once they join to
                    # it (see _encode_named).  (Not a read of one command,
                    # a pipeline of one, which would gain nothing by it.)
                    same = _encode_named(found)
                    if same is not None and b"".join(same) == data:
                        if len(data) > _READER_KEEP:
                            self._read_big(data, found)
                        return found, same, found[0]
                    # The same for a pipeline of one script's EVALSHAs of
                    # one key (see _encode_scripts): told by its first
                    # command too, whose first three arguments every one has.
                    if same is None:
                        same = _encode_scripts(found)
                        if same is not None and b"".join(same) == data:
                            if len(data) > _READER_KEEP:
                                self._read_big(data, found)
                            first = found[0]
                            if len(first) == 4:  # the next such read: _feed_scripts
                                self._note_scripts(first, same[0])
                            return found, same, found[0]
            else:
                reader.feed(data, 0, end)  # type: ignore[union-attr]
                found = [reader.gets()]  # type: ignore[union-attr]
            # A read of GET-, SET- or EVALSHA-shaped commands alone:
            # one comprehension, no test per command.
            alike = _encode_alike(found)
            if alike is not None:
                raws = alike
            else:
                for args in found:
                    # Two to five arguments shorter than 1024 bytes (GET, SET,
                    # HSET, EVALSHA of one key): one join, no loop.  Any other
                    # count, or a longer argument (an IndexError), takes
                    # _encode; only the long argument raises (a raise costs
                    # about as much as the loop itself).
                    n = len(args)
                    try:
                        if n == 3:
                            a, b, c = args
                            raw = join((_HEADS_OF_3[len(a)], a, heads[len(b)], b, heads[len(c)], c, b""))
                        elif n == 2:
                            a, b = args
                            raw = join((_HEADS_OF_2[len(a)], a, heads[len(b)], b, b""))
                        elif n == 4:
                            a, b, c, d = args
                            raw = join(
                                (
                                    _HEADS_OF_4[len(a)],
                                    a,
                                    heads[len(b)],
                                    b,
                                    heads[len(c)],
                                    c,
                                    heads[len(d)],
                                    d,
                                    b"",
                                )
                            )
                        elif n == 5:
                            a, b, c, d, e = args
                            raw = join(
                                (
                                    _HEADS_OF_5[len(a)],
                                    a,
                                    heads[len(b)],
                                    b,
                                    heads[len(c)],
                                    c,
                                    heads[len(d)],
                                    d,
                                    heads[len(e)],
                                    e,
                                    b"",
                                )
                            )
                        else:
                            raw = _encode(args)
                    except IndexError:
                        raw = _encode(args)
                    raws.append(raw)
        except Exception:  # noqa: BLE001 - not canonical: the long way decides
            self._reader = _HiredisReader()
            return self._feed_canonical(data, True) if not split and end == len(data) and count else None
        if end == len(data):
            if not raws or b"".join(raws) != data:
                self._reader = _HiredisReader()  # it may hold part of a command
                # A read that ends with "\r\n" inside a command: its
                # commands before that one are read again, by hiredis alone.
                return self._feed_canonical(data, True) if not split and count else None
        else:
            joined = b"".join(raws)
            if len(joined) != end or not data.startswith(joined):
                self._reader = _HiredisReader()
                return None
            self._buf = data[end:]
        if len(data) > _READER_KEEP:
            self._read_big(data, found)
        return found, raws, None

    def _note_scripts(self, first: list[bytes], raw: bytes) -> None:
        """A read of EVALSHAs of one key alike (4 arguments, the first three
        alike) was ``first``'s, encoded ``raw``: the next read that starts
        with those three (``_script_head``, their encoding) goes to
        :meth:`_feed_scripts`, unless they hold ``*``, which it splits at."""
        key = first[3]
        head = raw[: len(raw) - len(_BULK_HEADS[len(key)]) - len(key) - 4]
        if len(head) <= _SCRIPT_HEAD_MAX and 42 not in head[1:]:
            self._script_head = head
            self._script_args = (first[0], first[1], first[2])
            self._script_starts = _key_starts(len(head) - 1)

    def _feed_scripts(self, data: bytes) -> tuple[list[bytes], list[bytes]] | None:
        """The keys of the commands of ``data`` and their encodings (as
        :meth:`_feed_canonical` gives them), if it is a read of two or more
        EVALSHAs of one key that all have the first three arguments of the
        last such read (``_script_head``, their encoding: a pipeline of one
        script sends read after read of them), each key shorter than 1024
        bytes; else None, and the usual way reads it.  Without hiredis: the
        read is split at each ``*``, each part's length tells where its
        key starts (``_script_starts``, see :func:`_key_starts`), and the read is proved to be these
        commands as :func:`_encode_named`'s are, by their canonical
        encodings joining to it (a key that holds ``*`` makes more parts,
        but in the last part, past the splits below, and these, or any other
        form, fail that check or raise).  No
        hiredis, so no array to allocate: no :func:`_may_allocate_big`
        scan of the read, nor a count of its commands.

        It is split at most as many times as the read can hold commands
        (each is the head and at least ``$0\r\n\r\n``): a read of ``*``
        after ``*`` (keys of stars, or hostile bytes) would make a part,
        a key and an encoding per byte, some 280 bytes held per byte
        read and 25 to 80 times the time of the usual way; its last part
        then holds the rest, too long for a key (an IndexError) or not
        one (the check), and the usual way reads it."""
        head = self._script_head
        parts = data.split(b"*", len(data) // (len(head) + 6))  # (one byte: a plain scan, no search)
        if len(parts) < 3:  # (one command: the usual way, as a pipeline of one)
            return None
        del parts[0]  # (empty: the read starts with "*")
        named = head[:-2]
        starts = self._script_starts
        heads = _BULK_HEADS
        join = b"\r\n".join
        try:
            keys = [part[starts[len(part)] : -2] for part in parts]
            raws = [join((named, heads[len(key)], key, b"")) for key in keys]
        except IndexError:  # a part too long for a key's bulk (one too short: the check below)
            return None
        if b"".join(raws) != data:
            return None
        return keys, raws  # (their arguments: ScriptsRead.args)

    def _read_big(self, data: bytes, found: list[Any]) -> None:
        """hiredis read ``data``, longer than :data:`_READER_KEEP`, and
        found the commands ``found`` in it: its reader goes (hiredis keeps
        its buffer's capacity until the next feed, and an idle client must
        not hold on to its largest read), and its long arguments are noted."""
        self._reader = _HiredisReader()
        if len(data) >= PROTO_MBULK_BIG_ARG and _LONG_BULK_HEAD.search(data):
            self._note_big_bulks(found)

    def _fewer_commands(self, count: int) -> list[Any]:
        """The commands hiredis read, when the array of ``count + 1``
        around the read was left incomplete: an argument holds "\\r\\n*"
        (fewer commands than counted), or the read ends inside a command.

        The array is completed with integers, at most ``count`` (as many as
        it can lack if the read is whole commands), which come after the
        commands and are taken off; so the read is parsed once.  A read that
        ends inside a command takes them into that command, or waits for
        more: either way it is not whole commands (the caller's check
        fails, or ``len`` of an integer raises), and the long way reads it."""
        reader = self._reader
        reader.feed(_FILLER * count)  # type: ignore[union-attr]
        found = reader.gets()  # type: ignore[union-attr]
        self._reader = _HiredisReader()  # the integers it did not take
        if type(found) is not list:
            raise ValueError
        del found[found.index(0) :]  # the first integer (a command is a list: never equal)
        return found

    def _note_big_bulks(self, commands: list[Any]) -> None:
        """Note in :attr:`big_bulk` the longest argument of ``commands``
        (their argument lists) of :data:`PROTO_MBULK_BIG_ARG` bytes or more."""
        longest = max((len(a) for args in commands for a in args), default=0)
        if longest >= PROTO_MBULK_BIG_ARG and longest > self.big_bulk:
            self.big_bulk = longest

    def _hold(self, rest: bytes, needle: bytes, too_big: str) -> None:
        """Keep ``rest``, which starts with a line.  If the line is not
        complete, collect what comes until ``needle`` does, rather than join
        and search the whole of it again at each read: a client that sends
        a long line a byte at a time costs linear time, not quadratic."""
        end = rest.find(needle)
        hidden = rest.find(b"\0", 0, end if end >= 0 else len(rest)) >= 0
        if end >= 0 and not hidden:  # complete, or all but the byte after '\r'
            self._buf = rest
            return
        self._buf = b""
        self._chunks = [rest]
        self._have = len(rest)
        self._needle = needle
        self._hidden = hidden  # Redis's strchr stops at the NUL: no line, ever
        self._too_big = too_big


def _redis_line(buf: bytes, pos: int, n: int, too_big: str, out: list[Parsed]) -> int:
    """Where Redis ends the header line at ``pos``: the index of its first
    ``\r``, or -1 while Redis would wait for more data.

    Redis finds it with ``strchr``, which also stops at a NUL byte: a NUL
    before the ``\r`` hides the line.  Raises ``too_big`` where Redis would
    give up on a line that long.
    """
    eol = buf.find(b"\r", pos)
    if eol < 0 or buf.find(b"\0", pos, eol) >= 0:
        if n - pos > PROTO_INLINE_MAX_SIZE:
            raise ProtocolError(too_big, out)
        return -1
    if eol + 1 >= n:
        return -1  # the byte after it (never checked) has not come yet
    if eol - pos > PROTO_INLINE_MAX_SIZE:
        raise ProtocolError(too_big, out)
    return eol


# -- decoding a reply ----------------------------------------------------------


def decode_reply(data: bytes) -> Any:
    """The value of one whole RESP2 or RESP3 reply, as the table above
    names it (a simple string is a ``str``, a null ``None``, a verbatim
    string a :class:`Verbatim`): the inverse of :func:`encode`, for a
    reply the acceptor encoded for a script's call (see
    :mod:`shardkv.worker.scripting`).  :class:`ProtocolError` if ``data``
    is not exactly one reply."""
    try:
        value, pos = _decode_at(data, 0)
    except (ValueError, IndexError, TypeError) as e:
        raise ProtocolError(f"Protocol error: bad reply ({e})") from None
    if pos != len(data):
        raise ProtocolError("Protocol error: trailing bytes after a reply")
    return value


def _decode_at(data: bytes, pos: int) -> tuple[Any, int]:
    eol = data.index(b"\r\n", pos)
    kind = data[pos : pos + 1]
    line = data[pos + 1 : eol]
    pos = eol + 2
    if kind == b"+":
        return line.decode("latin-1"), pos
    if kind == b"-":
        return Error(line.decode("latin-1")), pos
    if kind == b":":
        return int(line), pos
    if kind == b"$" or kind == b"=":
        n = int(line)
        if n < 0:
            return None, pos
        body = data[pos : pos + n]
        if len(body) != n or data[pos + n : pos + n + 2] != b"\r\n":
            raise ValueError("short bulk string")
        if kind == b"=":
            return Verbatim(body[4:], body[:3]), pos + n + 2
        return body, pos + n + 2
    if kind == b"_":
        return None, pos
    if kind == b",":
        return float(line), pos
    if kind == b"#":
        return line == b"t", pos
    if kind in (b"*", b"~", b"%", b">"):
        n = int(line)
        if n < 0:
            return None, pos
        items = []
        for _ in range(2 * n if kind == b"%" else n):
            item, pos = _decode_at(data, pos)
            items.append(item)
        if kind == b"%":
            return dict(zip(items[::2], items[1::2], strict=True)), pos
        if kind == b"~":
            return set(items), pos
        return items, pos
    raise ValueError(f"unknown reply type {kind!r}")


# -- encoding ----------------------------------------------------------------


def format_double(d: float) -> bytes:
    """Format a double as Redis 7.0's ``addReplyDouble`` does (``%.17g``;
    glibc writes a NaN's sign: Lua's 0/0 on x86 is -nan)."""
    if math.isinf(d):
        return b"inf" if d > 0 else b"-inf"
    if d != d:
        return b"-nan" if math.copysign(1.0, d) < 0 else b"nan"
    return b"%.17g" % d


def encode_error(message: str) -> bytes:
    # Redis replaces newlines in error text with spaces.
    if "\r" in message or "\n" in message:
        message = message.replace("\r", " ").replace("\n", " ")
    return b"-%s\r\n" % message.encode("latin-1", "replace")


def encode_command(args: list[bytes]) -> bytes:
    """Encode a command as a RESP array of bulk strings."""
    parts = [b"*%d\r\n" % len(args)]
    for a in args:
        parts.append(b"$%d\r\n%s\r\n" % (len(a), a))
    return b"".join(parts)


_BULK_HEADS = [b"$%d" % n for n in range(1024)]
# A bulk string's first line by its length, below 1024 (a worker's batch
# replies: two concatenations cost less than a bytes % format).
BULK_LINES = [b"$%d\r\n" % n for n in range(1024)]


BIG_ARRAY = 1 << 16  # arrays longer than this are encoded a slice at a time


def encode_bulk_strings(part: list[Any]) -> bytes:
    """The elements of an array of bulk strings, without its header (the
    same in RESP2 and RESP3); TypeError if one is not ``bytes``."""
    lens = [_BULK_HEADS[n] if n < 1024 else b"$%d" % n for n in map(len, part)]
    return b"\r\n".join([*chain.from_iterable(zip(lens, part, strict=True)), b""])


def _encode_big_bulk_array(value: list[Any]) -> bytes | None:
    """A long array of bulk strings (LRANGE 0 -1, KEYS of millions) written
    into one buffer a slice at a time, so that encoding it holds the reply
    once, not a list of pieces three times the array's length; None if an
    element is not a bulk string."""
    out = bytearray(b"*%d\r\n" % len(value))
    for start in range(0, len(value), BIG_ARRAY):
        try:
            out += encode_bulk_strings(value[start : start + BIG_ARRAY])
        except TypeError:
            return None
    return bytes(out)


# A drawn reply grows by at most about this much between two checks of its size.
_DRAW_STEP = 1 << 26


def _draws_per_step(encoded: list[bytes]) -> int:
    return min(BIG_ARRAY, max(1, _DRAW_STEP // max(map(len, encoded))))


def encode_bulk_choices(members: tuple[bytes, ...], k: int, room: int) -> Raw | None:
    """``k`` members drawn at random with replacement (SRANDMEMBER with a
    negative count...), encoded as an array of bulk strings as they are
    drawn: each member is encoded once, and the reply is built a slice at
    a time, never as a list of ``k`` values; None, and nothing kept, if it
    would take more than ``room`` bytes (the caller checked that ``k`` of
    the smallest member fit: see :func:`least_reply`)."""
    import random

    encoded = [b"$%d\r\n%s\r\n" % (len(m), m) for m in members]
    step = _draws_per_step(encoded)
    out = bytearray(b"*%d\r\n" % k)
    for start in range(0, k, step):
        out += b"".join(random.choices(encoded, k=min(step, k - start)))
        if len(out) > room:
            return None
    return Raw(out)  # type: ignore[arg-type]  # a bytearray: joined as it is, never copied here


def least_reply(sizes: Iterable[int], k: int, pairs: bool = False) -> int:
    """A lower bound on the bytes of ``k`` draws among elements of these
    byte lengths: ``k`` times the smallest as a bulk string (``$n``, CRLF,
    the bytes, CRLF), or, for ``pairs`` (a hash's field and value, their
    lengths summed, or a zset's member and its score, the member's
    length), with 12 bytes of RESP around it (two bulk strings, or in RESP3
    a member's 6 or more, a double's 4 or more and the pair's ``*2``)."""
    n = min(sizes)
    return k * (n + (12 if pairs else 5 + len(str(n))))


def _pair_sizes(pairs: tuple[tuple[Any, Any], ...], resp3: bool) -> list[int]:
    """What each pair takes in :meth:`PairChoices.to_resp`, counted, not encoded."""
    head = 4 if resp3 else 0

    def size(value: Any) -> int:
        if type(value) is bytes:
            n = len(value)
            return n + 5 + len(str(n))
        return len(encode(value, resp3))

    return [head + size(a) + size(b) for a, b in pairs]


class PairChoices:
    """``k`` pairs drawn at random with replacement (HRANDFIELD key -count
    WITHVALUES, ZRANDMEMBER key -count WITHSCORES), encoded as they are
    drawn in the client's protocol, as :class:`Pairs` would be (RESP3 nests
    each pair, RESP2 flattens them): each pair is encoded once and the
    reply built a slice at a time, never as a list of ``k`` tuples.

    The handler asks :meth:`fits` whether it fits in ``room`` bytes: when
    ``k`` of the biggest pair could pass it, the draws are made then, from
    a seed kept so that the reply (and a script's :meth:`drawn`) draws the
    same, and their sizes summed; the handler refuses what fits in
    neither protocol, an error counted as any command's.  (One that fits
    in only one, the other's by 4 bytes a pair or less, answers the error
    at encoding: an error the command's counts do not see.)"""

    __slots__ = ("k", "pairs", "room", "seed")

    def __init__(self, pairs: tuple[tuple[Any, Any], ...], k: int, room: int) -> None:
        self.pairs = pairs
        self.k = k
        self.room = room
        self.seed: int | None = None

    def _random(self) -> Any:
        import random

        return random if self.seed is None else random.Random(self.seed)

    def fits(self) -> bool:
        """Whether the draws fit ``room`` bytes in RESP2 or RESP3 (see the class)."""
        import random

        pairs, k, room = self.pairs, self.k, self.room
        sizes2 = _pair_sizes(pairs, False)
        sizes3 = _pair_sizes(pairs, True)
        total2 = len(b"*%d\r\n" % (2 * k))
        total3 = len(b"*%d\r\n" % k)
        if total2 + k * max(max(sizes2), max(sizes3)) <= room:
            return True  # whatever is drawn
        self.seed = random.getrandbits(64)
        draw = random.Random(self.seed).choices  # the same draws as to_resp's (one random() each)
        indexes = range(len(pairs))
        size2, size3 = sizes2.__getitem__, sizes3.__getitem__
        step = min(BIG_ARRAY, max(1, _DRAW_STEP // max(sizes3)))
        for start in range(0, k, step):
            picks = draw(indexes, k=min(step, k - start))
            total2 += sum(map(size2, picks))
            total3 += sum(map(size3, picks))
            if total2 > room and total3 > room:
                return False
        return True

    def drawn(self) -> Pairs:
        """The ``k`` pairs as a list (a script's reply, converted to Lua)."""
        return Pairs(self._random().choices(self.pairs, k=self.k))

    def to_resp(self, resp3: bool | int) -> bytearray | bytes:
        head = b"*2\r\n" if resp3 else b""
        encoded = [head + encode(a, resp3) + encode(b, resp3) for a, b in self.pairs]
        k = self.k
        step = _draws_per_step(encoded)
        choices = self._random().choices
        out = bytearray(b"*%d\r\n" % (k if resp3 else 2 * k))
        for start in range(0, k, step):
            out += b"".join(choices(encoded, k=min(step, k - start)))
            if len(out) > self.room:
                return encode_error(errors.VALUE_OUT_OF_RANGE)
        return out


def encode(value: Any, resp3: bool | int = False) -> bytes:
    """Encode one reply value (see the module docstring) as RESP bytes.

    ``value`` is Any: the encoder dispatches on ``type(value)``, once, which
    the checker cannot follow (``isinstance`` would cost a call per test)."""
    t = type(value)
    if t is bytes:
        return b"$%d\r\n%s\r\n" % (len(value), value)
    if t is str:
        return b"+%s\r\n" % value.encode()
    if t is int:
        return b":%d\r\n" % value
    if value is None:
        return b"_\r\n" if resp3 else b"$-1\r\n"
    if t is list:
        # The common array, all bulk strings (LRANGE, MGET...), in one join;
        # any other element makes len() or the join raise, and the general
        # path runs instead.
        if len(value) > BIG_ARRAY:
            big = _encode_big_bulk_array(value)
            if big is not None:
                return big
        try:
            heads = [_BULK_HEADS[n] if n < 1024 else b"$%d" % n for n in map(len, value)]
            lines = [b"*%d" % len(heads), *chain.from_iterable(zip(heads, value, strict=True)), b""]
            return b"\r\n".join(lines)
        except TypeError:
            pass
    if t is Raw:
        return value.data  # type: ignore[no-any-return]
    if t is PairChoices:
        return value.to_resp(resp3)  # type: ignore[no-any-return]  # a bytearray, not copied again
    out: list[bytes] = []
    _encode_into(value, resp3, out)
    return b"".join(out)


def _encode_into(value: Any, resp3: bool | int, out: list[bytes]) -> None:
    t = type(value)
    if t is bytes:
        out.append(b"$%d\r\n" % len(value))
        out.append(value)
        out.append(b"\r\n")
    elif t is str:
        out.append(b"+%s\r\n" % value.encode())
    elif t is int:
        out.append(b":%d\r\n" % value)
    elif value is None:
        out.append(b"_\r\n" if resp3 else b"$-1\r\n")
    elif t is list or t is tuple or t is Push:
        if t is Push and resp3:
            out.append(b">%d\r\n" % len(value))
        else:
            out.append(b"*%d\r\n" % len(value))
        for v in value:
            _encode_into(v, resp3, out)
    elif t is Error:
        out.append(encode_error(value.message))
    elif t is float:
        if resp3:
            out.append(b",%s\r\n" % format_double(value))
        else:
            s = format_double(value)
            out.append(b"$%d\r\n%s\r\n" % (len(s), s))
    elif t is dict:
        out.append((b"%%%d\r\n" if resp3 else b"*%d\r\n") % (len(value) * (1 if resp3 else 2)))
        for k, v in value.items():
            _encode_into(k, resp3, out)
            _encode_into(v, resp3, out)
    elif t is set or t is frozenset:
        out.append((b"~%d\r\n" if resp3 else b"*%d\r\n") % len(value))
        for v in value:
            _encode_into(v, resp3, out)
    elif t is bool:
        if resp3:
            out.append(b"#t\r\n" if value else b"#f\r\n")
        else:
            out.append(b":1\r\n" if value else b":0\r\n")
    elif value is NULL_ARRAY:
        out.append(b"_\r\n" if resp3 else b"*-1\r\n")
    elif t is Verbatim:
        if resp3:
            body = value.format + b":" + value.text
            out.append(b"=%d\r\n%s\r\n" % (len(body), body))
        else:
            out.append(b"$%d\r\n%s\r\n" % (len(value.text), value.text))
    elif t is Raw:
        out.append(value.data)
    elif t is KeyedArrays:
        out.append((b"%%%d\r\n" if resp3 else b"*%d\r\n") % len(value))
        for a, b in value:
            if not resp3:
                out.append(b"*2\r\n")
            _encode_into(a, resp3, out)
            _encode_into(b, resp3, out)
    elif t is MapPairs:
        out.append((b"%%%d\r\n" if resp3 else b"*%d\r\n") % (len(value) * (1 if resp3 else 2)))
        for a, b in value:
            _encode_into(a, resp3, out)
            _encode_into(b, resp3, out)
    elif t is HumanDouble:
        text = value.text
        out.append(b",%s\r\n" % text if resp3 else b"$%d\r\n%s\r\n" % (len(text), text))
    elif t is OrderedSet:
        out.append((b"~%d\r\n" if resp3 else b"*%d\r\n") % len(value))
        for v in value:
            _encode_into(v, resp3, out)
    elif t is Pairs:
        if resp3:
            out.append(b"*%d\r\n" % len(value))
            for a, b in value:
                out.append(b"*2\r\n")
                _encode_into(a, resp3, out)
                _encode_into(b, resp3, out)
        else:
            out.append(b"*%d\r\n" % (2 * len(value)))
            for a, b in value:
                _encode_into(a, resp3, out)
                _encode_into(b, resp3, out)
    else:
        # A value that encodes itself by protocol (a Lua script's reply).
        to_resp = getattr(value, "to_resp", None)
        if to_resp is None:
            raise TypeError(f"cannot encode {t.__name__} as RESP")
        out.append(to_resp(resp3))
