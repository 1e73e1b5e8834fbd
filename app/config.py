"""Settings: one frozen object read once from the environment and `.env`.

Each setting is declared once, as a field of `Settings` with its default,
parser and one-line description; `.env.example` and the README's table are
generated from the same declarations (`python -m app.config`, by
config_docs.py); the value parsers are in config_parsers.py, the field
declaration in config_keys.py. A bad value raises ConfigError naming the
variable, the value and what is allowed.
The environment wins over `.env` (python-dotenv never overrides it), and a
setting's own name wins over its aliases (the Cybertemp server's names).
"""

from __future__ import annotations

import dataclasses
import ipaddress
import os
import socket
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from dotenv import dotenv_values

from . import config_docs
from .config_keys import Key, keys_of, setting
from .config_parsers import (
    allow_zones,
    boolean,
    choice,
    integer,
    logging_level,
    mode,
    networks,
    number,
    optional_port,
    optional_text,
    plain_text,
    postgres_url,
    rate,
    rate_storage,
    resolver_address,
    scanner_url,
    zones,
)
from .masking import mask_url, mask_url_or_all


class ConfigError(ValueError):
    """A setting has a value we cannot use; str() is the one line to print."""


# RUST_LOG (Cybertemp's logging setting) as LOG_LEVEL, where it is a plain level.
RUST_LEVELS = {
    "trace": "debug",
    "debug": "debug",
    "info": "info",
    "warn": "warning",
    "error": "error",
}


