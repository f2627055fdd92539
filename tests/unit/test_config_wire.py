"""CONFIG SET's changes as they travel between processes (JSON)."""

from __future__ import annotations

import json

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
