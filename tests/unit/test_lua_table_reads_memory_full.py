"""Python reads a Lua table (cjson.encode's array, a script's reply) in a
state near its limit: each read, ``t[i]`` from Python, is a C closure of
lupa's (40 bytes) made outside any protected call, garbage at once, which
no collection frees while the state is under its limit.  A table of 10000
values read with 70 KB of room hung the worker (cjson.encode: a jump over
the callable's Python frames, lupa holding the GIL), or with 400 KB of
room, the script ended, aborted it ("PANIC: unprotected error in call to
Lua API"); a reply that classify could not copy answered "internal
error".  Each case runs in its own process, with Lua states of SMALL
bytes (shardkv's are 256 MB), and a timeout for a hang."""

from __future__ import annotations

import subprocess
import sys

import pytest

pytestmark = pytest.mark.slow

SMALL = 4 << 20

_RUN = r"""
import sys
from shardkv.runtime import scriptsource
from shardkv.worker import scripting
from shardkv.worker.clock import FakeClock
from shardkv.worker.shard import Shard

scriptsource.LUA_MAX_MEMORY = scripting.LUA_MAX_MEMORY = int(sys.argv[1])
shard = Shard(0, 1, FakeClock())
shard.keyspace.tick()
reply = shard.execute([b"EVAL", sys.argv[2].encode(), b"0"])
print(reply.to_resp(False) if hasattr(reply, "to_resp") else repr(reply))
after = shard.execute([b"EVAL", b"return 7", b"0"])
print(repr(after))
"""

# The state filled but for ROOM bytes (a string of that size freed last),
# with BIG, an array of 10000 numbers, made before; then BODY.
FILL = """
local big = {}
for i = 1, 10000 do big[i] = i end
local nested = {}
for i = 1, 5000 do nested[i] = {i} end
local hold = {}
for i = 1, 20000 do hold[i] = false end
local n, c = 0, 0
local function put(size)
  hold[n + 1] = string.rep(string.char(c + 33), size)
  n = n + 1
end
local function fill(size)
  local again = true
  while size >= 16 do
    c = (c + 1) % 90
    if pcall(put, size) then again = true
    elseif again then collectgarbage() again = false
    else size = math.floor(size / 2) again = true end
  end
end
local room = string.rep('r', ROOM)
fill(2^20)
room = nil
collectgarbage()
BODY
"""

NOT_ENOUGH_MEMORY = "Error running script "


def _run(room: int, body: str) -> list[str]:
    script = FILL.replace("ROOM", str(room)).replace("BODY", body)
    done = subprocess.run(
        [sys.executable, "-c", _RUN, str(SMALL), script], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr[-2000:]
    lines = done.stdout.splitlines()
    assert len(lines) == 2, done.stderr[-2000:]
    assert lines[1] == "7"  # (the worker goes on)
    assert "internal error" not in done.stdout
    return lines


@pytest.mark.parametrize("table", ["big", "nested"])
def test_cjson_encode_of_a_long_table_with_little_room_fails_the_script(table):
    """Before: a hang (the timeout).  The reads' closures past PUSH_SLACK:
    the script fails with Lua's "not enough memory", the pcall cannot go on."""
    lines = _run(70000, "local ok, e = pcall(cjson.encode, %s) return 'went on'" % table)
    assert lines[0].startswith("Error('ERR " + NOT_ENOUGH_MEMORY), lines[0]
    assert lines[0].endswith(", not enough memory')"), lines[0]


def test_cjson_encode_of_a_long_table_with_room_after_a_collection():
    """The reads' closures are garbage: a collection makes room for them,
    and the encode goes through (no spurious "not enough memory")."""
    lines = _run(70000, "hold = nil local s = cjson.encode(big) return #s")
    assert lines[0] == "48895", lines[0]


@pytest.mark.parametrize("room", [20000, 200000, 400000])
def test_a_long_reply_of_a_full_state_is_given(room):
    """Before: 400 KB of room, the worker's abort (a read's closure);
    200 KB, "internal error" (classify's copy).  The script's own garbage
    (its fill) frees room enough once collected: the reply is given."""
    lines = _run(room, "return big")
    assert lines[0] == repr(b"*10000\r\n" + b"".join(b":%d\r\n" % i for i in range(1, 10001))), lines[0][:100]


def test_a_reply_that_fills_the_state_is_not_enough_memory():
    """A reply that itself fills the state (no collection makes room to
    read it): Lua's "not enough memory", not "internal error"."""
    lines = _run(20000, "return {hold, big, nested}")
    assert lines[0].startswith("Error('ERR " + NOT_ENOUGH_MEMORY), lines[0][:200]
    assert lines[0].endswith(", not enough memory')"), lines[0][-200:]
