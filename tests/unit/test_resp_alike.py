"""A read of GET-, SET- or EVALSHA-shaped commands alone but for one odd command
(tests/support/oddreads.py), whole or cut in two, gives what the
per-command encoding gives (``_encode_alike`` off: the parser before it)
and what the pure-Python parser, which follows Redis, gives: the same
commands, raw bytes, errors and leftovers."""

from __future__ import annotations

import random

import pytest

from shardkv.protocol import resp
from shardkv.protocol.resp import RequestParser
from tests.support.oddreads import odd_read
from tests.unit.test_resp import _outcome, _python_only


@pytest.mark.parametrize("seed", range(400))
def test_a_read_of_one_shape_but_one_odd_command(monkeypatch, seed):
    _, data = odd_read(seed)
    _same_outcomes(monkeypatch, seed, data)


@pytest.mark.parametrize("seed", range(200))
def test_a_read_of_evalshas_but_one_odd_command(monkeypatch, seed):
    """The same for reads of EVALSHA of one key, with no argument or one (4
    or 5 arguments, _encode_alike's other shapes)."""
    _, data = odd_read(seed, shapes=("EVALSHA", "EVALSHA1"))
    _same_outcomes(monkeypatch, seed, data)


def _same_outcomes(monkeypatch, seed, data):
    """``data``, whole or cut in two, parses as the Python-only parser and
    the parser without _encode_alike parse it."""
    cut = random.Random(-seed).randrange(1, len(data))
    for chunks in ([data], [data[:cut], data[cut:]]):
        fast = _outcome(RequestParser(), chunks)
        assert fast == _outcome(_python_only(), chunks)
        with monkeypatch.context() as m:
            m.setattr(resp, "_encode_alike", lambda found: None)
            assert fast == _outcome(RequestParser(), chunks)
