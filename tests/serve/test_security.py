"""The studio's front door: foreign origins, missing tokens, strange hosts and path tricks are refused
before they reach a route, the log or the blob store."""

from __future__ import annotations

import http.client
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import urlencode, urlsplit

import pytest
import sqlalchemy as sa

from codirector.engine.studio import Studio
from codirector.errors import InvalidArgument
from codirector.serve.security import AccessPolicy, decide

# ---------------------------------------------------------------------- what the server touches

_watch: list[tuple[str, str]] | None = None
_watch_lock = threading.Lock()


def _audit(event: str, args: tuple[object, ...]) -> None:
    if _watch is not None and (event == "open" or event.startswith(("os.", "shutil.", "pathlib."))):
        what = str(args[0]) if args else ""
        if not what.endswith((".py", ".pyc", ".so")):  # a lazy import (the HTTP client's codecs) is not data
            with _watch_lock:
                _watch.append((event, what))


sys.addaudithook(_audit)  # audit hooks cannot be removed: it records only while a test watches


@contextmanager
def touches(studio: Studio) -> Iterator[dict[str, list[object]]]:
    """Every file the process opens and every SQL statement the studio's database runs, while inside."""
    global _watch
    seen: dict[str, list[object]] = {"files": [], "sql": []}

    def statement(conn, cursor, text, params, context, many) -> None:  # type: ignore[no-untyped-def]
        seen["sql"].append(text)

    engine = studio.store.engine
    sa.event.listen(engine, "before_cursor_execute", statement)
    _watch = []
    try:
        yield seen
    finally:
        seen["files"] = list(_watch)
        _watch = None
        sa.event.remove(engine, "before_cursor_execute", statement)


def raw(base: str, method: str, target: str, headers: dict[str, str] | None = None,
        body: str | None = None) -> tuple[int, dict[str, str], bytes]:
    """One request with ``target`` sent exactly as written (no client-side path normalisation)."""
    parts = urlsplit(base)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    try:
        conn.putrequest(method, target, skip_host=True, skip_accept_encoding=True)
        sent = {"Host": parts.netloc, **(headers or {})}
        if body is not None:
            sent.setdefault("Content-Type", "application/x-www-form-urlencoded")
            sent["Content-Length"] = str(len(body.encode()))
        for k, v in sent.items():
            conn.putheader(k, v)
        conn.endheaders(body.encode() if body is not None else None)
        r = conn.getresponse()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
    finally:
        conn.close()


def branches(studio: Studio) -> dict[str, int]:
    return {b.name: b.head_position for b in studio.store.story("lighthouse").branches}


# ---------------------------------------------------------------------- the pure verdicts


LOOPBACK = AccessPolicy.for_bind("127.0.0.1", None)
TOKEN = "s3cret-token-0123"
EXPOSED = AccessPolicy.for_bind("0.0.0.0", TOKEN)


def test_verdicts_on_loopback() -> None:
    ok = {"host": "127.0.0.1:8765"}
    assert decide(LOOPBACK, "GET", "/", "", ok).allowed
    assert decide(LOOPBACK, "GET", "/", "", {"host": "localhost:8765"}).allowed
    assert decide(LOOPBACK, "GET", "/", "", {"host": "evil.example:8765"}).status == 400  # DNS rebinding
    assert decide(LOOPBACK, "GET", "/", "", {"host": "127.0.0.1.evil.example:8765"}).status == 400
    assert decide(LOOPBACK, "GET", "/", "", {}).status == 400
    assert decide(LOOPBACK, "POST", "/action/run", "", {**ok, "origin": "http://127.0.0.1:8765"}).allowed
    assert decide(LOOPBACK, "POST", "/action/run", "", {**ok, "referer": "http://127.0.0.1:8765/shot?x=1"}).allowed
    for bad in ({"origin": "http://evil.example"}, {"origin": "null"}, {}, {"referer": "http://evil.example/"},
                {"origin": "http://127.0.0.1:8766"}, {"origin": "http://127.0.0.1:8765.evil.example"}):
        assert decide(LOOPBACK, "POST", "/action/run", "", {**ok, **bad}).status == 403, bad


def test_verdicts_with_a_token() -> None:
    h = {"host": "192.0.2.7:8765"}
    assert decide(EXPOSED, "GET", "/", "", h).status == 401
    assert decide(EXPOSED, "GET", "/", "", {**h, "authorization": f"Bearer {TOKEN}"}).allowed
    assert decide(EXPOSED, "GET", "/", "", {**h, "cookie": f"other=1; codirector_token={TOKEN}"}).allowed
    assert decide(EXPOSED, "GET", "/", "", {**h, "cookie": "codirector_token=wrong-token-000"}).status == 401
    once = decide(EXPOSED, "GET", "/timeline", f"story=a&token={TOKEN}", h)
    assert once.status == 303 and once.location == "/timeline?story=a" and once.set_token == TOKEN
    assert decide(EXPOSED, "POST", "/action/run", f"token={TOKEN}", {**h, "origin": "http://192.0.2.7:8765"}
                  ).status == 401  # a token in a POST's URL does not count
    cookie = {**h, "cookie": f"codirector_token={TOKEN}"}
    assert decide(EXPOSED, "POST", "/action/run", "", {**cookie, "origin": "http://evil.example"}).status == 403
    assert decide(EXPOSED, "POST", "/action/run", "", {**cookie, "origin": "http://192.0.2.7:8765"}).allowed


