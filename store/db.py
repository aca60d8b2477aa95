"""Opening the database and migrating it: SQLite by default, PostgreSQL by URL.

SQLite connections get WAL, foreign keys and a busy timeout on every connect. Migrations are
Alembic scripts shipped in ``store/migrations``; ``upgrade(engine)`` brings any database to head
and is what ``codirector init`` runs. Opening a database that is behind head raises ``StoreError``
naming the fix instead of failing later on a missing column. ``connection`` turns a driver's
``OperationalError`` (locked, not initialised, unreachable) into a ``StoreError`` that names the fix;
``raw_transaction`` does the same for the append's hot path, on the pooled driver connection itself.
"""

from __future__ import annotations

import os
import sqlite3
import time
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import event as sa_event
from sqlalchemy import inspect
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import DBAPIError, DisconnectionError, OperationalError
from sqlmodel import create_engine

from codirector.errors import StoreError
from codirector.store.home import mask_url

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
PING_AFTER_IDLE_S = 2.0  # a pooled PostgreSQL connection idle this long is pinged before reuse


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
        engine = create_engine(url, **kwargs)
        _ping_after_idle(engine)
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

    try:
        with engine.connect() as conn:
            return MigrationContext.configure(conn).get_current_revision()
    except OperationalError as e:
        if engine.dialect.name == "sqlite":
            raise StoreError(
                f"cannot open the database at {mask_url(str(engine.url))}: {e.orig}",
                hint="check --home / CODIRECTOR_HOME (or --db), and that this user may read the file and its folder",
            ) from e
        raise StoreError(
            f"cannot open the database at {mask_url(str(engine.url))}: {e.orig}",
            hint="check --db / CODIRECTOR_DB, and that the server is running",
        ) from e


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
            if dead:
                proxied.invalidate()
            wrapped = e
            if isinstance(e, dialect.loaded_dbapi.Error):  # from the commit: wrap it as SQLAlchemy would
                wrapped = DBAPIError.instance(None, None, e, dialect.loaded_dbapi.Error, dialect=dialect)
            if isinstance(wrapped, OperationalError):
                raise _store_error(wrapped, engine) from wrapped
            if wrapped is not e:
                raise wrapped from e
            raise
    finally:
        proxied.close()


def _store_error(e: OperationalError, engine: Engine) -> StoreError:
    text = str(e.orig)
    where = mask_url(str(engine.url))
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
