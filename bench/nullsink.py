"""The ceiling of our stack: aiosmtpd on uvloop, accepting and discarding.

`python -m bench.nullsink PORT [WORKERS]`: same aiosmtpd options as the
service (SMTPUTF8, fixed hostname, size limit), N processes with SO_REUSEPORT.
"""

from __future__ import annotations

import asyncio
import os
import resource
import signal
import sys

import uvloop
from aiosmtpd.smtp import SMTP


class Discard:
    async def handle_DATA(self, server: SMTP, session: object, envelope: object) -> str:
        return "250 2.0.0 OK"


async def serve(port: int) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: SMTP(
            Discard(),
            hostname="sink.bench",
            enable_SMTPUTF8=True,
            data_size_limit=25 * 1024 * 1024,
            ident="ESMTP",
        ),
        "127.0.0.1",
        port,
        reuse_port=True,
        backlog=1024,
    )
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    await stop.wait()
    server.close()


def main() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    port, workers = int(sys.argv[1]), int(sys.argv[2]) if len(sys.argv) > 2 else 1
    children = [os.fork() for _ in range(workers - 1)]
    if 0 in children:  # a child: serve
        uvloop.run(serve(port))
        return
    try:
        uvloop.run(serve(port))
    finally:
        for pid in children:
            os.kill(pid, signal.SIGTERM)
            os.waitpid(pid, 0)


if __name__ == "__main__":
    main()
