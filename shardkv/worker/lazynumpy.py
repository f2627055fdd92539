"""numpy, imported at its first use: ``from shardkv.worker.lazynumpy import np``.

numpy takes about as long to import as the rest of a worker's code
together, and only some commands need it (GEO*, PF*, BITCOUNT over long
strings, DUMP and RESTORE of large values, the RDB's CRC).  Each worker
is a process of its own (the supervisor's ``spawn`` context), so a worker
that never runs one of them need not pay for numpy at start-up.  ``np``
is a module object that loads numpy on its first attribute access
(:class:`importlib.util.LazyLoader`), after which it is numpy itself.
The modules that use it compute their numpy constants at first use too.
"""

from __future__ import annotations

import importlib.util
import sys
from types import ModuleType
from typing import TYPE_CHECKING


def _lazy(name: str) -> ModuleType:
    """Module ``name``, loaded at its first attribute access (the loaded
    module itself if something imported it already)."""
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.find_spec(name)
    if spec is None or spec.loader is None:
        raise ImportError(f"no module named {name!r}", name=name)
    loader = importlib.util.LazyLoader(spec.loader)
    spec.loader = loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    loader.exec_module(module)
    return module


if TYPE_CHECKING:
    import numpy as np
else:
    np = _lazy("numpy")

__all__ = ["np"]
