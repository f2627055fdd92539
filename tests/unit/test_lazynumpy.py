"""A worker's start-up does not import numpy: only the commands that use
it do (see shardkv.worker.lazynumpy)."""

from __future__ import annotations

import subprocess
import sys

from tests.support.servers import ROOT

# In a fresh interpreter: this one's tests may have imported numpy already.
_CHECK = """
import sys
import shardkv.supervisor, shardkv.worker.loop, shardkv.worker.wiring
loaded = sorted(name for name in sys.modules if name.startswith("numpy."))
print(loaded[:5])
sys.exit(1 if loaded else 0)
"""

_USE = """
import os
from shardkv.worker.commands.dump import crc64, _crc64_bytewise
from shardkv.worker.commands.bitmaps import _popcount
data = os.urandom(3 << 20)
assert crc64(data) == _crc64_bytewise(data)
assert _popcount(data) == int.from_bytes(data, "big").bit_count()
"""


def _run(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)


def test_worker_code_imports_no_numpy():
    result = _run(_CHECK)
    assert result.returncode == 0, f"numpy imported at start-up: {result.stdout}{result.stderr}"


def test_numpy_paths_work_once_loaded():
    # The CRC of a large payload and BITCOUNT of a long string take numpy's path.
    result = _run(_USE)
    assert result.returncode == 0, result.stderr
