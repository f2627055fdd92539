"""ACL users as Redis 7.0 has them: the rules of ACL SETUSER, the checks
of a command against a user, and the description ACL LIST gives.

Both sides use it: the acceptor checks every command of a client whose
user may not run everything (:meth:`User.check`), and a worker checks a
script's ``redis.call`` against the user that ran the script, which the
acceptor sends with it as the rules ACL LIST would show
(:meth:`User.wire`, :func:`user_of`).

A user is Redis's ``user`` with its root selector (selectors in
parentheses are not supported): flags (on/off, nopass, sanitize-payload),
SHA-256 password hashes, the commands it may run as a set of names (a
command, or ``container|sub``: Redis's bitmap of command ids), the
``allcommands`` flag and the reserved "future commands" bit that only
``+@all`` sets, first arguments allowed of otherwise denied commands
(``+select|0``), key patterns with their read/write permissions, and
channel patterns.

The categories of each command are the command table's
(:func:`categories`, what COMMAND INFO reports), so ``+@read`` means the
commands COMMAND INFO calls ``@read``.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Collection, Iterable

from shardkv.protocol import command_docs, commands, errors
from shardkv.protocol.args import LLONG_MAX, LLONG_MIN
from shardkv.protocol.glob import glob_match
from shardkv.protocol.key_specs import keys_and_flags
from shardkv.protocol.resp import strict_int

# -- categories --------------------------------------------------------------

# Redis's ACL categories, in its order (ACL CAT, COMMAND INFO, descriptions).
CATEGORIES = (
    "keyspace read write set sortedset list hash string bitmap hyperloglog geo stream "
    "pubsub admin fast slow blocking dangerous connection transaction scripting"
).split()
_ORDER = ["@" + c for c in CATEGORIES]
_GROUP_CATEGORY = {
    "string": "@string",
    "bitmap": "@bitmap",
    "hash": "@hash",
    "list": "@list",
    "set": "@set",
    "sorted_set": "@sortedset",
    "generic": "@keyspace",
    "pubsub": "@pubsub",
    "transactions": "@transaction",
    "connection": "@connection",
    "hyperloglog": "@hyperloglog",
    "geo": "@geo",
    "scripting": "@scripting",
    "stream": "@stream",
}
# Commands whose categories the flags and group do not give.
_OVERRIDES = {
    **dict.fromkeys(
        ("eval", "evalsha", "eval_ro", "evalsha_ro", "fcall", "fcall_ro"), ["@slow", "@scripting"]
    ),
    # The containers: their subcommands have the categories.
    **dict.fromkeys(
        ("script", "function", "acl", "client", "config", "object", "xgroup", "xinfo", "pubsub"), ["@slow"]
    ),
    "command": ["@slow", "@connection"],
    "info": ["@slow", "@dangerous"],
    "lastsave": ["@admin", "@fast", "@dangerous"],
    "swapdb": ["@keyspace", "@write", "@fast", "@dangerous"],
    "dbsize": ["@keyspace", "@read", "@fast"],
    "flushall": ["@keyspace", "@write", "@slow", "@dangerous"],
    "flushdb": ["@keyspace", "@write", "@slow", "@dangerous"],
    "wait": ["@slow", "@connection"],
    "keys": ["@keyspace", "@read", "@slow", "@dangerous"],
    "restore": ["@keyspace", "@write", "@slow", "@dangerous"],
    "sort": ["@write", "@set", "@sortedset", "@list", "@slow", "@dangerous"],
    "sort_ro": ["@read", "@set", "@sortedset", "@list", "@slow", "@dangerous"],
    "migrate": ["@keyspace", "@write", "@slow", "@dangerous"],
    "restore-asking": ["@keyspace", "@write", "@slow", "@dangerous"],
    "module": ["@slow"],
    "role": ["@admin", "@fast", "@dangerous"],
    **dict.fromkeys(("asking", "readonly", "readwrite"), ["@fast", "@connection"]),
}
# Subcommands whose categories their flags do not give (Redis 7.0.15's).
_SUB_OVERRIDES = {
    "acl|deluser": ["@admin", "@slow", "@dangerous"],
    "acl|cat": ["@slow"],
    "acl|genpass": ["@slow"],
    "acl|help": ["@slow"],
    "acl|whoami": ["@slow"],
    "pubsub|help": ["@slow"],
    **{
        "command|" + s: ["@slow", "@connection"]
        for s in ("count", "docs", "getkeys", "info", "list", "getkeysandflags", "help")
    },
}


def categories(cmd: commands.Command, flags: Collection[str] | None = None, full: str = "") -> list[str]:
    """The ACL categories (``@read``...) of ``cmd``, or of its subcommand
    ``full`` with ``flags``: an approximation of Redis's, from the flags
    and the group, with the exceptions above."""
    if full in _SUB_OVERRIDES:
        return _SUB_OVERRIDES[full]
    own = flags is None
    if flags is None:
        flags = cmd.flags
    cats = []
    if "write" in flags:
        cats.append("@write")
    elif "readonly" in flags:
        cats.append("@read")
    if cmd.group in _GROUP_CATEGORY:
        cats.append(_GROUP_CATEGORY[cmd.group])
    cats.append("@fast" if "fast" in flags else "@slow")
    if "blocking" in flags:
        cats.append("@blocking")
    if "admin" in flags:
        cats += ["@admin", "@dangerous"]
    if own:
        cats = _OVERRIDES.get(cmd.name, cats)
    return sorted(cats, key=_ORDER.index)


class _Entry:
    """One command as ACLs see it: a command, or a container's subcommand."""

    __slots__ = ("name", "cmd", "cats", "subs", "parent", "no_auth")

    def __init__(self, name: str, cmd: commands.Command, cats: list[str], parent: str | None) -> None:
        self.name = name
        self.cmd = cmd
        self.cats = frozenset(c[1:] for c in cats)
        self.subs: list[str] = []
        self.parent = parent
        self.no_auth = "no_auth" in cmd.flags


