"""Glob patterns: shardkv.protocol.glob alone, then KEYS on both servers."""

from __future__ import annotations

import gc
import random
import sys
import weakref

import pytest
import redis
from hypothesis import given, settings
from hypothesis import strategies as st

from shardkv.protocol import glob
from shardkv.protocol.glob import MAX_NESTING, compile_glob, glob_match, may_start_with

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
    # a pattern with no class is matched with bytes.find: each middle segment
    # at its leftmost place, the tail kept apart (redis-server 7.0.15 agrees)
    (b"*ab*ab", b"abab", True),
    (b"*ab*ab", b"ab", False),
    (b"*ab*ab", b"aabab", True),
    (b"*\n*", b"a\nb", True),
    (b"a*b?c", b"ab\nc", True),  # "?" is any byte, a newline too
    (b"?*?", b"\n\n", True),
]


@pytest.mark.parametrize("pattern,string,expected", CASES)
def test_glob_match(pattern, string, expected):
    assert glob_match(pattern, string) is expected


def test_glob_nocase():
    assert glob_match(b"HZ", b"hz", nocase=True)
    assert glob_match(b"[A-C]x", b"bX", nocase=True)
    assert not glob_match(b"HZ", b"hz")
    assert not glob_match(b"[\\A]", b"a", nocase=True)  # escaped in a class: exact
    assert glob_match(b"\\A", b"a", nocase=True)  # escaped outside: not
    assert not glob_match(b"[Z-a]", b"z", nocase=True)  # ends lowered after ordering


def _lower(c: int) -> int:
    return c + 32 if 65 <= c <= 90 else c


def _signed(c: int) -> int:
    return c - 256 if c > 127 else c


def reference(pattern: bytes, string: bytes, nocase: bool = False) -> bool:
    """Redis 7's ``stringmatchlen`` transcribed step by step: recursion at
    each star, the skip-longer-matches rule and the nesting limit, reading
    the pattern afresh at every byte.  Exponential at worst; for tests."""
    skip = [False]
    end = len(pattern)

    def at(i: int) -> int:  # C reads the pattern's terminating NUL past its end
        return pattern[i] if i < end else 0

    def impl(p: int, s: int, nesting: int) -> bool:
        if nesting > MAX_NESTING:
            return False
        while p < end and s < len(string):
            c = pattern[p]
            if c == 42:  # '*'
                while p < end and at(p + 1) == 42:
                    p += 1
                if end - p == 1:
                    return True
                while s < len(string):
                    if impl(p + 1, s, nesting + 1):
                        return True
                    if skip[0]:
                        return False
                    s += 1
                skip[0] = True
                return False
            if c == 63:  # '?'
                s += 1
            elif c == 91:  # '['
                p += 1
                negate = at(p) == 94
                if negate:
                    p += 1
                matched = False
                x = string[s]
                while True:
                    if at(p) == 92 and end - p >= 2:
                        p += 1
                        matched |= pattern[p] == x
                    elif at(p) == 93:
                        break
                    elif end - p == 0:
                        p -= 1
                        break
                    elif end - p >= 3 and pattern[p + 1] == 45:
                        lo, hi, y = _signed(pattern[p]), _signed(pattern[p + 2]), _signed(x)
                        if lo > hi:
                            lo, hi = hi, lo
                        if nocase:
                            lo, hi, y = _lower(lo), _lower(hi), _lower(y)
                        p += 2
                        matched |= lo <= y <= hi
                    elif nocase:
                        matched |= _lower(pattern[p]) == _lower(x)
                    else:
                        matched |= pattern[p] == x
                    p += 1
                if negate:
                    matched = not matched
                if not matched:
                    return False
                s += 1
            else:
                if c == 92 and end - p >= 2:
                    p += 1
                    c = pattern[p]
                x = string[s]
                if (_lower(c) != _lower(x)) if nocase else (c != x):
                    return False
                s += 1
            p += 1
            if s == len(string):
                while at(p) == 42:
                    p += 1
                break
        return p >= end and s == len(string)

    return impl(0, 0, 0)


@pytest.mark.parametrize("pattern,string,expected", CASES)
def test_reference_agrees_with_cases(pattern, string, expected):
    assert reference(pattern, string) is expected


