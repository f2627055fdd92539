"""The package layout's rules (README "Layout"), checked on the source.

Every module of ``shardkv`` is read with :mod:`ast` (nothing is imported),
and every ``import`` statement in it counts: at module level, inside
functions and classes, and under ``if TYPE_CHECKING:``.  The rules:

- ``shardkv.protocol`` imports nothing else from shardkv;
- ``shardkv.runtime`` imports neither ``shardkv.acceptor`` nor ``shardkv.worker``;
- ``shardkv.acceptor`` and ``shardkv.worker`` never import each other;
- nothing in shardkv imports ``tests`` or ``benchmarks``;
- the imports between shardkv's modules form no cycle.  Only imports that
  run count here: an import under ``if TYPE_CHECKING:`` names a type for
  the checker and never runs, so it cannot make a cycle (it still counts
  for the rules above).

An import edge goes to the most specific shardkv module named:
``from shardkv.protocol import errors`` is an edge to
``shardkv.protocol.errors``, ``from shardkv.protocol.errors import WRONGTYPE``
one to ``shardkv.protocol.errors`` too.  The parent packages that Python
imports first are not edges (their ``__init__`` modules are checked as
modules of their own).

And the README's Layout section names every module (see
:func:`readme_modules` for how a name is read).
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "shardkv"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES: dict[str, Path] = {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}
PACKAGES = {name for name, path in MODULES.items() if path.name == "__init__.py"}


@dataclass(frozen=True)
class Import:
    source: str  # the importing module
    target: str  # the imported module, as written or resolved (may be outside shardkv)
    line: int
    type_checking: bool  # under ``if TYPE_CHECKING:``: never runs


def _is_type_checking(test: ast.expr) -> bool:
    if isinstance(test, ast.Name):
        return test.id == "TYPE_CHECKING"
    return isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"


def _resolve(source: str, node: ast.ImportFrom) -> str:
    """The absolute name of ``from <module> import ...`` in ``source``."""
    if not node.level:
        return node.module or ""
    package = source if source in PACKAGES else source.rpartition(".")[0]
    for _ in range(node.level - 1):
        package = package.rpartition(".")[0]
    return f"{package}.{node.module}" if node.module else package


def _imports_of(source: str, path: Path) -> list[Import]:
    found: list[Import] = []

    def visit(node: ast.AST, type_checking: bool) -> None:
        if isinstance(node, ast.Import):
            for alias in node.names:
                found.append(Import(source, alias.name, node.lineno, type_checking))
        elif isinstance(node, ast.ImportFrom):
            base = _resolve(source, node)
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                found.append(Import(source, sub if sub in MODULES else base, node.lineno, type_checking))
        elif isinstance(node, ast.If) and _is_type_checking(node.test):
            for child in node.body:
                visit(child, True)
            for child in node.orelse:
                visit(child, type_checking)
            return
        for child in ast.iter_child_nodes(node):
            visit(child, type_checking)

    visit(ast.parse(path.read_text(), str(path)), False)
    return found


IMPORTS: list[Import] = [imp for name, path in MODULES.items() for imp in _imports_of(name, path)]


def _within(name: str, package: str) -> bool:
    return name == package or name.startswith(package + ".")


def _violations(source_pkg: str, forbidden: list[str], allowed: tuple[str, ...] = ()) -> list[str]:
    return [
        f"{MODULES[i.source].relative_to(ROOT)}:{i.line}: {i.source} imports {i.target}"
        for i in IMPORTS
        if _within(i.source, source_pkg)
        and any(_within(i.target, f) for f in forbidden)
        and not any(_within(i.target, a) for a in allowed)
    ]


def test_the_modules_are_found() -> None:
    # A guard against a test that checks nothing (a wrong ROOT).
    for name in ("shardkv.protocol.resp", "shardkv.acceptor", "shardkv.worker.keyspace"):
        assert name in MODULES
    assert any(i.target == "shardkv.protocol.errors" for i in IMPORTS)


def test_protocol_imports_nothing_else_from_shardkv() -> None:
    assert _violations("shardkv.protocol", ["shardkv"], allowed=("shardkv.protocol",)) == []


def test_runtime_imports_neither_side() -> None:
    assert _violations("shardkv.runtime", ["shardkv.acceptor", "shardkv.worker"]) == []


def test_acceptor_does_not_import_the_worker() -> None:
    assert _violations("shardkv.acceptor", ["shardkv.worker"]) == []


def test_worker_does_not_import_the_acceptor() -> None:
    assert _violations("shardkv.worker", ["shardkv.acceptor"]) == []


def test_shardkv_imports_neither_tests_nor_benchmarks() -> None:
    assert _violations("shardkv", ["tests", "benchmarks"]) == []


def _cycles(imports: list[Import]) -> list[list[str]]:
    """The strongly connected components of more than one module (or a
    module importing itself), by Tarjan's algorithm, each sorted."""
    graph: dict[str, set[str]] = {name: set() for name in MODULES}
    for i in imports:
        if not i.type_checking and i.target in MODULES:
            graph[i.source].add(i.target)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []

    def connect(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                connect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1 or v in graph[v]:
                components.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            connect(v)
    return components


def test_cycle_finder_finds_a_cycle() -> None:
    # The check below must be able to fail: a cycle made up here is found.
    made_up = [
        Import("shardkv.protocol.resp", "shardkv.protocol.errors", 1, False),
        Import("shardkv.protocol.errors", "shardkv.protocol.glob", 1, False),
        Import("shardkv.protocol.glob", "shardkv.protocol.resp", 1, False),
    ]
    assert ["shardkv.protocol.errors", "shardkv.protocol.glob", "shardkv.protocol.resp"] in _cycles(made_up)
    # ... and one that runs only for the type checker is none.
    type_only = [Import(i.source, i.target, i.line, True) for i in made_up]
    assert ["shardkv.protocol.errors", "shardkv.protocol.glob", "shardkv.protocol.resp"] not in _cycles(
        type_only
    )


AREAS = ("shardkv.protocol", "shardkv.runtime", "shardkv.acceptor", "shardkv.worker")


def _area_of(component: list[str]) -> str:
    """The package that holds every module of ``component``, or "between
    packages" (one of the rules above is broken too, unless the cycle goes
    through a top-level module such as the supervisor)."""
    for area in AREAS:
        if all(_within(name, area) for name in component):
            return area
    return "between packages"


# One check per package, so that a package free of cycles stays so while
# another still has one.  Cycles known today (none since issue 16 broke them):
KNOWN_CYCLES: dict[str, str] = {}


@pytest.mark.parametrize(
    "area",
    [
        pytest.param(area, marks=pytest.mark.xfail(strict=True, reason=KNOWN_CYCLES[area]))
        if area in KNOWN_CYCLES
        else area
        for area in (*AREAS, "between packages")
    ],
)
def test_no_import_cycles(area: str) -> None:
    cycles = [c for c in _cycles(IMPORTS) if _area_of(c) == area]
    detail = []
    for component in cycles:
        members = set(component)
        edges = sorted(
            {
                f"  {i.source} -> {i.target} ({MODULES[i.source].relative_to(ROOT)}:{i.line})"
                for i in IMPORTS
                if i.source in members and i.target in members and not i.type_checking
            }
        )
        detail.append(f"cycle through {len(component)} modules: {', '.join(component)}\n" + "\n".join(edges))
    assert cycles == [], "\n\n".join(detail)


# -- the README's Layout section ---------------------------------------------------

_HEADER = re.compile(r"^(shardkv(?:/[A-Za-z_]\w*)*)/(?:\s|$)")  # shardkv/pkg/ at column 0
_FILE = re.compile(r"^(shardkv/(?:[A-Za-z_]\w*/)*[A-Za-z_]\w*\.py)(?:\s|$)")  # shardkv/x.py at column 0
_ENTRY = re.compile(r"^  (\S.*?)(?:\s{2,}(.*))?$")  # two spaces, names, then two or more spaces
_WORD = re.compile(r"[A-Za-z_]\w*")


def _layout_block() -> list[str]:
    text = (ROOT / "README.md").read_text()
    section = re.search(r"^## Layout\n(.*?)(?=^## )", text, re.S | re.M)
    assert section, "README.md has no '## Layout' section"
    block = re.search(r"^```\n(.*?)^```", section.group(1), re.S | re.M)
    assert block, "the Layout section has no code block"
    return block.group(1).splitlines()


def readme_modules(block: list[str] | None = None) -> set[str]:
    """The modules the README's Layout code block names, by dotted name.

    The block is read as it is written:

    - ``shardkv/x.py`` at the start of a line names module ``shardkv.x``;
    - ``shardkv/pkg/`` at the start of a line opens a package: the lines
      below it that start with two spaces are its entries, up to the next
      line that starts at column 0.  An entry's names come first and end at
      two or more spaces (its description follows):

      - ``a.py`` or ``a.py, b.py`` name the modules ``shardkv.pkg.a`` and
        ``shardkv.pkg.b``;
      - ``sub/`` names the subpackage ``shardkv.pkg.sub``, and each word of
        its description (on its line and the lines indented further below
        it), with or without ``.py``, names ``shardkv.pkg.sub.<word>`` (a
        word that is no module, such as "the" or "AOF", names nothing).

    A package's ``__init__`` is named by its header or its ``sub/`` entry.
    """
    named: set[str] = set()
    package: str | None = None
    subpackage: str | None = None
    for line in _layout_block() if block is None else block:
        if not line.strip():
            continue
        if not line.startswith(" "):
            subpackage = None
            package = None
            if m := _FILE.match(line):
                named.add(m.group(1)[:-3].replace("/", "."))
            elif m := _HEADER.match(line):
                package = m.group(1).replace("/", ".")
                named.add(package)
            continue
        if package is None:
            continue
        entry = _ENTRY.match(line)
        if entry and not line.startswith("   "):
            names, description = entry.group(1), entry.group(2) or ""
            subpackage = None
            if names.endswith("/"):
                subpackage = f"{package}.{names[:-1]}"
                named.add(subpackage)
                words = description
            else:
                for name in names.split(","):
                    name = name.strip()
                    if name.endswith(".py"):
                        named.add(f"{package}.{name[:-3]}")
                continue
        elif subpackage is not None:
            words = line
        else:
            continue
        for word in _WORD.findall(words.replace(".py", "")):
            if f"{subpackage}.{word}" in MODULES:
                named.add(f"{subpackage}.{word}")
    return named


def test_readme_layout_names_every_module() -> None:
    # The package itself (its __init__ holds the version) is the whole block.
    missing = sorted(set(MODULES) - readme_modules() - {"shardkv"})
    assert missing == [], f"README.md's Layout section does not name: {', '.join(missing)}"


def test_readme_layout_names_no_missing_module() -> None:
    # The other way round: what the section names exists (a module moved or
    # removed is taken out of the README too).
    stale = sorted(readme_modules() - set(MODULES))
    assert stale == [], f"README.md's Layout section names modules that do not exist: {', '.join(stale)}"


def test_readme_layout_rule() -> None:
    # How the block is read (see readme_modules), on a made-up block.
    block = """\
main.py                     entry point
shardkv/supervisor.py       processes
shardkv/protocol/           shared
  resp.py                   RESP
  errors.py, glob.py        errors; glob
  nosuch.py                 a stale line
shardkv/worker/             one shard
  commands/                 the commands: strings, hashes,
                            lists and the rest
  persistence/              engine.py (the AOF), aof.py
tests/                      not shardkv
  resp.py                   not shardkv either
""".splitlines()
    assert readme_modules(block) == {
        "shardkv.supervisor",
        "shardkv.protocol",
        "shardkv.protocol.resp",
        "shardkv.protocol.errors",
        "shardkv.protocol.glob",
        "shardkv.protocol.nosuch",
        "shardkv.worker",
        "shardkv.worker.commands",
        "shardkv.worker.commands.strings",
        "shardkv.worker.commands.hashes",
        "shardkv.worker.commands.lists",
        "shardkv.worker.persistence",
        "shardkv.worker.persistence.engine",
        "shardkv.worker.persistence.aof",
    }
