"""Name a process so that `ps` and `top` show its role."""

from __future__ import annotations

import ctypes
import ctypes.util

PR_SET_NAME = 15


def set_name(name: str) -> None:
    """Set the kernel's name of this process (15 bytes at most; Linux only)."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
        libc.prctl(PR_SET_NAME, name.encode()[:15], 0, 0, 0)
    except (OSError, AttributeError):
        pass
