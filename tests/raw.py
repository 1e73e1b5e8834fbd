"""A raw-socket SMTP client: exact bytes out, whole replies in."""

from __future__ import annotations

import re
import socket

REPLY_LINE = re.compile(rb"^[2-5]\d\d[ -].*\r\n$|^[2-5]\d\d\r\n$")


class Raw:
    def __init__(self, port: int, timeout: float = 10, source: str | None = None) -> None:
        self.sock = socket.create_connection(
            ("127.0.0.1", port), timeout=timeout, source_address=(source, 0) if source else None
        )
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.reader = self.sock.makefile("rb")

    def __enter__(self) -> Raw:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.reader.close()
        self.sock.close()

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def reply(self) -> bytes:
        """One whole reply (all lines of a multi-line one); b'' at EOF."""
        lines = []
        while True:
            line = self.reader.readline()
            if not line:
                return b"".join(lines)
            assert REPLY_LINE.match(line), line
            lines.append(line)
            if line[3:4] != b"-":
                return b"".join(lines)

    def cmd(self, line: bytes) -> bytes:
        self.send(line + b"\r\n")
        return self.reply()

    def closed(self) -> bool:
        """True if the server closed the connection (EOF, or reset)."""
        try:
            return self.reader.readline() == b""
        except (ConnectionResetError, TimeoutError):
            return False

    def hello(self) -> Raw:
        assert self.reply().startswith(b"220 ")
        assert self.cmd(b"EHLO raw.test").startswith(b"250")
        return self
