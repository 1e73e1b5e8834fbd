"""README's "Install on a server", run as written (its blocks read from
README.md by tests/readme.py), on a temporary directory layout, with the
commands meant for the `tempmail` user run by an unprivileged user; then
the service and the API started as their systemd units run them, mail sent
and read through the API's own least-privileged role, and the upgrade
steps run.

What differs from a real server, each said where it is done below:
- Paths: /opt, /var/spool, /var/lib and /etc/systemd/system lie under a
  temporary directory (in the README's text and in the copied units).
- `<this repository>` is a bare copy of this checkout's committed HEAD.
- The system user: `useradd` is a stand-in that does nothing (a test makes
  no users on the machine) and `tempmail` is `nobody`: `sudo -u tempmail`
  runs as an unprivileged user that owns nothing but what the steps give it.
- `sudo` is a stand-in: the command as root, or with `-u USER` as that user,
  with sudo's reset environment (PATH, HOME, LANG only).
- `sudo -u postgres psql` is psql on the suite's PostgreSQL as its
  superuser; the roles and the database get names of this test (dropped at
  its end) and 127.0.0.1:5432 becomes the suite's host and port.
- `$EDITOR` is a script making the operator's edit: free ports for SMTP
  and the API on 127.0.0.1, and the suite's DNS server (sender checks).
- `apt-get` is skipped (what it installs is here: /usr/bin/python3 with
  venv, git, psql); `journalctl` is skipped; `systemctl` lines start and
  stop what the copied units run, as systemd would: ExecStart as User=, in
  WorkingDirectory=, with Environment= then EnvironmentFile= (which wins),
  after making StateDirectory=.
"""

from __future__ import annotations

import os
import pwd
import re
import shlex
import shutil
import smtplib
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
from dotenv import dotenv_values

from . import readme
from .api_helpers import mail
from .helpers import ADMIN_URL, AppProcess, eventually, free_port, query, url_for

SECTION = "Install on a server"
SERVER_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
SUDO = """#!/bin/bash
# sudo, for tests/test_install.py: as root, or as -u USER; environment reset.
user=root
if [ "$1" = -u ]; then user=$2; shift 2; fi
keep=(PATH="$PATH" LANG=C.UTF-8 HOME="$(getent passwd "$user" | cut -d: -f6)")
if [ "$user" = root ]; then exec env -i "${keep[@]}" "$@"; fi
exec setpriv --reuid="$user" --regid="$(id -g "$user")" --clear-groups env -i "${keep[@]}" "$@"
"""


def server_python_problem() -> str | None:
    if os.geteuid() != 0:
        return "runs the steps as root and as another user"
    version = subprocess.run(
        ["/usr/bin/python3", "-c", "import sys, ensurepip; print(sys.version_info >= (3, 11))"],
        capture_output=True,
        text=True,
    )
    if version.stdout.strip() != "True":
        return "needs /usr/bin/python3 3.11 or newer with venv (what a server installs)"
    if not (shutil.which("psql") and shutil.which("git") and shutil.which("setpriv")):
        return "needs psql, git and setpriv"
    return None


