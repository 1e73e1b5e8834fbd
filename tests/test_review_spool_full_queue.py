"""Review (issue 21 item 10): a full queue is spooled at shutdown, fast, and
replayed intact.

Shutdown spooling fsynced one file at a time (2,000 queued messages took 7 s
after the 20 s drain; the default QUEUE_SIZE of 10,000 would pass systemd's
60 s TimeoutStopSec). Now the queue goes into one batch file, fsynced once
(bench/write_path.py measures it). Here the database is cut, the
queue filled until senders get 451, the service stopped, and the next start
stores every acknowledged message exactly once, byte for byte.
"""

from __future__ import annotations

from app.spool import Spool

from .helpers import db_address, eventually, with_port
from .load import Load, assert_kept, verify
from .netfakes import TCPProxy

QUEUE = 1000


def test_a_full_queue_is_spooled_and_replayed_intact(make_server, database_url, tmp_path):
    proxy = TCPProxy(db_address(database_url))
    pending = tmp_path / "spool" / "pending"
    try:
        url = with_port(database_url, proxy.port)
        server = make_server(
            database_url=url, ack_mode="instant", queue_size=str(QUEUE), drain_timeout="1"
        )
        proxy.cut()
        load = Load(server.port, sessions=8, per_session=QUEUE).start()
        load.wait_for(451, at_least=8)  # the queue is full
        load.stop.set()
        load.join()
        accepted = load.count(250)
        assert accepted >= QUEUE * 8 // 10, accepted  # past the high-water mark
        assert server.stop() == 0
        assert f"spooled {accepted} messages" in server.log, server.log[-2000:]
        assert Spool(tmp_path / "spool").counts() == (accepted, 0)
        assert not list(pending.glob("*.tmp"))
        proxy.restore()
        make_server(database_url=url, ack_mode="instant")  # replays the spool
        eventually(lambda: not list(pending.glob("*.msg")), timeout=60)
    finally:
        proxy.stop()
    figures = verify(load, database_url)
    assert figures["stored"] == accepted
    assert_kept(figures)  # each once, with the exact bytes sent
