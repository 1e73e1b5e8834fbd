"""What a newcomer gets wrong at start, and the one line that says so.

A DATABASE_URL that cannot work (nothing listening, a host that does not
resolve, a role, password or database that does not exist): serve, api and
check each say it in one line naming DATABASE_URL, the host:port tried and
what to fix, with the password masked, and serve and api exit at once. A
port in use names its setting, and the API says where it serves only once
it does. Settings: a misspelt name is named with the closest setting,
`--env-file` must exist, options come before or after the command.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest

from app import __version__, embedded

from .helpers import (
    ADMIN_URL,
    ROOT,
    app_command,
    clean_environment,
    free_port,
)
from .test_run import Run, stack_environment

PASSWORD = "s3cret-pw"


@pytest.fixture(scope="module")
def password_postgres() -> Iterator[str]:
    """A PostgreSQL that checks passwords (scram-sha-256), unlike the suite's
    (trust): role `owner`, password PASSWORD. pgserver's binaries, as
    scripts/test-postgres runs them (as the `pgserver` user when root)."""
    directory = Path(tempfile.mkdtemp(prefix="tempmail-scram-"))  # reachable by `pgserver`
    embedded.runtime_dir(directory)  # before pgserver is imported: its lock's directory
    from pgserver import _commands, utils

    pgdata = directory / "pgdata"
    pgdata.mkdir()
    user = None
    if os.geteuid() == 0:
        user = "pgserver"
        entry = utils.ensure_user_exists(user)
        utils.ensure_prefix_permissions(pgdata)
        for path in (directory, pgdata):
            os.chown(path, entry.pw_uid, entry.pw_gid)
    password_file = directory / "password"
    password_file.write_text(PASSWORD + "\n")
    password_file.chmod(0o644)
    _commands.initdb(
        ["--auth=scram-sha-256", f"--pwfile={password_file}", "-U", "owner"],
        pgdata=pgdata,
        user=user,
    )
    port = free_port()
    _commands.pg_ctl(
        ["-w", "-o", f"-h 127.0.0.1 -p {port} -k {pgdata}", "-l", str(pgdata / "log"), "start"],
        pgdata=pgdata,
        user=user,
        timeout=60,
    )
    try:
        yield f"127.0.0.1:{port}"
    finally:
        _commands.pg_ctl(["-w", "-m", "immediate", "stop"], pgdata=pgdata, user=user)
        shutil.rmtree(directory, ignore_errors=True)


def admin_with(user: str) -> str:
    """The suite's server, as `user` with PASSWORD."""
    parts = urlsplit(ADMIN_URL)
    return urlunsplit(parts._replace(netloc=f"{user}:{PASSWORD}@{parts.hostname}:{parts.port}"))


# id -> (the URL, the host:port it names, what the line says went wrong, and the fix)
Case = Callable[[str], tuple[str, str, str, str]]
CASES: dict[str, Case] = {
    "refused": lambda scram: (
        f"postgresql://owner:{PASSWORD}@127.0.0.1:{free_port()}/mail",
        "127.0.0.1:",
        "connection refused",
        "start PostgreSQL there, or fix the host and port in DATABASE_URL",
    ),
    "unknown host": lambda scram: (
        f"postgresql://owner:{PASSWORD}@db.no-such-host.invalid:5432/mail",
        "db.no-such-host.invalid:5432",
        "cannot resolve the host name",
        "fix the host name in DATABASE_URL",
    ),
    "wrong role": lambda scram: (
        admin_with(user="no_such_role_w22"),
        "",
        'role "no_such_role_w22" does not exist',
        "fix the user name in DATABASE_URL, or create that role with LOGIN",
    ),
    "wrong password": lambda scram: (
        f"postgresql://owner:not-{PASSWORD}@{scram}/postgres",
        scram,
        'password authentication failed for user "owner"',
        "fix the password in DATABASE_URL",
    ),
    "missing database": lambda scram: (
        admin_with("postgres").rsplit("/", 1)[0] + "/no_such_database_w22",
        "",
        'database "no_such_database_w22" does not exist',
        "fix the database name in DATABASE_URL, or create it",
    ),
}


def without_network(case: str) -> list[str]:
    """Run the unknown-host case in a network namespace of its own: its DNS
    question goes nowhere (only 127.0.0.0/8 is ours to send to)."""
    if case != "unknown host":
        return []
    if os.geteuid() != 0 or not shutil.which("unshare"):
        pytest.skip("needs root and unshare for a network namespace")
    return ["unshare", "--net"]


def command(case: str, name: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*without_network(case), sys.executable, "-m", "app", "--env-file", "/dev/null", name],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.parametrize("name", ["serve", "api", "check"])
@pytest.mark.parametrize("case", list(CASES))
def test_a_database_url_that_cannot_work_is_one_line(case, name, password_postgres, tmp_path):
    url, where, reason, fix = CASES[case](password_postgres)
    env = {
        **clean_environment(),
        "DATABASE_URL": url,
        "SPOOL_DIR": str(tmp_path / "spool"),
        "DATA_DIR": str(tmp_path / "data"),
        "SMTP_RECEIVE_PORT": str(free_port()),
        "API_PORT": str(free_port()),
    }
    if case == "unknown host":  # its namespace's loopback is down: any address there
        env.update(SMTP_BIND="0.0.0.0", API_BIND="0.0.0.0")
    result = command(case, name, env)
    output = result.stdout + result.stderr
    assert result.returncode == 1, output
    assert PASSWORD not in output and "Traceback" not in output, output
    [line] = [each for each in output.splitlines() if "cannot connect" in each]
    assert "DATABASE_URL=postgresql://***@" in line, line
    assert f"cannot connect to PostgreSQL at {where}" in line, line
    assert reason in line and fix in line, line
    if name == "check":
        assert line.startswith("error: ")
    else:  # nothing else: no listening, no retrying
        assert not [each for each in output.splitlines() if "listening" in each], output


