"""Redis's own TCL test suite as shardkv's compatibility gate.

Runs the units of Redis 7.0.15's test suite (``../shared/redis-tests`` beside
the repository, or ``$REDIS_TESTS_DIR``) in external-server mode, each unit
against a fresh server on a free loopback port, and compares the names of the
tests that pass with the committed expectation file
(``tests/redis_suite_expected.json``):

* a test that is expected to pass and fails makes the run fail (exit status
  1), with the unit and the test named;
* a test that passes and is not expected yet is printed, so that it can be
  added with ``--update`` in the commit that made it pass.

Usage::

    python tests/redis_suite.py                  # the gate: shardkv vs the file
    python tests/redis_suite.py --update         # rewrite the file (each unit twice)
    python tests/redis_suite.py --compare        # per-unit table: redis-server vs shardkv
    python tests/redis_suite.py unit/type/hash   # some units only
    python tests/redis_suite.py --server redis   # the suite against redis-server
    python tests/redis_suite.py --compare --multidb   # without --singledb: tests in db 9

Flaky tests: ``--update`` runs every unit twice and records only the tests
that passed both times.  The gate runs each unit once; a unit that seems to
have lost a test is run once more, and only a test that fails both times
counts as a regression (a test that fails only once is reported as flaky).

Each unit runs with the suite's ``--singledb`` (no SELECT), ``--durable`` (an
unexpected error fails one test instead of the rest of the unit),
``--ignore-encoding`` and ``--ignore-digest``, and the tags that exclude tests
needing a local server process, DEBUG, replication, SAVE or latency
monitoring, as ``run-external.sh`` does; shardkv runs with ``--shards 4``.
A unit that runs longer than ``--unit-timeout`` seconds is stopped; the tests
it passed until then count.  Everything the run writes (the suite's copy,
server folders, logs) lives in one temporary folder that is removed at the end.
"""

from __future__ import annotations

import argparse
import collections
import concurrent.futures
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run as a script: make `tests` importable

from tests.support.servers import ServerProcess, start_redis, start_shardkv  # noqa: E402

EXPECTED = ROOT / "tests" / "redis_suite_expected.json"
DEFAULT_SUITE = ROOT.parent / "shared" / "redis-tests"
TAGS = "-needs:debug -needs:repl -needs:save -needs:pfdebug -needs:latency -needs:local-process"
SHARDS = 4
# The suite stops a unit in which no test finished for this many seconds (a
# hang); the runner's own --unit-timeout is the hard limit per unit.
STALL = int(os.environ.get("REDIS_SUITE_STALL", "120"))
# --singledb (the gate's mode: every test in database 0, no SELECT); the
# suite's default, with the tests in database 9 and SELECT allowed, with
# --multidb (a report, not the gate).
SINGLEDB = ["--singledb"]

# The 35 units of the suite in which redis-server 7.0.15 passes at least one
# test in external mode (the others need a server the suite starts itself),
# longest first (their mean time in five CI runs, 2026-12-05/06: 81 s for
# hyperloglog to 2 s), so that parallel runs finish together: a long unit
# that starts last is the run's tail.
UNITS = [
    "unit/hyperloglog",
    "unit/type/list-3",
    "unit/type/zset",
    "unit/geo",
    "unit/type/list-2",
    "unit/sort",
    "unit/scan",
    "unit/type/list",
    "unit/type/stream",
    "unit/dump",
    "unit/scripting",
    "unit/type/string",
    "unit/type/set",
    "unit/type/hash",
    "unit/expire",
    "unit/introspection-2",
    "unit/other",
    "unit/bitops",
    "unit/querybuf",
    "unit/multi",
    "unit/type/stream-cgroups",
    "unit/bitfield",
    "unit/functions",
    "unit/tracking",
    "unit/pause",
    "unit/violations",
    "unit/introspection",
    "unit/pubsub",
    "unit/lazyfree",
    "unit/keyspace",
    "unit/protocol",
    "unit/type/incr",
    "unit/quit",
    "unit/slowlog",
    "unit/info-command",
]

_RESULT = re.compile(r"^\[(ok|err|skip|ignore|exception)\]: (.*)$")
_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def suite_dir() -> Path:
    return Path(os.environ.get("REDIS_TESTS_DIR") or DEFAULT_SUITE).resolve()


