"""Geospatial commands compared with a real redis-server: every ``compare``
asserts identical replies (digits of distances and coordinates included,
errors included) in RESP3 and RESP2; a Hypothesis test compares GEOSEARCH
and GEORADIUS over random points and areas.  ``dst`` and ``src`` live on
different shards of four, so GEOSEARCHSTORE and STORE run across shards.
"""

from __future__ import annotations

import random

import pytest
import redis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

SICILY = ["13.361389", "38.115556", "Palermo", "15.087269", "37.502669", "Catania"]


def _cities(compare) -> None:
    compare("GEOADD", "src", *SICILY)
    compare("GEOADD", "src", "12.758489", "38.788135", "edge1", "17.241510", "38.788135", "edge2")
    compare("GEOADD", "src", "15.087269", "37.502669", "twin")


def test_geoadd_options(compare):
    compare("GEOADD", "k", *SICILY)
    compare("GEOADD", "k", "CH", "13.361389", "38.115556", "Palermo", "1", "1", "new")
    compare("GEOADD", "k", "NX", "CH", "10", "10", "Palermo", "2", "2", "other")
    compare("GEOADD", "k", "XX", "CH", "10", "10", "Palermo", "2", "2", "missing")
    compare("GEOADD", "k", "xx", "nx", "1", "1", "a")
    compare("GEOADD", "k", "XX", "1", "1")
    compare("GEOADD", "k", "CH", "CH", "CH")
    compare("GEOADD", "k", "GT", "1", "1", "a")
    compare("ZRANGE", "k", 0, -1, "WITHSCORES")
    compare("TYPE", "k")
    compare("GEOADD", "k", "181", "0", "a")
    compare("GEOADD", "k", "0", "86", "a")
    compare("GEOADD", "k", "-180", "-85.05112878", "corner1", "180", "85.05112878", "corner2")
    compare("GEOPOS", "k", "corner1", "corner2")
    compare("GEOADD", "k", "abc", "1", "a")
    compare("GEOADD", "k", "1", "nan", "a")
    compare("GEOADD", "k", "inf", "1", "a")
    compare("SET", "s", "x")
    compare("GEOADD", "s", "1", "1", "a")


def test_geodist_geohash_geopos(compare):
    _cities(compare)
    for unit in ([], ["m"], ["km"], ["ft"], ["mi"], ["KM"], ["Mi"], ["parsec"], ["km", "extra"]):
        compare("GEODIST", "src", "Palermo", "Catania", *unit)
    compare("GEODIST", "src", "Palermo", "Palermo")
    compare("GEODIST", "src", "Palermo", "nope")
    compare("GEODIST", "nokey", "a", "b")
    compare("GEODIST", "nokey", "a", "b", "parsec")
    compare("GEOHASH", "src", "Palermo", "Catania", "edge1", "nope")
    compare("GEOHASH", "nokey", "a")
    compare("GEOHASH", "src")
    compare("GEOPOS", "src", "Palermo", "Catania", "edge2", "nope")
    compare("GEOPOS", "nokey", "a", "b")
    compare("ZADD", "plain", "-5", "neg", "inf", "big", "0", "zero", "1e30", "huge")
    compare("GEOPOS", "plain", "neg", "big", "zero", "huge")
    compare("GEOHASH", "plain", "neg", "big", "zero", "huge")
    compare("GEODIST", "plain", "neg", "huge")
    compare("SET", "s", "x")
    compare("GEOPOS", "s", "a")
    compare("GEOHASH", "s", "a")
    compare("GEODIST", "s", "a", "b")