@dataclasses.dataclass(frozen=True)
class Settings:
    # fmt: off
    database_url: str | None = setting(
        "", postgres_url,
        "PostgreSQL URL; empty starts the embedded PostgreSQL under DATA_DIR")
    database_direct_url: str | None = setting(
        "", postgres_url,
        "session connection to the primary for LISTEN and advisory locks, when DATABASE_URL "
        "is a transaction-mode pooler (README: Running on several hosts); empty: DATABASE_URL")
    database_pooled: str = setting(
        "auto", choice("auto", "true", "false"),
        "DATABASE_URL and API_DATABASE_URL go through a transaction-mode pooler (no statement "
        "cache); auto: true for port 6543 (Supabase's transaction pooler)")
    host_name: str = setting(
        "", plain_text,
        "this host's name in logs, metrics and check; empty: the machine's host name")
    smtp_receive_port: int = setting("25", integer(0, 65535), "TCP port the SMTP listener binds")
    smtp_bind: str = setting("0.0.0.0", plain_text, "address the SMTP listener binds")
    smtp_hostname: str = setting(
        "", plain_text,
        "name in the 220 greeting and EHLO reply; empty uses the machine's host name")
    ack_mode: str = setting(
        "durable", choice("durable", "instant"),
        "durable: 250 only after the row is committed; instant: 250 once queued "
        "(a crash can lose the queued milliseconds)")
    workers: int = setting("1", integer(1, 64), "processes sharing the port (SO_REUSEPORT)")
    max_message_size: int = setting(
        str(25 * 1024 * 1024), integer(1024, 1 << 31),
        "largest message in bytes (advertised as SIZE)")
    max_recipients: int = setting("100", integer(1, 10000), "accepted RCPTs per message")
    max_connections: int = setting(
        "5000", integer(1, 1_000_000), "concurrent connections per worker", "SMTP_MAX_SESSIONS")
    max_connections_per_ip: int = setting(
        "50", integer(1, 1_000_000),
        "concurrent connections from one client address (IPv6: one /64)")
    max_messages_per_connection: int = setting(
        "0", integer(0, 1_000_000), "messages one connection may send before 421; 0: no limit")
    max_errors: int = setting(
        "20", integer(1, 10_000),
        "failed commands in a row (no message delivered in between) before 421")
    max_receiving_bytes: int = setting(
        str(256 * 1024 * 1024), integer(1024 * 1024, 1 << 40),
        "bytes of messages being received at once per worker; past it MAIL and DATA get 452")
    smtp_timeout: float = setting(
        "300", number(1, 3600), "seconds a client may stay idle between commands",
        "SMTP_IDLE_TIMEOUT_SECS")
    data_timeout: float = setting(
        "600", number(1, 86400), "seconds one DATA transfer may take in total")
    session_timeout: float = setting(
        "1800", number(1, 86400), "seconds one connection may last in total",
        "SMTP_SESSION_TIMEOUT_SECS")
    queue_size: int = setting(
        "10000", integer(1, 10_000_000), "messages held in memory before 451", "SMTP_MAX_QUEUE")
    batch_max: int = setting(
        "200", integer(1, 10000), "messages written in one transaction at most")
    batch_delay_ms: float = setting(
        "5", number(0, 1000),
        "longest wait to fill a batch under load (light load flushes at once)")
    durable_timeout: float = setting(
        "30", number(0.1, 3600),
        "durable mode: seconds to wait for the commit before answering 451")
    drain_timeout: float = setting(
        "20", number(0, 3600),
        "shutdown: seconds to finish sessions and write the queue before spooling")
    lists_source: str = setting(
        "", choice("", "supabase", "postgres"),
        "where lists come from; empty: supabase when SUPABASE_URL is set, else postgres")
    use_domain_whitelist: bool = setting(
        "true", boolean, "accept only recipients in the domains table", "USE_SUPABASE_DOMAINS")
    use_bans: bool = setting(
        "true", boolean, "refuse senders in the bans table", "USE_SUPABASE_BANS")
    supabase_url: str | None = setting("", optional_text, "Supabase project URL")
    supabase_key: str | None = setting(
        "", optional_text, "Supabase API key", "SUPABASE_SERVICE_ROLE_KEY")
    domains_refresh: float = setting(
        "120", number(0.05, 86400), "seconds between domain list refreshes")
    bans_refresh: float = setting("60", number(0.05, 86400), "seconds between ban list refreshes")
    private_refresh: float = setting(
        "30", number(0.05, 86400), "seconds between private_email refreshes")
    heartbeat_url: str | None = setting(
        "", optional_text, "URL pinged with GET while the service is healthy")
    heartbeat_interval: float = setting(
        "60", number(0.05, 86400), "seconds between heartbeat pings")
    spool_dir: str = setting(
        "./spool", plain_text,
        "directory for unwritten and dead-letter messages (must be writable)", in_example=False)
    data_dir: str = setting(
        "./data", plain_text, "directory of the embedded PostgreSQL and the API's generated secret",
        in_example=False)
    retention_hours: float = setting(
        "24", number(0, 1_000_000),
        "hours mail is kept; 0 keeps it forever (private_email mail and mail stored before "
        "an upgrade are kept)")
    retention_interval: float = setting(
        "300", number(0.05, 86400), "seconds between expiry runs")
    dedup_window: float = setting(
        "3600", number(0, 7 * 86400),
        "seconds within which a resent copy of a message (same sender, recipient, Message-ID "
        "and bytes) whose 250 its client never confirmed is not stored again; 0: off")
    tls_cert: str | None = setting(
        "", optional_text, "PEM certificate file; with TLS_KEY enables STARTTLS")
    tls_key: str | None = setting("", optional_text, "PEM private key file for TLS_CERT")
    proxy_protocol: bool = setting(
        "off", boolean, "expect a PROXY v1/v2 header on every connection")
    proxy_trusted: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = setting(
        "127.0.0.1/32,::1/128", networks,
        "with PROXY_PROTOCOL: peers whose PROXY header is believed; others are disconnected")
    metrics_port: int | None = setting(
        "", optional_port, "port for /metrics, /healthz, /readyz; empty: off")
    metrics_bind: str = setting(
        "127.0.0.1", plain_text, "address the metrics and health port binds")
    auth_checks: str = setting(
        "record", choice("off", "record", "enforce"),
        "SPF/DKIM/DMARC: off, record results, or enforce DMARC p=reject")
    auth_timeout: float = setting(
        "3", number(0.1, 60),
        "seconds the checks of one message may take (DNS included); then temperror")
    parse_timeout: float = setting(
        "10", number(0.1, 600),
        "seconds parsing one message may take; then it is stored unparsed (raw kept)")
    dns_resolver: str | None = setting(
        "", resolver_address,
        "IP address (ip:port, [ipv6]:port) of the DNS resolver; empty: the system's")
    dnsbl_checks: str = setting(
        "record", mode("DNSBL_ZONES"),
        "DNS block-lists at connect: off, record (listed clients' mail is junk), or enforce "
        "(554 at RCPT)")
    dnsbl_zones: tuple[Any, ...] = setting(
        "", zones, "block-list zones, e.g. zen.spamhaus.org*2,bl.spamcop.net; empty: none")
    dnswl_zones: tuple[Any, ...] = setting(
        "", allow_zones, "allow-list zones whose weight is subtracted, e.g. list.dnswl.org*2")
    dnsbl_threshold: float = setting(
        "1", number(0.01, 1000), "score (sum of the listing zones' weights) that counts as listed")
    dnsbl_timeout: float = setting(
        "1", number(0.05, 30),
        "seconds after the connect by which the lookups must answer; later zones count as "
        "not listed")
    rate_limits: str = setting(
        "enforce", mode("the RATE_* limits"),
        "message rate limits: off, record (mail over a limit is junk), or enforce (refused)")
    rate_limit_storage: str = setting(
        "memory://", rate_storage,
        "where the rate counters live: memory:// (per process) or redis://host:port/db (shared)")
    rate_global: str | None = setting(
        "100000/minute", rate, "messages (MAIL commands) from everyone")
    rate_per_network: str | None = setting(
        "3000/minute", rate, "messages from one client network (IPv4 /24, IPv6 /64)")
    rate_per_sender_domain: str | None = setting(
        "6000/minute", rate, "messages from one envelope sender domain")
    rate_per_recipient_domain: str | None = setting(
        "60000/minute", rate, "recipients at one of our domains")
    rate_per_mailbox: str | None = setting(
        "120/minute", rate, "messages to one mailbox; past it 452 4.2.2 (flood protection)")
    rate_errors_per_ip: str | None = setting(
        "100/minute", rate, "failed commands from one client address before it is blocked")
    rate_block_seconds: float = setting(
        "600", number(1, 86400), "seconds a client over RATE_ERRORS_PER_IP is refused (421)")
    rules_checks: str = setting(
        "enforce", mode("the rules table"),
        "the rules table: off, record (a reject rule marks junk), or enforce (its reply)")
    rules_refresh: float = setting("60", number(0.05, 86400), "seconds between rules refreshes")
    content_checks: str = setting(
        "record", mode("attachments, links, forms"),
        "dangerous attachments, deceptive links, forms: off, record (junk), or enforce "
        "(554 for dangerous attachments)")
    spam_scanner: str | None = setting(
        "", scanner_url, "rspamd://127.0.0.1:11333 or spamd://127.0.0.1:783; empty: none")
    spam_checks: str = setting(
        "record", mode("SPAM_SCANNER"),
        "the scanner's score: off, record (junk at SPAM_JUNK_SCORE), or enforce (also 554 at "
        "SPAM_REJECT_SCORE)")
    spam_junk_score: float = setting(
        "6", number(-1000, 1000), "scanner score from which a message is junk")
    spam_reject_score: float = setting(
        "15", number(-1000, 1000), "with SPAM_CHECKS=enforce: score from which it is refused")
    spam_timeout: float = setting(
        "5", number(0.1, 120), "seconds the scanner may take; then the verdict is unchecked")
    pause_refresh: float = setting(
        "10", number(0.05, 86400), "seconds between reads of the pause switch (NOTIFY is at once)")
    api_database_url: str | None = setting(
        "", postgres_url,
        "PostgreSQL URL of the API, for a role without DDL (README: Install on a server); "
        "empty: DATABASE_URL")
    api_port: int = setting("8025", integer(0, 65535), "TCP port of the HTTP API and inbox page")
    api_bind: str = setting("127.0.0.1", plain_text, "address the HTTP API binds")
    api_access: str = setting(
        "open", choice("open", "accounts"),
        "open: anyone may read an unclaimed address; accounts: every address needs an account")
    api_secret: str | None = setting(
        "", optional_text, "token signing key; empty: generated once and kept under DATA_DIR")
    api_rate_limit: float = setting(
        "8", number(0.1, 100_000), "API requests per second per client address")
    api_public_url: str | None = setting(
        "", optional_text, "base URL written into downloadUrl fields; empty: from the request")
    api_trusted_proxies: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = setting(
        "", networks,
        "reverse proxies (addresses or CIDRs) whose X-Forwarded-For/-Proto the API believes; "
        "empty: none")
    webhook_allow_private: bool = setting(
        "false", boolean,
        "let webhooks reach private, loopback, link-local and other non-global addresses")
    webhook_max_age: float = setting(
        "86400", number(1, 30 * 86400), "seconds a webhook event is retried before it is dropped")
    webhook_retry_first: float = setting(
        "5", number(0.01, 86400), "seconds before the first retry of a webhook; doubled each time")
    webhook_retry_max: float = setting(
        "3600", number(0.01, 86400), "longest pause between two attempts of a webhook")
    webhook_connect_timeout: float = setting(
        "5", number(0.1, 120), "seconds to connect to a webhook receiver")
    webhook_timeout: float = setting(
        "10", number(0.1, 300), "seconds one webhook attempt may take in total")
    webhook_response_bytes: int = setting(
        "65536", integer(0, 1 << 30), "bytes of a receiver's reply read at most (the rest is cut)")
    webhook_concurrency: int = setting(
        "4", integer(1, 256), "webhook endpoints one process delivers to at once")
    webhook_poll: float = setting(
        "1", number(0.05, 3600),
        "seconds between looks at the webhook endpoints and the outbox (new mail: at once)")
    webhook_max_per_address: int = setting(
        "5", integer(0, 1000), "webhooks an account may add for its address through the API")
    log_level: str = setting("INFO", logging_level, "logging level", "RUST_LOG")
    # fmt: on

    @property
    def durable(self) -> bool:
        return self.ack_mode == "durable"

    def masked(self) -> dict[str, str]:
        """Effective settings for display, secrets hidden."""
        shown = {}
        for key in KEYS:
            value = getattr(self, key.field)
            if isinstance(value, tuple):
                text = ",".join(str(v) for v in value)
            else:
                text = "" if value is None else str(value)
            if text and key.env in SECRETS:
                text = text[:4] + "…"
            elif text and key.env in URLS_WITH_SECRETS:
                text = mask_url(text)
            shown[key.env] = text
        return shown


