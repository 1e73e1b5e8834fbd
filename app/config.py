"""Settings: one frozen object read once from the environment and `.env`.

Every key has a default, a one-line description and a validator; a bad value
raises ConfigError naming the variable, the value and what is allowed.
The environment wins over `.env` (python-dotenv never overrides it).
"""

from __future__ import annotations

import dataclasses
import ipaddress
import os
import socket
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from dotenv import dotenv_values


class ConfigError(ValueError):
    """A setting has a value we cannot use; str() is the one line to print."""


def _number(kind: type[int] | type[float], low: float, high: float) -> Callable[[str], Any]:
    def parse(text: str) -> int | float:
        value = kind(text.strip())
        if not low <= value <= high:
            raise ValueError
        return value

    noun = "an integer" if kind is int else "a number"
    parse.allowed = f"{noun} from {low:g} to {high:g}"  # type: ignore[attr-defined]
    return parse


def _int(low: int, high: int) -> Callable[[str], int]:
    return _number(int, low, high)


def _float(low: float, high: float) -> Callable[[str], float]:
    return _number(float, low, high)


def _choice(*choices: str) -> Callable[[str], str]:
    def parse(text: str) -> str:
        value = text.strip().lower()
        if value not in choices:
            raise ValueError
        return value

    parse.allowed = "one of " + ", ".join(choices)  # type: ignore[attr-defined]
    return parse


def _bool(text: str) -> bool:
    value = text.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise ValueError


_bool.allowed = "true or false (also 1/0, yes/no, on/off)"  # type: ignore[attr-defined]


def _text(text: str) -> str:
    return text.strip()


_text.allowed = "any text"  # type: ignore[attr-defined]


def _optional(text: str) -> str | None:
    return text.strip() or None


_optional.allowed = "any text, or empty for none"  # type: ignore[attr-defined]


def _optional_port(text: str) -> int | None:
    return _int(1, 65535)(text) if text.strip() else None


_optional_port.allowed = "a port from 1 to 65535, or empty for off"  # type: ignore[attr-defined]


def _resolver_address(text: str) -> str | None:
    """DNS_RESOLVER: kept as text, checked here: "ip", "ip:port" or "[ipv6]:port"."""
    text = text.strip()
    if not text:
        return None
    host = text
    if text.count(":") == 1 or text.startswith("["):
        host, _, port = text.removeprefix("[").replace("]", "").rpartition(":")
        _int(1, 65535)(port)
    ipaddress.ip_address(host)  # dnspython takes addresses, not names
    return text


_resolver_address.allowed = (  # type: ignore[attr-defined]
    "an IP address, ip:port or [ipv6]:port, or empty for the system resolver"
)


@dataclasses.dataclass(frozen=True)
class Key:
    env: str
    default: str
    parse: Callable[[str], Any]
    doc: str
    aliases: tuple[str, ...] = ()