SEARCHES = [
    ["GEORADIUS", "src", "15", "37", "200", "km"],
    ["GEORADIUS", "src", "15", "37", "200", "km", "WITHDIST", "WITHCOORD", "WITHHASH"],
    ["GEORADIUS", "src", "15", "37", "200", "km", "WITHDIST", "ASC"],
    ["GEORADIUS", "src", "15", "37", "200", "km", "WITHDIST", "DESC"],
    ["GEORADIUS", "src", "15", "37", "200", "km", "COUNT", "1"],
    ["GEORADIUS", "src", "15", "37", "200", "km", "COUNT", "2", "DESC", "WITHDIST"],
    ["GEORADIUS", "src", "15", "37", "200", "km", "COUNT", "1", "ANY"],
    ["GEORADIUS", "src", "15", "37", "2000", "mi", "WITHCOORD"],
    ["GEORADIUS", "src", "15", "37", "0", "km"],
    ["GEORADIUS", "src", "15", "37", "20000", "km", "ASC"],
    ["GEORADIUS_RO", "src", "15", "37", "200", "km", "ASC", "WITHDIST"],
    ["GEORADIUSBYMEMBER", "src", "Palermo", "200", "km", "WITHDIST", "ASC"],
    ["GEORADIUSBYMEMBER", "src", "Palermo", "0", "km"],
    ["GEORADIUSBYMEMBER_RO", "src", "Catania", "100", "mi", "ASC"],
    ["GEOSEARCH", "src", "FROMLONLAT", "15", "37", "BYRADIUS", "200", "km", "ASC", "WITHDIST"],
    ["GEOSEARCH", "src", "FROMMEMBER", "Palermo", "BYBOX", "400", "400", "km", "ASC", "WITHDIST"],
    ["GEOSEARCH", "src", "FROMLONLAT", "15", "38", "BYBOX", "400", "146.5", "km", "ASC", "WITHCOORD"],
    ["GEOSEARCH", "src", "FROMLONLAT", "15", "37", "BYBOX", "1000", "1000", "ft", "ASC"],
    ["GEOSEARCH", "src", "FROMLONLAT", "15", "37", "BYRADIUS", "300", "KM", "DESC", "COUNT", "2", "WITHHASH"],
    ["GEOSEARCH", "src", "FROMLONLAT", "15", "37", "BYRADIUS", "300", "KM", "COUNT", "2", "ANY"],
]

ERRORS = [
    ["GEORADIUS", "src", "15", "37", "-1", "km"],
    ["GEORADIUS", "src", "15", "37", "x", "km"],
    ["GEORADIUS", "src", "15", "37", "1", "parsec"],
    ["GEORADIUS", "src", "15", "100", "1", "km"],
    ["GEORADIUS", "src", "15", "37", "100", "km", "COUNT", "0"],
    ["GEORADIUS", "src", "15", "37", "100", "km", "COUNT", "x"],
    ["GEORADIUS", "src", "15", "37", "100", "km", "COUNT"],
    ["GEORADIUS", "src", "15", "37", "100", "km", "ANY"],
    ["GEORADIUS", "src", "15", "37", "100", "km", "STORE", "dst", "WITHDIST"],
    ["GEORADIUS", "src", "15", "37", "100", "km", "bogus"],
    ["GEORADIUS_RO", "src", "15", "37", "100", "km", "STORE", "dst"],
    ["GEORADIUSBYMEMBER", "src", "nope", "100", "km"],
    ["GEORADIUSBYMEMBER", "nokey", "nope", "100", "parsec"],
    ["GEOSEARCH", "src", "BYRADIUS", "100", "km"],
    ["GEOSEARCH", "src", "FROMLONLAT", "15", "37"],
    ["GEOSEARCH", "src", "FROMMEMBER", "nope", "BYRADIUS", "100", "km"],
    ["GEOSEARCH", "src", "FROMMEMBER", "Palermo", "FROMLONLAT", "1", "1", "BYRADIUS", "1", "km"],
    ["GEOSEARCH", "src", "FROMLONLAT", "1", "1", "BYRADIUS", "1", "km", "BYBOX", "1", "1", "km"],
    ["GEOSEARCH", "src", "FROMLONLAT", "1", "1", "BYBOX", "-1", "1", "km"],
    ["GEOSEARCH", "src", "FROMLONLAT", "1", "1", "BYBOX", "w", "1", "km"],
    ["GEOSEARCH", "src", "FROMLONLAT", "1", "1", "BYBOX", "1", "h", "km"],
    ["GEOSEARCH", "src", "FROMLONLAT", "1", "1", "BYRADIUS", "1", "km", "STORE", "x"],
    ["GEOSEARCH", "src", "FROMLONLAT", "1", "1", "BYRADIUS", "1", "km", "STOREDIST"],
    ["geoSearch", "nokey", "FROMLONLAT", "1", "1"],
    ["GEOSEARCH", "nokey", "FROMMEMBER", "x", "BYRADIUS", "1", "km"],
    ["GEOSEARCHSTORE", "dst", "src", "FROMLONLAT", "1", "1", "BYRADIUS", "1", "km", "WITHDIST"],
]


def test_searches(compare):
    _cities(compare)
    for args in SEARCHES:
        compare(*args)
    for args in ERRORS:
        compare(*args)
    compare("SET", "s", "x")
    compare("GEOSEARCH", "s", "FROMLONLAT", "1", "1", "BYRADIUS", "1", "km")
    compare("GEORADIUS", "s", "15", "37", "100", "km")


