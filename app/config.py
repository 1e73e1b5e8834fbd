"""Settings: one frozen object read once from the environment and `.env`.

Each setting is declared once, as a field of `Settings` with its default,
parser and one-line description; `.env.example` and the README's table are
generated from the same declarations (`python -m app.config`). A bad value
raises ConfigError naming the variable, the value and what is allowed.
The environment wins over `.env` (python-dotenv never overrides it), and a
setting's own name wins over its aliases (the Cybertemp server's names).
"""

from __future__ import annotations

import dataclasses
import ipaddress
import os
import re
import socket
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from dotenv import dotenv_values


class ConfigError(ValueError):
    """A setting has a value we cannot use; str() is the one line to print."""


Parser = Callable[[str], Any]


def _allowed(text: str) -> Callable[[Parser], Parser]:
    """Attach the 'expected ...' text an error shows for this parser."""

    def mark(parse: Parser) -> Parser:
        parse.allowed = text  # type: ignore[attr-defined]
        return parse

    return mark


def _number(kind: type[int] | type[float], low: float, high: float) -> Parser:
    noun = "an integer" if kind is int else "a number"

    @_allowed(f"{noun} from {low:g} to {high:g}")
    def parse(text: str) -> int | float:
        value = kind(text.strip())
        if not low <= value <= high:
            raise ValueError
        return value

    return parse


def _int(low: int, high: int) -> Parser:
    return _number(int, low, high)


def _float(low: float, high: float) -> Parser:
    return _number(float, low, high)


def _choice(*choices: str) -> Parser:
    @_allowed("one of " + ", ".join(choices))
    def parse(text: str) -> str:
        value = text.strip().lower()
        if value not in choices:
            raise ValueError
        return value

    return parse


@_allowed("true or false (also 1/0, yes/no, on/off)")
def _bool(text: str) -> bool:
    value = text.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise ValueError


@_allowed("any text")
def _text(text: str) -> str:
    return text.strip()


@_allowed("any text, or empty for none")
def _optional(text: str) -> str | None:
    return text.strip() or None


@_allowed("a URL postgresql://USER:PASSWORD@HOST:PORT/DATABASE, or empty")
def _database_url(text: str) -> str | None:
    url = text.strip()
    if url and urlsplit(url).scheme not in ("postgresql", "postgres"):  # urlsplit may raise too
        raise ValueError
    return url or None


@_allowed("a port from 1 to 65535, or empty for off")
def _optional_port(text: str) -> int | None:
    return _int(1, 65535)(text) if text.strip() else None


@_allowed("an IP address, ip:port or [ipv6]:port, or empty for the system resolver")
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


@_allowed("comma-separated addresses or CIDR networks (192.0.2.1, 192.0.2.0/24, 2001:db8::/32)")
def _networks(text: str) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    return tuple(ipaddress.ip_network(part.strip()) for part in text.split(",") if part.strip())


@_allowed("comma-separated zone[=127.0.0.[2..11]][*weight] entries (postscreen's syntax)")
def _zones(text: str) -> tuple[Any, ...]:
    if not text.strip():
        return ()  # without importing the resolver: the command line starts fast
    from .reputation import parse_zones

    return parse_zones(text)


@_allowed("comma-separated zone[=127.0.[0..255].[1..3]][*weight] entries (weights subtract)")
def _allow_zones(text: str) -> tuple[Any, ...]:
    if not text.strip():
        return ()
    from .reputation import parse_zones

    return parse_zones(text, allow=True)


RATE = re.compile(r"[1-9]\d* ?(?:/|per) ?(?:\d+ ?)?(?:second|minute|hour|day|month|year)s?")


@_allowed("a rate such as 120/minute, 10/second, 5000/hour; 0 or off for no limit")
def _rate(text: str) -> str | None:
    """`limits`' notation, checked here without importing it (app/ratelimit.py does)."""
    value = " ".join(text.strip().lower().split())
    if value in ("0", "off", "none", ""):
        return None
    if not RATE.fullmatch(value):
        raise ValueError
    return value