def test_an_open_address_needs_a_token() -> None:
    with pytest.raises(InvalidArgument, match="needs a token") as e:
        AccessPolicy.for_bind("0.0.0.0", None)
    assert "--token" in (e.value.hint or "")
    with pytest.raises(InvalidArgument, match="at least 8"):
        AccessPolicy.for_bind("0.0.0.0", "short")
    with pytest.raises(InvalidArgument):
        AccessPolicy.for_bind("127.0.0.1", "has; a semicolon")
    assert AccessPolicy.for_bind("::1", None).hosts == frozenset({"[::1]"})


# ---------------------------------------------------------------------- against a running studio


def test_a_post_from_another_origin_starts_nothing(served) -> None:  # type: ignore[no-untyped-def]
    form = urlencode({"story": "lighthouse", "branch": "main", "shot": "3", "name": "evil-branch",
                      "keyframe.3": "something else entirely"})
    before = branches(served.studio)
    for headers in ({"Origin": "http://evil.example"}, {"Origin": "null"}, {},
                    {"Referer": "http://evil.example/page"}):
        for action in ("/action/branch", "/action/run", "/action/replay", "/action/export", "/action/verify"):
            with touches(served.studio) as seen:
                status, _, body = raw(served.url, "POST", action, headers, form)
            assert status == 403, (action, headers, body)
            assert seen["sql"] == [] and seen["files"] == [], (action, headers, seen)
    assert branches(served.studio) == before
    status, _, body = raw(served.url, "POST", "/action/verify", {"Origin": served.url}, form)
    assert status == 200 and b'data-ok="yes"' in body  # the same form from the studio's own page works


def test_blob_requests_that_name_a_path_are_404_and_touch_nothing(served) -> None:  # type: ignore[no-untyped-def]
    digest = served.studio.audit("lighthouse").shot(1).selected.blob
    for target in ["/blob/../../etc/passwd", "/blob/..%2F..%2Fetc%2Fpasswd", "/blob/%2e%2e%2f%2e%2e%2fetc%2fpasswd",
                   "/blob/..%252F..%252Fetc%252Fpasswd", "/blob/%2Fetc%2Fpasswd", "/blob/" + digest.upper(),
                   "/blob/" + digest[:-1], "/blob/" + digest + "0", f"/blob/{digest[:2]}/{digest[2:]}",
                   "/blob/" + "g" * 64, "/thumb/../../etc/passwd", "/thumb/" + "z" * 64,
                   "/static/../app.py", "/static/..%2Fapp.py", "/static/app.py", "/static/studio.css/../../app.py"]:
        with touches(served.studio) as seen:
            status, _, body = raw(served.url, "GET", target)
        assert status == 404, (target, status, body[:200])
        assert b"root:" not in body
        assert seen["sql"] == [] and seen["files"] == [], (target, seen)
    assert raw(served.url, "GET", "/blob/" + "0" * 64)[0] == 404  # well formed, absent
    assert raw(served.url, "GET", "/blob/" + digest)[0] == 200


def test_a_foreign_host_header_is_refused(served) -> None:  # type: ignore[no-untyped-def]
    with touches(served.studio) as seen:
        status, _, _ = raw(served.url, "GET", "/", {"Host": "evil.example"})
    assert status == 400 and seen["sql"] == []


def test_an_exposed_studio_needs_its_token(studio_home) -> None:  # type: ignore[no-untyped-def]
    """What ``serve --host 0.0.0.0 --token T`` builds (bound to loopback here: tests reach no other address)."""
    from codirector.serve.app import create_app
    from codirector.serve.server import StudioServer

    studio = Studio(studio_home.root)
    with StudioServer.start(create_app(studio, policy=EXPOSED)) as server:
        for target in ("/", "/timeline?story=lighthouse", "/blob/" + "0" * 64, "/live", "/static/studio.js"):
            with touches(studio) as seen:
                status, _, body = raw(server.url, "GET", target)
            assert status == 401 and b"token" in body and seen["sql"] == [], target
        status, headers, _ = raw(server.url, "GET", f"/?token={TOKEN}")
        assert status == 303 and headers["location"] == "/"
        cookie = headers["set-cookie"].split(";")[0]
        assert "HttpOnly" in headers["set-cookie"] and "SameSite=Strict" in headers["set-cookie"]
        status, _, body = raw(server.url, "GET", "/", {"Cookie": cookie})
        assert status == 200 and b'data-story="lighthouse"' in body
        assert raw(server.url, "GET", "/", {"Authorization": f"Bearer {TOKEN}"})[0] == 200
        assert raw(server.url, "GET", "/", {"Authorization": "Bearer not-the-token"})[0] == 401
        form = urlencode({"story": "lighthouse"})
        assert raw(server.url, "POST", "/action/verify", {"Origin": server.url}, form)[0] == 401
        assert raw(server.url, "POST", "/action/verify", {"Cookie": cookie, "Origin": "http://evil.example"},
                   form)[0] == 403
        assert raw(server.url, "POST", "/action/verify", {"Cookie": cookie, "Origin": server.url}, form)[0] == 200
    studio.close()
