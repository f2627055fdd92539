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
