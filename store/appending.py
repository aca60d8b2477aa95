"""The append hot path: seal a batch, then claim the branch head and insert, in one transaction.

Invariants (the event store's, kept here where the work is done):
- Sealing is pure and happens before any lock is taken: ``seal_all`` chains each event to the one
  before it (``hash = sha256(prev_hash + record)``, ``events.base.seal``), starting from the head
  the writer expects.
- ``claim_and_insert`` moves the head from (expected position, expected hash) to the batch's last
  (position, hash) and inserts the rows, on the caller's transaction. The claim is one UPDATE that
  names both the position and the hash, so it succeeds for exactly one writer and only if the
  batch was chained to the real head; when it fails, the caller rolls back and nothing is written.
- The claim comes before the insert: the UPDATE takes the write lock (SQLite) or the row lock
  (PostgreSQL) first. Every value is a bound parameter; the statements are fixed text.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import closing
from dataclasses import dataclass
from typing import Any

from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError

from codirector.events.base import Draft, RecordedEvent, seal, utc_now

EVENT_COLUMNS = ("story_id", "branch", "position", "type", "shot", "record", "hash")


@dataclass(frozen=True)
class BatchSQL:
    """The two statements of an append, in the driver's parameter style."""

    claim: str
    insert: str

    @classmethod
    def for_paramstyle(cls, paramstyle: str) -> BatchSQL:
        m = "?" if paramstyle == "qmark" else "%s"
        return cls(
            claim=f"UPDATE branches SET head_position = {m}, head_hash = {m} WHERE story_id = {m} "
                  f"AND name = {m} AND head_position = {m} AND head_hash = {m}",
            insert=f"INSERT INTO events ({', '.join(EVENT_COLUMNS)}) VALUES ({', '.join([m] * len(EVENT_COLUMNS))})",
        )


def seal_all(
    story_id: str, branch: str, drafts: Sequence[Draft], after: int, prev: str
) -> tuple[list[RecordedEvent], list[tuple[Any, ...]]]:
    """Seal ``drafts`` as positions after+1.. chained from ``prev``: the events and their rows."""
    recorded_at = utc_now()
    sealed: list[RecordedEvent] = []
    rows: list[tuple[Any, ...]] = []
    for position, draft in enumerate(drafts, after + 1):
        ev, record = seal(
            draft, story_id=story_id, branch=branch, position=position, prev_hash=prev, recorded_at=recorded_at
        )
        prev = ev.hash
        sealed.append(ev)
        rows.append((story_id, branch, position, ev.type, ev.shot, record, prev))
    return sealed, rows


def claim_and_insert(
    conn: Connection, sql: BatchSQL, story_id: str, branch: str, expected: int, prev: str,
    rows: list[tuple[Any, ...]],
) -> bool:
    """Claim the head and insert ``rows`` on ``conn``'s transaction; False if the head was not claimed.

    On False the caller must roll the transaction back (nothing it wrote may stay). Plain DBAPI
    calls on the transaction's own connection: one UPDATE, one ``executemany``. On PostgreSQL
    (psycopg 3) both go out in one pipeline, one round trip; the rows sent after a failed claim
    are discarded with the rollback, and rows that collide with another writer's fail on the
    unique key, which is reported as not claimed. Driver errors are raised as SQLAlchemy's.
    """
    dbapi: Any = conn.connection.dbapi_connection
    params = (expected + len(rows), rows[-1][6], story_id, branch, expected, prev)
    try:
        with closing(dbapi.cursor()) as claim, closing(dbapi.cursor()) as insert:
            if hasattr(dbapi, "pipeline"):
                with dbapi.pipeline():
                    claim.execute(sql.claim, params)
                    insert.executemany(sql.insert, rows)
                return bool(claim.rowcount == 1)
            claim.execute(sql.claim, params)
            if claim.rowcount != 1:
                return False
            insert.executemany(sql.insert, rows)
            return True
    except conn.dialect.loaded_dbapi.IntegrityError:
        return False
    except conn.dialect.loaded_dbapi.Error as e:
        raise DBAPIError.instance(sql.insert, None, e, conn.dialect.loaded_dbapi.Error) from e
