"""scripts/serve (`tempmail run`) on the embedded PostgreSQL, as a newcomer
runs it: a restart says a handful of lines and then where SMTP and the page
are; a command prints only its answer; the terminal's Ctrl-C (SIGINT to the
whole foreground process group) drains a transaction in flight, a second
one hurries; stopping stops the embedded PostgreSQL; a database that cannot
be reached stops both at once; `--background` and `--stop`.

Each test starts scripts/serve in a session of its own (its own process
group, as a shell gives a foreground job) on free ports and its own
DATA_DIR, so none collides with another test.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from .helpers import ROOT, AppProcess, clean_environment, eventually, free_port, session_pids
from .raw import Raw


class Run(AppProcess):
    """scripts/serve, found by path (it finds its checkout by itself)."""

    command = "run"

    def argv(self) -> list[str]:
        return [str(ROOT / "scripts" / "serve"), "--env-file", "/dev/null"]

    def start(self) -> Run:
        self.launch()
        self.wait_for_log(r"\[run\] ready: ", timeout=120)
        return self

    def since(self, mark: int) -> list[str]:
        return self.lines[mark:]


@pytest.fixture
def tmp_path() -> Iterator[Path]:
    """A directory outside pytest's: run as root, the embedded PostgreSQL runs as
    the `pgserver` user, which must reach DATA_DIR, and a pytest session that
    starts meanwhile makes /tmp/pytest-of-root private again."""
    directory = Path(tempfile.mkdtemp(prefix="tempmail-test-"))
    yield directory
    shutil.rmtree(directory, ignore_errors=True)


def stack_environment(tmp_path: Path, **settings: str) -> dict[str, str]:
    return {
        **clean_environment(),
        "DATA_DIR": str(tmp_path / "data"),
        "SPOOL_DIR": str(tmp_path / "spool"),
        "SMTP_RECEIVE_PORT": str(free_port()),
        "SMTP_BIND": "127.0.0.1",
        "SMTP_HOSTNAME": "mx.test",
        "API_PORT": str(free_port()),
        "AUTH_CHECKS": "off",
        **settings,
    }


def postgres_of(data_dir: str) -> list[int]:
    """Processes whose command line names `data_dir`'s embedded pgdata."""
    pgdata = str(Path(data_dir) / "pgdata")
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            except OSError:
                continue
            if pgdata in command and "postgres" in command:
                found.append(int(entry.name))
    return found


@pytest.fixture
def runs() -> Iterator[list[Run]]:
    started: list[Run] = []
    yield started
    for run in started:
        if run.process is not None and run.process.poll() is None:
            run.kill()


