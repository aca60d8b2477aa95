"""Opening the database and migrating it: SQLite by default, PostgreSQL by URL.

SQLite connections get WAL, foreign keys and a busy timeout on every connect. Migrations are
Alembic scripts shipped in ``store/migrations``; ``upgrade(engine)`` brings any database to head
and is what ``codirector init`` runs. Opening a database that is behind head raises ``StoreError``
naming the fix instead of failing later on a missing column. ``connection`` turns a driver's
``OperationalError`` (locked, not initialised, unreachable) into a ``StoreError`` that names the fix;
``raw_transaction`` does the same for the append's hot path, on the pooled driver connection itself.

A lost PostgreSQL connection (a restart, a dropped socket, a failover, a server still starting) is
``StoreUnreachable``; ``retrying`` (and the ``retried`` method decorator) run an operation again with
exponential backoff until it succeeds or ``CODIRECTOR_DB_RETRY_SECONDS`` (default 30) have passed since
the first failure, then let ``StoreUnreachable`` out (exit 6); a database this process never reached is
retried for 3 s at most (a wrong URL is named at once, not after half a minute). Only the outermost retry
loop of a thread waits: an operation made of retried operations is bounded once, not once per layer. An operation is
retried only if running it again is safe: reads, lease statements (conditional on the owner), and
appends, whose unknown outcomes the event store resolves by reading the branch head.
"""

from __future__ import annotations

import functools
import logging
import math
import os
import sqlite3
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import event as sa_event
from sqlalchemy import inspect
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import DBAPIError, DisconnectionError, OperationalError
from sqlmodel import create_engine

from codirector.errors import ConfigError, StoreError, StoreUnreachable
from codirector.store.home import mask_url

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
PING_AFTER_IDLE_S = 2.0  # a pooled PostgreSQL connection idle this long is pinged before reuse
DEFAULT_RETRY_S = 30.0  # how long a lost database connection is retried (CODIRECTOR_DB_RETRY_SECONDS)
CONNECT_TIMEOUT_S = 10  # libpq's connect_timeout, unless the URL sets one: a silent host cannot hang a retry
_log = logging.getLogger(__name__)
T = TypeVar("T")


def _busy_timeout_ms() -> int:
    """How long a writer waits for another process's lock (CODIRECTOR_BUSY_TIMEOUT seconds, default 10)."""
    try:
        return int(float(os.environ.get("CODIRECTOR_BUSY_TIMEOUT", "10")) * 1000)
    except ValueError:
        return 10_000


def normalise_url(url: str) -> str:
    """Accept ``postgres://`` and plain ``postgresql://`` and use the psycopg 3 driver."""
    if url.startswith("postgres://"):
        url = "postgresql://" + url[len("postgres://") :]
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url[len("postgresql://") :]
    return url


def make_engine(url: str, **kwargs: Any) -> Engine:
    """An engine for ``url`` with codirector's connection settings.

    A SQLite file this user may read but not write (or whose folder it may not write, where the journal
    goes) is opened read-only (``mode=ro``; ``immutable`` when even the WAL index cannot be made): queries
    work, and a write fails with a ``StoreError`` naming the file and the missing permission."""
    url = normalise_url(url)
    if url.startswith("sqlite"):
        path = url.split("///", 1)[-1]
        if path and path != ":memory:" and not Path(path).parent.is_dir():
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        busy = _busy_timeout_ms()
        read_only = bool(path) and path != ":memory:" and not writable(path)
        if read_only:
            kwargs = {**kwargs, "creator": lambda: _read_only_sqlite(path, busy / 1000)}
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": busy / 1000}, **kwargs)
        if read_only:
            _READ_ONLY.add(engine)

        @sa_event.listens_for(engine, "connect")
        def _pragmas(dbapi_conn: Any, _record: Any) -> None:
            cur = dbapi_conn.cursor()
            if read_only:
                cur.execute("PRAGMA query_only=ON")  # and never a journal-mode change, which is a write
            else:
                cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute(f"PRAGMA busy_timeout={busy}")
            cur.execute("PRAGMA synchronous=FULL")  # durable commits even on power loss
            cur.close()

        return engine
    if url.startswith("postgresql"):
        if "connect_timeout" not in url:
            connect_args = {"connect_timeout": CONNECT_TIMEOUT_S, **kwargs.get("connect_args", {})}
            kwargs = {**kwargs, "connect_args": connect_args}
        engine = create_engine(url, **kwargs)
        _ping_after_idle(engine)
        sa_event.listen(engine, "connect", lambda *_: _REACHED.add(engine))
        return engine
    raise StoreError(
        f"unsupported database URL {mask_url(url)!r}",
        hint="use sqlite:///path/to/file.db or postgresql://user:pass@host:5432/dbname",
    )


