"""Real network peers the tests control: a PostgREST-shaped HTTP server, a
plain HTTP counter (heartbeat monitor), and a TCP proxy that can be cut."""

from __future__ import annotations

import json
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit


class _Quiet(BaseHTTPRequestHandler):
    def log_message(self, *args: Any) -> None:
        pass

    def reply(self, status: int, body: bytes = b"", content_type: str = "text/plain") -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


class HTTPFake:
    """Base: a ThreadingHTTPServer on a free loopback port, closed by stop()."""

    def __init__(self, handler: type[BaseHTTPRequestHandler]) -> None:
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.server.fake = self  # type: ignore[attr-defined]
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class PostgREST(HTTPFake):
    """Answers GET /rest/v1/<table>?select=..&order=..&<col>=gt.<v>&offset=..&limit=..
    as Supabase's PostgREST does.

    `tables` is edited by the test; a table's columns are `columns[table]`,
    else the keys of its rows. Like PostgREST: an unknown column (in select,
    order or a filter) is a 400 with PostgreSQL's code 42703, an unknown
    table a 404 with PGRST205, and at most MAX_ROWS rows come back. Without
    `order=` the row order is whatever the table's storage gives, which
    changes as the table does: here it is reversed on every other request.
    `down` makes every request a 503; `requests` records (path, apikey,
    authorization); `after_request(table)` runs after each answer.
    """

    MAX_ROWS = 1000  # PostgREST's max-rows, as Supabase configures it

    def __init__(
        self,
        tables: dict[str, list[dict[str, Any]]],
        key: str,
        columns: dict[str, tuple[str, ...]] | None = None,
    ) -> None:
        self.tables = tables
        self.columns = columns or {}
        self.key = key
        self.down = False
        self.requests: list[tuple[str, str | None, str | None]] = []
        self.after_request: Any = None
        super().__init__(_PostgRESTHandler)

    def known_columns(self, table: str) -> set[str]:
        if table in self.columns:
            return set(self.columns[table])
        return {column for row in self.tables[table] for column in row}


FILTERS = {
    "eq": lambda a, b: a == b,
    "gt": lambda a, b: a > b,
    "gte": lambda a, b: a >= b,
    "lt": lambda a, b: a < b,
    "lte": lambda a, b: a <= b,
}


def _typed(text: str, like: Any) -> Any:
    """A filter value as the column's type (ids may be integers)."""
    return int(text) if isinstance(like, int) and not isinstance(like, bool) else text


class _PostgRESTHandler(_Quiet):
    def error(self, status: int, code: str, message: str) -> None:
        body = {"code": code, "details": None, "hint": None, "message": message}
        self.reply(status, json.dumps(body).encode(), "application/json")

    def do_GET(self) -> None:
        fake: PostgREST = self.server.fake  # type: ignore[attr-defined]
        fake.requests.append(
            (self.path, self.headers.get("apikey"), self.headers.get("Authorization"))
        )
        if fake.down:
            return self.reply(503, b'{"message":"down"}', "application/json")
        if self.headers.get("apikey") != fake.key or (
            self.headers.get("Authorization") != f"Bearer {fake.key}"
        ):
            return self.reply(401, b'{"message":"bad key"}', "application/json")
        url = urlsplit(self.path)
        table = url.path.removeprefix("/rest/v1/")
        if table not in fake.tables:
            message = f"Could not find the table 'public.{table}' in the schema cache"
            return self.error(404, "PGRST205", message)
        query = parse_qs(url.query)
        columns = query.pop("select")[0].split(",")
        order = [part.split(".") for part in query.pop("order", [""])[0].split(",") if part]
        offset = int(query.pop("offset", ["0"])[0])
        limit = min(int(query.pop("limit", [str(fake.MAX_ROWS)])[0]), fake.MAX_ROWS)
        filters = [(column, *values[0].split(".", 1)) for column, values in query.items()]
        named = [*columns, *(o[0] for o in order), *(f[0] for f in filters)]
        unknown = [c for c in named if c not in fake.known_columns(table)]
        if unknown:
            return self.error(400, "42703", f"column {table}.{unknown[0]} does not exist")
        rows = list(fake.tables[table])
        for column, operator, value in filters:
            rows = [
                r for r in rows if FILTERS[operator](r.get(column), _typed(value, r.get(column)))
            ]
        if order:
            for column, *how in reversed(order):
                rows.sort(key=lambda r, c=column: r[c], reverse="desc" in how)
        elif len(fake.requests) % 2 == 0:
            rows.reverse()
        page = [{c: row.get(c) for c in columns} for row in rows[offset : offset + limit]]
        self.reply(200, json.dumps(page).encode(), "application/json")
        if fake.after_request is not None:
            fake.after_request(table)


class Monitor(HTTPFake):
    """A heartbeat monitor: counts GETs."""

    def __init__(self) -> None:
        self.hits = 0
        super().__init__(_MonitorHandler)


class _MonitorHandler(_Quiet):
    def do_GET(self) -> None:
        self.server.fake.hits += 1  # type: ignore[attr-defined]
        self.reply(200, b"ok")


class TCPProxy:
    """Forwards `bind`:<port> (127.0.0.1) to `target`; cut() drops every
    connection and refuses new ones until restore()."""

    def __init__(self, target: tuple[str, int], bind: str = "127.0.0.1") -> None:
        self.target = target
        self.listener = socket.create_server((bind, 0))
        self.port = self.listener.getsockname()[1]
        self.cut_off = False
        self.refused = 0  # connections turned away while cut: each is a client's attempt
        self.sockets: set[socket.socket] = set()
        self.lock = threading.Lock()
        self.running = True
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while self.running:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            if self.cut_off:
                self.refused += 1
                client.close()
                continue
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)
            with self.lock:
                self.sockets |= {client, upstream}
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (source, sink):
                self._close(sock)

    def _close(self, sock: socket.socket) -> None:
        with self.lock:
            self.sockets.discard(sock)
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        sock.close()

    def cut(self) -> None:
        self.cut_off = True
        with self.lock:
            victims = list(self.sockets)
        for sock in victims:
            self._close(sock)

    def restore(self) -> None:
        self.cut_off = False

    def stop(self) -> None:
        self.running = False
        self.cut()
        self.listener.close()
