"""Codes and links stage: a message's subject, text and HTML -> the one-time
codes it shows its reader and its verification link. Pure; never raises;
bounded in time (capped input, linear scans, no backtracking-prone pattern).

A code is a short token (`483920`, `123 456`, `K7Q-9P2`, `BCDF-GHJK`) that a
code word names ("verification code", "Bestätigungscode", "验证码"...: the
word lists of app/codes_words.py, per language): right after it (`code:
483920`, `código es 483920`), alone on a line below it, or just before it
(`483920 is your code`). Words that name other codes (promo, zip, tracking,
booking, meeting) veto it, and a bare "code" counts only where the words
around it speak of verification or sign-in. Numbers glued to signs (#4471,
$12.50, 12:30, 12.03.2025, +1 646 ...), durations and units are never codes.
The link side (HTML text, verification link) is app/codes_links.py.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass

from . import codes_links as links
from . import codes_words as words

log = logging.getLogger("app.codes")

MAX_SUBJECT = 1_000  # characters read of each part; the rest is ignored
MAX_TEXT = 100_000
MAX_CODES = 4
MAX_WORDS = 40  # code words judged per part (a real mail has a handful)
AFTER = 160  # how far after its code word a code may be, on the same line
BEFORE = 40  # how far before it ("483920 is your code")
ALONE_AFTER = 320  # how far below its code word a code alone on its line may be
LINES_BELOW = 2  # how many lines of other words may come between them
CONTEXT_SPAN = 300  # the words around a code word that must speak of verification


@dataclass(frozen=True, slots=True)
class Extracted:
    """What a message offers its reader: codes as shown, and the link to follow."""

    codes: tuple[str, ...] = ()
    verify_link: str | None = None


NOTHING = Extracted()


def extract(subject: str, text: str, html: str) -> Extracted:
    """The codes and verification link of one message; empty when it has none
    (and when anything goes wrong: this must never cost a message)."""
    try:
        view = _View(subject or "", text or "", html or "")
        return Extracted(_codes(view), links.verify_link(view.text, view.html, view.context))
    except Exception:  # a bug here is logged, never raised into the write path
        log.exception("[codes] extraction failed")
        return NOTHING


class _View:
    """The message as the extractor reads it; the HTML's text is made once, on demand."""

    def __init__(self, subject: str, text: str, html: str) -> None:
        self.subject = links.visible(subject[:MAX_SUBJECT])
        self.text = links.visible(text[:MAX_TEXT])
        self.html = html[: links.MAX_HTML]
        self.subject_lower = self.subject.lower()
        self.subject_context = any(w in self.subject_lower for w in words.CONTEXT)
        self.has_text = bool(self.text.strip())
        self._html_text: str | None = None
        self._about: dict[int, bool] = {}

    @property
    def html_text(self) -> str:
        if self._html_text is None:
            self._html_text = links.html_to_text(self.html) if self.html else ""
        return self._html_text

    @property
    def body(self) -> str:
        """The text part, or the HTML's text when there is no text part."""
        return self.text if self.has_text else self.html_text

    def context(self, near: str) -> bool:
        """Do these words, or the subject, speak of verification or sign-in?"""
        near = near.lower()
        return self.subject_context or any(w in near for w in words.CONTEXT)

    def about(self, vocabulary: tuple[str, ...]) -> bool:
        """Is the whole message about this (travel, meetings)? Asked rarely: cached."""
        if id(vocabulary) not in self._about:
            lower = (self.subject + "\n" + self.body).lower()
            self._about[id(vocabulary)] = any(w in lower for w in vocabulary)
        return self._about[id(vocabulary)]


# --- finding the code words ---------------------------------------------------
#
# One regex of some 250 words, case-insensitive, costs about 2 µs a character
# in Python's engine; instead every word is filed under a short stem it
# contains, the stems are found with str.find in the lower-cased text, and
# the words are tried with str.startswith where a stem was found.

_STEMS = (
    "cod",
    "códi",
    "kod",
    "kód",
    "код",
    "otp",
    "pin",
    "pass",
    "token",
    "tan",
    "jeton",
    "токен",
    "トークン",
    "令牌",
    "コード",
    "番号",
    "인증",
    "코드",
    "パス",
    "密码",
    "пароль",
    "senha",
    "contraseña",
    "wachtwoord",
    "mot de passe",
    "kennwort",
    "代码",
    "代碼",
    "码",
    "碼",
    "hasł",
)
_STRONG = frozenset(words.STRONG_CODE)


_Entries = list[tuple[str, int]]  # (word, where its stem is in it), longest first


