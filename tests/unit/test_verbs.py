"""The internal verbs: defined once (``shardkv.protocol.wire.Verb``), the
same set the worker registers, spelled nowhere else, and out of the
command table."""

from __future__ import annotations

import ast
import pathlib

import shardkv
from shardkv.protocol import commands
from shardkv.protocol.wire import Verb
from shardkv.worker import wiring

WIRED = wiring.build()
HANDLERS = WIRED.handlers
BLOCKING = WIRED.blocking

ROOT = pathlib.Path(shardkv.__file__).parent


def test_the_worker_registers_exactly_the_handled_verbs() -> None:
    registered = {name.lower() for name in HANDLERS if name.startswith(b"__")}
    assert registered == {verb.lower() for verb in Verb.HANDLED}
    # The blocking forms are registered under a handled verb, too.
    assert {name.lower() for name in BLOCKING if name.startswith(b"__")} <= registered


def test_the_shard_itself_runs_park_and_prepare() -> None:
    for verb in (Verb.PARK, Verb.PREPARE, Verb.XPREPARE, Verb.XCOMMIT, Verb.XABORT):
        assert verb not in Verb.HANDLED
        assert verb not in HANDLERS and verb.lower() not in HANDLERS


def test_verbs_are_distinct_and_internal() -> None:
    names = [value for name, value in vars(Verb).items() if name.isupper() and type(value) is bytes]
    assert len(names) == len(set(names)) == len(Verb.ALL)
    for verb in Verb.ALL:
        assert verb.startswith(b"__")
        assert commands.lookup(verb) is None, verb  # no client can send one


def test_no_module_spells_a_verb_but_wire() -> None:
    spellings = Verb.ALL | {verb.decode() for verb in Verb.ALL}
    found = []
    for path in sorted(ROOT.rglob("*.py")):
        if path == ROOT / "protocol" / "wire.py":
            continue
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Constant) and node.value in spellings:
                found.append(f"{path.relative_to(ROOT)}:{node.lineno}: {node.value!r}")
    assert not found, "spell these as shardkv.protocol.wire.Verb:\n" + "\n".join(found)
