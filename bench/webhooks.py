"""`python -m bench.webhooks`: what webhooks add to the batch writer's CPU
per message (app/webhooks_outbox.Outbox.statement, run before each batch's
commit), against the parse of the same message (app/parse.parse).

Rows: no endpoint at all (the common case: nothing is built); endpoints
for other addresses only; a global endpoint (every row gets a payload,
codes and link extracted once per message). A batch of BATCH messages of
the bench's typical 4 KB; CPU is process time, the best of `--repeat`
passes. `--smoke` is seconds long.
"""

from __future__ import annotations

import argparse
import functools

from app.model import Envelope, Prepared
from app.parse import parse
from app.webhooks_outbox import Outbox

from .client import typical
from .procstat import best_of

BATCH = 200


def batch(count: int) -> list[Prepared]:
    prepared = []
    for n in range(count):
        raw = typical(f"bench {n}: your code is 482913")
        envelope = Envelope.new("bench@sender.test", ("u@example.com",), raw, "192.0.2.1", "b")
        prepared.append(Prepared(envelope, parse(raw), None))
    return prepared


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--smoke", action="store_true", help="a seconds-long run")
    args = parser.parse_args()
    repeat = 2 if args.smoke else args.repeat
    messages = batch(20 if args.smoke else BATCH)
    raws = [p.envelope.raw for p in messages]
    parse_s = best_of(repeat, lambda: [parse(raw) for raw in raws])
    parse_ms = parse_s / len(raws) * 1e3
    print(f"{len(messages)} messages of {len(raws[0])} bytes; parse {parse_ms:.3f} ms each")
    print("| endpoints | CPU per message | x parse |")
    print("|---|---|---|")
    for name, subscribed in (
        ("none", []),
        ("100 other addresses", [f"other{n}@example.com" for n in range(100)]),
        ("global", [None]),
    ):
        outbox = Outbox()
        outbox.update(subscribed)
        spent = best_of(repeat, functools.partial(outbox.statement, messages))
        each = spent / len(messages)
        print(f"| {name} | {each * 1e3:.4f} ms | {each / (parse_s / len(raws)):.2f} |")


if __name__ == "__main__":
    main()
