"""scripts/test on a machine without PostgreSQL: the embedded server (pgserver),
kept running for the whole run and reachable over TCP (the proxy tests need it)."""

from __future__ import annotations

import subprocess

from .helpers import ROOT, clean_environment


def test_the_suite_runs_on_the_embedded_postgresql():
    result = subprocess.run(
        [
            "scripts/test",
            # Through a TCP proxy the test cuts: needs a TCP address, and the
            # server alive after the first connection.
            "tests/test_metrics.py::test_readyz_follows_the_database",
            "-p",
            "no:cacheprovider",
        ],
        cwd=ROOT,
        env={
            **clean_environment(),
            "TEST_POSTGRES": "embedded",
            "TEST_LINT": "0",
            "TEST_JOBS": "0",
        },
        capture_output=True,
        text=True,
        timeout=600,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "the tests use the embedded one (pgserver)" in output
    assert "1 passed" in output
