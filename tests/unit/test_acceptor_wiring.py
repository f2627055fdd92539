"""The acceptor's wiring: every ``local`` row of the command table has
exactly one handler, and a mistake stops start-up (see
:mod:`shardkv.acceptor.wiring`)."""

from __future__ import annotations

import ast
import dataclasses
import pathlib

import pytest

import shardkv.acceptor
from shardkv.acceptor import wiring
from shardkv.protocol.commands import COMMANDS
from shardkv.runtime import config

ACCEPTOR = pathlib.Path(shardkv.acceptor.__file__).parent


def test_every_local_row_has_exactly_one_handler() -> None:
    handlers = wiring.local_handlers()
    local_rows = {name for name, cmd in COMMANDS.items() if cmd.route == "local"}
    assert set(handlers) == local_rows
    assert all(callable(h) for h in handlers.values())


def test_build_binds_the_handlers_and_hooks() -> None:
    acceptor = wiring.build(config.defaults())
    assert dict(acceptor.local) == wiring.local_handlers()
    bound = acceptor.wiring
    assert [h.__name__ for h in bound.interceptors] == ["queue", "bind_before_exec"]
    for hooks in (
        bound.on_connect,
        bound.on_disconnect,
        bound.on_attach,
        bound.on_config,
        bound.on_resetstat,
    ):
        assert hooks and all(callable(h) for h in hooks)


def test_a_local_row_without_handler_fails_start_up() -> None:
    handlers = wiring.local_handlers()
    del handlers["ping"]
    with pytest.raises(wiring.WiringError, match="no handler: ping"):
        wiring.check(handlers)


def test_a_handler_without_local_row_fails_start_up() -> None:
    handlers = wiring.local_handlers()
    handlers["get"] = handlers["ping"]  # GET runs in a shard
    handlers["nosuchcommand"] = handlers["ping"]
    with pytest.raises(wiring.WiringError, match="no local row in the command table: get, nosuchcommand"):
        wiring.check(handlers)


def test_a_new_local_row_needs_a_handler() -> None:
    table = dict(COMMANDS)
    table["newcmd"] = dataclasses.replace(COMMANDS["ping"], name="newcmd")
    with pytest.raises(wiring.WiringError, match="no handler: newcmd"):
        wiring.check(wiring.local_handlers(), table)


def _module_name(path: pathlib.Path) -> str:
    parts = path.relative_to(ACCEPTOR.parent.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: pathlib.Path, modules: set[str]) -> tuple[set[str], list[str]]:
    """The modules of ``modules`` that ``path`` imports at run time (outside
    ``if TYPE_CHECKING``), and its imports of shardkv modules inside
    functions or classes."""
    tree = ast.parse(path.read_text())
    runtime: set[str] = set()
    hidden: list[str] = []

    def names(node: ast.AST) -> list[str]:
        if isinstance(node, ast.Import):
            return [a.name for a in node.names]
        if isinstance(node, ast.ImportFrom) and node.module:
            return [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        return []

    for node in tree.body:
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            continue
        runtime.update(names(node))
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            for inner in ast.walk(node):
                hidden += [n for n in names(inner) if n.startswith("shardkv")]
    return runtime & modules, hidden


def test_acceptor_modules_import_without_cycles_or_hidden_imports() -> None:
    paths = {_module_name(p): p for p in ACCEPTOR.rglob("*.py")}
    graph = {}
    for name, path in paths.items():
        graph[name], hidden = _imports(path, set(paths))
        assert not hidden, f"{name} imports inside a function: {hidden}"
    done: set[str] = set()

    def visit(module: str, stack: list[str]) -> None:
        assert module not in stack, "import cycle: " + " -> ".join([*stack, module])
        if module in done:
            return
        for imported in sorted(graph[module]):
            visit(imported, [*stack, module])
        done.add(module)

    for module in sorted(graph):
        visit(module, [])
    assert "shardkv.acceptor.wiring" in graph and "shardkv.acceptor.commands.connection" in graph


def test_no_module_fills_a_registry_when_imported() -> None:
    """Registration by import (a ``@local`` decorator, ``HOOKS.append`` on
    another module's list at module level) is what wiring.build replaced."""
    for path in ACCEPTOR.rglob("*.py"):
        tree = ast.parse(path.read_text())
        imported = set()
        for node in tree.body:
            if isinstance(node, ast.Import | ast.ImportFrom):
                imported.update((a.asname or a.name).split(".")[0] for a in node.names)
        for node in tree.body:
            if isinstance(node, ast.Expr) and isinstance(node.value, ast.Call):
                root = node.value.func
                while isinstance(root, ast.Attribute):
                    root = root.value
                assert not (isinstance(root, ast.Name) and root.id in imported), (
                    f"{path.name}:{node.lineno}: fills another module's registry: {ast.unparse(node)}"
                )
            if isinstance(node, ast.FunctionDef):
                for decorator in node.decorator_list:  # as @local("ping") was
                    name = decorator.func if isinstance(decorator, ast.Call) else None
                    assert not (isinstance(name, ast.Name) and name.id in imported), (
                        f"{path.name}: {node.name} is registered by a decorator: {ast.unparse(decorator)}"
                    )


def test_a_fast_path_needs_a_local_handler() -> None:
    handlers = wiring.local_handlers()
    bound = wiring.wiring()
    wiring.check(handlers, fast_paths=bound.fast_paths)
    with pytest.raises(wiring.WiringError, match="fast paths of no local handler: get"):
        wiring.check(handlers, fast_paths={**bound.fast_paths, "get": bound.fast_paths["evalsha"]})


def test_each_handler_says_its_redis_syntax_first() -> None:
    by_handler: dict[object, set[str]] = {}
    for name, handler in wiring.local_handlers().items():
        by_handler.setdefault(handler, set()).add(name.upper())
    for handler, names in by_handler.items():
        first = (handler.__doc__ or "").split(" ", 1)[0].split("\n", 1)[0]
        assert first in names, f"{handler.__module__}.{handler.__name__}: {handler.__doc__!r}"
