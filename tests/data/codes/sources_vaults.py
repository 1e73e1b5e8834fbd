"""Password managers' mail (Bitwarden, Vaultwarden): Handlebars templates
with layouts and partials, codes, links and many notifications."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from build import Repo, Values, message
from render import render

Built = tuple[dict[str, object], list[dict[str, object]]]


VAULTWARDEN = {
    "twofactor_email": "code",
    "protected_action": "code",
    "change_email": "code",
    "verify_email": "link",
    "register_verify_email": "link",
    "welcome_must_verify": "link",
    "delete_account": "link",
    "send_org_invite": "link",
    "send_emergency_access_invite": "link",
    "new_device_logged_in": None,
    "incomplete_2fa_login": None,
    "pw_hint_some": None,
    "invite_accepted": None,
    "welcome": None,
    "admin_reset_password": None,
    "emergency_access_recovery_initiated": None,
    "send_2fa_removed_from_org": None,
}


def _vaultwarden_link(v: Values, name: str, url: str, values: dict[str, object]) -> str | None:
    uid, token = values["user_id"], values["token"]
    links = {
        "verify_email": f"{url}/#/verify-email/?userId={uid}&token={token}",
        "welcome_must_verify": f"{url}/#/verify-email/?userId={uid}&token={token}",
        "register_verify_email": f"{url}/#/finish-signup/?email={values['email']}&token={token}",
        "delete_account": f"{url}/#/verify-recover-delete?userId={uid}&token={token}"
        f"&email={values['email']}",
        "send_org_invite": f"{url}/#/accept-organization/?organizationId={v.uuid()}"
        f"&organizationUserId={v.uuid()}&email={values['email']}&organizationName=Family"
        f"&token={token}",
        "send_emergency_access_invite": f"{url}/#/accept-emergency/?id={v.uuid()}&name=Alex"
        f"&email={values['email']}&token={token}",
    }
    return links.get(name)


def vaultwarden() -> Built:
    repo = Repo("dani-garcia/vaultwarden", "AGPL-3.0")
    v = Values("vaultwarden")
    tdir = "src/static/templates/"
    out = []
    for name, label in VAULTWARDEN.items():
        for n in range(2):
            url = v.pick(["https://vault.example.com", "https://bw.home.arpa:8443"])
            values: dict[str, object] = {
                "url": url,
                "img_src": f"{url}/vw_static/",
                "user_id": v.uuid(),
                "email": v.email(),
                "org_name": "Family",
                "grantor_name": v.name(),
                "device_name": v.pick(["firefox", "chrome", "Android"]),
                "ip": v.ip(),
                "device_type": v.pick(["Firefox", "Chrome Extension", "Android"]),
                "datetime": f"{v.date()} {v.time()}:05 UTC",
                "time_limit": 3,
                "hint": v.pick(["dog + year we met", "first car 1998", "usual + 42"]),
                "user_name": v.name(),
                "atype": "View",
                "wait_days": 7,
            }
            values["token"] = v.digits(6) if label == "code" else v.jwt()
            link = _vaultwarden_link(v, name, url, values) if label == "link" else None
            values["url"] = (
                link
                if name
                in ("send_org_invite", "register_verify_email", "send_emergency_access_invite")
                else url
            )

            def partial(name: str) -> str:
                return repo.read(f"{tdir}{name}.hbs")

            text = render(repo.read(f"{tdir}email/{name}.hbs"), values, partial=partial)
            html = render(repo.read(f"{tdir}email/{name}.html.hbs"), values, partial=partial)
            subject, _, text = text.partition("<!---------------->\n")
            html = html.partition("<!---------------->\n")[2]
            codes = [str(values["token"])] if label == "code" else []
            out.append(
                message(
                    f"vaultwarden/{name}/{n}",
                    f"{tdir}email/{name}",
                    "en",
                    subject,
                    text,
                    html,
                    codes,
                    link,
                )
            )
    return repo.header(), out


# template -> (subject, label kind), subjects as HandlebarsMailService.cs writes them
BITWARDEN = {
    "Auth/TwoFactorEmail": ("Your Two-step Login Verification Code", "code"),
    "Auth/OTPEmail": ("Your Bitwarden Verification Code", "code"),
    "ChangeEmail": ("Your Email Change", "code"),
    "Auth/SendAccessEmailOtpEmail": ("Your Bitwarden Send verification code", "code"),
    "Auth/VerifyEmail": ("Verify Your Email", "link"),
    "Auth/RegistrationVerifyEmail": ("Verify Your Email", "link"),
    "Billing/TrialInitiationVerifyEmail": ("Verify your email", "link"),
    "Auth/PasswordlessSignIn": ("[Admin] Continue Logging In", "link"),
    "Auth/VerifyDelete": ("Delete Your Account", "link"),
    "OrganizationUserInvited": ("Join Acme Corp", "link"),
    "Auth/EmergencyAccessInvited": ("Emergency Access Contact Invite", "link"),
    "NewDeviceLoggedIn": ("New Device Logged In From Chrome", None),
    "InvoiceUpcoming": ("Your Subscription Will Renew Soon", None),
    "PaymentFailed": ("Payment Failed", None),
    "AddedCredit": ("Account Credit Payment Processed", None),
    "Auth/FailedTwoFactorAttempt": ("Failed two-step login attempt detected", None),
    "Auth/MasterPasswordHint": ("Your Master Password Hint", None),
    "OrganizationSeatsAutoscaled": ("Acme Corp Seat Count Has Increased", None),
    "Welcome": ("Welcome to Bitwarden!", None),
    "UpdatedTempPassword": ("Master Password Has Been Changed", None),
}


def _bitwarden_link(v: Values, name: str, email: str) -> str:
    vault = "https://vault.bitwarden.com/#"
    token = f"{v.urlsafe(40)}%3D%3D"
    return {
        "Auth/VerifyEmail": f"{vault}/verify-email?userId={v.uuid()}&token={token}",
        "Auth/RegistrationVerifyEmail": f"{vault}/finish-signup?token={v.jwt()}&email={email}"
        f"&fromEmail=true",
        "Billing/TrialInitiationVerifyEmail": f"{vault}/finish-signup?token={v.jwt()}"
        f"&email={email}&fromEmail=true&productTier=2&product=0",
        "Auth/PasswordlessSignIn": f"https://admin.bitwarden.example/login/confirm?token={token}",
        "Auth/VerifyDelete": f"{vault}/verify-recover-delete?userId={v.uuid()}&token={token}"
        f"&email={email}",
        "OrganizationUserInvited": f"{vault}/accept-organization?organizationId={v.uuid()}"
        f"&organizationUserId={v.uuid()}&email={email}&organizationName=Acme%20Corp"
        f"&token={token}&initOrganization=false&orgUserHasExistingUser=false",
        "Auth/EmergencyAccessInvited": f"{vault}/accept-emergency?id={v.uuid()}&name=Alex"
        f"&email={email}&token={token}",
    }[name]


def _bitwarden_values(v: Values, link: Any, email: Any) -> dict[str, Any]:
    return {
        "Url": link or "",
        "Token": v.digits(6),
        "WebVaultUrl": "https://vault.bitwarden.com/#",
        "AccountEmail": email,
        "Email": email,
        "AffectedEmail": email,
        "TheDate": v.pick(["Monday, March 3, 2025", "Friday, November 14, 2025"]),
        "TheTime": "2:41 PM",
        "TimeZone": "UTC",
        "DeviceIp": v.ip(),
        "IpAddress": v.ip(),
        "DeviceType": "Chrome",
        "EmailTotpAction": "logging in",
        "Expiry": 5,
        "CurrentYear": "2025",
        "Name": v.name(),
        "ExpirationDate": "March 8, 2025",
        "JoinOrganizationButtonText": "Join Organization Now",
        "VerifyYourEmailHTMLCopy": "Verify your email address "
        "below to finish signing up for your free trial.",
        "VerifyYourEmailTextCopy": "Verify your email address to finish signing up.",
        "Items": ["1 x Families (Annually) - $40.00", "3 x Additional storage GB - $12.00"],
        "AmountDue": v.amount(),
        "Amount": v.amount(),
        "DueDate": "Apr 01, 2026",
        "UpdateBillingInfoUrl": "https://vault.bitwarden.com/#/settings/billing",
        "MentionInvoices": True,
        "Hint": "usual + 42",
        "CurrentSeatCount": 27,
        "InitialSeatCount": 25,
        "VaultSubscriptionUrl": "https://vault.bitwarden.com/#/organizations/sub",
        "UserName": v.name(),
        "TwoFactorType": "Email",
        "DisplayTwoFactorReminder": True,
    }


def bitwarden() -> Built:
    repo = Repo("bitwarden/server", "Bitwarden License / AGPL-3.0 (LICENSE.txt)")
    v = Values("bitwarden")
    tdir = "src/Core/MailTemplates/Handlebars/"

    def partial(name: str) -> str:
        m = re.match(r"(\w+?)(Html|Text)Layout$", name)
        if m:
            return repo.read(f"{tdir}Layouts/{m.group(1)}.{m.group(2).lower()}.hbs")
        return ""

    out = []
    for name, (subject, label) in BITWARDEN.items():
        for n in range(2):
            email = v.email()
            link = _bitwarden_link(v, name, email) if label == "link" else None
            values = _bitwarden_values(v, link, email)
            html = render(repo.read(f"{tdir}{name}.html.hbs"), values, partial=partial)
            text = render(repo.read(f"{tdir}{name}.text.hbs"), values, partial=partial)
            codes = [str(values["Token"])] if label == "code" else []
            out.append(
                message(
                    f"bitwarden/{name}/{n}", f"{tdir}{name}", "en", subject, text, html, codes, link
                )
            )
    return repo.header(), out


BUILDERS: dict[str, Callable[[], Built]] = {
    "vaultwarden": vaultwarden,
    "bitwarden": bitwarden,
}
