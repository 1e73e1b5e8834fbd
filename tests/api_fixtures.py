"""Fixtures of the API tests (imported by each tests/test_api_*.py module).

`stack` is the whole product on one fresh database: the real SMTP service
(conftest's make_server) and `python -m app api` beside it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator

import httpx
import pytest

from .api_helpers import ApiServer
from .helpers import Server, query


@dataclasses.dataclass
class Stack:
    smtp: Server
    api: ApiServer
    database_url: str

    def client(self, token: str | None = None, **headers: str) -> httpx.Client:
        if token:
            headers["Authorization"] = f"Bearer {token}"
        return httpx.Client(base_url=self.api.url, headers=headers, timeout=30)


@pytest.fixture
def make_stack(make_server, database_url, tmp_path) -> Iterator[Callable[..., Stack]]:
    """Start the SMTP service and the API; API settings as keyword arguments,
    `private_email` rows the website had written before the API started."""
    apis: list[ApiServer] = []

    def make(private_email: tuple[str, ...] = (), **settings: str) -> Stack:
        smtp = make_server()
        for address in private_email:
            query(database_url, "INSERT INTO private_email (email) VALUES ($1)", address)
        api = ApiServer(database_url, str(tmp_path / "data"), **settings)
        apis.append(api)
        api.start()
        return Stack(smtp, api, database_url)

    yield make
    for api in apis:
        if api.process is not None and api.process.poll() is None:
            api.kill()


@pytest.fixture
def stack(make_stack) -> Stack:
    return make_stack()
