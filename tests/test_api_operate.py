"""Operating the read side: scripts/serve brings up both processes and stops
both, and the API's systemd unit verifies and is hardened."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import time

import httpx
import pytest

from .api_helpers import mail, send
from .helpers import ROOT, clean_environment, free_port, install_schema, session_pids


def test_scripts_serve_runs_smtp_and_api_and_stops_both(database_url, tmp_path):
    install_schema(database_url, ("example.com",))
    smtp_port, api_port = free_port(), free_port()
    env = {
        **clean_environment(),
        "DATABASE_URL": database_url,
        "SMTP_RECEIVE_PORT": str(smtp_port),
        "SMTP_BIND": "127.0.0.1",
        "SMTP_HOSTNAME": "mx.test",
        "API_PORT": str(api_port),
        "SPOOL_DIR": str(tmp_path / "spool"),
        "DATA_DIR": str(tmp_path / "data"),
        "AUTH_CHECKS": "off",
    }
    script = subprocess.Popen(
        [str(ROOT / "scripts" / "serve"), "--env-file", "/dev/null"],
        cwd=tmp_path,  # the script finds its checkout by itself
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{api_port}/domains").status_code == 200:
                    send(smtp_port, ["who@example.com"], mail("who@example.com"))
                    break
            except (httpx.HTTPError, OSError, AssertionError):
                pass
            assert script.poll() is None and time.monotonic() < deadline
            time.sleep(0.1)
        listed = httpx.get(f"http://127.0.0.1:{api_port}/mailpit/who@example.com/api/v1/messages")
        assert listed.status_code == 200
        children = subprocess.run(
            ["pgrep", "-P", str(script.pid)], capture_output=True, text=True
        ).stdout.split()
        assert len(children) == 2
        script.send_signal(signal.SIGTERM)
        assert script.wait(60) == 0
        for pid in children:
            with pytest.raises(ProcessLookupError):
                os.kill(int(pid), 0)
    finally:
        for pid in session_pids(script.pid):  # serve and api run in groups of their own
            os.kill(pid, signal.SIGKILL)
        script.wait()


UNIT = ROOT / "deploy" / "systemd" / "tempmail-api.service"


@pytest.mark.skipif(not shutil.which("systemd-analyze"), reason="systemd-analyze not installed")
def test_api_systemd_unit_verifies_and_is_hardened(tmp_path):
    text = UNIT.read_text()
    for line in (
        "User=tempmail",
        "ExecStart=/opt/tempmail-smtp/.venv/bin/python -m app api",
        "CapabilityBoundingSet=",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "ProtectHome=yes",
        "PrivateTmp=yes",
        "StateDirectory=tempmail-api",
        "Environment=DATA_DIR=/var/lib/tempmail-api",
        "Restart=on-failure",
        "EnvironmentFile=/opt/tempmail-smtp/.env",
    ):
        assert re.search(rf"^{re.escape(line)}$", text, re.M), line
    local = tmp_path / UNIT.name
    local.write_text(text.replace("/opt/tempmail-smtp", str(ROOT)))
    result = subprocess.run(
        ["systemd-analyze", "verify", str(local)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
