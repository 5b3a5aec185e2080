"""Signed test tokens: Google OIDC (RS256) and IAP (ES256) from keys made here, no network."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Mapping
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from google.auth import crypt, jwt

from mapper.web.auth import GOOGLE_CERTS_URL, IAP_CERTS_URL

TASK_URL = "https://mapper.example.com"
TASK_SA = "tasks@demo.iam.gserviceaccount.com"
ADMIN = "admin@example.com"
IAP_AUDIENCE = "/projects/123/apps/demo"


def _pem_pair(key: Any) -> tuple[str, str]:
    """(private PKCS8 PEM, public SubjectPublicKeyInfo PEM) of a freshly made key."""
    private = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    public = (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    return private, public


def _rsa_key() -> tuple[str, str]:
    return _pem_pair(rsa.generate_private_key(public_exponent=65537, key_size=2048))


def _ec_key() -> tuple[str, str]:
    return _pem_pair(ec.generate_private_key(ec.SECP256R1()))


GOOGLE_PRIVATE, GOOGLE_PUBLIC = _rsa_key()
OTHER_PRIVATE, _ = _rsa_key()
IAP_PRIVATE, IAP_PUBLIC = _ec_key()
CERTS = {GOOGLE_CERTS_URL: {"google-kid": GOOGLE_PUBLIC}, IAP_CERTS_URL: {"iap-kid": IAP_PUBLIC}}


class LocalCerts:
    """Serves the locally generated public keys and records which URLs were asked for."""

    def __init__(self) -> None:
        self.urls: list[str] = []

    def __call__(self, url: str) -> Mapping[str, str]:
        self.urls.append(url)
        return CERTS[url]


def google_token(private: str = GOOGLE_PRIVATE, kid: str = "google-kid", **claims: Any) -> str:
    now = int(time.time())
    payload = {
        "iss": "https://accounts.google.com",
        "aud": TASK_URL,
        "email": TASK_SA,
        "email_verified": True,
        "sub": "1234567890",
        "iat": now,
        "exp": now + 3600,
    }
    payload.update(claims)
    return jwt.encode(crypt.RSASigner.from_string(private, kid), payload).decode()


def iap_assertion(**claims: Any) -> str:
    now = int(time.time())
    payload = {
        "iss": "https://cloud.google.com/iap",
        "aud": IAP_AUDIENCE,
        "email": ADMIN,
        "sub": "accounts.google.com:42",
        "iat": now,
        "exp": now + 600,
    }
    payload.update(claims)
    return jwt.encode(crypt.ES256Signer.from_string(IAP_PRIVATE, "iap-kid"), payload).decode()


def b64(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()
