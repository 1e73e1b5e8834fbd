"""Identity products' account mail (sign-up, sign-in, reset and their
notifications), in English unless the product ships translations."""

from __future__ import annotations

import re
from collections.abc import Callable

from build import Repo, Values, message
from render import fill, html_to_text, render, text_to_html

Built = tuple[dict[str, object], list[dict[str, object]]]


def supabase() -> Built:
    repo = Repo("supabase/auth", "MIT")
    path = "internal/mailer/templatemailer/templatemailer.go"
    source = repo.read(path)
    consts = dict(re.findall(r"const (default\w+Mail) = `(.*?)`", source, re.S))
    subjects = dict(re.findall(r"^\t\t(\w+):\s+\"(.*?)\",", source, re.M))
    v = Values("supabase")
    out = []
    for const, body in consts.items():
        kind = const.removeprefix("default").removesuffix("Mail")
        subject = subjects.get(kind) or subjects.get(
            kind.replace("Reauthenticate", "Reauthentication")
        )
        ref = v.chars("abcdefghijklmnopqrstuvwxyz", 20)
        flow = {"Invite": "invite", "Confirmation": "signup", "Recovery": "recovery"}
        flow |= {"MagicLink": "magiclink", "EmailChange": "email_change"}
        link = None
        if kind in flow:
            link = (
                f"https://{ref}.supabase.co/auth/v1/verify?token=pkce_{v.hex(56)}"
                f"&type={flow[kind]}&redirect_to=https://app.example.com/welcome"
            )
        values = {
            "ConfirmationURL": (link or "").replace("&", "&amp;"),
            "Token": v.digits(6),
            "NewEmail": v.email(),
            "Email": v.email(),
            "OldEmail": v.email(),
            "Phone": f"+1 415 555 {v.digits(4)}",
            "OldPhone": f"+44 20 7946 {v.digits(4)}",
            "Provider": v.pick(["Google", "GitHub", "Apple"]),
            "FactorType": v.pick(["totp", "phone", "webauthn"]),
        }
        html = render(body, values)
        codes = [values["Token"]] if kind == "Reauthenticate" else []
        # Supabase sends the HTML alone.
        out.append(
            message(
                f"supabase/{kind}",
                path,
                "en",
                render(subject or kind, values),
                "",
                html,
                codes,
                link,
            )
        )
    return repo.header(), out


KRATOS = "courier/template/courier/builtin/templates"


def kratos() -> Built:
    repo = Repo("ory/kratos", "Apache-2.0")
    v = Values("kratos")
    out = []
    kinds = [
        "login_code/valid",
        "recovery/valid",
        "recovery/invalid",
        "recovery_code/valid",
        "recovery_code/invalid",
        "registration_code/valid",
        "verification/valid",
        "verification/invalid",
        "verification_code/valid",
        "verification_code/invalid",
        "authenticator_key_added",
        "verifiable_address_changed",
    ]
    for kind in kinds:
        for n in range(2):
            code = v.digits(6)
            flow = v.uuid()
            base = v.pick(["https://auth.example.com", "https://id.shop.test/.ory"])
            values = {
                "LoginCode": code,
                "RecoveryCode": code,
                "RegistrationCode": code,
                "VerificationCode": code,
                "ExpiresInMinutes": v.pick([15, 60, 1440]),
                "Identity": {"id": v.uuid(), "ID": v.uuid()},
                "ChangedAt": f"{v.date()} {v.time()}",
                "AddedAt": f"{v.date()} {v.time()}",
            }
            link = None
            if kind == "recovery/valid":
                link = f"{base}/self-service/recovery?flow={flow}&token={v.urlsafe(32)}"
            elif kind.startswith("verification") and kind.endswith("/valid"):
                token = f"code={code}" if "code" in kind else f"token={v.urlsafe(32)}"
                link = f"{base}/self-service/verification?flow={flow}&{token}"
            values["RecoveryURL"] = values["VerificationURL"] = link or ""
            parts = [
                repo.read(f"{KRATOS}/{kind}/email.{p}.gotmpl")
                for p in ("subject", "body", "body.plaintext")
            ]
            subject, html, text = (render(p, values) for p in parts)
            codes = [code] if kind.endswith("code/valid") else []
            html = html if n == 0 else text_to_html(text)
            out.append(
                message(
                    f"kratos/{kind}/{n}", f"{KRATOS}/{kind}", "en", subject, text, html, codes, link
                )
            )
    return repo.header(), out