GLOB_BYTES = st.sampled_from(b"aAbBzZ-]^[\\*?\x80\xff\x00")
STRING_BYTES = st.sampled_from(b"aAbBzZ-]^[\\*?\x80\xff\x00")


@pytest.mark.slow
@settings(max_examples=1000, deadline=None)
@given(
    st.lists(GLOB_BYTES, max_size=10).map(bytes),
    st.lists(st.lists(STRING_BYTES, max_size=7).map(bytes), min_size=1, max_size=8),
    st.booleans(),
)
def test_matcher_equals_reference(pattern, strings, nocase):
    for s in strings:
        assert glob_match(pattern, s, nocase) is reference(pattern, s, nocase), (pattern, s, nocase)


@pytest.mark.parametrize(
    "pattern,expected",
    [
        (b"__keyspace@0__:*", True),
        (b"__key*", True),
        (b"*", True),
        (b"__keyspace@*", True),
        (b"__keys[ap]ace@", True),
        (b"__key?pace@1__:k", True),
        (b"__keyevent@*", False),
        (b"__keyspace", False),  # ends within the prefix
        (b"news", False),
        (b"[^_]*", False),
        (b"__keyspace\\@*", True),  # an escaped "@"
        (b"__keyspace\\\\@*", False),  # an escaped backslash, then "@"
    ],
)
def test_may_start_with(pattern, expected):
    """Which patterns may hear keyspace notifications' channels."""
    assert may_start_with(pattern, b"__keyspace@") is expected


@pytest.mark.slow  # a long Hypothesis run: 700 examples
@settings(max_examples=700, deadline=None)
@given(
    st.lists(GLOB_BYTES, max_size=8).map(bytes),
    st.lists(STRING_BYTES, max_size=3).map(bytes),
    st.lists(STRING_BYTES, max_size=4).map(bytes),
)
def test_may_start_with_never_misses_a_match(pattern, prefix, rest):
    """An over-estimate: a pattern that matches a string starting with
    ``prefix`` is always said to be able to."""
    if glob_match(pattern, prefix + rest):
        assert may_start_with(pattern, prefix), (pattern, prefix, rest)


def test_nesting_limit():
    """CVE-2024-31228: more than 1000 nested stars match nothing; a last
    star costs no level."""
    many = b"a*" * MAX_NESTING + b"a"  # 1000 non-final stars
    cases = [
        (many, True),
        (b"a*" + many, False),
        (many + b"*", True),
        (b"a*" + many + b"*", False),
        (many[:-1], True),  # the last star is final
        (b"a*" + many[:-1], True),
    ]
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(limit + 3 * MAX_NESTING)  # for the reference
    try:
        for pattern, expected in cases:
            assert glob_match(pattern, b"a" * 1100) is expected
            assert reference(pattern, b"a" * 1100) is expected
    finally:
        sys.setrecursionlimit(limit)


PATHOLOGICAL = [
    # Redis's keyspace unit: "Regression for pattern matching long nested loops"
    (b"a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*b", b"a" * 60),
    # Redis 7.2's "Regression for pattern matching very long nested loops"
    # (CVE-2024-31228): past the nesting limit, nothing matches
    (b"*?" * 50000, b"a" * 50000),
    (b"*?" * 13 + b"!", b"a" * 60),
    (b"*a" * 500 + b"b", b"a" * 10000),
    (b"[a-z]*" * 300 + b"!", b"q" * 10000),
]


@pytest.mark.parametrize("pattern,string", PATHOLOGICAL, ids=range(len(PATHOLOGICAL)))
def test_pathological_patterns_are_cheap(pattern, string):
    """Each would backtrack for ever as a regular expression; here it
    answers (a hang would show as the test never finishing)."""
    assert not glob_match(pattern, string)
    if pattern.count(b"*") <= MAX_NESTING:
        assert glob_match(pattern[:-1] + b"*", string)


# Patterns of megabytes, as a hostile client may send (PSUBSCRIBE, KEYS):
# each class range once cost a pass over the 256 bytes, and each pattern
# byte some microseconds of a regular expression's compilation, whether or
# not any string could match: seconds to minutes for these.
HUGE = [
    (b"[" + b"a-b" * 1_000_000 + b"]", b"b"),  # one class of a million ranges
    (b"[a-b]" * 400_000 + b"*", None),
    (b"x" * 3_000_000 + b"*", None),
    (b"\\x" * 1_000_000, None),
    (b"[" * 3_000_000, b"["),  # one class of three million plain bytes
]