def _before_stem(text: str, at: int) -> str:
    """What comes just before a stem at `at`: " " and the previous word after a
    space ("verification code"), else the two characters ("gutscheinCOde")."""
    if at and text[at - 1] == " ":
        previous = text[max(0, at - 41) : at - 1].rsplit(None, 1)
        return " " + (previous[-1] if previous else "")
    return text[max(0, at - 2) : at]


def _index() -> dict[str, tuple[_Entries, dict[str, _Entries]]]:
    """stem -> (the words that start with it; the others by what precedes the stem)."""
    index: dict[str, tuple[_Entries, dict[str, _Entries]]] = {}
    for word in sorted(set(words.STRONG_CODE + words.WEAK_CODE), key=len, reverse=True):
        stem = next((s for s in _STEMS if s in word), None)
        if stem is None:
            raise ValueError(f"code word without a stem: {word!r}")
        offset = word.index(stem)
        starting, preceded = index.setdefault(stem, ([], {}))
        if offset < 2 and word[:offset] != " ":
            starting.append((word, offset))
        else:
            preceded.setdefault(_before_stem(word, offset), []).append((word, offset))
    return index


_INDEX = _index()
_ASCII_INDEX = {stem: entries for stem, entries in _INDEX.items() if stem.isascii()}


def _spaced_letter(char: str) -> bool:
    """A letter of a script that writes words apart (not CJK, not Hangul)."""
    return char.isalpha() and not ("\u2e80" <= char <= "\ufaff" or "\uac00" <= char <= "\ud7af")


def _code_words(part: str, lower: str) -> list[tuple[int, int, str]]:
    """(start, end, word) of each code word in `part`, left to right, no overlaps.
    Strong words start a word; weak ones may end a compound ("Gutscheincode",
    judged by _names_a_code) but not follow a digit ("184PIN")."""
    found: list[tuple[int, int, str]] = []
    for stem, (starting, preceded) in (_ASCII_INDEX if lower.isascii() else _INDEX).items():
        at, seen = lower.find(stem), 0
        while at >= 0 and seen < MAX_WORDS:  # only the first MAX_WORDS words are judged
            seen += 1
            entries = preceded.get(_before_stem(lower, at), []) + starting
            for word, offset in entries:
                start = at - offset
                if start >= 0 and lower.startswith(word, start):
                    before = part[start - 1] if start else " "
                    glued = word in _STRONG and _spaced_letter(word[0]) and _spaced_letter(before)
                    if before.isdigit() or glued:
                        continue
                    found.append((start, start + len(word), word))
                    break
            at = lower.find(stem, at + 1)
    found.sort(key=lambda f: (f[0], -f[1]))
    out: list[tuple[int, int, str]] = []
    for item in found:
        if not out or item[0] >= out[-1][1]:
            out.append(item)
    return out


# --- judging them ---------------------------------------------------------------

_NOT_CODE_SPACED = tuple(w for w in words.NOT_CODE if w.isascii() or _spaced_letter(w[0]))
_NOT_CODE_WORDS = frozenset(w for w in _NOT_CODE_SPACED if " " not in w)  # word beginnings
_NOT_CODE_PHRASES = tuple(" " + w for w in _NOT_CODE_SPACED if " " in w)
_LONGEST_NOT_CODE = max(map(len, _NOT_CODE_WORDS))
_NOT_CODE_CJK = tuple(w for w in words.NOT_CODE if not (w.isascii() or _spaced_letter(w[0])))
_COMPOUND_NOT = tuple(w for w in words.NOT_CODE if len(w) >= 3 and " " not in w)
# English compounds of "code" that never name a one-time code.
_NOT_COMPOUND = ("source", "pseudo", "short", "trans", "bytes", "micro", "macro", "barco")
_NON_WORD = re.compile(r"[^\w'’&]+")


def _not_code(around: str) -> bool:
    """Does a word that names another kind of code begin a word here?"""
    spaced = " " + _NON_WORD.sub(" ", around)
    for token in spaced.split():
        for size in range(2, min(len(token), _LONGEST_NOT_CODE) + 1):
            if token[:size] in _NOT_CODE_WORDS:
                return True
    return any(p in spaced for p in _NOT_CODE_PHRASES) or any(w in around for w in _NOT_CODE_CJK)


VETOED, BARE, NAMED = 0, 1, 2  # what _names_a_code says of a code word


