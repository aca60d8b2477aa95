"""A TCP proxy on 127.0.0.1 for fault tests: put it in front of PostgreSQL or the S3 server and break the line.

    proxy = TcpProxy("127.0.0.1", pg_port)          # clients connect to proxy.port instead
    proxy.drop_all()                                # every open connection is closed (a restart, a failover)
    proxy.blackhole(10)                             # for 10 s nothing passes and nothing is refused: bytes vanish
    proxy.cut_after(b"COMMIT")                      # the next client chunk holding COMMIT reaches the server,
                                                    # and its answer never reaches the client (outcome unknown)
    proxy.close()

Everything runs in daemon threads; the proxy only ever connects to the one upstream it was given on loopback.
"""

from __future__ import annotations

import contextlib
import select
import socket
import threading
import time


class TcpProxy:
    """Forwards connections from ``127.0.0.1:port`` to ``host:upstream_port``, with faults on demand."""

    def __init__(self, host: str, upstream_port: int) -> None:
        if host not in ("127.0.0.1", "localhost", "::1"):
            raise ValueError("the fault proxy forwards to loopback only")
        self.upstream = (host, upstream_port)
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(128)
        self.port = self._listener.getsockname()[1]
        self._lock = threading.Lock()
        self._pairs: list[tuple[socket.socket, socket.socket | None]] = []
        self._blackhole_until = 0.0
        self._cut_marker: bytes | None = None
        self.cuts = 0  # how many answers were swallowed by ``cut_after``
        self.connections = 0
        self._closed = False
        threading.Thread(target=self._accept, daemon=True, name="tcp-proxy-accept").start()

    # -- faults ----------------------------------------------------------------------------

    def drop_all(self) -> None:
        """Close every open connection, both ways (what a database restart does to its clients)."""
        with self._lock:
            pairs, self._pairs = self._pairs, []
        for client, server in pairs:
            for s in (client, server):
                if s is not None:
                    with contextlib.suppress(OSError):
                        s.shutdown(socket.SHUT_RDWR)
                    with contextlib.suppress(OSError):
                        s.close()

    def blackhole(self, seconds: float) -> None:
        """For ``seconds``, bytes in either direction vanish and new connections reach nothing (a stalled network)."""
        self._blackhole_until = time.monotonic() + seconds

    @property
    def blackholed(self) -> bool:
        return time.monotonic() < self._blackhole_until

    def cut_after(self, marker: bytes) -> None:
        """The next client chunk containing ``marker`` goes through; the answer to it is dropped and the
        connection closed (a commit whose acknowledgement is lost)."""
        self._cut_marker = marker

    def close(self) -> None:
        self._closed = True
        with contextlib.suppress(OSError):
            self._listener.close()
        self.drop_all()

    # -- plumbing ----------------------------------------------------------------------------

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._serve, args=(client,), daemon=True, name="tcp-proxy-conn").start()

    def _serve(self, client: socket.socket) -> None:
        server: socket.socket | None = None
        while self.blackholed and not self._closed:  # a new connection during a blackhole reaches nothing
            time.sleep(0.05)
            with contextlib.suppress(OSError, ValueError):
                readable, _, _ = select.select([client], [], [], 0)
                if readable and not client.recv(65536):
                    client.close()
                    return
        try:
            server = socket.create_connection(self.upstream, timeout=5)
            server.settimeout(None)
        except OSError:
            client.close()
            return
        with self._lock:
            self._pairs.append((client, server))
        cut_pending = False
        try:
            while True:
                readable, _, _ = select.select([client, server], [], [], 0.2)
                for sock in readable:
                    data = sock.recv(65536)
                    if not data:
                        return
                    if self.blackholed:
                        continue  # the bytes vanish
                    if sock is client:
                        marker = self._cut_marker
                        if marker is not None and marker in data:
                            self._cut_marker = None
                            cut_pending = True
                        server.sendall(data)
                    else:
                        if cut_pending:
                            self.cuts += 1
                            return  # the answer is never delivered; both ends closed below
                        client.sendall(data)
        except (OSError, ValueError):
            return
        finally:
            for s in (client, server):
                with contextlib.suppress(OSError):
                    s.close()
            with self._lock:
                self._pairs = [p for p in self._pairs if p[0] is not client]
