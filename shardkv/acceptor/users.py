"""ACL users: the ACL command, and the users every client runs as.

The acceptor keeps the users (:class:`Users`, ``server.users``); the rules
and checks are :mod:`shardkv.protocol.acl`'s.  A client runs as a user
(``client.state.user``, the default user until AUTH or HELLO AUTH names
another); ACL SETUSER changes a user in place, so its clients have the new
rules from their next command, as in Redis.  ACL DELUSER closes the
deleted users' connections.

The default user is tied to ``requirepass`` as in Redis: CONFIG SET
requirepass gives it that one password (or ``nopass`` when empty); with
several acceptors, in the one order of ACL SETUSER and DELUSER.

With several acceptors every acceptor has the same users: ACL SETUSER and
DELUSER run on every acceptor, the asker's included, in the supervisor's
one order (the bus's ``acl`` question, asked of everyone) before the
reply, and a restarted acceptor asks the others for their users
(``dump``) before it listens.  Each acceptor logs what its
own clients were refused (a script's calls too: its worker reports them,
see :func:`log_script_refusals`); ACL LOG merges every acceptor's entries
(``log``), and ACL LOG RESET clears them all (``logreset``).
"""

from __future__ import annotations

import itertools
import secrets
import time
from collections import deque
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from shardkv.acceptor.blocking import serve_after_scripts
from shardkv.acceptor.bus import fail_slot
from shardkv.acceptor.client import Client
from shardkv.acceptor.commands.common import guard
from shardkv.acceptor.replies import Slot
from shardkv.acceptor.shardlink import RUNNING_LINKS
from shardkv.protocol import acl, bus, commands, errors, wire
from shardkv.protocol.args import strict_int
from shardkv.protocol.command_docs import check_subcommand
from shardkv.protocol.errors import CommandError
from shardkv.protocol.resp import OK, encode
from shardkv.runtime.config import value_bytes, value_text

if TYPE_CHECKING:
    from shardkv.acceptor.server import Acceptor
    from shardkv.acceptor.shardlink import ShardLink


