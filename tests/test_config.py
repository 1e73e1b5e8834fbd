"""Settings: defaults, aliases, precedence, and one-line errors."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from app import config, config_docs, config_warnings

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
        (
            {"API_TRUSTED_PROXIES": "127.0.0.1, nginx"},
            "API_TRUSTED_PROXIES='127.0.0.1, nginx' is not valid: expected comma-separated "
            "addresses or CIDR networks",
        ),
    ],
)
def test_bad_values_name_the_variable(env, message):
    with pytest.raises(config.ConfigError) as error:
        config.load(env, env_file=None)
    assert message in str(error.value)


@pytest.mark.parametrize("env", [{"SMTP_RECEIVE_PORT": "abc"}, {"ACK_MODE": "fast"}])
def test_serve_exits_with_one_line(env):
    result = subprocess.run(
        [sys.executable, "-m", "app", "--env-file", "/dev/null", "serve"],
        cwd=ROOT,
        env={"PATH": "/usr/bin:/bin", **env},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("config error: " + next(iter(env)))


def without_port_privilege() -> list[str]:
    """A command prefix that runs a process unable to bind ports below 1024:
    as root, without CAP_NET_BIND_SERVICE in its bounding set (a checkout in
    a private directory stays readable, as switching to `nobody` would not)."""
    return ["setpriv", "--bounding-set=-net_bind_service"] if os.geteuid() == 0 else []


def test_port_25_without_privilege_says_how_to_fix(database_url):
    """Binding port 25 without the privilege fails with one line naming the fixes."""
    result = subprocess.run(
        [
            *without_port_privilege(),
            sys.executable,
            "-m",
            "app",
            "--env-file",
            "/dev/null",
            "serve",
        ],
        cwd=ROOT,
        env={
            "PATH": "/usr/bin:/bin",
            "DATABASE_URL": database_url,
            "SMTP_RECEIVE_PORT": "25",
            "SPOOL_DIR": "/tmp/unprivileged-spool",
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
    assert (ROOT / ".env.example").read_text() == config_docs.env_example(config.KEYS)
    assert config_docs.settings_table(config.KEYS) in (ROOT / "README.md").read_text()


# A Cybertemp SMTP server's settings, by its own names.
CYBERTEMP_ENV = {
    "DATABASE_URL": "postgresql://mail:pw@db.test/mail",
    "SMTP_RECEIVE_PORT": "2526",
    "HEARTBEAT_URL": "https://hc.test/ping/abc",
    "USE_SUPABASE_DOMAINS": "false",
    "USE_SUPABASE_BANS": "false",
    "SUPABASE_URL": "https://project.supabase.co",
    "SUPABASE_SERVICE_ROLE_KEY": "service-role-key",
    "SMTP_MAX_SESSIONS": "500",
    "SMTP_MAX_QUEUE": "5000",
    "SMTP_SESSION_TIMEOUT_SECS": "60",
    "SMTP_IDLE_TIMEOUT_SECS": "30",
    "RUST_LOG": "warn",
}


def test_every_cybertemp_setting_name_is_read():
    settings = config.load(CYBERTEMP_ENV, env_file=None)
    assert settings.database_url == "postgresql://mail:pw@db.test/mail"
    assert settings.smtp_receive_port == 2526
    assert settings.heartbeat_url == "https://hc.test/ping/abc"
    assert settings.use_domain_whitelist is False and settings.use_bans is False
    assert settings.supabase_url == "https://project.supabase.co"
    assert settings.supabase_key == "service-role-key"
    assert settings.lists_source == "supabase"
    assert settings.max_connections == 500
    assert settings.queue_size == 5000
    assert settings.session_timeout == 60
    assert settings.smtp_timeout == 30
    assert settings.log_level == "WARNING"
    assert config_warnings.warnings(CYBERTEMP_ENV, env_file=None) == []


@pytest.mark.parametrize(
    "rust_log, level",
    [
        ("trace", "DEBUG"),
        ("debug", "DEBUG"),
        ("info", "INFO"),
        ("WARN", "WARNING"),
        ("error", "ERROR"),
    ],
)
def test_rust_log_plain_levels_set_the_log_level(rust_log, level):
    assert config.load({"RUST_LOG": rust_log}, env_file=None).log_level == level


def test_a_rust_log_filter_is_ignored_and_said_so():
    env = {"RUST_LOG": "info,sqlx=warn"}
    assert config.load(env, env_file=None).log_level == "INFO"
    assert config_warnings.warnings(env, env_file=None) == [
        "RUST_LOG='info,sqlx=warn' is not a plain level (trace, debug, info, warn, error): "
        "ignored; set LOG_LEVEL"
    ]


def test_our_names_win_over_cybertemp_names():
    settings = config.load(
        {
            "MAX_CONNECTIONS": "10",
            "SMTP_MAX_SESSIONS": "500",
            "LOG_LEVEL": "error",
            "RUST_LOG": "debug",
            "SMTP_TIMEOUT": "5",
            "SMTP_IDLE_TIMEOUT_SECS": "30",
        },
        env_file=None,
    )
    assert (settings.max_connections, settings.log_level, settings.smtp_timeout) == (10, "ERROR", 5)


@pytest.mark.parametrize(
    "name, says",
    [
        ("ENCRYPTION_MASTER_KEY_V1", "message bodies are stored unencrypted (encrypted = false)"),
        ("TOKIO_WORKER_THREADS", "use WORKERS for processes"),
    ],
)
def test_a_cybertemp_setting_we_do_not_implement_is_named(name, says):
    lines = config_warnings.warnings({name: "s3cr3t-value"}, env_file=None)
    assert len(lines) == 1 and lines[0].startswith(f"{name} is set but not supported: ")
    assert says in lines[0] and "s3cr3t" not in lines[0]


def test_check_reads_a_cybertemp_env_file_and_warns_once(tmp_path, database_url):
    """`check` with a Cybertemp operator's .env: its names take effect, and each
    setting we do not act on gets one line (its value never printed)."""
    env_file = tmp_path / ".env"
    env_file.write_text(
        f"DATABASE_URL={database_url}\nSMTP_MAX_SESSIONS=500\nSMTP_MAX_QUEUE=5000\n"
        "SMTP_SESSION_TIMEOUT_SECS=60\nSMTP_IDLE_TIMEOUT_SECS=30\nRUST_LOG=info,sqlx=warn\n"
        "USE_SUPABASE_DOMAINS=false\nENCRYPTION_MASTER_KEY_V1=c2VjcmV0LWtleS1ieXRlcw==\n"
    )
    result = subprocess.run(
        [sys.executable, "-m", "app", "--env-file", str(env_file), "check"],
        cwd=ROOT,
        env={"PATH": "/usr/bin:/bin", "SPOOL_DIR": str(tmp_path / "spool")},
        capture_output=True,
        text=True,
        timeout=60,
    )
    out = result.stdout
    for line in (
        "MAX_CONNECTIONS=500",
        "QUEUE_SIZE=5000",
        "SESSION_TIMEOUT=60.0",
        "SMTP_TIMEOUT=30.0",
        "USE_DOMAIN_WHITELIST=False",
        "LOG_LEVEL=INFO",
    ):
        assert f"       {line}\n" in out, line
    # The settings' lines come before the database's (a fresh one: not installed).
    lines = out[: out.index("ok:    database reachable at ")].splitlines()
    errors = [line for line in lines if line.startswith("error:")]
    assert errors == [
        "error: ENCRYPTION_MASTER_KEY_V1 is set but not supported: message bodies are stored "
        "unencrypted (encrypted = false); Cybertemp's body encryption is not implemented",
        "error: RUST_LOG='info,sqlx=warn' is not a plain level (trace, debug, info, warn, "
        "error): ignored; set LOG_LEVEL",
    ]
    assert result.returncode == 1  # a setting that is not honoured needs the operator
    assert "c2VjcmV0" not in out
    assert "ok:    database reachable at " in out
