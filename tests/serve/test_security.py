"""The studio's front door: foreign origins, missing tokens, strange hosts and path tricks are refused
before they reach a route, the log or the blob store."""

from __future__ import annotations

import http.client
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import quote, urlencode, urljoin, urlsplit

import pytest
import sqlalchemy as sa

from codirector.engine.studio import Studio
from codirector.errors import InvalidArgument
from codirector.serve.security import LIMITS, AccessPolicy, decide, whole

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
BAD_NUMBERS = ("99999999999999999999", "9" * 5000, "1234567890", "\u00b2", "\u0663", "3\u0663", "-1", "+3", " 3",
               "3 ", "3.0", "1_0", "0x10", "1e3", "", "3\n", "\uff13")  # ², ٣ and a fullwidth 3 among them


def test_verdicts_on_loopback() -> None:
    ok = {"host": "127.0.0.1:8765"}
    assert decide(LOOPBACK, "GET", "/", "", ok).allowed
    assert decide(LOOPBACK, "GET", "/", "", {"host": "localhost:8765"}).allowed
    assert decide(LOOPBACK, "GET", "/", "", {"host": "evil.example:8765"}).status == 400  # DNS rebinding
    assert decide(LOOPBACK, "GET", "/", "", {"host": "127.0.0.1.evil.example:8765"}).status == 400
    assert decide(LOOPBACK, "GET", "/", "", {}).status == 400
    sized = {**ok, "content-length": "12"}
    assert decide(LOOPBACK, "POST", "/action/run", "", {**sized, "origin": "http://127.0.0.1:8765"}).allowed
    assert decide(LOOPBACK, "POST", "/action/run", "", {**sized, "referer": "http://127.0.0.1:8765/shot?x=1"}).allowed
    for bad in ({"origin": "http://evil.example"}, {"origin": "null"}, {}, {"referer": "http://evil.example/"},
                {"origin": "http://127.0.0.1:8766"}, {"origin": "http://127.0.0.1:8765.evil.example"}):
        assert decide(LOOPBACK, "POST", "/action/run", "", {**sized, **bad}).status == 403, bad


def test_verdicts_with_a_token() -> None:
    h = {"host": "192.0.2.7:8765"}
    assert decide(EXPOSED, "GET", "/", "", h).status == 401
    assert decide(EXPOSED, "GET", "/", "", {**h, "authorization": f"Bearer {TOKEN}"}).allowed
    assert decide(EXPOSED, "GET", "/", "", {**h, "cookie": f"other=1; codirector_token_8765={TOKEN}"},
                  port=8765).allowed
    assert decide(EXPOSED, "GET", "/", "", {**h, "cookie": "codirector_token_8765=wrong-token-000"},
                  port=8765).status == 401
    for other in (f"codirector_token_8766={TOKEN}", f"codirector_token={TOKEN}"):  # another port's, or unnamed
        assert decide(EXPOSED, "GET", "/", "", {**h, "cookie": other}, port=8765).status == 401, other
    once = decide(EXPOSED, "GET", "/timeline", f"story=a&token={TOKEN}", h, port=8765)
    assert once.status == 303 and once.location == "/timeline?story=a" and once.set_token == TOKEN
    assert once.cookie == "codirector_token_8765"
    post = {**h, "origin": "http://192.0.2.7:8765", "content-length": "0"}
    assert decide(EXPOSED, "POST", "/action/run", f"token={TOKEN}", post, port=8765
                  ).status == 401  # a token in a POST's URL does not count
    cookie = {**post, "cookie": f"codirector_token_8765={TOKEN}"}
    assert decide(EXPOSED, "POST", "/action/run", "", {**cookie, "origin": "http://evil.example"},
                  port=8765).status == 403
    assert decide(EXPOSED, "POST", "/action/run", "", cookie, port=8765).allowed


def test_the_token_exchange_redirects_only_within_the_studio() -> None:
    h = {"host": "192.0.2.7:8765"}
    for path in ("//evil.example/landed", "///evil.example/landed", "/\\evil.example/landed", "/\\/evil.example",
                 "//", "/%2F/evil.example"):
        v = decide(EXPOSED, "GET", path, f"x=1&token={TOKEN}", h)
        assert v.status == 303 and v.location is not None, path
        assert v.location.startswith("/") and v.location[1:2] not in ("/", "\\"), (path, v.location)
        landed = urlsplit(urljoin("http://192.0.2.7:8765/timeline", v.location))
        assert landed.netloc == "192.0.2.7:8765" and landed.query == "x=1", (path, v.location)
    assert decide(EXPOSED, "GET", "//evil.example/landed", f"token={TOKEN}", h).location == "/evil.example/landed"


