"""Secrets kept out of what is shown (check, start-up logs, errors): a URL's
user info, credential parameters and token-like path hidden.
"""

from __future__ import annotations

from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

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


def mask_url_or_all(url: str) -> str:
    """mask_url(`url`), or all of it hidden where it is not even a URL."""
    try:
        return mask_url(url)
    except ValueError:  # not even a URL: it may still hold a password
        return "***"
