"""The worker's layout rules: the command modules never import each other
(what they share is in ``shardkv.worker.values`` or
``shardkv.protocol.args``), and C's integer limits are defined once."""

from __future__ import annotations

import ast
import pathlib

import shardkv

ROOT = pathlib.Path(shardkv.__file__).parent
COMMANDS = ROOT / "worker" / "commands"


def _imported(tree: ast.AST) -> set[str]:
    """Every module an import statement of ``tree`` names (``from a import b``
    names ``a`` and ``a.b``)."""
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            out.add(node.module)
            out |= {f"{node.module}.{alias.name}" for alias in node.names}
    return out


def test_command_modules_never_import_each_other() -> None:
    modules = {f"shardkv.worker.commands.{p.stem}" for p in COMMANDS.glob("*.py") if p.stem != "__init__"}
    found = []
    for path in sorted(COMMANDS.glob("*.py")):
        imported = _imported(ast.parse(path.read_text(), str(path)))
        found += [f"{path.name} imports {name}" for name in sorted(imported & modules)]
    assert not found


def test_c_limits_are_defined_once() -> None:
    names = {"LLONG_MAX", "LLONG_MIN", "ULLONG_MAX"}  # (geohash's LONG_* are longitudes)
    found = []
    for path in sorted((ROOT / "worker").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Assign):
                for target in node.targets:
                    if isinstance(target, ast.Name) and target.id.lstrip("_") in names:
                        found.append(f"{path.relative_to(ROOT)}:{node.lineno}: {target.id}")
    assert not found, "use shardkv.protocol.args's:\n" + "\n".join(found)
