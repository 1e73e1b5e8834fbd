"""Review of issue 23: a zip inside a zip does not hide a dangerous file.

Before the fix only one level was opened, and an inner archive was never
judged: `photos.zip` holding `inner.zip` holding a PE named `readme.txt`
(or plainly `setup.exe`) was stored as clean mail. The inner archives
opened are bounded (3 levels, 8 inner zips of 2 MiB each per attachment)."""

from __future__ import annotations

import pytest

from .defence_helpers import send, stored
from .test_defence_content import PE, mail, zipped

INNER_KIND = "archive holding archive holding "


@pytest.mark.parametrize(
    "inner, kind",
    [
        (("readme.txt", PE), "executable (application/x-msdownload) (readme.txt)"),
        (("setup.exe", b"hello"), "a .exe file (setup.exe)"),
    ],
)
def test_a_zip_in_a_zip_is_judged(make_server, database_url, inner, kind):
    server = make_server()  # CONTENT_CHECKS=record
    attachment = ("photos.zip", zipped("inner.zip", zipped(*inner)))
    _, code, reply = send(server.port, data=mail(attachment=attachment))
    assert code == 250
    row = stored(database_url, reply)
    assert row["junk"] is True
    found = row["verdicts"]["content"]["attachments"]
    assert found == [{"filename": "photos.zip", "kind": f"{INNER_KIND}{kind} (inner.zip)"}]
