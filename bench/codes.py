"""`python -m bench.codes`: the CPU cost of app/codes.extract per message,
against the parse of the same message (app/parse.parse_fields, the stage it runs
after) measured in the same run and process; and the precision and recall
of the labelled set (tests/codes_measure.py), overall and per language.

Rows: the bench's typical 4 KB message (bench/client.typical); the labelled
set's mails with a code or a link, and its other mails, each made into a
raw message (text and HTML parts) so the parse has its usual work; the
corpus (../shared/corpus, messages under 200 KB); hostile inputs (extract
alone: the parse of a typical message is their baseline). CPU time is
process time, the best of `--repeat` passes. `--smoke` is seconds long.
"""

from __future__ import annotations

import argparse
import functools
import time
from email.message import EmailMessage

from app.codes import extract
from app.parse import extracts_slowly, parses_slowly
from app.parse import parse_fields as parse
from tests.codes_measure import CORPUS, Message, corpus, labelled, measure

from .client import typical
from .procstat import best_of


def raw_message(subject: str, text: str, html: str) -> bytes:
    message = EmailMessage()
    message["From"] = "Sender <noreply@sender.test>"
    message["To"] = "u@example.com"
    message["Subject"] = subject.replace("\n", " ")
    message.set_content(text or " ")
    if html:
        message.add_alternative(html, subtype="html")
    return message.as_bytes()


def raw(message: Message) -> bytes:
    return raw_message(message.subject, message.text, message.html)


def row(name: str, raws: list[bytes], repeat: int) -> str:
    parsed = [parse(raw) for raw in raws]
    parse_s = best_of(repeat, lambda: [parse(raw) for raw in raws])
    extract_s = best_of(repeat, lambda: [extract(p.subject, p.body, p.html) for p in parsed])
    slowest = 0.0
    for p in parsed:
        start = time.process_time()
        extract(p.subject, p.body, p.html)
        slowest = max(slowest, time.process_time() - start)
    n = len(raws)
    return (
        f"| {name} | {n} | {parse_s / n * 1e6:.0f} | {extract_s / n * 1e6:.0f} | "
        f"{extract_s / parse_s:.2f} | {slowest * 1e6:.0f} |"
    )


HOSTILE = {
    "unclosed 300 KB href": '<a href="https://x.example/?' + "&aaaaaaaaaa" * 30_000,
    "100,000 code words": "code " * 100_000,
    "20,000 token links": '<a href="https://x.example/v/Ab12Cd34Ef56Gh78Ij90">v</a>' * 20_000,
    "300 KB of '<'": "<" * 300_000,
    "30,000 table cells": "<td>1</td>" * 30_000,
}


def hostile_rows(repeat: int) -> list[str]:
    baseline = typical("hostile")
    parse_s = best_of(repeat, lambda: parse(baseline))
    out = []
    for name, payload in HOSTILE.items():
        extract_s = best_of(repeat, functools.partial(extract, "x", payload, payload))
        out.append(
            f"| hostile: {name} | 1 | {parse_s * 1e6:.0f} (4 KB) | {extract_s * 1e6:.0f} | "
            f"{extract_s / parse_s:.2f} | {extract_s * 1e6:.0f} |"
        )
    return out


def cost_table(smoke: bool, repeat: int) -> str:
    messages = list(labelled())
    if smoke:
        messages = messages[::20]
    found = [m for m in messages if m.codes or m.verify_link]
    other = [m for m in messages if not (m.codes or m.verify_link)]
    lines = [
        "| messages | n | parse µs/msg | extract µs/msg | extract / parse | slowest extract µs |",
        "|---|---|---|---|---|---|",
        row("typical 4 KB text (bench/client.py)", [typical(f"t{n}") for n in range(50)], repeat),
        row("labelled: with a code or link", [raw(m) for m in found], repeat),
        row("labelled: neither", [raw(m) for m in other], repeat),
    ]
    if CORPUS.is_dir() and not smoke:
        raws = [p.read_bytes() for p in sorted(CORPUS.rglob("*")) if p.is_file()]
        raws = [r for r in raws if len(r) < 200_000]
        lines.append(row("corpus, messages under 200 KB", raws, repeat))
    lines += hostile_rows(repeat)
    return "\n".join(lines)


def placement(raws: list[bytes]) -> str:
    """Where the service reads each message's codes (app/prepare.py): with a
    parse in a parser process, alone in one (parse.extracts_slowly), or on
    the event loop; and the loop's mean and slowest extraction."""
    slow = [r for r in raws if parses_slowly(r)]
    parsed = [parse(r) for r in raws if not parses_slowly(r)]
    elsewhere = [p for p in parsed if extracts_slowly(p)]
    inline = [p for p in parsed if not extracts_slowly(p)]
    times = []
    for p in inline:
        start = time.process_time()
        extract(p.subject, p.body, p.html)
        times.append(time.process_time() - start)
    mean = sum(times) / len(times) * 1e6 if times else 0.0
    return (
        f"Codes read: {len(slow)} of {len(raws)} with a parse in a parser process, "
        f"{len(elsewhere)} alone in one, {len(inline)} on the event loop "
        f"(mean {mean:.0f} µs, slowest {max(times, default=0) * 1e6:.0f} µs)."
    )


def quality_table(smoke: bool) -> str:
    result = measure(labelled())
    keep = [line for line in result.table().splitlines() if "| source " not in line]
    out = "\n".join(keep)
    if CORPUS.is_dir() and not smoke:
        found = measure(corpus())
        t = found.overall
        out += (
            f"\n| corpus (../shared/corpus) | {t.messages} | {t.code_precision:.3f} | "
            f"{t.code_recall:.3f} | {t.code_tp}/{t.code_fp}/{t.code_fn} | "
            f"{t.link_precision:.3f} | {t.link_recall:.3f} | {t.link_tp}/{t.link_fp}/{t.link_fn} |"
        )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.codes", description=__doc__)
    parser.add_argument("--smoke", action="store_true", help="seconds-long run, for CI")
    parser.add_argument("--repeat", type=int, default=5, help="passes; the best counts")
    args = parser.parse_args()
    repeat = 1 if args.smoke else args.repeat
    print(cost_table(args.smoke, repeat))
    print()
    if CORPUS.is_dir() and not args.smoke:
        print(placement([p.read_bytes() for p in sorted(CORPUS.rglob("*")) if p.is_file()]))
        print()
    print(quality_table(args.smoke))


if __name__ == "__main__":
    main()
