"""STARTTLS certificates: an SSL context that follows the files on disk.

TLS 1.2 or newer only. The context is rebuilt on SIGHUP or when the
certificate or key file changes (certbot renewals); sessions already
running keep the context they started with, new ones get the new one.
A renewal that fails to load keeps the old context and is logged.
"""

from __future__ import annotations

import datetime
import logging
import os
import ssl

from cryptography import x509

log = logging.getLogger("app.tls")


def build_context(cert: str, key: str) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(cert, key)
    return context


def certificate_expiry(cert: str) -> datetime.datetime:
    """The notAfter of the first certificate in the PEM file, in UTC."""
    with open(cert, "rb") as handle:
        certificate = x509.load_pem_x509_certificate(handle.read())
    return certificate.not_valid_after_utc


class CertificateHolder:
    def __init__(self, cert: str, key: str) -> None:
        self.cert = cert
        self.key = key
        self.context = build_context(cert, key)
        self._stamp = self._file_stamp()

    def _file_stamp(self) -> tuple[float, float]:
        return os.stat(self.cert).st_mtime, os.stat(self.key).st_mtime

    def reload(self) -> bool:
        """Rebuild the context from the files; keep the old one if they are bad."""
        try:
            stamp = self._file_stamp()
            self.context = build_context(self.cert, self.key)
        except (OSError, ssl.SSLError) as error:
            log.error("[tls] certificate reload failed, keeping the old one: %r", error)
            return False
        self._stamp = stamp
        log.warning(
            "[tls] certificate loaded from %s (expires %s)",
            self.cert,
            certificate_expiry(self.cert).date(),
        )
        return True

    async def reload_if_changed(self) -> None:
        try:
            changed = self._file_stamp() != self._stamp
        except OSError:
            return
        if changed:
            self.reload()