_READ_ONLY: weakref.WeakSet[Engine] = weakref.WeakSet()


def writable(path: str | os.PathLike[str]) -> bool:
    """Whether this user may write the SQLite file at ``path`` and the folder its journal goes in (a file
    not there yet: whether it may be created). A file with no write bit at all (``chmod a-w``) counts as
    read-only even for root, whom permissions do not stop: whoever made it so meant it."""
    file = Path(path)
    if file.exists():
        return (bool(file.stat().st_mode & 0o222) and os.access(file, os.W_OK)
                and os.access(file.parent, os.W_OK))
    folder = next((p for p in file.parents if p.exists()), Path("."))
    return os.access(folder, os.W_OK)


def is_read_only(engine: Engine) -> bool:
    """Whether ``engine`` opened its SQLite file read-only (this user may not write it): callers skip caches."""
    return engine in _READ_ONLY


def _read_only_sqlite(path: str, timeout: float) -> sqlite3.Connection:
    """A read-only connection to ``path``: ``mode=ro``, or ``immutable=1`` when SQLite cannot open the WAL
    index read-only (a WAL file whose ``-shm`` is missing in a folder this user may not write)."""
    uri = Path(path).absolute().as_uri()
    conn = sqlite3.connect(f"{uri}?mode=ro", uri=True, check_same_thread=False, timeout=timeout)
    try:
        conn.execute("SELECT count(*) FROM sqlite_master").fetchone()  # the first read opens the WAL index
        return conn
    except sqlite3.OperationalError:
        conn.close()
    return sqlite3.connect(f"{uri}?immutable=1", uri=True, check_same_thread=False, timeout=timeout)


def _ping_after_idle(engine: Engine) -> None:
    """Check a pooled connection is alive before reuse, if it sat idle (the server may have restarted).

    SQLAlchemy's ``pool_pre_ping`` pings on every checkout: a round trip per transaction, which
    doubles the cost of a short one. A connection handed back moments ago is alive; one that sat
    idle for ``PING_AFTER_IDLE_S`` is pinged, and a dead one is replaced (``DisconnectionError``
    makes the pool retry with a fresh connection).
    """

    @sa_event.listens_for(engine, "checkin")
    def _idle_from(_dbapi_conn: Any, record: Any) -> None:
        record.info["idle_since"] = time.monotonic()

    @sa_event.listens_for(engine, "checkout")
    def _ping(dbapi_conn: Any, record: Any, _proxy: Any) -> None:
        since = record.info.get("idle_since")
        if since is None or time.monotonic() - since < PING_AFTER_IDLE_S:
            return
        try:
            cursor = dbapi_conn.cursor()
            cursor.execute("SELECT 1")
            cursor.close()
            dbapi_conn.rollback()
        except Exception as e:  # any failure: this connection is not usable, take another
            raise DisconnectionError(f"pooled connection failed its ping: {e}") from e


