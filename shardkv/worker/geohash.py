"""Redis's geohash: 52-bit scores, neighbour boxes and distances.

The arithmetic of ``src/geohash.c`` and ``src/geohash_helper.c`` (Redis
7.0), step for step and in the same double-precision operations, so that
scores, positions, the boxes a search visits and the distances are the
ones redis-server computes, to the last digit.

A position is encoded in 26 steps: latitude and longitude each become a
26-bit fraction of their range (latitude -85.05112878..85.05112878, as
in Web Mercator), interleaved with latitude in the even bits.  The 52-bit
integer is the member's score in the sorted set.
"""

from __future__ import annotations

import math

from shardkv.worker.lazynumpy import np

LONG_MIN = -180.0
LONG_MAX = 180.0
LAT_MIN = -85.05112878
LAT_MAX = 85.05112878
STEP_MAX = 26
EARTH_RADIUS_IN_METERS = 6372797.560856
MERCATOR_MAX = 20037726.37
D_R = math.pi / 180.0

WGS84 = ((LONG_MIN, LONG_MAX), (LAT_MIN, LAT_MAX))
STANDARD = ((-180.0, 180.0), (-90.0, 90.0))  # GEOHASH's strings use these

_M64 = (1 << 64) - 1
_B = (0x5555555555555555, 0x3333333333333333, 0x0F0F0F0F0F0F0F0F, 0x00FF00FF00FF00FF, 0x0000FFFF0000FFFF)


def interleave64(xlo: int, ylo: int) -> int:
    """x in the even bits, y in the odd ones."""
    x, y = xlo, ylo
    for s, b in ((16, _B[4]), (8, _B[3]), (4, _B[2]), (2, _B[1]), (1, _B[0])):
        x = (x | (x << s)) & b
        y = (y | (y << s)) & b
    return x | (y << 1)


def deinterleave64(v: int) -> int:
    """The even bits in the low 32, the odd ones in the high 32."""
    x = v
    y = v >> 1
    for s, b in ((0, _B[0]), (1, _B[1]), (2, _B[2]), (4, _B[3]), (8, _B[4]), (16, 0x00000000FFFFFFFF)):
        x = (x | (x >> s)) & b
        y = (y | (y >> s)) & b
    return x | (y << 32)


def encode(lon: float, lat: float, step: int = STEP_MAX, ranges=WGS84) -> int | None:
    """``geohashEncode``: the hash bits of a position, None outside the ranges."""
    (lon_min, lon_max), (lat_min, lat_max) = ranges
    if lon > LONG_MAX or lon < LONG_MIN or lat > LAT_MAX or lat < LAT_MIN:
        return None
    if lat < lat_min or lat > lat_max or lon < lon_min or lon > lon_max:
        return None
    lat_offset = (lat - lat_min) / (lat_max - lat_min) * float(1 << step)
    lon_offset = (lon - lon_min) / (lon_max - lon_min) * float(1 << step)
    return interleave64(int(lat_offset) & 0xFFFFFFFF, int(lon_offset) & 0xFFFFFFFF)


def decode(bits: int, step: int, ranges=WGS84) -> tuple[float, float, float, float]:
    """``geohashDecode``: the box (lon_min, lon_max, lat_min, lat_max)."""
    (lon_min, lon_max), (lat_min, lat_max) = ranges
    sep = deinterleave64(bits)
    lat_scale = lat_max - lat_min
    lon_scale = lon_max - lon_min
    ilat = sep & 0xFFFFFFFF
    ilon = sep >> 32
    div = float(1 << step)
    return (
        lon_min + (ilon * 1.0 / div) * lon_scale,
        lon_min + ((ilon + 1) * 1.0 / div) * lon_scale,
        lat_min + (ilat * 1.0 / div) * lat_scale,
        lat_min + ((ilat + 1) * 1.0 / div) * lat_scale,
    )


