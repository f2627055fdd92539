"""The server's log (shardkv.runtime.serverlog): a script's redis.log lines,
from every worker, go to the ``logfile`` with the server's own lines, in
Redis's line format, filtered by ``loglevel`` (at start and after CONFIG
SET), as redis-server 7.0.15 writes them.  (They went to the workers'
standard error, whatever ``logfile`` said, and a LOG_VERBOSE line passed
the default level, notice.)"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import tempfile
import time
import uuid

import pytest
import redis

from tests.support.placement import key_on
from tests.support.servers import (
    ROOT,
    free_port,
    popen_dying_with_us,
    start_redis,
    start_shardkv,
    wait_for_ping,
)

# pid:role dd Mon yyyy hh:mm:ss.mmm <level> message (Redis's serverLogRaw)
LINE = re.compile(r"^\d+:M \d\d [A-Z][a-z]{2} \d{4} \d\d:\d\d:\d\d\.\d{3} ([.\-*#]) (.*)$")

SCRIPT = (
    "redis.log(redis.LOG_DEBUG, ARGV[1] .. '-debug') "
    "redis.log(redis.LOG_VERBOSE, ARGV[1] .. '-verbose') "
    "redis.log(redis.LOG_NOTICE, ARGV[1] .. '-notice') "
    "redis.log(redis.LOG_WARNING, ARGV[1] .. '-warning') return 1"
)


def _lines(path: str, tag: str, end: str) -> list[tuple[str, str]]:
    """The (level, message) of the log's lines that name ``tag``, once
    ``end`` (written after them) shows (10 s at most)."""
    deadline = time.monotonic() + 10
    while True:
        with open(path, encoding="utf-8", errors="replace") as f:
            text = f.read()
        if end in text or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert end in text, text[-2000:]
    out = []
    for line in text.splitlines():
        if tag in line:
            match = LINE.match(line)
            assert match, line
            out.append((match.group(1), match.group(2)))
    return out


def _round(port: int, path: str, keys: list[str]) -> list[list[tuple[str, str]]]:
    """Each key's script's lines at loglevel notice, then debug, then warning."""
    r = redis.Redis(port=port)
    rounds = []
    try:
        for level in ("notice", "debug", "warning"):
            r.config_set("loglevel", level)
            tag = "zl" + uuid.uuid4().hex[:8]
            for i, key in enumerate(keys):
                assert r.eval(SCRIPT, 1, key, f"{tag}-{i}") == 1
            end = tag + "-end"
            r.eval("redis.log(redis.LOG_WARNING, ARGV[1])", 0, end)
            rounds.append([(mark, text.replace(tag, "")) for mark, text in _lines(path, tag, end)])
    finally:
        r.config_set("loglevel", "notice")
        r.close()
    return rounds


@pytest.mark.parametrize("acceptors", [1, 2])
def test_script_lines_go_to_the_logfile_at_its_level(acceptors):
    keys = [key_on(shard, "zl", shards=2) for shard in range(2)]  # (a script on each worker)
    with tempfile.TemporaryDirectory(prefix="shardkv-log-") as folder:
        real_path, ours_path = os.path.join(folder, "redis.log"), os.path.join(folder, "shardkv.log")
        real = start_redis("--logfile", real_path)
        try:
            expected = _round(real.port, real_path, keys)
        finally:
            real.stop()
        ours = start_shardkv("--logfile", ours_path, shards=2, acceptors=acceptors)
        try:
            got = _round(ours.port, ours_path, keys)
            assert "-warning" not in ours.output()  # (not on standard error)
        finally:
            ours.stop()
    assert got == expected
    notice = [("*", "-0-notice"), ("#", "-0-warning"), ("*", "-1-notice"), ("#", "-1-warning"), ("#", "-end")]
    assert expected[0] == notice
    assert expected[2] == [line for line in notice if line[0] == "#"]
    assert len(expected[1]) == 9  # (each level, each script, and the end)


def test_no_logfile_logs_to_standard_output_as_redis():
    """``logfile ""``: Redis writes its log to standard output (nothing to standard error)."""
    port = free_port()
    argv = [sys.executable, str(ROOT / "main.py"), "--port", str(port), "--shards", "1", "--acceptors", "1"]
    proc = popen_dying_with_us(
        argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True
    )
    try:
        wait_for_ping(port, proc=proc)
        redis.Redis(port=port).eval("redis.log(redis.LOG_WARNING, 'zl-to-stdout')", 0)
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
    assert "zl-to-stdout" in out and "listening on" in out, out
    assert "zl-to-stdout" not in err and "listening on" not in err, err


def test_the_supervisors_lines_follow_config_set_loglevel():
    """At loglevel warning a restarted worker's notice line (``worker 0 pid=``)
    is not written, as Redis writes no notice line then."""
    with tempfile.TemporaryDirectory(prefix="shardkv-log-") as folder:
        path = os.path.join(folder, "shardkv.log")
        ours = start_shardkv("--logfile", path, shards=2, acceptors=1)
        try:
            r = redis.Redis(port=ours.port)
            r.config_set("loglevel", "warning")
            worker = next(p.pid for p in ours.processes() if p.name() == "shardkv-shard0")
            before = open(path, encoding="utf-8").read().count("* worker 0 pid=")
            os.kill(worker, signal.SIGKILL)
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                try:
                    r.set(key_on(0, "zl", shards=2), "v")
                    break
                except redis.ConnectionError:
                    r = redis.Redis(port=ours.port)
                except redis.ResponseError:
                    pass
                time.sleep(0.1)
            r.eval("redis.log(redis.LOG_WARNING, 'zl-end')", 0)
            text = _lines_until(path, "zl-end")
            r.close()
        finally:
            ours.stop()
    assert "exited with -9; restarting it" in text  # (a warning)
    assert text.count("* worker 0 pid=") == before, text  # (a notice)


def _lines_until(path: str, end: str) -> str:
    deadline = time.monotonic() + 10
    while True:
        with open(path, encoding="utf-8", errors="replace") as f:
            text = f.read()
        if end in text or time.monotonic() > deadline:
            return text
        time.sleep(0.05)
