"""The first ten minutes, from a fresh clone (of this checkout's committed
HEAD: tests/readme.py): the README's "A first try" block run as written,
and a first run interrupted while .venv is being made.

Each makes .venv the way a newcomer's first run does (python -m venv, pip
install from the index; pip's own cache is shared, as on any machine): no
copy of this checkout's .venv, so what is tested is the install itself.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from . import readme
from .helpers import clean_environment, eventually, free_port


@pytest.fixture
def home() -> Iterator[Path]:
    """A directory outside pytest's: the embedded PostgreSQL (as root, the
    `pgserver` user) must reach the clone's data directory."""
    directory = Path(tempfile.mkdtemp(prefix="tempmail-first-"))
    yield directory
    for process in readme.processes_under(directory):  # a failed test's leftovers
        subprocess.run(["kill", "-9", process.split(":")[0]], check=False)
    shutil.rmtree(directory, ignore_errors=True)


def test_the_readme_first_try_works_as_pasted_in_a_fresh_clone(home, quiet_dns):
    """The block as the README has it, with three changes so it cannot collide
    with other tests or leave this machine: 2525 and 8025 become free ports
    (and API_PORT names the second, which the block leaves at its default),
    SMTP_BIND=127.0.0.1, and DNS_RESOLVER is the suite's local DNS server (the
    sender checks of swaks' mail ask it). It runs under `bash -e`: a failing
    line fails the test. After its last line (scripts/serve --stop) nothing
    it started runs: no process of the clone, PostgreSQL included."""
    block = readme.block_starting("The two commands", "SMTP_RECEIVE_PORT=2525 scripts/serve")
    smtp, api = free_port(), free_port()
    script = block.replace("2525", str(smtp)).replace("8025", str(api))
    clone = readme.fresh_clone(home)
    env = {
        **clean_environment(),
        "API_PORT": str(api),
        "SMTP_BIND": "127.0.0.1",
        "DNS_RESOLVER": quiet_dns.address,
    }
    result = subprocess.run(
        ["bash", "-e", "-c", script],
        cwd=clone,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
        start_new_session=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    # No Python warning on the way (setuptools' about packaging, platformdirs'...).
    assert not re.findall(r"\w+Warning\b", result.stdout + result.stderr), result.stderr
    listed = json.loads(next(line for line in result.stdout.splitlines() if line.startswith("{")))
    [message] = listed["messages"]
    assert message["To"] == [{"Name": "", "Address": "someone@example.com"}]
    assert message["Subject"].startswith("test ")  # swaks' default
    assert readme.processes_under(clone) == []


def test_a_first_run_interrupted_while_making_venv_is_repaired(home):
    """Ctrl-C (SIGINT to the process group) while .venv is being made leaves
    it unfinished; the next run makes it again and works."""
    clone = readme.fresh_clone(home)
    env = {
        **clean_environment(),
        "SMTP_RECEIVE_PORT": str(free_port()),
        "SMTP_BIND": "127.0.0.1",
        "API_PORT": str(free_port()),
        "USE_DOMAIN_WHITELIST": "false",
        "AUTH_CHECKS": "off",
    }
    first = subprocess.Popen(
        ["scripts/serve", "--background"],
        cwd=clone,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    venv_python = clone / ".venv" / "bin" / "python"
    eventually(lambda: venv_python.exists() or first.poll() is not None, timeout=300, interval=0.01)
    assert first.poll() is None, "the first run ended before .venv was being made"
    os.killpg(first.pid, signal.SIGINT)  # the terminal's Ctrl-C, while `python -m venv` runs
    first.wait(120)
    unfinished = (
        not (clone / ".venv" / ".made").exists() or (clone / ".venv" / ".installing").exists()
    )
    assert unfinished, "interrupted too late: .venv was already complete"

    again = subprocess.run(
        ["scripts/serve", "--background"],
        cwd=clone,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert again.returncode == 0, again.stdout + again.stderr
    assert "making .venv again: the last attempt to make it did not finish" in again.stderr
    assert again.stdout.startswith("ready: SMTP on 127.0.0.1:")
    stop = subprocess.run(
        ["scripts/serve", "--stop"], cwd=clone, env=env, capture_output=True, text=True
    )
    assert stop.returncode == 0, stop.stderr
    assert readme.processes_under(clone) == []