KEYS: tuple[Key, ...] = (
    Key(
        "DATABASE_URL",
        "",
        _optional,
        "PostgreSQL URL; empty starts the embedded PostgreSQL under DATA_DIR",
    ),
    Key("SMTP_RECEIVE_PORT", "25", _int(0, 65535), "TCP port the SMTP listener binds"),
    Key("SMTP_BIND", "0.0.0.0", _text, "address the SMTP listener binds"),
    Key(
        "SMTP_HOSTNAME",
        "",
        _text,
        "name in the 220 greeting and EHLO reply; empty uses the machine's host name",
    ),
    Key(
        "ACK_MODE",
        "instant",
        _choice("instant", "durable"),
        "instant: 250 once queued; durable: 250 only after the row is committed",
    ),
    Key("WORKERS", "1", _int(1, 64), "processes sharing the port (SO_REUSEPORT)"),
    Key(
        "MAX_MESSAGE_SIZE",
        str(25 * 1024 * 1024),
        _int(1024, 1 << 31),
        "largest message in bytes (advertised as SIZE)",
    ),
    Key("MAX_RECIPIENTS", "100", _int(1, 10000), "accepted RCPTs per message"),
    Key("MAX_CONNECTIONS", "5000", _int(1, 1_000_000), "concurrent connections per worker"),
    Key(
        "MAX_CONNECTIONS_PER_IP",
        "50",
        _int(1, 1_000_000),
        "concurrent connections from one client address",
    ),
    Key(
        "MAX_MESSAGES_PER_CONNECTION",
        "100",
        _int(1, 100_000),
        "messages one connection may send before it is closed with 421",
    ),
    Key(
        "MAX_ERRORS",
        "20",
        _int(1, 10_000),
        "refused or bad commands one connection may send before it is closed with 421",
    ),
    Key("SMTP_TIMEOUT", "300", _float(1, 3600), "seconds a client may stay idle between commands"),
    Key("DATA_TIMEOUT", "600", _float(1, 86400), "seconds one DATA transfer may take in total"),
    Key("SESSION_TIMEOUT", "1800", _float(1, 86400), "seconds one connection may last in total"),
    Key("QUEUE_SIZE", "10000", _int(1, 10_000_000), "messages held in memory before 451"),
    Key("BATCH_MAX", "200", _int(1, 10000), "messages written in one transaction at most"),
    Key(
        "BATCH_DELAY_MS",
        "5",
        _float(0, 1000),
        "longest wait to fill a batch under load (light load flushes at once)",
    ),
    Key(
        "DURABLE_TIMEOUT",
        "30",
        _float(0.1, 3600),
        "durable mode: seconds to wait for the commit before answering 451",
    ),
    Key(
        "DRAIN_TIMEOUT",
        "20",
        _float(0, 3600),
        "shutdown: seconds to finish sessions and write the queue before spooling",
    ),
    Key(
        "LISTS_SOURCE",
        "",
        _choice("", "supabase", "postgres"),
        "where lists come from; empty: supabase when SUPABASE_URL is set, else postgres",
    ),
    Key(
        "USE_DOMAIN_WHITELIST",
        "true",
        _bool,
        "accept only recipients in the domains table",
        ("USE_SUPABASE_DOMAINS",),
    ),
    Key("USE_BANS", "true", _bool, "refuse senders in the bans table", ("USE_SUPABASE_BANS",)),
    Key("SUPABASE_URL", "", _optional, "Supabase project URL"),
    Key("SUPABASE_KEY", "", _optional, "Supabase API key", ("SUPABASE_SERVICE_ROLE_KEY",)),
    Key("DOMAINS_REFRESH", "120", _float(0.05, 86400), "seconds between domain list refreshes"),
    Key("BANS_REFRESH", "60", _float(0.05, 86400), "seconds between ban list refreshes"),
    Key("PRIVATE_REFRESH", "30", _float(0.05, 86400), "seconds between private_email refreshes"),
    Key("HEARTBEAT_URL", "", _optional, "URL pinged with GET while the service is healthy"),
    Key("HEARTBEAT_INTERVAL", "60", _float(0.05, 86400), "seconds between heartbeat pings"),
    Key("SPOOL_DIR", "./spool", _text, "directory for unwritten and dead-letter messages"),
    Key("DATA_DIR", "./data", _text, "directory of the embedded PostgreSQL"),
    Key("RETENTION_HOURS", "24", _float(0, 1_000_000), "hours mail is kept; 0 keeps it forever"),
    Key("RETENTION_INTERVAL", "300", _float(0.05, 86400), "seconds between expiry runs"),
    Key("TLS_CERT", "", _optional, "PEM certificate file; with TLS_KEY enables STARTTLS"),
    Key("TLS_KEY", "", _optional, "PEM private key file for TLS_CERT"),
    Key("PROXY_PROTOCOL", "off", _bool, "expect a PROXY v1/v2 header on every connection"),
    Key("METRICS_PORT", "", _optional_port, "port for /metrics, /healthz, /readyz; empty: off"),
    Key("METRICS_BIND", "127.0.0.1", _text, "address the metrics and health port binds"),
    Key(
        "AUTH_CHECKS",
        "record",
        _choice("off", "record", "enforce"),
        "SPF/DKIM/DMARC: off, record results, or enforce DMARC p=reject",
    ),
    Key(
        "AUTH_TIMEOUT",
        "3",
        _float(0.1, 60),
        "seconds the checks of one message may take (DNS included); then temperror",
    ),
    Key(
        "DNS_RESOLVER",
        "",
        _resolver_address,
        "IP address (ip:port, [ipv6]:port) of the DNS resolver; empty: the system's",
    ),
    Key("LOG_LEVEL", "INFO", _choice("debug", "info", "warning", "error"), "logging level"),
)


def _field_name(env: str) -> str:
    return env.lower()


