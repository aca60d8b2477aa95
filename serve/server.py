"""Running the studio: uvicorn on a socket bound here, in the foreground (the CLI) or in a thread.

    with StudioServer.start(create_app(studio)) as server:   # 127.0.0.1 and a free port
        urllib.request.urlopen(server.url)

Invariants:
- The socket is bound before uvicorn starts, so a port in use is a clear ``InvalidArgument`` naming
  it (not a log line), and port 0 gives a free port with no race between choosing and binding.
- Stopping ends the live streams first (``StudioApp.stopping``) so the server never waits on them,
  then shuts the runner down: it takes no more jobs, and a Ray pool it runs them on (``serve
  --workers/--ray``) is closed with the server, however it stops (``stop``, or ``run`` ending).
"""

from __future__ import annotations

import socket
import threading
import time
from types import TracebackType

from fastapi import FastAPI

from codirector.errors import InvalidArgument
from codirector.serve.app import StudioApp

GRACE_S = 2


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
        self.server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=access_log, lifespan="off",
                                                    timeout_graceful_shutdown=GRACE_S))
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return int(self.sock.getsockname()[1])

    @property
    def url(self) -> str:
        host = self.sock.getsockname()[0]
        host = f"[{host}]" if ":" in host else host
        return f"http://{host}:{self.port}"

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


__all__ = ["StudioServer", "bind"]
