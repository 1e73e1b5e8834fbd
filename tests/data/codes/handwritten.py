"""Messages written by us for the cases the templates do not cover: codes in
unusual shapes and places, and mail full of number-like strings that are
not codes (travel, shops, banks, meetings, promotions, newsletters), in the
ten languages. Written in the style of real senders; no template behind them."""

from __future__ import annotations

from collections.abc import Callable

from build import Values, message
from handwritten_data import CODE_MAILS, FOOTER, LINK_MAILS
from handwritten_negatives import NEGATIVES
from render import html_to_text, text_to_html

Built = tuple[dict[str, object], list[dict[str, object]]]

# Shapes a code takes: a function of Values -> the code as shown.
SHAPES: list[Callable[[Values], str]] = [
    lambda v: v.digits(6),
    lambda v: v.digits(4),
    lambda v: v.digits(8),
    lambda v: f"{v.digits(3)} {v.digits(3)}",
    lambda v: f"{v.digits(3)}-{v.digits(3)}",
    lambda v: v.grouped("ABCDEFGHJKLMNPQRSTUVWXYZ23456789", (3, 3)),
    lambda v: v.chars("ABCDEFGHJKLMNPQRSTUVWXYZ23456789", 6),
    lambda v: v.grouped("BCDFGHJKLMNPQRSTVWXZ", (4, 4)),
]


def code_mails(v: Values) -> list[dict[str, object]]:
    out = []
    for n, (lang, subject, text) in enumerate(CODE_MAILS):
        for shape in SHAPES[:: 1 + n % 3]:
            code = shape(v)
            body = text.format(code=code) + (FOOTER if n % 2 else "")
            html = text_to_html(body) if n % 3 else ""
            out.append(
                message(
                    f"hand/code/{lang}/{len(out)}",
                    "",
                    lang,
                    subject.format(code=code),
                    body,
                    html,
                    [code],
                )
            )
    return out


def link_mails(v: Values) -> list[dict[str, object]]:
    """Verification links among the links a real mail carries."""
    out = []
    for n, (lang, subject, intro, button, url) in enumerate(LINK_MAILS):
        link = url.format(hex=v.hex(25), hex10=v.hex(10), tok=v.urlsafe(40))
        html = (
            '<html><body><table><tr><td><a href="https://acme.example/?utm_source=email">'
            '<img src="https://cdn.acme.example/logo.png" alt="Acme"></a></td></tr>'
            f'<tr><td><p>{intro}</p><p><a class="btn" href="{link.replace("&", "&amp;")}">'
            f'{button}</a></p></td></tr><tr><td style="font-size:11px">'
            '<a href="https://twitter.com/acme">Twitter</a> · '
            '<a href="https://acme.example/privacy">Privacy</a> · '
            f'<a href="https://acme.example/unsubscribe?u={v.hex(12)}&amp;id={v.hex(10)}">'
            "Unsubscribe</a><br>Acme Inc., 548 Market St, San Francisco, CA 94104</td></tr>"
            f'</table><img src="https://t.acme.example/open/{v.urlsafe(30)}.gif" width="1" '
            'height="1"></body></html>'
        )
        text = html_to_text(html, "inline") if n % 2 else ""
        out.append(message(f"hand/link/{lang}/{n}", "", lang, subject, text, html, [], link))
    return out


# Mail with number-like strings and no code or verification link.
def negatives(v: Values) -> list[dict[str, object]]:
    out = []
    for n, (lang, subject, text) in enumerate(NEGATIVES):
        body = text + (FOOTER if n % 2 else "")
        html = text_to_html(body) if n % 3 != 2 else ""
        out.append(message(f"hand/negative/{lang}/{n}", "", lang, subject, body, html))
    return out


_BOX = '<td style="border:1px solid #ccc;font-size:28px;padding:8px">{}</td>'
# (id, subject, text, html, the code's shape); {code} and {boxes} filled in.
HARD = [
    ("subject-only", "{code} is your Acme code",
     "Enter the code from the subject line to continue.\n", "", SHAPES[0]),
    ("boxes", "Verify your sign-in", "", "<html><body><p>Enter this verification code:</p>"
     "<table><tr>{boxes}</tr></table><p>The code expires in 10 minutes.</p></body></html>",
     SHAPES[0]),
    ("before", "Sign-in request", "Hi,\n\n{code} is your one-time password. Do not share it.\n",
     "", lambda v: v.digits(5)),
    ("order-and-code", "Confirm your delivery address", "Your order #483920 from 12/03/2025 "
     "(total $58.20) is ready.\nTo confirm the delivery address, enter the verification code "
     "{code} in the app.\n", "", SHAPES[1]),
    ("brief", "Your sign-in code", "Your sign-in code: {code}\nOrder #4471 · Invoice 2025-0042 "
     "· Call +1 415 555 0199\n", "", SHAPES[5]),
]  # fmt: skip


def hard_positives(v: Values) -> list[dict[str, object]]:
    """Codes only in the subject, only in HTML boxes, before their keyword, beside an order
    number; a sign-in link behind a click tracker."""
    out = []
    for name, subject, text, html, shape in HARD:
        code = shape(v)
        boxes = "".join(_BOX.format(c) for c in code)
        fill = {"code": code, "boxes": boxes}
        out.append(message(f"hand/hard/{name}", "", "en", subject.format(**fill),
                           text.format(**fill), html.format(**fill), [code]))  # fmt: skip
    link = f"https://email.mg.slack.example/c/{v.urlsafe(60)}"
    html = (
        f'<p>Click to confirm your email address and sign in:</p><p><a href="{link}">'
        'Confirm Email Address</a></p><p><a href="https://email.mg.slack.example/c/'
        f'{v.urlsafe(60)}">Unsubscribe</a> · <a href="https://slack.example/help">Help</a>'
        "</p>"
    )
    subject = "Slack confirmation code"
    out.append(message("hand/hard/tracked-link", "", "en", subject, "", html, [], link))
    return out


def handwritten() -> Built:
    v = Values("handwritten")
    messages = code_mails(v) + link_mails(v) + negatives(v) + hard_positives(v)
    source = {"repository": "(written for this set)", "commit": "", "licence": "as this repository"}
    return source, messages


BUILDERS: dict[str, Callable[[], Built]] = {"handwritten": handwritten}
