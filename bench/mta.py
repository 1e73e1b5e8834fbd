"""The load a real MTA sends: Postfix's smtp-source, one message per connection.

The headline row of `python -m bench`: 20 concurrent sessions, one 4 KB
message per connection (smtp-source's default; no connection reuse), the
service with default settings (durable 250, sender checks recorded) and the
null sink started in the same run. CPU is of the target's own processes
(PostgreSQL apart), per message stored.
"""

from __future__ import annotations

import asyncio
import shutil
import time

from . import procstat
from .rows import Row
from .scenarios import wait_stored
from .targets import Target

SESSIONS = 20
SIZE = 4096


def available() -> bool:
    return shutil.which("smtp-source") is not None


async def smtp_source(
    target: Target,
    count: int,
    *,
    sessions: int = SESSIONS,
    size: int = SIZE,
    recipients: int = 1,
    reuse: bool = False,
) -> tuple[float, int, str]:
    """Send `count` messages with smtp-source; (seconds, exit code, stderr)."""
    command = ["smtp-source", "-s", str(sessions), "-m", str(count), "-l", str(size)]
    command += ["-f", "bench@sender.test", "-t", "u@example.com", "-r", str(recipients)]
    if reuse:
        command.append("-d")
    if recipients > 1:
        command.append("-N")  # a different recipient each: one row each
    command.append(f"127.0.0.1:{target.port}")
    started = time.perf_counter()
    process = await asyncio.create_subprocess_exec(
        *command, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE
    )
    _, stderr = await process.communicate()
    return time.perf_counter() - started, process.returncode or 0, stderr.decode()[-500:]


async def run(target: Target, label: str, count: int, **load: int | bool) -> Row:
    """One smtp-source run: stored msg/s and CPU per message of `target`."""
    rows_per_message = int(load.get("recipients", 1))
    pg_before = procstat.total_cpu(procstat.postgres_pids())
    ours_before = procstat.total_cpu(target.pids())
    stored_before = await target.stored()
    started = time.perf_counter()
    seconds, code, errors = await smtp_source(target, count, **load)  # type: ignore[arg-type]
    if target.database_url is not None:
        seconds = await wait_stored(target, stored_before + count * rows_per_message, started)
    row = Row(run=f"{target.name} {label}")
    row.stored_rate = count / seconds
    row.cpu_ms = procstat.cpu_delta(ours_before, target.pids()) * 1000 / count
    if target.database_url is not None:
        pg = procstat.cpu_delta(pg_before, procstat.postgres_pids())
        row.pg_cpu_ms = pg * 1000 / count
        stored = await target.stored() - stored_before
        row.errors = count * rows_per_message - stored
    row.errors += 1 if code else 0
    if code:
        print(f"smtp-source against {target.name}: exit {code}: {errors}")
    row.rss_mib = ""
    return row
