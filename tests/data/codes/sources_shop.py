"""Shop mail (orders, shipments, invoices, gift cards; and the shops' own
account mails) rendered from the products' templates: mostly number-heavy
mail that has no code and no verification link."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import yaml
from build import Repo, Values, locales, message
from render import html_to_text, render

Built = tuple[dict[str, object], list[dict[str, object]]]

SYLIUS_LANGS = locales("en de fr es pt it nl ru zh_CN ja", pl="pl")
SYLIUS = "src/Sylius/Bundle/CoreBundle/Resources/"
# template -> (label kind, subject key)
SYLIUS_MAILS = {
    "orderConfirmation": (None, "sylius.email.order_confirmation.subject"),
    "shipmentConfirmation": (None, "sylius.email.shipment_confirmation.subject"),
    "accountVerification": ("code", "sylius.email.user.account_verification.subject"),
    "passwordReset": ("link", "sylius.email.password_reset.subject"),
    "userRegistration": (None, "sylius.email.user_registration.subject"),
}


def _flatten(tree: object, prefix: str = "") -> dict[str, str]:
    if not isinstance(tree, dict):
        return {prefix: str(tree)}
    out: dict[str, str] = {}
    for key, value in tree.items():
        out |= _flatten(value, f"{prefix}.{key}" if prefix else str(key))
    return out


def _sylius_templates(repo: Repo, name: str) -> str:
    src = repo.read(f"{SYLIUS}views/Email/{name}.html.twig")
    src = re.sub(
        r"\{% include '@SyliusCore/Email/([^']+)' %\}",
        lambda m: repo.read(f"{SYLIUS}views/Email/{m.group(1)}"),
        src,
    )
    layout = repo.read(f"{SYLIUS}views/Email/layout.html.twig")
    # The layout links the logo to the shop's home page (its own {% set url %}).
    layout = layout.replace("{{ url|raw }}", "{{ homepage }}")
    content = re.search(r"\{% block content %\}(.*?)\{% endblock %\}", src, re.S)
    subject = re.search(r"\{% block subject %\}(.*?)\{% endblock %\}", src, re.S)
    body = layout.replace("{% block content %}{% endblock %}", content.group(1) if content else "")
    return (subject.group(1) if subject else "") + "\x00" + body


def _sylius_values(
    v: Values, link: Any, token: Any, code: Any, order: Any, host: Any, lang: Any
) -> dict[str, Any]:
    return {
        "url": link or f"{host}/{lang}/order/{token}",
        "logo": f"{host}/logo.png",
        "homepage": f"{host}/{lang}/",
        "localeCode": lang,
        "user": {
            "username": v.username(),
            "emailVerificationToken": code,
            "passwordResetToken": token,
        },
        "order": {"number": order, "tokenValue": token},
        "shipment": {
            "method": v.pick(["DHL Express", "UPS Standard", "FedEx"]),
            "tracking": v.pick(
                [
                    f"1Z{v.digits(3)}AA1{v.digits(10)}",
                    f"JD01460000{v.digits(8)}",
                    v.digits(12),
                ]
            ),
        },
        "sylius_bundle_loaded_checker": True,
    }


def sylius() -> Built:
    repo = Repo("Sylius/Sylius", "MIT")
    v = Values("sylius")
    english = _flatten(yaml.safe_load(repo.read(f"{SYLIUS}translations/messages.en.yml")))
    out = []
    for lang, locale in SYLIUS_LANGS.items():
        strings = _flatten(yaml.safe_load(repo.read(f"{SYLIUS}translations/messages.{locale}.yml")))
        for name, (label, subject_key) in SYLIUS_MAILS.items():
            host = v.pick(["https://shop.example.com", "https://store.acme.de"])
            token = v.urlsafe(v.pick([20, 32]))
            code = v.chars("0123456789abcdefghijklmnopqrstuvwxyz", 20)
            link = f"{host}/{lang}/forgotten-password/{token}" if label == "link" else None
            order = v.digits(9)
            values = _sylius_values(v, link, token, code, order, host, lang)
            keys_used = re.findall(r"'(sylius\.email\.[\w.]+)'", _sylius_templates(repo, name))

            def translate(key: str, strings: dict[str, str] = strings) -> str:
                return strings.get(key) or english.get(key, key)

            subject_t, body_t = _sylius_templates(repo, name).split("\x00")
            tracking = f'<span style="color: #1abb9c;">{values["shipment"]["tracking"]}</span>'
            values["tracking_code"] = tracking
            body = render(body_t, values, translate).replace("%tracking_code%", tracking)
            body = body.replace("{{ shipment.tracking }}", values["shipment"]["tracking"])
            hits = [k in strings for k in keys_used]
            shown = lang if lang == "en" or sum(hits) > len(hits) / 2 else "en"
            codes = [code] if label == "code" else []
            out.append(
                message(
                    f"sylius/{name}/{lang}",
                    f"{SYLIUS}views/Email/{name}.html.twig",
                    shown,
                    translate(subject_key),
                    "",
                    body,
                    codes,
                    link,
                )
            )
    return repo.header(), out


def _erb_to_tags(src: str) -> str:
    """ERB written as the tags render() reads: loops and ifs, t() lookups, values."""
    src = re.sub(
        r"<% (?:@order|@manifest|@carton)\.?[\w.]*\.each do \|item\| %>",
        "{{range item in items}}",
        src,
    )
    src = re.sub(
        r"<% @order\.shipments\.group_by.*?\.each do \|name, shipments\| %>",
        "{{range shipping}}",
        src,
    )
    src = re.sub(r"<% [^%]*\.each do \|[^|]*\| %>", "{{range nothing}}", src)
    src = re.sub(r"<% if ([^%]*?) %>", lambda m: "{{if " + m.group(1).split(".")[-1] + "}}", src)
    src = re.sub(r"<% next if.*?%>", "", src)
    src = re.sub(r"<%[=-]? end -?%>", "{{end}}", src)
    src = re.sub(r"<%= t\('([^']+)'[^%]*%>", r'{{t "\1"}}', src)
    src = re.sub(r"<%=\s*([^%]*?)\s*-?%>", lambda m: "{{ " + m.group(1).strip() + " }}", src)
    return src


SOLIDUS = {
    "order_mailer/confirm_email": "spree.order_mailer.confirm_email",
    "order_mailer/cancel_email": "spree.order_mailer.cancel_email",
    "carton_mailer/shipped_email": "spree.shipment_mailer.shipped_email",
}


def solidus() -> Built:
    repo = Repo("solidusio/solidus", "BSD-3-Clause (the Spree License, LICENSE.md)")
    v = Values("solidus")
    strings = _flatten(yaml.safe_load(repo.read("core/config/locales/en.yml"))["en"])
    out = []
    for name, scope in SOLIDUS.items():
        for n in range(4):
            total = v.amount()
            items = [
                {
                    "variant": {
                        "sku": f"SKU-{v.digits(5)}",
                        "product": {"name": product},
                        "options_text": "Size: M, Color: Blue",
                    },
                    "quantity": v.pick([1, 2, 3]),
                    "single_money": v.amount(),
                    "display_amount": v.amount(),
                }
                for product in ("Solidus T-Shirt", "Ruby Mug")
            ]
            tracking = v.pick(
                [
                    f"1Z{v.digits(3)}AA1{v.digits(10)}",
                    f"9400 1000 0000 {v.digits(4)} {v.digits(4)} {v.digits(2)}",
                ]
            )
            values = {
                "items": items,
                "shipping": [{"name": "UPS Ground"}],
                "name": "UPS Ground",
                "@order.display_item_total": total,
                "display_item_total": total,
                "display_total": total,
                "exists?": False,
                "tracking": tracking,
                "tracking_url": f"https://www.ups.com/track?tracknum={tracking}",
            }

            def translate(key: str, scope: str = scope, values: dict = values) -> str:  # type: ignore[type-arg]
                full = scope + key if key.startswith(".") else key
                text = strings.get(full, full.rsplit(".", 1)[-1])
                return re.sub(r"%\{(\w+)\}", lambda m: str(values.get(m.group(1), "")), text)

            paths = [f"core/app/views/spree/{name}.{ext}.erb" for ext in ("text", "html")]
            text, html = (render(_erb_to_tags(repo.read(p)), values, translate) for p in paths)
            order = f"R{v.digits(9)}"
            subject = f"Sample Store {translate('.subject')} #{order}"
            out.append(
                message(
                    f"solidus/{name}/{n}",
                    paths,
                    "en",
                    subject,
                    text,
                    f"<html><body>{html}</body></html>",
                    [],
                )
            )
    return repo.header(), out


SALEOR = "saleor/plugins/user_email/default_email_templates/"
# template -> (subject, label kind)
SALEOR_MAILS = {
    "confirm": ("Account confirmation e-mail", "link"),
    "password_reset": ("Password reset e-mail", "link"),
    "set_customer_password": ("Hello from {{ site_name }}!", "link"),
    "request_email_change": ("Email change e-mail", "link"),
    "account_delete": ("Delete your account", "link"),
    "confirm_order": ("Order #{{ order.number }} details", None),
    "confirm_fulfillment": ("Your order {{ order.number }} has been fulfilled", None),
    "confirm_payment": ("Order {{ order.number }} payment details", None),
    "gift_card": ("Gift card for {{ site_name }}", None),
    "send_invoice": ("Invoice", None),
    "order_refund": ("Order {{ order.number }} refunded", None),
    "email_changed_notification": ("Email change e-mail", None),
}


def _saleor_values(
    v: Values, link: Any, token: Any, number: Any, amount: Any, lines: Any, host: Any
) -> dict[str, Any]:
    return {
        "site_name": "Saleor e-commerce",
        "domain": "demo.saleor.io",
        "confirm_url": link,
        "reset_url": link,
        "password_set_url": link,
        "redirect_url": link,
        "token": token,
        "delete_url": link,
        "user": {"first_name": "Alex", "last_name": "Morgan"},
        "order": {
            "number": number,
            "order_details_url": f"{host}/order/{v.uuid()}",
            "lines": lines,
            "subtotal_net_amount": amount,
            "total_net_amount": amount,
            "shipping_price_net_amount": "$9.99",
            "tax_amount": "$4.21",
            "billing_address": "Alex Morgan, 221B Baker Street, London NW1 6XE",
            "shipping_address": "Alex Morgan, Hauptstraße 5, 10115 Berlin, Germany",
            "display_gross_prices": True,
        },
        "physical_lines": lines,
        "fulfillment": {
            "tracking_number": v.pick(
                [f"1Z{v.digits(3)}AA1{v.digits(10)}", f"00340434{v.digits(12)}"]
            )
        },
        "gift_card": {
            "code": v.grouped("ABCDEFGHJKLMNPQRSTUVWXYZ0123456789", (4, 4, 4, 4)),
            "balance": "50.00",
            "currency": "USD",
        },
        "recipient_email": v.email(),
        "invoice": {"download_url": f"{host}/media/invoices/invoice-{number}-{v.hex(8)}.pdf"},
        "number": f"{number}/2025",
        "new_email": v.email(),
        "old_email": v.email(),
        "amount": amount,
    }


def saleor() -> Built:
    repo = Repo("saleor/saleor", "BSD-3-Clause")
    v = Values("saleor")
    out = []
    for name, (subject, label) in SALEOR_MAILS.items():
        host = "https://demo.saleor.io"
        token = f"{v.chars('0123456789abcdefghijklmnopqrstuvwxyz', 6)}-{v.hex(32)}"
        email = v.email().replace("@", "%40")
        link = None
        if label == "link":
            path = {
                "confirm": "account-confirm",
                "password_reset": "reset-password",
                "set_customer_password": "set-password",
                "request_email_change": "confirm-email-change",
                "account_delete": "account-delete",
            }[name]
            link = f"{host}/{path}/?email={email}&token={token}"
        number = v.digits(v.pick([4, 5, 6]))
        amount = v.amount()
        lines = [
            {
                "product_name": "Monospace Tee",
                "variant_name": "XL",
                "quantity": 2,
                "total_net_amount": amount,
                "unit_price_net_amount": amount,
                "order_line": {"product_name": "Monospace Tee", "variant_name": "XL"},
            }
        ]
        values = _saleor_values(v, link, token, number, amount, lines, host)
        html = render(repo.read(SALEOR + name + ".html"), values)
        if link:
            # Saleor's confirm and reset mails put the link in the body as text too.
            assert link in html or link.replace("&", "&amp;") in html, name
        out.append(
            message(
                f"saleor/{name}",
                SALEOR + name + ".html",
                "en",
                render(subject, values),
                html_to_text(html, "inline"),
                html,
                [],
                link,
            )
        )
    return repo.header(), out


BUILDERS: dict[str, Callable[[], Built]] = {
    "sylius": sylius,
    "solidus": solidus,
    "saleor": saleor,
}
