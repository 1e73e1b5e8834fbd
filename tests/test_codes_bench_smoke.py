"""The codes bench must not rot: a seconds-long run, no thresholds."""

from __future__ import annotations

import subprocess
import sys

from .helpers import ROOT


def test_codes_bench_smoke_runs_and_prints_its_tables():
    result = subprocess.run(
        [sys.executable, "-m", "bench.codes", "--smoke"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    rows = [line.split("|")[1].strip() for line in result.stdout.splitlines() if "| " in line]
    assert rows[0] == "messages" and rows[1].startswith("typical 4 KB")
    assert "labelled: with a code or link" in rows and "set" in rows and "all" in rows
    assert any(row.startswith("hostile:") for row in rows)