class Users:
    """Every ACL user, by name; ``default`` always exists."""

    def __init__(self, config: dict[str, Any]) -> None:
        self.config = config
        # ACL LOG, newest first: [count, reason, context, object, username,
        # time in ms, client info] (Redis's aclLogEntry).  A deque, as
        # Redis's is a list: an entry is added in O(1) however long
        # acllog-max-len lets it grow (a Python list shifted every entry).
        self.log: deque[list[Any]] = deque()
        # CLIENT LIST's line of a client (commands.connection's, which
        # imports this module: bound by wiring.build).
        self.client_info: Callable[..., bytes] | None = None
        self.client_then: Callable[[Client, int | None], tuple] | None = None
        self.default = acl.default_user()
        self.by_name: dict[bytes, acl.User] = {b"default": self.default}
        self.requirepass: str | None = None  # the value last applied
        self.set_default_password(config.get("requirepass", ""))
        # K > 1: users an AUTH inside EXEC ran as before the ACL SETUSER
        # queued before it (which makes them) came back round the bus: that
        # SETUSER makes this very object the user (see authenticate).
        self.adopting: dict[bytes, acl.User] = {}
        # A limited user's scripts whose refused calls may still come (``L``
        # frames), by their ``wire.script_user`` number, and by client id
        # the client's, oldest first: its later entries wait behind them
        # (see script_called).
        self.scripts: dict[int, ScriptEntries] = {}
        self.waiting: dict[int, list[ScriptEntries]] = {}
        self.next_script = 0

    def set_default_password(self, password: str) -> None:
        """requirepass: the default user's one password, or nopass; a value
        that did not change changes nothing (so passwords given by ACL
        SETUSER stay), as in Redis."""
        if password == self.requirepass:
            return
        self.requirepass = password
        self.default.apply(requirepass_rules(password))

    def default_open(self) -> bool:
        """Whether a new connection is authenticated from the start."""
        return self.default.nopass and self.default.enabled

    def pubsub_default(self) -> bool:
        return self.config.get("acl-pubsub-default", "resetchannels") == "allchannels"

    def setuser(
        self, name: bytes, rules: list[bytes], server: Acceptor | None = None, me: Client | None = None
    ) -> str | None:
        """ACL SETUSER: all the rules or none; the error, if any.  The
        user's clients subscribed to a channel or pattern its new rules
        no longer allow are closed (Redis's ACLKillPubsubClientsIfNeeded)."""
        temp = self._changed(name, rules)
        if isinstance(temp, str):
            return temp
        current = self.by_name.get(name)
        if current is None:
            made = self.adopting.pop(name, None)
            if made is not None:
                made.assign(temp)
                temp = made
            self.by_name[name] = temp
        else:
            current.assign(temp)
            if server is not None and not current.allchannels:
                _close_revoked_subscribers(server, current, me)
            if server is not None and current is self.default and self.default_open():
                # Redis asks on every command whether the default user
                # needs a password: a client waiting to AUTH is let in.
                for client in server.clients.values():
                    client.state.authenticate()
        return None

    def refuses(self, name: bytes, rules: list[bytes]) -> str | None:
        """ACL SETUSER's error for these rules now, if any; nothing changes."""
        temp = self._changed(name, rules)
        return temp if isinstance(temp, str) else None

    def _changed(self, name: bytes, rules: list[bytes]) -> acl.User | str:
        """User ``name`` (a copy) with ``rules`` applied, or the error."""
        return self.changed_from(self.by_name.get(name), name, rules)

    def changed_from(self, current: acl.User | None, name: bytes, rules: list[bytes]) -> acl.User | str:
        """User ``name``, now ``current`` (None: none yet), with ``rules``
        applied to a copy, or the error."""
        if any(c in b" \t\n\v\f\r\0" for c in name):
            return errors.ACL_USERNAME_SPACES
        pubsub_default = self.pubsub_default()
        temp = current.copy() if current is not None else acl.User(name, allchannels=pubsub_default)
        merged = _merge_selectors(rules)
        if isinstance(merged, bytes):
            return errors.ACL_UNMATCHED_PARENTHESIS % merged.split(b"\0", 1)[0].decode("latin-1")
        for rule in merged:
            try:
                temp.apply_one(rule, pubsub_default)
            except acl.RuleError as e:
                shown = rule.split(b"\0", 1)[0].decode("latin-1")
                return errors.ACL_SETUSER % (shown, e)
        temp.apply([])  # its flags brought up to date
        return temp

    def deluser(self, server: Acceptor, names: list[bytes], me: Client | None) -> int:
        """ACL DELUSER: how many existed; their clients are closed."""
        deleted = 0
        for name in names:
            user = self.by_name.pop(name, None)
            if user is None:
                continue
            deleted += 1
            for client in list(server.clients.values()):
                if client.state.user is user:
                    client.state.log_out(self.default)
                    if client is me:
                        client.close_after_replies()
                    else:
                        client.kill()
        return deleted

    def note(
        self,
        client: Client,
        args: list[bytes],
        reason: str,
        context: str,
        obj: bytes,
        username: bytes,
        multi: int | None = None,
        db: int | None = None,
    ) -> None:
        """An ACL LOG entry, or one more of a like entry of the last minute
        among the 10 newest (Redis's addACLLogEntry).  ``multi``: the
        entry is of a script's call or of a refusal inside EXEC, whose
        client info shows the command (``args``: the script's, or exec) and
        queued count as they were when it was called; ``db``: the database
        it was called in (a script's: the client's may have changed since)."""
        info = (
            self.client_info(client, time.monotonic(), args, multi, db)
            if self.client_info is not None
            else b""
        )
        entry = [1, reason, context, obj, username, time.time() * 1000, info]
        waiting = self.waiting.get(client.id)
        if waiting:  # after a script of the client whose refusals may still come
            waiting[-1].after.append(entry)
        else:
            self._add(entry)

    def _add(self, entry: list) -> None:
        _add_entry(self.log, entry)
        log, most = self.log, self.log_max()
        while len(log) > most:
            log.pop()

    def script_called(self, client: Client, command: bytes, multi: int, db: int) -> int:
        """The number of a script a limited user's client calls now (with
        ``command``, its queued count ``multi`` and database ``db``): ACL
        LOG's entries of the calls the worker refuses it (``L`` frames,
        :meth:`script_refused`) show the client as it is now, and are
        logged when its reply comes (:meth:`script_done`), before the
        client's own entries meanwhile: as Redis logs them while it runs the
        script, before the commands pipelined after it, and whether or not
        the client is still connected."""
        number = self.next_script = self.next_script + 1
        then = self.client_then(client, multi) if self.client_then is not None else ()
        entries = ScriptEntries(client, command, multi, db, time.monotonic(), time.time() * 1000, then)
        self.scripts[number] = entries
        self.waiting.setdefault(client.id, []).append(entries)
        return number

    def script_refused(self, number: int, refusals: list) -> None:
        """The calls a script was refused (an ``L`` frame's)."""
        entries = self.scripts.get(number)
        if entries is not None:
            entries.refusals += refusals

    def script_done(self, number: int) -> None:
        """The script's reply came (or it will not run): its entries, and
        the client's after them, are logged once the scripts before it are
        done too."""
        entries = self.scripts.pop(number, None)
        if entries is None:
            return
        entries.done = True
        client_id = entries.client.id
        waiting = self.waiting[client_id]
        while waiting and waiting[0].done:
            first = waiting.pop(0)
            if first.refusals:
                info = (
                    self.client_info(
                        first.client, first.since, [first.command], first.multi, first.db, first.then
                    )
                    if self.client_info is not None
                    else b""
                )
                username = first.then[5] if first.then else b""
                for reason, logged in first.refusals:
                    self._add([1, acl.LOG_REASONS[reason], "lua", logged, username, first.time, info])
            for entry in first.after:
                if callable(entry):  # an ACL LOG of the client's, pipelined after the script
                    entry()
                else:
                    self._add(entry)
        if not waiting:
            del self.waiting[client_id]

    def log_max(self) -> int:
        return max(0, int(self.config.get("acllog-max-len", 128)))

    def dump(self) -> list[bytes]:
        """Every user but default as ``name rules``, and default's rules."""
        return [name + b" " + u.describe().encode("latin-1") for name, u in sorted(self.by_name.items())]

    def load(self, lines: list[bytes]) -> None:
        """Users from another acceptor's :meth:`dump`, in place of these."""
        for line in lines:
            name, _, rules = line.partition(b" ")
            user = acl.User(name)
            user.apply(rules.split())
            if name in self.by_name:
                self.by_name[name].assign(user)
            else:
                self.by_name[name] = user