def _names_a_code(part: str, start: int, end: int, word: str, view: _View, subject: bool) -> int:
    """Does this code word name a one-time code? VETOED: it names another kind
    (promo, zip, booking...) or is part of another word; BARE: a bare "code" in
    words that do not speak of verification; NAMED: yes."""
    first, last = start, end
    while first > 0 and _spaced_letter(part[first - 1]):  # the compound: "gutscheincode"
        first -= 1
    while last < len(part) and _spaced_letter(part[last]):
        last += 1
    whole = part[first:last].lower()
    inflected = word in _STRONG and len(word) >= 8 and whole.startswith(word)
    if whole != word and not inflected and not whole.endswith(("code", "kode", "kod", "kód")):
        return VETOED  # "codec", "pinned", "tokens"...
    compound = whole[: len(whole) - len(word)] if whole.endswith(word) else ""
    if (
        compound
        and word not in _STRONG
        and (len(compound.strip("-")) < 5 or compound.startswith(_NOT_COMPOUND))
    ):
        return VETOED  # "encode", "unicode", "sourcecode"
    around = f"{part[max(0, first - 24) : first]} {whole} {part[last : last + 14]}".lower()
    if _not_code(around) or any(w in compound for w in _COMPOUND_NOT):
        return VETOED
    if word in words.AMBIGUOUS_CODE and (view.about(words.TRAVEL) or view.about(words.MEETING)):
        return VETOED
    if word in _STRONG or (whole != word and whole.endswith("code")):
        return NAMED
    near = part[max(0, start - CONTEXT_SPAN) : end + CONTEXT_SPAN]
    if subject:  # a subject's code word: the body's first lines say the rest
        near += "\n" + view.body[:CONTEXT_SPAN]
    return NAMED if view.context(near) else BARE


# --- reading the code -----------------------------------------------------------

_CANDIDATE = re.compile(
    r"(?<![A-Za-z0-9@#$€£¥%&/.,:+\-_=~'])"
    r"(\d{3,4}(?:[ -]\d{3,4}){1,2}|[A-Z0-9]{2,5}(?:-[A-Z0-9]{2,5}){1,3}"
    r"|(?=[A-Za-z]{0,23}\d)[A-Za-z0-9]{4,24}|[A-Z]{4,24})"  # words need a digit or capitals
    r"(?![A-Za-z0-9@%/\-_=&~]|[.,:]\d|\s?(?i:€|\$|%|eur\b|usd\b|gbp\b|kg\b|km\b|gb\b|mb\b)"
    r"|\s?(?i:" + "|".join(map(re.escape, sorted(words.UNITS, key=len, reverse=True))) + "))"
)
_CONNECTORS = frozenset(
    "is are was ist lautet est es é è er is: here below now the this your our following to "
    "jest är folgende folgender folgenden ci-dessous suivant siguiente seguinte seguente "
    "volgende ниже следующий 如下 为 為 是 は です: :".split()
)
_BEFORE_CONNECTORS = frozenset(
    "is your ist ihr dein est votre ton es tu su é o seu sua è il tuo la je uw — - : "
    "as als comme como come 为 是 は が の".split()
)
_YOUR = frozenset("your ihr dein votre ton tu su seu sua tuo je uw ваш твой".split())
_COPULAS = frozenset("is ist est es é è is: as als comme como come — - :".split())
_STOP = frozenset(
    "ACCOUNT ACTION ADDRESS BELOW CHANGE CODE CONFIRM CREATE DELETE EMAIL ENTER EXPIRES "
    "HELLO IGNORE IMPORTANT LOGIN MESSAGE NOTICE PASSWORD PLEASE REQUEST REQUESTED RESET "
    "SECURITY SIGNIN SUBJECT THANKS UPDATE URGENT VERIFY WELCOME GENERATED COMPLETE "
    "PASSCODE NUMBER".split()
)
_GAP_WORD = re.compile(r"[^\s:：=\-–—>»\"“„「『【\[(（*]+")
_SENTENCE_END = re.compile(r"[.!?。！？](?:\s|$)|\n\s*\n")
_UNIT = re.compile(
    r"^\d+(?:st|nd|rd|th|h|hr|hrs|min|mins|s|sec|p|px|k|m|g|t|kb|mb|gb|tb|hz|khz|mhz|ghz|w|kw|"
    r"v|mah|mm|cm|ml|l|x|fps|dpi|bit|bits|kbps|mbps|am|pm)$",
    re.I,
)


def _codes(view: _View) -> tuple[str, ...]:
    found: dict[str, str] = {}  # normalised -> as shown, first seen first
    _scan(view.subject, view, found, subject=True)
    _scan(view.body, view, found)
    if not found and view.has_text and view.html:
        _scan(view.html_text, view, found)  # a text part without the code
    return tuple(found.values())[:MAX_CODES]


