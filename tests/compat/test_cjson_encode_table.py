"""cjson.encode against redis-server over a generated table of several
hundred cases: numbers at each place a number is written (the argument,
an array's item, an object's value, a key), with each precision and each
encode_invalid_numbers setting, sparse arrays under each
encode_sparse_array setting, keys of each kind mixed, encode_max_depth at
its edges, strings that need escapes, and random nested tables.

The encoder writes the usual numbers inline (lualibs.CJson._array_items,
_object_items, _array_length): every path must write what lua_cjson's
json_append_number writes.  Each case is a Lua chunk run under pcall, its
results shown as text (so an error, a nil or a false stays in the reply);
the cases go in batches, one EVAL each, to keep the table fast.
"""

from __future__ import annotations

import random

import redis

# Numbers as Lua expressions (``z`` is a local 0, ``z*-1`` is -0): around
# 2^31, 2^53 and 2^63 (lupa hands Python an integral number in a C long's
# range as an int, past it as a float), integral floats past %.14g's
# digits, fractions, exponents at both ends, inf and nan.
NUMBERS = [
    "0", "z*-1", "1", "-1", "7", "-7", "2^53", "2^53+1", "2^53-1", "-2^53", "-(2^53+1)", "2^63", "-2^63",
    "2^63-1024", "2^63+2048", "2^64", "-2^64", "2^31", "2^31-1", "-2^31", "-2^31-1", "2^32", "2^32+1",
    "1e15", "1e16", "1e17", "-1e17", "123456789012345678", "-123456789012345678", "12345678901234",
    "123456789012345", "1234567890123456", "99999999999999", "999999999999999", "0.1", "1/3", "-1/3",
    "1e300", "-1e300", "1e-300", "5e-324", "2^1023", "2^-1074", "1.5", "-1.5", "100", "0.5", "2.5e-5",
    "1e21", "1e-5", "123.456", "-0.0001", "4503599627370495.5", "0.30000000000000004",
    "1/0", "-1/0", "0/0", "-(0/0)",
]  # fmt: skip

# Keys as Lua expressions: integers that make an array and those that do
# not (0, negative, past INT_MAX), floats, inf and nan, strings.
KEYS = [
    "1", "2", "0", "z*-1", "-1", "1.5", "-1.5", "2^31-1", "2^31", "2^32", "2^53", "2^63", "-2^63", "1e300",
    "0.5", "1/0", "-1/0", "'a'", "'1'", "'\\0'", "3", "10", "11", "1e15",
]  # fmt: skip

OTHER_VALUES = [
    "true", "false", "'x'", "''", "'a\"b\\\\c/d\\n\\r\\t\\b\\f\\1\\31\\127\\128\\255'", "cjson.null", "{}",
    "'\\226\\130\\172'", "string.rep('\\0', 3)", "function() end",
]  # fmt: skip

SPARSE_TABLES = [
    "{[1]=1, [3]=3}", "{[1]=1, [11]=2}", "{[1]=1, [100]=2}", "{[20]=1}", "{[10]=1}", "{[11]=1}", "{nil, nil, 3}",
    "{[2^31]=1}", "{[2^31]=1, [2^31+1]=2}", "{[1.0]=1, [2]=2}", "{[1]=1, [2]=2, [2.5]=3}", "{1, 2, a=3}",
    "{[0]=0, 1}", "{[-1]=0, 1}", "{[2^53]=1}", "{[1]=1, [2]=2, [5]=5}", "{[1]=1, [2]=2, [6]=5}",
    "{[1]=1, [4]=4, [5]=5, [9]=9, [10]=10, [11]=11, [12]=12}",
]  # fmt: skip
# ({[2^31-1]=1} only with the defaults: with a ratio of 0 it is an array
# of 2^31-1 nulls, which redis-server dies building)