class ScriptEntries:
    """ACL LOG's entries of one script's refused calls (Redis's
    scriptVerifyACL logs them, context ``lua``), which its worker reports:
    the client, its command, queued count, database, the times and its
    state (``client_then``) when it called the script, the refusals as
    they come, and the client's entries noted after it, logged after them
    (and its ACL LOGs, answered then)."""

    __slots__ = ("client", "command", "multi", "db", "since", "time", "then", "refusals", "after", "done")

    def __init__(
        self, client: Client, command: bytes, multi: int, db: int, since: float, when: float, then: tuple
    ) -> None:
        self.client = client
        self.command = command
        self.multi = multi
        self.db = db
        self.since = since  # (time.monotonic(): its client info's age and idle)
        self.time = when
        self.then = then
        self.refusals: list[tuple[int, bytes]] = []
        self.after: list[list | Callable[[], None]] = []
        self.done = False


def requirepass_rules(password: str) -> list[bytes]:
    """The rules that give the default user ``requirepass``'s one password
    (nopass for none)."""
    return [b"resetpass", b">" + value_bytes(password) if password else b"nopass"]


class UsersInExec:
    """The user EXEC checks each queued command against, in order.

    Redis checks each command of a transaction just before it runs it, so
    an ACL SETUSER or DELUSER of the client's user, an AUTH or a HELLO
    AUTH queued before a command changes what it may do.  shardkv checks
    them all before any runs (the commands on shards run together, and
    with several acceptors an ACL change reaches the users only once the
    bus brought it back), so this follows what each allowed command will
    have done to the users by then (:meth:`ran`), on copies: ``user`` is
    the one to check the next command against."""

    __slots__ = (
        "users",
        "user",
        "changed",
        "deleted",
        "outstanding",
        "holding",
        "refused",
        "requirepass",
        "config_ok",
    )

    # The commands that may change the user of the commands after them.
    COMMANDS = frozenset({"acl", "auth", "hello"})

    def __init__(
        self, users: Users, user: acl.User, config_ok: Callable[[list[bytes]], bool] | None = None
    ) -> None:
        self.users = users
        # Whether a CONFIG SET passes its checks (a failed one changes no
        # parameter, requirepass neither); None: no CONFIG SET to follow.
        self.config_ok = config_ok
        self.user = user
        self.changed: dict[bytes, acl.User | None] = {}  # by name; None: deleted
        self.deleted: set[bytes] = set()  # the names it deleted (made again since, maybe)
        self.outstanding = 0  # K > 1: its changes still going round the bus (see _IN_FLIGHT)
        self.holding = False  # K > 1: the client's later commands wait for them
        # The name the last command's AUTH or HELLO AUTH failed as, if it did
        # (EXEC logs it in its place: see authenticate).
        self.refused: bytes | None = None
        self.requirepass = users.requirepass  # as the CONFIG SETs before leave it

    def _get(self, name: bytes) -> acl.User | None:
        return self.changed[name] if name in self.changed else self.users.by_name.get(name)

    def ran(self, name: str, args: list[bytes]) -> bool:
        """The allowed command ``args`` (called ``name``) runs next.  True
        when it deletes the client's own user: Redis then closes the client
        after the EXEC (CLIENT_CLOSE_AFTER_COMMAND), whose reply stops after
        that command's."""
        self.refused = None
        if name == "acl" and len(args) > 2:
            sub = args[1].lower()
            if sub == b"setuser":
                user = self.users.changed_from(self._get(args[2]), args[2], args[3:])
                if not isinstance(user, str):
                    self.changed[args[2]] = user
                    if args[2] == self.user.name:
                        self.user = user
            elif sub == b"deluser" and b"default" not in args[2:]:
                mine = self.user.name in args[2:] and self._get(self.user.name) is not None
                if mine:  # Redis's ACLFreeUserAndKillClients
                    self.user = self._get(b"default") or self.users.default
                self.changed.update(dict.fromkeys(args[2:]))
                self.deleted.update(args[2:])
                return mine
        elif (
            name == "config"
            and len(args) > 3
            and args[1].lower() == b"set"
            and self.config_ok is not None
            and self.config_ok(args)
        ):
            for param, value in zip(args[2::2], args[3::2], strict=False):
                if param.lower() == b"requirepass":
                    self.set_requirepass(value_text(value))
        elif name == "auth" and len(args) <= 3:
            self._auth(b"default" if len(args) == 2 else args[1], args[-1])
        elif name == "hello":
            auth = _hello_auth(args)
            if auth is not None:
                self._auth(*auth)
        return False

    def set_requirepass(self, password: str) -> None:
        """CONFIG SET requirepass: the default user's one password, or
        nopass (a value that did not change changes nothing, as in
        :meth:`Users.set_default_password`)."""
        if password == self.requirepass:
            return
        self.requirepass = password
        user = self.users.changed_from(self._get(b"default"), b"default", requirepass_rules(password))
        if isinstance(user, str):  # (never: these rules are always right)
            return
        self.changed[b"default"] = user
        if self.user.name == b"default":
            self.user = user

    def default(self) -> acl.User:
        """The default user as the changes before leave it."""
        return self._get(b"default") or self.users.default

    def _auth(self, name: bytes, password: bytes) -> None:
        user = self._get(name)
        if user is not None and user.password_ok(password):
            self.user = user
        else:
            self.refused = name