UNAMBIGUOUS = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"


def authelia() -> Built:
    repo = Repo("authelia/authelia", "Apache-2.0")
    v = Values("authelia")
    tdir = "internal/templates/embed/notification/"
    out = []
    for name in ("IdentityVerificationOTC", "IdentityVerificationJWT", "Event") * 3:
        host = v.pick(["auth.example.com", "login.home.arpa", "sso.acme.io"])
        code = v.chars(UNAMBIGUOUS, 8)
        link = f"https://{host}/reset-password/step2?token={v.jwt()}" if "JWT" in name else None
        values = {
            "DisplayName": v.name(),
            "Domain": host,
            "OneTimeCode": code,
            "LinkURL": link,
            "LinkText": "Validate",
            "RevocationLinkURL": f"https://{host}/revoke/one-time-code?id={v.urlsafe(22)}"
            if "OTC" in name
            else f"https://{host}/revoke/reset-password?token={v.jwt()}",
            "RevocationLinkText": "Revoke",
            "RemoteIP": v.ip(),
            "Title": "Second Factor Method Added",
            "BodyPrefix": "a",
            "BodyEvent": "Second Factor Method",
            "BodySuffix": "was added to your account.",
            "Details": {
                "Action": "Second Factor Method Added",
                "Method": "Time-based OTP",
                "Date": f"{v.date()} {v.time()}:12 +0000 UTC",
            },
        }
        text = render(repo.read(tdir + name + ".txt"), values)
        # The Event template walks a map with sprig helpers: render its details here.
        text = (
            re.sub(
                r"Event Details:.*?-{10}",
                "Event Details:\n\n"
                + "\n\n".join(f"{k}: {d}" for k, d in sorted(values["Details"].items()))
                + "\n\n"
                + "-" * 40,
                text,
                flags=re.S,
            )
            if name == "Event"
            else text
        )
        html = render(repo.read(tdir + name + ".html"), values)
        subject = {
            "IdentityVerificationOTC": "Confirm your identity",
            "IdentityVerificationJWT": "Reset your password",
            "Event": "Second Factor Method Added",
        }[name]
        codes = [code] if "OTC" in name else []
        out.append(
            message(
                f"authelia/{name}/{len(out)}", tdir + name, "en", subject, text, html, codes, link
            )
        )
    return repo.header(), out


def pocketbase() -> Built:
    repo = Repo("pocketbase/pocketbase", "MIT")
    v = Values("pocketbase")
    source = repo.read("core/collection_model_auth_templates.go")
    layout = re.search(r"const Layout = `(.*?)`", repo.read("mails/templates/layout.go"), re.S)
    assert layout
    out = []
    for name, subject, body in re.findall(
        r"var (default\w+Template) = EmailTemplate\{\s*Subject: (.*?),\s*Body: (.*?),\n\}",
        source,
        re.S,
    ):
        for n in range(2):
            app = v.pick(["Acme", "PocketNotes", "Field Journal"])
            url = v.pick(["https://pb.example.com", "http://127.0.0.1:8090"])
            values = {
                "APP_NAME": app,
                "APP_URL": url,
                "TOKEN": v.jwt(),
                "OTP": v.digits(8),
                "OTP_ID": v.urlsafe(15),
                "ALERT_INFO": f"Chrome 126 on Windows 10 "
                f"(IP {v.ip()}, {v.date()} {v.time()}:41 UTC)",
            }

            def go_concat(expr: str, values: dict[str, object] = values) -> str:
                parts = re.findall(r'`(.*?)`|"(.*?)"|EmailPlaceholder(\w+)', expr, re.S)
                keys = {
                    "AppName": "APP_NAME",
                    "AppURL": "APP_URL",
                    "Token": "TOKEN",
                    "OTP": "OTP",
                    "OTPId": "OTP_ID",
                    "AlertInfo": "ALERT_INFO",
                }
                return "".join(a or b or str(values[keys[c]]) for a, b, c in parts)

            html = layout.group(1).replace('{{template "content" .}}', go_concat(body))
            link = None
            match = re.search(r'href="([^"]+)"', html)
            if match and "Alert" not in name:
                link = match.group(1)
            codes = [values["OTP"]] if "OTP" in name else []
            text = html_to_text(html, "footnote") if n else ""
            out.append(
                message(
                    f"pocketbase/{name}/{n}",
                    "core/collection_model_auth_templates.go",
                    "en",
                    go_concat(subject),
                    text,
                    html,
                    codes,
                    link,
                )
            )
    return repo.header(), out