def test_hosts_are_matched_in_any_case() -> None:
    for host in ("LOCALHOST:8765", "LocalHost:8765", "localhost:8765", "127.0.0.1:8765"):
        assert decide(LOOPBACK, "GET", "/", "", {"host": host}).allowed, host
        post = {"host": host, "origin": f"http://{host.lower()}", "content-length": "7"}
        assert decide(LOOPBACK, "POST", "/action/run", "", post).allowed, host
    assert decide(AccessPolicy.for_bind("LOCALHOST", None), "GET", "/", "", {"host": "localhost:1"}).allowed
    assert decide(LOOPBACK, "GET", "/", "", {"host": "LOCALHOST.evil.example:8765"}).status == 400


def test_bodies_are_judged_by_their_length_before_they_are_read() -> None:
    ok = {"host": "127.0.0.1:8765", "origin": "http://127.0.0.1:8765"}
    assert decide(LOOPBACK, "POST", "/action/run", "", {**ok, "content-length": str(LIMITS.max_body)}).allowed
    for length in (str(LIMITS.max_body + 1), str(256 << 20), "9" * 40, "-1", "1e9"):
        v = decide(LOOPBACK, "POST", "/action/run", "", {**ok, "content-length": length})
        assert v.status == 413 and str(LIMITS.max_body) in v.reason, length
    assert decide(LOOPBACK, "POST", "/action/run", "", ok).status == 411
    assert decide(LOOPBACK, "POST", "/action/run", "", {**ok, "transfer-encoding": "chunked"}).status == 411
    assert decide(LOOPBACK, "GET", "/", "", {**ok, "content-length": str(256 << 20)}).status == 413
    assert decide(LOOPBACK, "GET", "/", "", ok).allowed
    # a foreign page's POST is 403 whatever its size: it learns nothing of the limits
    assert decide(LOOPBACK, "POST", "/action/run", "", {**ok, "origin": "http://evil.example",
                                                         "content-length": str(256 << 20)}).status == 403


def test_numbers_are_ascii_digits_and_bounded() -> None:
    assert [whole("shot", v) for v in ("0", "3", "007", "999999999")] == [0, 3, 7, 999_999_999]
    for bad in BAD_NUMBERS:
        with pytest.raises(InvalidArgument, match="shot must be a whole number of 1 to 9 digits") as e:
            whole("shot", bad)
        assert len(e.value.message) < 140  # a 5000-digit value is cut, not echoed


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
        assert cookie == f"codirector_token_{server.port}={TOKEN}"  # named by its port: cookies ignore ports
        assert "HttpOnly" in headers["set-cookie"] and "SameSite=Strict" in headers["set-cookie"]
        status, _, body = raw(server.url, "GET", "/", {"Cookie": cookie})
        assert status == 200 and b'data-story="lighthouse"' in body
        for other in (f"codirector_token_{server.port + 1}={TOKEN}", f"codirector_token={TOKEN}"):
            assert raw(server.url, "GET", "/", {"Cookie": other})[0] == 401, other
        for target in ("//evil.example/landed", "///evil.example/landed", "/%2F%2Fevil.example/landed"):
            status, headers, _ = raw(server.url, "GET", f"{target}?token={TOKEN}")
            assert status == 303 and headers["location"] == "/evil.example/landed", (target, headers)
        assert raw(server.url, "GET", "/", {"Authorization": f"Bearer {TOKEN}"})[0] == 200
        assert raw(server.url, "GET", "/", {"Authorization": "Bearer not-the-token"})[0] == 401
        form = urlencode({"story": "lighthouse"})
        assert raw(server.url, "POST", "/action/verify", {"Origin": server.url}, form)[0] == 401
        assert raw(server.url, "POST", "/action/verify", {"Cookie": cookie, "Origin": "http://evil.example"},
                   form)[0] == 403
        assert raw(server.url, "POST", "/action/verify", {"Cookie": cookie, "Origin": server.url}, form)[0] == 200
    studio.close()


