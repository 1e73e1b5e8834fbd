"""Review: auth_dkim.rsa_verify (OpenSSL) is claimed to give dkimpy's verdicts.
dkimpy reads the signature as an integer (any length, any value), OpenSSL
demands exactly the modulus length and a value below the modulus. The same
valid signature written with a leading zero byte (or its leading zero byte
dropped: 1 signer in 256 signatures of a minimal-length encoder), or as
s + n, passes in dkimpy and fails here.
"""

from __future__ import annotations

import hashlib

import pytest
from dkim import crypto

from app import auth_dkim

from .test_auth import KEY


def variants():
    private = crypto.parse_pem_private_key(KEY)
    public = {"modulus": private["modulus"], "publicExponent": private["publicExponent"]}
    modlen = len(crypto.int2str(public["modulus"]))
    digest = hashlib.sha256(b"a message")
    signature = crypto.RSASSA_PKCS1_v1_5_sign(digest, private)
    as_int = crypto.str2int(signature)
    yield "leading zero added", digest, b"\x00" + signature, public
    yield "s + n", digest, crypto.int2str(as_int + public["modulus"], modlen + 1), public
    # A signature whose first byte is 0, written without it:
    for n in range(5000):
        d = hashlib.sha256(b"message %d" % n)
        s = crypto.RSASSA_PKCS1_v1_5_sign(d, private)
        if s[0] == 0:
            yield "leading zero dropped", d, s[1:], public
            break


@pytest.mark.parametrize(
    "name,digest,signature,public", list(variants()), ids=lambda v: v if isinstance(v, str) else ""
)
def test_openssl_verdict_matches_dkimpy(name, digest, signature, public):
    expected = auth_dkim._dkimpy_verify(digest, signature, public)
    verdict = auth_dkim.rsa_verify(digest, signature, public)
    assert verdict == expected, f"{name}: dkimpy says {expected}"