def start_server(kind: str, workdir: Path) -> ServerProcess:
    """A fresh redis-server, or shardkv (``--shards 4``, working in ``workdir``), on a free port."""
    if kind == "redis":
        return start_redis(ready_timeout=60)
    workdir.mkdir()
    return start_shardkv(shards=SHARDS, cwd=workdir, ready_timeout=60)


class UnitResult:
    def __init__(self, unit: str) -> None:
        self.unit = unit
        self.passed: list[str] = []
        self.failed: list[str] = []
        self.note = ""
        self.seconds = 0.0


def _test_name(data: str, unit: str) -> str:
    data = re.sub(r" \(\d+ ms\)$", "", data)
    return data.removesuffix(f" in tests/{unit}.tcl")


def parse_log(text: str, unit: str, result: UnitResult) -> None:
    seen: collections.Counter[str] = collections.Counter()
    for raw in text.splitlines():
        line = _ANSI.sub("", raw)
        if line.strip() == "The End":
            break  # the summary repeats the failures
        m = _RESULT.match(line)
        if not m:
            continue
        status, data = m.groups()
        if status == "ok":
            name = _test_name(data, unit)
            seen[name] += 1
            # A name repeated in one unit (a loop over encodings) gets #2, #3 ...
            result.passed.append(name if seen[name] == 1 else f"{name} #{seen[name]}")
        elif status == "err":
            result.failed.append(_test_name(data, unit))
        elif status == "exception" and not result.note:
            result.note = "exception: " + data.removeprefix("Executing test client: ")[:160]
    if not result.note and "[TIMEOUT]" in _ANSI.sub("", text):
        result.note = f"no test finished for {STALL}s: stopped"


# Every live server and suite process, so that an interrupted run stops them.
_LIVE: set = set()
_LIVE_LOCK = threading.Lock()
_STOPPING = threading.Event()


def _track(obj: object, live: bool) -> None:
    with _LIVE_LOCK:
        (_LIVE.add if live else _LIVE.discard)(obj)


def _stop_everything(signum: int, frame: object) -> None:
    """SIGINT/SIGTERM: stop what this run started, then exit (the temporary
    folder is removed by the ``with`` that made it, as the exit unwinds)."""
    _STOPPING.set()  # units not started yet return at once
    with _LIVE_LOCK:
        live = list(_LIVE)
    for obj in live:
        try:
            if isinstance(obj, ServerProcess):
                obj.stop(15)
            else:
                os.killpg(obj.pid, signal.SIGKILL)
        except Exception:
            pass
    raise SystemExit(128 + signum)


def run_unit(
    unit: str, kind: str, suite: Path, tmp: Path, timeout: float, tags: str, slot: int
) -> UnitResult:
    """Run one unit against a fresh server of ``kind`` (shardkv or redis)."""
    result = UnitResult(unit)
    if _STOPPING.is_set():
        result.note = "interrupted"
        return result
    if not (suite / "tests" / f"{unit}.tcl").is_file():
        result.note = "no such unit"
        return result
    base = Path(tempfile.mkdtemp(prefix=unit.replace("/", "_") + ".", dir=tmp))
    t0 = time.monotonic()
    try:
        copy = base / "suite"
        shutil.copytree(suite, copy)
        for path in copy.rglob("*"):
            path.chmod(path.stat().st_mode | 0o200)
        server = start_server(kind, base / "server")
        _track(server, True)
        try:
            # The suite's own test server listens on a port below --baseport;
            # parallel units each get their own range.
            # (below Linux's ephemeral ports, where the servers' free ports
            # come from, and above the suite's default range).
            baseport = 22000 + 64 * ((slot + os.getpid()) % 160)
            argv = [
                "tclsh", "tests/test_helper.tcl",
                "--host", "127.0.0.1", "--port", str(server.port),
                "--timeout", str(int(STALL)),
                *SINGLEDB, "--ignore-encoding", "--ignore-digest", "--durable",
                "--baseport", str(baseport),
                "--single", unit,
            ]  # fmt: skip
            if tags:
                argv[9 + len(SINGLEDB) : 9 + len(SINGLEDB)] = ["--tags", tags]
            log = base / "unit.log"
            with open(log, "wb") as out:
                proc = subprocess.Popen(
                    argv,
                    cwd=copy,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                    env=dict(os.environ, TERM="dumb"),
                    start_new_session=True,
                )
                _track(proc, True)
                try:
                    proc.wait(timeout)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait()
                    result.note = f"timeout after {int(timeout)}s"
                _track(proc, False)
            text = log.read_text(errors="replace")
            parse_log(text, unit, result)
            if not (result.passed or result.failed or result.note):
                lines = [line for line in _ANSI.sub("", text).splitlines() if line.strip()]
                errors = [line for line in lines if re.search(r"error|couldn't|exception", line, re.I)]
                result.note = "no test ran: " + ((errors or lines or ["no output"])[0][:200])
            if server.proc.poll() is not None and not result.note:
                result.note = f"server exited with status {server.proc.returncode}"
        finally:
            server.stop(15)
            _track(server, False)
    except Exception as e:  # a server that does not start, a missing tclsh
        result.note = f"{type(e).__name__}: {e}"[:300]
    finally:
        shutil.rmtree(base, ignore_errors=True)
    result.seconds = time.monotonic() - t0
    return result


