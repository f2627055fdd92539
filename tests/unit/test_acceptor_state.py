"""A client's mode lives in one place: :class:`shardkv.acceptor.state.ClientState`,
changed only by its own methods."""

from __future__ import annotations

import ast
import pathlib
from collections.abc import Set as AbstractSet

import shardkv.acceptor
from shardkv.acceptor.state import REPLY_OFF, REPLY_ON, SCRIPTS, ClientState
from shardkv.protocol import acl
from shardkv.protocol.resp import RequestParser

ACCEPTOR = pathlib.Path(shardkv.acceptor.__file__).parent
FIELDS = set(ClientState.__slots__)
_MUTATORS = {"add", "discard", "clear", "append", "extend", "insert", "pop", "remove", "update", "setdefault"}


def _state_attribute(node: ast.AST, aliases: AbstractSet[str] = frozenset()) -> str | None:
    """``x.state.FIELD``, or ``alias.FIELD`` where ``alias`` is one of
    ``aliases`` (a name bound to a ClientState) -> FIELD."""
    if not isinstance(node, ast.Attribute) or node.attr not in FIELDS:
        return None
    owner = node.value
    if isinstance(owner, ast.Attribute) and owner.attr == "state":
        return node.attr
    if isinstance(owner, ast.Name) and owner.id in aliases:
        return node.attr
    return None


def _names_client_state(annotation: ast.AST | None) -> bool:
    return annotation is not None and "ClientState" in ast.unparse(annotation)


def _aliases(function: ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda) -> set[str]:
    """The names that ``function`` (or a function inside it) binds to a
    ClientState: ``state = client.state`` (or ``:=``), a parameter or a
    variable annotated ``ClientState``, ``ClientState(...)``."""
    arguments = function.args
    names = {
        a.arg
        for a in (*arguments.posonlyargs, *arguments.args, *arguments.kwonlyargs)
        if _names_client_state(a.annotation)
    }
    for node in ast.walk(function):
        if isinstance(node, ast.Assign | ast.NamedExpr):
            value = node.value
            if (isinstance(value, ast.Attribute) and value.attr == "state") or (
                isinstance(value, ast.Call) and _names_client_state(value.func)
            ):
                targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                names.update(t.id for t in targets if isinstance(t, ast.Name))
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            if _names_client_state(node.annotation):
                names.add(node.target.id)
    return names


def _offences(source: str, name: str) -> list[str]:
    """The statements of ``source`` that change a ClientState's field, or
    the object in one, other than through its methods."""
    tree = ast.parse(source)
    aliases: dict[int, AbstractSet[str]] = {}  # id(node) -> the names bound to a ClientState there
    for function in ast.walk(tree):
        if isinstance(function, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
            bound = _aliases(function)
            for node in ast.walk(function):
                aliases[id(node)] = aliases.get(id(node), frozenset()) | bound
    offences = []
    for node in ast.walk(tree):
        bound = aliases.get(id(node), frozenset())
        targets: list[ast.AST] = []
        if isinstance(node, ast.Assign):
            targets = node.targets
        elif isinstance(node, ast.AugAssign | ast.AnnAssign):
            targets = [node.target]
        for target in targets:
            for part in ast.walk(target):
                if _state_attribute(part, bound):
                    offences.append(f"{name}:{node.lineno}: {ast.unparse(node)}")
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr in _MUTATORS
            and _state_attribute(node.func.value, bound)
        ):
            offences.append(f"{name}:{node.lineno}: {ast.unparse(node)}")
    return offences


def test_only_the_state_module_changes_a_clients_mode() -> None:
    offences = []
    for path in ACCEPTOR.rglob("*.py"):
        if path.name != "state.py":
            offences += _offences(path.read_text(), path.name)
    assert not offences


