"""Slots and shards: Redis Cluster's CRC16 and hash tags."""

from shardkv.protocol.router import SLOTS, Router, key_slot, slot_owners, slot_range


def test_known_slots():
    # Values from Redis Cluster (CLUSTER KEYSLOT).
    assert key_slot(b"foo") == 12182
    assert key_slot(b"bar") == 5061
    assert key_slot(b"hello") == 866
    assert key_slot(b"") == 0


def test_hash_tags_share_a_slot():
    assert key_slot(b"{user1000}.following") == key_slot(b"{user1000}.followers")
    assert key_slot(b"{user1000}.following") == key_slot(b"user1000")


def test_hash_tag_rules():
    # Only the first { and the next } count, and an empty tag hashes the whole key.
    assert key_slot(b"foo{}{bar}") == key_slot(b"foo{}{bar}")
    assert key_slot(b"foo{}{bar}") != key_slot(b"bar")
    assert key_slot(b"foo{{bar}}zap") == key_slot(b"{bar")
    assert key_slot(b"foo{bar}{zap}") == key_slot(b"bar")
    assert key_slot(b"{}") == key_slot(b"{}")
    assert key_slot(b"no-close{brace") == key_slot(b"no-close{brace")


def test_slot_ranges_cover_every_slot_once():
    for n in (1, 2, 3, 4, 7, 8, 16):
        owners = slot_owners(n)
        assert len(owners) == SLOTS
        covered = [s for i in range(n) for s in slot_range(i, n)]
        assert covered == list(range(SLOTS))
        assert sorted(set(owners)) == list(range(n))


def test_router_spreads_keys():
    router = Router(4)
    counts = [0] * 4
    for i in range(4000):
        counts[router.shard_of(b"key:%d" % i)] += 1
    assert min(counts) > 800
    assert router.shard_of(b"{tag}a") == router.shard_of(b"{tag}b")


def test_the_table_by_crc_agrees_with_the_slots():
    # Client._run finds a key's shard and slotted header by its whole CRC16
    # (no ``& 16383``), a hash-tagged key's by its slot: both tables must
    # give what the slot gives.
    from binascii import crc_hqx

    from shardkv.acceptor.dispatch import SLOT_HEADERS
    from shardkv.protocol.wire import slotted_header

    for n in (1, 2, 3, 8):
        router = Router(n)
        assert len(router.by_crc) == 65536
        for i in range(20000):
            key = b"key:%d" % i
            crc = crc_hqx(key, 0)
            assert router.by_crc[crc] == router.owners[key_slot(key)] == router.shard_of(key)
        for slot in range(SLOTS):
            assert router.by_crc[slot] == router.owners[slot]
    for crc in range(0, 65536, 7):
        for resp3 in (False, True):
            assert SLOT_HEADERS[resp3][crc] == slotted_header(crc & 16383, resp3)


def _crc_table_faults(by_crc, owners) -> list[int]:
    """The CRC16s (0 to 65535) whose entry in ``by_crc`` is not their
    slot's in ``owners`` (every one: ``Client._run`` looks them all up)."""
    if len(by_crc) != 65536:
        return [len(by_crc)]
    return [crc for crc in range(65536) if by_crc[crc] != owners[crc & 16383]]


def test_every_crc16_finds_its_slots_shard_and_header():
    # Every CRC16, at shard counts that do and do not divide 16384: a
    # table repeated with a slip at one seam, or built for another count,
    # sends keys where the workers (and a restart's re-sharding) do not
    # look for them.
    from shardkv.acceptor.dispatch import SLOT_HEADERS
    from shardkv.protocol.wire import slotted_header

    for n in (1, 2, 3, 4, 5, 7, 16):
        router = Router(n)
        assert _crc_table_faults(router.by_crc, slot_owners(n)) == []
    for resp3 in (False, True):
        headers = [slotted_header(slot, resp3) for slot in range(SLOTS)]
        assert _crc_table_faults(SLOT_HEADERS[resp3], headers) == []


def test_the_crc_table_check_catches_a_broken_table():
    # The check above, on tables broken as a repetition may be.
    owners = slot_owners(7)
    assert _crc_table_faults(owners * 4, owners) == []
    assert _crc_table_faults(owners * 3, owners)  # too short
    assert _crc_table_faults((owners * 5)[1 : 65536 + 1], owners)  # off by one slot
    assert _crc_table_faults(owners * 3 + owners[1:] + owners[:1], owners)  # a slip in the last quarter
    assert _crc_table_faults(slot_owners(8) * 4, owners)  # another shard count
    assert _crc_table_faults(owners * 3 + slot_owners(8), owners)  # another count in one quarter