def _entries() -> dict[str, _Entry]:
    out: dict[str, _Entry] = {}
    for name, cmd in commands.COMMANDS.items():
        entry = out[name] = _Entry(name, cmd, categories(cmd), None)
        for sub in command_docs.SUBCOMMANDS.get(name, {}).values():
            out[sub.name] = _Entry(sub.name, cmd, categories(cmd, sub.flags, sub.name), name)
            entry.subs.append(sub.name)
    return out


ENTRIES = _entries()
ALL = frozenset(ENTRIES)
_IN_CATEGORY = {c: [e.name for e in ENTRIES.values() if c in e.cats] for c in CATEGORIES}


def in_category(category: str) -> list[str]:
    """The commands and subcommands of ``category`` (ACL CAT category)."""
    return _IN_CATEGORY[category]


def full_name(cmd: commands.Command, args: list[bytes]) -> str:
    """``get``, or ``config|get`` for a container's (known) subcommand."""
    if cmd.container and len(args) > 1:
        return cmd.name + "|" + args[1].decode("latin-1").lower()
    return cmd.name


# -- users -------------------------------------------------------------------

READ, WRITE = 1, 2
ALL_PERMISSIONS = READ | WRITE

DENIED_CMD, DENIED_KEY, DENIED_CHANNEL = 1, 2, 3
# ACL LOG's reason of each
LOG_REASONS = {DENIED_CMD: "command", DENIED_KEY: "key", DENIED_CHANNEL: "channel"}


class RuleError(Exception):
    """An ACL SETUSER rule Redis refuses; the message is Redis's."""


def hash_password(password: bytes) -> str:
    return hashlib.sha256(password).hexdigest()


def _valid_hash(text: bytes) -> bool:
    return len(text) == 64 and all(c in b"0123456789abcdef" for c in text)


def _rule_digest(op: bytes) -> str:
    """The SHA-256 hex digest a password rule names: ``>pass``/``<pass``
    hash their password, ``#hash``/``!hash`` give it (checked)."""
    if op[:1] in (b">", b"<"):
        return hash_password(op[1:])
    if not _valid_hash(op[1:]):
        raise RuleError(errors.ACL_BAD_HASH)
    return op[1:].decode()


def _has_spaces(text: bytes) -> bool:
    return any(c in b" \t\n\v\f\r\0" for c in text)


