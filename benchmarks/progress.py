"""Progress lines on stderr, stamped with the seconds since the run began."""

from __future__ import annotations

import sys
import time


class Progress:
    """Call it with a message to print `[   12.3s] message` to stderr."""

    def __init__(self, quiet: bool = False) -> None:
        self.started = time.monotonic()
        self.quiet = quiet

    @property
    def elapsed(self) -> float:
        """Seconds since this object was made."""
        return time.monotonic() - self.started

    def __call__(self, message: str) -> None:
        if not self.quiet:
            print(f"[{self.elapsed:8.1f}s] {message}", file=sys.stderr, flush=True)
