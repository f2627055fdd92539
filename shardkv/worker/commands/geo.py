"""Geospatial commands: GEOADD, GEODIST, GEOHASH, GEOPOS, GEOSEARCH,
GEOSEARCHSTORE, GEORADIUS, GEORADIUSBYMEMBER and their ``_RO`` forms.

A geo set is a sorted set whose scores are 52-bit geohashes
(:mod:`shardkv.worker.geohash`), so TYPE says ``zset`` and every sorted
set command works on it.  A search visits the same nine boxes as Redis's
``membersOfAllNeighbors``, in the same order, and replies with Redis's
digits: distances as ``%.4f`` (``fixedpoint_d2string``), coordinates as
``%.17Lf`` without trailing zeros.  The arguments are read in the order
of ``georadiusGeneric`` so that the first error is Redis's.
"""

from __future__ import annotations

from shardkv.protocol import errors
from shardkv.protocol.args import format_float, parse_float_or_none
from shardkv.protocol.errors import CommandError
from shardkv.protocol.resp import NULL_ARRAY, HumanDouble, strict_int
from shardkv.worker import geohash, handlers
from shardkv.worker.geohash import Shape
from shardkv.worker.handlers import Handlers
from shardkv.worker.keyspace import Keyspace
from shardkv.worker.lazynumpy import np
from shardkv.worker.pqsort import pqsort
from shardkv.worker.values import get_zset
from shardkv.worker.zset import ZSet

_UNITS = {b"m": 1.0, b"km": 1000.0, b"ft": 0.3048, b"mi": 1609.34}
_ALPHABET = b"0123456789bcdefghjkmnpqrstuvwxyz"

# georadiusGeneric's flags
COORDS = 1
MEMBER = 2
NOSTORE = 4
SEARCH = 8
SEARCHSTORE = 16


def _double(arg: bytes, message: str = errors.NOT_FLOAT) -> float:
    value = parse_float_or_none(arg)
    if value is None:
        raise CommandError(message)
    return value


def _lonlat(lon_arg: bytes, lat_arg: bytes) -> tuple[float, float]:
    """``extractLongLatOrReply``."""
    lon = _double(lon_arg)
    lat = _double(lat_arg)
    if lon < geohash.LONG_MIN or lon > geohash.LONG_MAX or lat < geohash.LAT_MIN or lat > geohash.LAT_MAX:
        raise CommandError(errors.GEO_INVALID_PAIR % (lon, lat))
    return lon, lat


def _unit(arg: bytes) -> float:
    factor = _UNITS.get(arg.lower())
    if factor is None:
        raise CommandError(errors.GEO_UNIT)
    return factor


def _human(value: float) -> HumanDouble:
    return HumanDouble(format_float(value))


def geoadd(ks: Keyspace, args: list[bytes]) -> object:
    """GEOADD key [NX | XX] [CH] longitude latitude member [longitude latitude member ...]"""
    at = 2
    nx = xx = False
    while at < len(args):
        opt = args[at].lower()
        if opt == b"nx":
            nx = True
        elif opt == b"xx":
            xx = True
        elif opt != b"ch":
            break
        at += 1
    if (len(args) - at) % 3 or (nx and xx):
        raise CommandError(errors.SYNTAX)
    zadd_args = [b"zadd", *args[1:at]]
    for i in range(at, len(args), 3):
        lon, lat = _lonlat(args[i], args[i + 1])
        bits = geohash.encode(lon, lat)
        zadd_args += [b"%d" % geohash.align52(bits or 0, geohash.STEP_MAX), args[i + 2]]
    return handlers.HANDLERS[b"zadd"](ks, zadd_args)  # as Redis: GEOADD runs ZADD


def geodist(ks: Keyspace, args: list[bytes]) -> object:
    """GEODIST key member1 member2 [M | KM | FT | MI]"""
    to_meter = 1.0
    if len(args) == 5:
        to_meter = _unit(args[4])
    elif len(args) > 5:
        raise CommandError(errors.SYNTAX)
    z = get_zset(ks, args[1])
    if z is None:
        return None
    a = z.score(args[2])
    b = z.score(args[3])
    if a is None or b is None:
        return None
    lon1, lat1 = geohash.decode_score(a)
    lon2, lat2 = geohash.decode_score(b)
    return geohash.fixed4(geohash.distance(lon1, lat1, lon2, lat2) / to_meter)


