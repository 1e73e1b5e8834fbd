"""The read side's bench must not rot: a tiny run, no thresholds."""

from __future__ import annotations

import subprocess
import sys

from .helpers import ROOT


def test_api_bench_smoke_runs_and_prints_the_table():
    result = subprocess.run(
        [sys.executable, "-m", "bench.api", "--smoke"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    lines = [line for line in result.stdout.splitlines() if line.startswith("| ")]
    runs = [line.split("|")[1:3] for line in lines[-6:]]
    assert [r[0].strip() for r in runs] == [
        "api", "starlette", "starlette", "starlette", "aiohttp", "aiohttp",
    ]  # fmt: skip
    received, sent = lines[-4].split("|")[10].strip().split("/")  # the loaded Starlette row
    assert received == sent and int(sent) > 0  # every event arrived
