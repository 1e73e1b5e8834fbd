"""Settings: defaults, aliases, precedence, and one-line errors."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from app import config

from .helpers import ROOT


def test_defaults():
    settings = config.load({}, env_file=None)
    assert settings.smtp_receive_port == 25
    assert settings.ack_mode == "durable"
    assert settings.max_recipients == 100
    assert settings.lists_source == "postgres"
    assert settings.use_domain_whitelist and settings.use_bans
    assert settings.database_url is None


def test_aliases_and_precedence(tmp_path):
    env_file = tmp_path / ".env"
    env_file.write_text("SMTP_RECEIVE_PORT=2600\nACK_MODE=instant\nUSE_SUPABASE_DOMAINS=false\n")
    settings = config.load({"SMTP_RECEIVE_PORT": "2700"}, env_file=env_file)
    assert settings.smtp_receive_port == 2700  # the environment wins over .env
    assert settings.ack_mode == "instant"
    assert settings.use_domain_whitelist is False  # Cybertemp's alias
    settings = config.load(
        {"SUPABASE_URL": "http://127.0.0.1:1", "SUPABASE_SERVICE_ROLE_KEY": "k"}, env_file=None
    )
    assert settings.lists_source == "supabase" and settings.supabase_key == "k"


@pytest.mark.parametrize(
    "env, message",
    [
        ({"SMTP_RECEIVE_PORT": "abc"}, "SMTP_RECEIVE_PORT='abc' is not valid: expected an integer"),
        ({"ACK_MODE": "fast"}, "ACK_MODE='fast' is not valid: expected one of durable, instant"),
        ({"USE_BANS": "maybe"}, "USE_BANS='maybe' is not valid: expected true or false"),
        ({"MAX_RECIPIENTS": "0"}, "MAX_RECIPIENTS='0' is not valid: expected an integer from 1"),
        ({"LISTS_SOURCE": "supabase"}, "LISTS_SOURCE=supabase needs SUPABASE_URL"),
        ({"TLS_CERT": "/x.pem"}, "TLS_CERT and TLS_KEY must be set together"),
        ({"DNS_RESOLVER": "dns.local"}, "DNS_RESOLVER='dns.local' is not valid: expected an IP"),
        ({"DNS_RESOLVER": "127.0.0.1:0"}, "DNS_RESOLVER='127.0.0.1:0' is not valid"),
        ({"AUTH_CHECKS": "strict"}, "AUTH_CHECKS='strict' is not valid: expected one of off"),
    ],
)
def test_bad_values_name_the_variable(env, message):
    with pytest.raises(config.ConfigError) as error:
        config.load(env, env_file=None)
    assert message in str(error.value)


@pytest.mark.parametrize("env", [{"SMTP_RECEIVE_PORT": "abc"}, {"ACK_MODE": "fast"}])
def test_serve_exits_with_one_line(env):
    result = subprocess.run(
        [sys.executable, "-m", "app", "--env-file", "/nonexistent", "serve"],
        cwd=ROOT,
        env={"PATH": "/usr/bin:/bin", **env},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("config error: " + next(iter(env)))


AS_NOBODY = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups"]


def test_port_25_without_privilege_says_how_to_fix(database_url):
    """Run as `nobody`: binding port 25 fails with one line naming the fixes."""
    if os.geteuid() != 0:
        pytest.skip("needs root to switch to an unprivileged user")
    reachable = subprocess.run([*AS_NOBODY, sys.executable, "-c", "import app"], cwd=ROOT)
    if reachable.returncode != 0:
        pytest.skip("the checkout is not readable by nobody")
    result = subprocess.run(
        [
            *AS_NOBODY,
            sys.executable,
            "-m",
            "app",
            "--env-file",
            "/nonexistent",
            "serve",
        ],
        cwd=ROOT,
        env={
            "PATH": "/usr/bin:/bin",
            "DATABASE_URL": database_url,
            "SMTP_RECEIVE_PORT": "25",
            "SPOOL_DIR": "/tmp/nobody-spool",
            "HOME": "/tmp",
        },
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1, result.stderr
    assert re.search(r"permission denied.*CAP_NET_BIND_SERVICE.*SMTP_RECEIVE_PORT", result.stderr)


def test_env_example_and_readme_document_every_setting():
    # Regenerate both with `python -m app.config` after changing a key.
    assert (ROOT / ".env.example").read_text() == config.env_example()
    assert config.settings_table() in (ROOT / "README.md").read_text()