def test_no_numeric_parameter_is_a_500(served) -> None:  # type: ignore[no-untyped-def]
    """Every number a page or a form takes: 400 naming it for anything but 1 to 9 ASCII digits, never a 500."""
    digest = served.studio.audit("lighthouse").shot(1).selected.blob
    where = "story=lighthouse&branch=main"
    pages = (f"/shot?{where}&shot={{}}", f"/memory?{where}&shot={{}}", f"/memory?{where}&position={{}}",
             f"/timeline?{where}&page={{}}", f"/thumb/{digest}?w={{}}")
    for target in pages:
        assert raw(served.url, "GET", target.format(3 if "page" not in target else 1))[0] == 200, target
        for bad in BAD_NUMBERS:
            status, _, body = raw(served.url, "GET", target.format(quote(bad)))
            assert status == 400 and b"1 to 9 digits" in body, (target, bad[:20], status, body[-300:])
    for target in pages[:4]:  # the largest number parsed: past the story's end, and said so
        status, _, body = raw(served.url, "GET", target.format("999999999"))
        assert status in (400, 409) and b"999999999" in body, (target, status, body[-300:])
    before = branches(served.studio)
    for bad in BAD_NUMBERS:
        form = urlencode({"story": "lighthouse", "branch": "main", "shot": bad, "name": "from-a-bad-number"})
        status, _, body = raw(served.url, "POST", "/action/branch", {"Origin": served.url}, form)
        assert status == 400, (bad[:20], status, body[-300:])
    assert branches(served.studio) == before


def test_a_bad_branch_name_is_400_not_409(served) -> None:  # type: ignore[no-untyped-def]
    before = branches(served.studio)
    for name in ("bad\x01name", "x" * 201):
        form = urlencode({"story": "lighthouse", "branch": "main", "shot": "3", "name": name})
        status, _, body = raw(served.url, "POST", "/action/branch", {"Origin": served.url}, form)
        assert status == 400 and b"branch name" in body, (name[:20], status, body[-300:])
    form = urlencode({"story": "lighthouse", "branch": "main", "shot": "3", "name": "storm"})
    assert raw(served.url, "POST", "/action/branch", {"Origin": served.url}, form)[0] == 409  # it exists: a conflict
    assert branches(served.studio) == before


def test_host_names_in_any_case_are_answered(served) -> None:  # type: ignore[no-untyped-def]
    port = urlsplit(served.url).port
    for host in (f"LOCALHOST:{port}", f"LocalHost:{port}"):
        status, _, body = raw(served.url, "GET", "/", {"Host": host})
        assert status == 200 and b'data-story="lighthouse"' in body, host
    form = urlencode({"story": "lighthouse"})
    status, _, body = raw(served.url, "POST", "/action/verify", {"Host": f"LOCALHOST:{port}",
                                                                  "Origin": f"http://localhost:{port}"}, form)
    assert status == 200 and b'data-ok="yes"' in body


def test_a_blob_that_is_a_symlink_is_not_served(served, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """A link in the blob folder (to a file with the right bytes, even) is 404, as is a link as the shard folder."""
    from codirector.store.blobs import LocalBlobStore, digest_of

    from support import png_bytes

    store = served.studio.blobs
    assert isinstance(store, LocalBlobStore)
    made: list[object] = []
    try:
        data = png_bytes((250, 1, 2))
        digest = digest_of(data)
        outside = tmp_path / "elsewhere.png"
        outside.write_bytes(data)
        link = store.path(digest)
        assert not link.exists()
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(outside)
        made.append(link)
        assert raw(served.url, "GET", f"/blob/{digest}")[0] == 404
        assert raw(served.url, "GET", f"/thumb/{digest}?w=96")[0] == 404
        link.unlink()
        made.clear()
        # a shard folder that is a link (every blob under it would be read through it)
        data = png_bytes((3, 250, 4))
        digest = digest_of(data)
        shard = store.path(digest).parent
        if shard.exists():
            pytest.skip(f"the shard folder {shard.name} is already in use")
        real = tmp_path / "shard"
        real.mkdir()
        (real / store.path(digest).name).write_bytes(data)
        shard.symlink_to(real, target_is_directory=True)
        made.append(shard)
        assert raw(served.url, "GET", f"/blob/{digest}")[0] == 404
        # the same bytes as a plain file are served
        shard.unlink()
        made.clear()
        assert store.put(data) == digest
        made.append(store.path(digest))
        assert raw(served.url, "GET", f"/blob/{digest}")[0] == 200
    finally:
        for path in made:
            path.unlink()  # type: ignore[attr-defined]