class User:
    """One ACL user (Redis's ``user`` and its root selector)."""

    __slots__ = (
        "name",
        "enabled",
        "nopass",
        "sanitize",
        "passwords",
        "allowed",
        "future",
        "allcommands",
        "firstargs",
        "allkeys",
        "patterns",
        "allchannels",
        "channels",
        "unlimited",
        "_wire",
    )

    def __init__(self, name: bytes, allchannels: bool = False) -> None:
        self.name = name
        self.enabled = False
        self.nopass = False
        self.sanitize = ""  # "", "sanitize-payload" or "skip-sanitize-payload"
        # Password digests and channel patterns: dicts used as ordered sets,
        # for the same reason as patterns below.
        self.passwords: dict[str, None] = {}
        self.allowed: set[str] = set()
        self.future = False  # Redis's reserved bit: set by +@all only
        self.allcommands = False
        self.firstargs: dict[str, list[bytes]] = {}
        self.allkeys = False
        # pattern -> READ|WRITE, in the order first given; a dict, so that
        # a rule finds its pattern at once (a list made ACL SETUSER of n
        # patterns cost n squared).
        self.patterns: dict[bytes, int] = {}
        self.allchannels = allchannels
        self.channels: dict[bytes, None] = {}
        # May run every command on every key and channel: no check needed
        # (the clients' hot path tests this one flag).
        self.unlimited = False
        self._wire: bytes | None = None

    def copy(self, name: bytes | None = None) -> User:
        other = User(self.name if name is None else name)
        other.assign(self)
        return other

    def assign(self, other: User) -> None:
        """Take ``other``'s rules (the name stays): Redis's ACLCopyUser."""
        self.enabled = other.enabled
        self.nopass = other.nopass
        self.sanitize = other.sanitize
        self.passwords = dict(other.passwords)
        self.allowed = set(other.allowed)
        self.future = other.future
        self.allcommands = other.allcommands
        self.firstargs = {k: list(v) for k, v in other.firstargs.items()}
        self.allkeys = other.allkeys
        self.patterns = dict(other.patterns)
        self.allchannels = other.allchannels
        self.channels = dict(other.channels)
        self.unlimited = other.unlimited
        self._wire = None

    def _update(self) -> None:
        self.unlimited = self.allcommands and self.allkeys and self.allchannels
        self._wire = None

    def wire(self) -> bytes:
        """The rules that make this user's permissions again (a script's
        user, for its worker: :func:`user_of`); kept until the user changes."""
        if self._wire is None:
            parts = [*self.key_rules()]
            if not self.allchannels:
                parts.append("resetchannels")
            parts += self.channel_rules()
            parts.append(self.command_rules())
            self._wire = " ".join(parts).encode("latin-1")
        return self._wire

    # -- rules ----------------------------------------------------------------

    def apply(self, rules: Iterable[bytes], pubsub_default: bool = False) -> None:
        """Apply ACL SETUSER's rules in order; RuleError names the first bad one."""
        for rule in rules:
            self.apply_one(rule, pubsub_default)
        self._update()

    def apply_one(self, op: bytes, pubsub_default: bool = False) -> None:
        low = op.lower()
        if not op:
            return
        if low == b"on":
            self.enabled = True
        elif low == b"off":
            self.enabled = False
        elif low == b"skip-sanitize-payload":
            self.sanitize = "skip-sanitize-payload"
        elif low == b"sanitize-payload":
            self.sanitize = "sanitize-payload"
        elif low == b"nopass":
            self.nopass = True
            self.passwords = {}
        elif low == b"resetpass":
            self.nopass = False
            self.passwords = {}
        elif op[:1] in (b">", b"#"):
            digest = _rule_digest(op)
            self.passwords[digest] = None
            self.nopass = False
        elif op[:1] in (b"<", b"!"):
            digest = _rule_digest(op)
            if digest not in self.passwords:
                raise RuleError(errors.ACL_NO_SUCH_PASSWORD)
            del self.passwords[digest]
        elif op[:1] == b"(" and op[-1:] == b")":
            raise RuleError(errors.ACL_NO_SELECTORS)
        elif low == b"clearselectors":
            pass  # there are none
        elif low == b"reset":
            for step in (b"resetpass", b"resetkeys", b"resetchannels"):
                self.apply_one(step)
            if pubsub_default:
                self.apply_one(b"allchannels")
            self.enabled = False
            self.sanitize = "sanitize-payload"
            self.apply_one(b"-@all")
        else:
            self._selector(op, low)

    def _selector(self, op: bytes, low: bytes) -> None:
        """Redis's ACLSetSelector: keys, channels and commands."""
        if low in (b"allkeys", b"~*"):
            self.allkeys = True
            self.patterns = {}
        elif low == b"resetkeys":
            self.allkeys = False
            self.patterns = {}
        elif low in (b"allchannels", b"&*"):
            self.allchannels = True
            self.channels = {}
        elif low == b"resetchannels":
            self.allchannels = False
            self.channels = {}
        elif low in (b"allcommands", b"+@all"):
            self.allowed = set(ALL)
            self.future = True
            self.allcommands = True
            self.firstargs = {}
        elif low in (b"nocommands", b"-@all"):
            self.allowed = set()
            self.future = False
            self.allcommands = False
            self.firstargs = {}
        elif op[:1] in (b"~", b"%"):
            self._key_pattern(op)
        elif op[:1] == b"&":
            if self.allchannels:
                raise RuleError(errors.ACL_AFTER_ALLCHANNELS)
            if _has_spaces(op[1:]):
                raise RuleError(errors.ACL_SYNTAX)
            self.channels[op[1:]] = None
        elif op[:1] == b"+" and op[1:2] != b"@":
            self._allow(op[1:])
        elif op[:1] == b"-" and op[1:2] != b"@":
            entry = ENTRIES.get(op[1:].decode("latin-1").lower())
            if entry is None:
                raise RuleError(errors.ACL_UNKNOWN_COMMAND)
            self.change(entry, False)
        elif op[:1] in (b"+", b"-") and op[1:2] == b"@":
            category = op[2:].decode("latin-1").lower()
            if category not in _IN_CATEGORY:
                raise RuleError(errors.ACL_UNKNOWN_COMMAND)
            self.set_category(category, op[:1] == b"+")
        else:
            raise RuleError(errors.ACL_SYNTAX)

    def _key_pattern(self, op: bytes) -> None:
        if self.allkeys:
            raise RuleError(errors.ACL_AFTER_ALLKEYS)
        flags = 0
        offset = 1
        if op[:1] == b"%":
            while offset < len(op):
                c = op[offset : offset + 1].upper()
                if c == b"R" and not flags & READ:
                    flags |= READ
                elif c == b"W" and not flags & WRITE:
                    flags |= WRITE
                elif c == b"~":
                    offset += 1
                    break
                else:
                    raise RuleError(errors.ACL_SYNTAX)
                offset += 1
            if not flags:
                raise RuleError(errors.ACL_SYNTAX)
        else:
            flags = ALL_PERMISSIONS
        pattern = op[offset:]
        if _has_spaces(pattern):
            raise RuleError(errors.ACL_SYNTAX)
        self.patterns[pattern] = self.patterns.get(pattern, 0) | flags
        self.allkeys = False

    def _allow(self, name: bytes) -> None:
        text = name.decode("latin-1").lower()
        if "|" not in text:
            entry = ENTRIES.get(text)
            if entry is None:
                raise RuleError(errors.ACL_UNKNOWN_COMMAND)
            self.change(entry, True)
            return
        head, _, sub = text.rpartition("|")
        entry = ENTRIES.get(head)
        if entry is None:
            raise RuleError(errors.ACL_UNKNOWN_COMMAND)
        if entry.parent is not None:
            raise RuleError(errors.ACL_FIRSTARG_OF_SUBCOMMAND)
        if not sub:
            raise RuleError(errors.ACL_SYNTAX)
        if entry.subs:
            found = ENTRIES.get(text)
            if found is None:
                raise RuleError(errors.ACL_UNKNOWN_COMMAND)
            self.change(found, True)
            return
        allowed = self.firstargs.setdefault(entry.name, [])
        first = name.rpartition(b"|")[2]
        if all(a.lower() != first.lower() for a in allowed):
            allowed.append(first)

    def change(self, entry: _Entry, allow: bool) -> None:
        """Allow or deny a command, and a container's subcommands with it."""
        names = [entry.name, *entry.subs]
        if allow:
            self.allowed.update(names)
        else:
            self.allowed.difference_update(names)
            self.allcommands = False
        self.firstargs.pop(entry.name, None)

    def set_category(self, category: str, allow: bool) -> None:
        for name in _IN_CATEGORY[category]:
            self.change(ENTRIES[name], allow)

    # -- checks -----------------------------------------------------------------

    def password_ok(self, password: bytes) -> bool:
        """AUTH: enabled, and nopass or one of the passwords."""
        if not self.enabled:
            return False
        if self.nopass:
            return True
        given = hash_password(password).encode()
        ok = False
        for digest in self.passwords:
            ok |= hmac.compare_digest(given, digest.encode())
        return ok

    def check(self, cmd: commands.Command, args: list[bytes]) -> tuple[int, int]:
        """(0, 0) when this user may run ``args``, else (what is denied,
        the position of the key or channel): Redis's ACLSelectorCheckCmd."""
        if self.unlimited:
            return 0, 0
        name = full_name(cmd, args)
        entry = ENTRIES.get(name)
        if entry is None:
            return DENIED_CMD, 0
        if not self.allcommands and not entry.no_auth and name not in self.allowed:
            allowed = self.firstargs.get(name)
            at = 2 if "|" in name else 1
            if not allowed or len(args) <= at or all(a.lower() != args[at].lower() for a in allowed):
                return DENIED_CMD, 0
        if not self.allkeys:
            for pos, flags in _keys_with_flags(cmd, name, args):
                if not self._key_ok(args[pos], flags):
                    return DENIED_KEY, pos
        if not self.allchannels and cmd.name in _CHANNELS:
            literal = cmd.name == "psubscribe"
            positions = range(1, 2) if cmd.name in ("publish", "spublish") else range(1, len(args))
            for pos in positions:
                if not self.channel_ok(args[pos], literal):
                    return DENIED_CHANNEL, pos
        return 0, 0

    def sort_denied(self, name: str, args: list[bytes]) -> str | None:
        """The error SORT or SORT_RO (the command ``name``) ``args``, which :meth:`check` let
        through) answers for a BY pattern with a ``*`` or a GET pattern:
        the keys they name are checked by no one, so Redis's
        ``sortCommandGeneric`` refuses them, as it parses the options in
        order, to a user that may not read every key (allkeys, or a ``*``
        pattern with read permission).  None when SORT is to run: also when
        an option before is wrong, which the command itself answers."""
        if name not in _SORTS or self.allkeys:
            return None
        if self.patterns.get(b"*", 0) & READ:
            return None
        readonly = name == "sort_ro"
        n = len(args)
        j = 2
        while j < n:
            left = n - j - 1
            word = args[j].lower()
            if word in (b"asc", b"desc", b"alpha"):
                pass
            elif word == b"limit" and left >= 2:
                for arg in args[j + 1 : j + 3]:
                    value = strict_int(arg)
                    if value is None or not LLONG_MIN <= value <= LLONG_MAX:
                        return None
                j += 2
            elif not readonly and word == b"store" and left >= 1:
                j += 1
            elif word == b"by" and left >= 1:
                pattern = args[j + 1]
                nul = pattern.find(b"\0")
                if b"*" in (pattern if nul < 0 else pattern[:nul]):  # (strchr)
                    return errors.SORT_BY_DENIED
                j += 1
            elif word == b"get" and left >= 1:
                return errors.SORT_GET_DENIED
            else:
                return None
            j += 1
        return None

    def _key_ok(self, key: bytes, flags: int) -> bool:
        for pattern, allowed in self.patterns.items():
            if allowed & flags == flags and glob_match(pattern, key):
                return True
        return False

    def channel_ok(self, channel: bytes, literal: bool) -> bool:
        if self.allchannels:
            return True
        for pattern in self.channels:
            if (pattern == channel) if literal else glob_match(pattern, channel):
                return True
        return False

    # -- description ------------------------------------------------------------

    def flag_names(self) -> list[str]:
        out = ["on" if self.enabled else "off"]
        if self.nopass:
            out.append("nopass")
        if self.sanitize:
            out.append(self.sanitize)
        return out

    def key_rules(self) -> list[str]:
        if self.allkeys:
            return ["~*"]
        return [_PATTERN_PREFIX[flags] + p.decode("latin-1") for p, flags in self.patterns.items()]

    def channel_rules(self) -> list[str]:
        if self.allchannels:
            return ["&*"]
        return ["&" + c.decode("latin-1") for c in self.channels]

    def command_rules(self) -> str:
        """Redis's ACLDescribeSelectorCommandRules: +@all or -@all, the
        categories that fit best, then single commands (in the command
        table's order, where Redis follows its hash table's)."""
        additive = not self.future
        fake = User(b"")
        fake.apply_one(b"-@all" if additive else b"+@all")
        rules = ["-@all" if additive else "+@all"]
        temp = set(self.allowed)
        applied: set[str] = set()
        while True:
            best = None
            mindiff, maxsame = 1 << 62, 0
            for category in CATEGORIES:
                if category in applied:
                    continue
                members = _IN_CATEGORY[category]
                on = sum(1 for n in members if n in temp)
                off = len(members) - on
                diff, same = (off, on) if additive else (on, off)
                if same > diff and (diff < mindiff or (diff == mindiff and same > maxsame)):
                    best, mindiff, maxsame = category, diff, same
            if best is None:
                break
            fake.set_category(best, additive)
            for name in _IN_CATEGORY[best]:  # the inverse on the temporary copy
                for n in (name, *ENTRIES[name].subs):
                    if additive:
                        temp.discard(n)
                    else:
                        temp.add(n)
            rules.append(("+@" if additive else "-@") + best)
            applied.add(best)
        for name, entry in ENTRIES.items():
            mine = name in self.allowed
            if mine != (name in fake.allowed):
                rules.append(("+" if mine else "-") + name)
                fake.change(entry, mine)
            if not mine:
                for first in self.firstargs.get(name, ()):
                    rules.append("+%s|%s" % (name, first.decode("latin-1")))
        return " ".join(rules)

    def describe(self) -> str:
        """The rules ACL LIST shows after ``user <name>``."""
        parts = self.flag_names()
        parts += ["#" + p for p in self.passwords]
        parts += self.key_rules()
        if not self.allchannels:
            parts.append("resetchannels")
        parts += self.channel_rules()
        parts.append(self.command_rules())
        return " ".join(parts)