@_allowed("memory:// (this process) or redis://host:port/db (shared by every host)")
def _rate_storage(text: str) -> str:
    text = text.strip()
    if text != "memory://" and urlsplit(text).scheme not in ("redis", "rediss", "unix"):
        raise ValueError
    return text


@_allowed("rspamd://host:port, spamd://host:port, or empty for none")
def _scanner(text: str) -> str | None:
    text = text.strip()
    if not text:
        return None
    parts = urlsplit(text)
    if parts.scheme not in ("rspamd", "spamd") or not parts.hostname or not parts.port:
        raise ValueError
    return text


def _mode(what: str) -> Parser:
    return _allowed(f"off, record or enforce ({what})")(_choice("off", "record", "enforce"))


@_allowed("one of debug, info, warning, error")
def _log_level(text: str) -> str:
    return _choice("debug", "info", "warning", "error")(text).upper()  # type: ignore[no-any-return]


# RUST_LOG (Cybertemp's logging setting) as LOG_LEVEL, where it is a plain level.
RUST_LEVELS = {
    "trace": "debug",
    "debug": "debug",
    "info": "info",
    "warn": "warning",
    "error": "error",
}


def setting(default: str, parse: Parser, doc: str, *aliases: str, in_example: bool = True) -> Any:
    """One setting: its default (as the environment would spell it), parser,
    one-line description and alias names. `in_example=False` writes it to
    .env.example commented out (the systemd unit sets it)."""
    return dataclasses.field(
        default=parse(default),
        metadata={
            "default": default,
            "parse": parse,
            "doc": doc,
            "aliases": aliases,
            "in_example": in_example,
        },
    )


