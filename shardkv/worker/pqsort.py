"""Redis's partial quicksort (``src/pqsort.c``), element for element.

SORT ... BY ... LIMIT and GEOSEARCH/GEORADIUS ... COUNT sort only the
range they return, with Bentley and McIlroy's quicksort that skips the
partitions outside it.  It is not stable: elements that compare equal come
out in an order of its own.  To return the same elements in the same order
as Redis, ties included, the same algorithm runs here, with the same
pivots and swaps.  (Redis's full sorts use glibc's ``qsort``, a stable
merge sort, which Python's ``sorted`` matches.)
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

Cmp = Callable[[Any, Any], int]


def _med3(v: list, a: int, b: int, c: int, cmp: Cmp) -> int:
    if cmp(v[a], v[b]) < 0:
        if cmp(v[b], v[c]) < 0:
            return b
        return c if cmp(v[a], v[c]) < 0 else a
    if cmp(v[b], v[c]) > 0:
        return b
    return a if cmp(v[a], v[c]) < 0 else c


def pqsort(v: list, cmp: Cmp, lrange: int, rrange: int) -> None:
    """Sort ``v`` in place so that ranks ``lrange..rrange`` hold what a full
    sort would put there, as Redis's ``pqsort`` does."""
    _pqsort(v, 0, len(v), cmp, lrange, rrange)


def _outside(lo: int, hi: int, start: int, count: int) -> bool:
    return (lo < start and hi < start) or (lo >= start + count and hi >= start + count)


def _pqsort(v: list, a: int, n: int, cmp: Cmp, lo: int, hi: int) -> None:
    while True:
        if n < 7:
            for pm in range(a + 1, a + n):
                pl = pm
                while pl > a and cmp(v[pl - 1], v[pl]) > 0:
                    v[pl], v[pl - 1] = v[pl - 1], v[pl]
                    pl -= 1
            return
        pm = a + n // 2
        if n > 7:
            pl = a
            pn = a + n - 1
            if n > 40:
                d = n // 8
                pl = _med3(v, pl, pl + d, pl + 2 * d, cmp)
                pm = _med3(v, pm - d, pm, pm + d, cmp)
                pn = _med3(v, pn - 2 * d, pn - d, pn, cmp)
            pm = _med3(v, pl, pm, pn, cmp)
        v[a], v[pm] = v[pm], v[a]
        pa = pb = a + 1
        pc = pd = a + n - 1
        while True:
            while pb <= pc:
                c = cmp(v[pb], v[a])
                if c > 0:
                    break
                if c == 0:
                    v[pa], v[pb] = v[pb], v[pa]
                    pa += 1
                pb += 1
            while pb <= pc:
                c = cmp(v[pc], v[a])
                if c < 0:
                    break
                if c == 0:
                    v[pc], v[pd] = v[pd], v[pc]
                    pd -= 1
                pc -= 1
            if pb > pc:
                break
            v[pb], v[pc] = v[pc], v[pb]
            pb += 1
            pc -= 1
        pn = a + n
        r = min(pa - a, pb - pa)
        for i in range(r):
            v[a + i], v[pb - r + i] = v[pb - r + i], v[a + i]
        r = min(pd - pc, pn - pd - 1)
        for i in range(r):
            v[pb + i], v[pn - r + i] = v[pn - r + i], v[pb + i]
        r = pb - pa
        if r > 1 and not _outside(lo, hi, a, r):
            _pqsort(v, a, r, cmp, lo, hi)
        r = pd - pc
        if r <= 1:
            return
        a = pn - r
        n = r
        if _outside(lo, hi, a, r):
            return
