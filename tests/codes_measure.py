"""Precision and recall of app/codes.py on the labelled set (tests/data/codes)
and on ../shared/corpus (its labels in tests/data/codes/corpus_labels.json):
shared by tests/test_codes.py (the thresholds) and bench/codes.py (the report)."""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from app.codes import Extracted, extract

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "tests" / "data" / "codes"
CORPUS = ROOT.parent / "shared" / "corpus"
CORPUS_LABELS = DATA / "corpus_labels.json"

Extractor = Callable[[str, str, str], Extracted]


@dataclass
class Message:
    source: str  # the data file ("allauth") or "corpus"
    ident: str
    lang: str
    subject: str
    text: str
    html: str
    codes: tuple[str, ...]
    verify_link: str | None


def labelled() -> Iterator[Message]:
    for path in sorted(DATA.glob("*.json")):
        if path == CORPUS_LABELS:
            continue
        for m in json.loads(path.read_text(encoding="utf-8"))["messages"]:
            yield Message(path.stem, m["id"], m["lang"], m["subject"], m["text"], m["html"],
                          tuple(m["codes"]), m["verify_link"])  # fmt: skip


def corpus() -> Iterator[Message]:
    """The shared corpus, parsed by our parser (absent: nothing)."""
    from app.parse import parse

    from .helpers import corpus_files

    if not CORPUS.is_dir():
        return
    labels = json.loads(CORPUS_LABELS.read_text(encoding="utf-8"))["messages"]
    for path in corpus_files():
        name = str(path.relative_to(CORPUS))
        label = labels.get(name, {"codes": [], "verify_link": None})
        mail = parse(path.read_bytes())
        yield Message("corpus", name, "corpus", mail.subject, mail.body, mail.html,
                      tuple(label["codes"]), label["verify_link"])  # fmt: skip


def normal(code: str) -> str:
    """Codes compare without their separators and case: "123 456" is "123456"."""
    return "".join(c for c in code if c.isalnum()).upper()


@dataclass
class Tally:
    code_tp: int = 0
    code_fp: int = 0
    code_fn: int = 0
    link_tp: int = 0
    link_fp: int = 0
    link_fn: int = 0
    messages: int = 0

    @staticmethod
    def ratio(good: int, bad: int) -> float:
        return good / (good + bad) if good + bad else 1.0

    @property
    def code_precision(self) -> float:
        return self.ratio(self.code_tp, self.code_fp)

    @property
    def code_recall(self) -> float:
        return self.ratio(self.code_tp, self.code_fn)

    @property
    def link_precision(self) -> float:
        return self.ratio(self.link_tp, self.link_fp)

    @property
    def link_recall(self) -> float:
        return self.ratio(self.link_tp, self.link_fn)

    def add(self, message: Message, got: Extracted) -> None:
        expected = {normal(c) for c in message.codes}
        found = {normal(c) for c in got.codes}
        self.messages += 1
        self.code_tp += len(expected & found)
        self.code_fp += len(found - expected)
        self.code_fn += len(expected - found)
        if got.verify_link is not None and got.verify_link == message.verify_link:
            self.link_tp += 1
            return
        self.link_fp += got.verify_link is not None
        self.link_fn += message.verify_link is not None


@dataclass
class Measure:
    """Tallies overall, per language and per source; the messages it got wrong."""

    tallies: dict[str, Tally] = field(default_factory=lambda: defaultdict(Tally))
    wrong: list[tuple[Message, Extracted]] = field(default_factory=list)

    @property
    def overall(self) -> Tally:
        return self.tallies["all"]

    def table(self) -> str:
        lines = [
            "| set | messages | codes P | codes R | code tp/fp/fn | links P | links R "
            "| link tp/fp/fn |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for key, t in sorted(self.tallies.items(), key=lambda kv: (kv[0] != "all", kv[0])):
            lines.append(
                f"| {key} | {t.messages} | {t.code_precision:.3f} | {t.code_recall:.3f} | "
                f"{t.code_tp}/{t.code_fp}/{t.code_fn} | {t.link_precision:.3f} | "
                f"{t.link_recall:.3f} | {t.link_tp}/{t.link_fp}/{t.link_fn} |"
            )
        return "\n".join(lines)


def measure(messages: Iterator[Message], extractor: Extractor = extract) -> Measure:
    result = Measure()
    for message in messages:
        got = extractor(message.subject, message.text, message.html)
        for key in ("all", f"lang {message.lang}", f"source {message.source}"):
            result.tallies[key].add(message, got)
        if {normal(c) for c in got.codes} != {normal(c) for c in message.codes} or (
            got.verify_link != message.verify_link
        ):
            result.wrong.append((message, got))
    return result