SECRETS = frozenset({"SUPABASE_KEY", "API_SECRET"})
URLS_WITH_SECRETS = frozenset(
    {"DATABASE_URL", "DATABASE_DIRECT_URL", "API_DATABASE_URL", "HEARTBEAT_URL"}
)
KEYS: tuple[Key, ...] = keys_of(Settings)


def translate_alias(name: str, value: str) -> str | None:
    """An alias's value in our setting's terms; None if it has no equivalent."""
    if name == "RUST_LOG":
        return RUST_LEVELS.get(value.strip().lower())
    return value


def _raw_value(
    key: Key, env: Mapping[str, str], dotenv: Mapping[str, str | None]
) -> tuple[str, str]:
    """(name it came from, raw value): the environment wins over .env, and the
    setting's own name over its aliases."""
    for source in (env, dotenv):
        for name in (key.env, *key.aliases):
            value = source.get(name)
            if value is None:
                continue
            translated = translate_alias(name, value)
            if translated is not None:
                return name, translated
    return key.env, key.default


def read_sources(
    env: Mapping[str, str] | None, env_file: str | Path | None
) -> tuple[Mapping[str, str], dict[str, str | None]]:
    """The environment (default os.environ) and the values of `env_file`."""
    env = os.environ if env is None else env
    dotenv: dict[str, str | None] = {}
    if has_file(env_file):
        dotenv = dotenv_values(env_file)
    return env, dotenv


