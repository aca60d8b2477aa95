"""The studio's front door: who may ask, from which page, how much, and how a request may name things.

Invariants (each has a test in ``tests/serve/test_security.py`` or ``tests/serve/test_limits.py``):
- Bound to a loopback address, the studio answers only requests whose ``Host`` header names a
  loopback name (``127.0.0.1``, ``localhost``, or the address it is bound to; in any letter case),
  so a page on another site cannot reach it through DNS rebinding. Bound to any other address it
  needs a token (``AccessPolicy.for_bind`` refuses to build a policy without one; ``codirector
  serve`` generates one when none is given).
- With a token, every request without it gets 401 before any route runs. The token travels as
  ``Authorization: Bearer T``, as the cookie ``codirector_token_PORT`` (HttpOnly, SameSite=Strict;
  named by the port the studio listens on, because browsers send a host's cookies to all its ports),
  or once as ``?token=T`` on a GET, which sets the cookie and redirects to the same path on this
  studio without it (never to another site: the path is made to start with exactly one ``/``).
  Tokens are compared in constant time and never logged or echoed.
- Every state-changing request is a POST, and a POST whose ``Origin`` (or, lacking one, ``Referer``)
  is not the studio's own origin gets 403 before any route runs: it starts, reads and writes nothing.
- A request body is refused on its ``Content-Length`` (413 over ``Limits.max_body``; a POST without
  one is 411) before a byte of it is read, and a POST's body is read, whole and under that cap, within
  ``Limits.body_timeout_s`` (else 408) before its route runs.
- Numbers in a request are 1 to 9 ASCII digits (``whole``): never a sign, a space, ``²`` or ``٣``, and
  never large enough to overflow a database integer.
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

import anyio

from codirector.errors import InvalidArgument, RunStateError
from codirector.store.event_store import check_name

COOKIE = "codirector_token"
_TOKEN = re.compile(r"[A-Za-z0-9._~-]{8,}")
SAFE_METHODS = ("GET", "HEAD")
WHOLE = re.compile(r"[0-9]{1,9}")


@dataclass(frozen=True)
class Limits:
    """How much one client may ask of the studio (the README's studio section states these numbers)."""

    max_body: int = 1 << 20  # bytes of a request body: a branch form with prompts for a few hundred shots (413)
    body_timeout_s: float = 10.0  # a POST's whole body arrives within this (408)
    header_timeout_s: float = 10.0  # a request's line and headers arrive within this of the connection opening
    # or of the previous response, else the connection is closed (slow-header clients)
    keep_alive_s: int = 5  # an idle kept-alive connection is closed after this
    max_header_bytes: int = 16 << 10  # the request line and headers together (400 beyond)
    max_connections: int = 100  # open connections; a request arriving while this many are open gets 503
    streams_per_client: int = 8  # live (server-sent event) streams open at once per client address (429)


LIMITS = Limits()


def cookie_name(port: int | None) -> str:
    """The token cookie of the studio on ``port``: one per port, as a browser sends a host's cookies to every port."""
    return f"{COOKIE}_{port}" if port is not None else COOKIE


def _cut(text: str, n: int = 24) -> str:
    return text if len(text) <= n else f"{text[:n]}… ({len(text)} characters)"


def whole(name: str, text: str) -> int:
    """``text`` as a whole number of 1 to 9 ASCII digits, or ``InvalidArgument`` naming ``name`` and the value."""
    if WHOLE.fullmatch(text) is None:
        raise InvalidArgument(f"{name} must be a whole number of 1 to 9 digits 0-9, got {_cut(text)!r}",
                              hint=f"for example {name}=3")
    return int(text)


def new_branch_name(text: str) -> str:
    """A name for a branch to create, or ``InvalidArgument`` saying what is wrong with it (the store's own rule)."""
    try:
        return check_name(text, "branch name")
    except RunStateError as e:
        raise InvalidArgument(e.message, hint=e.hint or "choose another name") from e

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


def is_loopback(host: str) -> bool:
    """Whether binding ``host`` keeps the studio on this machine (127.0.0.0/8, ::1, localhost)."""
    if host.lower() == "localhost":
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
            host = host.lower()
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
    """The name in a ``Host`` header, without its port and in lower case: ``127.0.0.1``, ``localhost``, ``[::1]``."""
    header = header.lower()
    if header.startswith("["):
        return header[: header.find("]") + 1] if "]" in header else header
    return header.rsplit(":", 1)[0] if header.count(":") == 1 else header


def same_site_path(path: str) -> str:
    """``path`` URL-quoted as a redirect that stays on this site: exactly one leading ``/``, so never ``//host``."""
    return "/" + quote(path.lstrip("/\\"))


@dataclass(frozen=True)
class Verdict:
    """What the guard does with a request: let it through (status 0), refuse it, or redirect it."""

    status: int = 0
    reason: str = ""
    location: str | None = None
    set_token: str | None = None
    cookie: str = COOKIE  # the cookie ``set_token`` goes in

    @property
    def allowed(self) -> bool:
        return self.status == 0


ALLOW = Verdict()


def _cookie_token(header: str | None, name: str) -> str | None:
    if not header:
        return None
    jar: SimpleCookie = SimpleCookie()
    try:
        jar.load(header)
    except Exception:  # a malformed Cookie header carries no token
        return None
    morsel = jar.get(name)
    return morsel.value if morsel is not None else None


def _same(given: str | None, token: str) -> bool:
    return given is not None and hmac.compare_digest(given.encode(), token.encode())


def _origin_of(url: str) -> str | None:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}" if parts.scheme and parts.netloc else None