def run_units(
    units: list[str], kind: str, jobs: int, timeout: float, tags: str, tmp: Path, verbose: bool = True
) -> dict[str, UnitResult]:
    suite = suite_dir()
    results: dict[str, UnitResult] = {}
    lock = threading.Lock()

    def one(args: tuple[int, str]) -> UnitResult:
        slot, unit = args
        r = run_unit(unit, kind, suite, tmp, timeout, tags, slot)
        if r.note.startswith("no test ran") and not _STOPPING.is_set():
            # The suite did not start (a port taken by another program ...):
            # once more, on other ports.
            r = run_unit(unit, kind, suite, tmp, timeout, tags, slot + 200)
        if verbose:
            with lock:
                note = f" [{r.note}]" if r.note else ""
                print(
                    f"  {kind:7} {unit:28} passed={len(r.passed):<4} failed={len(r.failed):<4} "
                    f"{r.seconds:6.1f}s{note}",
                    flush=True,
                )
        return r

    with concurrent.futures.ThreadPoolExecutor(max_workers=jobs) as pool:
        for r in pool.map(one, enumerate(units)):
            results[r.unit] = r
    return results


def load_expected() -> dict[str, list[str]]:
    if not EXPECTED.exists():
        return {}
    return json.loads(EXPECTED.read_text())["units"]


def write_expected(expected: dict[str, list[str]]) -> None:
    data = {
        "about": (
            "Per unit of Redis's TCL suite, the tests shardkv passes reliably "
            "(passed in two runs of `python tests/redis_suite.py --update`). "
            "The gate fails when one of them fails."
        ),
        "units": {unit: sorted(expected[unit]) for unit in UNITS if unit in expected},
    }
    EXPECTED.write_text(json.dumps(data, indent=1, ensure_ascii=False) + "\n")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("units", nargs="*", help="units to run (default: every external unit)")
    p.add_argument(
        "--update", action="store_true", help="run each unit twice and rewrite the expectation file"
    )
    p.add_argument(
        "--compare", action="store_true", help="also run redis-server and print the per-unit table"
    )
    p.add_argument("--server", choices=["shardkv", "redis"], default="shardkv")
    p.add_argument("--jobs", type=int, default=int(os.environ.get("REDIS_SUITE_JOBS", "2")))
    p.add_argument("--unit-timeout", type=float, default=float(os.environ.get("UNIT_TIMEOUT", "300")))
    p.add_argument("--tags", default=os.environ.get("REDIS_SUITE_TAGS", TAGS))
    p.add_argument(
        "--multidb",
        action="store_true",
        help="run without --singledb (tests in database 9, SELECT allowed): a report; "
        "with neither --compare nor --server redis it still checks the expectation file",
    )
    args = p.parse_args(argv)
    if args.multidb:
        if args.update:
            p.error("--update records the gate, which runs with --singledb: not with --multidb")
        SINGLEDB.clear()

    suite = suite_dir()
    if not (suite / "tests" / "test_helper.tcl").is_file():
        print(f"redis_suite: no suite at {suite} (set REDIS_TESTS_DIR)", file=sys.stderr)
        return 2
    if not shutil.which("tclsh"):
        print("redis_suite: tclsh not found (apt install tcl)", file=sys.stderr)
        return 2
    units = args.units or UNITS
    unknown = [u for u in units if u not in UNITS]
    if unknown:
        print(f"redis_suite: unknown unit(s): {' '.join(unknown)}", file=sys.stderr)
        return 2

    signal.signal(signal.SIGTERM, _stop_everything)
    signal.signal(signal.SIGINT, _stop_everything)
    t0 = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="redis-suite.") as tmpname:
        tmp = Path(tmpname)
        print(
            f"# Redis test suite {(suite / 'SUITE_VERSION').read_text().split()[0]} from {suite}", flush=True
        )
        if args.compare:
            real = run_units(units, "redis", args.jobs, args.unit_timeout, args.tags, tmp)
        ours = run_units(units, args.server, args.jobs, args.unit_timeout, args.tags, tmp)
        if args.update:
            print("# second run, to keep only the tests that pass both times", flush=True)
            again = run_units(units, args.server, args.jobs, args.unit_timeout, args.tags, tmp)
            # A run in which the suite itself did not start says nothing about
            # shardkv: that unit runs again in its place.
            for runs in (ours, again):
                broken = [u for u in units if runs[u].note.startswith("no test ran")]
                if broken:
                    runs.update(run_units(broken, args.server, args.jobs, args.unit_timeout, args.tags, tmp))
    elapsed = time.monotonic() - t0

    if args.compare:
        print_table(units, real, ours)
    if args.server == "redis" and not args.compare:
        print(f"# {sum(len(r.passed) for r in ours.values())} passed ({elapsed:.0f}s)")
        return 0

    expected = load_expected()
    if args.update:
        for unit in units:
            both = collections.Counter(ours[unit].passed) & collections.Counter(again[unit].passed)
            flaky = set(ours[unit].passed) ^ set(again[unit].passed)
            for name in sorted(flaky):
                print(f"FLAKY {unit}: {name} (passed in one run of two; not recorded)")
            expected[unit] = sorted(both.elements())
        write_expected(expected)
        total = sum(len(expected.get(u, [])) for u in UNITS)
        print(
            f"# wrote {EXPECTED.relative_to(ROOT)}: {total} tests over {len(expected)} units ({elapsed:.0f}s)"
        )
        return 0

    return check(units, ours, expected, args, elapsed)


