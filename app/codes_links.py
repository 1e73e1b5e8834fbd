"""The HTML side of app/codes.py: an HTML part's visible text, and the
message's verification link. Pure; bounded (linear scans, capped input).

The verification link is the one link that carries a token (a long random
path or query part, or a token/code/key parameter) and that its text, the
words before it, or its own path call a verification, sign-in, reset,
confirmation or invitation. Footers (unsubscribe, privacy, social, images,
downloads, revocation links) never are.
"""

from __future__ import annotations

import html as htmllib
import re
from collections.abc import Callable, Iterator

from . import codes_words as words

MAX_HTML = 300_000  # characters of an HTML part read; the rest is ignored
MAX_URL = 2_000
LABEL_SPAN = 4_000  # how far an <a>'s closing tag is looked for
MAX_LINKS = 200  # links judged per part; the rest are footers anyway

# Zero-width and soft characters senders pad previews with; no-break spaces
# as spaces. str.replace per character: str.translate with a table walks a
# Python dict for every character (4 ms for a 35 KB newsletter).
_HIDDEN = (
    *((chr(c), "") for c in (0x200B, 0x200C, 0x200D, 0x200E, 0x200F, 0x2060, 0xFEFF, 0xAD)),
    ("\xa0", " "),
    ("\u3000", " "),
)


def visible(text: str) -> str:
    """The text without zero-width characters, its no-break spaces as spaces."""
    if text.isascii():  # a C loop: most mail stops here
        return text
    for char, replacement in _HIDDEN:
        if char in text:
            text = text.replace(char, replacement)
    return text


_DROPPED = re.compile(r"<(style|script|head|title|xml)\b", re.I)
_BLOCK = re.compile(
    r"<(?:br|hr|/?p|/?div|/?tr|/h[1-6]|/?li|/table|/ul|/ol|/blockquote|/pre)\b[^<>]*+>", re.I
)
_CELL = re.compile(r"</?t[dh]\b[^<>]*+>", re.I)
_TAG = re.compile(r"<[^<>]*+>")
# Codes drawn one character per table cell (possessive: linear).
_BOXES = re.compile(r"(?<!\S)(?:[0-9A-Z] *+\t[ \t]*+){3,9}[0-9A-Z](?!\S)")
_SPACES = re.compile(r"  +")  # runs only: one regex match per space costs a millisecond
# Preview padding ("&#x200C;&#xFEFF;" x 100): dropped before html.unescape,
# which calls back into Python for every reference.
_ZERO_WIDTH_REFS = re.compile(r"&#(?:x(?:200[b-f]|2060|feff|ad)|820[3-7]|8288|65279|173);", re.I)


def _drop(markup: str) -> str:
    """Markup without comments and the content of style/script/head elements.
    Linear: the next comment and the next such element are each looked for
    once, and again only once passed; an unclosed one ends the document."""
    out: list[str] = []
    pos, comment, block = 0, markup.find("<!--"), _DROPPED.search(markup)
    while comment >= 0 or block is not None:
        if block is None or 0 <= comment < block.start():
            out.append(markup[pos:comment])
            end = markup.find("-->", comment + 4)
            pos = len(markup) if end < 0 else end + 3
        else:
            out.append(markup[pos : block.start()])
            closing = re.compile(rf"</{block.group(1)}\s*>", re.I).search(markup, block.end())
            pos = len(markup) if closing is None else closing.end()
        if 0 <= comment < pos:
            comment = markup.find("<!--", pos)
        if block is not None and block.start() < pos:
            block = _DROPPED.search(markup, pos)
    out.append(markup[pos:])
    return "".join(out)


def html_to_text(markup: str) -> str:
    """The text a reader sees in an HTML part, line breaks where blocks end."""
    markup = _drop(markup[:MAX_HTML])
    markup = _CELL.sub("\t", _BLOCK.sub("\n", markup))
    markup = _ZERO_WIDTH_REFS.sub("", _TAG.sub("", markup))
    text = visible(htmllib.unescape(markup) if "&" in markup else markup)
    return _SPACES.sub(" ", text.replace("\r", ""))


def join_boxes(text: str) -> str:
    """A code drawn one character per table cell ("4\t8\t2\t9\t1\t0", as
    html_to_text writes cells) as one token. For the few hundred characters
    after a code word: on a whole newsletter this pattern costs a millisecond."""
    if "\t" not in text:
        return text
    return _BOXES.sub(lambda m: re.sub(r"\s", "", m.group(0)), text)


# --- the verification link ------------------------------------------------------

