"""Reads of GET-, SET- or EVALSHA-shaped commands alone but for one odd one.

The acceptor's parser encodes a read whose commands all have one shape
(GET's, SET's, EVALSHA's of one key) in one go, and checks the encoding against the read's
bytes (what proves the read was canonical RESP); a read with one command
of another form, however slight the difference, must be read as Redis
reads it.  :func:`odd_read` makes such reads, from a seed, for the parser's
tests (tests/unit/test_resp_alike.py) and the differential tests against
redis-server (tests/compat/test_pipeline_alike.py).
"""

from __future__ import annotations

import random

from tests.support.resp import encode_command


def _bulk(value: bytes) -> bytes:
    return b"$%d\r\n%s\r\n" % (len(value), value)


def _odd(rng: random.Random, shape: str, key: bytes) -> bytes:
    """One command (or several, or none: ``*0``) unlike the others."""
    value = b"v" * rng.choice([0, 1, 1023, 1024, 1025])
    kinds = [
        lambda: b"*2\r\n$3\r\nGET\r\n$%d\r\n%sXY" % (len(key), key),  # the bytes after a bulk
        lambda: b"*3\r\n$3\r\nSET\r\n$%d\r\n%s\r\n$1\r\nv\n\n" % (len(key), key),
        lambda: b"GET %s\r\n" % key,  # inline
        lambda: b"SET %s inline\n" % key,
        lambda: b"*2\r\n$3\r\nGET\r\n+" + key + b"\r\n",  # not a bulk
        lambda: b"*2\r\n$3\r\nGET\r\n:1\r\n",
        lambda: b"*3\r\n$3\r\nSET\r\n$%d\r\n%s\r\n:1\r\n" % (len(key), key),
        lambda: b"*2\r\n$3\r\nGET\r\n*1\r\n" + _bulk(key),  # nested
        lambda: b"*2\r\n$3\r\nGET\r\n$-1\r\n",  # null bulk
        lambda: b"*3\r\n$3\r\nSET\r\n" + _bulk(key) + b"$-1\r\n",
        lambda: b"*2\r\n$3\r\nGET\r\n$-3\r\nabc\r\n",
        lambda: b"*2\r\n$3\r\nGET\r\n$0%d\r\n%s\r\n" % (len(key), key),  # leading zero
        lambda: b"*2\r\n$3\r\nGET\r\n$+%d\r\n%s\r\n" % (len(key), key),
        lambda: b"*02\r\n$3\r\nGET\r\n" + _bulk(key),
        lambda: b"*+2\r\n$3\r\nGET\r\n" + _bulk(key),
        lambda: b"*-2\r\n",
        lambda: b"*0\r\n",
        lambda: b"*-1\r\n",
        lambda: b"*0\r\n*-1\r\n*0\r\n",
        lambda: encode_command(rng.choice([b"get", b"Get", b"gEt"]), key),
        lambda: encode_command(rng.choice([b"set", b"SeT", b"sET"]), key, value),
        lambda: encode_command(b"SET", key, value, b"EX", b"100"),
        lambda: encode_command(b"SET", key, value, b"PX", b"100000"),
        lambda: encode_command(b"SET", key, value, b"NX"),
        lambda: encode_command(b"SET", key, value, b"KEEPTTL"),
        lambda: encode_command(b"SET", key, value, b"GET"),
        lambda: encode_command(b"SET", key, value, b"XX", b"GET"),
        lambda: encode_command(b"GET", key, b"extra"),
        lambda: encode_command(b"GET"),
        lambda: encode_command(b"SET", key),
        lambda: encode_command(b"GET", b""),  # empty key
        lambda: encode_command(b"SET", b"", value),
        lambda: encode_command(b"GET", key + b"\r\n*2\r\n$3\r\nGET"),
        lambda: encode_command(b"SET", key + b"\r\n", b"\r\n$3\r\n"),
        lambda: encode_command(b"GET", b"k" * rng.choice([1023, 1024, 1025])),  # the long-argument flip
        lambda: encode_command(b"SET", key, b"w" * rng.choice([1023, 1024, 1025])),
        lambda: b"*2\r\n$3\r\nGET\r\n$x\r\n",  # protocol errors: Redis answers what came before, then closes
        lambda: b"*2\r\n$3\r\nGET\r\n%1\r\n",
        lambda: b"*x\r\n",
        lambda: b'GET "unbalanced\r\n',
        lambda: b"*1\r\n$3\r\nGET\r\n",
        lambda: b"*4\r\n$3\r\nSET\r\n" + _bulk(key) + _bulk(value) + _bulk(b"NX"),
    ]
    return rng.choice(kinds)()


