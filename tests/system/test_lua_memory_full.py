"""Scripts that fill their Lua state's memory limit (shardkv's
scriptsource.LUA_MAX_MEMORY, 256 MB; SMALL here, set by a test-own
``main.py``: the fill's cost grows with it, the window does not), then
reach Python: redis.call's errors, deep in an xpcall handler too, the
libraries, redis.sha1hex.  lupa makes what goes into Lua there (an error
table, a result, a C closure for each of its protected calls) outside any
protected call: a failed allocation was a jump over the Python callable's
frames with lupa holding the GIL, and the worker crashed (SIGSEGV) or hung
for good, deaf to SIGTERM.  Each script fails with Lua's "not enough
memory" (the reply of a script past the limit, see test_scripting_libs's
pack past the limit), the worker goes on answering, and the server stops
promptly on SIGTERM.

Each script fills the state to within a few bytes (its pcalls of
string.rep refused, halving the size down to 16 bytes), then frees one
small reserve string after another, each 8 bytes longer than the last,
and calls the hostile function with that little room, under a pcall (a
failure of Lua's own is caught there and the next one tries with more
room): one of those rooms fits the Lua code on the way to Python and not
what Python then puts in, the window where the jump came."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from tests.support.servers import ROOT, start_shardkv

pytestmark = pytest.mark.slow

SMALL = 32 * 1024 * 1024  # each Lua state's limit here (shardkv's: 256 MB)

# Run in every process of the server (spawn runs it again as each
# process's __mp_main__): the worker's states and the acceptor's compile
# check alike get SMALL.
MAIN = f"""
import sys

from shardkv.runtime import scriptsource
from shardkv.worker import scripting

scriptsource.LUA_MAX_MEMORY = scripting.LUA_MAX_MEMORY = {SMALL}

if __name__ == "__main__":
    import shardkv.supervisor

    sys.exit(shardkv.supervisor.main())
"""

FILL = """
local hostile = function() %s end
local exit_room = string.rep('!', 1000000)
local reserve = {}
for i = 1, 100 do reserve[i] = string.rep(string.char(i %% 200 + 33), i * 8) end
local hold = {}
for i = 1, 200000 do hold[i] = false end
local chars = {}
for i = 1, 250 do chars[i] = string.char(i) end
local n, c = 0, 0
local function put(size)
  hold[n + 1] = string.rep(chars[c], size)
  n = n + 1
end
local function fill(size)
  local again = true
  while size >= 16 do
    c = c %% 250 + 1
    if pcall(put, size) then again = true
    elseif again then collectgarbage() again = false
    else size = math.floor(size / 2) again = true end
  end
end
fill(2^24)
for i = 1, 100 do
  reserve[i] = nil
  collectgarbage()
  pcall(hostile)
  fill(4096)
end
exit_room = nil
collectgarbage()
return 'room enough'
"""

HOSTILE = {
    "redis.call": "return redis.call('nope')",
    "xpcall": "return xpcall(function() redis.call('nope') end, function(e) return redis.call('nope') end)",
    "cjson.encode": "return cjson.encode({1, 2, 3, 'abc'})",
    "redis.sha1hex": "return redis.sha1hex('abc')",
    # a 0 (it may be -0): the script stops to run again wide (Engine._sign_unknown)
    "redis.call 0": "return redis.call('lrange', 'l', 0, -1)",
}

NOT_ENOUGH_MEMORY = r"^Error running script [0-9a-f]{40}, not enough memory$"


@pytest.mark.parametrize("shards", [1, 4])
def test_scripts_that_fill_lua_memory_then_call_python_fail_and_the_worker_goes_on(tmp_path: Path, shards):
    """Before: redis.call's first error with too little room crashed the
    worker ("shard unavailable") or hung it (a TimeoutError here)."""
    (tmp_path / "main.py").write_text(MAIN)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), *sys.path]))
    server = start_shardkv(shards=shards, root=tmp_path, env=env)
    client = redis.Redis(port=server.port, socket_timeout=30, retry=Retry(NoBackoff(), 0))
    try:
        client.set("k", "v")
        # (the limit is SMALL: a string of a quarter of it fits, one of
        # twice it, which shardkv's 256 MB holds, does not)
        assert client.eval(f"return #string.rep('x', {SMALL // 4})", 0) == SMALL // 4
        with pytest.raises(redis.ResponseError, match=NOT_ENOUGH_MEMORY):
            client.eval(f"return #string.rep('x', {2 * SMALL})", 0)
        for name, body in HOSTILE.items():
            with pytest.raises(redis.ResponseError, match=NOT_ENOUGH_MEMORY):
                client.eval(FILL % body, 1, "k")
            assert client.get("k") == b"v", name
            assert client.eval("return redis.call('get', KEYS[1])", 1, "k") == b"v", name
        assert "shard unavailable" not in server.output()
        assert "exited with" not in server.output()  # (a worker's crash, restarted)
    finally:
        client.close()
        start = time.monotonic()
        code = server.stop()
        took = time.monotonic() - start
    assert code == 0
    assert took < 5, took  # (a hung worker ignores SIGTERM: killed after the stop's timeout)