def _positions(ks: Keyspace, args: list[bytes]) -> list[tuple[float, float] | None]:
    """The longitude and latitude of each member ``args[2:]`` of the key
    ``args[1]``; None for a member (or key) that is not there."""
    z = get_zset(ks, args[1])
    out: list[tuple[float, float] | None] = []
    for member in args[2:]:
        score = z.score(member) if z is not None else None
        out.append(None if score is None else geohash.decode_score(score))
    return out


def _standard_hash(lon: float, lat: float) -> bytes:
    """GEOHASH's 11 characters: the position re-encoded on the standard
    latitude range, the last character always '0' (as Redis)."""
    bits = geohash.encode(lon, lat, geohash.STEP_MAX, geohash.STANDARD) or 0
    chars = bytearray()
    for i in range(11):
        chars.append(_ALPHABET[0 if i == 10 else (bits >> (52 - (i + 1) * 5)) & 0x1F])
    return bytes(chars)


def geohash_(ks: Keyspace, args: list[bytes]) -> object:
    """GEOHASH key [member [member ...]]"""
    return [None if p is None else _standard_hash(*p) for p in _positions(ks, args)]


def geopos(ks: Keyspace, args: list[bytes]) -> object:
    """GEOPOS key [member [member ...]]"""
    return [NULL_ARRAY if p is None else [_human(p[0]), _human(p[1])] for p in _positions(ks, args)]


def _distance_arg(shape: Shape, value: bytes, unit: bytes) -> None:
    """``extractDistanceOrReply``."""
    radius = _double(value, errors.GEO_NEED_RADIUS)
    if radius < 0:
        raise CommandError(errors.GEO_NEGATIVE_RADIUS)
    shape.radius = radius
    shape.conversion = _unit(unit)


def _member_position(z: ZSet, member: bytes) -> tuple[float, float]:
    score = z.score(member)
    if score is None:
        raise CommandError(errors.GEO_NO_MEMBER)
    return geohash.decode_score(score)


