"""HTTP to a hosted provider: retries that honour ``Retry-After``, a cap on jobs in flight, no secret let out.

Every hosted backend (fal, ``/v1/videos`` gateways, Google) talks to its provider through one
``ProviderHTTP``. What it guarantees:

- 429 and 5xx answers are retried with bounded attempts; a ``Retry-After`` header (seconds or an
  HTTP date) is waited out, capped at ``max_wait``; without one the wait doubles from ``backoff``.
  A connection that could not be opened is retried the same way. A request that was sent but got
  no answer is retried only when it is safe to (a GET); a submit is never sent twice by us.
- The key goes only to the provider's own origin (the ``base_url``'s scheme, host and port), as the
  header the provider documents. A result URL on another host (a CDN) is fetched without it.
- No secret in a message: errors name the provider, the method, the URL without its query string
  (signed URLs carry their signature there) and the provider's own words, scrubbed of the key.
- ``job_slot`` caps the jobs one process has in flight at one provider (``max_in_flight``): a job
  holds a slot from its submit until its result is downloaded, so N stories in threads never
  have more than the cap at the provider.
"""

from __future__ import annotations

import email.utils
import logging
import os
import random
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from codirector.errors import BackendError, ProviderJobFailed

log = logging.getLogger("codirector.hosted")

RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})


def without_query(url: str) -> str:
    """``url`` without its query string and fragment (where signed URLs keep their signatures)."""
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))


def origin(url: str) -> tuple[str, str]:
    parts = urlsplit(url)
    return parts.scheme.lower(), parts.netloc.lower()


def retry_after_seconds(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or an HTTP date), or None."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def answer_body(response: Any) -> Any:
    """A provider's answer as JSON, or its text (stripped, the first 300 characters) when it is not JSON: what each
    provider's ``reason_of`` reads its own words from."""
    try:
        return response.json()
    except ValueError:
        return response.text[:300].strip()


def api_key(variable: str, provider: str) -> str:
    """The key in ``variable``; ``BackendError`` naming the variable when it is unset (never the value)."""
    key = os.environ.get(variable, "").strip()
    if not key:
        raise BackendError(f"{provider}: the environment variable {variable} is not set",
                           hint=f"export {variable}=... (the key is read from the environment, never from a config)")
    return key


# ---------------------------------------------------------------------------- jobs in flight

_SLOTS: dict[tuple[str, str], threading.BoundedSemaphore] = {}
_SLOTS_LOCK = threading.Lock()


def _slots(provider: str, base_url: str, cap: int) -> threading.BoundedSemaphore:
    with _SLOTS_LOCK:
        key = (provider, base_url.rstrip("/"))
        found = _SLOTS.get(key)
        if found is None:
            found = _SLOTS[key] = threading.BoundedSemaphore(max(1, cap))
        return found


# ---------------------------------------------------------------------------- the client