_PATTERN_PREFIX = {ALL_PERMISSIONS: "~", READ: "%R~", WRITE: "%W~"}
_CHANNELS = frozenset({"publish", "subscribe", "psubscribe", "spublish", "ssubscribe"})
_SORTS = frozenset({"sort", "sort_ro"})


def _spec_flags(flags: str) -> int:
    words = flags.split()
    out = 0
    if "access" in words:
        out |= READ
    if "insert" in words or "delete" in words or "update" in words:
        out |= WRITE
    return out


def _keys_with_flags(cmd: commands.Command, name: str, args: list[bytes]) -> list[tuple[int, int]]:
    """The positions of a command's keys with the permissions each needs."""
    return [(pos, _spec_flags(flags)) for pos, flags in keys_and_flags(name, args, cmd.keys)]


def denied_message(kind: int, cmd_name: str) -> str:
    """The NOPERM error Redis 7.0 replies with (without its ``-``)."""
    if kind == DENIED_CMD:
        return errors.NOPERM_COMMAND % cmd_name
    if kind == DENIED_KEY:
        return errors.NOPERM_KEY
    return errors.NOPERM_CHANNEL


def default_user() -> User:
    """Redis's default user: on, nopass, everything."""
    user = User(b"default")
    user.apply([b"+@all", b"~*", b"&*", b"on", b"nopass"])
    return user


_USERS: dict[bytes, User] = {}


def user_of(rules: bytes) -> User:
    """The user that :meth:`User.wire` describes (a few kept, by rules)."""
    user = _USERS.get(rules)
    if user is None:
        user = User(b"")
        user.apply(rules.split())
        if len(_USERS) >= 64:
            _USERS.clear()
        _USERS[rules] = user
    return user