@dataclasses.dataclass(frozen=True)
class Settings:
    # fmt: off
    database_url: str | None = setting(
        "", _database_url,
        "PostgreSQL URL; empty starts the embedded PostgreSQL under DATA_DIR")
    database_direct_url: str | None = setting(
        "", _database_url,
        "session connection to the primary for LISTEN and advisory locks, when DATABASE_URL "
        "is a transaction-mode pooler (README: Running on several hosts); empty: DATABASE_URL")
    database_pooled: str = setting(
        "auto", _choice("auto", "true", "false"),
        "DATABASE_URL and API_DATABASE_URL go through a transaction-mode pooler (no statement "
        "cache); auto: true for port 6543 (Supabase's transaction pooler)")
    host_name: str = setting(
        "", _text, "this host's name in logs, metrics and check; empty: the machine's host name")
    smtp_receive_port: int = setting("25", _int(0, 65535), "TCP port the SMTP listener binds")
    smtp_bind: str = setting("0.0.0.0", _text, "address the SMTP listener binds")
    smtp_hostname: str = setting(
        "", _text, "name in the 220 greeting and EHLO reply; empty uses the machine's host name")
    ack_mode: str = setting(
        "durable", _choice("durable", "instant"),
        "durable: 250 only after the row is committed; instant: 250 once queued "
        "(a crash can lose the queued milliseconds)")
    workers: int = setting("1", _int(1, 64), "processes sharing the port (SO_REUSEPORT)")
    max_message_size: int = setting(
        str(25 * 1024 * 1024), _int(1024, 1 << 31), "largest message in bytes (advertised as SIZE)")
    max_recipients: int = setting("100", _int(1, 10000), "accepted RCPTs per message")
    max_connections: int = setting(
        "5000", _int(1, 1_000_000), "concurrent connections per worker", "SMTP_MAX_SESSIONS")
    max_connections_per_ip: int = setting(
        "50", _int(1, 1_000_000),
        "concurrent connections from one client address (IPv6: one /64)")
    max_messages_per_connection: int = setting(
        "0", _int(0, 1_000_000), "messages one connection may send before 421; 0: no limit")
    max_errors: int = setting(
        "20", _int(1, 10_000),
        "failed commands in a row (no message delivered in between) before 421")
    max_receiving_bytes: int = setting(
        str(256 * 1024 * 1024), _int(1024 * 1024, 1 << 40),
        "bytes of messages being received at once per worker; past it MAIL and DATA get 452")
    smtp_timeout: float = setting(
        "300", _float(1, 3600), "seconds a client may stay idle between commands",
        "SMTP_IDLE_TIMEOUT_SECS")
    data_timeout: float = setting(
        "600", _float(1, 86400), "seconds one DATA transfer may take in total")
    session_timeout: float = setting(
        "1800", _float(1, 86400), "seconds one connection may last in total",
        "SMTP_SESSION_TIMEOUT_SECS")
    queue_size: int = setting(
        "10000", _int(1, 10_000_000), "messages held in memory before 451", "SMTP_MAX_QUEUE")
    batch_max: int = setting("200", _int(1, 10000), "messages written in one transaction at most")
    batch_delay_ms: float = setting(
        "5", _float(0, 1000),
        "longest wait to fill a batch under load (light load flushes at once)")
    durable_timeout: float = setting(
        "30", _float(0.1, 3600),
        "durable mode: seconds to wait for the commit before answering 451")
    drain_timeout: float = setting(
        "20", _float(0, 3600),
        "shutdown: seconds to finish sessions and write the queue before spooling")
    lists_source: str = setting(
        "", _choice("", "supabase", "postgres"),
        "where lists come from; empty: supabase when SUPABASE_URL is set, else postgres")
    use_domain_whitelist: bool = setting(
        "true", _bool, "accept only recipients in the domains table", "USE_SUPABASE_DOMAINS")
    use_bans: bool = setting(
        "true", _bool, "refuse senders in the bans table", "USE_SUPABASE_BANS")
    supabase_url: str | None = setting("", _optional, "Supabase project URL")
    supabase_key: str | None = setting(
        "", _optional, "Supabase API key", "SUPABASE_SERVICE_ROLE_KEY")
    domains_refresh: float = setting(
        "120", _float(0.05, 86400), "seconds between domain list refreshes")
    bans_refresh: float = setting("60", _float(0.05, 86400), "seconds between ban list refreshes")
    private_refresh: float = setting(
        "30", _float(0.05, 86400), "seconds between private_email refreshes")
    heartbeat_url: str | None = setting(
        "", _optional, "URL pinged with GET while the service is healthy")
    heartbeat_interval: float = setting(
        "60", _float(0.05, 86400), "seconds between heartbeat pings")
    spool_dir: str = setting(
        "./spool", _text, "directory for unwritten and dead-letter messages (must be writable)",
        in_example=False)
    data_dir: str = setting(
        "./data", _text, "directory of the embedded PostgreSQL and the API's generated secret",
        in_example=False)
    retention_hours: float = setting(
        "24", _float(0, 1_000_000),
        "hours mail is kept; 0 keeps it forever (private_email mail and mail stored before "
        "an upgrade are kept)")
    retention_interval: float = setting(
        "300", _float(0.05, 86400), "seconds between expiry runs")
    dedup_window: float = setting(
        "3600", _float(0, 7 * 86400),
        "seconds within which a resent copy of a message (same sender, recipient, Message-ID "
        "and bytes) whose 250 its client never confirmed is not stored again; 0: off")
    tls_cert: str | None = setting(
        "", _optional, "PEM certificate file; with TLS_KEY enables STARTTLS")
    tls_key: str | None = setting("", _optional, "PEM private key file for TLS_CERT")
    proxy_protocol: bool = setting(
        "off", _bool, "expect a PROXY v1/v2 header on every connection")
    proxy_trusted: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = setting(
        "127.0.0.1/32,::1/128", _networks,
        "with PROXY_PROTOCOL: peers whose PROXY header is believed; others are disconnected")
    metrics_port: int | None = setting(
        "", _optional_port, "port for /metrics, /healthz, /readyz; empty: off")
    metrics_bind: str = setting(
        "127.0.0.1", _text, "address the metrics and health port binds")
    auth_checks: str = setting(
        "record", _choice("off", "record", "enforce"),
        "SPF/DKIM/DMARC: off, record results, or enforce DMARC p=reject")
    auth_timeout: float = setting(
        "3", _float(0.1, 60),
        "seconds the checks of one message may take (DNS included); then temperror")
    parse_timeout: float = setting(
        "10", _float(0.1, 600),
        "seconds parsing one message may take; then it is stored unparsed (raw kept)")
    dns_resolver: str | None = setting(
        "", _resolver_address,
        "IP address (ip:port, [ipv6]:port) of the DNS resolver; empty: the system's")
    dnsbl_checks: str = setting(
        "record", _mode("DNSBL_ZONES"),
        "DNS block-lists at connect: off, record (listed clients' mail is junk), or enforce "
        "(554 at RCPT)")
    dnsbl_zones: tuple[Any, ...] = setting(
        "", _zones, "block-list zones, e.g. zen.spamhaus.org*2,bl.spamcop.net; empty: none")
    dnswl_zones: tuple[Any, ...] = setting(
        "", _allow_zones, "allow-list zones whose weight is subtracted, e.g. list.dnswl.org*2")
    dnsbl_threshold: float = setting(
        "1", _float(0.01, 1000), "score (sum of the listing zones' weights) that counts as listed")
    dnsbl_timeout: float = setting(
        "1", _float(0.05, 30),
        "seconds after the connect by which the lookups must answer; later zones count as "
        "not listed")
    rate_limits: str = setting(
        "enforce", _mode("the RATE_* limits"),
        "message rate limits: off, record (mail over a limit is junk), or enforce (refused)")
    rate_limit_storage: str = setting(
        "memory://", _rate_storage,
        "where the rate counters live: memory:// (per process) or redis://host:port/db (shared)")
    rate_global: str | None = setting(
        "100000/minute", _rate, "messages (MAIL commands) from everyone")
    rate_per_network: str | None = setting(
        "3000/minute", _rate, "messages from one client network (IPv4 /24, IPv6 /64)")
    rate_per_sender_domain: str | None = setting(
        "6000/minute", _rate, "messages from one envelope sender domain")
    rate_per_recipient_domain: str | None = setting(
        "60000/minute", _rate, "recipients at one of our domains")
    rate_per_mailbox: str | None = setting(
        "120/minute", _rate, "messages to one mailbox; past it 452 4.2.2 (flood protection)")
    rate_errors_per_ip: str | None = setting(
        "100/minute", _rate, "failed commands from one client address before it is blocked")
    rate_block_seconds: float = setting(
        "600", _float(1, 86400), "seconds a client over RATE_ERRORS_PER_IP is refused (421)")
    rules_checks: str = setting(
        "enforce", _mode("the rules table"),
        "the rules table: off, record (a reject rule marks junk), or enforce (its reply)")
    rules_refresh: float = setting("60", _float(0.05, 86400), "seconds between rules refreshes")
    content_checks: str = setting(
        "record", _mode("attachments, links, forms"),
        "dangerous attachments, deceptive links, forms: off, record (junk), or enforce "
        "(554 for dangerous attachments)")
    spam_scanner: str | None = setting(
        "", _scanner, "rspamd://127.0.0.1:11333 or spamd://127.0.0.1:783; empty: none")
    spam_checks: str = setting(
        "record", _mode("SPAM_SCANNER"),
        "the scanner's score: off, record (junk at SPAM_JUNK_SCORE), or enforce (also 554 at "
        "SPAM_REJECT_SCORE)")
    spam_junk_score: float = setting(
        "6", _float(-1000, 1000), "scanner score from which a message is junk")
    spam_reject_score: float = setting(
        "15", _float(-1000, 1000), "with SPAM_CHECKS=enforce: score from which it is refused")
    spam_timeout: float = setting(
        "5", _float(0.1, 120), "seconds the scanner may take; then the verdict is unchecked")
    pause_refresh: float = setting(
        "10", _float(0.05, 86400), "seconds between reads of the pause switch (NOTIFY is at once)")
    api_database_url: str | None = setting(
        "", _database_url,
        "PostgreSQL URL of the API, for a role without DDL (README: Install on a server); "
        "empty: DATABASE_URL")
    api_port: int = setting("8025", _int(0, 65535), "TCP port of the HTTP API and inbox page")
    api_bind: str = setting("127.0.0.1", _text, "address the HTTP API binds")
    api_access: str = setting(
        "open", _choice("open", "accounts"),
        "open: anyone may read an unclaimed address; accounts: every address needs an account")
    api_secret: str | None = setting(
        "", _optional, "token signing key; empty: generated once and kept under DATA_DIR")
    api_rate_limit: float = setting(
        "8", _float(0.1, 100_000), "API requests per second per client address")
    api_public_url: str | None = setting(
        "", _optional, "base URL written into downloadUrl fields; empty: from the request")
    api_trusted_proxies: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = setting(
        "", _networks,
        "reverse proxies (addresses or CIDRs) whose X-Forwarded-For/-Proto the API believes; "
        "empty: none")
    webhook_allow_private: bool = setting(
        "false", _bool,
        "let webhooks reach private, loopback, link-local and other non-global addresses")
    webhook_max_age: float = setting(
        "86400", _float(1, 30 * 86400), "seconds a webhook event is retried before it is dropped")
    webhook_retry_first: float = setting(
        "5", _float(0.01, 86400), "seconds before the first retry of a webhook; doubled each time")
    webhook_retry_max: float = setting(
        "3600", _float(0.01, 86400), "longest pause between two attempts of a webhook")
    webhook_connect_timeout: float = setting(
        "5", _float(0.1, 120), "seconds to connect to a webhook receiver")
    webhook_timeout: float = setting(
        "10", _float(0.1, 300), "seconds one webhook attempt may take in total")
    webhook_response_bytes: int = setting(
        "65536", _int(0, 1 << 30), "bytes of a receiver's reply read at most (the rest is cut)")
    webhook_concurrency: int = setting(
        "4", _int(1, 256), "webhook endpoints one process delivers to at once")
    webhook_poll: float = setting(
        "1", _float(0.05, 3600),
        "seconds between looks at the webhook endpoints and the outbox (new mail: at once)")
    webhook_max_per_address: int = setting(
        "5", _int(0, 1000), "webhooks an account may add for its address through the API")
    log_level: str = setting("INFO", _log_level, "logging level", "RUST_LOG")
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
# Query parameters of a URL that carry credentials (libpq's, and common tokens).
SECRET_PARAMETERS = frozenset({"password", "token", "key", "secret", "apikey", "api_key"})