def search(ks: Keyspace, args: list[bytes], src_at: int, flags: int) -> object:
    """``georadiusGeneric``: parse, search the nine boxes, sort, reply or store."""
    with ks.reading():
        z = get_zset(ks, args[src_at])
    shape = Shape()
    store: bytes | None = None
    storedist = False
    if flags & COORDS:
        base = 6
        shape.lon, shape.lat = _lonlat(args[2], args[3])
        _distance_arg(shape, args[4], args[5])
    elif flags & MEMBER:
        base = 5
        if z is not None:
            shape.lon, shape.lat = _member_position(z, args[2])
            _distance_arg(shape, args[3], args[4])
    else:
        base = 2
        if flags & SEARCHSTORE:
            base = 3
            store = args[1]
    withdist = withhash = withcoord = any_ = False
    frommember = fromloc = byradius = bybox = False
    order = 0  # 0 none, 1 ascending, 2 descending
    count = 0
    rest = args[base:]
    n = len(rest)
    i = 0
    while i < n:
        arg = rest[i].lower()
        left = n - i - 1  # arguments after this one
        if arg == b"withdist":
            withdist = True
        elif arg == b"withhash":
            withhash = True
        elif arg == b"withcoord":
            withcoord = True
        elif arg == b"any":
            any_ = True
        elif arg == b"asc":
            order = 1
        elif arg == b"desc":
            order = 2
        elif arg == b"count" and left >= 1:
            value = strict_int(rest[i + 1])
            if value is None:
                raise CommandError(errors.NOT_INTEGER)
            if value <= 0:
                raise CommandError(errors.GEO_COUNT)
            count = value
            i += 1
        elif arg in (b"store", b"storedist") and left >= 1 and not flags & (NOSTORE | SEARCH):
            store = rest[i + 1]
            storedist = arg == b"storedist"
            i += 1
        elif arg == b"storedist" and flags & SEARCH and flags & SEARCHSTORE:
            storedist = True
        elif arg == b"frommember" and left >= 1 and flags & SEARCH and not fromloc:
            if z is not None:
                shape.lon, shape.lat = _member_position(z, rest[i + 1])
            frommember = True
            i += 1
        elif arg == b"fromlonlat" and left >= 2 and flags & SEARCH and not frommember:
            shape.lon, shape.lat = _lonlat(rest[i + 1], rest[i + 2])
            fromloc = True
            i += 2
        elif arg == b"byradius" and left >= 2 and flags & SEARCH and not bybox:
            _distance_arg(shape, rest[i + 1], rest[i + 2])
            byradius = True
            i += 2
        elif arg == b"bybox" and left >= 3 and flags & SEARCH and not byradius:
            width = _double(rest[i + 1], errors.GEO_NEED_WIDTH)
            height = _double(rest[i + 2], errors.GEO_NEED_HEIGHT)
            if height < 0 or width < 0:
                raise CommandError(errors.GEO_NEGATIVE_BOX)
            shape.width, shape.height = width, height
            shape.radius = None
            shape.conversion = _unit(rest[i + 3])
            bybox = True
            i += 3
        else:
            raise CommandError(errors.SYNTAX)
        i += 1
    if store is not None and (withdist or withhash or withcoord):
        what = "GEOSEARCHSTORE" if flags & SEARCHSTORE else "STORE option in GEORADIUS"
        raise CommandError(errors.GEO_STORE_WITH % what)
    name = args[0].decode("latin-1")
    if flags & SEARCH and not (frommember or fromloc):
        raise CommandError(errors.GEO_NEED_FROM % name)
    if flags & SEARCH and not (byradius or bybox):
        raise CommandError(errors.GEO_NEED_BY % name)
    if any_ and not count:
        raise CommandError(errors.GEO_ANY_COUNT)
    if z is None:
        if store is not None:
            if not ks.delete(store):
                ks.unchanged = True  # as Redis: no destination to delete: no change
            return 0
        return []
    if count and not order and not any_:
        order = 1
    found = _points(z, shape, count if any_ else 0)
    if not found and store is None:
        return []
    if order:
        if count and count < len(found) and len({p[3] for p in found}) < len(found):
            # Ties: Redis's partial sort decides their order.
            pqsort(found, _by_distance_desc if order == 2 else _by_distance, 0, count - 1)
        else:
            found.sort(key=lambda p: p[3], reverse=order == 2)  # glibc's qsort: stable
    if count:
        found = found[:count]
    conversion = shape.conversion
    if store is None:
        reply: list[object] = []
        options = withdist or withhash or withcoord
        for member, lon, lat, dist, score in found:
            if not options:
                reply.append(member)
                continue
            item: list = [member]
            if withdist:
                item.append(geohash.fixed4(dist / conversion))
            if withhash:
                item.append(int(score))
            if withcoord:
                item.append([_human(lon), _human(lat)])
            reply.append(item)
        return reply
    if found:
        scores = {member: (dist / conversion if storedist else score) for member, _, _, dist, score in found}
        ks.store(store, ZSet.from_result(scores))
        if len(found) > 1:
            ks.changes = len(found)  # as Redis: a change per member stored
    elif not ks.delete(store):
        ks.unchanged = True  # as Redis: empty, no destination to delete: no change
    return len(found)


def _by_distance(a: tuple, b: tuple) -> int:
    """``sort_gp_asc``."""
    return (a[3] > b[3]) - (a[3] < b[3])


def _by_distance_desc(a: tuple, b: tuple) -> int:
    return (a[3] < b[3]) - (a[3] > b[3])


# Below this many candidates a search checks them one by one; above, numpy
# decodes them and sets aside those far outside first.
_VECTOR_MIN = 32


