"""Request authentication: who may call the task endpoints and the admin API.

Task endpoints accept a request only if it provably comes from Cloud Tasks:

- on App Engine (``settings.on_app_engine``), the ``X-AppEngine-QueueName``
  header, which App Engine strips from requests that come from outside;
- anywhere, an ``Authorization: Bearer`` OIDC token signed by Google
  (RS256, issuer accounts.google.com) whose audience is
  :func:`~mapper.dispatch.cloudtasks.oidc_audience` and whose verified
  ``email`` is ``settings.task_service_account``.

``X-CloudTasks-*`` headers prove nothing: anyone can send them.

The admin API accepts, with ``MAPPER_AUTH=iap``, an ``X-Goog-IAP-JWT-Assertion``
signed by IAP (ES256) for ``settings.iap_audience`` (and, when
``settings.admin_emails`` is set, of one of those users); with
``MAPPER_AUTH=oidc``, a Google OIDC bearer token with the task audience whose
verified email is in ``settings.admin_emails``. ``MAPPER_AUTH=off`` (refused on
App Engine by Settings) lets everything through.

Missing credentials raise :class:`Unauthenticated` (401); credentials that do
not check out, or settings that cannot check them, raise ``AuthError`` (403).
Cert fetching goes through a :class:`Verifier`, so tests can verify tokens
signed by a local key without network access.
"""

from __future__ import annotations

import functools
import logging
import re
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any, ParamSpec, TypeVar

import flask
import requests
from google.auth import exceptions as auth_exceptions
from google.auth import jwt

from mapper.dispatch.cloudtasks import oidc_audience
from mapper.errors import AuthError
from mapper.settings import Settings

logger = logging.getLogger(__name__)

GOOGLE_CERTS_URL = "https://www.googleapis.com/oauth2/v1/certs"
GOOGLE_ISSUERS = ("accounts.google.com", "https://accounts.google.com")
IAP_CERTS_URL = "https://www.gstatic.com/iap/verify/public_key"
IAP_ISSUERS = ("https://cloud.google.com/iap",)

APP_ENGINE_QUEUE_HEADER = "X-AppEngine-QueueName"
IAP_HEADER = "X-Goog-IAP-JWT-Assertion"

#: Fetches ``{key id: PEM certificate or public key}`` from a certs URL.
CertsSource = Callable[[str], Mapping[str, str]]

P = ParamSpec("P")
R = TypeVar("R")

_MAX_AGE_RE = re.compile(r"max-age=(\d+)")


class Unauthenticated(AuthError):
    """The request carries no credentials at all."""

    http_status = 401


class HttpCerts:
    """A CertsSource over HTTPS that caches each URL for as long as Cache-Control allows.

    A failed fetch raises (a 5xx for the caller, so Cloud Tasks retries),
    never an AuthError: an outage on Google's side is not the caller's fault.
    """

    def __init__(self, timeout: float = 10.0, default_max_age: float = 300.0):
        self.timeout = timeout
        self.default_max_age = default_max_age
        self._cache: dict[str, tuple[float, Mapping[str, str]]] = {}
        self._lock = threading.Lock()

    def __call__(self, url: str) -> Mapping[str, str]:
        with self._lock:
            cached = self._cache.get(url)
            if cached is not None and cached[0] > time.monotonic():
                return cached[1]
            response = requests.get(url, timeout=self.timeout)
            response.raise_for_status()
            certs: Mapping[str, str] = response.json()
            match = _MAX_AGE_RE.search(response.headers.get("Cache-Control", ""))
            max_age = float(match.group(1)) if match else self.default_max_age
            self._cache[url] = (time.monotonic() + max_age, certs)
            return certs


class Verifier:
    """Checks a JWT's signature against ``certs``, then its algorithm, times,
    audience and issuer.

    Args:
        certs: where keys come from; default :class:`HttpCerts` (Google's and
            IAP's published keys). Tests pass a function returning local keys.
        clock_skew: seconds of tolerance on ``iat`` and ``exp``.
    """

    def __init__(self, certs: CertsSource | None = None, clock_skew: int = 10):
        self.certs: CertsSource = certs if certs is not None else HttpCerts()
        self.clock_skew = clock_skew

    def verify(
        self,
        token: str,
        *,
        certs_url: str,
        audience: str,
        issuers: Iterable[str],
        algorithms: Iterable[str],
    ) -> Mapping[str, Any]:
        """Return the token's claims, or raise AuthError saying what is wrong."""
        if not audience:
            # google.auth skips the audience check for None: never let it.
            raise AuthError("refusing to verify a token without an expected audience")
        try:
            alg = jwt.decode_header(token).get("alg")
            if alg not in tuple(algorithms):
                raise AuthError(f"token algorithm {alg!r} is not accepted")
            claims: Mapping[str, Any] = jwt.decode(
                token,
                certs=self.certs(certs_url),
                audience=audience,
                clock_skew_in_seconds=self.clock_skew,
            )
        except (ValueError, TypeError, KeyError, auth_exceptions.GoogleAuthError) as e:
            raise AuthError(f"invalid token: {e}") from e
        if claims.get("iss") not in tuple(issuers):
            raise AuthError(f"token issuer {claims.get('iss')!r} is not accepted")
        return claims


