"""Opening a port, as serve and api both do: the one line that says why a
port could not be opened, naming the setting to change (`problem`, pure),
and telling whoever started us that we now listen (`ready`).

`ready` speaks systemd's notify protocol (sd_notify: READY=1 and a STATUS
line, one datagram to the unix socket named by NOTIFY_SOCKET). `tempmail
run` (scripts/serve) gives each of its two processes such a socket and
says where SMTP and the page are once both are ready; systemd would do the
same for a Type=notify unit. Without NOTIFY_SOCKET it does nothing.
"""

from __future__ import annotations

import errno
import logging
import os
import socket

log = logging.getLogger("app.listening")


def problem(setting: str, host: str, port: int, error: OSError) -> str:
    """Why `host`:`port` (the value of `setting`) could not be listened on, and what to do."""
    where = f"cannot listen on {host}:{port} ({setting}={port})"
    if error.errno == errno.EACCES:
        return (
            f"{where}: permission denied. Ports below 1024 need root or "
            "CAP_NET_BIND_SERVICE (the unit in deploy/systemd grants it), "
            f"or set {setting} to a port above 1023"
        )
    if error.errno == errno.EADDRINUSE:
        return f"{where}: the port is in use by another program; stop it or set {setting}"
    if error.errno == errno.EADDRNOTAVAIL:
        return f"{where}: {host} is not an address of this machine"
    return f"{where}: {error.strerror or error}"


def ready(status: str) -> None:
    """Tell whoever started us that we are ready, and `status` (one line)."""
    path = os.environ.get("NOTIFY_SOCKET")
    if not path:
        return
    address = "\0" + path[1:] if path.startswith("@") else path  # "@": the abstract namespace
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            sock.sendto(f"READY=1\nSTATUS={status}".encode(), address)
    except OSError as error:  # whoever asked is gone: nothing to tell
        log.debug("[notify] %s: %s", path, error)
