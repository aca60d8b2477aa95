"""The studio's front door: who may ask, from which page, and how a request may name things.

Invariants (each has a test in ``tests/serve/test_security.py``):
- Bound to a loopback address, the studio answers only requests whose ``Host`` header names a
  loopback name (``127.0.0.1``, ``localhost``, or the address it is bound to), so a page on another
  site cannot reach it through DNS rebinding. Bound to any
  other address it needs a token (``AccessPolicy.for_bind`` refuses to build a policy without one).
- With a token, every request without it gets 401 before any route runs. The token travels as
  ``Authorization: Bearer T``, as the ``codirector_token`` cookie (HttpOnly, SameSite=Strict), or
  once as ``?token=T`` on a GET, which sets the cookie and redirects to the same URL without it.
  Tokens are compared in constant time and never logged or echoed.
- Every state-changing request is a POST, and a POST whose ``Origin`` (or, lacking one, ``Referer``)
  is not the studio's own origin gets 403 before any route runs: it starts, reads and writes nothing.
- ``decide`` is pure (method, path, query, headers in; a verdict out); ``Guard`` only applies it.
"""

from __future__ import annotations

import hmac
import ipaddress
import re
import secrets
from collections.abc import Awaitable, Callable, Mapping, MutableMapping
from dataclasses import dataclass
from http.cookies import SimpleCookie
from typing import Any
from urllib.parse import parse_qsl, quote, urlencode, urlsplit

from codirector.errors import InvalidArgument

COOKIE = "codirector_token"
_TOKEN = re.compile(r"[A-Za-z0-9._~-]{8,}")
SAFE_METHODS = ("GET", "HEAD")

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


def is_loopback(host: str) -> bool:
    """Whether binding ``host`` keeps the studio on this machine (127.0.0.0/8, ::1, localhost)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class AccessPolicy:
    """Which host names (``Host`` headers, port aside) are answered (None: any) and the token every request
    must carry (None: none)."""

    token: str | None
    hosts: frozenset[str] | None

    @classmethod
    def for_bind(cls, host: str, token: str | None) -> AccessPolicy:
        """The policy for a studio bound to ``host``; a non-loopback address without a token is refused."""
        if token is not None and not _TOKEN.fullmatch(token):
            raise InvalidArgument("--token must be at least 8 characters of letters, digits, '-', '_', '.' or '~'",
                                  hint=f"for example --token {secrets.token_urlsafe(18)}")
        if is_loopback(host):
            if host in ("127.0.0.1", "localhost"):
                return cls(token, frozenset({host, "127.0.0.1", "localhost"}))
            return cls(token, frozenset({f"[{host.strip('[]')}]" if ":" in host else host}))
        if not token:
            raise InvalidArgument(
                f"--host {host} would let other machines reach the studio, which then needs a token",
                hint=f"pass --token {secrets.token_urlsafe(18)} (or set CODIRECTOR_SERVE_TOKEN), or keep the "
                     "default --host 127.0.0.1",
            )
        return cls(token, None)


def host_name(header: str) -> str:
    """The name in a ``Host`` header, without its port: ``127.0.0.1``, ``localhost``, ``[::1]``."""
    if header.startswith("["):
        return header[: header.find("]") + 1] if "]" in header else header
    return header.rsplit(":", 1)[0] if header.count(":") == 1 else header


@dataclass(frozen=True)
class Verdict:
    """What the guard does with a request: let it through (status 0), refuse it, or redirect it."""

    status: int = 0
    reason: str = ""
    location: str | None = None
    set_token: str | None = None

    @property
    def allowed(self) -> bool:
        return self.status == 0


ALLOW = Verdict()


def _cookie_token(header: str | None) -> str | None:
    if not header:
        return None
    jar: SimpleCookie = SimpleCookie()
    try:
        jar.load(header)
    except Exception:  # a malformed Cookie header carries no token
        return None
    morsel = jar.get(COOKIE)
    return morsel.value if morsel is not None else None


def _same(given: str | None, token: str) -> bool:
    return given is not None and hmac.compare_digest(given.encode(), token.encode())


def _origin_of(url: str) -> str | None:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}" if parts.scheme and parts.netloc else None


def decide(policy: AccessPolicy, method: str, path: str, query: str, headers: Mapping[str, str]) -> Verdict:
    """The verdict on one request (header names lower-case). Pure: no I/O, nothing remembered."""
    host = headers.get("host", "")
    if policy.hosts is not None and host_name(host) not in policy.hosts:
        return Verdict(400, f"this studio answers only to {', '.join(sorted(policy.hosts))}")
    if policy.token is not None:
        auth = headers.get("authorization", "")
        bearer = auth[7:].strip() if auth.lower().startswith("bearer ") else None
        if not (_same(bearer, policy.token) or _same(_cookie_token(headers.get("cookie")), policy.token)):
            pairs = parse_qsl(query, keep_blank_values=True)
            given = next((v for k, v in pairs if k == "token"), None)
            if method in SAFE_METHODS and _same(given, policy.token):
                rest = urlencode([(k, v) for k, v in pairs if k != "token"])
                return Verdict(303, "token accepted", location=quote(path) + (f"?{rest}" if rest else ""),
                               set_token=policy.token)
            return Verdict(401, "this studio needs its token: open the address `codirector serve` printed "
                                "(it ends in ?token=...)")
    if method not in SAFE_METHODS:
        origin = headers.get("origin") or _origin_of(headers.get("referer", "")) or ""
        if origin not in (f"http://{host}", f"https://{host}"):
            return Verdict(403, "a change to the studio must come from one of its own pages "
                                f"(origin {origin or 'missing'!r}, expected http://{host})")
    return ALLOW


class Guard:
    """ASGI middleware applying ``decide`` to every HTTP request before any route sees it."""

    def __init__(self, app: ASGIApp, policy: AccessPolicy) -> None:
        self.app = app
        self.policy = policy

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        verdict = decide(self.policy, scope["method"], scope["path"], scope.get("query_string", b"").decode("latin-1"),
                         headers)
        if verdict.allowed:
            await self.app(scope, receive, send)
            return
        out = [(b"content-type", b"text/plain; charset=utf-8"), (b"cache-control", b"no-store")]
        if verdict.location is not None:
            out.append((b"location", verdict.location.encode("latin-1")))
        if verdict.set_token is not None:
            out.append((b"set-cookie", f"{COOKIE}={verdict.set_token}; HttpOnly; SameSite=Strict; Path=/"
                        .encode("latin-1")))
        body = f"{verdict.status}: {verdict.reason}\n".encode()
        out.append((b"content-length", str(len(body)).encode()))
        await send({"type": "http.response.start", "status": verdict.status, "headers": out})
        await send({"type": "http.response.body", "body": body})
