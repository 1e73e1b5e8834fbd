"""Instant mode with the database unreachable and the spool broken (found by
review): new mail kept getting 250 into memory, then was lost at SIGTERM.
Now the spool is looked at every 2 s and probed with a real file during an
outage: once it cannot take a file, new mail gets 451; what was accepted
stays in memory and is written when the database comes back."""

from __future__ import annotations

from .helpers import db_address, eventually, query, with_port
from .netfakes import TCPProxy
from .test_promises import send


def test_broken_spool_during_an_outage_gets_451_and_keeps_what_it_took(
    make_server, database_url, tmp_path
):
    proxy = TCPProxy(db_address(database_url))
    try:
        server = make_server(database_url=with_port(database_url, proxy.port), ack_mode="instant")
        proxy.cut()
        spool, moved = tmp_path / "spool", tmp_path / "spool.moved"
        spool.rename(moved)
        spool.write_text("the disk went read-only")  # nothing can be created under it
        outcomes: dict[str, int] = {}

        def refused() -> bool:
            subject = f"during-{len(outcomes)}"
            outcomes[subject] = send(server.port, subject)[0]
            return outcomes[subject] == 451

        eventually(refused, timeout=60)
        assert "cannot write the spool" in server.log
        proxy.restore()  # the database first: what was accepted is written
        accepted = {subject for subject, code in outcomes.items() if code == 250}
        eventually(
            lambda: accepted <= {r[0] for r in query(database_url, "SELECT subject FROM emails")}
        )
        spool.unlink()
        moved.rename(spool)
        eventually(lambda: send(server.port, "after")[0] == 250, timeout=60)
        print(f"broken spool in an outage: {len(accepted)} accepted (kept), then 451")
    finally:
        proxy.stop()
