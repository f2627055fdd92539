"""SORT and SORT_RO, as Redis 7.0's ``sortCommandGeneric``.

The elements of a list, set or sorted set are sorted by their value as a
double, or as bytes with ALPHA, or by the value of the key (or hash field)
that a BY pattern names for each; GET patterns fetch other keys for each
sorted element; STORE saves the result as a list.  Equal scores are
ordered by the elements' bytes, as Redis's ``sortCompare`` does, and the
sort is stable like glibc's ``qsort`` (a merge sort), so the order is
Redis's.  A pattern may name keys on any shard: the acceptor then parks
every shard and runs SORT where all keys are visible, unless each pattern's
hash tag puts its keys on the sorted key's shard (see
``commands.sort_pattern_keys``).  The cost is one lookup per element and
pattern and one O(n log n) sort.
"""

from __future__ import annotations

import re
from collections import deque
from typing import Any

from shardkv.protocol import errors
from shardkv.protocol.args import LLONG_MAX, LLONG_MIN, strtod
from shardkv.protocol.errors import CommandError
from shardkv.protocol.resp import strict_int
from shardkv.runtime import replyroom
from shardkv.worker import values
from shardkv.worker.handlers import Handlers
from shardkv.worker.keyspace import Keyspace
from shardkv.worker.pqsort import pqsort
from shardkv.worker.zset import ZSet

_C_SPACE = b" \t\n\v\f\r"
# Elements joined by newlines, each a plain integer (which float() and
# strtod read alike).
_INTEGERS = re.compile(rb"(?:[+-]?[0-9]{1,300}\n)*[+-]?[0-9]{1,300}")


def _cstr(value: bytes) -> bytes:
    """What C's string functions see of ``value``: up to its first NUL."""
    nul = value.find(b"\0")
    return value if nul < 0 else value[:nul]


def pattern_reader(ks: Keyspace, pattern: bytes):
    """``lookupKeyByPattern`` for one pattern, parsed once: a function of
    the element.  ``#`` is the element itself; otherwise the first ``*`` is
    replaced by the element and the string (or, after ``->``, the hash
    field) at that key is read; a pattern with no ``*`` reads nothing."""
    if pattern == b"#":
        return lambda element: element
    head = _cstr(pattern)
    star = head.find(b"*")
    if star < 0:
        return lambda element: None
    arrow = head.find(b"->", star + 1)
    field = None
    end = len(pattern)
    if arrow >= 0 and arrow + 2 < len(head):
        field = pattern[arrow + 2 :]
        end = arrow
    prefix, suffix = pattern[:star], pattern[star + 1 : end]
    lookup = ks.lookup
    if field is None:

        def read(element: bytes) -> bytes | None:
            value = lookup(prefix + element + suffix)
            return value if type(value) is bytes else None

    else:

        def read(element: bytes) -> bytes | None:
            value = lookup(prefix + element + suffix)
            return value.get(field) if type(value) is dict else None

    return read


def _score(value: bytes) -> float | None:
    """``strtod`` as SORT uses it: leading spaces and an empty string are
    fine, anything left over, NaN or out of range is not (None)."""
    text = _cstr(value)
    if not text:
        return 0.0
    digits = text[1:] if text[:1] in b"+-" else text
    if digits.isdigit() and len(digits) < 300:
        return float(text)  # the common case: an integer
    body = text.lstrip(_C_SPACE)
    parsed = strtod(body) if body else None
    if parsed is None or parsed[1] or parsed[0] != parsed[0]:
        return None
    return parsed[0]


def _limit(arg: bytes) -> int:
    value = strict_int(arg)
    if value is None or not LLONG_MIN <= value <= LLONG_MAX:
        raise CommandError(errors.NOT_INTEGER)
    return value


def _set_members(s: set) -> list[bytes]:
    """A set's members in the order Redis iterates them where shardkv can
    know it (an intset: numeric order), else in Python's order."""
    if len(s) <= values.INTSET_MAX:
        numbers = []
        for m in s:
            n = strict_int(m)
            if n is None:
                return list(s)
            numbers.append((n, m))
        numbers.sort()
        return [m for _, m in numbers]
    return list(s)


def _in_script(ks: Keyspace) -> bool:
    """Called from a Lua script or function (Redis's CLIENT_SCRIPT)?"""
    engine = ks.scripts
    return engine is not None and engine.run is not None