def _cases() -> list[str]:
    cases = []
    for n in NUMBERS:
        cases += [
            f"return cjson.encode({n})",
            f"return cjson.encode({{{n}}})",
            f"return cjson.encode({{1, {n}, -3}})",
            f"return cjson.encode({{a={n}}})",
            f"local t = {{}} t[{n}] = 1 return cjson.encode(t)",
        ]
    # each precision, the numbers at each place
    some = ["1", "-7", "2^53+2", "1e17", "123456789012345678", "1/3", "-2^63", "0.1", "1e-300", "12345", "98765.4321"]  # fmt: skip
    for p in ["'5'", "5.5", "nil", "2^32+3"] + [str(i) for i in range(1, 15)]:
        for n in some:
            cases.append(
                f"local c = cjson.new() c.encode_number_precision({p}) return c.encode({{{n}, x={n}, [{n}]=1}})"
            )
    for p in ["0", "15", "-1", "2^31", "'x'", "{}"]:
        cases.append(f"local c = cjson.new() return c.encode_number_precision({p})")
    # inf and nan at each place, with each encode_invalid_numbers setting
    for setting in ["'on'", "'off'", "'null'", "true", "false", "'x'", "nil", "1"]:
        for n in ["1/0", "-1/0", "0/0", "-(0/0)"]:
            for value in [n, f"{{{n}}}", f"{{a={n}}}", f"{{[{n}]=1}}", f"{{2, {n}, b={{{n}}}}}"]:
                cases.append(
                    f"local c = cjson.new() c.encode_invalid_numbers({setting}) return c.encode({value})"
                )
    # sparse arrays with each encode_sparse_array setting (one case each:
    # every table's result or error, joined)
    cases.append("return cjson.encode({[2^31-1]=1})")
    for convert in ["true", "false", "'on'", "nil"]:
        for ratio, safe in [("nil", "nil"), ("0", "nil"), ("1", "0"), ("3", "5"), ("2", "20"), ("1", "1")]:
            each = " ".join(f"r[#r + 1] = select(2, pcall(c.encode, {t}))" for t in SPARSE_TABLES)
            cases.append(
                f"local c, r = cjson.new(), {{}} c.encode_sparse_array({convert}, {ratio}, {safe}) {each}"
                " return table.concat(r, ' ')"
            )
    # encode_max_depth at its edges, arrays and objects
    for most in [1, 2, 3, 10]:
        for depth in range(max(most - 1, 1), most + 2):
            for nest in ["{t}", "{a=t}"]:
                cases.append(
                    f"local c = cjson.new() c.encode_max_depth({most}) local t = 1"
                    f" for i = 1, {depth} do t = {nest} end return c.encode(t)"
                )
    for most in ["0", "-1", "2^31", "'x'", "1.5", "'3'"]:
        cases.append(f"return cjson.new().encode_max_depth({most})")
    for v in OTHER_VALUES:
        cases += [
            f"return cjson.encode({v})",
            f"return cjson.encode({{{v}, 1}})",
            f"return cjson.encode({{k={v}}})",
        ]
    # keys mixed: two in one table
    for a in KEYS:
        for b in KEYS[::3]:
            cases.append(f"local t = {{}} t[{a}] = 'x' t[{b}] = 2^53+2 return cjson.encode(t)")
    # random nested tables, with a random precision and invalid numbers' setting
    rng = random.Random(28)
    leaves = NUMBERS + ["true", "'s'", "cjson.null"]

    def table(depth: int) -> str:
        r = rng.random()
        if depth > 3 or r < 0.5:
            return rng.choice(leaves)
        if r < 0.75:
            return "{" + ", ".join(table(depth + 1) for _ in range(rng.randint(0, 5))) + "}"
        return "{" + ", ".join(f"k{i}={table(depth + 1)}" for i in range(rng.randint(1, 4))) + "}"

    for _ in range(150):
        setting = rng.choice(["true", "false", "'null'"])
        cases.append(
            f"local c = cjson.new() c.encode_number_precision({rng.randint(1, 14)})"
            f" c.encode_invalid_numbers({setting}) return c.encode({table(0)})"
        )
    return cases


CASES = _cases()
BATCH = 100

# Each case's results under pcall, as text: their count, then each.
_SHOW = """local function show(...)
  local r = {select('#', ...)}
  for i = 1, r[1] do r[i + 1] = tostring((select(i, ...))) end
  return table.concat(r, ' | ')
end
local z, out = 0, {}
"""


def _batch(cases: list[str]) -> str:
    return (
        _SHOW
        + "".join(f"out[{i}] = show(pcall(function() {c} end))\n" for i, c in enumerate(cases, 1))
        + "return out"
    )


def test_cjson_encode_answers_as_redis(ports):
    real = redis.Redis(port=ports["redis"], socket_timeout=30)
    ours = redis.Redis(port=ports["shardkv"], socket_timeout=30)
    try:
        for start in range(0, len(CASES), BATCH):
            cases = CASES[start : start + BATCH]
            script = _batch(cases)
            expected, got = real.eval(script, 0), ours.eval(script, 0)
            assert len(got) == len(expected) == len(cases)
            for case, e, g in zip(cases, expected, got, strict=True):
                assert g == e, f"{case}: redis gave {e!r}, shardkv gave {g!r}"
    finally:
        real.close()
        ours.close()
