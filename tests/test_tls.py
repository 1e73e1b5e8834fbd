"""STARTTLS: offered with a certificate, TLS 1.2+, marked on the mail, reloaded live."""

from __future__ import annotations

import signal
import smtplib
import socket
import ssl
import subprocess
import threading
import warnings

import pytest

from .helpers import as_sent, eventually, query


def make_certificate(directory, name: str) -> tuple[str, str]:
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "3",
            "-subj",
            f"/CN={name}",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
    )
    return str(cert), str(key)


def client_context(maximum: ssl.TLSVersion | None = None) -> ssl.SSLContext:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    if maximum is not None:
        with warnings.catch_warnings():  # old versions are deprecated: that is the point
            warnings.simplefilter("ignore", DeprecationWarning)
            context.minimum_version = ssl.TLSVersion.MINIMUM_SUPPORTED
            context.maximum_version = maximum
    return context


def peer_common_name(client: smtplib.SMTP) -> str:
    der = client.sock.getpeercert(binary_form=True)  # type: ignore[union-attr]
    pem = ssl.DER_cert_to_PEM_cert(der)
    out = subprocess.run(
        ["openssl", "x509", "-noout", "-subject"],
        input=pem,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return out.strip().rsplit("=", 1)[-1].strip()


@pytest.fixture
def tls_server(make_server, tmp_path):
    cert, key = make_certificate(tmp_path, "first.test")
    return make_server(tls_cert=cert, tls_key=key), tmp_path


def test_starttls_mail_is_marked(tls_server, database_url):
    server, _ = tls_server
    with smtplib.SMTP("127.0.0.1", server.port, timeout=10) as client:
        client.ehlo("tls.test")
        assert client.has_extn("starttls")
        client.starttls(context=client_context())
        assert client.sock.version() in ("TLSv1.2", "TLSv1.3")  # type: ignore[union-attr]
        client.ehlo("tls.test")
        assert not client.has_extn("starttls")  # not offered twice
        client.sendmail("a@sender.test", ["t@example.com"], b"Subject: secret\r\n\r\nx\r\n")
    rows = eventually(
        lambda: query(
            database_url, "SELECT e.tls, r.raw FROM emails e JOIN raw_messages r ON r.id = e.raw_id"
        )
    )
    assert rows[0]["tls"] is True
    assert b" with ESMTPS id " in rows[0]["raw"].split(b"\r\n")[0]
    assert as_sent(rows[0]["raw"]) == b"Subject: secret\r\n\r\nx\r\n"


def test_plain_mail_is_not_marked(tls_server, database_url):
    server, _ = tls_server
    with smtplib.SMTP("127.0.0.1", server.port, timeout=10) as client:
        client.sendmail("a@sender.test", ["p@example.com"], b"Subject: plain\r\n\r\nx\r\n")
    rows = eventually(lambda: query(database_url, "SELECT tls FROM emails"))
    assert rows[0]["tls"] is False


def test_swaks_tls(tls_server, database_url):
    server, _ = tls_server
    result = subprocess.run(
        [
            "swaks",
            "--server",
            f"127.0.0.1:{server.port}",
            "--tls",
            "--to",
            "s@example.com",
            "--from",
            "x@sender.test",
        ],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 0, result.stdout
    assert "TLS started" in result.stdout
    eventually(lambda: query(database_url, "SELECT tls FROM emails") == [(True,)])


def legacy_client() -> ssl.SSLContext:
    """A client that offers TLS 1.0 and 1.1 only. OpenSSL 3 refuses them at its
    default security level: SECLEVEL=0 lets it offer them for real."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    context.set_ciphers("DEFAULT:@SECLEVEL=0")
    with warnings.catch_warnings():  # old versions are deprecated: that is the point
        warnings.simplefilter("ignore", DeprecationWarning)
        context.minimum_version = ssl.TLSVersion.TLSv1
        context.maximum_version = ssl.TLSVersion.TLSv1_1
    return context


def permissive_server(cert: str, key: str) -> tuple[int, threading.Thread]:
    """The control: a TLS server that does accept 1.1, on a free port, for one handshake."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.set_ciphers("DEFAULT:@SECLEVEL=0")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        context.minimum_version = ssl.TLSVersion.TLSv1
    context.load_cert_chain(cert, key)
    listener = socket.create_server(("127.0.0.1", 0))

    def serve_one() -> None:
        conn, _ = listener.accept()
        with listener, context.wrap_socket(conn, server_side=True) as tls:
            tls.recv(1)

    thread = threading.Thread(target=serve_one, daemon=True)
    thread.start()
    return listener.getsockname()[1], thread


def test_old_tls_versions_refused(tls_server):
    server, directory = tls_server
    control_port, control = permissive_server(
        str(directory / "cert.pem"), str(directory / "key.pem")
    )
    with socket.create_connection(("127.0.0.1", control_port), timeout=10) as sock:
        with legacy_client().wrap_socket(sock) as tls:
            assert tls.version() == "TLSv1.1"  # this client really offers 1.1
            tls.sendall(b"x")
    control.join(10)
    with smtplib.SMTP("127.0.0.1", server.port, timeout=10) as client:
        client.ehlo("old.test")
        with pytest.raises((ssl.SSLError, OSError)):
            client.starttls(context=legacy_client())


def test_certificate_reloaded_on_sighup_without_dropping_sessions(tls_server):
    server, directory = tls_server
    open_session = smtplib.SMTP("127.0.0.1", server.port, timeout=10)
    open_session.starttls(context=client_context())
    assert peer_common_name(open_session) == "first.test"
    make_certificate(directory, "renewed.test")  # certbot writes new files
    assert server.process is not None
    server.process.send_signal(signal.SIGHUP)
    server.wait_for_log(r"certificate loaded")
    with smtplib.SMTP("127.0.0.1", server.port, timeout=10) as client:
        client.starttls(context=client_context())
        assert peer_common_name(client) == "renewed.test"
    assert open_session.noop()[0] == 250  # the old session goes on
    open_session.quit()