@pytest.mark.parametrize("pattern,string", HUGE, ids=range(len(HUGE)))
def test_huge_patterns_cost_what_their_bytes_do(pattern, string):
    """A string too short to match is refused at once, as Redis refuses it
    (a long enough one compiles the pattern, once: not tried here)."""
    for nocase in (False, True):
        assert not glob_match(pattern, b"short", nocase)
        if string is not None:
            assert glob_match(pattern, string, nocase)
            assert not glob_match(pattern, b"!" + string[1:], nocase)


def test_plain_patterns_need_no_regular_expression(monkeypatch):
    """A pattern of plain bytes and stars is matched with bytes.find: the
    regular expression of a plain run of megabytes took seconds to compile
    for the first long enough string (PUBLISH of a long channel)."""
    from shardkv.protocol import glob

    def refuse(*args, **kwargs):
        raise AssertionError("compiled a regular expression")

    monkeypatch.setattr(glob.re, "compile", refuse)
    big = b"x" * 100_000
    cases = [
        (big, big, False, True),
        (big + b"*", big + b"y", False, True),
        (b"*" + big, b"y" + big, False, True),
        (b"a*" + big + b"*b", b"a" + big + b"b", False, True),
        (b"a*bc*bc", b"abc", False, False),  # the middle and tail may not overlap
        (b"a*bc*d", b"aXbCyD", True, True),
        (b"A\\*b", b"a*B", True, True),
        (b"\xff\x00*\\", b"\xff\x00\\", False, True),
    ]
    for pattern, string, nocase, expected in cases:
        assert glob_match(pattern, string, nocase) is expected, pattern[:20]


def test_repeated_classes_written_once(monkeypatch):
    """A class repeated in a row is compiled as one class with a count."""
    from shardkv.protocol import glob

    sizes: list[int] = []
    compile_ = glob.re.compile

    def record(rx, *args):
        sizes.append(len(rx))
        return compile_(rx, *args)

    monkeypatch.setattr(glob.re, "compile", record)
    assert glob_match(b"[a-b]" * 100_000 + b"*", b"ab" * 50_000 + b"c")
    assert glob_match(b"?" * 100_000, b"q" * 100_000)
    assert not glob_match(b"?" * 100_000 + b"x", b"q" * 100_001)
    assert max(sizes) < 1000


@pytest.fixture
def vector(monkeypatch):
    """Every pattern with a class matched with numpy arrays (_Vector), as
    a pattern of many nodes, or a long string, is."""
    monkeypatch.setattr(glob, "REGEX_NODES", -1)
    monkeypatch.setattr(glob._Vector, "_SMALL", -1)  # no segment's own regex either
    monkeypatch.setattr(glob, "_CACHE", glob._Cache())


@pytest.mark.parametrize("pattern,string,expected", CASES)
def test_vector_matcher_cases(vector, pattern, string, expected):
    assert glob_match(pattern, string) is expected


# _Vector's windows, sparse and dense thresholds, blocks, first chunks and
# small segments: a block at a time from one place on; every place at once;
# between; small middle segments with a regular expression each
VECTOR_WAYS = [
    (1, 8, 10**9, 1, (1, 2), -1),
    (10**9, 1, 0, 3, (64, 4096), -1),
    (64, 8, 4096, 1 << 20, (2,), -1),
    (2, 2, 1, 2, (1,), -1),
    (64, 8, 4096, 1 << 20, (64, 4096), 16),
]
TOKENS = [
    b"*",
    b"*",
    b"?",
    b"a",
    b"b",
    b"[ab]",
    b"[^a]",
    b"[a-b]",
    b"A",
    b"\\*",
    b"[",
    b"]",
    b"-",
    b"\\",
    b"[b-",
    b"[^",
]


