"""Scripts run with more KEYS and ARGV than Lua's C stack holds at once
(LUAI_MAXCSTACK, 8000): EVAL, EVALSHA (the lean one-key path too) and
FCALL, as in Redis, whose KEYS and ARGV tables are filled one string at a
time.  (They were passed to Lua as one call's arguments: past about 8000
every such run answered "internal error".)
"""

from __future__ import annotations

import pytest

# More than 8000, the most values a call from C may push onto Lua's stack.
MANY = [f"a{i}" for i in range(9000)]
SHOW = "return {#KEYS, #ARGV, KEYS[#KEYS] or '-', ARGV[#ARGV] or '-', ARGV[1] or '-'}"
LIBRARY = (
    "#!lua name=many\n"
    "redis.register_function{function_name='many', flags={'no-writes'}, callback=function(k, a)\n"
    "return {#k, #a, k[#k] or '-', a[#a] or '-', a[1] or '-'} end}"
)


def shown(nkeys: int) -> list:
    keys, argv = MANY[:nkeys], MANY[nkeys:]
    return [
        nkeys,
        len(argv),
        *(s[-1].encode() if s else b"-" for s in (keys, argv)),
        argv[0].encode() if argv else b"-",
    ]


@pytest.mark.parametrize("nkeys", [0, 1, 2, len(MANY)])
def test_eval_and_evalsha_with_many_arguments(r, nkeys):
    assert r.eval(SHOW, nkeys, *MANY) == shown(nkeys)
    assert r.evalsha(r.script_load(SHOW), nkeys, *MANY) == shown(nkeys)
    # The lean one-key path: a cached script, one key, then its arguments.
    sha = r.script_load("return {#ARGV, ARGV[#ARGV], tostring(redis.call('get', KEYS[1]))}")
    assert r.evalsha(sha, 1, "k", *MANY) == [len(MANY), MANY[-1].encode(), b"false"]
    assert r.execute_command("EVALSHA_RO", sha, 1, "k", *MANY) == [len(MANY), MANY[-1].encode(), b"false"]
    assert r.evalsha(sha, 1, "k", "x") == [1, b"x", b"false"]


@pytest.mark.parametrize("nkeys", [0, 1, len(MANY)])
def test_fcall_with_many_arguments(r, nkeys):
    r.function_load(LIBRARY, replace=True)
    try:
        assert r.fcall("many", nkeys, *MANY) == shown(nkeys)
        assert r.fcall_ro("many", nkeys, *MANY) == shown(nkeys)
    finally:
        r.function_delete("many")