class Layout:
    """The temporary server: its directories, names and the substitutions."""

    def __init__(self, root: Path, dns: str) -> None:
        self.root = root
        self.name = "w22t" + uuid.uuid4().hex[:8]  # the roles and the database
        self.smtp_port, self.api_port = free_port(), free_port()
        admin = urlsplit(ADMIN_URL)
        self.postgres = f"{admin.hostname}:{admin.port or 5432}"
        self.opt = root / "opt" / "tempmail-smtp"
        self.repository = readme.clone_source(root)
        (root / "etc" / "systemd" / "system").mkdir(parents=True)  # as on any systemd host
        bin_dir = root / "bin"
        bin_dir.mkdir()
        for name, text in (("sudo", SUDO), ("useradd", "#!/bin/sh\nexit 0\n")):
            (bin_dir / name).write_text(text)
            (bin_dir / name).chmod(0o755)
        editor = bin_dir / "editor"
        settings = (
            f"SMTP_RECEIVE_PORT={self.smtp_port}\nSMTP_BIND=127.0.0.1\n"
            f"API_PORT={self.api_port}\nDNS_RESOLVER={dns}\n"
        )
        editor.write_text(f"#!/bin/sh\nprintf '{settings}' >> \"$1\"\n")
        editor.chmod(0o755)
        self.env = {"PATH": f"{bin_dir}:{SERVER_PATH}", "EDITOR": str(editor), "HOME": "/root"}

    def paths(self, text: str) -> str:
        for path in ("/opt/", "/var/spool/", "/var/lib/", "/etc/systemd/system/"):
            text = text.replace(path, f"{self.root}{path}")
        return text

    def substitute(self, block: str) -> str:
        text = self.paths(block)
        text = text.replace("<this repository>", str(self.repository))
        text = text.replace("sudo -u postgres psql", f"psql -q -v ON_ERROR_STOP=1 '{ADMIN_URL}'")
        text = text.replace("-o tempmail -g tempmail", "-o nobody -g nogroup")
        text = text.replace("sudo -u tempmail ", "sudo -u nobody ")
        text = re.sub(r"\btempmail_api\b", f"{self.name}_api", text)
        text = re.sub(r"(ROLE|OWNER|DATABASE) tempmail\b", rf"\1 {self.name}", text)
        text = text.replace("://tempmail:", f"://{self.name}:")
        url_end = re.compile(r"@127\.0\.0\.1:5432/tempmail$", re.M)
        text = url_end.sub(f"@{self.postgres}/{self.name}", text)
        return text

    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"


class Unit(AppProcess):
    """A copied unit's ExecStart, run the way systemd would run it."""

    def __init__(self, layout: Layout, name: str) -> None:
        self.layout = layout
        unit = (layout.root / "etc" / "systemd" / "system" / f"{name}.service").read_text()
        self.settings: dict[str, list[str]] = {}
        for line in layout.paths(unit).splitlines():
            key, sep, value = line.partition("=")
            if sep and not line.startswith("#"):
                self.settings.setdefault(key, []).append(value)
        env = {"PATH": SERVER_PATH, "LANG": "C.UTF-8"}
        for assignments in self.settings.get("Environment", []):
            env.update(item.split("=", 1) for item in shlex.split(assignments))
        env.update({k: v or "" for k, v in dotenv_values(self.one("EnvironmentFile")).items()})
        super().__init__(env)

    def one(self, key: str) -> str:
        [value] = self.settings[key]
        return value

    def argv(self) -> list[str]:
        return shlex.split(self.one("ExecStart"))

    def spawn(self) -> subprocess.Popen[str]:
        user = pwd.getpwnam("nobody" if self.one("User") == "tempmail" else self.one("User"))
        for state in self.settings.get("StateDirectory", []):
            directory = self.layout.root / "var" / "lib" / state
            directory.mkdir(parents=True, mode=0o700, exist_ok=True)
            os.chown(directory, user.pw_uid, user.pw_gid)
        return subprocess.Popen(
            self.argv(),
            cwd=self.one("WorkingDirectory"),
            env=self.env,
            user=user.pw_uid,
            group=user.pw_gid,
            extra_groups=[],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            errors="replace",
            start_new_session=True,
        )


class Server:
    """The README's steps, line by line: shell for most, systemd for systemctl."""

    UNITS = ("tempmail-smtp", "tempmail-api")

    def __init__(self, layout: Layout) -> None:
        self.layout = layout
        self.units: list[Unit] = []

    def run(self, block: str) -> None:
        chunk: list[str] = []
        for line in self.layout.substitute(block).splitlines():
            command = line.split("#")[0].strip()
            if command.startswith(("sudo apt-get", "journalctl")):
                continue
            if command.startswith("sudo systemctl"):
                self.shell(chunk)
                chunk = []
                self.systemctl(command)
            else:
                chunk.append(line)
        self.shell(chunk)

    def shell(self, lines: list[str]) -> None:
        if not [line for line in lines if line.strip()]:
            return
        here = self.layout.opt if self.layout.opt.exists() else self.layout.root
        result = subprocess.run(
            ["bash", "-euo", "pipefail", "-c", "\n".join(lines)],
            cwd=here,
            env=self.layout.env,
            capture_output=True,
            text=True,
            timeout=900,
        )
        assert result.returncode == 0, result.stdout + result.stderr
        print(result.stdout + result.stderr)

    def systemctl(self, command: str) -> None:
        for step in command.split("&&"):
            words = step.split()
            if "stop" in words:
                self.stop()
            elif "start" in words or "--now" in words:
                self.start()

    def start(self) -> None:
        self.units = [Unit(self.layout, name) for name in self.UNITS]
        for unit in self.units:
            unit.launch()
        eventually(lambda: smtp_ready(self.layout.smtp_port), timeout=120)
        eventually(lambda: api_ready(self.layout.api_url()), timeout=120)

    def stop(self) -> None:
        for unit in self.units:
            if unit.process is not None and unit.process.poll() is None:
                assert unit.stop(timeout=120) in (0, -15), unit.log
        self.units = []


