"""django-allauth's account mail: Django templates (extends, blocks,
blocktrans) rendered with the project's gettext catalogs, in twelve languages."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

from build import Repo, Values, locales, message
from render import render

Built = tuple[dict[str, object], list[dict[str, object]]]


def po_catalog(text: str) -> dict[str, str]:
    """msgid -> msgstr of a gettext .po file (first plural form; untranslated left out)."""
    catalog: dict[str, str] = {}
    entry: dict[str, str] = {}
    key = ""

    def unquote(s: str) -> str:
        return json.loads(s) if s.startswith('"') else ""

    def flush() -> None:
        if entry.get("msgid") and entry.get("msgstr"):
            catalog[entry["msgid"]] = entry["msgstr"]

    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("msgid "):
            flush()
            entry, key = {}, "msgid"
            entry[key] = unquote(line[6:])
        elif line.startswith(("msgstr ", "msgstr[0] ")):
            key = "msgstr"
            entry[key] = unquote(line.split(" ", 1)[1])
        elif line.startswith(("msgctxt", "msgid_plural", "msgstr[")):
            key = ""
        elif line.startswith('"') and key:
            entry[key] += unquote(line)
    flush()
    return catalog


_DJ_BLOCK = re.compile(r"\{% block (\w+) %\}|\{% endblock(?: \w+)? ?%\}")


def _django_blocks(src: str) -> list[tuple[str, int, int, int, int]]:
    """(name, start, inner start, inner end, end) of every block, nesting-aware."""
    stack, blocks = [], []
    for m in _DJ_BLOCK.finditer(src):
        if m.group(1):
            stack.append((m.group(1), m.start(), m.end()))
        elif stack:
            name, start, inner = stack.pop()
            blocks.append((name, start, inner, m.start(), m.end()))
    return blocks


def django_source(repo: Repo, base: str, name: str) -> str:
    """A Django template with {% extends %} and {% include %} resolved."""
    src = repo.read(base + name)
    src = re.sub(r'\{% include "([^"]+)" %\}', lambda m: django_source(repo, base, m.group(1)), src)
    parent = re.search(r'\{% extends "([^"]+)" %\}', src)
    if not parent:
        return src
    overrides = {b[0]: src[b[2] : b[3]] for b in _django_blocks(src)}
    result = django_source(repo, base, parent.group(1))
    for _ in range(4):  # an override may contain blocks the child overrides too
        for name_, start, _inner, _end, end in sorted(_django_blocks(result), key=lambda b: -b[1]):
            if name_ in overrides:
                result = result[:start] + overrides.pop(name_) + result[end:]
    return re.sub(r"\{% (?:block \w+|endblock(?: \w+)?) ?%\}", "", result)


def django_trans(src: str, catalog: dict[str, str], seen: list[bool] | None = None) -> str:
    """{% blocktrans %} blocks translated, their {{ var }} kept for render();
    `seen` gets one bool per block: was it translated?"""

    def one(m: re.Match[str]) -> str:
        aliases = dict(re.findall(r"(\w+)=([\w.]+)", m.group(1) or ""))
        msgid = re.sub(r"\{\{ ?(\w+) ?\}\}", r"%(\1)s", m.group(2))
        text = catalog.get(msgid, msgid)
        if seen is not None:
            seen.append(msgid in catalog)
        for alias, target in aliases.items():
            text = text.replace(f"%({alias})s", "{{ " + target + " }}")
        return re.sub(r"%\((\w+)\)s", r"{{ \1 }}", text)

    pattern = r"\{% blocktrans(?:late)?( [^%]*)?%\}(.*?)\{% endblocktrans(?:late)? %\}"
    return re.sub(pattern, one, src, flags=re.S)


ALLAUTH_LANGS = locales("en de fr es pt_BR it nl ru zh_Hans ja", pl="pl", sv="sv")
ALLAUTH = [
    ("account", "email_confirmation", "link"),
    ("account", "email_confirmation_signup", "code"),
    ("account", "email_confirm", None),
    ("account", "login_code", "code"),
    ("account", "password_reset_code", "code"),
    ("account", "password_reset_key", "link"),
    ("account", "unknown_account", None),
    ("account", "account_already_exists", None),
    ("account", "email_changed", None),
    ("account", "password_changed", None),
    ("mfa", "recovery_codes_generated", None),
    ("mfa", "totp_activated", None),
    ("socialaccount", "account_connected", None),
]


def _allauth_values(
    v: Values, code: Any, link: Any, domain: Any, site: Any, kind: Any
) -> dict[str, Any]:
    return {
        "current_site": site,
        "site_name": site["name"],
        "site_domain": domain,
        "user_display": v.username(),
        "code": code if kind == "code" else "",
        "activate_url": link,
        "password_reset_url": link or f"https://{domain}/accounts/password/reset/",
        "username": v.username(),
        "email": v.email(),
        "signup_url": f"https://{domain}/accounts/signup/",
        "password_reset_url_plain": f"https://{domain}/accounts/password/reset/",
        "ip": v.ip(),
        "user_agent": "Mozilla/5.0 (X11; Linux x86_64) Firefox/128.0",
        "timestamp": f"{v.date()} {v.time()}",
        "from_email": v.email(),
        "to_email": v.email(),
        "provider": "GitHub",
        "account": v.username(),
    }


def allauth() -> Built:
    repo = Repo("pennersr/django-allauth", "MIT")
    v = Values("allauth")
    out = []
    base = "allauth/templates/"
    for lang, locale in ALLAUTH_LANGS.items():
        po = repo.read(f"allauth/locale/{locale}/LC_MESSAGES/django.po")
        catalog = po_catalog(po) if lang != "en" else {}
        for app, name, kind in ALLAUTH:
            code = v.pick(
                [
                    v.grouped("BCDFGHJKLMNPQRSTVWXZ", (4, 4)),
                    v.grouped("0123456789", (3, 3, 3)),
                    v.digits(6),
                ]
            )
            domain = v.pick(["example.com", "shop.example.org", "app.test"])
            link = None
            if name == "email_confirmation":
                key = f"{v.urlsafe(2)}:{v.urlsafe(6)}:{v.urlsafe(43)}"
                link = f"https://{domain}/accounts/confirm-email/{key}/"
            elif kind == "link":
                uid = v.chars("0123456789abcdefghijklmnopqrstuvwxyz", 2)
                link = f"https://{domain}/accounts/password/reset/key/{uid}-{v.urlsafe(39)}/"
            site = {"name": v.pick(["Example", "Bookclub", "Acme Shop"]), "domain": domain}
            values = _allauth_values(v, code, link, domain, site, kind)
            paths = [f"{base}{app}/email/{name}_{part}.txt" for part in ("subject", "message")]
            seen: list[bool] = []
            subject, text = (
                render(
                    django_trans(django_source(repo, base, p[len(base) :]), catalog, seen), values
                )
                for p in paths
            )
            shown = lang if lang == "en" or sum(seen) > len(seen) / 2 else "en"
            subject = f"[{site['name']}] " + " ".join(subject.split())
            text = re.sub(r"\n{3,}", "\n\n", text.strip()) + "\n"
            codes = [code] if kind == "code" else []
            out.append(
                message(f"allauth/{name}/{lang}", paths, shown, subject, text, "", codes, link)
            )
    return repo.header(), out


BUILDERS: dict[str, Callable[[], Built]] = {"allauth": allauth}