@pytest.mark.parametrize(
    "name, setting, bind, announcement",
    [
        ("serve", "SMTP_RECEIVE_PORT", "SMTP_BIND", "[smtp] listening"),
        ("api", "API_PORT", "API_BIND", "inbox page and API on"),
    ],
)
def test_a_port_in_use_names_its_setting_and_nothing_is_announced(
    name, setting, bind, announcement, database_url, tmp_path
):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = app_command(
            name,
            DATABASE_URL=database_url,
            SPOOL_DIR=str(tmp_path / "spool"),
            DATA_DIR=str(tmp_path / "data"),
            **{bind: "127.0.0.1", setting: str(port)},
        )
    assert result.returncode == 1, result.stderr
    [line] = [each for each in result.stderr.splitlines() if "cannot listen" in each]
    assert line.endswith(
        f"cannot listen on 127.0.0.1:{port} ({setting}={port}): the port is in use by another "
        f"program; stop it or set {setting}"
    ), line
    assert announcement not in result.stderr and "startup complete" not in result.stderr
    assert "Traceback" not in result.stderr


def test_the_api_says_where_it_serves_only_once_it_listens(database_url, tmp_path):
    """Its announcement and uvicorn's are gone before the bind; ours comes after
    it (the port answers by then)."""
    from .api_helpers import ApiServer

    api = ApiServer(database_url, str(tmp_path / "data")).start()
    try:
        assert "startup complete" not in api.log and "Uvicorn running" not in api.log
        [line] = [each for each in api.lines if "inbox page and API on" in each]
        assert f"http://127.0.0.1:{api.port}/" in line
    finally:
        api.kill()


def test_a_misspelt_setting_is_named_with_the_closest_one(database_url, tmp_path):
    assert app_command("init-db", DATABASE_URL=database_url).returncode == 0
    env_file = tmp_path / "settings.env"
    env_file.write_text(f"DATABASE_URL={database_url}\nSMTP_PORT=2526\nWEBSITE_NAME=mine\n")
    result = subprocess.run(
        [sys.executable, "-m", "app", "check", "--env-file", str(env_file)],  # after the command
        cwd=ROOT,
        env={**clean_environment(), "SPOOL_DIR": str(tmp_path / "spool"), "API_PROT": "1"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    warnings = [line for line in result.stdout.splitlines() if line.startswith("warn:")]
    assert warnings == [
        "warn:  API_PROT (in the environment) is not a setting and is ignored: "
        "did you mean API_PORT?",
        f"warn:  SMTP_PORT (in {env_file}) is not a setting and is ignored: "
        "did you mean SMTP_RECEIVE_PORT?",
    ], result.stdout
    assert f"settings read from the environment, then {env_file}" in result.stdout
    assert f"ok:    SPOOL_DIR {tmp_path / 'spool'} is writable\n" in result.stdout
    assert result.returncode == 0, result.stdout  # a warning, not a failure

    server = Run({**stack_environment(tmp_path), "DATABASE_URL": database_url, "SMTP_PORT": "2526"})
    [line] = [each for each in server_start_lines(server) if "SMTP_PORT" in each]
    assert line.endswith(
        "WARNING [config] SMTP_PORT (in the environment) is not a setting and is ignored: "
        "did you mean SMTP_RECEIVE_PORT?"
    ), line


def server_start_lines(run: Run) -> list[str]:
    try:
        run.start()
        return list(run.lines)
    finally:
        run.kill()


def test_an_env_file_that_does_not_exist_is_an_error(tmp_path):
    for argv in (["--env-file", "nope.env", "check"], ["check", "--env-file", "nope.env"]):
        result = subprocess.run(
            [sys.executable, "-m", "app", *argv],
            cwd=tmp_path,
            env={**clean_environment(), "PYTHONPATH": str(ROOT)},
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert (result.returncode, result.stdout) == (2, "")
        assert result.stderr == "error: --env-file nope.env: no such file\n"


def test_options_after_the_command(database_url, tmp_path):
    env_file = tmp_path / "x.env"
    env_file.write_text(f"DATABASE_URL={database_url}\n")
    for argv in (
        ["domains", "add", "after.test", "--env-file", str(env_file)],
        ["domains", "--env-file", str(env_file), "list"],
    ):
        result = subprocess.run(
            [sys.executable, "-m", "app", *argv],
            cwd=ROOT,
            env=clean_environment(),
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.returncode == 0 and result.stderr == "", result.stderr
    assert result.stdout == "after.test\n"


def test_version_is_the_program_and_its_version():
    assert app_command("--version").stdout == f"tempmail {__version__}\n"
    assert re.fullmatch(r"\d+\.\d+\.\d+", __version__)
