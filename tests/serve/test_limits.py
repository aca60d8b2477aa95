"""The studio's limits, against a real server over raw sockets: a body over the cap is refused before it is
read, idle and slow-header connections are cut off, and live streams are capped per client."""

from __future__ import annotations

import http.client
import select
import socket
import time
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import replace
from urllib.parse import urlsplit

import pytest

from codirector.engine.studio import Studio
from codirector.serve.security import LIMITS, Limits

MiB = 1 << 20


def vm_kib(pid: int, field: str) -> int:
    """``VmRSS``, ``VmHWM``... of a process, in KiB, from ``/proc/PID/status``."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise AssertionError(f"no {field} in /proc/{pid}/status")


def read_all(sock: socket.socket) -> bytes:
    """Whatever the server sends until it closes the connection (a reset after its answer ends it too)."""
    out = b""
    while True:
        try:
            data = sock.recv(65536)
        except ConnectionResetError:
            return out
        if not data:
            return out
        out += data


def stream_post(port: int, path: str, length: int) -> tuple[bytes, int]:
    """POST ``length`` bytes to ``path``, streamed 64 KiB at a time from one buffer (never held whole), stopping
    as soon as the server answers; (the answer, bytes of the body sent)."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=30)
    with sock:
        sock.sendall(f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nOrigin: http://127.0.0.1:{port}\r\n"
                     "Content-Type: application/x-www-form-urlencoded\r\n"
                     f"Content-Length: {length}\r\n\r\n".encode())
        chunk = memoryview(b"a" * (64 << 10))
        sent = 0
        sock.setblocking(False)
        while sent < length:
            readable, writable, _ = select.select([sock], [sock], [], 30)
            if readable:
                break
            if not writable:
                raise AssertionError(f"the server neither read nor answered for 30 s ({sent} bytes sent)")
            try:
                sent += sock.send(chunk[: min(len(chunk), length - sent)])
            except BlockingIOError:
                continue
            except (BrokenPipeError, ConnectionResetError):
                break
        sock.setblocking(True)
        sock.settimeout(30)
        return read_all(sock), sent


def test_a_huge_post_is_refused_before_its_body_is_read(studio_home, codirector_serve) -> None:  # type: ignore[no-untyped-def]
    """256 MiB announced: 413 on the Content-Length, the body unread, the server's peak RSS barely moves."""
    total = 256 * MiB
    with codirector_serve(str(studio_home.root)) as serving:
        port, pid = serving.port, serving.proc.pid
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        conn.request("GET", "/")
        assert conn.getresponse().status == 200  # pages loaded once: what is measured next is the POST alone
        conn.close()
        before = vm_kib(pid, "VmHWM")
        answer, sent = stream_post(port, "/action/branch", total)
        grown = vm_kib(pid, "VmHWM") - before
        assert answer.startswith(b"HTTP/1.1 413"), answer[:300]
        assert b"1048576" in answer  # the limit is named
        assert sent < total // 4, sent  # answered long before the body was all there
        assert grown < 20 * 1024, f"peak RSS grew by {grown} KiB"
        # without a Content-Length (chunked) a POST is refused too: a limit is checked before reading
        with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
            sock.sendall(f"POST /action/verify HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nOrigin: http://127.0.0.1:{port}"
                         "\r\nContent-Type: application/x-www-form-urlencoded\r\nTransfer-Encoding: chunked\r\n\r\n"
                         "5\r\nstory\r\n".encode())
            assert read_all(sock).startswith(b"HTTP/1.1 411")
        assert serving.proc.poll() is None


def closed_by_server(sock: socket.socket, within_s: float, *, drip: bytes | None = None) -> bool:
    """Whether the server closes ``sock`` within ``within_s``, sending ``drip`` every 0.2 s meanwhile."""
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        try:
            if drip is not None:
                sock.sendall(drip)
            readable, _, _ = select.select([sock], [], [], 0.2)
            if readable and sock.recv(4096) == b"":
                return True
        except (BrokenPipeError, ConnectionResetError):
            return True
    return False