def _body_verdict(method: str, headers: Mapping[str, str], limits: Limits) -> Verdict:
    length = headers.get("content-length")
    if "transfer-encoding" in headers or (length is None and method not in SAFE_METHODS):
        return Verdict(411, "a request with a body must send it with a Content-Length (not chunked)")
    if length is None:
        return ALLOW
    if WHOLE.fullmatch(length.strip()) is None or int(length) > limits.max_body:
        return Verdict(413, f"the request body is {_cut(length.strip())} bytes; the limit is {limits.max_body}")
    return ALLOW


def decide(policy: AccessPolicy, method: str, path: str, query: str, headers: Mapping[str, str], *,
           port: int | None = None, limits: Limits = LIMITS) -> Verdict:
    """The verdict on one request (header names lower-case) to the studio listening on ``port``. Pure: no I/O,
    nothing remembered."""
    host = headers.get("host", "")
    if policy.hosts is not None and host_name(host) not in policy.hosts:
        return Verdict(400, f"this studio answers only to {', '.join(sorted(policy.hosts))}")
    if policy.token is not None:
        auth = headers.get("authorization", "")
        bearer = auth[7:].strip() if auth.lower().startswith("bearer ") else None
        cookie = cookie_name(port)
        if not (_same(bearer, policy.token) or _same(_cookie_token(headers.get("cookie"), cookie), policy.token)):
            pairs = parse_qsl(query, keep_blank_values=True)
            given = next((v for k, v in pairs if k == "token"), None)
            if method in SAFE_METHODS and _same(given, policy.token):
                rest = urlencode([(k, v) for k, v in pairs if k != "token"])
                return Verdict(303, "token accepted", location=same_site_path(path) + (f"?{rest}" if rest else ""),
                               set_token=policy.token, cookie=cookie)
            return Verdict(401, "this studio needs its token: open the address `codirector serve` printed "
                                "(it ends in ?token=...)")
    if method not in SAFE_METHODS:
        origin = (headers.get("origin") or _origin_of(headers.get("referer", "")) or "").lower()
        if origin not in (f"http://{host.lower()}", f"https://{host.lower()}"):
            return Verdict(403, "a change to the studio must come from one of its own pages "
                                f"(origin {origin or 'missing'!r}, expected http://{host})")
    return _body_verdict(method, headers, limits)


class OverLimit(Exception):
    """A body grew past its cap while being read (its ``Content-Length`` was checked, so only a server that
    does not hold a client to it lets this happen)."""


async def read_body(receive: Receive, limit: int) -> bytes | None:
    """The request body, read up to ``limit`` bytes (``OverLimit`` past them); None when the client went away."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise OverLimit(size)
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


class Guard:
    """ASGI middleware applying ``decide`` to every HTTP request before any route sees it, then reading a POST's
    body (capped, within the time limit) so that no route waits on a slow client."""

    def __init__(self, app: ASGIApp, policy: AccessPolicy, limits: Limits = LIMITS) -> None:
        self.app = app
        self.policy = policy
        self.limits = limits

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        server = scope.get("server")
        verdict = decide(self.policy, scope["method"], scope["path"], scope.get("query_string", b"").decode("latin-1"),
                         headers, port=server[1] if server else None, limits=self.limits)
        if not verdict.allowed:
            await refuse(send, verdict)
            return
        if scope["method"] in SAFE_METHODS:
            await self.app(scope, receive, send)
            return
        try:
            with anyio.fail_after(self.limits.body_timeout_s):
                body = await read_body(receive, self.limits.max_body)
        except TimeoutError:
            await refuse(send, Verdict(408, f"the request body did not arrive within {self.limits.body_timeout_s:g} s"))
            return
        except OverLimit:
            await refuse(send, Verdict(413, f"the request body is over the limit of {self.limits.max_body} bytes"))
            return
        if body is None:
            return
        replayed = False

        async def replay() -> MutableMapping[str, Any]:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)


async def refuse(send: Send, verdict: Verdict) -> None:
    """Answer ``verdict`` as plain text; a refused request's connection is closed when it may have an unread body."""
    out = [(b"content-type", b"text/plain; charset=utf-8"), (b"cache-control", b"no-store")]
    if verdict.location is not None:
        out.append((b"location", verdict.location.encode("latin-1")))
    if verdict.set_token is not None:
        out.append((b"set-cookie", f"{verdict.cookie}={verdict.set_token}; HttpOnly; SameSite=Strict; Path=/"
                    .encode("latin-1")))
    if verdict.status in (408, 411, 413):
        out.append((b"connection", b"close"))
    body = f"{verdict.status}: {verdict.reason}\n".encode()
    out.append((b"content-length", str(len(body)).encode()))
    await send({"type": "http.response.start", "status": verdict.status, "headers": out})
    await send({"type": "http.response.body", "body": body})