def _scan(part: str, view: _View, found: dict[str, str], subject: bool = False) -> None:
    lower = part.lower()
    if len(lower) != len(part):  # a few characters lower-case to two ("İ"): keep offsets
        lower = "".join(c if len(c.lower()) != 1 else c.lower() for c in part)
    words_found = _code_words(part, lower)
    if not words_found:
        return
    part = links.blank_urls(part)  # codes are never inside URLs
    for start, end, word in words_found[:MAX_WORDS]:
        if len(found) >= MAX_CODES:
            return
        verdict = _names_a_code(part, start, end, word, view, subject)
        if verdict == NAMED:
            code = _after(part, end) or _before(part, start)
        else:  # even a bare "code" is one in "483920 is your (Acme) code"
            code = _before(part, start, owned=True) if verdict == BARE else None
        if code:
            found.setdefault(re.sub(r"[\s-]", "", code).upper(), code)


def _valid(token: str, strict: bool) -> bool:
    """Is this token shaped like a code? `strict`: right after its code word or
    alone on its line, where letters-only codes and year-like numbers may be."""
    clean = token.replace(" ", "").replace("-", "")
    digits = sum(c.isdigit() for c in clean)
    if digits == len(clean):
        groups = re.split(r"[\s-]", token)
        if len(groups) > 1 and any(len(g) > len(groups[0]) for g in groups[1:]):
            return False  # 555 123 4567: a phone number's shape
        return 4 <= len(clean) <= 10 and (strict or not re.match(r"(19|20)\d\d$", clean))
    if digits == 0:
        return (
            strict
            and token.isupper()
            and (6 <= len(clean) <= 12 if "-" not in token else len(clean) >= 6)
            and not any(g in _STOP for g in token.split("-"))
        )
    if " " in token or (len(clean) > 12 and not any(c.islower() for c in clean) and digits < 2):
        return False
    if len(clean) < 6 and digits < 2:
        return False  # SHA1, SSH2, MP3
    return not _UNIT.match(clean)


def _mostly_digits(token: str) -> bool:
    """Digits, or digits with capitals (K7Q-9P2): not a user name like "maria39"."""
    return any(c.isdigit() for c in token) and not any(c.islower() for c in token)


def _alone(window: str, start: int, end: int) -> bool:
    line_start = window.rfind("\n", 0, start) + 1
    line_end = window.find("\n", end)
    rest = window[line_start:start] + window[end : len(window) if line_end < 0 else line_end]
    return not rest.strip(" \t*_[]()【】「」『』<>\"'“”«»:：.,")


def _glued(window: str, start: int, end: int) -> bool:
    """Part of a longer run of digit groups (phone, card numbers), or an argument
    or index glued to a name ("ubiquity[4446]")."""
    return (
        bool(re.search(r"\d[ -]$", window[max(0, start - 2) : start]))
        or bool(re.match(r"[ -]\d", window[end : end + 2]))
        or (start >= 2 and window[start - 1] in "[(" and window[start - 2].isalnum())
    )


def _after(part: str, pos: int) -> str | None:
    """The code after its code word: in its slot (`code: X`, `code is X`), alone
    on a line below, or (digits) a few words on in the same sentence."""
    window = links.join_boxes(part[pos : pos + ALONE_AFTER])
    for m in _CANDIDATE.finditer(window):
        token, start = m.group(1), m.start(1)
        if _glued(window, start, m.end(1)):
            continue
        gap = window[:start]
        slot = all(w.lower() in _CONNECTORS for w in _GAP_WORD.findall(gap))
        below = sum(1 for line in gap.split("\n")[1:] if line.strip()) <= LINES_BELOW
        alone = below and _alone(window, start, m.end(1))
        if (slot or alone) and _valid(token, strict=True):
            return token
        said = gap.split()
        same_sentence = "\n" not in gap and not _SENTENCE_END.search(gap.rstrip(" :："))
        # a few words on, or right after the sentence's verb: "... for card 4821 is 840086"
        near = len(said) <= 8 or (bool(said) and said[-1].lower().rstrip(":") in _COPULAS)
        if start <= AFTER and same_sentence and near and _mostly_digits(token):
            if _valid(token, strict=False):
                return token
    return None


def _before(part: str, pos: int, owned: bool = False) -> str | None:
    """The code just before its code word: "483920 is your (Acme) code"; `owned`:
    only with the "your" ("ist Ihr", "est votre"...)."""
    window = part[max(0, pos - BEFORE) : pos]
    best = None
    for m in _CANDIDATE.finditer(window):
        gap = window[m.end(1) :]
        if "\n" in gap or _glued(window, m.start(1), m.end(1)):
            continue
        said = gap.split()
        others = [w for w in said if w.lower() not in _BEFORE_CONNECTORS and w.isascii()]
        copula = any(w.lower() in _COPULAS for w in said) or not gap.isascii()
        if owned and not any(w.lower() in _YOUR for w in said):
            continue
        if copula and len(others) <= 1 and _valid(m.group(1), strict=True):
            best = m.group(1)
    return best
