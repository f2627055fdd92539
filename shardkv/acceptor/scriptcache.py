"""The acceptor's script cache: SHA1 -> body, and which shards know which.

Apart from :mod:`shardkv.acceptor.scripting` because CLIENT PAUSE (is an
EVALSHA a write?), a disk error (may it write?) and INFO (the cache's
size) read it too.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from shardkv.protocol.errors import CommandError
from shardkv.runtime.scriptsource import FLAG_ALLOW_OOM, FLAG_COMPAT, FLAG_NO_WRITES, parse_shebang

if TYPE_CHECKING:
    from shardkv.runtime.scriptflushes import ScriptFlushes

# An argument names a key when its value, this long at least, is a part of
# the key's name with no letter or digit on either side (``default`` in
# ``ns:default.msgs``, not ``ack`` in ``ns:__acks__``): shorter ones (a
# flag, a count) are inside names by chance.
NAMING = 3
# The argument values remembered per escaping script (the oldest forgotten
# past it): a script whose key names come from an id, new at every call,
# learns each call's keys by escaping, as it always did, and keeps no more.
REMEMBERED = 256
# A call's values are remembered when each is this long at most, or no
# longer than the longest key's name it needed (longer ones named none of
# them): the values kept are bounded, a payload argument is not one.
KEPT = 128
# A byte neither letter nor digit.
_BREAK = re.compile(rb"[^0-9A-Za-z]")


def _names(value: bytes, name: bytes) -> bool:
    """Whether ``value`` is a part of the key ``name`` (see :data:`NAMING`):
    somewhere in it, overlapping another place or not, with no letter or
    digit just before or after it.  No pattern is made of ``value``: it may
    be a call's payload (it is no longer than ``name`` when it gets here).
    Past a place that fails, the next one tried may start only after a
    break (a byte neither letter nor digit) if ``value`` starts with a
    letter or digit, and end only before one if it ends with one: a long
    name of letters is not searched at each of its bytes."""
    size = len(name)
    n = len(value)
    first = value[:1].isalnum()
    last = value[-1:].isalnum()
    at = name.find(value)
    while at >= 0:
        if not name[at - 1 : at].isalnum() and not name[at + n : at + n + 1].isalnum():
            return True
        start = at + 1
        if first:
            found = _BREAK.search(name, at)
            if found is None:
                return False
            start = max(start, found.end())
        if last:
            found = _BREAK.search(name, at + n + 1)
            start = max(start, (size if found is None else found.start()) - n)
        if start > size - n:
            return False
        at = name.find(value, start)
    return False


class Escapes:
    """What a script that escapes needed beyond its declared keys, by the
    arguments its key names were built from.

    Dramatiq's dispatcher builds the names of the keys of the queue it is
    called for (``ns:queue``, ``ns:queue.msgs``, ``ns:__acks__.worker.queue``)
    from its arguments: remembering every key any run needed would send a
    call on one queue to the shards of every queue it ever served, with
    their keys.  So the keys whose names hold an argument's value
    (:data:`NAMING` bytes or more) are remembered under those arguments'
    values (``named``: the arguments' places), and only the others
    (``shared``) for every call; a call with values not seen yet starts
    from those and escapes for the rest, as a script's first run does.
    Only the run's place depends on it: a run that needs more escapes.
    """

    __slots__ = ("named", "shared", "by_values", "longest")

    def __init__(self) -> None:
        self.named: tuple[int, ...] = ()  # places in keys + arguments
        self.shared: list = []  # keys no argument names, of any call
        # The named places' values -> (every shard?, the keys they named).
        self.by_values: dict[tuple, tuple[int, list]] = {}
        # The longest value in by_values: a call with a longer one at a
        # named place is not there, found without hashing it.
        self.longest = 0

    def _values(self, args: list[bytes]) -> tuple:
        return tuple(args[i] if i < len(args) else None for i in self.named)

    def needs(self, args: list[bytes]) -> tuple[int, list]:
        """(every shard?, the keys) a call with ``args`` (its declared keys,
        then its other arguments) is sent to."""
        for i in self.named:
            if i < len(args) and len(args[i]) > self.longest:
                return 0, list(self.shared)
        everything, named = self.by_values.get(self._values(args), (0, []))
        return everything, [*self.shared, *named] if named else list(self.shared)

    def learn(self, args: list[bytes], everything: int, keys: list) -> None:
        """A run with ``args`` needed ``keys`` (and every shard, if
        ``everything``) beyond its declared ones."""
        names = [key[1] if type(key) is tuple else key for key in keys]
        # A value longer than every key's name names none of them: one of
        # 1 MB is a payload, not a part of a name, and is not searched for.
        longest = max(map(len, names), default=0)
        naming = [(i, a) for i, a in enumerate(args) if NAMING <= len(a) <= longest]
        named: dict = {}
        places = set(self.named)
        for key, name in zip(keys, names, strict=True):
            found = [i for i, part in naming if len(part) <= len(name) and _names(part, name)]
            if found:
                named[key] = None
                places.update(found)
            elif key not in self.shared:
                self.shared.append(key)
        if len(places) != len(self.named):  # the values seen so far are keyed by fewer places
            self.named = tuple(sorted(places))
            self.by_values.clear()
            self.longest = 0
        values = self._values(args)
        if any(v is not None and len(v) > max(longest, KEPT) for v in values):
            return  # not remembered (see KEPT): a call with it escapes again, only slower
        self.longest = max(self.longest, max((len(v) for v in values if v is not None), default=0))
        self.by_values.pop(values, None)
        self.by_values[values] = (everything, list(named))
        if len(self.by_values) > REMEMBERED:
            del self.by_values[next(iter(self.by_values))]


class ScriptCache:
    """The acceptor's script cache and what each shard knows of it."""

    def __init__(self) -> None:
        self.bodies: dict[bytes, bytes] = {}
        self.known: dict[int, set[bytes]] = {}
        # Scripts that once needed other shards: sha -> what they needed.
        self.escaping: dict[bytes, Escapes] = {}
        # The cross-shard runs of each script (sha): the bytes each shard's
        # park answer took, the states of the keys it exported, at its last
        # run as a participant (see AtomicOp's ``exported``): the next run
        # goes to the shard whose keys are the largest, where they stay.
        self.exported: dict[bytes, dict[int, int]] = {}
        # Scripts (and ``f:``-named functions) whose last run here ended
        # without needing more shards than it was sent to: EVALSHA may take
        # its shortcut (see scripting.evalsha_fast).
        self.settled: set[bytes] = set()
        # SCRIPT FLUSHes so far (here or through another acceptor): a
        # script sent to a shard before one answers after the shard ran
        # the flush, and it does not know the script then (see learned).
        self.flushes = 0
        # Each script's number (:mod:`shardkv.runtime.scriptflushes`): the
        # last SCRIPT FLUSH's, of every acceptor, when it was cached (its
        # largest, if cached again); and the largest flush number this
        # acceptor has applied.  A flush numbered n forgets the scripts
        # cached before it (number < n), and a script cached at a number
        # below the last flush applied here is not taken: every acceptor
        # ends with the same scripts, whatever order another acceptor's
        # SCRIPT LOAD (or EVAL) and SCRIPT FLUSH reach it in (see add).
        self.numbers: dict[bytes, int] = {}
        self.last_flush = 0
        # The log every acceptor writes the scripts it cached to (K > 1,
        # see shardkv.runtime.scriptflushes), and how far this one read it.
        self.log: ScriptFlushes | None = None
        self.log_emptied = 0
        self.log_at = 0

    def find(self, sha: bytes) -> bytes | None:
        """The body of the script ``sha``; one not cached here yet is
        looked for in what other acceptors cached (their EVAL or SCRIPT
        LOAD answered before this acceptor was told: see :meth:`logged`)."""
        self.fresh()
        body = self.bodies.get(sha)
        if body is None and self.log is not None:
            self.catch_up()
            body = self.bodies.get(sha)
        return body

    def catch_up(self) -> None:
        """Cache (or forget) what every acceptor logged since this one last
        read the log (its own scripts too: caching one again changes nothing)."""
        assert self.log is not None
        self.fresh()
        records, self.log_emptied, self.log_at = self.log.read(self.log_emptied, self.log_at)
        for sha, body, number in records:
            if body is None:
                self.forget(sha, number)
            else:
                self.add(sha, body, number)

    def fresh(self) -> None:
        """Apply the SCRIPT FLUSH another acceptor read since this one
        last looked (the shared file's number is past :attr:`last_flush`),
        before any look at the cache: that acceptor answered +OK without
        waiting for the others (a stopped one delays no other's clients),
        so each applies it here, lazily, as it catches up with the log."""
        log = self.log
        if log is not None:
            number = log.current()
            if number > self.last_flush:
                self.flush(number)

    def logged(self, sha: bytes, body: bytes | None, number: int) -> None:
        """Log that this acceptor cached ``sha`` (``body`` None: forgot
        it) at ``number``, before its client's reply: another acceptor
        finds it there at once (:meth:`find`), where the bus's message may
        come later, and none waits for the others."""
        if self.log is not None:
            self.log.append(sha, body, number)

    def knows(self, shard: int) -> set[bytes]:
        known = self.known.get(shard)
        if known is None:
            known = self.known[shard] = set()
        return known

    def learned(self, shard: int, sha: bytes, flushes: int) -> None:
        """``shard`` compiled the script ``sha``, sent to it when
        :attr:`flushes` was ``flushes``: it knows the script, unless a
        SCRIPT FLUSH came since (the shard ran it after the script, or
        runs it still), and it is sent with its body next time."""
        if flushes == self.flushes:
            self.knows(shard).add(sha)

    def add(self, sha: bytes, body: bytes, number: int) -> bool:
        """Cache the script ``sha``, read (here or through another
        acceptor) when the last SCRIPT FLUSH's number was ``number``; not
        if a later flush was applied here already (that flush came after
        it).  Whether it is cached now."""
        if number < self.last_flush:
            return False
        if sha in self.bodies:
            self.numbers[sha] = max(self.numbers.get(sha, number), number)
        else:
            self.bodies[sha] = body
            self.numbers[sha] = number
        return True

    def forget(self, sha: bytes, number: int) -> bool:
        """Forget the script ``sha``, which a shard did not compile (its Lua
        ran out of memory where the acceptor's check did not), if cached at
        ``number`` or before: the number it had when the refused call was
        sent (a later flush and load keep it).  Whether it was forgotten."""
        if sha not in self.bodies or self.numbers.get(sha, 0) > number:
            return False
        del self.bodies[sha]
        self.numbers.pop(sha, None)
        self.settled.discard(sha)
        self.escaping.pop(sha, None)
        for known in self.known.values():
            known.discard(sha)
        return True

    def flush(self, number: int) -> None:
        """SCRIPT FLUSH numbered ``number``: forget every script cached
        before it (a script read after it, through another acceptor, may
        reach this acceptor first: it stays) and what each shard knows."""
        self.flushes += 1
        if number > self.last_flush:
            self.last_flush = number
        numbers = self.numbers
        for sha in [sha for sha in self.bodies if numbers.get(sha, 0) < number]:
            del self.bodies[sha]
            numbers.pop(sha, None)
        self.known.clear()
        self.escaping.clear()
        self.exported.clear()
        self.settled.clear()


CACHE = ScriptCache()

_SCRIPT_BODIES = frozenset({"eval", "eval_ro", "evalsha", "evalsha_ro"})


def script_body(name: str, args: list[bytes]) -> bytes | None:
    """The body of an EVAL's script, or of an EVALSHA's if cached."""
    if name not in _SCRIPT_BODIES:
        return None
    return args[1] if name.startswith("eval_") or name == "eval" else CACHE.find(args[1].lower())


def declares_flags(body: bytes) -> bool:
    """Whether a script has a shebang (``#!lua``): its flags then say what
    it may do, as Redis's evalGetCommandFlags reads them."""
    return body.startswith(b"#!")


def declares_no_writes(body: bytes) -> bool:
    """Whether a script's shebang declares ``flags=no-writes``, read as
    Redis reads it (quotes, escapes, a NUL: see parse_shebang); an invalid
    shebang declares nothing."""
    try:
        flags, _skip = parse_shebang(body)
    except CommandError:
        return False
    return not flags & FLAG_COMPAT and bool(flags & FLAG_NO_WRITES)


def declares_denyoom(body: bytes) -> bool:
    """Whether a script's shebang makes its EVAL a ``denyoom`` command,
    refused at OOM before it runs, as Redis's scriptFlagsToCmdFlags makes
    it: flags that say neither ``no-writes`` nor ``allow-oom``.  An
    invalid shebang declares nothing (the script fails as it runs)."""
    if not body.startswith(b"#!"):
        return False
    try:
        flags, _skip = parse_shebang(body)
    except CommandError:
        return False
    return not flags & (FLAG_COMPAT | FLAG_NO_WRITES | FLAG_ALLOW_OOM)
