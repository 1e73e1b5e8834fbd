"""Account mail of products that ship translations (gettext, JSON, YAML
bundles): the same templates in the ten languages and a few more."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

from build import Repo, Values, locales, message
from render import fill, html_to_text, render, text_to_html

Built = tuple[dict[str, object], list[dict[str, object]]]


APPWRITE_LANGS = locales("en de fr es pt-br it nl ru zh-cn ja", ko="ko", tr="tr", pl="pl")
# translation prefix -> (body template, label kind)
APPWRITE = {
    "verification": ("email-inner-base.tpl", "link"),
    "magicSession": ("email-magic-url.tpl", "link"),
    "recovery": ("email-inner-base.tpl", "link"),
    "invitation": ("email-inner-base.tpl", "link"),
    "otpSession": ("email-otp.tpl", "code"),
    "mfaChallenge": ("email-mfa-challenge.tpl", "code"),
    "sessionAlert": ("email-session-alert.tpl", None),
    "certificate": ("email-inner-base.tpl", None),
    "dataExport.success": ("email-inner-base.tpl", None),
}


def _appwrite_link(v: Values, kind: str) -> str:
    host = v.pick(["https://cloud.example.dev", "https://app.acme.io", "http://localhost:3000"])
    user, secret = v.hex(20), v.hex(64)
    expire = f"{v.date()}+{v.time().replace(':', '%3A')}%3A00"
    paths = {
        "verification": f"/verify?userId={user}&secret={secret}&expire={expire}",
        "recovery": f"/reset?userId={user}&secret={secret}&expire={expire}",
        "magicSession": f"/auth/magic-url?userId={user}&secret={secret}&expire={expire}"
        f"&project={v.hex(20)}",
        "invitation": f"/join-team?membershipId={v.hex(20)}&userId={user}&secret={secret}"
        f"&teamId={v.hex(20)}&teamName=Design",
    }
    return host + paths[kind]


def _appwrite_values(v: Values, code: Any, link: Any) -> dict[str, Any]:
    return {
        "project": v.pick(["Acme", "Photo Vault", "Notes"]),
        "user": v.name(),
        "otp": code,
        "phrase": v.pick(["Friendly Gorilla", "Brave Otter", "Calm Panda"]),
        "agentClient": "Chrome 126.0",
        "agentDevice": "desktop",
        "agentOs": "Windows 10",
        "date": v.date(),
        "year": "2025",
        "time": v.time(),
        "device": "Chrome on macOS",
        "ipAddress": v.ip(),
        "country": v.pick(["Germany", "Brazil", "Japan"]),
        "team": "Design",
        "owner": v.name(),
        "domain": "api.acme.io",
        "attempt": v.pick([2, 3, 5]),
        "error": "DNS record not found (CAA)",
        "type": "CSV",
        "size": v.pick([512, 1024]),
        "redirect": link
        or f"https://cloud.example.dev/console/project-{v.hex(8)}/downloads/{v.uuid()}",
        "b": "<strong>",
        "/b": "</strong>",
        "direction": "ltr",
    }


def appwrite() -> Built:
    repo = Repo("appwrite/appwrite", "BSD-3-Clause")
    v = Values("appwrite")
    tdir = "app/config/locale/templates/"
    base = repo.read(tdir + "email-base.tpl")
    out = []
    for lang, locale in APPWRITE_LANGS.items():
        strings = json.loads(repo.read(f"app/config/locale/translations/{locale}.json"))
        english = json.loads(repo.read("app/config/locale/translations/en.json"))
        for kind, (template, label) in APPWRITE.items():
            prefix = f"emails.{kind}."
            keys = {k[len(prefix) :] for k in english if k.startswith(prefix)}
            texts = {k: strings.get(prefix + k) or english[prefix + k] for k in keys}
            translated = sum(prefix + k in strings for k in keys) / len(keys)
            code = v.digits(6)
            link = _appwrite_link(v, kind) if label == "link" else None
            values = _appwrite_values(v, code, link)

            def fill_in(text: str, values: dict[str, object] = values) -> str:
                return re.sub(r"\{\{(/?\w+)\}\}", lambda m: str(values.get(m.group(1), "")), text)

            parts = {k: fill_in(t).replace("\n", "<br>") for k, t in texts.items()}
            body = fill_in(repo.read(tdir + template), {**values, **parts})
            whitespace = "&#xa0;&#x200C;&#x200B;&#x200D;&#x200E;&#x200F;&#xFEFF;" * 20
            preview = re.sub(r"<[^>]+>", "", parts.get("preview", ""))
            html = fill_in(
                base, {**values, "body": body, "preview": preview, "previewWhitespace": whitespace}
            )
            subject = re.sub(r"<[^>]+>", "", parts["subject"])
            codes = [code] if label == "code" else []
            # Where most strings fall back to English, the mail is in English.
            shown = lang if translated > 0.5 else "en"
            out.append(
                message(
                    f"appwrite/{kind}/{lang}",
                    [tdir + template, f"app/config/locale/translations/{locale}.json"],
                    shown,
                    subject,
                    "",
                    html,
                    codes,
                    link,
                )
            )
    return repo.header(), out


def yaml_messages(text: str) -> dict[str, str]:
    """key -> `other` text of a go-i18n YAML file (the only shape hanko uses)."""
    out: dict[str, str] = {}
    key = ""
    for line in text.splitlines():
        top = re.match(r"^(\w+):\s*$", line)
        if top:
            key = top.group(1)
        other = re.match(r"^\s+other:\s*(.*)$", line)
        if other and key:
            value = other.group(1).strip()
            out[key] = json.loads(value) if value.startswith('"') else value.strip("'")
    return out


HANKO_LANGS = locales("en de fr - pt-BR it nl - zh-CN -", pl="pl")
HANKO = [
    "login",
    "recovery",
    "email_verification",
    "email_login_attempted",
    "email_registration_attempted",
    "email_create",
    "password_update",
    "passkey_create",
    "mfa_create",
    "primary_email_update",
]


def hanko() -> Built:
    repo = Repo("teamhanko/hanko", "AGPL-3.0")
    v = Values("hanko")
    tdir = "backend/mail/"
    layout = repo.read(tdir + "templates/layout.html.tmpl")
    out = []
    for lang, locale in HANKO_LANGS.items():
        strings = yaml_messages(repo.read(f"{tdir}locales/passcode.en.yaml"))
        strings |= yaml_messages(repo.read(f"{tdir}locales/security-notifications.en.yaml"))
        strings |= yaml_messages(repo.read(f"{tdir}locales/passcode.{locale}.yaml"))
        strings |= yaml_messages(repo.read(f"{tdir}locales/security-notifications.{locale}.yaml"))
        for name in HANKO:
            code = v.digits(6)
            values = {
                "Code": code,
                "TTL": v.pick([5, 10, 15]),
                "ServiceName": v.pick(["Example", "Hanko Demo", "Acme Cloud"]),
                "OldEmailAddress": v.email(),
                "NewEmailAddress": v.email(),
                "DeletedEmailAddress": v.email(),
            }

            def translate(
                key: str, values: dict[str, object] = values, strings: dict = strings
            ) -> str:
                return render(strings.get(key, key), values)

            values["Subject"] = translate(f"subject_{name}")
            html = render(
                layout + repo.read(f"{tdir}templates/{name}.html.tmpl") + '{{template "layout" .}}',
                values,
                translate,
            )
            text = render(repo.read(f"{tdir}templates/{name}.txt.tmpl"), values, translate)
            codes = [code] if name in HANKO[:3] else []
            subject = str(values["Subject"])
            if name == "login" and v.pick([True, False]):
                subject = translate("email_subject_login")
            out.append(
                message(
                    f"hanko/{name}/{lang}",
                    f"{tdir}templates/{name}",
                    lang,
                    subject,
                    text,
                    html,
                    codes,
                )
            )
    return repo.header(), out


LEMMY_LANGS = locales("en de fr es pt_BR it nl ru zh_Hans ja", uk="uk", cs="cs")
# (subject key, body key, label)
LEMMY = [
    ("verify_email_subject", "verify_email_body", "link"),
    ("verify_email_subject", "verify_email_body_with_application", "link"),
    ("password_reset_subject", "password_reset_body", "link"),
    ("registration_approved_subject", "registration_approved_body", None),
    ("notification_comment_reply_subject", "notification_comment_reply_body", None),
    ("notification_mentioned_by_subject", "notification_mentioned_by_body", None),
    ("notification_private_message_subject", "notification_private_message_body", None),
    ("new_application_subject", "new_application_body", None),
    ("notification_community_subscribed_subject", "notification_community_subscribed_body", None),
]
LEMMY_COMMENTS = [
    "Try version 0.19.3, it fixed the 2FA login for me. Order #4471 arrived on 12.03.",
    "The code 4711 in that post is a perfume, not a PIN :) Call me at +49 30 1234 5678.",
    "Meetup moved to 2025-06-14 at 18:30, room B-204. Tickets are €12.50.",
    "I paid $1,299.99 for mine in 2023. Tracking 1Z999AA10123456784 still says pending.",
]


def lemmy() -> Built:
    repo = Repo("LemmyNet/lemmy-translations", "AGPL-3.0")
    v = Values("lemmy")
    english = json.loads(repo.read("backend/en.json"))
    out = []
    for lang, locale in LEMMY_LANGS.items():
        strings = json.loads(repo.read(f"backend/{locale}.json"))
        for subject_key, body_key, label in LEMMY:
            host = v.pick(["lemmy.world", "feddit.de", "lemmy.ml", "sh.itjust.works"])
            link = None
            if label:
                path = "verify_email" if "verify" in body_key else "password_change"
                link = f"https://{host}/{path}/{v.uuid()}"
            values = {
                "username": v.username(),
                "hostname": host,
                "verify_link": link,
                "reset_link": link,
                "post_title": "Self-hosting mail in 2025",
                "comment_text": v.pick(LEMMY_COMMENTS),
                "parent_comment_text": "Any tips?",
                "message_text": v.pick(LEMMY_COMMENTS),
                "post_body": v.pick(LEMMY_COMMENTS),
                "comment_link": f"https://{host}/comment/{v.digits(7)}",
                "post_link": f"https://{host}/post/{v.digits(7)}",
                "inbox_link": f"https://{host}/inbox",
                "title": "Weekly thread",
                "name": "selfhosted",
                "applications_link": f"https://{host}/registration_applications",
            }
            translated = body_key in strings
            html = fill(strings.get(body_key) or english[body_key], values)
            subject = fill(strings.get(subject_key) or english[subject_key], values)
            text = html_to_text(html, "footnote")  # lettre's html2text, as send.rs does
            shown = lang if translated or lang == "en" else "en"
            out.append(
                message(
                    f"lemmy/{body_key}/{lang}",
                    f"backend/{locale}.json",
                    shown,
                    subject,
                    text,
                    html,
                    [],
                    link,
                )
            )
    return repo.header(), out


OUTLINE_LANGS = locales(
    "en_US de_DE fr_FR es_ES pt_BR it_IT nl_NL - zh_CN ja_JP", ko="ko_KR", tr="tr_TR", uk="uk_UA"
)
# (template, subject, text lines with {placeholders} filled after translation, label)
OUTLINE = [
    (
        "SigninEmail",
        "Magic Sign-in Link",
        [
            "Use the link below to sign in",
            ":\n\n{link}\n\n",
            "If the link expired you can request a new one from your team's signin page at",
            ": {team}",
        ],
        "link",
    ),
    (
        "SigninEmail",
        "Sign in verification code",
        [
            "Enter this verification code",
            ": {code}\n\n",
            "If the code expired you can request a new one from your team's signin page at",
            ": {team}",
        ],
        "code",
    ),
    (
        "ConfirmUpdateEmail",
        "Your email update request",
        [
            "You requested to update your {{ appName }} account email. Please follow the link "
            "below to confirm the change from {{ previous }} to {{ to }}.",
            "\n  {link}\n",
        ],
        "link",
    ),
    (
        "ConfirmUserDeleteEmail",
        "Your account deletion request",
        [
            "You requested to permanently delete your {{ appName }} user account in the "
            "{{ teamName }} workspace. Please enter the code below to confirm your account "
            "deletion.",
            "\n\n",
            "Code",
            ": {code}",
        ],
        "code",
    ),
    (
        "InviteEmail",
        "{{ actorName }} invited you to join {{ teamName }}’s workspace",
        [
            "Join {{ teamName }} on {{ appName }}",
            "\n\n{actor} ",
            "has invited you to join "
            "{{ appName }}, a place for your team to build and share knowledge.",
            "\n\n",
            "Join now",
            ": {team}",
        ],
        None,
    ),
    (
        "ExportSuccessEmail",
        "Your requested export",
        [
            "Your Data Export",
            "\n\n",
            "Your "
            "requested data export is complete, you can download from the link below in a browser "
            "that is logged into your account.",
            "\n\n",
            "This export will be available to download for {{ days }} days.",
            "\n\n{team}/api/fileOperations.redirect?id={uuid}",
        ],
        None,
    ),
]


def outline() -> Built:
    repo = Repo("outline/outline", "BSL-1.1")
    v = Values("outline")
    out = []
    for lang, locale in OUTLINE_LANGS.items():
        strings = json.loads(repo.read(f"shared/i18n/locales/{locale}/translation.json"))
        for name, subject, parts, label in OUTLINE:
            team = f"https://{v.pick(['acme', 'design', 'wiki'])}.getoutline.com"
            code, uuid_ = v.digits(6), v.uuid()
            link = None
            if name == "SigninEmail" and label == "link":
                link = f"{team}/auth/email.callback?token={v.jwt()}&client=web"
            elif label == "link":
                link = f"{team}/api/users.updateEmail?code={v.jwt()}"
            values = {
                "appName": "Outline",
                "previous": v.email(),
                "to": v.email(),
                "teamName": "Acme",
                "actorName": v.name(),
                "days": 7,
            }
            hits = [p in strings for p in parts if not p.startswith(("\n", ":"))]

            def t(key: str, values: dict[str, object] = values, strings: dict = strings) -> str:
                text = strings.get(key) or key
                return re.sub(r"\{\{ ?(\w+) ?\}\}", lambda m: str(values[m.group(1)]), text)

            text = "".join(t(p) for p in parts)
            text = (
                text.format(
                    link=link, code=code, team=team, actor=values["actorName"], uuid=uuid_
                ).strip()
                + "\n"
            )
            shown = lang if lang == "en" or sum(hits) > len(hits) / 2 else "en"
            codes = [code] if label == "code" else []
            out.append(
                message(
                    f"outline/{name}/{label}/{lang}",
                    f"server/emails/templates/{name}.tsx",
                    shown,
                    t(subject),
                    text,
                    text_to_html(text),
                    codes,
                    link,
                )
            )
    return repo.header(), out


BUILDERS: dict[str, Callable[[], Built]] = {
    "appwrite": appwrite,
    "hanko": hanko,
    "lemmy": lemmy,
    "outline": outline,
}