@pytest.mark.slow
@settings(max_examples=700, deadline=None)
@given(
    st.lists(st.sampled_from(TOKENS), min_size=1, max_size=9).map(b"".join),
    st.lists(st.lists(st.sampled_from(b"aabbAB*-]"), max_size=25).map(bytes), min_size=1, max_size=8),
    st.booleans(),
)
def test_vector_matcher_equals_reference(pattern, strings, nocase):
    """The numpy matcher, its middle segments looked for in every way it
    has (at every place at once, then a block of places at a time)."""
    for ways in VECTOR_WAYS:
        with pytest.MonkeyPatch.context() as m:
            m.setattr(glob, "REGEX_NODES", -1)
            for name, value in zip(
                ("_WINDOW", "_SPARSE", "_DENSE", "_BLOCK", "_CHUNKS", "_SMALL"), ways, strict=True
            ):
                m.setattr(glob._Vector, name, value)
            match = glob._compile(pattern, nocase)
            for s in strings:
                assert match(s) is reference(pattern, s, nocase), (pattern, s, nocase, ways)


@pytest.mark.slow
@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.tuples(st.sampled_from(TOKENS[:11] + [b"c", b"[bc]"]), st.sampled_from([1, 3, 50, 400])),
        max_size=7,
    ),
    st.lists(
        st.tuples(st.binary(min_size=1, max_size=5), st.integers(1, 3000), st.integers(0, 6000)), max_size=4
    ),
    st.booleans(),
)
def test_long_strings_vector_equals_regex(tokens, strings, nocase):
    """Long strings (and repeated tokens): the numpy matcher answers as the
    regular expressions do."""
    pattern = b"".join(t * n for t, n in tokens)
    with pytest.MonkeyPatch.context() as m:
        m.setattr(glob, "REGEX_NODES", 10**9)
        m.setattr(glob, "LONG_STRING", 10**9)
        regex = glob._compile(pattern, nocase)
        m.setattr(glob, "REGEX_NODES", -1)
        vector = glob._compile(pattern, nocase)
    for unit, times, size in strings:
        s = (unit * times)[:size]
        assert vector(s) is regex(s), (pattern[:50], s[:50], nocase)


def test_small_middle_segments_of_a_large_pattern(monkeypatch):
    """A pattern of many nodes in small middle segments (700 ``*[ab]cd``):
    each is looked for with a regular expression of its own, not with numpy
    arrays, which cost tens of microseconds a segment a string (0.1 s for
    each key of 4 KiB in KEYS, where a regular expression took 10 us)."""

    def no_numpy(*args):
        raise AssertionError("a small middle segment searched with numpy arrays")

    monkeypatch.setattr(glob._Vector, "_find", no_numpy)
    match = glob._compile(b"*[ab]cd" * 700 + b"*", False)
    assert match(b"acd" * 1400)
    assert match(b"x" + b"bcd" * 700 + b"x")
    assert not match(b"acd" * 699 + b"acx" + b"cd" * 10)
    assert not match(b"bcd" * 699 + b"x" * 10_000)
    wide = glob._compile(b"*[ab]cd" * 700 + b"*" + b"[ab]c" * 10 + b"*", False)
    with pytest.raises(AssertionError, match="numpy"):  # a segment of 20 nodes: numpy
        wide(b"acd" * 700 + b"ac" * 10)
    wide = glob._compile(b"*[ab]cd" * 700 + b"*" + b"[ab]" * 65 + b"c*", False)
    with pytest.raises(AssertionError, match="numpy"):  # 2 nodes, 66 wide: numpy
        wide(b"acd" * 700 + b"a" * 65 + b"c")


CLASS_PIECES = [
    b"a-b",
    b"b-a",
    b"a-b",
    b"z-",
    b"-",
    b"--a",
    b"]",
    b"\\]",
    b"\\",
    b"^",
    b"a",
    b"\xff-a",
    b"A-b",
]


@settings(max_examples=100, deadline=None)
@given(st.lists(st.sampled_from(CLASS_PIECES), max_size=40).map(b"".join), st.booleans())
def test_long_classes_equal_reference(body, nocase):
    """Classes of many ranges in a row (read a chunk at a time) hold the
    bytes stringmatchlen's class holds, every one of the 256."""
    for pattern in (b"[" + body, b"[" + body + b"]", b"[^" + body + b"]?"):
        match = glob._compile(pattern, nocase)
        for c in range(256):
            s = bytes([c]) + b"a" * pattern.endswith(b"?")
            assert match(s) is reference(pattern, s, nocase), (pattern, s, nocase)


def test_ranges_in_a_row_read_once_each(monkeypatch):
    """A class of two million ranges computes each distinct range once."""
    calls = []
    range_ = glob._range

    def counted(*args):
        calls.append(args)
        return range_(*args)

    monkeypatch.setattr(glob, "_range", counted)
    assert glob._parse(b"[" + b"a-bz-y" * 1_000_000 + b"c-d]") == [glob._mask(b"abcdyz")]
    assert len(calls) == 3