class ProviderHTTP:
    """One provider's HTTP: its base URL, its auth header, retries and the in-flight cap."""

    def __init__(
        self, provider: str, base_url: str, *, auth_header: tuple[str, str] | None = None, secret: str | None = None,
        timeout: float = 120.0, attempts: int = 6, backoff: float = 1.0, max_wait: float = 60.0,
        max_in_flight: int = 4,
    ) -> None:
        import httpx2

        self.provider = provider
        self.base_url = base_url.rstrip("/")
        self._auth = auth_header
        self._secret = secret
        self.attempts = max(1, attempts)
        self.backoff = backoff
        self.max_wait = max_wait
        self.max_in_flight = max_in_flight
        self._client = httpx2.Client(timeout=timeout, follow_redirects=True)
        self._origin = origin(self.base_url)

    def url(self, path: str) -> str:
        return path if "://" in path else f"{self.base_url}/{path.lstrip('/')}"

    @contextmanager
    def job_slot(self) -> Iterator[None]:
        """Hold one of the provider's ``max_in_flight`` slots (waits, Ctrl-C still stops it)."""
        slots = _slots(self.provider, self.base_url, self.max_in_flight)
        while not slots.acquire(timeout=0.25):
            pass
        try:
            yield
        finally:
            slots.release()

    def scrub(self, text: str) -> str:
        """``text`` with the key cut out (a server may echo a request back)."""
        if self._secret and self._secret in text:
            text = text.replace(self._secret, "[key]")
        return text

    def request(
        self, method: str, path: str, *, json: Any = None, content: bytes | None = None,
        files: Mapping[str, Any] | None = None, data: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Any:
        """Send with retries (see the module docstring); returns the last response, whatever its status."""
        import httpx2

        url = self.url(path)
        sent_headers = dict(headers or {})
        if self._auth is not None and origin(url) == self._origin:
            sent_headers[self._auth[0]] = self._auth[1]
        safe_to_resend = method.upper() in ("GET", "HEAD")
        last_error = ""
        for attempt in range(1, self.attempts + 1):
            try:
                response = self._client.request(method, url, json=json, content=content, files=files, data=data,
                                                headers=sent_headers)
            except httpx2.ConnectError as e:  # nothing reached the provider: always safe to try again
                last_error = f"could not connect ({e})"
            except (httpx2.TimeoutException, httpx2.NetworkError, httpx2.RemoteProtocolError) as e:
                if not safe_to_resend:
                    raise BackendError(
                        f"{self.provider}: {method} {without_query(url)} was sent but no answer came "
                        f"({type(e).__name__})", hint="the provider may have accepted it; `codirector resume` "
                        "tries again (check the provider's dashboard for a duplicate job)") from e
                last_error = f"{type(e).__name__}: {self.scrub(str(e))}"
            else:
                if response.status_code not in RETRY_STATUSES:
                    return response
                last_error = f"HTTP {response.status_code}: {self.scrub(response.text[:300])}"
                if attempt < self.attempts:
                    wait = retry_after_seconds(response.headers.get("retry-after"))
                    if wait is not None:
                        wait = min(wait, self.max_wait)
                        log.info("%s answered %s; waiting %.1f s as its Retry-After says", self.provider,
                                 response.status_code, wait)
                        time.sleep(wait)
                        continue
            if attempt < self.attempts:
                time.sleep(min(self.max_wait, self.backoff * 2 ** (attempt - 1)) * (0.75 + random.random() / 2))
        raise BackendError(
            f"{self.provider}: {method} {without_query(url)} failed {self.attempts} times; last: {last_error}",
            hint="the provider is overloaded or down; `codirector resume` continues later without repeating "
            "recorded calls",
        )

    def refuse_rejected(self, response: Any, message: str, reason_of: Callable[[Any], str], hint: str) -> None:
        """``ProviderJobFailed`` (``message``: the provider's reason, quoted) when it rejected a request outright
        (400 or 422: moderation, invalid input); nothing otherwise. ``reason_of`` reads the provider's error shape."""
        if response.status_code in (400, 422):
            reason = reason_of(answer_body(response))
            raise ProviderJobFailed(f"{message}: {reason}", hint=hint, reason=reason)

    def json_or_error(self, response: Any, what: str) -> Any:
        """The JSON body of a 2xx answer; ``BackendError`` quoting the provider for anything else."""
        if 200 <= response.status_code < 300:
            try:
                return response.json()
            except ValueError as e:
                raise BackendError(f"{self.provider}: {what} answered {response.status_code} with a body that is "
                                   f"not JSON: {self.scrub(response.text[:200])!r}",
                                   hint="check base_url: it must point at the provider's API") from e
        raise self.error(response, what)

    def error(self, response: Any, what: str) -> BackendError:
        status = response.status_code
        body = self.scrub(response.text[:500])
        if status in (401, 403):
            hint = "check the key in the environment (and that it may use this model)"
        elif status == 404:
            hint = "check the model id and base_url"
        else:
            hint = "see the provider's message above"
        return BackendError(f"{self.provider}: {what} answered HTTP {status}: {body}", hint=hint)

    def download(self, url: str, what: str) -> bytes | None:
        """The bytes at ``url`` (the key only on the provider's own origin); None when the URL has expired."""
        response = self.request("GET", url)
        if response.status_code in (403, 404, 410):
            return None
        if not 200 <= response.status_code < 300:
            raise self.error(response, what)
        return bytes(response.content)

    def close(self) -> None:
        self._client.close()


def poll_delays(first: float, factor: float = 1.5, most: float = 15.0) -> Iterator[float]:
    """Polling intervals that back off: ``first``, ``first * factor``, ... up to ``most``."""
    delay = max(0.0, first)
    while True:
        yield delay
        delay = min(most, max(delay * factor, 0.01))