_default_verifier: Verifier | None = None
_default_lock = threading.Lock()


def default_verifier() -> Verifier:
    """The process-wide Verifier over Google's published keys (one shared cert cache)."""
    global _default_verifier
    with _default_lock:
        if _default_verifier is None:
            _default_verifier = Verifier()
        return _default_verifier


def check_task_request(
    request: flask.Request, settings: Settings, verifier: Verifier | None = None
) -> None:
    """Raise unless ``request`` is a genuine Cloud Tasks delivery (see module doc)."""
    if settings.auth == "off":
        return
    if settings.on_app_engine and request.headers.get(APP_ENGINE_QUEUE_HEADER):
        return
    token = _bearer_token(request)
    audience = oidc_audience(settings)
    if not audience or not settings.task_service_account:
        raise AuthError(
            "task endpoints cannot check OIDC tokens: set MAPPER_TASK_URL or "
            "MAPPER_TASK_AUDIENCE, and MAPPER_TASK_SERVICE_ACCOUNT"
        )
    email = _google_email(token, audience, verifier)
    if email != settings.task_service_account.casefold():
        raise AuthError(f"task token is for {email!r}, not the task service account")


def check_admin_request(
    request: flask.Request, settings: Settings, verifier: Verifier | None = None
) -> None:
    """Raise unless ``request`` comes from an allowed administrator (see module doc)."""
    if settings.auth == "off":
        return
    if settings.auth == "iap":
        email = _iap_email(request, settings, verifier)
        allowed = not settings.admin_emails or email in _casefolded(settings.admin_emails)
    else:
        token = _bearer_token(request)
        audience = oidc_audience(settings)
        if not audience:
            raise AuthError(
                "MAPPER_AUTH=oidc needs an audience for admin tokens: set "
                "MAPPER_TASK_AUDIENCE or MAPPER_TASK_URL (or use MAPPER_AUTH=iap)"
            )
        email = _google_email(token, audience, verifier)
        allowed = email in _casefolded(settings.admin_emails)
    if not allowed:
        raise AuthError(f"{email!r} is not in MAPPER_ADMIN_EMAILS")
    logger.info("admin request %s %s by %s", request.method, request.path, email)


def require_task_auth(
    settings: Settings, verifier: Verifier | None = None
) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """Decorate a view so that it runs only for genuine Cloud Tasks requests."""
    return _requiring(check_task_request, settings, verifier)


def require_admin_auth(
    settings: Settings, verifier: Verifier | None = None
) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """Decorate a view so that it runs only for allowed administrators."""
    return _requiring(check_admin_request, settings, verifier)


def _requiring(
    check: Callable[[flask.Request, Settings, Verifier | None], None],
    settings: Settings,
    verifier: Verifier | None,
) -> Callable[[Callable[P, R]], Callable[P, R]]:
    def decorate(view: Callable[P, R]) -> Callable[P, R]:
        @functools.wraps(view)
        def guarded(*args: P.args, **kwargs: P.kwargs) -> R:
            check(flask.request, settings, verifier)
            return view(*args, **kwargs)

        return guarded

    return decorate


def _bearer_token(request: flask.Request) -> str:
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthenticated("missing 'Authorization: Bearer <OIDC token>'")
    return token.strip()


def _google_email(token: str, audience: str, verifier: Verifier | None) -> str:
    claims = (verifier or default_verifier()).verify(
        token,
        certs_url=GOOGLE_CERTS_URL,
        audience=audience,
        issuers=GOOGLE_ISSUERS,
        algorithms=("RS256",),
    )
    return _verified_email(claims)


def _iap_email(request: flask.Request, settings: Settings, verifier: Verifier | None) -> str:
    assertion = request.headers.get(IAP_HEADER, "").strip()
    if not assertion:
        raise Unauthenticated(f"missing {IAP_HEADER} (is the app behind IAP?)")
    if not settings.iap_audience:
        raise AuthError("MAPPER_AUTH=iap needs MAPPER_IAP_AUDIENCE")
    claims = (verifier or default_verifier()).verify(
        assertion,
        certs_url=IAP_CERTS_URL,
        audience=settings.iap_audience,
        issuers=IAP_ISSUERS,
        algorithms=("ES256",),
    )
    email = claims.get("email")
    if not isinstance(email, str) or not email:
        raise AuthError("IAP assertion carries no email")
    # IAP prefixes emails of some identity sources ("accounts.google.com:x@y").
    return email.rpartition(":")[2].casefold()


def _verified_email(claims: Mapping[str, Any]) -> str:
    email = claims.get("email")
    if not isinstance(email, str) or not email or claims.get("email_verified") is not True:
        raise AuthError("token carries no verified email")
    return email.casefold()


def _casefolded(emails: Iterable[str]) -> set[str]:
    return {e.casefold() for e in emails}