_URL = re.compile(r"\bhttps?://[^\s<>\"'`{}|\\^]{3,2000}", re.I)
# Possessive quantifiers: an unclosed quote or tag fails at once, not after
# trying every shorter match (quadratic on a 300 KB attribute).
_ANCHOR = re.compile(
    r"<a\b[^<>]*?\bhref\s*+=\s*+(?:\"([^\"<>]*+)\"|'([^'<>]*+)'|([^\s<>]++))[^<>]*+>", re.I
)
_ANCHOR_END = re.compile(r"</a\s*>", re.I)
_TOKEN_PARAM = re.compile(
    r"[?&#;](?:token|code|key|otp|hash|sig|signature|secret|t|k|ticket|nonce|auth|upn|"
    r"activation_key|[a-z_]{0,20}token)=([^&#\s]{6,})",
    re.I,
)
_SEGMENT = re.compile(r"[A-Za-z0-9_\-]{16,}")
_FOOTNOTE = re.compile(r"^\s*\[(\d{1,3})\]:?\s*$")
_GENERIC = frozenset(words.LINK_GENERIC)
_SOCIAL = words.SOCIAL_HOSTS

Context = Callable[[str], bool]  # does this text (plus the subject) speak of verification?


def blank_urls(text: str) -> str:
    """The text with its URLs replaced by spaces (same length: offsets hold)."""
    return _URL.sub(lambda m: " " * len(m.group(0)), text) if "://" in text else text


def has_token(url: str) -> bool:
    """Does the URL carry a secret: a token-like parameter, or a long random part?"""
    if _TOKEN_PARAM.search(url):
        return True
    path = url.split("://", 1)[-1].partition("/")[2]
    for segment in _SEGMENT.findall(path):
        if any(c.isdigit() for c in segment) and any(c.isalpha() for c in segment):
            return True
    return False


def _has(lower: str, vocabulary: tuple[str, ...]) -> bool:
    return any(word in lower for word in vocabulary)


def _plain(fragment: str) -> str:
    if "<" in fragment:
        fragment = _TAG.sub(" ", fragment)
    return htmllib.unescape(fragment) if "&" in fragment else fragment


Before = Callable[[], str]  # the words before a link, made only when asked for


def _constant(text: str) -> Before:
    return lambda: text


def candidates(text: str, html: str) -> Iterator[tuple[str, str, Before]]:
    """(url, its link text, the words before it) for each link of the message."""
    for count, m in enumerate(_ANCHOR.finditer(html)):
        if count >= MAX_LINKS:
            break
        href = (m.group(1) or m.group(2) or m.group(3) or "")[:MAX_URL]
        href = (htmllib.unescape(href) if "&" in href else href).strip()
        if not href[:8].lower().startswith(("http://", "https://")) or not has_token(href):
            continue
        end = _ANCHOR_END.search(html, m.end(), m.end() + LABEL_SPAN)
        label = _plain(html[m.end() : end.start()]) if end else ""

        def before(at: int = m.start()) -> str:
            return _plain(html[max(0, at - 600) : at])[-200:]

        if end and " ".join(label.split()).lower() in _GENERIC:  # "click <a>here</a> to reset"
            label = f"{before()[-120:]} {label} {_plain(html[end.end() : end.end() + 300])[:80]}"
        yield href, label, before
    for count, m in enumerate(_URL.finditer(text)):
        if count >= MAX_LINKS:
            break
        url = m.group(0).rstrip(".,;:!?)]}>'\"")
        if not has_token(url):
            continue
        words_before = text[max(0, m.start() - 200) : m.start()]
        footnote = _FOOTNOTE.match(words_before.rsplit("\n", 1)[-1])
        if footnote:  # html2text's "text [1]" ... "[1]: url"
            marker = text.find(f"[{footnote.group(1)}]")
            if marker >= 0:
                words_before = text[max(0, marker - 120) : marker]
        yield url, "", _constant(words_before)


def score(url: str, label: str, before: Before, context: Context) -> int:
    """How surely this (token-carrying) link is the verification link; 0: it is not.
    Its text (or the words before it) and its path vote; the words around the
    link speak for it only where its path alone does."""
    lower_url = url.lower()
    host = lower_url.split("://", 1)[-1].split("/", 1)[0]
    if any(
        host == s or host.endswith("." + s) or (s[-1] == "." and host.startswith(s))
        for s in _SOCIAL
    ):
        return 0
    if _has(lower_url, words.LINK_NEVER_URL) or _has(label.lower(), words.LINK_NEVER_TEXT):
        return 0
    path = lower_url.split("://", 1)[-1].partition("/")[2]
    url_score = 2 if _has(path, words.URL_WORDS) else 1 if _has(path, words.URL_WEAK_WORDS) else 0
    labelled = bool(label.strip()) and label.strip() != url
    said = (label if labelled else before()).lower()
    text_score = 3 if _has(said, words.LINK_STRONG) else 1 if _has(said, words.LINK_WEAK) else 0
    if not text_score and labelled and url_score >= 2 and _has(before().lower(), words.LINK_STRONG):
        text_score = 2
    if text_score >= 3 or (url_score >= 2 and (text_score or context(before()))):
        return text_score + url_score
    return 0


def verify_link(text: str, html: str, context: Context) -> str | None:
    """The message's verification link: the best-scored candidate, the first on a tie."""
    if "http" not in text and "http" not in html:
        return None
    best: tuple[int, str] | None = None
    for url, label, before in candidates(text, html):
        points = score(url, label, before, context)
        if points and (best is None or points > best[0]):
            best = (points, url)
    return best[1] if best else None