def mask_url(url: str) -> str:
    """`url` with its user info, credential parameters and path hidden.

    A heartbeat URL's path is often its token (https://hc-ping.com/<uuid>).
    """
    parts = urlsplit(url)
    if not parts.scheme:
        return "***"
    host = parts.hostname or ""
    if parts.port:
        host += f":{parts.port}"
    netloc = f"***@{host}" if "@" in parts.netloc else host
    query = "&".join(
        f"{name}=***" if name.lower() in SECRET_PARAMETERS else urlencode({name: value})
        for name, value in parse_qsl(parts.query, keep_blank_values=True)
    )
    is_database = parts.scheme.startswith("postgres")
    path = parts.path if is_database or parts.path in ("", "/") else "/***"
    return urlunsplit((parts.scheme, netloc, path, query, ""))


def _safe_mask(url: str) -> str:
    try:
        return mask_url(url)
    except ValueError:  # not even a URL: it may still hold a password
        return "***"


@dataclasses.dataclass(frozen=True)
class Key:
    """One setting as the environment sees it (derived from a Settings field)."""

    field: str
    env: str
    default: str
    parse: Parser
    doc: str
    aliases: tuple[str, ...]
    in_example: bool


KEYS: tuple[Key, ...] = tuple(
    Key(field=f.name, env=f.name.upper(), **f.metadata) for f in dataclasses.fields(Settings)
)


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
            shown = _safe_mask(raw) if key.env in URLS_WITH_SECRETS else raw
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


def env_example() -> str:
    """The text of .env.example: every key with its default and description."""
    lines = [
        "# Settings of the receive-only SMTP service. Copy to .env and edit.",
        "# The environment wins over this file. Every value below is the default.",
        "",
    ]
    for key in KEYS:
        alias = f" (alias: {', '.join(key.aliases)})" if key.aliases else ""
        lines.append(f"# {key.doc}{alias}")
        if key.in_example:
            lines.append(f"{key.env}={key.default}")
        else:
            lines.append("# set by deploy/systemd; here it would override the unit's path")
            lines.append(f"# {key.env}={key.default}")
        lines.append("")
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