def score_bits(score: float) -> int:
    """C's ``(uint64_t)`` of a score, as x86-64 code converts it: below
    2**63 a signed conversion (the "indefinite" 2**63 when out of range),
    from 2**63 on the conversion of ``score - 2**63`` with the top bit
    flipped (so 0 for infinity, NaN and scores past 2**64)."""
    if score < 2.0**63:
        if score > -(2.0**63):
            return int(score) & _M64
        return 1 << 63
    if score - 2.0**63 < 2.0**63:
        return int(score)
    return 0


def decode_score(score: float) -> tuple[float, float]:
    """``decodeGeohash``: the (longitude, latitude) a score stands for,
    the centre of its box, clamped to the valid ranges."""
    lon_lo, lon_hi, lat_lo, lat_hi = decode(score_bits(score), STEP_MAX)
    lon = (lon_lo + lon_hi) / 2
    lon = min(max(lon, LONG_MIN), LONG_MAX)
    lat = (lat_lo + lat_hi) / 2
    lat = min(max(lat, LAT_MIN), LAT_MAX)
    return lon, lat


def decode_scores(scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """:func:`decode_score` of many scores at once, with the same float
    operations (so the same results); scores outside 0..2**52 go one by one."""
    normal = (scores >= 0) & (scores < 2.0**52)
    bits = np.where(normal, scores, 0).astype(np.uint64)
    x = bits
    y = bits >> np.uint64(1)
    for s, b in ((0, _B[0]), (1, _B[1]), (2, _B[2]), (4, _B[3]), (8, _B[4]), (16, 0x00000000FFFFFFFF)):
        x = (x | (x >> np.uint64(s))) & np.uint64(b)
        y = (y | (y >> np.uint64(s))) & np.uint64(b)
    ilat = x.astype(np.float64)  # the even bits: latitude
    ilon = y.astype(np.float64)
    div = float(1 << STEP_MAX)
    lon_scale = LONG_MAX - LONG_MIN
    lat_scale = LAT_MAX - LAT_MIN
    lon = (LONG_MIN + (ilon / div) * lon_scale + (LONG_MIN + ((ilon + 1) / div) * lon_scale)) / 2
    lat = (LAT_MIN + (ilat / div) * lat_scale + (LAT_MIN + ((ilat + 1) / div) * lat_scale)) / 2
    lon = np.minimum(np.maximum(lon, LONG_MIN), LONG_MAX)
    lat = np.minimum(np.maximum(lat, LAT_MIN), LAT_MAX)
    for i in np.flatnonzero(~normal).tolist():
        lon[i], lat[i] = decode_score(float(scores[i]))
    return lon, lat


def align52(bits: int, step: int) -> int:
    return (bits << (52 - step * 2)) & _M64


# -- neighbours ------------------------------------------------------------------


def _move_x(bits: int, step: int, d: int) -> int:
    if d == 0:
        return bits
    x = bits & 0xAAAAAAAAAAAAAAAA
    y = bits & 0x5555555555555555
    zz = 0x5555555555555555 >> (64 - step * 2)
    if d > 0:
        x = (x + (zz + 1)) & _M64
    else:
        x = x | zz
        x = (x - (zz + 1)) & _M64
    x &= 0xAAAAAAAAAAAAAAAA >> (64 - step * 2)
    return x | y


def _move_y(bits: int, step: int, d: int) -> int:
    if d == 0:
        return bits
    x = bits & 0xAAAAAAAAAAAAAAAA
    y = bits & 0x5555555555555555
    zz = 0xAAAAAAAAAAAAAAAA >> (64 - step * 2)
    if d > 0:
        y = (y + (zz + 1)) & _M64
    else:
        y = y | zz
        y = (y - (zz + 1)) & _M64
    y &= 0x5555555555555555 >> (64 - step * 2)
    return x | y


# Redis's order of the boxes searched: the centre, then these.
_DIRECTIONS = {
    "north": (0, 1),
    "south": (0, -1),
    "east": (1, 0),
    "west": (-1, 0),
    "north_east": (1, 1),
    "north_west": (-1, 1),
    "south_east": (1, -1),
    "south_west": (-1, -1),
}


def neighbours(bits: int, step: int) -> dict[str, int]:
    return {name: _move_y(_move_x(bits, step, dx), step, dy) for name, (dx, dy) in _DIRECTIONS.items()}


# -- distances --------------------------------------------------------------------


def lat_distance(lat1: float, lat2: float) -> float:
    return EARTH_RADIUS_IN_METERS * abs(lat2 * D_R - lat1 * D_R)


def distance(lon1: float, lat1: float, lon2: float, lat2: float) -> float:
    """``geohashGetDistance``: the haversine distance in meters."""
    lon1r = lon1 * D_R
    lon2r = lon2 * D_R
    v = math.sin((lon2r - lon1r) / 2)
    if v == 0.0:
        return lat_distance(lat1, lat2)
    lat1r = lat1 * D_R
    lat2r = lat2 * D_R
    u = math.sin((lat2r - lat1r) / 2)
    a = u * u + math.cos(lat1r) * math.cos(lat2r) * v * v
    return 2.0 * EARTH_RADIUS_IN_METERS * math.asin(math.sqrt(a))


def _np_distance(lon1, lat1, lon2, lat2) -> np.ndarray:
    """Haversine with numpy, for :meth:`Shape.may_contain` only."""
    v = np.sin((np.multiply(lon2, D_R) - np.multiply(lon1, D_R)) / 2)
    u = np.sin((np.multiply(lat2, D_R) - np.multiply(lat1, D_R)) / 2)
    a = u * u + np.cos(np.multiply(lat1, D_R)) * np.cos(np.multiply(lat2, D_R)) * v * v
    return 2.0 * EARTH_RADIUS_IN_METERS * np.arcsin(np.sqrt(np.minimum(a, 1.0)))


def estimate_steps(range_meters: float, lat: float) -> int:
    """``geohashEstimateStepsByRadius``."""
    if range_meters == 0:
        return 26
    step = 1
    while range_meters < MERCATOR_MAX:
        range_meters *= 2
        step += 1
    step -= 2
    if lat > 66 or lat < -66:
        step -= 1
        if lat > 80 or lat < -80:
            step -= 1
    return min(max(step, 1), 26)


def _cos(x: float) -> float:
    """C's ``cos``: NaN for an infinite angle (an infinite radius or box
    side), where ``math.cos`` raises.  A NaN bound then fails every
    comparison, as in Redis, which searches the nine boxes of step 1."""
    return math.nan if math.isinf(x) else math.cos(x)


class Shape:
    """A search area: a circle (``radius``) or a box (``width``, ``height``),
    in the unit of ``conversion`` meters, around (lon, lat)."""

    __slots__ = ("conversion", "height", "lat", "lon", "radius", "width")

    def __init__(self) -> None:
        self.lon = self.lat = 0.0
        self.radius: float | None = None
        self.width = self.height = 0.0
        self.conversion = 1.0

    def bounding_box(self) -> tuple[float, float, float, float]:
        """``geohashBoundingBox``: (min lon, min lat, max lon, max lat)."""
        circle = self.radius is not None
        height = self.conversion * (self.radius if circle else self.height / 2)  # type: ignore[operator]  # circle: set
        width = self.conversion * (self.radius if circle else self.width / 2)  # type: ignore[operator]  # circle: set
        lat_delta = (height / EARTH_RADIUS_IN_METERS) / D_R
        lon_delta_top = (width / EARTH_RADIUS_IN_METERS / _cos((self.lat + lat_delta) * D_R)) / D_R
        lon_delta_bottom = (width / EARTH_RADIUS_IN_METERS / _cos((self.lat - lat_delta) * D_R)) / D_R
        south = self.lat < 0
        return (
            self.lon - lon_delta_bottom if south else self.lon - lon_delta_top,
            self.lat - lat_delta,
            self.lon + lon_delta_bottom if south else self.lon + lon_delta_top,
            self.lat + lat_delta,
        )

    def contains(self, lon: float, lat: float) -> float | None:
        """``geoWithinShape``: the distance in meters if inside, else None."""
        if self.radius is not None:
            d = distance(self.lon, self.lat, lon, lat)
            return None if d > self.radius * self.conversion else d
        if lat_distance(lat, self.lat) > self.height * self.conversion / 2:
            return None
        if distance(lon, lat, self.lon, lat) > self.width * self.conversion / 2:
            return None
        return distance(self.lon, self.lat, lon, lat)

    def may_contain(self, lon: np.ndarray, lat: np.ndarray) -> np.ndarray:
        """A superset of the points :meth:`contains` accepts, computed with
        numpy (whose sin and cos may differ from C's in the last bit, hence
        the margin); :meth:`contains` decides each of them exactly."""
        if self.radius is not None:
            d = _np_distance(self.lon, self.lat, lon, lat)
            return d <= self.radius * self.conversion * (1 + 1e-9) + 1e-9
        lat_d = EARTH_RADIUS_IN_METERS * np.abs(self.lat * D_R - lat * D_R)
        lon_d = _np_distance(lon, lat, self.lon, lat)
        return (lat_d <= self.height * self.conversion / 2 * (1 + 1e-9) + 1e-9) & (
            lon_d <= self.width * self.conversion / 2 * (1 + 1e-9) + 1e-9
        )

    def boxes(self) -> list[tuple[int, int]]:
        """``geohashCalculateAreasByShapeWGS84``, then the order in which
        ``membersOfAllNeighbors`` visits them: (bits, step) of each box,
        ``(0, 0)`` for the boxes it leaves out."""
        min_lon, min_lat, max_lon, max_lat = self.bounding_box()
        if self.radius is not None:
            radius_meters = self.radius
        else:
            radius_meters = math.sqrt(
                (self.width / 2) * (self.width / 2) + (self.height / 2) * (self.height / 2)
            )
        radius_meters *= self.conversion
        steps = estimate_steps(radius_meters, self.lat)
        bits = encode(self.lon, self.lat, steps)
        assert bits is not None
        near = neighbours(bits, steps)
        area = decode(bits, steps)
        north = decode(near["north"], steps)
        south = decode(near["south"], steps)
        east = decode(near["east"], steps)
        west = decode(near["west"], steps)
        decrease = north[3] < max_lat or south[2] > min_lat or east[1] < max_lon or west[0] > min_lon
        if steps > 1 and decrease:
            steps -= 1
            bits = encode(self.lon, self.lat, steps)
            assert bits is not None
            near = neighbours(bits, steps)
            area = decode(bits, steps)
        zero: set[str] = set()
        if steps >= 2:
            if area[2] < min_lat:
                zero |= {"south", "south_west", "south_east"}
            if area[3] > max_lat:
                zero |= {"north", "north_east", "north_west"}
            if area[0] < min_lon:
                zero |= {"west", "south_west", "north_west"}
            if area[1] > max_lon:
                zero |= {"east", "south_east", "north_east"}
        order = ["north", "south", "east", "west", "north_east", "north_west", "south_east", "south_west"]
        return [(bits, steps)] + [(0, 0) if name in zero else (near[name], steps) for name in order]


def fixed4(d: float) -> bytes:
    """``fixedpoint_d2string(d, 4)``: GEODIST's and WITHDIST's distances."""
    if d == 0:
        return b"0.0000"
    v = round(d * 10000.0)  # llrint: halves to even, as round() does
    sign = b"-" if v < 0 else b""
    digits = b"%05d" % abs(v)
    return sign + digits[:-4] + b"." + digits[-4:]
