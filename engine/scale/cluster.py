"""Checks of ``--ray ADDRESS`` made before Ray is asked to join it (no Ray import here).

Invariants:
- An address nothing answers fails within seconds, naming it and how to start a cluster
  (``ray.init`` would retry for minutes).
- An address on another machine with this machine's own storage (a SQLite file, a blob folder) is
  refused before connecting: workers there could not reach it. A cluster on this machine (``auto``,
  a local address) is judged by its number of live nodes, counted by joining it before anything is
  written (``engine.scale.ray_pool.check_nodes``).
"""

from __future__ import annotations

import socket

from codirector.engine.jobs import WorkspaceSpec
from codirector.errors import ConfigError


def check_address(address: str, spec: WorkspaceSpec) -> None:
    """Both checks: the storage first (no connection needed), then that something answers."""
    check_storage_for(address, spec)
    check_reachable(address)


def _host_port(address: str) -> tuple[str, int] | None:
    """The host and port ``--ray ADDRESS`` names (default port: 6379, 10001 for ray://); None for auto/local."""
    target = address.removeprefix("ray://")
    if address in ("auto", "local") or not target:
        return None
    host, _, port = target.rpartition(":")
    if not host or not port.isdigit():
        host, port = target, ("10001" if address.startswith("ray://") else "6379")
    return host.strip("[]"), int(port)


def _this_machine(host: str) -> bool:
    if host in ("localhost", socket.gethostname(), socket.getfqdn()) or host.startswith("127.") or host == "::1":
        return True
    try:
        return host in {socket.gethostbyname(socket.gethostname()), "0.0.0.0"}
    except OSError:
        return False


def check_storage_for(address: str, spec: WorkspaceSpec) -> None:
    """``ConfigError`` before connecting when ``--ray`` names a cluster on another machine and the storage is this
    machine's own (a SQLite file, a blob folder): its workers could not reach it. A cluster on this machine
    (``auto``, a local address) is checked once joined, by its number of nodes."""
    named = _host_port(address)
    why = spec.multi_node_ready
    if named is None or why is None or _this_machine(named[0]):
        return
    raise ConfigError(f"--ray {address} joins a cluster on another machine, and {why}",
                      hint="workers on other machines reach the log and the blobs only through shared storage: "
                           "--db postgresql://… --blobs s3://bucket/prefix (see README, 'Ray')")


def check_reachable(address: str, *, timeout: float = 5.0) -> None:
    """``ConfigError`` naming ``address`` when nothing answers there (a TCP connection within ``timeout``), so
    ``--ray`` fails in seconds; ``auto`` (the cluster this machine is in) and local-mode addresses pass."""
    named = _host_port(address)
    if named is None:
        return
    host, port = named
    try:
        socket.create_connection((host, port), timeout=timeout).close()
    except OSError as e:
        raise ConfigError(f"--ray {address}: nothing answers at {host}:{port} ({e.strerror or e})",
                          hint="start a cluster there with `ray start --head` (then --ray auto on that machine, or "
                               "--ray HEAD:6379 / ray://HEAD:10001 from another), or give --workers N without --ray "
                               "to start a local Ray") from None