def test_store_across_shards(compare):
    _cities(compare)
    compare("GEOSEARCHSTORE", "dst", "src", "FROMLONLAT", "15", "37", "BYBOX", "400", "400", "km", "ASC")
    compare("ZRANGE", "dst", 0, -1, "WITHSCORES")
    compare("GEOSEARCHSTORE", "dst", "src", "FROMLONLAT", "15", "37", "BYRADIUS", "200", "km", "STOREDIST")
    compare("ZRANGE", "dst", 0, -1, "WITHSCORES")
    compare("GEOSEARCHSTORE", "dst", "src", "FROMLONLAT", "0", "0", "BYRADIUS", "1", "km")
    compare("EXISTS", "dst")
    compare("SET", "dst", "x")
    compare("GEORADIUS", "src", "15", "37", "200", "km", "STORE", "dst")
    compare("ZRANGE", "dst", 0, -1, "WITHSCORES")
    compare("GEORADIUS", "src", "15", "37", "200", "km", "STOREDIST", "dst", "COUNT", "2", "DESC")
    compare("ZRANGE", "dst", 0, -1, "WITHSCORES")
    compare("GEORADIUSBYMEMBER", "src", "Palermo", "200", "km", "STORE", "other", "STOREDIST", "dst")
    compare("ZRANGE", "dst", 0, -1, "WITHSCORES")
    compare("EXISTS", "other")
    compare("GEORADIUS", "nokey", "15", "37", "200", "km", "STORE", "dst")
    compare("EXISTS", "dst")
    compare("GEOSEARCHSTORE", "dst", "nokey", "FROMMEMBER", "x", "BYRADIUS", "1", "km")


def test_many_points_and_huge_radius(compare):
    rng = random.Random(4)
    args = []
    for i in range(400):
        args += [f"{rng.uniform(-180, 180):.6f}", f"{rng.uniform(-85, 85):.6f}", f"p{i}"]
    compare("GEOADD", "src", *args)
    for lon, lat in ((0, 0), (179.9, 84), (-179.9, -84), (100, -30)):
        for radius in ("10", "500", "3000", "8000", "25000"):
            compare("GEORADIUS", "src", lon, lat, radius, "km", "ASC", "WITHDIST")
            compare(
                "GEOSEARCH", "src", "FROMLONLAT", lon, lat, "BYBOX", radius, radius, "km", "DESC", "WITHCOORD"
            )
            compare("GEORADIUS", "src", lon, lat, radius, "km", "COUNT", "3", "ANY")


def test_infinite_and_out_of_range_radius(compare):
    """An infinite radius or box side is a number (C's cos(inf) is NaN, and
    Redis searches the nine boxes of step 1); a radius that overflows or
    underflows strtod (1e309, 1e-400) is not, nor is a coordinate that does."""
    compare(
        "GEOADD", "g", "0", "0", "a", "100", "50", "b", "-120", "-70", "c", "179", "84", "d", "10", "-5", "e"
    )
    for lon, lat in (("0", "0"), ("100", "80"), ("0", "-60"), ("-179", "-84")):
        compare("GEOSEARCH", "g", "FROMLONLAT", lon, lat, "BYRADIUS", "inf", "m", "WITHDIST", "ASC")
        compare("GEORADIUS", "g", lon, lat, "inf", "km")
        compare("GEORADIUS", "g", lon, lat, "1e300", "km", "DESC")
        compare("GEOSEARCH", "g", "FROMLONLAT", lon, lat, "BYBOX", "1", "inf", "m", "WITHCOORD")
        compare("GEOSEARCH", "g", "FROMLONLAT", lon, lat, "BYBOX", "inf", "1", "m")
        compare("GEOSEARCH", "g", "FROMLONLAT", lon, lat, "BYBOX", "inf", "inf", "km", "ASC")
    compare("GEORADIUSBYMEMBER", "g", "a", "inf", "km", "WITHDIST", "ASC")
    for bad in ("1e309", "-1e309", "1e-400", "nan", "0x1p99999"):
        compare("GEORADIUSBYMEMBER", "g", "a", bad, "km")
        compare("GEOSEARCH", "g", "FROMMEMBER", "a", "BYRADIUS", bad, "m")
        compare("GEOSEARCH", "g", "FROMMEMBER", "a", "BYBOX", bad, "1", "m")
        compare("GEOSEARCH", "g", "FROMMEMBER", "a", "BYBOX", "1", bad, "m")
        compare("GEOADD", "g", bad, "1", "x")
    compare("GEOADD", "g", "0x1p-2", "0X10", "hex")
    compare("GEOSEARCH", "g", "FROMLONLAT", "0x0", "0", "BYRADIUS", "0x10p10", "km", "ASC")
    compare("GEOSEARCH", "g", "FROMLONLAT", "0", "0", "BYRADIUS", "0e-400", "m")