def alembic_config(engine: Engine) -> Any:
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.set_main_option("sqlalchemy.url", engine.url.render_as_string(hide_password=False).replace("%", "%%"))
    return cfg


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Migrate the database to ``revision`` (default: head). Safe to run repeatedly."""
    from alembic import command

    cfg = alembic_config(engine)
    try:
        with engine.begin() as conn:
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, revision)
    except OperationalError as e:
        raise StoreError(
            f"cannot migrate the database at {mask_url(str(engine.url))}: {e.orig}",
            hint="check that the path is writable and no other process holds a write lock",
        ) from e


def head_revision() -> str:
    """The newest migration shipped with this code."""
    from alembic.script import ScriptDirectory

    script = ScriptDirectory(str(MIGRATIONS_DIR))
    head = script.get_current_head()
    assert head is not None
    return head


def current_revision(engine: Engine) -> str | None:
    """The revision the database is at, or None for an empty database."""
    from alembic.runtime.migration import MigrationContext

    def read() -> str | None:
        try:
            with engine.connect() as conn:
                return MigrationContext.configure(conn).get_current_revision()
        except OperationalError as e:
            if is_transient(e, engine):
                raise _store_error(e, engine) from e
            if engine.dialect.name == "sqlite":
                raise StoreError(
                    f"cannot open the database at {mask_url(str(engine.url))}: {e.orig}",
                    hint="check --home / CODIRECTOR_HOME (or --db), and that this user may read the file and its "
                         "folder",
                ) from e
            raise StoreError(
                f"cannot open the database at {mask_url(str(engine.url))}: {e.orig}",
                hint="check --db / CODIRECTOR_DB, and that the server is running",
            ) from e

    return retrying(engine, read, "reading the schema revision")


def require_current(engine: Engine) -> None:
    """Raise ``StoreError`` unless the database is migrated to head."""
    current = current_revision(engine)
    if current == head_revision():
        return
    if current is None and not inspect(engine).get_table_names():
        raise StoreError(
            f"the database at {mask_url(str(engine.url))} is empty",
            hint="run `codirector init` to create it (or pass --home / --db to use another)",
        )
    raise StoreError(
        f"the database at {mask_url(str(engine.url))} is at revision {current}, this code needs {head_revision()}",
        hint="run `codirector init` to upgrade it",
    )


@contextmanager
def connection(engine: Engine, *, write: bool = False) -> Iterator[Connection]:
    """A connection (``write``: a transaction, committed on exit), with driver errors as ``StoreError``."""
    try:
        with (engine.begin() if write else engine.connect()) as conn:
            yield conn
    except OperationalError as e:
        raise _store_error(e, engine) from e
    except DBAPIError as e:
        if e.connection_invalidated or is_transient(e, engine):
            raise _store_error(e, engine) from e
        raise


@contextmanager
def raw_transaction(engine: Engine) -> Iterator[Any]:
    """The pooled driver (DBAPI) connection in a transaction: committed on exit, rolled back on any error.

    The append's hot path, without SQLAlchemy's ``Connection``/``Transaction`` objects around it
    (the same pool, the same checkout events, the same transaction semantics: the driver opens the
    transaction on the first statement, as under ``engine.begin()``). Driver errors come out as
    SQLAlchemy's (``DBAPIError``), an ``OperationalError`` as ``StoreError`` naming the fix, as from
    ``connection``. A connection whose rollback fails, or that the dialect sees as disconnected, is
    invalidated rather than returned to the pool.
    """
    dialect = engine.dialect
    try:
        proxied = engine.raw_connection()
    except OperationalError as e:
        raise _store_error(e, engine) from e
    except dialect.loaded_dbapi.Error as e:  # a failed connect comes out of the pool unwrapped
        failed = DBAPIError.instance(None, None, e, dialect.loaded_dbapi.Error, dialect=dialect)
        if isinstance(failed, OperationalError):
            raise _store_error(failed, engine) from e
        raise failed from e
    dbapi: Any = proxied.dbapi_connection
    try:
        try:
            yield dbapi
            dbapi.commit()
        except BaseException as e:
            orig = e.orig if isinstance(e, DBAPIError) else e
            dead = isinstance(orig, dialect.loaded_dbapi.Error) and dialect.is_disconnect(orig, dbapi, None)
            try:
                dbapi.rollback()
            except Exception:
                dead = True
            if dead:  # and so, after a restart, may be every pooled connection: the next checkouts connect anew
                proxied.invalidate()
                engine.dispose(close=False)
            wrapped = e
            if isinstance(e, dialect.loaded_dbapi.Error):  # from the commit: wrap it as SQLAlchemy would
                wrapped = DBAPIError.instance(None, None, e, dialect.loaded_dbapi.Error, dialect=dialect)
            if dead and isinstance(wrapped, DBAPIError):
                wrapped.connection_invalidated = True
            if isinstance(wrapped, OperationalError) or (isinstance(wrapped, DBAPIError) and dead):
                raise _store_error(wrapped, engine) from wrapped
            if wrapped is not e:
                raise wrapped from e
            raise
    finally:
        proxied.close()


def _store_error(e: DBAPIError, engine: Engine) -> StoreError:
    text = str(e.orig)
    where = mask_url(str(engine.url))
    if is_transient(e, engine):
        return StoreUnreachable(f"lost the connection to the database at {where} ({text.strip()})",
                                hint="check that the server is running and reachable (--db / CODIRECTOR_DB)")
    if "locked" in text or "busy" in text:
        return StoreError(
            f"the database at {where} is locked by another process ({text})",
            hint="wait for the other codirector process to finish, or use another --home",
        )
    if "readonly" in text and engine.dialect.name == "sqlite":
        path = Path(engine.url.database or "")
        return StoreError(
            f"cannot write {path}: this user ({_user()}) has no permission to write it or its folder {path.parent} "
            "(queries still work; this command writes)",
            hint=f"run it as a user who may write {path.parent}, or copy the home somewhere writable and pass "
                 "--home DIR",
        )
    if "no such table" in text or "does not exist" in text:
        return StoreError(f"the database at {where} is not initialised ({text})", hint="run `codirector init`")
    return StoreError(f"database error at {where}: {text}", hint="check --db / CODIRECTOR_DB and the server")


def _user() -> str:
    try:
        import pwd

        return pwd.getpwuid(os.geteuid()).pw_name
    except (ImportError, KeyError, AttributeError):
        return "this user"


# ---------------------------------------------------------------------------- lost connections, retried

# Failures that say the server or the line is (momentarily) gone, not that the request or the settings are wrong.
# A failed connect carries no SQLSTATE, so its text tells "refused" (the server restarting) from "no such database".
_TRANSIENT_SQLSTATES = ("08", "57P01", "57P02", "57P03")  # connection exception; admin/crash shutdown; starting up
_PERMANENT_TEXT = ("does not exist", "authentication", "password", "pg_hba.conf", "permission denied",
                   "could not translate host name", "invalid", "role ")


# Engines that have reached their database at least once. A database never reached (a wrong URL, a server down
# before the command started) is retried only briefly: that is a set-up problem to name, not an outage to ride out.
_REACHED: weakref.WeakSet[Engine] = weakref.WeakSet()
FIRST_CONNECT_RETRY_S = 3.0


def retry_seconds() -> float:
    """How long a lost database connection is retried: ``CODIRECTOR_DB_RETRY_SECONDS``, else 30."""
    raw = os.environ.get("CODIRECTOR_DB_RETRY_SECONDS") or ""
    if not raw:
        return DEFAULT_RETRY_S
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value < 0:
        raise ConfigError(f"CODIRECTOR_DB_RETRY_SECONDS must be a number of seconds >= 0, got {raw!r}",
                          hint="set CODIRECTOR_DB_RETRY_SECONDS=30 (0: never retry), or unset it")
    return value


def is_transient(e: BaseException, engine: Engine) -> bool:
    """Whether ``e`` (a driver error, or SQLAlchemy's wrapping of one) is a lost or refused PostgreSQL connection:
    running the operation again later may succeed. Never on SQLite, whose lock waits are its busy timeout."""
    if engine.dialect.name != "postgresql":
        return False
    orig: BaseException | None = e
    if isinstance(e, DBAPIError):
        if e.connection_invalidated:
            return True
        orig = e.orig
    if not isinstance(orig, engine.dialect.loaded_dbapi.OperationalError):
        return False
    state = getattr(orig, "sqlstate", None)
    if state is not None:
        return str(state).startswith(_TRANSIENT_SQLSTATES)
    text = str(orig).lower()
    return not any(marker in text for marker in _PERMANENT_TEXT)


_depth = threading.local()


def retrying(engine: Engine, operation: Callable[[], T], what: str) -> T:
    """``operation()``, run again with exponential backoff (0.05 s doubling to 1 s) while it raises
    ``StoreUnreachable``, for up to ``retry_seconds()`` after the first failure; then that error, saying for how
    long and while doing ``what``. Inside another ``retrying`` on this thread it runs once: the outer loop
    retries the whole. ``operation`` must be safe to run again after a failure at any point."""
    if getattr(_depth, "n", 0) or engine.dialect.name != "postgresql":
        return operation()
    deadline: float | None = None
    delay = 0.05
    failures = 0
    _depth.n = 1
    try:
        while True:
            try:
                result = operation()
            except StoreUnreachable as e:
                now = time.monotonic()
                if deadline is None:
                    bound = retry_seconds() if engine in _REACHED else min(retry_seconds(), FIRST_CONNECT_RETRY_S)
                    deadline = now + bound
                    _log.warning("%s: %s; retrying for up to %.0f s", what, e.message, bound)
                failures += 1
                if now >= deadline:
                    raise StoreUnreachable(
                        f"{e.message}; still unreachable after {failures} tries over {bound:g} s "
                        f"({what})",
                        hint="what was written is kept: once the database is back, `codirector resume STORY` "
                             "continues (CODIRECTOR_DB_RETRY_SECONDS sets how long a run waits for it)",
                    ) from e
                time.sleep(min(delay, deadline - now))
                delay = min(delay * 2, 1.0)
                continue
            if failures:
                _log.warning("%s: the database answered again after %d failed tries", what, failures)
            return result
    finally:
        _depth.n = 0


def retried(method: Callable[..., T]) -> Callable[..., T]:
    """A method of an object with an ``engine``, run through ``retrying`` (safe to run again: a read, an owner-
    conditional statement)."""

    @functools.wraps(method)
    def wrapper(self: Any, *args: Any, **kwargs: Any) -> T:
        return retrying(self.engine, lambda: method(self, *args, **kwargs), method.__qualname__)

    return wrapper