def _hello_auth(args: list[bytes]) -> tuple[bytes, bytes] | None:
    """The user and password HELLO ``args`` authenticates with, if its
    protocol version and options are right and it has an AUTH option."""
    if len(args) < 2 or strict_int(args[1]) not in (2, 3):
        return None
    auth = None
    j = 2
    while j < len(args):
        opt, more = args[j].upper(), len(args) - j - 1
        if opt == b"AUTH" and more >= 2:
            auth = (args[j + 1], args[j + 2])
            j += 3
        elif opt == b"SETNAME" and more >= 1:
            j += 2
        else:
            return None
    return auth


def _add_entry(log: deque[list], entry: list) -> None:
    """Add ``entry`` ([count, reason, context, object, username, time in
    ms, client info]) to ``log``, newest first: a like entry (same reason,
    context, object and user) among the 10 newest, last seen less than a
    minute before, counts it instead and moves to the front (Redis's
    addACLLogEntry)."""
    now = entry[5]
    for i, old in enumerate(itertools.islice(log, 10)):
        if old[1:5] == entry[1:5] and now - old[5] < 60000:
            old[0] += entry[0]
            old[5] = now
            old[6] = entry[6]
            del log[i]
            log.appendleft(old)
            return
    log.appendleft(entry)


def _close_revoked_subscribers(server: Acceptor, user: acl.User, me: Client | None) -> None:
    for client in list(server.clients.values()):
        state = client.state
        if state.user is not user or not state.subscribed:
            continue
        if (
            all(user.channel_ok(c, False) for c in state.channels)
            and all(user.channel_ok(p, True) for p in state.patterns)
            and all(user.channel_ok(c, False) for c in state.shard_channels)
        ):
            continue
        if client is me:
            client.close_after_replies()
        else:
            client.kill()


def _merge_selectors(rules: list[bytes]) -> list[bytes] | bytes:
    """Redis joins a selector spread over several arguments, ``(~x`` ``+get)``;
    the argument that opens one never closed, if any."""
    out: list[bytes] = []
    open_: bytes | None = None
    for rule in rules:
        if open_ is None and rule[:1] == b"(" and rule[-1:] != b")":
            open_ = rule
        elif open_ is not None:
            open_ += b" " + rule
            if rule[-1:] == b")":
                out.append(open_)
                open_ = None
        else:
            out.append(rule)
    if open_ is not None:
        return open_.split(b" ", 1)[0]
    return out


def authenticate(client: Client, name: bytes, password: bytes, hello: bool = False) -> None:
    """AUTH and HELLO AUTH: run as user ``name`` from now on, or WRONGPASS."""
    users = client.server.users
    view = _IN_FLIGHT.get(client)
    if view is not None and name in view.changed:
        # K > 1: the client's own ACL change (inside EXEC) on its way round
        # the bus: the user as that change leaves it.
        user = view.changed[name]
    else:
        user = users.by_name.get(name)
    # Compared whatever the user, so the time taken does not say whether it exists.
    ok = (user if user is not None else users.default).password_ok(password)
    if user is not None and ok and view is not None and name in view.changed:
        user = _when_back(users, view, name, user)
    if user is None or not ok:
        if not client.state.in_exec:  # EXEC logged it in its place (note_refused_auth)
            note_refused_auth(client, name, hello)
        raise CommandError(errors.WRONGPASS)
    client.state.authenticate(user)


def log_script_refusals(server: Acceptor, link: ShardLink) -> None:
    """ACL LOG's entries of the calls a script's user was refused, which
    its worker reports (``L`` frames, see ``wire.script_user``) before the
    script's reply, with the context ``lua`` (Redis's scriptVerifyACL):
    kept with the script (``Users.script_called``) until its reply comes.
    With several acceptors the script's own acceptor keeps them, as it
    keeps its clients' other entries."""

    def on_refusals(caller: bytes, refusals: list) -> None:
        server.users.script_refused(wire.parse_caller(caller), refusals)

    link.on_acl_log = on_refusals