@pytest.fixture(scope="module")
def pair(ports):
    real = redis.Redis(port=ports["redis"])
    ours = redis.Redis(port=ports["shardkv"])
    yield real, ours
    real.close()
    ours.close()


_lon = st.floats(-180, 180, allow_nan=False)
_lat = st.floats(-85.05112878, 85.05112878, allow_nan=False)


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    points=st.lists(st.tuples(_lon, _lat), min_size=1, max_size=60, unique=True),
    center=st.tuples(_lon, _lat),
    radius=st.floats(0, 21000, allow_nan=False),
    box=st.tuples(st.floats(0, 40000, allow_nan=False), st.floats(0, 40000, allow_nan=False)),
    unit=st.sampled_from(["m", "km", "mi", "ft"]),
    count=st.integers(0, 10),
)
def test_hypothesis_geosearch(pair, points, center, radius, box, unit, count):
    """GEOSEARCH (circle and box) and GEORADIUS equal redis-server's."""
    real, ours = pair
    args = []
    for i, (lon, lat) in enumerate(points):
        args += [repr(lon), repr(lat), f"m{i}"]
    for c in (real, ours):
        c.delete("g")
        c.execute_command("GEOADD", "g", *args)
    scale = {"m": 1000, "km": 1, "mi": 1, "ft": 3000}[unit]
    limit = ["COUNT", count] if count else []
    lon, lat = repr(center[0]), repr(center[1])
    queries = [
        ["GEOSEARCH", "g", "FROMLONLAT", lon, lat, "BYRADIUS", repr(radius * scale), unit, "ASC", "WITHDIST", "WITHCOORD", *limit],
        ["GEOSEARCH", "g", "FROMLONLAT", lon, lat, "BYBOX", repr(box[0] * scale), repr(box[1] * scale), unit, "WITHDIST", "WITHHASH"],
        ["GEOSEARCH", "g", "FROMMEMBER", "m0", "BYRADIUS", repr(radius * scale), unit, "DESC", "WITHDIST", *limit],
        ["GEORADIUS", "g", lon, lat, repr(radius * scale), unit, "WITHDIST"],
        ["GEODIST", "g", "m0", f"m{len(points) - 1}", unit],
    ]  # fmt: skip
    for q in queries:
        assert ours.execute_command(*q) == real.execute_command(*q), q


def test_ties_in_partial_sorts(compare):
    """Points at one position tie on distance: COUNT sorts part of them with
    Redis's partial quicksort, and the order of ties must be Redis's."""
    args = []
    for i in range(60):
        args += ["0", "0" if i % 3 else "1e-200", f"m{i}"]
    for i in range(60):
        args += ["0.001", str(0.0001 * (i % 4)), f"n{i}"]
    compare("GEOADD", "g", *args)
    for count in (1, 5, 13, 40, 59, 61, 119, 120, 500):
        compare("GEOSEARCH", "g", "FROMLONLAT", "0", "0", "BYRADIUS", "1", "km", "ASC", "COUNT", count)
        compare("GEOSEARCH", "g", "FROMLONLAT", "0", "0", "BYRADIUS", "1", "km", "DESC", "COUNT", count)
        compare("GEORADIUS", "g", "0", "0", "1", "km", "COUNT", count, "WITHDIST")


def test_geo_from_scripts(compare):
    compare("GEOADD", "g", *SICILY)
    compare("EVAL", "return redis.call('GEOPOS', KEYS[1], 'Palermo', 'nope')", 1, "g")
    compare("EVAL", "redis.setresp(3) return redis.call('GEOPOS', KEYS[1], 'Palermo')", 1, "g")
    compare(
        "EVAL",
        "return redis.call('GEOSEARCH', KEYS[1], 'FROMLONLAT', 15, 37, 'BYRADIUS', 200, 'km', 'ASC', 'WITHCOORD', 'WITHDIST')",
        1,
        "g",
    )
    compare("EVAL", "return redis.call('GEODIST', KEYS[1], 'Palermo', 'Catania', 'km')", 1, "g")