def has_file(env_file: str | Path | None) -> bool:
    """`env_file` names something to read (a file, or /dev/null for nothing)."""
    return env_file is not None and Path(env_file).exists() and not Path(env_file).is_dir()


def load(env: Mapping[str, str] | None = None, env_file: str | Path | None = ".env") -> Settings:
    """Build Settings from `env` (default os.environ) over the `.env` file."""
    env, dotenv = read_sources(env, env_file)
    values: dict[str, Any] = {}
    for key in KEYS:
        name, raw = _raw_value(key, env, dotenv)
        try:
            values[key.field] = key.parse(raw)
        except ValueError:
            allowed = key.parse.allowed  # type: ignore[attr-defined]
            shown = mask_url_or_all(raw) if key.env in URLS_WITH_SECRETS else raw
            raise ConfigError(f"{name}={shown!r} is not valid: expected {allowed}") from None
    if not values["smtp_hostname"]:
        values["smtp_hostname"] = socket.gethostname()
    if not values["host_name"]:
        values["host_name"] = socket.gethostname()
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
    if values["max_receiving_bytes"] < values["max_message_size"]:
        raise ConfigError(
            f"MAX_RECEIVING_BYTES={values['max_receiving_bytes']} is below MAX_MESSAGE_SIZE="
            f"{values['max_message_size']}: a message of the largest size could never arrive"
        )
    return Settings(**values)


def describe_sources(env_file: str | Path | None) -> str:
    """Where settings were read from, for start-up and `check`."""
    if env_file is not None and has_file(env_file):
        return f"the environment, then {Path(env_file).resolve()}"
    return f"the environment only ({env_file or 'no .env file'} not found)"


if __name__ == "__main__":  # python -m app.config: rewrite .env.example and the README table
    config_docs.rewrite(Path(__file__).resolve().parent.parent, KEYS)
