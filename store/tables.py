"""SQLModel tables: the only place that knows how the log is laid out in SQL.

- ``events`` is append-only (the migrations add triggers that refuse UPDATE and DELETE).
  ``(story_id, branch, position)`` is unique; positions of a branch continue its parent's
  numbering after ``fork_position``, so a branch read through its lineage is 1..head, contiguous.
- ``record`` is the canonical JSON text exactly as hashed (TEXT, not JSON/JSONB, so no database
  re-formats a number or reorders a key).
- ``branches.head_position``/``head_hash`` are the optimistic-concurrency token and the chain anchor:
  an append updates them only where ``head_position`` still equals the writer's expectation.
- ``snapshots`` is a cache of projections (memory at a position); deleting it loses nothing.
- ``branch_leases`` says who is running a branch now (``store.leases``): coordination, not history,
  so its rows are updated and deleted; times are the database clock's seconds since the epoch.
Events never subclass SQLModel: ``store.event_store`` maps rows to ``RecordedEvent`` and back.
"""

from __future__ import annotations

from sqlalchemy import Column, Float, ForeignKeyConstraint, Index, Text, UniqueConstraint
from sqlmodel import Field, SQLModel

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_N_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}
SQLModel.metadata.naming_convention = NAMING_CONVENTION


class StoryRow(SQLModel, table=True):
    __tablename__ = "stories"

    id: str = Field(primary_key=True)
    title: str = Field(default="")
    created_at: str


class BranchRow(SQLModel, table=True):
    __tablename__ = "branches"
    __table_args__ = (ForeignKeyConstraint(["story_id"], ["stories.id"]),)

    story_id: str = Field(primary_key=True)
    name: str = Field(primary_key=True)
    parent: str | None = Field(default=None)
    fork_position: int = Field(default=0)
    head_position: int = Field(default=0)
    head_hash: str
    created_at: str


class EventRow(SQLModel, table=True):
    __tablename__ = "events"
    __table_args__ = (
        UniqueConstraint("story_id", "branch", "position"),
        ForeignKeyConstraint(["story_id", "branch"], ["branches.story_id", "branches.name"]),
        Index("ix_events_story_id_branch_type_position", "story_id", "branch", "type", "position"),
    )

    # ``seq`` is insertion order across the database (rows land at the end of the table).
    # ``record`` is the canonical JSON of the envelope without its hash: exactly the bytes hashed,
    # so ``hash == sha256(prev_hash + record)``. The key columns repeat what the record says, for
    # indexing; verify checks that they agree.
    seq: int | None = Field(default=None, primary_key=True)
    story_id: str
    branch: str
    position: int
    type: str
    shot: int | None = Field(default=None)
    record: str = Field(sa_column=Column(Text, nullable=False))
    hash: str


class SnapshotRow(SQLModel, table=True):
    __tablename__ = "snapshots"
    __table_args__ = (ForeignKeyConstraint(["story_id", "branch"], ["branches.story_id", "branches.name"]),)

    story_id: str = Field(primary_key=True)
    branch: str = Field(primary_key=True)
    kind: str = Field(primary_key=True)
    position: int = Field(primary_key=True)
    schema_version: int
    state: str = Field(sa_column=Column(Text, nullable=False))
    created_at: str


class LeaseRow(SQLModel, table=True):
    __tablename__ = "branch_leases"

    # No foreign key to ``branches``: ``run FILE`` takes the main branch's lease before the story exists.
    story_id: str = Field(primary_key=True)
    branch: str = Field(primary_key=True)
    owner: str
    host: str
    pid: int
    acquired_at: float = Field(sa_column=Column(Float, nullable=False))
    heartbeat_at: float = Field(sa_column=Column(Float, nullable=False))
    expires_at: float = Field(sa_column=Column(Float, nullable=False))
