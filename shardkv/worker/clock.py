"""The shard's clock, in milliseconds since the epoch, replaceable in tests."""

from __future__ import annotations

import time


class Clock:
    """Wall-clock milliseconds, as Redis's ``mstime()``."""

    def now_ms(self) -> int:
        return int(time.time() * 1000)


class FakeClock(Clock):
    """A clock that only moves when a test moves it."""

    def __init__(self, start_ms: int = 1_700_000_000_000) -> None:
        self.ms = start_ms

    def now_ms(self) -> int:
        return self.ms

    def advance(self, ms: int) -> None:
        self.ms += ms
