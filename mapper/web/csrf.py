"""CSRF protection for the console's forms: a double-submitted token and an Origin check.

The page sets a random token in a cookie (SameSite=Strict, HttpOnly) and repeats it in
each form; a POST must carry both, equal. Another site can make a browser send the
cookie (not with SameSite=Strict, in current browsers) but cannot read it to put it
in the form. A POST whose ``Origin`` names another host is refused as well. Needs no
server secret, so an app mounting mapper.web configures nothing.
"""

from __future__ import annotations

import hmac
import secrets
from urllib.parse import urlsplit

import flask

from mapper.errors import AuthError

COOKIE = "mapper_csrf"
FIELD = "csrf"


class CsrfRefused(AuthError):
    """A console form posted without its token, with a wrong one, or from another site."""

    http_status = 403


def token() -> str:
    """The request's token (from its cookie), or a new one to set with ``set_cookie``."""
    found = flask.request.cookies.get(COOKIE, "")
    return found if len(found) >= 32 else secrets.token_urlsafe(32)


def set_cookie(response: flask.Response, value: str, path: str) -> None:
    if flask.request.cookies.get(COOKIE) != value:
        response.set_cookie(
            COOKIE,
            value,
            httponly=True,
            samesite="Strict",
            secure=flask.request.is_secure,
            path=path,
        )


def check() -> None:
    """Raise CsrfRefused unless the posted form's token matches the cookie's."""
    origin = flask.request.headers.get("Origin")
    if origin and origin != "null" and urlsplit(origin).netloc != flask.request.host:
        raise CsrfRefused(f"refused: the form was posted from another site ({origin})")
    cookie = flask.request.cookies.get(COOKIE, "")
    posted = flask.request.form.get(FIELD, "")
    if not cookie or not posted:
        raise CsrfRefused("refused: the form carries no CSRF token; reload the page and try again")
    if not hmac.compare_digest(cookie, posted):
        raise CsrfRefused("refused: the CSRF token does not match; reload the page and try again")