def logto() -> Built:
    repo = Repo("logto-io/logto", "MPL-2.0")
    v = Values("logto")
    path = "packages/connectors/connector-aws-ses/src/constant.ts"
    out = []
    subjects = {
        "SignIn": "Your sign-in code",
        "Register": "Verify your email address",
        "ForgotPassword": "Reset your password",
        "Generic": "Verification code",
    }
    for usage, content in re.findall(
        r"usageType: '(\w+)',.*?content:\s*'(.*?)'", repo.read(path), re.S
    ):
        code = v.digits(6)
        text = content.replace("{{code}}", code)
        subject = subjects.get(usage, f"Logto {usage} code")
        out.append(
            message(f"logto/{usage}", path, "en", subject, text + "\n", text_to_html(text), [code])
        )
    return repo.header(), out


def casdoor() -> Built:
    repo = Repo("casdoor/casdoor", "Apache-2.0")
    v = Values("casdoor")
    path = "web/src/provider/EmailProviderFields.js"
    template = re.search(r'"content", "(You have requested.*?)"\)', repo.read(path))
    assert template
    out = []
    for n in range(4):
        code = v.digits(6)
        content = template.group(1).replace("%s", code, 1)
        link = None
        if n % 2:
            link = (
                f"https://door.example.com/forget/app-built-in?code={code}&username={v.username()}"
            )
            content = re.sub(r"<reset-link>(.*?)</reset-link>", r"\1", content).replace(
                "%link", f'<a href="{link.replace("&", "&amp;")}">here</a>'
            )
        else:
            content = re.sub(r"<reset-link>.*?</reset-link>", "", content)
        html = f"<html><body><p>{content}</p></body></html>"
        out.append(
            message(f"casdoor/{n}", path, "en", "Casdoor Verification Code", "", html, [code], link)
        )
    return repo.header(), out


def nextauth() -> Built:
    repo = Repo("nextauthjs/next-auth", "ISC")
    v = Values("nextauth")
    path = "packages/core/src/lib/utils/email.ts"
    source = repo.read(path)
    html_t = re.search(r"return `(\n<body.*?)`", source, re.S)
    assert html_t
    out = []
    for n in range(4):
        host = v.pick(["example.com", "app.acme.io", "notes.test"])
        callback = f"https%3A%2F%2F{host}%2Fdashboard"
        email = v.email().replace("@", "%40")
        link = (
            f"https://{host}/api/auth/callback/{v.pick(['email', 'nodemailer', 'resend'])}?"
            f"callbackUrl={callback}&token={v.hex(64)}&email={email}"
        )
        values = {
            "url": link,
            "escapedHost": host.replace(".", "&#8203;."),
            "color.background": "#f9f9f9",
            "color.text": "#444",
            "color.mainBackground": "#fff",
            "color.buttonBackground": "#346df1",
            "color.buttonBorder": "#346df1",
            "color.buttonText": "#fff",
        }
        html = fill(html_t.group(1), values, r"\$\{([\w.]+)\}")
        out.append(
            message(
                f"nextauth/{n}",
                path,
                "en",
                f"Sign in to {host}",
                f"Sign in to {host}\n{link}\n\n",
                html,
                [],
                link,
            )
        )
    return repo.header(), out


# template -> (label kind, the URL it carries when it has one)
KEYCLOAK = "themes/src/main/resources/theme/base/email/messages/messages_{}.properties"
# message key -> label kind
KEYCLOAK_KEYS = {
    "emailVerification": "link",
    "passwordReset": "link",
    "executeActions": "link",
    "emailUpdateConfirmation": "link",
    "orgInvite": "link",
    "identityProviderLink": "link",
    "emailVerificationBodyCode": "code",
    "eventLoginError": None,
    "eventUpdatePassword": None,
    "eventRemoveTotp": None,
    "eventUpdateTotp": None,
    "accountDisableNotification": None,
}


