"""BCAST prefixes: the collision check of CLIENT TRACKING ... PREFIX, and
which prefixes a changed key falls under.  Checked against a port of
Redis's own loops (``checkPrefixCollisionsOrReply``, the prefix walk) on
random inputs; what they cost is counted, not timed."""

from __future__ import annotations

import random
from types import SimpleNamespace

import pytest

from shardkv.acceptor import tracking
from shardkv.protocol.errors import CommandError


def _redis_check(existing: list[bytes], new: list[bytes]) -> str | None:
    """Redis 7.0's checkPrefixCollisionsOrReply, pair by pair: its error, if any."""

    def overlap(a: bytes, b: bytes) -> bool:
        n = min(len(a), len(b))
        return a[:n] == b[:n]

    tail = "Prefixes for a single client must not overlap."
    for i, prefix in enumerate(new):
        for old in sorted(set(existing)):  # the client's radix tree, in order
            if overlap(old, prefix):
                return f"ERR Prefix '{prefix.decode()}' overlaps with an existing prefix '{old.decode()}'. {tail}"
        for other in new[i + 1 :]:
            if overlap(prefix, other):
                return f"ERR Prefix '{prefix.decode()}' overlaps with another provided prefix '{other.decode()}'. {tail}"
    return None


def _check(existing: list[bytes], new: list[bytes]) -> str | None:
    try:
        tracking._check_prefixes(existing, new)
    except CommandError as e:
        return str(e)
    return None


def _words(rng: random.Random, n: int) -> list[bytes]:
    return [bytes(rng.choice(b"ab") for _ in range(rng.randrange(4))) for _ in range(n)]


def test_collision_errors_are_redis_s() -> None:
    rng = random.Random(24)
    for _ in range(20000):
        existing = _words(rng, rng.randrange(4))
        new = _words(rng, rng.randrange(7))
        assert _check(existing, new) == _redis_check(existing, new), (existing, new)


class _Counted(bytes):
    """A prefix that counts the comparisons made with it (as either side),
    and stops the check past ``budget`` of them."""

    calls = 0
    budget = 0

    @classmethod
    def count(cls) -> None:
        cls.calls += 1
        if cls.calls > cls.budget:
            raise AssertionError(f"over {cls.budget} comparisons")

    def __lt__(self, other):
        self.count()
        return bytes.__lt__(self, other)

    def __eq__(self, other):
        self.count()
        return bytes.__eq__(self, other)

    __hash__ = bytes.__hash__

    def __getitem__(self, index):
        self.count()
        return bytes.__getitem__(self, index)

    def startswith(self, *args):
        self.count()
        return bytes.startswith(self, *args)


@pytest.mark.parametrize("clash", ["none", "existing", "given"])
def test_many_prefixes_cost_n_log_n_comparisons(clash: str) -> None:
    """20,000 prefixes given (one clashing last, or none): Redis's pairs
    cost N^2/2 comparisons (200 million here, minutes of the acceptor's
    time, every client waiting); sorting them costs about N log N."""
    n = 20000
    new = [_Counted(b"p%05d:" % i) for i in range(n)]
    existing = [_Counted(b"q:"), _Counted(b"r:")]
    expected = None
    if clash == "existing":
        new.append(_Counted(b"q:x"))
        expected = _redis_check(existing, new[n:])
    elif clash == "given":
        new.append(_Counted(b"p19990:x"))
        expected = _redis_check(existing, [new[19990], new[n]])
    _Counted.calls = 0
    _Counted.budget = 40 * n
    try:
        error = _check(existing, new)
    finally:
        _Counted.budget = 1 << 62
    assert error == expected


class _CountedPrefixes(dict):
    """PREFIXES, counting the entries looked at."""

    looked = 0

    def get(self, key, default=None):
        type(self).looked += 1
        return super().get(key, default)

    def items(self):
        type(self).looked += len(self)
        return super().items()


def test_a_changed_key_looks_up_its_own_prefixes_only(monkeypatch) -> None:
    """A changed key finds the prefixes it starts with by looking up its
    own first bytes of each prefix length (Redis walks its prefix tree
    along the key), not by trying all 5000 prefixes of 20 clients."""
    monkeypatch.setattr(tracking, "PREFIXES", _CountedPrefixes())
    monkeypatch.setattr(tracking, "_LENGTH_COUNTS", {})
    monkeypatch.setattr(tracking, "_LENGTHS", [])
    monkeypatch.setattr(tracking, "_CHANGED", {})
    monkeypatch.setattr(tracking, "TABLE", {})
    monkeypatch.setattr(tracking.STATE, "flush_due", True)  # (no loop to schedule a broadcast on)
    rng = random.Random(7)
    prefixes = {b"c%02dp%04d:" % (c, i) for c in range(20) for i in range(250)}
    prefixes |= {b"", b"c01", b"c01p0001:x"} | set(_words(rng, 40))
    for prefix in prefixes:
        tracking._register(prefix)
    server = SimpleNamespace(clients={})
    keys = [b"k%d" % i for i in range(200)] + [b"c01p0001:xy", b"c19p0249:", b"ab", b"b"] + _words(rng, 50)
    lengths = {len(p) for p in prefixes}
    for key in keys:
        _CountedPrefixes.looked = 0
        tracking._invalidate_key(server, key, None, bcast=True)
        assert _CountedPrefixes.looked <= len(lengths), key
    for prefix in prefixes:
        changed = sorted(tracking.PREFIXES[prefix][1])
        assert changed == sorted({k for k in keys if k.startswith(prefix)}), prefix
    assert set(tracking._CHANGED) == {p for p in prefixes if tracking.PREFIXES[p][1]}