def note_refused_auth(client: Client, name: bytes, hello: bool) -> None:
    """ACL LOG's entry of a failed AUTH or HELLO AUTH as ``name``: in the
    ``multi`` context inside EXEC too, as Redis's client is flagged MULTI
    until its EXEC ends."""
    context = "multi" if client.state.multi is not None or client.state.in_exec else "toplevel"
    shown = [b"hello" if hello else b"auth"]  # its name: CLIENT LIST's cmd
    client.server.users.note(client, shown, "auth", context, b"HELLO" if hello else b"AUTH", name)


def _when_back(users: Users, view: UsersInExec, name: bytes, user: acl.User) -> acl.User:
    """The user an AUTH as ``name`` runs as, ``user`` being a copy of it as
    the client's ACL changes on their way round the bus leave it: the user
    itself, which they change in place; or, where they make it (anew),
    the copy, which the SETUSER that makes it will take as the user."""
    real = users.by_name.get(name)
    if real is not None and name not in view.deleted:
        return real
    return users.adopting.setdefault(name, user)


def auth(client: Client, args: list) -> None:
    """AUTH [username] password"""
    if len(args) > 3:
        client.reply_error(errors.SYNTAX)
        return
    if len(args) == 2:
        view = _IN_FLIGHT.get(client)
        default = view.default() if view is not None else client.server.users.default
        if default.nopass:
            client.reply_error(errors.AUTH_NOT_CONFIGURED)
            return
    try:
        authenticate(client, args[1] if len(args) == 3 else b"default", args[-1])
    except CommandError as e:
        client.reply_error(e.message)
        return
    client.reply(OK)


# -- ACL ---------------------------------------------------------------------

_HELP = [
    "ACL <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
    "CAT [<category>]",
    "    List all commands that belong to <category>, or all command categories",
    "    when no category is specified.",
    "DELUSER <username> [<username> ...]",
    "    Delete a list of users.",
    "DRYRUN <username> <command> [<arg> ...]",
    "    Returns whether the user can execute the given command without executing the command.",
    "GETUSER <username>",
    "    Get the user's details.",
    "GENPASS [<bits>]",
    "    Generate a secure 256-bit user password. The optional `bits` argument can",
    "    be used to specify a different size.",
    "LIST",
    "    Show users details in config file format.",
    "LOAD",
    "    Reload users from the ACL file.",
    "LOG [<count> | RESET]",
    "    Show the ACL log entries.",
    "SAVE",
    "    Save the current config to the ACL file.",
    "SETUSER <username> <attribute> [<attribute> ...]",
    "    Create or modify a user with the specified attributes.",
    "USERS",
    "    List all the registered usernames.",
    "WHOAMI",
    "    Return the current connection username.",
    "HELP",
    "    Prints this help.",
]


