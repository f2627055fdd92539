"""The acceptor's script cache: SHA1 -> body, and which shards know which.

Apart from :mod:`shardkv.acceptor.scripting` because CLIENT PAUSE (is an
EVALSHA a write?), a disk error (may it write?) and INFO (the cache's
size) read it too.
"""

from __future__ import annotations


class ScriptCache:
    """The acceptor's script cache and what each shard knows of it."""

    def __init__(self) -> None:
        self.bodies: dict[bytes, bytes] = {}
        self.known: dict[int, set[bytes]] = {}
        # Scripts that once needed other shards: sha -> (every shard?, the
        # undeclared keys they used).
        self.escaping: dict[bytes, tuple[int, list]] = {}
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

    def forget(self, sha: bytes, number: int | None = None) -> int | None:
        """Forget the script ``sha``, which a shard did not compile (its Lua
        ran out of memory where the acceptor's check did not): if cached at
        ``number`` or before (a later flush and load keep it), or at any
        number.  The number it had, or None if it was not cached."""
        had = self.numbers.get(sha)
        if sha not in self.bodies or (number is not None and had is not None and had > number):
            return None
        del self.bodies[sha]
        self.numbers.pop(sha, None)
        self.settled.discard(sha)
        self.escaping.pop(sha, None)
        for known in self.known.values():
            known.discard(sha)
        return had or 0

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
        self.settled.clear()


CACHE = ScriptCache()

_SCRIPT_BODIES = frozenset({"eval", "eval_ro", "evalsha", "evalsha_ro"})


def script_body(name: str, args: list[bytes]) -> bytes | None:
    """The body of an EVAL's script, or of an EVALSHA's if cached."""
    if name not in _SCRIPT_BODIES:
        return None
    return args[1] if name.startswith("eval_") or name == "eval" else CACHE.bodies.get(args[1].lower())


def declares_flags(body: bytes) -> bool:
    """Whether a script has a shebang (``#!lua``): its flags then say what
    it may do, as Redis's evalGetCommandFlags reads them."""
    return body.startswith(b"#!")


def declares_no_writes(body: bytes) -> bool:
    """Whether a script's shebang declares ``flags=no-writes``."""
    for word in body.split(b"\n", 1)[0].split()[1:]:
        if word.startswith(b"flags=") and b"no-writes" in word[6:].split(b","):
            return True
    return False
