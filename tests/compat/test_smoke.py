"""A first end-to-end check through both servers."""


def test_set_get(r):
    assert r.set("k", "v") is True
    assert r.get("k") == b"v"


def test_compare_errors(compare):
    compare("SET", "k", "v")
    compare("GET", "k")
    compare("INCR", "k")
    compare("GET", "k", "x")
    compare("NOSUCHCOMMAND", "a", "b")
    compare("MSET", "a", "1", "b", "2", "c", "3", "d", "4", "e", "5")
    compare("MGET", "a", "b", "c", "d", "e", "nope")
    compare("DEL", "a", "b", "c", "nope")
    compare("MSET", "a", "1", "b")


def test_cross_shard_commands(compare):
    compare("MSET", "a", "1", "b", "2", "c", "3", "d", "4")
    compare("MSETNX", "a", "1", "x", "2")
    compare("MSETNX", "x", "1", "y", "2", "z", "3")
    compare("MGET", "x", "y", "z")
    compare("SET", "t", "v", "EX", "100")
    compare("RENAME", "t", "zz")
    compare("TTL", "zz")
    compare("RENAMENX", "zz", "a")
    compare("RENAME", "nope", "a")
    compare("COPY", "zz", "q")
    compare("MGET", "q", "zz", "t")
