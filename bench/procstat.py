"""CPU time and memory of processes, read from /proc; the least CPU time of a
few runs of some work in this process."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Callable

TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU of one process."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / TICK


def family(pid: int) -> list[int]:
    """`pid` and its children (the workers of a supervisor)."""
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout
    return [pid, *(int(child) for child in out.split())]


def postgres_pids() -> list[int]:
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/comm") as comm:
                    if comm.read().startswith("postgres"):
                        pids.append(int(entry))
            except OSError:
                continue
    return pids


def total_cpu(pids: list[int]) -> dict[int, float]:
    return {pid: cpu_seconds(pid) for pid in pids}


def cpu_delta(before: dict[int, float], pids: list[int]) -> float:
    """CPU used since `before` by `pids` (new processes count from zero)."""
    return sum(cpu_seconds(pid) - before.get(pid, 0.0) for pid in pids)


def memory_kib(pid: int, field: str = "VmHWM") -> int:
    """VmHWM (peak RSS) or VmRSS of a process, in KiB."""
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def best_of(repeat: int, work: Callable[[], object]) -> float:
    """Least process time of `repeat` runs of work(), in seconds."""
    times = []
    for _ in range(repeat):
        start = time.process_time()
        work()
        times.append(time.process_time() - start)
    return min(times)
