"""Record a concurrent history against a server, then check it.

A *history* is every operation the clients ran: what they sent, what came
back, and when each operation was invoked and completed (``time.monotonic_ns``,
one clock for every thread).  The checks:

* :func:`check_linearizable`: one key's history of SET/GET (a register) or
  INCR/GET (a counter) is linearizable: there is one order of the operations,
  consistent with real time (an operation that completed before another was
  invoked comes first), in which every reply is what a single-threaded
  server would have answered.  The search is Wing and Gong's, with the
  memoisation of Lowe's "Testing for linearizability" (a set of
  (operations already placed, state) pairs), so bounded histories of a few
  hundred operations with a few concurrent clients check in well under a
  second.
* :func:`check_atomic_reads`: an MGET never sees part of an MSET.  If an MGET
  saw MSET *m*'s value on one key, then on every other key that *m* wrote it
  must see *m*'s value or a value written by an MSET that did not complete
  before *m* was invoked.
* :func:`check_totals`: every read of all the bank's accounts sums to the
  bank's total.

Operations that got no reply (a timeout, a closed connection) are not
allowed in a checked history: the workload is bounded so that every
operation completes.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable


@dataclasses.dataclass(frozen=True)
class Op:
    """One completed operation.  ``kind`` is ``set``, ``get`` or ``incr`` for
    single-key operations, ``mset`` or ``mget`` for multi-key ones."""

    client: int
    kind: str
    keys: tuple[str, ...]
    value: object  # what SET/MSET wrote
    result: object  # what came back
    start: int
    end: int


class NotLinearizable(AssertionError):
    pass


def _apply(op: Op, state: object) -> tuple[bool, object]:
    """Run ``op`` on a single key's model; (reply as expected?, new state)."""
    if op.kind == "set":
        return True, op.value
    if op.kind == "get":
        return op.result == state, state
    if op.kind == "incr":
        new = (0 if state is None else int(state)) + 1  # type: ignore[call-overload]
        return op.result == new, str(new)
    raise ValueError(f"no model for {op.kind}")


def check_linearizable(ops: list[Op], initial: object = None) -> None:
    """Raise :class:`NotLinearizable` unless one key's ``ops`` linearize."""
    ops = sorted(ops, key=lambda o: o.start)
    n = len(ops)
    full = (1 << n) - 1
    seen: set[tuple[int, object]] = set()
    # Depth-first search over the prefix of placed operations, iteratively:
    # each frame is (placed mask, state, candidates still to try).
    stack: list[tuple[int, object, list[int]]] = [(0, initial, _candidates(ops, 0))]
    while stack:
        placed, state, todo = stack[-1]
        if placed == full:
            return
        if not todo:
            stack.pop()
            continue
        i = todo.pop()
        ok, new_state = _apply(ops[i], state)
        mask = placed | (1 << i)
        if not ok or (mask, new_state) in seen:
            continue
        seen.add((mask, new_state))
        stack.append((mask, new_state, _candidates(ops, mask)))
    raise NotLinearizable(_describe(ops))


def _candidates(ops: list[Op], placed: int) -> list[int]:
    """The operations that may come next: not placed yet, and invoked before
    every unplaced operation completed."""
    pending = [i for i in range(len(ops)) if not placed >> i & 1]
    if not pending:
        return []
    first_end = min(ops[i].end for i in pending)
    return [i for i in reversed(pending) if ops[i].start <= first_end]


def _describe(ops: list[Op]) -> str:
    lines = [f"no linearization of {len(ops)} operations on {ops[0].keys if ops else '?'}:"]
    for op in ops[:40]:
        lines.append(f"  c{op.client} {op.kind} {op.value!r} -> {op.result!r} [{op.start}, {op.end}]")
    return "\n".join(lines)


def check_atomic_reads(ops: Iterable[Op]) -> None:
    """No MGET sees part of an MSET (see the module's docstring)."""
    ops = list(ops)
    writes = {op.value: op for op in ops if op.kind == "mset"}
    for read in (op for op in ops if op.kind == "mget"):
        seen = dict(zip(read.keys, read.result, strict=True))  # type: ignore[call-overload]
        for key, token in seen.items():
            if token is None:
                continue
            write = writes[token]
            for other in write.keys:
                if other == key or other not in seen:
                    continue
                got = seen[other]
                older = writes.get(got) if got is not None else None
                if got is None or (older is not None and older.end < write.start):
                    raise AssertionError(
                        f"MGET {read.keys} saw {token!r} on {key} but {got!r} on {other}, "
                        f"which that MSET also wrote: a partial MSET"
                    )


def check_totals(reads: Iterable[Op], total: int) -> None:
    """Every read of all accounts sums to ``total``."""
    for read in reads:
        values = [int(v) for v in read.result]  # type: ignore[attr-defined]
        if sum(values) != total:
            raise AssertionError(f"accounts {read.keys} read as {values}: sum {sum(values)}, not {total}")