def properties(text: str) -> dict[str, str]:
    """A Java .properties file's entries, escapes decoded (MessageFormat's '' kept)."""
    out = {}
    for line in text.splitlines():
        if "=" in line and not line.lstrip().startswith("#"):
            key, _, value = line.partition("=")
            value = re.sub(r"\\u([0-9a-fA-F]{4})", lambda m: chr(int(m.group(1), 16)), value)
            out[key.strip()] = value.replace("\\n", "\n")
    return out


def _keycloak_args(v: Values, key: str, lang: str, first: str, realm: str) -> list[str]:
    """The MessageFormat arguments keycloak passes each template ({0}, {1}...)."""
    if key.startswith("event"):
        first = f"{v.date()} {v.time()}"
    args = [
        first,
        v.ip() if key.startswith("event") else v.email(),
        realm.title(),
        "Update Password, Verify Email" if key == "executeActions" else "5 minutes",
        "12 hours",
        "30 minutes",
    ]
    if lang != "en":  # the older bundles: {1} is the link's lifetime in minutes
        args[1] = "5"
    if key == "orgInvite":
        args[3], args[4] = "Acme Research", "12 hours"
    if key == "identityProviderLink":
        args = ["GitHub", realm.title(), v.username(), first, "5 minutes", "5 minutes"]
    if key == "accountDisableNotification":
        args = ["14", "inactivity"]
    return args


def keycloak() -> Built:
    """The email theme's message bundles (templates/*.ftl only wrap them in
    <html><body> and pass the arguments); read from the GitHub index, see build.py."""
    repo = Repo("keycloak/keycloak", "Apache-2.0")
    # No clone (870 MB): the three bundles as the code index stores them, one commit each.
    repo.commit = (
        "en 0111c3329505e7bcaf44604443f52e7ace5157ae, de a6f0c6cdc2ca53c83b0c7dcfa2157"
        "512c9bf1257, ja 7385844b5ac4f1b32148a5bab97c5bcfccaf8b7b"
    )
    v = Values("keycloak")
    out = []
    for lang in ("en", "de", "ja"):
        strings = properties(repo.read(KEYCLOAK.format(lang)))
        for key, label in KEYCLOAK_KEYS.items():
            base = key.removesuffix("BodyCode")
            if f"{base}Subject" not in strings and key != "emailVerificationBodyCode":
                continue
            body_key = key if key.endswith("Code") else f"{key}Body"
            if body_key not in strings:
                continue
            host = v.pick(["https://sso.example.com", "https://auth.acme.io/auth"])
            realm = v.pick(["acme", "master", "customers"])
            link = None
            if label == "link":
                link = (
                    f"{host}/realms/{realm}/login-actions/action-token?key={v.jwt()}"
                    f"&client_id=account-console&tab_id={v.urlsafe(11)}"
                )
            code = v.digits(6)
            args = _keycloak_args(v, key, lang, link or code, realm)

            def fmt(text: str, args: list = args) -> str:  # type: ignore[type-arg]
                text = re.sub(r"\{(\d)\}", lambda m: str(args[int(m.group(1))]), text)
                return text.replace("''", "'")

            subject_key = "emailVerificationSubject" if label == "code" else f"{key}Subject"
            text = fmt(strings[body_key])
            html_body = strings.get(body_key + "Html", "")
            html = f"<html><body>{fmt(html_body)}</body></html>" if html_body else ""
            if link and html:
                html = html.replace(link, link.replace("&", "&amp;"))
            out.append(
                message(
                    f"keycloak/{key}/{lang}",
                    KEYCLOAK.format(lang),
                    lang,
                    fmt(strings.get(subject_key, "")),
                    text + "\n",
                    html,
                    [code] if label == "code" else [],
                    link,
                )
            )
    return repo.header(), out


BUILDERS: dict[str, Callable[[], Built]] = {
    "supabase": supabase,
    "kratos": kratos,
    "authelia": authelia,
    "pocketbase": pocketbase,
    "logto": logto,
    "casdoor": casdoor,
    "nextauth": nextauth,
    "keycloak": keycloak,
}
