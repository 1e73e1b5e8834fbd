"""DKIM and ARC signatures before dkimpy verifies them: which to verify, the
message split as dkimpy would split it, and RSA verification through OpenSSL.

Importing this module installs `rsa_verify` and a key-parse cache in dkimpy
(app/auth.py runs the verifications themselves).
"""

from __future__ import annotations

import functools
import re
from typing import Any

import dkim
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed

from .resolver import normal_name

SIGNATURE_HEADERS = (b"dkim-signature", b"arc-seal", b"arc-message-signature")
MAX_SIGNATURES = 5  # DKIM signatures verified per message; the rest are not checked
_TAG = re.compile(rb"(?:^|;)\s*([a-z]+)\s*=\s*([^;]*)", re.IGNORECASE)

# dkimpy verifies RSA signatures in pure Python (its own modular
# exponentiation and byte conversions, about 0.35 ms a signature here) and
# re-parses the signer's DER key for every message. The same verification
# through OpenSSL (cryptography), with keys parsed once: a tenth of the cost
# for the signatures that pass. tests/test_auth.py and
# tests/test_review_rsa_agreement.py check both agree.
_dkimpy_verify = dkim.RSASSA_PKCS1_v1_5_verify
_DIGESTS = {"sha1": hashes.SHA1(), "sha256": hashes.SHA256()}


@functools.lru_cache(maxsize=1024)
def _rsa_key(modulus: int, exponent: int) -> rsa.RSAPublicKey:
    return rsa.RSAPublicNumbers(exponent, modulus).public_key()


def rsa_verify(digest: Any, signature: bytes, public_key: dict[str, int]) -> bool:
    """RFC 8017 RSASSA-PKCS1-v1_5 verification of a hashlib `digest`."""
    algorithm = _DIGESTS.get(digest.name)
    if algorithm is None:
        return bool(_dkimpy_verify(digest, signature, public_key))
    key = _rsa_key(public_key["modulus"], public_key["publicExponent"])
    try:
        key.verify(signature, digest.digest(), padding.PKCS1v15(), Prehashed(algorithm))
    except (InvalidSignature, ValueError, UnsupportedAlgorithm):
        # OpenSSL is stricter than dkimpy (the signature's exact length and
        # range, RFC 8017 8.2.2) and refuses some keys: dkimpy's verdict
        # stands, so no result changes; only failing signatures pay for it.
        return bool(_dkimpy_verify(digest, signature, public_key))
    return True


dkim.RSASSA_PKCS1_v1_5_verify = rsa_verify
dkim.parse_public_key = functools.lru_cache(maxsize=1024)(dkim.parse_public_key)


def dkim_parts(message: bytes) -> tuple[list[tuple[bytes, bytes]], bytes] | None:
    """dkimpy's (headers, body) of `message`, by parsing only its header; None
    where that is not certain to be the same (a bare LF, no header end, a
    header dkimpy refuses): dkimpy then parses the message itself.

    dkimpy's verifier splits the whole message into lines to find them
    (about a fifth of a signed message's checks); with CRLF only, its body is
    what follows the first blank line, as sent."""
    end = message.find(b"\r\n\r\n")
    if end < 0 or message.count(b"\n") != message.count(b"\r\n"):
        return None
    try:
        headers, _ = dkim.rfc822_parse(message[: end + 4])
    except (dkim.MessageFormatError, IndexError):  # IndexError: a continuation first
        return None
    return headers, message[end + 4 :]


def signature_keys(headers: list[tuple[bytes, bytes]]) -> list[str]:
    """The `s._domainkey.d` names of the signatures we will verify: the first
    MAX_SIGNATURES of each kind (DKIM, ARC seal, ARC message signature)."""
    names: list[str] = []
    seen = dict.fromkeys(SIGNATURE_HEADERS, 0)
    for field, value in headers:
        kind = field.lower()
        if kind not in seen or seen[kind] >= MAX_SIGNATURES:
            continue
        seen[kind] += 1
        tags = {k.lower(): v.strip() for k, v in _TAG.findall(value.replace(b"\r\n", b""))}
        if tags.get(b"s") and tags.get(b"d"):
            names.append(normal_name(tags[b"s"] + b"._domainkey." + tags[b"d"]))
    return list(dict.fromkeys(names))
