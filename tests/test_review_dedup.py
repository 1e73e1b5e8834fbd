"""Review of resend detection (app/db_dedup.py) through the real server."""

from __future__ import annotations

import socket
import uuid

from .test_dedup import message, rows


class Dialogue:
    """A raw SMTP client: what it writes and when is up to the test."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=30)
        self.replies = self.sock.makefile("rb")
        assert self.reply()[:3] == b"220"

    def reply(self) -> bytes:
        line = self.replies.readline()
        while line[3:4] == b"-":
            line = self.replies.readline()
        return line

    def write(self, data: bytes) -> None:
        self.sock.sendall(data)

    def close(self) -> None:
        self.sock.close()


def stuffed(raw: bytes) -> bytes:
    return raw.replace(b"\r\n.", b"\r\n..") + b".\r\n"


ENVELOPE = b"MAIL FROM:<a@sender.test>\r\nRCPT TO:<box@example.com>\r\nDATA\r\n"


def test_pipelined_second_send_of_the_same_bytes_is_stored(make_server, database_url):
    """PIPELINING (advertised): the next message's MAIL/RCPT/DATA go out with
    the first one's end, before its 250 is seen; but the second message's
    content is sent only after our 354, which follows that 250: the client
    saw it, so the second is a new message and must be stored."""
    server = make_server()
    raw = message(uuid.uuid4().hex)
    client = Dialogue(server.port)
    client.write(b"EHLO client.test\r\n")
    assert client.reply()[:3] == b"250"
    client.write(ENVELOPE)
    assert [client.reply()[:3] for _ in range(3)] == [b"250", b"250", b"354"]
    client.write(stuffed(raw) + ENVELOPE)  # the next transaction pipelined
    assert [client.reply()[:3] for _ in range(4)] == [b"250", b"250", b"250", b"354"]
    client.write(stuffed(raw))  # sent after the 354, so after the first 250 was seen
    assert client.reply()[:3] == b"250"
    client.write(b"QUIT\r\n")
    assert client.reply()[:3] == b"221"
    client.close()
    assert rows(database_url) == ["one", "one"]
