"""Which shard owns a key: Redis Cluster's slots, mapped onto shards.

A key's slot is ``CRC16-XMODEM(key) & 16383``, hashing only the text
between the first ``{`` and the next ``}`` when that text is non-empty, as
Redis Cluster does.  ``binascii.crc_hqx`` with a zero seed *is* XMODEM, and
it runs in C.  Slots map onto shards in contiguous ranges, so shard ``i``
owns slots ``[i*16384//n, (i+1)*16384//n)``.
"""

from __future__ import annotations

from binascii import crc_hqx

SLOTS = 16384
# ``LBRACE in key`` tests for "{": an int is found with one memchr, where
# ``b"{" in key`` first fails (and formats) a TypeError in CPython 3.11.
LBRACE = 0x7B


def key_slot(key: bytes) -> int:
    """The cluster slot of ``key``."""
    start = key.find(b"{")
    if start >= 0:
        end = key.find(b"}", start + 1)
        if end > start + 1:
            key = key[start + 1 : end]
    return crc_hqx(key, 0) & 16383


def slot_range(shard: int, nshards: int) -> range:
    """The slots that ``shard`` of ``nshards`` owns."""
    return range(shard * SLOTS // nshards, (shard + 1) * SLOTS // nshards)


def slot_owners(nshards: int) -> list[int]:
    """A table from slot to shard index."""
    owners = [0] * SLOTS
    for shard in range(nshards):
        for slot in slot_range(shard, nshards):
            owners[slot] = shard
    return owners


class Router:
    """Maps keys to shard indexes for a fixed number of shards."""

    __slots__ = ("nshards", "owners", "by_crc")

    def __init__(self, nshards: int) -> None:
        self.nshards = nshards
        self.owners = slot_owners(nshards)
        # The same table indexed by a key's whole CRC16 (``crc_hqx(key,
        # 0)``, 0 to 65535), whose low 14 bits are its slot: ``owners``
        # four times over.  A lookup then needs no ``& 16383``, which in
        # CPython 3.11 is an unspecialised operation making a new int per
        # key (see ``Client._run``).  A slot (0 to 16383) indexes it too.
        self.by_crc = self.owners * (65536 // SLOTS)

    def shard_of(self, key: bytes) -> int:
        if LBRACE in key:
            return self.owners[key_slot(key)]
        return self.owners[crc_hqx(key, 0) & 16383]