def smtp_ready(port: int) -> bool:
    try:
        with smtplib.SMTP("127.0.0.1", port, timeout=5):
            return True
    except OSError:
        return False


def api_ready(url: str) -> bool:
    try:
        return httpx.get(url + "/domains", timeout=5).status_code == 200
    except httpx.HTTPError:
        return False


@pytest.fixture
def server(quiet_dns) -> Iterator[Server]:
    problem = server_python_problem()
    if problem:
        pytest.skip(problem)
    root = Path(tempfile.mkdtemp(prefix="tempmail-install-"))
    root.chmod(0o755)  # nobody walks to /opt/tempmail-smtp and the spool, as on a server
    layout = Layout(root, quiet_dns.address)
    installed = Server(layout)
    try:
        yield installed
    finally:
        for unit in installed.units:
            unit.kill()
        query(ADMIN_URL, f"DROP DATABASE IF EXISTS {layout.name} WITH (FORCE)")
        for role in (layout.name + "_api", layout.name):
            query(ADMIN_URL, f"DROP ROLE IF EXISTS {role}")
        shutil.rmtree(root, ignore_errors=True)


def api_role_works(layout: Layout) -> None:
    """Mail in over SMTP, and every kind of write the API makes, through the API's role."""
    address = "someone@example.com"
    with smtplib.SMTP("127.0.0.1", layout.smtp_port, timeout=30) as client:
        client.sendmail("a@sender.test", [address], mail(address, subject="installed"))
    with httpx.Client(base_url=layout.api_url(), timeout=30) as api:
        box = f"/mailpit/{address}/api/v1"
        [listed] = eventually(lambda: api.get(f"{box}/messages").json()["messages"])
        assert listed["Subject"] == "installed"
        assert api.get(f"{box}/message/{listed['ID']}").status_code == 200  # marks it read
        unread = {"IDs": [listed["ID"]], "Read": False}
        assert api.put(f"{box}/messages", json=unread).status_code == 200
        created = api.post("/accounts", json={"address": "me@example.com", "password": "a-pw-12"})
        assert created.status_code == 201, created.text
        token = api.post("/token", json={"address": "me@example.com", "password": "a-pw-12"})
        headers = {"Authorization": f"Bearer {token.json()['token']}"}
        deleted = api.delete(f"/accounts/{created.json()['id']}", headers=headers)
        assert deleted.status_code == 204
        assert api.request("DELETE", f"{box}/messages", json={"IDs": [listed["ID"]]}).is_success
        assert api.get(f"{box}/messages").json()["messages"] == []


def test_the_readme_install_steps_work_as_written(server):
    layout = server.layout
    server.run(readme.block_starting(SECTION, "sudo -u postgres psql"))
    server.run(readme.block_starting(SECTION, "sudo useradd"))  # check passes, units start
    env_file = layout.opt / ".env"
    assert (env_file.stat().st_mode & 0o777, env_file.owner()) == (0o600, "nobody")
    database = url_for(layout.name)
    api_role = layout.name + "_api"
    # The API connects as its own role, which may not change any table.
    sessions = query(
        database, "SELECT DISTINCT usename FROM pg_stat_activity WHERE datname = $1", layout.name
    )
    assert {row[0] for row in sessions} >= {layout.name, api_role}
    as_api = database.replace("://postgres@", f"://{api_role}@")
    refused = subprocess.run(
        ["psql", as_api, "-c", "CREATE TABLE probe (x int)", "-c", "DROP TABLE bans"],
        capture_output=True,
        text=True,
    )
    assert "permission denied for schema public" in refused.stderr, refused.stderr
    assert "must be owner of table bans" in refused.stderr, refused.stderr
    api_role_works(layout)

    server.run(readme.block_starting(SECTION, "sudo systemctl stop"))  # the upgrade
    api_role_works(layout)