def _points(z: ZSet, shape: Shape, limit: int) -> list[tuple[bytes, float, float, float, float]]:
    """``membersOfAllNeighbors``: (member, lon, lat, distance, score) of the
    members inside ``shape``, box by box; at most ``limit`` when not 0."""
    boxes = shape.boxes()
    last = 0
    candidates: list[tuple[float, bytes]] = []
    for i, (bits, step) in enumerate(boxes):
        if bits == 0 and step == 0:
            continue
        if last and boxes[last] == (bits, step):
            continue  # a huge radius makes neighbours repeat
        lo = geohash.align52(bits, step)
        hi = geohash.align52(bits + 1, step)
        start, stop = z.score_span(float(lo), False, float(hi), True)
        candidates += z.slice(start, stop)
        last = i
    contains = shape.contains
    found: list[tuple[bytes, float, float, float, float]] = []
    if len(candidates) < _VECTOR_MIN:
        for score, member in candidates:
            lon, lat = geohash.decode_score(score)
            dist = contains(lon, lat)
            if dist is not None:
                found.append((member, lon, lat, dist, score))
                if limit and len(found) >= limit:
                    break
        return found
    scores = np.fromiter((s for s, _ in candidates), dtype=np.float64, count=len(candidates))
    lons, lats = geohash.decode_scores(scores)
    near = np.flatnonzero(shape.may_contain(lons, lats)).tolist()
    lon_list = lons.tolist()
    lat_list = lats.tolist()
    for i in near:
        lon, lat = lon_list[i], lat_list[i]
        dist = contains(lon, lat)
        if dist is not None:
            score, member = candidates[i]
            found.append((member, lon, lat, dist, score))
            if limit and len(found) >= limit:
                break
    return found


def georadius(ks: Keyspace, args: list[bytes]) -> object:
    """GEORADIUS key longitude latitude radius M | KM | FT | MI [WITHCOORD] [WITHDIST] [WITHHASH] [COUNT count [ANY]] [ASC | DESC] [STORE key] [STOREDIST key]"""
    return search(ks, args, 1, COORDS)


def georadius_ro(ks: Keyspace, args: list[bytes]) -> object:
    """GEORADIUS_RO key longitude latitude radius M | KM | FT | MI [WITHCOORD] [WITHDIST] [WITHHASH] [COUNT count [ANY]] [ASC | DESC]"""
    return search(ks, args, 1, COORDS | NOSTORE)


def georadiusbymember(ks: Keyspace, args: list[bytes]) -> object:
    """GEORADIUSBYMEMBER key member radius M | KM | FT | MI [WITHCOORD] [WITHDIST] [WITHHASH] [COUNT count [ANY]] [ASC | DESC] [STORE key] [STOREDIST key]"""
    return search(ks, args, 1, MEMBER)


def georadiusbymember_ro(ks: Keyspace, args: list[bytes]) -> object:
    """GEORADIUSBYMEMBER_RO key member radius M | KM | FT | MI [WITHCOORD] [WITHDIST] [WITHHASH] [COUNT count [ANY]] [ASC | DESC]"""
    return search(ks, args, 1, MEMBER | NOSTORE)


def geosearch(ks: Keyspace, args: list[bytes]) -> object:
    """GEOSEARCH key FROMMEMBER member | FROMLONLAT longitude latitude BYRADIUS radius M | KM | FT | MI | BYBOX width height M | KM | FT | MI [ASC | DESC] [COUNT count [ANY]] [WITHCOORD] [WITHDIST] [WITHHASH]"""
    return search(ks, args, 1, SEARCH)


def geosearchstore(ks: Keyspace, args: list[bytes]) -> object:
    """GEOSEARCHSTORE destination source FROMMEMBER member | FROMLONLAT longitude latitude BYRADIUS radius M | KM | FT | MI | BYBOX width height M | KM | FT | MI [ASC | DESC] [COUNT count [ANY]] [STOREDIST]"""
    return search(ks, args, 2, SEARCH | SEARCHSTORE)


# The commands this module runs, by name (see shardkv.worker.wiring).
HANDLERS: Handlers = {
    "geoadd": geoadd,
    "geodist": geodist,
    "geohash": geohash_,
    "geopos": geopos,
    "georadius": georadius,
    "georadius_ro": georadius_ro,
    "georadiusbymember": georadiusbymember,
    "georadiusbymember_ro": georadiusbymember_ro,
    "geosearch": geosearch,
    "geosearchstore": geosearchstore,
}
