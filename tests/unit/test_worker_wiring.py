"""The worker's wiring: every row of the command table that shards run has
exactly one handler, every handler has a row or is a handled internal verb,
a mistake stops start-up, and importing a module registers nothing (see
:mod:`shardkv.worker.wiring`)."""

from __future__ import annotations

import ast
import dataclasses
import pathlib
import subprocess
import sys
import types

import pytest

import shardkv
from shardkv.protocol.commands import COMMANDS
from shardkv.protocol.wire import Verb
from shardkv.worker import handlers, wiring
from shardkv.worker.handlers import Blocking

WORKER = pathlib.Path(shardkv.__file__).parent / "worker"
ROOT = WORKER.parent.parent


def _module(**tables: object) -> types.ModuleType:
    module = types.ModuleType("fake")
    for name, table in tables.items():
        setattr(module, name, table)
    return module


def _handler(ks: object, args: list) -> object:
    """GET key"""
    return None


def test_every_shard_row_and_handled_verb_has_exactly_one_handler() -> None:
    found = wiring.handlers_of()
    wiring.check(found)
    shard_rows = {name for name, cmd in COMMANDS.items() if cmd.route != "local"}
    verbs = {verb.decode() for verb in Verb.HANDLED}
    assert shard_rows <= set(found)
    assert verbs <= set(found)
    # The rest are local rows the acceptor sends on (EVAL to the script's
    # shard, FUNCTION from an AOF, MEMORY USAGE, SWAPDB's parts).
    others = set(found) - shard_rows - verbs
    assert others and all(COMMANDS[name].route == "local" for name in others)
    assert all(callable(h) for h in found.values())


def test_install_fills_the_tables_the_worker_looks_up() -> None:
    wired = wiring.install()
    assert handlers.HANDLERS == wired.handlers
    assert handlers.BLOCKING == wired.blocking
    assert handlers.KINDS == wired.kinds and handlers.READY == wired.ready
    get = handlers.find(b"get")
    assert get is not None and handlers.find(b"GET") is get and handlers.find(b"gEt") is get
    assert get.reads and not get.writes  # type: ignore[attr-defined]
    set_ = handlers.find(b"set")
    assert set_ is not None and set_.writes and not set_.reads  # type: ignore[attr-defined]
    assert handlers.find(b"nosuchcommand") is None
    # A blocking command: its handler never waits, its blocking form may.
    blpop = handlers.find_blocking(b"BLPOP")
    assert blpop is not None and blpop is not handlers.find(b"blpop")
    assert blpop.writes and handlers.find(b"blpop").writes  # type: ignore[attr-defined, union-attr]
    assert handlers.KINDS[b"blpop"] is not None and handlers.KINDS[b"xread"] is None
    assert set(handlers.READY) == {b"xread", b"xreadgroup"}


def test_the_flags_follow_the_command_table() -> None:
    wired = wiring.build()
    for name, cmd in COMMANDS.items():
        handler = wired.handlers.get(name.encode())
        if handler is None:
            continue
        # HSET and HMSET share a handler: any of its rows counts.  A script's
        # command (EVAL_RO, FCALL_RO) looks no key up itself: its calls count.
        if "readonly" in cmd.flags:
            assert handler.reads == (cmd.group != "scripting"), name  # type: ignore[attr-defined]
        if "write" in cmd.flags:
            assert handler.writes, name  # type: ignore[attr-defined]
    for verb in Verb.HANDLED:
        handler = wired.handlers[verb]
        assert not handler.reads and not handler.writes  # type: ignore[attr-defined]


def test_a_shard_row_without_handler_fails_start_up() -> None:
    found = wiring.handlers_of()
    del found["get"]
    with pytest.raises(wiring.WiringError, match="no handler: get"):
        wiring.check(found)


def test_a_handled_verb_without_handler_fails_start_up() -> None:
    found = wiring.handlers_of()
    del found[Verb.BWAIT.decode()]
    with pytest.raises(wiring.WiringError, match="no handler: " + Verb.BWAIT.decode()):
        wiring.check(found)


def test_a_new_shard_row_needs_a_handler() -> None:
    table = dict(COMMANDS)
    table["newcmd"] = dataclasses.replace(COMMANDS["get"], name="newcmd")
    with pytest.raises(wiring.WiringError, match="no handler: newcmd"):
        wiring.check(wiring.handlers_of(), table)


def test_a_handler_without_row_fails_start_up() -> None:
    stray = _module(HANDLERS={"nosuchcommand": _handler, b"__nosuchverb": _handler})
    with pytest.raises(
        wiring.WiringError,
        match="no row in the command table and no handled verb: __nosuchverb, nosuchcommand",
    ):
        wiring.build((*wiring.MODULES, stray))


def test_two_handlers_for_one_name_fail_start_up() -> None:
    again = _module(HANDLERS={"get": _handler})
    with pytest.raises(wiring.WiringError, match="two handlers: get"):
        wiring.build((*wiring.MODULES, again))
    blocking_too = _module(BLOCKING={"blpop": Blocking(_handler, None)})
    with pytest.raises(wiring.WiringError, match="two handlers: blpop"):
        wiring.build((*wiring.MODULES, blocking_too))