# More odd ones for a read of EVALSHA-shaped commands (4 or 5 arguments).
_SHA = b"e0e1f9fabfc9d4800c877a703b823ac0578ff8db"
_ODD_EVALSHA = [
    lambda key: b"*4\r\n$7\r\nEVALSHA\r\n$40\r\n%s\r\n$01\r\n1\r\n" % _SHA + _bulk(key),  # leading zero
    lambda key: b"*4\r\n$7\r\nEVALSHA\r\n" + _bulk(_SHA) + b"$1\r\n1\r\n$-1\r\n",  # null bulk
    lambda key: b"*4\r\n$7\r\nEVALSHA\r\n" + _bulk(_SHA) + b":1\r\n" + _bulk(key),  # not a bulk
    lambda key: b"*5\r\n$7\r\nEVALSHA\r\n" + _bulk(_SHA) + b"$1\r\n1\r\n" + _bulk(key) + b"*0\r\n",  # nested
    lambda key: encode_command(b"EVALSHA", _SHA, b"1", key + b"\r\n*4\r\n$7\r\nEVALSHA"),
    lambda key: encode_command(b"EVALSHA", _SHA, b"1", b"k" * 1024),  # the long-argument flip
    lambda key: encode_command(b"EVALSHA", _SHA, b"1", key, b"t" * 1024),
    lambda key: encode_command(b"EVALSHA", _SHA, b"2", key, key),
    lambda key: encode_command(b"EVALSHA", _SHA, b"1", key, b"a", b"b"),
]


def odd_read(
    seed: int, prefix: bytes = b"", shapes: tuple[str, ...] = ("GET", "SET")
) -> tuple[list[bytes], bytes]:
    """The commands of one read (of one of ``shapes``, GET's, SET's, or
    EVALSHA's of one key with no argument or one (``EVALSHA``,
    ``EVALSHA1``), alone but for one odd command at a random place) and the
    read's bytes."""
    rng = random.Random(seed)
    shape = rng.choice(shapes)
    count = rng.randint(1, 24)
    keys = [
        prefix + rng.choice([b"k%d" % i, b"{t}%d" % i, b"\x00\xff\r\n%d" % i, b"k" * rng.choice([1, 1023])])
        for i in range(count)
    ]
    if shape == "GET":
        commands = [encode_command(b"GET", k) for k in keys]
    elif shape == "SET":
        commands = [encode_command(b"SET", k, b"x" * rng.choice([0, 1, 5, 1022, 1023])) for k in keys]
    elif shape == "EVALSHA":
        commands = [encode_command(b"EVALSHA", _SHA, b"1", k) for k in keys]
    else:
        commands = [encode_command(b"EVALSHA", _SHA, b"1", k, b"x" * rng.choice([0, 1, 1023])) for k in keys]
    if shape.startswith("EVALSHA") and rng.random() < 0.5:
        odd = rng.choice(_ODD_EVALSHA)(prefix + b"odd")
    else:
        odd = _odd(rng, shape, prefix + b"odd")
    commands.insert(rng.randint(0, count), odd)
    return commands, b"".join(commands)