def check(units: list[str], ours: dict[str, UnitResult], expected: dict, args, elapsed: float) -> int:
    regressions: list[tuple[str, str]] = []
    new: list[tuple[str, str]] = []
    suspects = [u for u in units if set(expected.get(u, [])) - set(ours[u].passed)]
    again: dict[str, UnitResult] = {}
    if suspects:
        print(f"# running again, to tell regressions from flaky tests: {' '.join(suspects)}", flush=True)
        with tempfile.TemporaryDirectory(prefix="redis-suite.") as tmpname:
            again = run_units(suspects, args.server, args.jobs, args.unit_timeout, args.tags, Path(tmpname))
    for unit in units:
        passed = set(ours[unit].passed)
        for name in sorted(set(expected.get(unit, [])) - passed):
            if name in again[unit].passed:  # unit is a suspect, so it ran again
                print(f"FLAKY {unit}: {name} (failed once, passed on the second run)")
            else:
                regressions.append((unit, name))
        for name in sorted(passed - set(expected.get(unit, []))):
            new.append((unit, name))
    total_expected = sum(len(expected.get(u, [])) for u in units)
    total_passed = sum(len(ours[u].passed) for u in units)
    for unit, name in new:
        print(f"NEW PASS {unit}: {name}")
    if new:
        print(f"# {len(new)} test(s) pass that the expectation file lacks: add them with --update")
    for unit, name in regressions:
        print(f"REGRESSION {unit}: {name}")
    print(
        f"# redis test suite: {total_passed} passed, {total_expected} expected, "
        f"{len(regressions)} regression(s), {len(new)} new, {len(units)} units, {elapsed:.0f}s"
    )
    return 1 if regressions else 0


def print_table(units: list[str], real: dict[str, UnitResult], ours: dict[str, UnitResult]) -> None:
    print("\n| unit | redis-server | shardkv | note |\n|---|---|---|---|")
    tr = to = 0
    for unit in units:
        a, b = len(real[unit].passed), len(ours[unit].passed)
        tr, to = tr + a, to + b
        print(f"| {unit} | {a} | {b} | {ours[unit].note} |")
    print(f"| total | {tr} | {to} | {100 * to / max(tr, 1):.0f}% |")


if __name__ == "__main__":
    sys.exit(main())
