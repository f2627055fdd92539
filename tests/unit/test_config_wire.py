"""CONFIG SET's changes as they travel between processes (JSON)."""

from __future__ import annotations

import json

import pytest

from shardkv.protocol import wire
from shardkv.runtime import config


def test_notify_keyspace_events_keeps_n_through_json() -> None:
    """ "KEAn" shows as "AKE" (as in Redis) but the other acceptors must
    still note ``n``: the text sent is the letters of every flag."""
    value = config.SPECIAL["notify-keyspace-events"](["KEAn"], None)
    assert value == "AKE"
    sent = json.loads(json.dumps(config.to_wire({"notify-keyspace-events": value, "maxclients": 7})))
    got = config.from_wire(sent)
    assert got["notify-keyspace-events"] == "AKE"
    assert config.notify_value(got["notify-keyspace-events"]) == config.notify_flags("KEAn")
    assert got["maxclients"] == 7


def test_other_changes_travel_unchanged() -> None:
    changes = {"slowlog-max-len": 77}
    assert config.from_wire(json.loads(json.dumps(config.to_wire(changes)))) == changes


def test_databases_stop_where_an_entry_header_can_name_them():
    """An entry header holds the database in DB_MASK's 16 bits, below the
    blocking token: database 65536 ran as a blocking entry in database 0
    (SELECT 65536, SET k v wrote db0's k), so ``databases`` stops at 65536."""
    assert wire.DB_MASK << wire.DB_SHIFT < 1 << wire.TOKEN_SHIFT
    assert wire.header_db(int(wire.entry_header(0, db=wire.DB_MASK)[1:-2])) == wire.DB_MASK
    assert config.load(["--databases", str(wire.DB_MASK + 1)])["databases"] == wire.DB_MASK + 1
    with pytest.raises(config.ConfigError, match="databases"):
        config.load(["--databases", str(wire.DB_MASK + 2)])