@pytest.fixture
def short_limits(studio_home) -> Iterator[tuple[str, Limits]]:  # type: ignore[no-untyped-def]
    """A studio whose time limits are 1 s, with room for 4 connections; (its URL, its limits)."""
    from codirector.serve.app import create_app
    from codirector.serve.server import StudioServer

    limits = replace(LIMITS, header_timeout_s=1.0, keep_alive_s=1, body_timeout_s=1.0, max_connections=4)
    studio = Studio(studio_home.root)
    with StudioServer.start(create_app(studio, limits=limits)) as server:
        yield server.url, limits
    studio.close()


def test_a_form_that_arrives_too_slowly_is_refused(short_limits) -> None:  # type: ignore[no-untyped-def]
    url, limits = short_limits
    parts = urlsplit(url)
    with socket.create_connection((parts.hostname, parts.port), timeout=30) as sock:
        sock.sendall(f"POST /action/verify HTTP/1.1\r\nHost: {parts.netloc}\r\nOrigin: {url}\r\n"
                     "Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 100\r\n\r\nstory=".encode())
        answer = read_all(sock)  # the rest of the body never comes
    assert answer.startswith(b"HTTP/1.1 408"), answer[:300]
    assert f"within {limits.body_timeout_s:g} s".encode() in answer


def test_idle_and_slow_header_connections_are_cut_off(short_limits) -> None:  # type: ignore[no-untyped-def]
    url, limits = short_limits
    limit_s = limits.header_timeout_s
    parts = urlsplit(url)
    address = (parts.hostname, parts.port)
    with socket.create_connection(address, timeout=30) as idle:  # connects, never says anything
        assert closed_by_server(idle, limit_s + 10)
    with socket.create_connection(address, timeout=30) as slow:  # slowloris: a header line every 0.2 s, forever
        slow.sendall(f"GET / HTTP/1.1\r\nHost: {parts.netloc}\r\n".encode())
        started = time.monotonic()
        assert closed_by_server(slow, limit_s + 10, drip=b"X-Slow: 1\r\n")
        assert time.monotonic() - started >= limit_s * 0.5  # cut off by the header limit, not refused at once
    # a prompt client is served, twice on one connection, and its idle connection then goes too
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    for _ in range(2):
        conn.request("GET", "/")
        r = conn.getresponse()
        assert r.status == 200 and b'data-story="lighthouse"' in r.read()
    assert closed_by_server(conn.sock, limit_s + 10)
    conn.close()


def test_connections_beyond_the_limit_get_503(short_limits) -> None:  # type: ignore[no-untyped-def]
    url, limits = short_limits
    parts = urlsplit(url)
    with ExitStack() as held:
        for _ in range(limits.max_connections - 1):  # with the request's own, the limit is reached
            held.enter_context(socket.create_connection((parts.hostname, parts.port), timeout=30))
        conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
        conn.request("GET", "/")
        assert conn.getresponse().status == 503
        conn.close()
    time.sleep(0.1)  # the server sees the held connections close
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    conn.request("GET", "/")
    assert conn.getresponse().status == 200
    conn.close()


def test_live_streams_are_capped_per_client(served) -> None:  # type: ignore[no-untyped-def]
    cap = LIMITS.streams_per_client
    parts = urlsplit(served.url)

    def open_stream(path: str = "/live") -> tuple[http.client.HTTPConnection, http.client.HTTPResponse]:
        conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
        conn.request("GET", path)
        return conn, conn.getresponse()

    streams: list[tuple[http.client.HTTPConnection, http.client.HTTPResponse]] = []
    try:
        for _ in range(cap):  # the home's stream never ends by itself (a complete branch's would)
            conn, r = open_stream()
            assert r.status == 200 and r.readline() == b"retry: 2000\n"
            streams.append((conn, r))
        conn, r = open_stream()
        assert r.status == 429 and r.getheader("retry-after") and f"{cap} live streams".encode() in r.read()
        conn.close()
        conn, r = open_stream("/live/branch?story=lighthouse&branch=main")
        assert r.status == 429
        conn.close()
        page = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
        page.request("GET", "/")
        assert page.getresponse().status == 200  # pages still answer
        page.close()
        gone = streams.pop()
        gone[1].close()
        gone[0].close()
        deadline = time.monotonic() + 15
        while True:  # the server notices the closed stream within a poll or two, and the slot is free again
            conn, r = open_stream()
            if r.status == 200:
                streams.append((conn, r))
                break
            conn.close()
            assert r.status == 429 and time.monotonic() < deadline
            time.sleep(0.2)
    finally:
        for conn, r in streams:
            r.close()
            conn.close()
