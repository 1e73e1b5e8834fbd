"""Mail HTML made safe to hand to a browser (nh3, the Ammonia sanitiser).

What goes: script and style elements with their content, every event
handler, `javascript:`/`data:`/`vbscript:` and any other non-listed URL
scheme, forms and their controls, base, meta (refresh), link, iframe,
object, embed, svg/math, comments. What stays: text and the usual
formatting, tables, links (`rel="noopener noreferrer nofollow"`,
`target="_blank"`), and a short list of inline style properties that carry
no URL. No other attribute keeps a URL (`cite` goes too). Remote images
(`http:`/`https:` `src`) are dropped unless the reader asks for them
(`remote_images=True`): they are how senders track that a mail was
opened. Inline images (`<img src="cid:...">`) are parts of the message
itself: with `inline` (Content-ID -> URL) each becomes the URL of its
part, and any other `cid:` reference goes. The stored `emails.html` is
never changed; this runs on the way out.
"""

from __future__ import annotations

import contextvars
import copy
import re
import types
from collections.abc import Mapping

import nh3

TAGS = set(nh3.ALLOWED_TAGS) | {"font"}
# Presentational attributes mail actually uses, on top of Ammonia's defaults.
EXTRA_ATTRIBUTES = {
    "*": {"align", "valign", "width", "height", "bgcolor", "color", "dir", "style", "title"},
    "font": {"face", "size", "color"},
    "table": {"border", "cellpadding", "cellspacing"},
    "td": {"colspan", "rowspan", "nowrap"},
    "th": {"colspan", "rowspan", "nowrap"},
    "img": {"alt", "src", "width", "height", "border"},
}
ATTRIBUTES = copy.deepcopy(nh3.ALLOWED_ATTRIBUTES)
for _tag, _names in EXTRA_ATTRIBUTES.items():
    ATTRIBUTES.setdefault(_tag, set()).update(_names)
ATTRIBUTES["a"] = (ATTRIBUTES.get("a", set()) | {"href", "name"}) - {"target", "rel"}
# Ammonia keeps `cite` (blockquote, q, del, ins): a URL nobody clicks, that a
# client may fetch or show, so a sender's tracking address. Remote URLs stay
# only as links and as images the reader asked for.
for _names in ATTRIBUTES.values():
    _names.discard("cite")

# CSS properties kept in style attributes (`background` for the colour of mail's
# buttons; a value that could load anything is refused whole by _BAD_STYLE).
STYLE_PROPERTIES = {
    "color", "background", "background-color", "font", "font-family", "font-size", "font-style",
    "font-weight", "text-align", "text-decoration", "text-transform", "line-height",
    "letter-spacing", "vertical-align", "white-space", "margin", "margin-top",
    "margin-right", "margin-bottom", "margin-left", "padding", "padding-top",
    "padding-right", "padding-bottom", "padding-left", "border", "border-top",
    "border-right", "border-bottom", "border-left", "border-color", "border-style",
    "border-width", "border-collapse", "border-spacing", "border-radius", "width",
    "height", "max-width", "min-width", "max-height", "min-height", "display",
    "text-indent", "list-style-type",
}  # fmt: skip

URL_SCHEMES = {"http", "https", "mailto", "tel", "cid"}  # cid: only as an image (below)
# Removed together with their content (the rest are unwrapped, text kept).
CONTENT_TAGS = {"script", "style", "title", "head", "noscript", "template", "iframe",
                "object", "embed", "svg", "math", "textarea", "select", "xmp", "noembed",
                "noframes", "plaintext"}  # fmt: skip


# Inline CSS that could load or run anything (old IE expression(), XBL
# bindings, url() and the other functions that take an image's address,
# imports, escapes that hide any of them): the whole attribute goes.
_BAD_STYLE = re.compile(
    r"expression|url\(|image-set|image\(|cross-fade|element\(|src\(|javascript|behavior"
    r"|binding|@import|\\"
)


# Content-ID (lower case) -> the URL an inline image is shown from, for the
# clean() call under way (nh3 calls the filter back within that call).
_INLINE: contextvars.ContextVar[Mapping[str, str]] = contextvars.ContextVar(
    "inline", default=types.MappingProxyType({})
)


def _keep_attribute(remote_images: bool):  # type: ignore[no-untyped-def]
    def keep(tag: str, attribute: str, value: str) -> str | None:
        if attribute == "style" and _BAD_STYLE.search(re.sub(r"\s+", "", value.lower())):
            return None
        scheme, _, rest = value.strip().partition(":")
        if scheme.lower() == "cid" and attribute in ("src", "href"):  # the URL attributes kept
            return _INLINE.get().get(rest.strip().lower()) if tag == "img" else None
        if tag == "img" and attribute == "src":
            if scheme.lower() in ("http", "https"):
                return value if remote_images else None
            return None  # data:, relative: nothing to load here
        return value

    return keep


_CLEANERS: dict[bool, nh3.Cleaner] = {}


def _cleaner(remote_images: bool) -> nh3.Cleaner:
    cleaner = _CLEANERS.get(remote_images)
    if cleaner is None:
        cleaner = _CLEANERS[remote_images] = nh3.Cleaner(
            tags=TAGS,
            clean_content_tags=CONTENT_TAGS,
            attributes=ATTRIBUTES,
            attribute_filter=_keep_attribute(remote_images),
            strip_comments=True,
            link_rel="noopener noreferrer nofollow",
            url_schemes=URL_SCHEMES,
            url_relative="deny",
            filter_style_properties=STYLE_PROPERTIES,
            set_tag_attribute_values={"a": {"target": "_blank"}},
        )
    return cleaner


def clean(html: str, remote_images: bool = False, inline: Mapping[str, str] | None = None) -> str:
    """`html` without any way to run script, submit, redirect or (unless asked)
    load; `inline` maps the Content-IDs (lower case) of the message's inline
    parts to the http(s) URL each `<img src="cid:...">` of them becomes."""
    if not html:
        return ""
    token = _INLINE.set(inline or {})
    try:
        return _cleaner(remote_images).clean(html)
    finally:
        _INLINE.reset(token)


def text(html: str) -> str:
    """The text of `html` (tags dropped, entities decoded), for intros and snippets."""
    import html as html_module

    if not html:
        return ""
    stripped = nh3.clean(html, tags=set(), clean_content_tags=CONTENT_TAGS)
    return html_module.unescape(stripped)