def test_the_rule_sees_a_field_changed_through_a_local_name() -> None:
    caught = _offences(
        """
def a(client):
    state = client.state
    state.scripts -= 1
    state.blocked_token = 0
    state.held.append(1)
def b(state: ClientState):
    state.multi = None
def c(client):
    if (s := client.state).blocked_token:
        s.reply_mode = 1
    def inner():
        state.monitoring = True
    state = client.state
def d(client):
    tracking = client.tracking  # another object: not a ClientState
    tracking.scripts = 0
    state = client.state
    return state.scripts
""",
        "x.py",
    )
    assert sorted(caught, key=lambda line: int(line.split(":")[1])) == [
        "x.py:4: state.scripts -= 1",
        "x.py:5: state.blocked_token = 0",
        "x.py:6: state.held.append(1)",
        "x.py:8: state.multi = None",
        "x.py:11: s.reply_mode = 1",
        "x.py:13: state.monitoring = True",
    ]


def test_transitions() -> None:
    parser = RequestParser(512 * 1024 * 1024)
    default = acl.default_user()
    default.apply([b">pw"])  # a password is required
    state = ClientState(parser, False, default)
    assert not parser.authenticated
    state.authenticate()
    assert state.authenticated and parser.authenticated and state.user is default
    someone = acl.User(b"someone")
    state.authenticate(someone)
    assert state.user is someone
    state.reset_authentication(default)
    assert not state.authenticated and not parser.authenticated and state.user is default
    state.authenticate(someone)
    state.log_out(default)  # ACL DELUSER of its user
    assert not state.authenticated and not parser.authenticated and state.user is default

    state.begin_multi()
    state.queue("get", [b"GET", b"k"])
    state.reject_in_multi()
    assert state.multi == [("get", [b"GET", b"k"])] and state.multi_error
    assert state.take_multi() == [("get", [b"GET", b"k"])]
    assert state.multi is None and state.multi_error  # EXEC reads it, then discards
    state.discard_multi()
    assert not state.multi_error
    state.reject_in_multi()  # outside MULTI: nothing to abort
    assert not state.multi_error

    table = state.watch_in()
    table[b"k"] = 1
    assert state.watch_in() is table
    assert state.drop_watches() is table and state.watching is None

    for names in (state.channels, state.patterns, state.shard_channels):
        assert state.add_subscription(names, b"c") and not state.add_subscription(names, b"c")
        assert list(names) == [b"c"] and state.subscribed
        assert state.remove_subscription(names, b"c") and not state.remove_subscription(names, b"c")
        assert not names and not state.subscribed

    state.block(7)
    assert state.blocked
    state.hold([([b"GET", b"a"], None)])
    state.hold_first(([b"SET", b"a", b"1"], None))
    assert not state.unblock(8) and state.blocked_token == 7
    assert state.unblock(7) and not state.blocked_token and not state.blocked
    assert state.take_held() == [([b"SET", b"a", b"1"], None), ([b"GET", b"a"], None)]
    assert state.held == []

    # A blocking command holds the client's commands at once, and counts as
    # blocked only once its shards found nothing.
    state.block(9, shown=False)
    assert state.blocked_token == 9 and not state.blocked
    state.show_blocked(10)
    assert not state.blocked
    state.show_blocked(9)
    assert state.blocked
    assert state.unblock(9) and not state.blocked

    # A wait of internal coordination (holds, an EXEC's database) holds the
    # client's commands but never counts as blocked.
    state.block(-2, shown=False)
    assert state.blocked_token == -2 and not state.blocked
    assert state.unblock(-2) and not state.blocked

    # Scripts that may escape: the client's later commands wait for the last
    # one's reply; not while it waits for something else.
    assert state.script_sent() and state.script_sent()
    assert state.blocked_token == SCRIPTS and not state.blocked
    assert not state.script_answered() and state.blocked_token == SCRIPTS
    assert state.script_answered() and not state.blocked_token
    state.block(-2, shown=False)
    assert not state.script_sent() and state.blocked_token == -2
    assert state.unblock(-2)

    state.set_reply_mode(REPLY_OFF)
    assert state.reply_mode == REPLY_OFF
    state.set_reply_mode(REPLY_ON)
    assert state.start_monitoring() and not state.start_monitoring()
    assert state.stop_monitoring() and not state.stop_monitoring()
    state.enter_exec()
    assert state.in_exec
    state.leave_exec()
    assert not state.in_exec
    parts: list = []
    state.build_exec(parts)
    assert state.exec_parts is parts
    state.build_exec(None)
    assert state.exec_parts is None
    state.took_replies(2)
    state.took_replies(3)
    assert state.flushed == 5
