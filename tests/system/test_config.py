"""Config file and flags."""

import subprocess
import sys

import pytest

from shardkv.runtime import config
from shardkv.runtime.config_params import machine_acceptors
from tests.support.servers import ROOT


def test_defaults_file_documents_every_setting():
    """Every setting shardkv acts on is documented in configs/default.toml;
    every other Redis parameter is listed after them, in a section of its own."""
    text = (ROOT / "configs" / "default.toml").read_text()
    used, _, inert = text.partition("# -- accepted for compatibility: no effect in shardkv")
    values = config.load_file(str(ROOT / "configs" / "default.toml"))
    for name, setting in config.SETTINGS.items():
        if setting.used:
            assert f"\n{name} = " in used, name
        elif "hidden" not in setting.flags:
            assert f"\n{name} = " in inert, name
        if "hidden" not in setting.flags or setting.used:
            assert values[name] == setting.default, name


def test_flags_override_file(tmp_path):
    f = tmp_path / "c.toml"
    f.write_text('port = 7000\nshards = 3\nmaxmemory = "1mb"\n')
    values = config.load(["--config", str(f), "--shards", "8"])
    assert values["port"] == 7000
    assert values["shards"] == 8
    assert values["maxmemory"] == 1024 * 1024


@pytest.mark.parametrize("cores, acceptors", [(1, 1), (2, 1), (3, 1), (4, 2), (16, 8), (32, 16), (1024, 256)])
def test_acceptors_auto_is_half_the_cores(cores, acceptors):
    assert machine_acceptors(cores) == acceptors


def test_acceptors_auto_in_file_and_flag(tmp_path):
    f = tmp_path / "c.toml"
    f.write_text('acceptors = "auto"\n')
    machine = machine_acceptors()
    assert config.load_file(str(f))["acceptors"] == machine
    assert config.load(["--acceptors", "AUTO"])["acceptors"] == machine
    assert config.load([])["acceptors"] == machine  # the default
    assert config.load(["--config", str(f), "--acceptors", "3"])["acceptors"] == 3  # a number wins
    f.write_text("acceptors = 2\n")
    assert config.load_file(str(f))["acceptors"] == 2
    with pytest.raises(config.ConfigError, match="bad value for --acceptors"):
        config.load(["--acceptors", "0"])
    with pytest.raises(config.ConfigError, match="bad value for --acceptors"):
        config.load(["--acceptors", "half"])


@pytest.mark.slow
@pytest.mark.parametrize(
    "content, words",
    [
        ("nosuch = 1\n", "unknown setting 'nosuch'"),
        ('port = "x"\n', "bad value for 'port'"),
        ("appendonly = 3\n", "bad value for 'appendonly'"),
        ('maxmemory-policy = "lots"\n', "bad value for 'maxmemory-policy'"),
        ("port = \n", "cannot read config file"),
    ],
)
def test_bad_file_exits_2_with_one_line(tmp_path, content, words):
    f = tmp_path / "bad.toml"
    f.write_text(content)
    _exits_2_with_one_line(f, words)


def _exits_2_with_one_line(f, words: str) -> None:
    """Starting with config file ``f`` exits with status 2 and one line on stderr naming ``words``."""
    proc = subprocess.run(
        [sys.executable, str(ROOT / "main.py"), "--config", str(f)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and words in lines[0], proc.stderr


@pytest.mark.slow
def test_missing_file_and_bad_flag_exit_2():
    proc = subprocess.run(
        [sys.executable, str(ROOT / "main.py"), "--config", "/nonexistent/x.toml"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert proc.returncode == 2 and "/nonexistent/x.toml" in proc.stderr
    proc = subprocess.run(
        [sys.executable, str(ROOT / "main.py"), "--shards", "zero"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert proc.returncode == 2 and "--shards" in proc.stderr


@pytest.mark.slow
@pytest.mark.parametrize(
    "content, words",
    [
        (b'dir = "\xff\xfe"\n', "cannot read config file"),  # not UTF-8
        (b"a = " + b"[" * 5000 + b"]" * 5000 + b"\n", "nested too deeply"),
    ],
    ids=["not-utf8", "deep"],
)
def test_unreadable_file_exits_2_with_one_line_not_a_traceback(tmp_path, content, words):
    """tomllib raises UnicodeDecodeError and RecursionError for these, not
    TOMLDecodeError: they ended in a traceback with status 1."""
    f = tmp_path / "bad.toml"
    f.write_bytes(content)
    _exits_2_with_one_line(f, words)


def test_a_log_file_that_cannot_be_opened_is_a_config_error(tmp_path):
    """As Redis's ``Can't open the log file: No such file or directory``
    (a FATAL CONFIG FILE ERROR), not a traceback once the supervisor starts."""
    with pytest.raises(config.ConfigError, match="^Can't open the log file: No such file or directory$"):
        config.load(["--logfile", str(tmp_path / "nowhere" / "x.log")])
    assert config.load(["--logfile", str(tmp_path / "x.log")])["logfile"] == str(tmp_path / "x.log")
