"""The append hot path: seal a batch, then claim the branch head and insert, in one transaction.

Invariants (the event store's, kept here where the work is done):
- Sealing is pure and happens before any lock is taken: ``seal_all`` chains each event to the one
  before it (``hash = sha256(prev_hash + record)``, ``events.base.seal_batch``), starting from the head
  the writer expects.
- ``claim_and_insert`` moves the head from (expected position, expected hash) to the batch's last
  (position, hash) and inserts the rows, on the caller's transaction. The claim is one UPDATE that
  names both the position and the hash, so it succeeds for exactly one writer and only if the
  batch was chained to the real head; when it fails, the caller rolls back and nothing is written.
- A writer holding a branch lease passes its owner: the claim then also requires the lease row to
  name it (a fencing check in the same statement), so a runner whose lease was taken over writes
  nothing, however long it was paused.
- The claim comes before the insert: the UPDATE takes the write lock (SQLite) or the row lock
  (PostgreSQL) first. Every value is a bound parameter; the statements are fixed text.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import closing
from dataclasses import dataclass
from typing import Any

from sqlalchemy.exc import DBAPIError

from codirector.events.base import Draft, RecordedEvent, SealedRow, seal_batch, utc_now

EVENT_COLUMNS = ("story_id", "branch", "position", "type", "shot", "record", "hash")


@dataclass(frozen=True)
class BatchSQL:
    """The statements of an append, in the driver's parameter style. ``fenced_claim`` also requires
    the branch lease to still name the writer (on PostgreSQL it share-locks that lease row, so a
    takeover waits for this transaction and then sees its events)."""

    claim: str
    fenced_claim: str
    insert: str

    @classmethod
    def for_dialect(cls, dialect: str, paramstyle: str) -> BatchSQL:
        m = "?" if paramstyle == "qmark" else "%s"
        claim = (f"UPDATE branches SET head_position = {m}, head_hash = {m} WHERE story_id = {m} "
                 f"AND name = {m} AND head_position = {m} AND head_hash = {m}")
        lock = " FOR SHARE" if dialect == "postgresql" else ""  # SQLite: writers are serialised already
        return cls(
            claim=claim,
            fenced_claim=f"{claim} AND EXISTS (SELECT 1 FROM branch_leases WHERE story_id = {m} AND branch = {m} "
                         f"AND owner = {m}{lock})",
            insert=f"INSERT INTO events ({', '.join(EVENT_COLUMNS)}) VALUES ({', '.join([m] * len(EVENT_COLUMNS))})",
        )


def seal_all(
    story_id: str, branch: str, drafts: Sequence[Draft], after: int, prev: str
) -> tuple[list[RecordedEvent], list[SealedRow]]:
    """Seal ``drafts`` as positions after+1.. chained from ``prev``: the events and their rows."""
    return seal_batch(drafts, story_id=story_id, branch=branch, after=after, prev_hash=prev, recorded_at=utc_now())


def claim_and_insert(
    dbapi: Any, driver: Any, sql: BatchSQL, story_id: str, branch: str, expected: int, prev: str,
    rows: Sequence[tuple[Any, ...]], lease_owner: str | None = None,
) -> bool:
    """Claim the head and insert ``rows`` on the transaction of ``dbapi`` (a driver connection,
    ``driver`` its DBAPI module); False if the head was not claimed.

    On False the caller must roll the transaction back (nothing it wrote may stay). Plain DBAPI
    calls on the transaction's own connection: one UPDATE, one ``executemany``. On PostgreSQL
    (psycopg 3) both go out in one pipeline, one round trip; the rows sent after a failed claim
    are discarded with the rollback, and rows that collide with another writer's fail on the
    unique key, which is reported as not claimed. Driver errors are raised as SQLAlchemy's.
    """
    params: tuple[Any, ...] = (expected + len(rows), rows[-1][6], story_id, branch, expected, prev)
    statement = sql.claim
    if lease_owner is not None:  # fenced: only while the branch lease is still this writer's
        params, statement = (*params, story_id, branch, lease_owner), sql.fenced_claim
    try:
        with closing(dbapi.cursor()) as claim, closing(dbapi.cursor()) as insert:
            if hasattr(dbapi, "pipeline"):
                with dbapi.pipeline():
                    claim.execute(statement, params)
                    insert.executemany(sql.insert, rows)
                return bool(claim.rowcount == 1)
            claim.execute(statement, params)
            if claim.rowcount != 1:
                return False
            insert.executemany(sql.insert, rows)
            return True
    except driver.IntegrityError:
        return False
    except driver.Error as e:
        raise DBAPIError.instance(sql.insert, None, e, driver.Error) from e
