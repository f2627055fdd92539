"""A read of one script's EVALSHAs sent as runs (``scripting.scripts_alike``):
the client's wait counts one script a shard's run, its last slot
(``scripting._RunSlot``), and ShardLink._frame fills the others' plain
replies inline (``replies.SCREENED``).  The client waits, as before, until
every script of the read has answered, whatever order the replies and
refusals come in."""

from __future__ import annotations

import pytest

from shardkv.acceptor import scripting
from shardkv.acceptor.replies import Slot
from shardkv.acceptor.scriptcache import ScriptCache
from shardkv.acceptor.shardlink import ShardLink
from shardkv.acceptor.state import SCRIPTS
from shardkv.protocol import commands, errors, wire
from shardkv.protocol.resp import encode_error
from tests.unit.test_acceptor_dispatch import MemoryTransport, build, connect, replies, send

_SHA = b"1" * 40


def _sent_read(monkeypatch: pytest.MonkeyPatch, keys: list[bytes]):
    """An acceptor whose two shards compiled the settled script ``_SHA``, and
    a client that sent one read of its EVALSHAs of ``keys``."""
    acceptor, links = build()
    cache = ScriptCache()
    cache.settled.add(_SHA)
    cache.known = {0: {_SHA}, 1: {_SHA}}
    monkeypatch.setattr(scripting, "CACHE", cache)
    commands.lookup(b"EVALSHA")  # (a spelling is known once looked up: Client._run's shortcuts need it)
    client, transport = connect(acceptor)
    send(client, *([b"EVALSHA", _SHA, b"1", key] for key in keys))
    return acceptor, links, client, transport


def _one_shard_keys(acceptor, n: int) -> list[bytes]:
    shard = acceptor.shard_of(b"k0")
    return [k for k in (b"k%d" % i for i in range(200)) if acceptor.shard_of(k) == shard][:n]


def _sent_to_one_shard(monkeypatch: pytest.MonkeyPatch, n: int):
    """:func:`_sent_read` of ``n`` EVALSHAs whose keys share a shard, with
    that shard's link in place of the links."""
    keys = _one_shard_keys(build()[0], n)
    acceptor, links, client, transport = _sent_read(monkeypatch, keys)
    return acceptor, links[acceptor.shard_of(keys[0])], client, transport


def _refused_busy(slot) -> bytes:
    """Refuse ``slot`` with ``-BUSY`` as ShardLink._refused does; the error's bytes."""
    busy = encode_error(errors.BUSY)
    Slot.deliver(slot, busy)
    slot.busy_refused()
    return busy


def test_a_run_waits_for_each_of_its_scripts(monkeypatch: pytest.MonkeyPatch) -> None:
    """Four EVALSHAs to one shard: one _ScriptSlot counted, the last; the
    client waits until it answers (after the others, as the shard answers
    in order), and an error of one before it counts that call failed and
    keeps the wait until its own answer."""
    acceptor, link, client, transport = _sent_to_one_shard(monkeypatch, 4)
    sinks = [sink for _, _, sink in link.sent]
    assert [type(s) for s in sinks] == [scripting._RunSlot] * 3 + [scripting._ScriptSlot]
    state = client.state
    assert (state.blocked_token, state.scripts) == (SCRIPTS, 1)
    link.answer(b":1\r\n")
    link.answer(b"-ERR boom\r\n")  # (its slot counted in the wait, and answered)
    link.answer(b"*1\r\n:3\r\n")
    assert (state.blocked_token, state.scripts) == (SCRIPTS, 1)
    link.answer(b":4\r\n")
    assert (state.blocked_token, state.scripts) == (0, 0)
    assert replies(acceptor, transport) == b":1\r\n-ERR boom\r\n*1\r\n:3\r\n:4\r\n"
    row = acceptor.stats.row_of([b"evalsha"])
    assert (row[0], row[3]) == (4, 1)  # calls, failed calls


