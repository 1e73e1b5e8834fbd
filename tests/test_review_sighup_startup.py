"""SIGHUP during start-up (found by review): `systemctl reload` just after a
start, or the supervisor forwarding SIGHUP to a worker it has just started,
used to kill the process (SIGHUP's default action) before the service had
installed its reload handler. The command line ignores it from its first
statement, so a SIGHUP at any moment after that is harmless."""

from __future__ import annotations

import signal

from .helpers import Server, eventually


def ignores_sighup(pid: int) -> bool:
    """SIGHUP (signal 1, the lowest bit) is in the process's ignored mask."""
    with open(f"/proc/{pid}/status") as status:
        mask = next(line for line in status if line.startswith("SigIgn:")).split()[1]
    return bool(int(mask, 16) & 1)


def test_sighup_during_start_up_does_not_kill(database_url, tmp_path):
    server = Server({"DATABASE_URL": database_url, "SPOOL_DIR": str(tmp_path / "spool")})
    server.launch()
    try:
        assert server.process is not None
        eventually(lambda: server.exited() or ignores_sighup(server.process.pid))
        assert not server.log, "SIGHUP must be ignored before anything else runs"
        server.process.send_signal(signal.SIGHUP)  # long before the service is up
        server.wait_for_log(r"listening on")
        assert server.process.poll() is None
        assert server.stop() == 0
    finally:
        server.kill()
