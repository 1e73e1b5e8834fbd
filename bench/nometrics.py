"""`python -m bench.nometrics serve`: the service with every metric update a no-op.

The "off" side of the metrics A/B in `python -m bench --only metrics`: the
same process as `python -m app`, except that prometheus-client's Counter,
Gauge and Histogram updates do nothing, so the difference is what the
instrumentation costs.
"""

from __future__ import annotations

from typing import Any

from prometheus_client import metrics


def _nothing(self: Any, *args: Any, **kwargs: Any) -> None:
    return None


for kind, updates in (
    (metrics.Counter, ("inc",)),
    (metrics.Gauge, ("inc", "dec", "set")),
    (metrics.Histogram, ("observe",)),
):
    for update in updates:
        setattr(kind, update, _nothing)

if __name__ == "__main__":
    from app.__main__ import main

    raise SystemExit(main())
