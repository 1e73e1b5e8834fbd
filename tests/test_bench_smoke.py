"""The bench must not rot: a tiny run, no thresholds."""

from __future__ import annotations

import subprocess
import sys

from .helpers import ROOT


def smoke(module: str) -> str:
    """What `python -m <module> --smoke` prints; it must exit 0."""
    result = subprocess.run(
        [sys.executable, "-m", module, "--smoke"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout


def test_bench_smoke_runs_and_prints_the_table():
    stdout = smoke("bench")
    lines = stdout.splitlines()
    assert lines[1].startswith("| run | msg/s accepted | msg/s stored")
    runs = [line.split("|")[1].strip() for line in lines[3:]]
    assert runs == [
        "null sink x1 smtp-source 4KB 1 msg/conn",
        "ours default x1 smtp-source 4KB 1 msg/conn",
        "null sink x1 4KB",
        "null sink x1 paced 100/s",
        "ours instant x1 4KB",
        "ours instant x1 paced 100/s",
        "ours durable x1 4KB",
        "ours durable x1 paced 100/s",
    ]
    assert all(line.rstrip().endswith("| 0 |") for line in lines[3:]), stdout


def test_write_path_bench_smoke_runs_and_prints_the_table():
    stdout = smoke("bench.write_path")
    runs = [line.split("|")[1].strip() for line in stdout.splitlines()[2:]]
    assert [run.split(" (")[0] for run in runs] == [
        "spool 200 x 4 KB, one file each",
        "spool 200 x 4 KB, one batch file",
        "parse typical 4 KB",
        "parse 245 KB Subject of encoded words",
        "slowest 220, nothing else running",
        "slowest 220 while a 245 KB Subject of encoded words is received",
    ], stdout


def test_capacity_bench_smoke_runs_and_prints_the_table():
    stdout = smoke("bench.capacity")
    runs = [line.split("|")[1].strip() for line in stdout.splitlines() if line.startswith("| ")]
    assert runs[-4:] == [
        "receiver 1KB x1 (durable)",
        "receiver 1KB x2 (durable)",
        "PostgreSQL insert, 4 writers, 1,000 rows",
        "PostgreSQL insert, 4 writers, 1,000 rows, API reading at 100/s",
    ], stdout
    reads = [line for line in stdout.splitlines() if "API reading" in line][-1]
    assert reads.split("|")[9].strip(), stdout  # list p50/p99: the API answered