def sort_generic(ks: Keyspace, args: list[bytes], readonly: bool) -> object:
    engine = ks.scripts
    if engine is not None and engine.run is not None and engine.user is not None:
        # A script of a limited user: its BY and GET patterns (the acceptor
        # checks the client's own SORTs).
        problem = engine.user.sort_denied("sort_ro" if readonly else "sort", args)
        if problem is not None:
            raise CommandError(problem)
    desc = alpha = dontsort = False
    limit_start, limit_count = 0, -1
    store: bytes | None = None
    sortby: bytes | None = None
    gets: list[bytes] = []
    n = len(args)
    j = 2
    while j < n:
        left = n - j - 1
        word = args[j].lower()
        if word == b"asc":
            desc = False
        elif word == b"desc":
            desc = True
        elif word == b"alpha":
            alpha = True
        elif word == b"limit" and left >= 2:
            limit_start = _limit(args[j + 1])
            limit_count = _limit(args[j + 2])
            j += 2
        elif not readonly and word == b"store" and left >= 1:
            store = args[j + 1]
            j += 1
        elif word == b"by" and left >= 1:
            sortby = args[j + 1]
            if b"*" not in _cstr(sortby):
                dontsort = True  # a constant: nothing to sort by
            j += 1
        elif word == b"get" and left >= 1:
            gets.append(args[j + 1])
            j += 1
        else:
            raise CommandError(errors.SYNTAX)
        j += 1
    value: Any = ks.lookup(args[1])  # dispatched on by type, below
    kind = type(value)
    if value is not None and kind is not deque and kind is not set and kind is not ZSet:
        raise CommandError(errors.WRONGTYPE)
    if dontsort and kind is set and (store is not None or _in_script(ks)):
        # A set's order would be arbitrary: sorted, so that a script's
        # reply and what STORE writes are the same everywhere (Redis).
        dontsort, alpha, sortby = False, True, None
    size = len(value) if value is not None else 0
    start = min(max(limit_start, 0), size)
    limit_count = min(max(limit_count, -1), size)
    end = size - 1 if limit_count < 0 else start + limit_count - 1
    if start >= size:
        start, end = size - 1, size - 2
    if end >= size:
        end = size - 1

    if value is None:
        vector: list[bytes] = []
    elif dontsort and kind is not set:
        # Lists and sorted sets keep their own order; only the range is read.
        count = max(end - start + 1, 0)
        if kind is deque:
            items = list(value) if not desc else list(reversed(value))
            vector = items[start : start + count]
        else:
            ranked = value.slice(0, size, reverse=desc)
            vector = [m for _, m in ranked[start : start + count]]
        end -= start
        start = 0
    elif kind is deque:
        vector = list(value)
    elif kind is set:
        vector = _set_members(value)
    else:
        vector = list(value.scores)

    if not dontsort:
        partial = (start, end) if sortby is not None and (start != 0 or end != len(vector) - 1) else None
        vector = _sorted(ks, vector, sortby, alpha, desc, store is not None, partial)

    if end < start:
        selected: list[bytes] = []
    else:
        selected = vector[start : end + 1]
    if store is None:
        if not gets:
            return selected
        return _fetch(ks, selected, gets)
    if gets:
        out = [value or b"" for value in _fetch(ks, selected, gets)]
    else:
        out = selected
    if out:
        ks.store(store, deque(out))
        if len(out) > 1:
            ks.changes = len(out)  # as Redis: a change per element stored
    elif not ks.delete(store):
        ks.unchanged = True  # as Redis: empty, no destination to delete: no change
    return len(out)


def _fetch(ks: Keyspace, selected: list[bytes], gets: list[bytes]) -> list[bytes | None]:
    """What each GET pattern reads for each selected element.  The GETs
    multiply the elements: a few bytes of ``GET #`` repeated can ask for
    more than memory holds, which is refused as
    :mod:`shardkv.runtime.replyroom` says (the list first, then the values
    it holds)."""
    readers = [pattern_reader(ks, g) for g in gets]
    replyroom.check(len(selected) * len(readers) * 8)  # a list slot each
    out = [read(element) for element in selected for read in readers]
    replyroom.check(sum(map(len, filter(None, out))))
    return out


def _sorted(
    ks: Keyspace,
    vector: list[bytes],
    sortby: bytes | None,
    alpha: bool,
    desc: bool,
    storing: bool,
    partial: tuple[int, int] | None,
) -> list[bytes]:
    """``sortCompare`` as a key, on a stable sort (glibc's ``qsort``), or
    Redis's partial quicksort of ranks ``partial`` (BY with a LIMIT)."""
    if alpha:
        if sortby is None:
            if storing:
                keys: list = vector
            else:
                keys = [_cstr(e) for e in vector]  # strcoll in the C locale
        else:
            keys = []
            read = pattern_reader(ks, sortby)
            for e in vector:
                by = read(e)
                if by is None:
                    keys.append((0, b""))
                else:
                    keys.append((1, by if storing else _cstr(by)))
    else:
        values = vector if sortby is None else list(map(pattern_reader(ks, sortby), vector))
        joined = b"\n".join(values) if None not in values else b""
        if joined.count(b"\n") == len(values) - 1 and _INTEGERS.fullmatch(joined):
            keys = list(zip(map(float, values), vector, strict=True))  # all plain integers: at C speed
        else:
            keys = []
            bad = False
            for e, by in zip(vector, values, strict=True):
                if by is None:
                    keys.append((0.0, e))
                    continue
                score = _score(by)
                if score is None:
                    bad = True
                    score = 0.0
                keys.append((score, e))
            if bad:
                raise CommandError(errors.SORT_NOT_DOUBLE)
    if partial is None or len(set(keys)) == len(keys):
        # A full sort; or no two keys compare equal, when the partial sort
        # gives the same ranks (equal numeric keys are equal elements).
        order = sorted(range(len(vector)), key=keys.__getitem__, reverse=desc)
    else:
        sign = -1 if desc else 1

        def compare(i: int, j: int) -> int:
            a, b = keys[i], keys[j]
            return sign * ((a > b) - (a < b))

        order = list(range(len(vector)))
        pqsort(order, compare, *partial)
    return [vector[i] for i in order]


def sort(ks: Keyspace, args: list[bytes]) -> object:
    """SORT key [BY pattern] [LIMIT offset count] [GET pattern [GET pattern ...]] [ASC | DESC] [ALPHA] [STORE destination]"""
    with ks.reading():
        return sort_generic(ks, args, False)


def sort_ro(ks: Keyspace, args: list[bytes]) -> object:
    """SORT_RO key [BY pattern] [LIMIT offset count] [GET pattern [GET pattern ...]] [ASC | DESC] [ALPHA]"""
    return sort_generic(ks, args, True)


# The commands this module runs, by name (see shardkv.worker.wiring).
HANDLERS: Handlers = {
    "sort": sort,
    "sort_ro": sort_ro,
}