def test_every_module_with_handlers_is_wired() -> None:
    """A module of handlers left out of MODULES would fail the row check,
    unless all its rows were local: list them all anyway."""
    wired = {pathlib.Path(m.__file__ or "").resolve() for m in wiring.MODULES}
    for path in sorted(WORKER.rglob("*.py")):
        tree = ast.parse(path.read_text(), str(path))
        tables = {
            t.id
            for node in tree.body
            if isinstance(node, ast.AnnAssign | ast.Assign)
            for t in ([node.target] if isinstance(node, ast.AnnAssign) else node.targets)
            if isinstance(t, ast.Name)
        }
        if path.name not in ("handlers.py", "wiring.py") and tables & {"HANDLERS", "BLOCKING"}:
            assert path.resolve() in wired, f"{path.relative_to(ROOT)} is not in wiring.MODULES"


def test_each_handler_says_its_syntax_first() -> None:
    by_handler: dict[object, set[str]] = {}
    for name, handler in wiring.handlers_of().items():
        by_handler.setdefault(handler, set()).add(name if name.startswith("__") else name.upper())
    for handler, names in by_handler.items():
        first = (handler.__doc__ or "").split("\n", 1)[0].split(" ", 1)[0]
        assert first in names, f"{handler.__module__}.{handler.__name__}: {handler.__doc__!r}"


def _shardkv_names(tree: ast.Module) -> set[str]:
    """The names a module binds by importing shardkv modules or their contents."""
    names = set()
    for node in tree.body:
        if isinstance(node, ast.Import):
            names.update(
                (a.asname or a.name).split(".")[0] for a in node.names if a.name.startswith("shardkv")
            )
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("shardkv"):
            names.update(a.asname or a.name for a in node.names)
    return names


def _root(node: ast.expr) -> ast.expr:
    while isinstance(node, ast.Attribute | ast.Subscript | ast.Call):
        node = node.func if isinstance(node, ast.Call) else node.value
    return node


def _filled_at_import(source: str, where: str) -> list[str]:
    """The statements of ``source`` that, at module level, reach into what
    another shardkv module defines: a call or an item or attribute assignment
    on an imported name, or a decorator imported from shardkv."""
    tree = ast.parse(source, where)
    imported = _shardkv_names(tree)
    found = []
    for node in tree.body:
        targets: list[ast.expr] = []
        if isinstance(node, ast.Expr):
            targets = [node.value]
        elif isinstance(node, ast.Assign):
            targets = [t for t in node.targets if not isinstance(t, ast.Name)]
        elif isinstance(node, ast.AugAssign | ast.AnnAssign) and not isinstance(node.target, ast.Name):
            targets = [node.target]
        for target in targets:
            root = _root(target)
            if isinstance(root, ast.Name) and root.id in imported:
                found.append(f"{where}:{node.lineno}: {ast.unparse(node)[:80]}")
        if isinstance(node, ast.FunctionDef | ast.ClassDef):
            for decorator in node.decorator_list:
                root = _root(decorator)
                if isinstance(root, ast.Name) and root.id in imported:
                    found.append(f"{where}:{decorator.lineno}: @{ast.unparse(decorator)}")
    return found


def test_no_module_fills_a_table_when_imported() -> None:
    """Registration by import (a ``@command`` decorator, ``aof.RECORDERS[...] =``
    or ``STREAM_READY.update(...)`` at module level) is what wiring replaced.
    Only a shard's start-up runs wiring.install (Shard.__init__)."""
    found = []
    for path in sorted(WORKER.rglob("*.py")):
        found += _filled_at_import(path.read_text(), str(path.relative_to(ROOT)))
    assert not found, "filled at import:\n" + "\n".join(found)


def test_the_check_finds_registration_by_import() -> None:
    """A guard against a check that finds nothing: the shapes it replaced."""
    source = (
        "from dataclasses import dataclass\n"
        "from shardkv.worker import blocking\n"
        "from shardkv.worker.persistence import aof\n"
        "from shardkv.worker.handlers import command\n"
        "aof.RECORDERS['pfcount'] = None\n"
        "blocking.STREAM_READY.update({})\n"
        "@command('get')\n"
        "def get(ks, args): ...\n"
        "@dataclass\n"
        "class Fine: ...\n"
        "TABLE = {'get': get}\n"
    )
    assert [line.split(": ", 1)[0] for line in _filled_at_import(source, "m.py")] == [
        "m.py:5",
        "m.py:6",
        "m.py:7",
    ]


def test_importing_the_handler_modules_registers_nothing() -> None:
    """In a fresh interpreter: every module wiring lists, imported, leaves the
    handler tables empty; wiring.install fills them."""
    modules = ", ".join(m.__name__ for m in wiring.MODULES)
    code = (
        f"import importlib\n"
        f"for name in {modules!r}.split(', '):\n"
        f"    importlib.import_module(name)\n"
        f"from shardkv.worker import handlers, wiring\n"
        f"assert not (handlers.HANDLERS or handlers.BLOCKING or handlers.KINDS or handlers.READY)\n"
        f"wiring.install()\n"
        f"assert handlers.find(b'get') is not None\n"
        f"print('ok')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.stdout.strip() == "ok", out.stderr
