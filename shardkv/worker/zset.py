"""The sorted set value: members with double scores, kept in order.

A :class:`ZSet` holds the same data twice, as Redis's skiplist encoding
does: ``scores``, a dict of member to score, answers ZSCORE and membership
in O(1); ``order``, a :class:`sortedcontainers.SortedList` of
``(score, member)`` tuples, keeps the elements sorted by score and then by
member bytes (Redis's ``memcmp`` order), so that ranks, ranges and pops cost
O(log n) plus the size of the answer.

Redis stores a small sorted set (at most 128 members of at most 64 bytes)
as a *listpack* and switches to a skiplist for good once it grows past
that.  ``big`` tracks which one Redis would be using, because a client can
tell them apart:

* a listpack keeps a score of ``-0`` as ``0``, a skiplist keeps its sign;
* ZSCAN returns a listpack whole, in order, whatever COUNT says;
* lex ranges (ZRANGEBYLEX...) assume that all scores are equal; when they
  are not, a listpack is searched by a linear scan, which we copy exactly
  for small sets (a skiplist's answer then depends on its random levels);
* OBJECT ENCODING.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator

from sortedcontainers import SortedList

# Redis's zset-max-listpack-entries and zset-max-listpack-value defaults.
LISTPACK_MAX_ENTRIES = 128
LISTPACK_MAX_VALUE = 64

_INF = math.inf
_nextafter = math.nextafter

# A lex range bound: (kind, value, exclusive).  kind is -1 for "-" (below
# every member) and 1 for "+" (above every member), both with value b""
# and exclusive; 0 for "[value" and "(value".
LexBound = tuple[int, bytes, bool]


def lex_gte_min(member: bytes, bound: LexBound) -> bool:
    kind, value, ex = bound
    if kind:
        return kind < 0
    return member > value if ex else member >= value


def lex_lte_max(member: bytes, bound: LexBound) -> bool:
    kind, value, ex = bound
    if kind:
        return kind > 0
    return member < value if ex else member <= value


def lex_range_empty(lo: LexBound, hi: LexBound) -> bool:
    """True when no member can lie between ``lo`` and ``hi``, as Redis's
    ``zslIsInLexRange`` decides it ("-" and "+" are exclusive)."""
    a, b = lo[:2], hi[:2]
    return a > b or (a == b and (lo[2] or hi[2]))


class ZSet:
    """A Redis sorted set; see the module docstring."""

    __slots__ = ("scores", "order", "big")

    def __init__(self) -> None:
        self.scores: dict[bytes, float] = {}
        self.order = SortedList()
        self.big = False  # would Redis use a skiplist (True) or a listpack?

    @classmethod
    def from_plain(cls, scores: dict[bytes, float]) -> ZSet:
        """A ZSet holding ``scores`` exactly (the form that crosses pipes)."""
        z = cls()
        z.scores = dict(scores)
        z.order = SortedList((s, m) for m, s in z.scores.items())
        z.big = len(scores) > LISTPACK_MAX_ENTRIES or any(len(m) > LISTPACK_MAX_VALUE for m in scores)
        return z

    @classmethod
    def from_result(cls, scores: dict[bytes, float]) -> ZSet:
        """A ZSet built whole and then encoded, as ZUNIONSTORE builds its
        destination: a result small enough for a listpack loses ``-0``."""
        z = cls.from_plain(scores)
        if not z.big and any(s == 0.0 for s in scores.values()):
            return cls.from_plain({m: (0.0 if s == 0.0 else s) for m, s in scores.items()})
        return z

    def to_plain(self) -> dict[bytes, float]:
        return dict(self.scores)

    def copy(self) -> ZSet:
        z = ZSet()
        z.scores = self.scores.copy()
        z.order = self.order.copy()
        z.big = self.big
        return z

    @property
    def encoding(self) -> str:
        return "skiplist" if self.big else "listpack"

    def __len__(self) -> int:
        return len(self.scores)

    def __iter__(self) -> Iterator[tuple[float, bytes]]:
        """``(score, member)`` pairs, lowest first."""
        return iter(self.order)

    def __repr__(self) -> str:
        return f"ZSet({list(self.order)!r})"

    # -- single elements ------------------------------------------------------

    def score(self, member: bytes) -> float | None:
        return self.scores.get(member)

    def add(self, member: bytes, score: float) -> None:
        """Insert ``member`` or move it to ``score``."""
        scores = self.scores
        old = scores.get(member)
        if old is None:
            if not self.big and (len(scores) >= LISTPACK_MAX_ENTRIES or len(member) > LISTPACK_MAX_VALUE):
                self.big = True
            elif not self.big and score == 0.0:
                score = 0.0  # a listpack writes -0 as 0
            scores[member] = score
            self.order.add((score, member))
            return
        if not self.big and score == 0.0:
            score = 0.0
        if old != score:  # as Redis: -0 and 0 are equal, the old sign stays
            order = self.order
            order.remove((old, member))
            scores[member] = score
            order.add((score, member))

    def remove(self, member: bytes) -> bool:
        old = self.scores.pop(member, None)
        if old is None:
            return False
        self.order.remove((old, member))
        return True

    def rank(self, member: bytes) -> int | None:
        """The 0-based rank of ``member``, lowest score first, or None."""
        score = self.scores.get(member)
        if score is None:
            return None
        return self.order.bisect_left((score, member))

    def at(self, index: int) -> tuple[float, bytes]:
        """The ``(score, member)`` at rank ``index``."""
        return self.order[index]

    # -- ranges of ranks ----------------------------------------------------

    def slice(self, start: int, stop: int, reverse: bool = False) -> list[tuple[float, bytes]]:
        """The elements of ranks [start, stop), highest first if ``reverse``."""
        if start >= stop:
            return []
        return list(self.order.islice(start, stop, reverse=reverse))

    def pop_range(self, start: int, stop: int) -> list[tuple[float, bytes]]:
        """Remove and return the elements of ranks [start, stop)."""
        if start >= stop:
            return []
        order = self.order
        if stop - start == 1:
            items = [order.pop(start)]
        else:
            items = order[start:stop]
            del order[start:stop]
        scores = self.scores
        for _, member in items:
            del scores[member]
        return items

    # -- ranges of scores and of members ----------------------------------------

    def score_span(self, lo: float, lo_ex: bool, hi: float, hi_ex: bool) -> tuple[int, int]:
        """Ranks [start, stop) of the elements with lo <(=) score <(=) hi."""
        order = self.order
        n = len(order)
        if lo_ex:
            start = n if lo == _INF else order.bisect_left((_nextafter(lo, _INF), b""))
        else:
            start = order.bisect_left((lo, b""))
        if hi_ex:
            stop = order.bisect_left((hi, b""))
        else:
            stop = n if hi == _INF else order.bisect_left((_nextafter(hi, _INF), b""))
        return start, max(start, stop)

    def lex_span(self, lo: LexBound, hi: LexBound, reverse: bool = False) -> tuple[int, int]:
        """Ranks [start, stop) of the run of elements that a lex range walks.

        When all scores are equal the members are sorted and this is just
        the members between ``lo`` and ``hi``.  When they are not, a small
        set gives what Redis's listpack scan gives: forwards, from the first
        member >= ``lo`` while members are <= ``hi``; in reverse, from the
        last member <= ``hi`` back while members are >= ``lo``.
        """
        n = len(self.scores)
        if not n or lex_range_empty(lo, hi):
            return 0, 0
        order = self.order
        if self.big:
            return self._lex_bisect(lo, hi)
        members = [m for _, m in order]
        if not lex_gte_min(members[-1], lo) or not lex_lte_max(members[0], hi):
            return 0, 0
        if not reverse:
            i = 0
            while not lex_gte_min(members[i], lo):
                i += 1
            j = i
            while j < n and lex_lte_max(members[j], hi):
                j += 1
            return i, j
        i = n - 1
        while not lex_lte_max(members[i], hi):
            i -= 1
        j = i
        while j >= 0 and lex_gte_min(members[j], lo):
            j -= 1
        return j + 1, i + 1

    def _lex_bisect(self, lo: LexBound, hi: LexBound) -> tuple[int, int]:
        order = self.order
        first, last = order[0][0], order[-1][0]
        if first == last:
            # One score: bisect the tuples directly.
            if lo[0]:
                start = 0 if lo[0] < 0 else len(order)
            elif lo[2]:
                start = order.bisect_right((first, lo[1]))
            else:
                start = order.bisect_left((first, lo[1]))
            if hi[0]:
                stop = 0 if hi[0] < 0 else len(order)
            elif hi[2]:
                stop = order.bisect_left((first, hi[1]))
            else:
                stop = order.bisect_right((first, hi[1]))
        else:
            start = self._first_failing(lambda m: not lex_gte_min(m, lo))
            stop = self._first_failing(lambda m: lex_lte_max(m, hi))
        return start, max(start, stop)

    def _first_failing(self, pred) -> int:
        """The first rank whose member fails ``pred`` (true on a prefix)."""
        order = self.order
        a, b = 0, len(order)
        while a < b:
            mid = (a + b) // 2
            if pred(order[mid][1]):
                a = mid + 1
            else:
                b = mid
        return a


def zset_of(items: Iterable[tuple[bytes, float]]) -> ZSet:
    """A ZSet filled one element at a time, as ZADD or ZRANGESTORE fills one."""
    z = ZSet()
    add = z.add
    for member, score in items:
        add(member, score)
    return z
