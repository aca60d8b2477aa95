"""Running the studio: uvicorn on a socket bound here, in the foreground (the CLI) or in a thread.

    with StudioServer.start(create_app(studio)) as server:   # 127.0.0.1 and a free port
        urllib.request.urlopen(server.url)

Invariants:
- The socket is bound before uvicorn starts, so a port in use is a clear ``InvalidArgument`` naming
  it (not a log line), and port 0 gives a free port with no race between choosing and binding.
- Stopping ends the live streams first (``StudioApp.stopping``) so the server never waits on them,
  then shuts the runner down: it takes no more jobs, and a Ray pool it runs them on (``serve
  --workers/--ray``) is closed with the server, however it stops (``stop``, or ``run`` ending).
- The app's ``Limits`` hold on the wire too. uvicorn's own options set the idle keep-alive
  (``timeout_keep_alive``), the size of a request's head (``h11_max_incomplete_event_size``) and the
  open connections (``limit_concurrency``: 503 beyond). uvicorn has no limit on the time a request's
  head may take (its keep-alive timer starts only after a first response, and any byte received
  stops it), so ``StudioH11`` adds one: from the connection opening, or the last response ending,
  until the head of the next request is in, at most ``Limits.header_timeout_s``, else the
  connection is closed. The protocol is always h11 (never httptools), so these hold wherever it runs.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from types import TracebackType
from typing import Any

from fastapi import FastAPI
from uvicorn.protocols.http.h11_impl import H11Protocol

from codirector.errors import InvalidArgument
from codirector.serve.context import StudioApp
from codirector.serve.security import Limits

GRACE_S = 2


def address(host: str, port: int) -> str:
    """``http://HOST:PORT/``, an IPv6 address in one pair of brackets however it was given (``::1``, ``[::1]``)."""
    bare = host.strip("[]")
    return f"http://{f'[{bare}]' if ':' in bare else bare}:{port}/"


class StudioH11(H11Protocol):
    """uvicorn's h11 protocol with a deadline on each request's head (see the module docstring)."""

    header_timeout_s = 10.0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._head_deadline: asyncio.TimerHandle | None = None

    @classmethod
    def with_timeout(cls, seconds: float) -> type[StudioH11]:
        return type("StudioH11", (cls,), {"header_timeout_s": seconds})

    def _in_request(self) -> bool:
        return self.cycle is not None and not self.cycle.response_complete

    def _stop_deadline(self) -> None:
        if self._head_deadline is not None:
            self._head_deadline.cancel()
            self._head_deadline = None

    def _await_head(self) -> None:
        self._stop_deadline()
        if not self._in_request() and not self.transport.is_closing():
            self._head_deadline = self.loop.call_later(self.header_timeout_s, self._head_too_slow)

    def _head_too_slow(self) -> None:
        self._head_deadline = None
        if not self._in_request() and not self.transport.is_closing():
            self.transport.close()

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._await_head()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self._in_request():
            self._stop_deadline()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._await_head()

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_deadline()
        super().connection_lost(exc)


def bind(host: str, port: int) -> socket.socket:
    """A listening TCP socket on ``host:port`` (IPv4 or IPv6), or ``InvalidArgument`` saying why not."""
    family = socket.AF_INET6 if ":" in host.strip("[]") else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host.strip("[]"), port))
    except OSError as e:
        sock.close()
        raise InvalidArgument(f"cannot listen on {host}:{port}: {e.strerror or e}",
                              hint="pass another --port (e.g. --port 8766), or stop what is using it") from e
    sock.listen(128)
    sock.set_inheritable(True)
    return sock


class StudioServer:
    """uvicorn serving a studio app on a socket bound here."""

    def __init__(self, app: FastAPI, sock: socket.socket, *, access_log: bool = False) -> None:
        import uvicorn

        self.app = app
        self.sock = sock
        limits: Limits = app.state.studio_app.limits
        self.server = uvicorn.Server(uvicorn.Config(
            app, log_level="warning", access_log=access_log, lifespan="off", timeout_graceful_shutdown=GRACE_S,
            http=StudioH11.with_timeout(limits.header_timeout_s), timeout_keep_alive=limits.keep_alive_s,
            h11_max_incomplete_event_size=limits.max_header_bytes, limit_concurrency=limits.max_connections))
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return int(self.sock.getsockname()[1])

    @property
    def url(self) -> str:
        return address(self.sock.getsockname()[0], self.port).rstrip("/")

    @classmethod
    def start(cls, app: FastAPI, host: str = "127.0.0.1", port: int = 0) -> StudioServer:
        """Serve ``app`` in a daemon thread; returns once it accepts connections."""
        server = cls(app, bind(host, port))
        server._thread = threading.Thread(target=server.server.run, kwargs={"sockets": [server.sock]},
                                          name="codirector-studio", daemon=True)
        server._thread.start()
        deadline = time.monotonic() + 30
        while not server.server.started:
            if not server._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the studio server did not start")
            time.sleep(0.02)
        return server

    def run(self) -> None:
        """Serve in this thread until interrupted (Ctrl-C)."""
        try:
            self.server.run(sockets=[self.sock])
        finally:
            self.app.state.studio_app.runner.shutdown()
            self.close()

    def stop(self) -> None:
        studio_app: StudioApp = self.app.state.studio_app
        studio_app.stopping = True
        self.server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=GRACE_S + 5)
        studio_app.runner.shutdown()
        self.close()

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self) -> StudioServer:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()


__all__ = ["StudioH11", "StudioServer", "address", "bind"]