def stored_subjects(env: dict[str, str]) -> list[str]:
    """The subjects in the embedded database (started for this, and stopped again)."""
    script = (
        "import asyncio, asyncpg, sys\n"
        "from app import embedded\n"
        "async def main():\n"
        "    conn = await asyncpg.connect(embedded.start(sys.argv[1]))\n"
        "    rows = await conn.fetch('SELECT subject FROM emails ORDER BY subject')\n"
        "    print('\\n'.join(r[0] for r in rows))\n"
        "    await conn.close()\n"
        "try:\n"
        "    asyncio.run(main())\n"
        "finally:\n"
        "    embedded.release()\n"
    )
    result = subprocess.run(
        [str(ROOT / ".venv" / "bin" / "python"), "-c", script, env["DATA_DIR"]],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.split()


def tempmail(env: dict[str, str], *args: str) -> tuple[int, str, str]:
    """The console script run to its end: (status, standard output, standard error)."""
    result = subprocess.run(
        [str(ROOT / ".venv" / "bin" / "tempmail"), *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    return result.returncode, result.stdout, result.stderr


def test_a_restart_says_a_handful_of_lines_and_commands_only_their_answer(tmp_path, runs):
    env = stack_environment(tmp_path)
    first = Run(env)
    runs.append(first)
    first.start()
    assert first.stop() == 0
    assert postgres_of(env["DATA_DIR"]) == []
    # A command with nothing running: starts the embedded PostgreSQL, answers, stops it.
    assert tempmail(env, "domains", "add", "example.com") == (0, "added example.com\n", "")
    assert postgres_of(env["DATA_DIR"]) == []

    again = Run(env)
    runs.append(again)
    again.start()
    print("\n".join(again.lines))
    assert len(again.lines) <= 10, again.log
    assert not [line for line in again.lines if "Warning" in line or "Traceback" in line]
    assert re.fullmatch(
        rf".* INFO \[run\] ready: SMTP on 127\.0\.0\.1:{env['SMTP_RECEIVE_PORT']}, inbox page "
        rf"and API on http://127\.0\.0\.1:{env['API_PORT']}/",
        again.lines[-1],
    ), again.lines[-1]
    assert sum("DATABASE_URL is unset" in line for line in again.lines) == 1
    # A command while it runs: only its answer, and the server stays up for the others.
    assert tempmail(env, "domains", "list") == (0, "example.com\n", "")
    assert postgres_of(env["DATA_DIR"])
    assert again.stop() == 0


def begin_data(port: int, subject: str) -> Raw:
    """A session inside DATA, the body half sent."""
    client = Raw(port, timeout=60)
    assert client.reply().startswith(b"220")
    for command, code in (
        (b"EHLO client.test", b"250"),
        (b"MAIL FROM:<a@sender.test>", b"250"),
        (b"RCPT TO:<who@example.com>", b"250"),
        (b"DATA", b"354"),
    ):
        client.send(command + b"\r\n")
        assert client.reply().startswith(code), command
    client.send(f"Subject: {subject}\r\n\r\nthe first half\r\n".encode())
    return client


def test_first_ctrl_c_drains_the_transaction_in_flight(tmp_path, runs):
    """SIGINT to scripts/serve's process group (what the terminal sends) while a
    client is inside DATA: the client finishes and gets 250, the message is
    stored (through the embedded PostgreSQL, which outlives the drain), and
    then everything scripts/serve started is gone, PostgreSQL included."""
    env = stack_environment(tmp_path, USE_DOMAIN_WHITELIST="false")
    run = Run(env)
    runs.append(run)
    run.start()
    assert run.process is not None
    session = run.process.pid
    client = begin_data(int(env["SMTP_RECEIVE_PORT"]), "drained")
    os.killpg(run.process.pid, signal.SIGINT)  # the terminal's Ctrl-C
    run.wait_for_log(r"\[service\] stopping: draining")
    client.send(b"the second half\r\n.\r\n")
    reply = client.reply()
    client.close()
    assert reply.startswith(b"250 "), reply
    assert run.process.wait(120) == 0  # the one Ctrl-C was enough
    run.close()
    assert "second" not in run.log, run.log
    assert "stopped: 1 rows written, 0 spooled" in run.log
    assert session_pids(session) == []
    assert postgres_of(env["DATA_DIR"]) == []
    assert stored_subjects(env) == ["drained"]


def test_a_second_ctrl_c_hurries(tmp_path, runs):
    env = stack_environment(tmp_path, USE_DOMAIN_WHITELIST="false", DRAIN_TIMEOUT="600")
    run = Run(env)
    runs.append(run)
    run.start()
    assert run.process is not None
    client = begin_data(int(env["SMTP_RECEIVE_PORT"]), "cut")
    os.killpg(run.process.pid, signal.SIGINT)
    run.wait_for_log(r"\[service\] stopping: draining")
    os.killpg(run.process.pid, signal.SIGINT)
    run.wait_for_log(r"\[service\] second SIGTERM: spooling what is queued and exiting")
    assert run.process.wait(120) == 0  # long before the 600 s drain
    run.close()
    client.close()
    assert postgres_of(env["DATA_DIR"]) == []


def test_an_unreachable_database_stops_both_at_once(tmp_path, runs):
    closed = free_port()
    env = stack_environment(tmp_path, DATABASE_URL=f"postgresql://me:pw@127.0.0.1:{closed}/db")
    run = Run(env)
    runs.append(run)
    run.launch()
    assert run.process is not None
    code = run.process.wait(120)
    run.close()
    assert code != 0, run.log
    assert "Traceback" not in run.log and "pw" not in run.log.replace("postgresql", "")
    assert "ready" not in run.log
    line = f"DATABASE_URL=postgresql://***@127.0.0.1:{closed}/db: cannot connect to PostgreSQL"
    # The first to fail says it; the other says it too unless it was stopped first.
    assert 1 <= sum(line in each for each in run.lines) <= 2, run.log
    assert len(run.lines) <= 3, run.log  # the settings' source, and that
    assert session_pids(run.process.pid) == []


def parent_of(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[1])


def test_background_returns_once_ready_and_stop_ends_everything(tmp_path, runs):
    env = stack_environment(tmp_path, USE_DOMAIN_WHITELIST="false")
    serve = [str(ROOT / "scripts" / "serve"), "--env-file", "/dev/null"]
    started = subprocess.run(
        [*serve, "--background"], env=env, capture_output=True, text=True, timeout=180
    )
    assert started.returncode == 0, started.stderr + started.stdout
    assert re.match(
        rf"ready: SMTP on 127\.0\.0\.1:{env['SMTP_RECEIVE_PORT']}, inbox page and API on "
        rf"http://127\.0\.0\.1:{env['API_PORT']}/; log in .*run\.log; stop: scripts/serve --stop",
        started.stdout,
    ), started.stdout
    pid = int((Path(env["DATA_DIR"]) / "run.pid").read_text())
    # run, and its two children serve and api (their parser pools are theirs).
    assert os.getsid(pid) == pid
    assert sorted(parent_of(each) for each in session_pids(pid)).count(pid) == 2
    again = subprocess.run(
        [*serve, "--background"], env=env, capture_output=True, text=True, timeout=60
    )
    assert again.returncode == 1 and f"already running here (pid {pid})" in again.stdout
    client = begin_data(int(env["SMTP_RECEIVE_PORT"]), "in background")
    client.send(b".\r\n")
    assert client.reply().startswith(b"250 ")
    client.close()
    stopped = subprocess.run(
        [*serve, "--stop"], env=env, capture_output=True, text=True, timeout=120
    )
    assert stopped.returncode == 0 and f"stopped (pid {pid})" in stopped.stderr
    assert session_pids(pid) == []
    assert postgres_of(env["DATA_DIR"]) == []
    eventually(lambda: "stopped: 1 rows written" in (Path(env["DATA_DIR"]) / "run.log").read_text())


def test_ctrl_c_to_serve_alone_spares_its_parser_process(make_server):
    """`tempmail serve` run by hand: the terminal's Ctrl-C reaches its whole
    process group, the parser process (messages over 1 MiB) included, which
    must not die of it while the service drains through it."""
    server = make_server(auth_checks="off")
    body = b"x" * 1500 + b"\r\n"
    message = b"Subject: big\r\n\r\n" + body * 1000  # 1.5 MB: parsed in the parser process
    import smtplib

    with smtplib.SMTP("127.0.0.1", server.port, timeout=60) as client:
        client.sendmail("a@sender.test", ["big@example.com"], message)
    assert server.process is not None
    os.killpg(server.process.pid, signal.SIGINT)
    assert server.stop() == 0
    assert "Traceback" not in server.log and "KeyboardInterrupt" not in server.log, server.log
    assert "stopped: 1 rows written" in server.log