def test_a_refusal_of_a_runs_last_script_leaves_the_others_waited_for(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The worker may refuse the run's last EVALSHA with ``-BUSY`` while
    one before it still runs (ShardLink._refused answers it first): the
    client waits on for the others, each counted now."""
    acceptor, link, client, transport = _sent_to_one_shard(monkeypatch, 3)
    _, _, last = link.sent.pop()
    busy = _refused_busy(last)
    state = client.state
    assert (state.blocked_token, state.scripts) == (SCRIPTS, 2)
    link.answer(b":1\r\n")
    assert state.blocked_token == SCRIPTS
    link.answer(b":2\r\n")
    assert (state.blocked_token, state.scripts) == (0, 0)
    assert replies(acceptor, transport) == b":1\r\n:2\r\n" + busy
    assert acceptor.stats.row_of([b"evalsha"])[0] == 2  # the refused one is no call


def test_a_refusal_of_a_script_before_a_runs_last_keeps_the_wait(monkeypatch: pytest.MonkeyPatch) -> None:
    """One refused before the run's last: no call, and the last keeps
    the wait."""
    acceptor, link, client, transport = _sent_to_one_shard(monkeypatch, 3)
    _, _, middle = link.sent.pop(1)
    busy = _refused_busy(middle)
    state = client.state
    assert (state.blocked_token, state.scripts) == (SCRIPTS, 1)
    link.answer(b":1\r\n")
    assert state.blocked_token == SCRIPTS
    link.answer(b":3\r\n")
    assert (state.blocked_token, state.scripts) == (0, 0)
    assert replies(acceptor, transport) == b":1\r\n" + busy + b":3\r\n"


def test_runs_to_two_shards_wait_for_both(monkeypatch: pytest.MonkeyPatch) -> None:
    """One counted script a shard: the wait ends with the later of the two
    runs, whichever shard answers first."""
    acceptor, _ = build()
    a = _one_shard_keys(acceptor, 2)
    b = [k for k in (b"m%d" % i for i in range(200)) if acceptor.shard_of(k) != acceptor.shard_of(a[0])][:2]
    acceptor, links, client, transport = _sent_read(monkeypatch, [a[0], b[0], a[1], b[1]])
    state = client.state
    assert (state.blocked_token, state.scripts) == (SCRIPTS, 2)
    first, second = links[acceptor.shard_of(b[0])], links[acceptor.shard_of(a[0])]
    first.answer(b":2\r\n")
    first.answer(b":4\r\n")
    assert (state.blocked_token, state.scripts) == (SCRIPTS, 1)
    second.answer(b":1\r\n")
    second.answer(b":3\r\n")
    assert (state.blocked_token, state.scripts) == (0, 0)
    assert replies(acceptor, transport) == b":1\r\n:2\r\n:3\r\n:4\r\n"


def test_a_links_reply_frame_fills_a_runs_plain_replies_inline(monkeypatch: pytest.MonkeyPatch) -> None:
    """Through ShardLink._frame: the run's plain replies go in as a plain
    slot's, an error to its slot's deliver (counted failed), and the
    last's ends the wait."""
    acceptor, fake, client, transport = _sent_to_one_shard(monkeypatch, 4)
    link = ShardLink(0, lambda link: None, lambda: None)
    link.attached(MemoryTransport())  # type: ignore[arg-type]
    link.fifo.extend(sink for _, _, sink in fake.sent)
    bodies = [b"$1\r\nx\r\n", b"-ERR boom\r\n", b":3\r\n", b"$1\r\ny\r\n"]
    payload = wire.encode_replies(bodies)
    link.data_received(wire.FRAME.pack(len(payload)) + payload)
    state = client.state
    assert (state.blocked_token, state.scripts) == (0, 0)
    assert replies(acceptor, transport) == b"".join(bodies)
    row = acceptor.stats.row_of([b"evalsha"])
    assert (row[0], row[3]) == (4, 1)