@dataclasses.dataclass(frozen=True)
class Settings:
    database_url: str | None
    smtp_receive_port: int
    smtp_bind: str
    smtp_hostname: str
    ack_mode: str
    workers: int
    max_message_size: int
    max_recipients: int
    max_connections: int
    max_connections_per_ip: int
    max_messages_per_connection: int
    max_errors: int
    smtp_timeout: float
    data_timeout: float
    session_timeout: float
    queue_size: int
    batch_max: int
    batch_delay_ms: float
    durable_timeout: float
    drain_timeout: float
    lists_source: str
    use_domain_whitelist: bool
    use_bans: bool
    supabase_url: str | None
    supabase_key: str | None
    domains_refresh: float
    bans_refresh: float
    private_refresh: float
    heartbeat_url: str | None
    heartbeat_interval: float
    spool_dir: str
    data_dir: str
    retention_hours: float
    retention_interval: float
    tls_cert: str | None
    tls_key: str | None
    proxy_protocol: bool
    metrics_port: int | None
    metrics_bind: str
    auth_checks: str
    auth_timeout: float
    dns_resolver: str | None
    log_level: str

    @property
    def durable(self) -> bool:
        return self.ack_mode == "durable"

    def masked(self) -> dict[str, str]:
        """Effective settings for display, secrets hidden."""
        shown = {}
        for key in KEYS:
            value = getattr(self, _field_name(key.env))
            text = "" if value is None else str(value)
            if text and key.env in ("SUPABASE_KEY",):
                text = text[:4] + "…"
            elif text and key.env == "DATABASE_URL" and "@" in text:
                scheme, _, rest = text.partition("://")
                text = f"{scheme}://***@{rest.rpartition('@')[2]}"
            shown[key.env] = text
        return shown


def _raw_value(key: Key, env: Mapping[str, str], dotenv: Mapping[str, str | None]) -> str:
    # The environment wins over .env; the canonical name wins over an alias.
    for source in (env, dotenv):
        for name in (key.env, *key.aliases):
            value = source.get(name)
            if value is not None:
                return value
    return key.default


def load(env: Mapping[str, str] | None = None, env_file: str | Path | None = ".env") -> Settings:
    """Build Settings from `env` (default os.environ) over the `.env` file."""
    env = os.environ if env is None else env
    dotenv: dict[str, str | None] = {}
    if env_file is not None and Path(env_file).is_file():
        dotenv = dotenv_values(env_file)
    values: dict[str, Any] = {}
    for key in KEYS:
        raw = _raw_value(key, env, dotenv)
        try:
            values[_field_name(key.env)] = key.parse(raw)
        except ValueError:
            allowed = key.parse.allowed  # type: ignore[attr-defined]
            raise ConfigError(f"{key.env}={raw!r} is not valid: expected {allowed}") from None
    if not values["smtp_hostname"]:
        values["smtp_hostname"] = socket.gethostname()
    if not values["lists_source"]:
        values["lists_source"] = "supabase" if values["supabase_url"] else "postgres"
    if values["lists_source"] == "supabase" and not (
        values["supabase_url"] and values["supabase_key"]
    ):
        raise ConfigError(
            "LISTS_SOURCE=supabase needs SUPABASE_URL and SUPABASE_KEY "
            "(or SUPABASE_SERVICE_ROLE_KEY)"
        )
    if bool(values["tls_cert"]) != bool(values["tls_key"]):
        raise ConfigError("TLS_CERT and TLS_KEY must be set together")
    values["log_level"] = values["log_level"].upper()
    return Settings(**values)


def env_example() -> str:
    """The text of .env.example: every key with its default and description."""
    lines = [
        "# Settings of the receive-only SMTP service. Copy to .env and edit.",
        "# The environment wins over this file. Every value below is the default.",
        "",
    ]
    for key in KEYS:
        alias = f" (alias: {', '.join(key.aliases)})" if key.aliases else ""
        lines += [f"# {key.doc}{alias}", f"{key.env}={key.default}", ""]
    return "\n".join(lines)


def settings_table() -> str:
    """The README's settings table (Markdown)."""
    rows = ["| setting | default | what it does |", "|---|---|---|"]
    for key in KEYS:
        alias = f" (alias `{'`, `'.join(key.aliases)}`)" if key.aliases else ""
        default = f"`{key.default}`" if key.default else "*(empty)*"
        rows.append(f"| `{key.env}`{alias} | {default} | {key.doc} |")
    return "\n".join(rows)


if __name__ == "__main__":  # python -m app.config: rewrite .env.example and the README table
    root = Path(__file__).resolve().parent.parent
    (root / ".env.example").write_text(env_example())
    readme = (root / "README.md").read_text()
    start = readme.index("| setting | default | what it does |")
    end = readme.index("\n\n", start)
    (root / "README.md").write_text(readme[:start] + settings_table() + readme[end:])