@guard
def acl_command(client: Client, args: list) -> None:
    """ACL subcommand [argument ...]"""
    problem = check_subcommand(args)
    if problem:
        raise CommandError(problem)
    server = client.server
    users = server.users
    sub = args[1].lower()
    if sub in (b"cat", b"genpass", b"log") and len(args) > 3:
        raise CommandError(errors.SUBCOMMAND_SYNTAX % (args[1].decode("latin-1"), "ACL"))
    if sub == b"setuser":
        if server.bus is not None:
            error = users.refuses(args[2], args[3:])
            if error is not None:
                raise CommandError(error)
            _in_one_order(client, b"setuser", args[2:])
            return
        error = users.setuser(args[2], args[3:], server, client)
        if error is not None:
            raise CommandError(error)
        client.reply(OK)
    elif sub == b"deluser":
        if RUNNING_LINKS:
            serve_after_scripts(client, _deluser, args)
        else:
            _deluser(client, args)
    elif sub == b"getuser":
        user = users.by_name.get(args[2])
        if user is None:
            client.reply(None)
        else:
            client.pending.append(_getuser(user, client.resp3))
    elif sub == b"list":
        client.reply(
            [b"user " + n + b" " + u.describe().encode("latin-1") for n, u in sorted(users.by_name.items())]
        )
    elif sub == b"users":
        client.reply(sorted(users.by_name))
    elif sub == b"whoami":
        client.reply(client.state.user.name)
    elif sub == b"cat":
        _cat(client, args)
    elif sub == b"genpass":
        bits = 256
        if len(args) > 2:
            bits = strict_int(args[2])  # type: ignore[assignment]
            if bits is None:
                raise CommandError(errors.NOT_INTEGER)
            if bits <= 0 or bits > 4096:
                raise CommandError(errors.ACL_GENPASS)
        client.reply(secrets.token_hex((bits + 7) // 8 + 1)[: (bits + 3) // 4].encode())
    elif sub == b"dryrun":
        _dryrun(client, args)
    elif sub in (b"load", b"save"):
        raise CommandError(errors.ACL_NO_FILE)
    elif sub == b"log":
        _log(client, args)
    elif sub == b"help":
        client.reply(_HELP)


@guard
def _deluser(client: Client, args: list) -> None:
    """ACL DELUSER.  It closes its users' clients, as CLIENT KILL does, and
    Redis reads it after a script, or answers it ``-BUSY`` at
    busy-reply-threshold, nothing deleted: while a worker says a script
    runs (``RUNNING_LINKS``, from its first count hook) it waits for the
    shards' scripts first (``blocking.serve_after_scripts``; it closed the
    script's own client before the script's reply, or deleted the user
    where Redis refused).  Not always, as CLIENT KILL does: tests kill a
    client so while a worker is stopped (SIGSTOP), and a stopped shard
    answers no ``__ping``."""
    if b"default" in args[2:]:
        raise CommandError(errors.ACL_DELETE_DEFAULT)
    server = client.server
    if server.bus is not None:
        _in_one_order(client, b"deluser", args[2:])
        return
    client.reply(server.users.deluser(server, args[2:], client))


def _everywhere(client: Client, args: list[bytes], reply: object = OK) -> None:
    """With several acceptors: the others do it too before the reply."""
    server_bus = client.server.bus
    if server_bus is None:
        client.reply(reply)
        return
    slot = Slot(client)
    client.pending.append(slot)
    encoded = encode(reply, client.resp3)
    server_bus.ask(bus.ACL, args, lambda _: slot.deliver(encoded), failed=fail_slot(slot))


# K > 1: a client's blocked_token while its ACL SETUSER or DELUSER goes
# round the bus (its later commands run on the users it made).
CHANGING_USERS = -11


class _Change:
    """An ACL SETUSER or DELUSER of this acceptor's client on its way round
    the bus: its client, and what it did here once the bus brought it back
    (SETUSER's error or None, DELUSER's count)."""

    __slots__ = ("client", "outcome")

    def __init__(self, client: Client) -> None:
        self.client = client
        self.outcome: str | int | None | _NotYet = _NOT_YET


class _NotYet:
    pass


_NOT_YET = _NotYet()
# This acceptor's changes on their way round the bus, by number.
_CHANGES: dict[int, _Change] = {}
# A client's ACL changes inside EXEC on their way round the bus (they do
# not hold its later commands): the users as they leave them, for the AUTH
# and HELLO AUTH after them (see authenticate).
_IN_FLIGHT: dict[Client, UsersInExec] = {}
_change_numbers = itertools.count(1)


def _in_one_order(client: Client, sub: bytes, args: list[bytes]) -> None:
    """K > 1: ACL SETUSER or DELUSER, applied by every acceptor, this one
    included, when the supervisor passes it on, so all apply them in its
    one order (two SETUSERs of one user through two acceptors end alike
    everywhere, as Redis has one order).  The reply is what it did here,
    in that order: SETUSER's error if a rule that depends on the user
    (``<pass`` of a password it lost meanwhile) was refused there, and
    then by every acceptor alike; DELUSER's count of users deleted.  The
    client's later commands wait for it (not inside EXEC, whose later
    commands are checked as :class:`UsersInExec` follows the change)."""
    server = client.server
    server_bus = server.bus
    assert server_bus is not None
    number = next(_change_numbers)
    change = _CHANGES[number] = _Change(client)
    slot = Slot(client)
    client.pending.append(slot)
    blocks = not client.state.blocked_token and not client.state.in_exec
    if blocks:
        client.state.block(CHANGING_USERS, shown=False)
    view = _follow_in_exec(client)
    if view is not None:
        view.ran("acl", [b"acl", sub, *args])
    fail = fail_slot(slot)

    def finish() -> None:
        _CHANGES.pop(number, None)
        if view is not None:
            _back_in_exec(client, view)
        if blocks and client.state.unblock(CHANGING_USERS):
            if client.waiting():
                server.loop.call_soon(client.resume)  # type: ignore[union-attr]
            elif client.pending and not client.closed:
                client.flush()

    def done(_: list) -> None:
        outcome = change.outcome
        if isinstance(outcome, _NotYet):  # the bus never brought it back here
            fail(errors.INTERNAL % ("acl|" + sub.decode()))
        elif isinstance(outcome, str):
            fail(outcome)
        else:
            slot.deliver(encode(OK if outcome is None else outcome, client.resp3))
        finish()

    def failed(message: str) -> None:
        fail(message)
        finish()

    server_bus.ask(bus.ACL, [sub, number, *args], done, everyone=True, failed=failed)


def _follow_in_exec(client: Client) -> UsersInExec | None:
    """K > 1, inside EXEC: one more change of the client's on its way
    round the bus, which the AUTHs after it follow (the users as it
    leaves them: the view it changes next), and the client's later
    commands wait for (see hold_for_changes).  None outside EXEC."""
    if not client.state.in_exec:
        return None
    view = _IN_FLIGHT.get(client)
    if view is None:
        view = _IN_FLIGHT[client] = UsersInExec(client.server.users, client.state.user)
    view.outstanding += 1
    hold_for_changes(client)
    return view


def _back_in_exec(client: Client, view: UsersInExec) -> None:
    """A change :func:`_follow_in_exec` followed came back round the bus:
    after the last one, the view goes, and the client's later commands
    run."""
    view.outstanding -= 1
    if not view.outstanding and _IN_FLIGHT.get(client) is view:
        del _IN_FLIGHT[client]
        if view.holding and client.state.unblock(CHANGING_USERS):
            if client.waiting():
                client.server.loop.call_soon(client.resume)  # type: ignore[union-attr]
            elif client.pending:
                client.flush()


def requirepass_changed(server: Acceptor, password: str) -> None:
    """CONFIG SET requirepass, here: the default user's one password (or
    nopass); with none any more, every client waiting to AUTH is let in."""
    server.users.set_default_password(password)
    if server.users.default_open():
        for client in server.clients.values():
            client.state.authenticate()


def requirepass_in_one_order(client: Client, password: str) -> None:
    """K > 1: the default user's new password, from the CONFIG SET of
    ``client``, applied by every acceptor, this one included, in the one
    order of ACL SETUSER and DELUSER, with the ``requirepass`` parameter
    (the ``config`` line, which reaches the others by another way, changes
    neither there), so a CONFIG SET requirepass and an ACL SETUSER default
    at once end alike everywhere, and CONFIG GET shows the password in force.
    The CONFIG SET's reply (its own slot) follows it here; the client's
    later commands wait for it (not inside EXEC)."""
    server = client.server
    server_bus = server.bus
    assert server_bus is not None
    blocks = not client.state.blocked_token and not client.state.in_exec
    if blocks:
        client.state.block(CHANGING_USERS, shown=False)
    view = _follow_in_exec(client)
    if view is not None:  # an AUTH after it in the EXEC needs the new password
        view.set_requirepass(password)

    def done(_: object = None) -> None:
        if view is not None:
            _back_in_exec(client, view)
        if blocks and client.state.unblock(CHANGING_USERS):
            if client.waiting():
                server.loop.call_soon(client.resume)  # type: ignore[union-attr]
            elif client.pending and not client.closed:
                client.flush()

    server_bus.ask(bus.ACL, [b"requirepass", value_bytes(password)], done, everyone=True, failed=done)


def hold_for_changes(client: Client) -> bool:
    """K > 1: hold the client's later commands while the ACL changes of
    its EXEC go round the bus (they run on the users those leave, as in
    Redis), unless something holds them already (its EXEC then calls this
    again once it lets them go); whether they wait for them now."""
    view = _IN_FLIGHT.get(client)
    if view is None or client.state.blocked_token:
        return False
    client.state.block(CHANGING_USERS, shown=False)
    view.holding = True
    return True


def bus_acl(server: Acceptor, origin: int, args: list) -> int | list:
    """An acceptor's ACL SETUSER or DELUSER or CONFIG SET requirepass
    (this one's too), in the supervisor's order: the same users here; ``dump``: every user, for a
    restarted acceptor; ``log``/``logreset``: ACL LOG's entries here, or
    none any more."""
    users = server.users
    if args[0] in (b"setuser", b"deluser"):
        change = _CHANGES.get(args[1]) if origin == server.index else None
        me = change.client if change is not None else None
        if args[0] == b"setuser":
            outcome: str | int | None = users.setuser(args[2], args[3:], server, me)
        else:
            outcome = users.deluser(server, args[2:], me)
        if change is not None:
            change.outcome = outcome
    elif args[0] == b"requirepass":
        # The parameter too, so CONFIG GET requirepass shows the password
        # in force (the others do not take it from the config line).
        server.config["requirepass"] = value_text(args[1])
        requirepass_changed(server, value_text(args[1]))
    elif args[0] == b"dump":
        return users.dump()
    elif args[0] == b"log":  # ACL LOG through another acceptor: this one's entries
        return [[e[0], e[1].encode(), e[2].encode(), e[3], e[4], int(e[5] * 1000), e[6]] for e in users.log]
    elif args[0] == b"logreset":
        users.log.clear()
    return 1


async def learn_users(server: Any) -> None:
    """A restarted acceptor, before it listens: the others' users."""
    done = server.loop.create_future()
    server.bus.ask(bus.ACL, [b"dump"], done.set_result)
    for answer in await done:
        if isinstance(answer, list) and answer:
            server.users.load(answer)
            return


def _getuser(user: acl.User, resp3: bool) -> bytes:
    """ACL GETUSER's reply: a map whose flags are a set (in RESP3), in
    Redis's order, which a Python set would not keep."""
    flags = user.flag_names()
    out = [b"%6\r\n" if resp3 else b"*12\r\n", encode(b"flags", resp3)]
    out.append((b"~%d\r\n" if resp3 else b"*%d\r\n") % len(flags))
    out += [encode(f.encode(), resp3) for f in flags]
    rest = {
        b"passwords": [p.encode() for p in user.passwords],
        b"commands": user.command_rules().encode(),
        b"keys": " ".join(user.key_rules()).encode("latin-1"),
        b"channels": " ".join(user.channel_rules()).encode("latin-1"),
        b"selectors": [],
    }
    for key, value in rest.items():
        out += [encode(key, resp3), encode(value, resp3)]
    return b"".join(out)


def _log(client: Client, args: list) -> None:
    """ACL LOG [count | RESET]"""
    users = client.server.users
    count = 10
    reset = False
    if len(args) == 3:
        if args[2].lower() == b"reset":
            reset = True
        else:
            found = strict_int(args[2])
            if found is None:
                raise CommandError(errors.NOT_INTEGER)
            count = found
    waiting = users.waiting.get(client.id)
    if not waiting:
        _log_now(client, count, reset, None, client.resp3)
        return
    # Pipelined after a script whose refused calls may still come: once
    # they are logged (Redis logged them as the script ran), in the
    # protocol of now (a HELLO pipelined after it changes it later).
    slot = Slot(client)
    client.pending.append(slot)
    resp3 = client.resp3
    waiting[-1].after.append(lambda: _log_now(client, count, reset, slot, resp3))


def _log_now(client: Client, count: int, reset: bool, slot: Slot | None, resp3: bool) -> None:
    """ACL LOG's reply (RESET's: the log cleared) now, into ``slot`` (None:
    the client's next reply), encoded in RESP3 if ``resp3`` (the client's
    protocol when it sent the command)."""
    users = client.server.users
    server_bus = client.server.bus
    if server_bus is None:
        if reset:
            users.log.clear()
        reply = OK if reset else _log_reply(users.log, count)
        if slot is None:
            client.reply(reply)
        else:
            slot.deliver(encode(reply, resp3))
        return
    if slot is None:
        slot = Slot(client)
        client.pending.append(slot)
    if reset:
        users.log.clear()
        done = slot
        server_bus.ask(
            bus.ACL, [b"logreset"], lambda _: done.deliver(encode(OK, resp3)), failed=fail_slot(slot)
        )
        return
    # Several acceptors: each logs what its clients were refused; the log
    # is theirs merged, oldest first, by the rule each applies to its own
    # (their times cross the bus in microseconds).

    # This acceptor's entries as they are now, not when the answers come
    # (its client's refused commands pipelined after the ACL LOG come later).
    mine = [list(e) for e in reversed(users.log)]  # each acceptor's oldest first

    def merged(answers: list) -> None:
        entries = mine
        for answer in answers:
            if isinstance(answer, list):
                entries += [
                    [e[0], e[1].decode(), e[2].decode(), e[3], e[4], e[5] / 1000, e[6]]
                    for e in reversed(answer)
                ]
        log: deque[list] = deque()
        for entry in sorted(entries, key=lambda e: e[5]):  # (stable: one acceptor's in its order)
            _add_entry(log, entry)
        slot.deliver(encode(_log_reply(itertools.islice(log, users.log_max()), count), resp3))

    server_bus.ask(bus.ACL, [b"log"], merged, failed=fail_slot(slot))


def _log_reply(log: Iterable[list], count: int) -> list[dict]:
    now = time.time() * 1000
    return [
        {
            b"count": e[0],
            b"reason": e[1].encode(),
            b"context": e[2].encode(),
            b"object": e[3],
            b"username": e[4],
            b"age-seconds": (now - e[5]) / 1000,
            b"client-info": e[6],
        }
        for e in itertools.islice(log, max(count, 0))
    ]


def _cat(client: Client, args: list) -> None:
    if len(args) == 2:
        client.reply([c.encode() for c in acl.CATEGORIES])
        return
    category = args[2].decode("latin-1").lower()
    if category not in acl.CATEGORIES:
        raise CommandError(errors.ACL_UNKNOWN_CATEGORY % args[2].decode("latin-1"))
    client.reply([n.encode() for n in acl.in_category(category)])


def _dryrun(client: Client, args: list) -> None:
    user = client.server.users.by_name.get(args[2])
    if user is None:
        raise CommandError(errors.ACL_USER_NOT_FOUND % args[2].decode("latin-1"))
    run = args[3:]
    cmd = commands.lookup(run[0])
    if cmd is None:
        raise CommandError(errors.ACL_COMMAND_NOT_FOUND % run[0].decode("latin-1"))
    name = acl.full_name(cmd, run)
    problem = check_subcommand(run) if cmd.container and len(run) > 1 else None
    if problem is not None:
        if problem.startswith("ERR unknown subcommand"):
            raise CommandError(errors.ACL_COMMAND_NOT_FOUND % run[0].decode("latin-1"))
        raise CommandError(problem)
    arity = cmd.arity
    if (len(run) != arity) if arity > 0 else (len(run) < -arity):
        raise CommandError(errors.WRONG_ARITY % cmd.name)
    denied, pos = user.check(cmd, run)
    if denied == acl.DENIED_CMD:
        client.reply((errors.DRYRUN_COMMAND % name).encode())
    elif denied == acl.DENIED_KEY:
        client.reply((errors.DRYRUN_KEY % run[pos].decode("latin-1")).encode("latin-1"))
    elif denied == acl.DENIED_CHANNEL:
        client.reply((errors.DRYRUN_CHANNEL % run[pos].decode("latin-1")).encode("latin-1"))
    else:
        client.reply(OK)