MB = 1 << 18  # benchmarks/globhuge.py times these at 4 times the size
# Large patterns (a client may send 512 MB) against large strings: before
# numpy arrays, each cost seconds to minutes (per megabyte) to compile into
# a regular expression, or to search, with every other client waiting.
HOSTILE = [
    (b"a?" * (MB // 2) + b"*", b"a" * MB, True),
    (b"a?" * (MB // 4) + b"*" + b"a?" * (MB // 4), b"ab" * (MB // 2), True),
    (b"*" + b"a?" * (MB // 4) + b"b*", b"a" * MB, False),  # a middle segment
    (b"*" + b"a?" * (MB // 4) + b"b*", b"a" * (MB - 1) + b"b", True),
    (b"[ab]c" * (MB // 5) + b"*", b"ac" * (MB // 2), True),
    (b"*[ab][cd]" * 500 + b"*", b"ac" * (MB // 2), True),
    (b"*" + b"[ab]" * 999 + b"c*", b"a" * MB, False),
    (b"[a-z]\\?" * (MB // 7) + b"*", b"q?" * (MB // 2), True),
    (b"*?" * (MB // 2), b"a" * MB, False),  # past the nesting limit
    (b"[" * MB, b"[", True),
    (b"[^" * (MB // 2) + b"]", b"a", True),
]


@pytest.mark.parametrize("pattern,string,expected", HOSTILE, ids=range(len(HOSTILE)))
def test_hostile_large_patterns(pattern, string, expected, monkeypatch):
    """No regular expression of megabytes is compiled, nor searched, for a
    large pattern: the arrays answer (this finishes in seconds)."""
    compile_ = glob.re.compile

    def small_only(rx, *args):
        assert len(rx) < 100_000, "compiled a regular expression of megabytes"
        return compile_(rx, *args)

    monkeypatch.setattr(glob.re, "compile", small_only)
    for nocase in (False, True):
        match = compile_glob(pattern, nocase)
        assert match(string) is expected
        assert not match(b"short")


def test_large_patterns_are_not_kept():
    """The compiled patterns kept are bounded by bytes, not only by count:
    a large pattern is compiled anew each time, and many middling ones
    push each other out."""
    large = compile_glob(b"[ab]" * 100_000 + b"*")
    ref = weakref.ref(large)
    del large
    gc.collect()
    assert ref() is None
    refs = [weakref.ref(compile_glob(b"%04d[ab]" % i + b"x" * 4000)) for i in range(500)]
    gc.collect()
    kept = sum(r() is not None for r in refs)
    assert 0 < kept <= 100


def test_hostile_patterns_against_redis(ports):
    """KEYS, SCAN MATCH and PSUBSCRIBE with PUBLISH answer as redis-server
    7.0.15 does for large patterns and for nesting past the limit."""
    clients = [redis.Redis(port=ports[name]) for name in ("redis", "shardkv")]
    half = 1 << 16
    keys = [b"a" * half, b"ab" * (half // 2), b"a" * (half - 1) + b"b", b"q?" * (half // 2), b"a" * 1100]
    keys += [b"[", b"^", b"b"]
    # (no middle segment that fails late in a long string: redis-server
    # takes minutes there, trying every place to the segment's end)
    patterns = [
        b"a?" * (half // 2) + b"*",
        b"a?" * (half // 2),
        b"*b" + b"a?" * (half // 4) + b"*",
        b"[ab]" * (half // 2) + b"*",
        b"*[ab][b]" * 300 + b"*",
        b"[a-z]\\?" * (half // 8) + b"*",
        b"[a-\\?" * 1000,
        b"[" * half,
        b"a*" * MAX_NESTING + b"a",  # 1000 nested stars: matches
        b"a*" * (MAX_NESTING + 1) + b"a",  # 1001: matches nothing
        b"*a" * MAX_NESTING,
        b"*a" * (MAX_NESTING + 1),
        b"*a" * (MAX_NESTING + 1) + b"*",
    ]
    try:
        for c in clients:
            c.flushall()
            c.mset({k: b"1" for k in keys})
        for pattern in patterns:
            real, ours = (sorted(c.keys(pattern)) for c in clients)
            assert ours == real, (pattern[:20], len(pattern))
            assert sorted(clients[1].scan_iter(match=pattern, count=1000)) == real, pattern[:20]
            heard = []
            for c in clients:
                p = c.pubsub()
                p.psubscribe(pattern)
                assert p.get_message(timeout=30)["type"] == "psubscribe"
                heard.append([c.publish(k, b"m") for k in keys])
                p.close()
            assert heard[1] == heard[0], pattern[:20]
    finally:
        for c in clients:
            c.flushall()
            c.close()


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


def test_pathological_keys_and_scan_against_redis(r):
    """KEYS and every SCAN MATCH with a pattern that backtracks without end
    in a regular expression (CVE-2022-36021) answer at once, as Redis."""
    pattern = b"a*" * 20 + b"b"
    r.set(b"a" * 60, 1)
    r.hset("h", b"a" * 60, 1)
    r.sadd("s", b"a" * 60)
    r.zadd("z", {b"a" * 60: 1})
    assert r.keys(pattern) == []
    assert list(r.scan_iter(match=pattern)) == []
    assert list(r.hscan_iter("h", match=pattern)) == []
    assert list(r.sscan_iter("s", match=pattern)) == []
    assert list(r.zscan_iter("z", match=pattern)) == []
    assert r.keys(b"a*" * 20) == [b"a" * 60]
    assert r.execute_command("CONFIG", "GET", "*?" * 13 + "!") in ([], {})


def test_pathological_psubscribe_against_redis(r):
    """A pattern subscription that would backtrack without end does not
    stall PUBLISH, nor the other clients."""
    p = r.pubsub()
    p.psubscribe(b"a*" * 20 + b"b", b"a*")
    for _ in range(2):
        p.get_message(timeout=5)
    assert r.publish(b"a" * 60, b"m") == 1
    assert r.execute_command("PUBSUB", "NUMPAT") == 2
    assert r.ping()
    assert r.pubsub_channels(b"a*" * 20 + b"b") == []
    p.close()


def test_huge_hostile_pattern_against_redis(r):
    """PSUBSCRIBE, PUBLISH, PUBSUB CHANNELS, KEYS and SCAN MATCH with a 6 MB
    pattern of a million class ranges answer as Redis answers, and before
    the client's 30 s timeout (reading the pattern once took the acceptor,
    and each shard, close to a minute, every other client waiting)."""
    pattern = b"[" + b"a-b" * 2_000_000 + b"]*"
    r.set("bee", 1)
    p = r.pubsub()
    p.psubscribe(pattern)
    assert p.get_message(timeout=30)["type"] == "psubscribe"
    assert r.publish("bee", "m") == 1
    assert r.publish("zed", "m") == 0
    assert r.pubsub_channels(pattern) == []
    assert r.keys(pattern) == [b"bee"]
    assert list(r.scan_iter(match=pattern)) == [b"bee"]
    assert r.ping()
    p.close()


def test_command_list_filterby_pattern_ignores_case(r):
    """COMMAND LIST FILTERBY PATTERN matches without case, except a byte
    escaped inside a class (stringmatchlen's nocase rules)."""
    getters = [b"get", b"getbit", b"getdel", b"getex", b"getrange", b"getset"]
    cases = {"GET*": getters, "g?T": [b"get"], "[\\G]et": [], "[\\g]ET": [b"get"]}
    cases |= {"\\GET": [b"get"], "[F-H]ET": [b"get"], "[^A-F]ET": [b"get", b"set"]}
    for pattern, expected in cases.items():
        assert sorted(r.command_list(pattern=pattern)) == expected, pattern


PIECE = glob._PIECE
# Patterns read a piece at a time (_pieces): escapes, "?" runs and plain
# runs that straddle a piece's end, against the step-by-step reference.
STRADDLING = [
    (b"a" * (PIECE - 1) + b"\\*x", [b"a" * (PIECE - 1) + b"*x", b"a" * (PIECE - 1) + b"\\*x"]),
    (b"a" * (PIECE - 2) + b"\\\\\\*", [b"a" * (PIECE - 2) + b"\\*", b"a" * (PIECE - 2) + b"\\\\*"]),
    (b"\\a" * PIECE + b"\\", [b"a" * PIECE + b"\\", b"a" * PIECE]),
    (b"?" * (PIECE + 3) + b"\\?", [b"b" * (PIECE + 3) + b"?", b"b" * (PIECE + 4)]),
    (b"x" * (PIECE + 1) + b"[" + b"\\" * 3, [b"x" * (PIECE + 1) + b"\\", b"x" * (PIECE + 2)]),
    (b"\\\\" * PIECE + b"?", [b"\\" * (PIECE + 1), b"\\" * PIECE]),
]


@pytest.mark.parametrize("pattern,strings", STRADDLING, ids=range(len(STRADDLING)))
def test_pieces_straddling_equal_reference(pattern, strings):
    for nocase in (False, True):
        match = compile_glob(pattern, nocase)
        for s in strings:
            assert match(s) is reference(pattern, s, nocase), (s[-8:], nocase)


def hostile(size: int) -> list[bytes]:
    """Hostile patterns of about ``size`` bytes, none of which a short key matches."""
    return [
        b"*?" * (size // 2),
        b"[ab]" * (size // 4),
        b"\\x" * (size // 2),
        b"[" * size,
        b"?" * size,
        b"[[]" * (size // 3),
        b"*" * (size - 1) + b"x",
        b"[^" * (size // 2) + b"]",
        b"[a-" * (size // 3),
        b"x" * size,
        b"*[a-c]\\*?" * (size // 9),
        b"k*" + b"\\" * (size - 2),
    ]


def test_short_strings_read_little_of_a_huge_pattern(monkeypatch):
    """A key shorter than a pattern's width is refused after reading a few
    tokens of it (one piece a byte of the key, and the stars of the nesting
    limit), as stringmatchlen stops where the key ends: patterns of 16 MiB
    were read whole, a loop turn a token, at every command."""
    read: list[int] = []
    pieces = glob._pieces

    def counted(pattern, nocase):
        for piece in pieces(pattern, nocase):
            read.append(piece[1])
            yield piece

    monkeypatch.setattr(glob, "_pieces", counted)
    key = b"key:1"
    for pattern in hostile(16 << 20):
        for nocase in (False, True):
            read.clear()
            assert not compile_glob(pattern, nocase)(key), pattern[:12]
            assert len(read) <= len(key) + 1 + MAX_NESTING + 2, pattern[:12]
        read.clear()
        may_start_with(pattern, b"__keyspace@0__:")  # (an over-estimate: a star may match it)
        assert len(read) <= 16, pattern[:12]
    read.clear()
    assert compile_glob(b"key:" + b"*" * (16 << 20))(key)  # a run of stars: one piece
    assert len(read) == 2


def test_hostile_patterns_every_command_against_redis(ports):
    """Every command that takes a glob pattern (KEYS, SCAN, HSCAN, SSCAN,
    ZSCAN, PSUBSCRIBE with PUBLISH, PUBSUB CHANNELS, CONFIG GET, COMMAND
    LIST, FUNCTION LIST, ACL's ~ and & patterns) answers as redis-server
    7.0.15 for hostile patterns of 1 MiB and short edge cases."""
    clients = [redis.Redis(port=ports[name], socket_timeout=60) for name in ("redis", "shardkv")]
    keys = [b"key:1", b"ab", b"x", b"[", b"\\", b"k\\", b"a" * 100]
    patterns = hostile(1 << 20) + [b"key:" + b"*" * (1 << 20), b"k" + b"*" * 5000 + b"\\\\"]
    patterns += [b"*", b"k\\", b"[", b"[\\", b"\\[", b"[]", b"[^]", b"*\\", b"?" * 5, b"[a-]", b"ma*"]
    library = "#!lua name=key\nredis.register_function('f', function() return 1 end)"
    try:
        for c in clients:
            c.flushall()
            c.mset({k: b"1" for k in keys})
            for kind in ("hash", "set", "zset"):
                c.execute_command(
                    *{"hash": ["HSET", kind], "set": ["SADD", kind], "zset": ["ZADD", kind]}[kind],
                    *[
                        a
                        for k in keys
                        for a in ((k, b"1") if kind == "hash" else (b"1", k) if kind == "zset" else (k,))
                    ],
                )
            c.function_load(library, replace=True)
        # the parameters and commands both have (shardkv has no MODULE, for one)
        configs = set(clients[0].config_get("*")) & set(clients[1].config_get("*"))
        commands = set(clients[0].command_list()) & set(clients[1].command_list())
        for pattern in patterns:
            replies = []
            for c in clients:
                got: list[object] = [sorted(c.keys(pattern))]
                got.append(sorted(c.scan_iter(match=pattern, count=1000)))
                got.append(sorted(k for k, _ in c.hscan_iter("hash", match=pattern)))
                got.append(sorted(c.sscan_iter("set", match=pattern)))
                got.append(sorted(k for k, _ in c.zscan_iter("zset", match=pattern)))
                p = c.pubsub()
                p.psubscribe(pattern)
                assert p.get_message(timeout=30)["type"] == "psubscribe"
                got.append([c.publish(k, b"m") for k in keys])
                got.append(sorted(c.pubsub_channels(pattern)))
                p.close()
                got.append(sorted(k for k in c.config_get(pattern) if k in configs))
                got.append(sorted(n for n in c.command_list(pattern=pattern) if n in commands))
                got.append(len(c.execute_command("FUNCTION", "LIST", "LIBRARYNAME", pattern)))
                c.execute_command(
                    "ACL", "SETUSER", "globtest", "on", "nopass", b"~" + pattern, b"&" + pattern, "+@all"
                )
                user = redis.Redis(port=c.connection_pool.connection_kwargs["port"], socket_timeout=60)
                user.execute_command("AUTH", "globtest", "x")
                for k in keys:
                    for command in (("GET", k), ("PUBLISH", k, b"m")):
                        try:
                            got.append(user.execute_command(*command))
                        except redis.ResponseError as e:
                            got.append(str(e).split()[0])
                user.close()
                c.execute_command("ACL", "DELUSER", "globtest")
                replies.append(got)
            assert replies[1] == replies[0], (pattern[:12], len(pattern))
    finally:
        for c in clients:
            c.execute_command("ACL", "DELUSER", "globtest")
            c.function_flush()
            c.flushall()
            c.close()


def _near(rng: random.Random, pattern: bytes) -> bytes:
    """A string the pattern is likely to match, or nearly."""
    out = bytearray()
    i = 0
    while i < len(pattern):
        c = pattern[i]
        if c == 92 and i + 1 < len(pattern):  # '\\x'
            out.append(pattern[i + 1])
            i += 2
            continue
        if c == 91:  # '[': any byte, after the class
            end = pattern.find(b"]", i + 2)
            out.append(rng.choice(b"ab-]\\"))
            i = end + 1 if end > 0 else len(pattern)
            continue
        if c == 42:
            out += rng.choice([b"", b"a", b"ab?"])
        else:
            out.append(rng.choice(b"ab") if c == 63 else c)
        i += 1
    return bytes(out)


def test_lazily_read_patterns_equal_reference():
    """Patterns of 60-300 bytes, read a piece at a time (pieces doubling
    from 64 bytes, a class's window too), with escapes, classes and stars
    placed around each piece's end, against the step-by-step reference;
    strings given in any order, so a pattern is read part way for a short
    one, then on for a longer one."""
    rng = random.Random(2024)
    specials = [
        b"\\",
        b"[",
        b"]",
        b"*",
        b"?",
        b"[a-]",
        b"[^]",
        b"[]a]",
        b"\\\\",
        b"\\*",
        b"[z-a]",
        b"[\\]]",
        b"-",
    ]
    specials += [b"[" + b"ab-" * 30 + b"]", b"[^" + b"a" * 70 + b"\\]-", b"*" * 70]
    for _ in range(250):
        pattern = bytearray(rng.choice(b"ab?") for _ in range(rng.randint(60, 300)))
        for at in rng.sample(
            [62, 63, 64, 65, 127, 128, 129, 190, 191, 192, 193, 255, 256], rng.randint(1, 5)
        ):
            special = rng.choice(specials)
            pattern[at : at + len(special)] = special
        pattern = bytes(pattern)
        near = _near(rng, pattern)
        strings = [near, near[:-1], near + b"a", near[:64], near[:130], near[:-2] + near[-1:]]
        strings += [bytes(rng.choice(b"ab-]\\?*") for _ in range(rng.randint(0, 300))) for _ in range(2)]
        for nocase in (False, True):
            rng.shuffle(strings)
            match = glob._compile(pattern, nocase)
            for s in strings:
                assert match(s) is reference(pattern, s, nocase), (pattern, s, nocase)
