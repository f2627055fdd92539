"""Tools that read shardkv as they read Redis: the Prometheus redis_exporter
(Debian's ``prometheus-redis-exporter``) and ``redis-cli --memkeys``.

Each runs against a redis-server and against shardkv in the same test; the
exporter must show the same metric families for both, and --memkeys must
report real sizes.  The exporter test is skipped, with a message, only when
its binary is not installed (``.ci/run`` installs it).
"""

from __future__ import annotations

import re
import shutil
import subprocess
import time
import urllib.request

import pytest
import redis

from tests.support.servers import free_port, popen_dying_with_us

EXPORTER = shutil.which("prometheus-redis-exporter") or shutil.which("redis_exporter")
# Families that come from CONFIG GET parameters, not INFO: reported once
# CONFIG GET lists every Redis 7.0 parameter.
CONFIG_FAMILIES = {"redis_config_io_threads"}


def _families(port: int) -> set[str]:
    """The metric families the exporter shows for the server on ``port``."""
    listen = free_port()
    proc = popen_dying_with_us(
        [EXPORTER, "-redis.addr", f"redis://127.0.0.1:{port}", "-web.listen-address", f"127.0.0.1:{listen}"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        text = ""
        for _ in range(100):
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{listen}/metrics", timeout=10) as f:
                    text = f.read().decode()
                break
            except OSError:
                time.sleep(0.1)
        names = {
            re.split(r"[{ ]", line, maxsplit=1)[0] for line in text.splitlines() if line and line[0] != "#"
        }
        return {n for n in names if n.startswith("redis_")}
    finally:
        proc.terminate()
        proc.wait(10)


@pytest.mark.slow
@pytest.mark.skipif(
    EXPORTER is None,
    reason="prometheus-redis-exporter is not installed (apt-get install prometheus-redis-exporter)",
)
def test_redis_exporter_shows_the_same_metric_families(ports):
    for name in ("redis", "shardkv"):
        c = redis.Redis(port=ports[name])
        c.set("exporter:k", "v")
        c.execute_command("CONFIG", "SET", "slowlog-log-slower-than", "10000")
        c.close()
    theirs = _families(ports["redis"])
    ours = _families(ports["shardkv"])
    assert "redis_up" in ours and "redis_commands_total" in ours and "redis_slowlog_length" in ours
    missing = theirs - ours - CONFIG_FAMILIES
    assert not missing, sorted(missing)


def test_redis_cli_memkeys_reports_sizes(ports):
    out = {}
    for name in ("redis", "shardkv"):
        c = redis.Redis(port=ports[name])
        c.flushall()
        c.set("mk:s", "x" * 100)
        c.rpush("mk:l", *[str(i) for i in range(50)])
        c.hset("mk:h", mapping={str(i): "v" for i in range(20)})
        c.close()
        result = subprocess.run(
            ["redis-cli", "-p", str(ports[name]), "--memkeys"], capture_output=True, text=True, timeout=60
        )
        pattern = r"(\d+) (strings|lists|hashs) with (\d+) bytes"
        out[name] = {kind: (int(n), int(b)) for n, kind, b in re.findall(pattern, result.stdout)}
    for name in ("redis", "shardkv"):
        assert {k: v[0] for k, v in out[name].items()} == {"strings": 1, "lists": 1, "hashs": 1}, name
        assert all(b > 0 for _, b in out[name].values()), (name, out[name])
    # Of the same order as Redis's estimates.
    for kind in ("strings", "lists", "hashs"):
        ratio = out["shardkv"][kind][1] / out["redis"][kind][1]
        assert 0.1 < ratio < 20, (kind, out)
