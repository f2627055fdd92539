"""Glob patterns: shardkv.glob alone, then KEYS on both servers."""

from __future__ import annotations

import random

import pytest
import redis

from shardkv.glob import glob_match

CASES = [
    # pattern, string, matches
    (b"*", b"anything", True),
    (b"*", b"", False),  # KEYS * treats "*" specially; the matcher does not
    (b"", b"", True),
    (b"", b"a", False),
    (b"h?llo", b"hello", True),
    (b"h?llo", b"hllo", False),
    (b"h*llo", b"hllo", True),
    (b"h*llo", b"heeeello", True),
    (b"h[ae]llo", b"hallo", True),
    (b"h[ae]llo", b"hillo", False),
    (b"h[^e]llo", b"hallo", True),
    (b"h[^e]llo", b"hello", False),
    (b"h[a-b]llo", b"hbllo", True),
    (b"h[b-a]llo", b"hbllo", True),  # a backwards range
    (b"h\\*llo", b"h*llo", True),
    (b"h\\*llo", b"hello", False),
    (b"[]", b"]", False),  # an empty class matches nothing
    (b"[^]", b"x", True),
    (b"[abc", b"a", True),  # an unclosed class takes the rest
    (b"[abc", b"abc", False),
    (b"[a-]x", b"]x", False),  # "a-]" is a range that swallows the "]"
    (b"[a-]x]", b"b]", False),
    (b"[a-]x]", b"]", True),
    (b"a\\", b"a\\", True),  # a trailing backslash is literal
    (b"[\\]]", b"]", True),
    (b"[\\", b"\\", True),
    (b"[a-\xff]", b"\xff", True),  # C's signed char: \xff is -1, below "a"
    (b"[a-\xff]", b"b", False),
    (b"[a-\xff]", b"\x00", True),
    (b"**a", b"ba", True),
    (b"a*", b"a", True),
    (b"*a*b", b"xaxb", True),
    (b"?", b"\n", True),
    (b"\\?", b"?", True),
    (b"\\?", b"a", False),
]


@pytest.mark.parametrize("pattern,string,expected", CASES)
def test_glob_match(pattern, string, expected):
    assert glob_match(pattern, string) is expected


def test_glob_nocase():
    assert glob_match(b"HZ", b"hz", nocase=True)
    assert glob_match(b"[A-C]x", b"bX", nocase=True)
    assert not glob_match(b"HZ", b"hz")


ALPHABET = b"ab-]^[\\*?AZz\x80\xff\x00 "
RND = random.Random(11)
KEYS = sorted({bytes(RND.choice(ALPHABET) for _ in range(RND.randint(0, 4))) for _ in range(250)})
PATTERNS = sorted(
    {bytes(RND.choice(ALPHABET + b"[[**") for _ in range(RND.randint(0, 6))) for _ in range(300)}
)


@pytest.fixture(scope="module")
def loaded(ports):
    """Both servers holding the same odd keys (binary, empty, glob characters)."""
    clients = [redis.Redis(port=ports[name]) for name in ("redis", "shardkv")]
    for c in clients:
        c.flushall()
        c.mset({k: b"1" for k in KEYS})
    yield clients
    for c in clients:
        c.flushall()
        c.close()


def test_keys_patterns_against_redis(loaded):
    real, ours = loaded
    for pattern in PATTERNS:
        expected = sorted(real.keys(pattern))
        assert sorted(ours.keys(pattern)) == expected, pattern
        # The matcher alone agrees too (KEYS "*" is special-cased by KEYS).
        if pattern != b"*":
            assert sorted(k for k in KEYS if glob_match(pattern, k)) == expected, pattern


def test_scan_match_against_redis(loaded):
    real, ours = loaded
    for pattern in PATTERNS[::10]:
        assert sorted(ours.scan_iter(match=pattern, count=50)) == sorted(real.keys(pattern)), pattern
