"""Initial schema: stories, branches, the append-only events table, snapshots.

Revision ID: 0001
Revises: 
Create Date: 2026-11-21

The events table is made append-only by triggers that refuse UPDATE and DELETE, on SQLite
and on PostgreSQL; the hash chain (``codirector verify``) catches changes made around them.
"""
from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = '0001'
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('stories',
    sa.Column('id', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('title', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('created_at', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_stories'))
    )
    op.create_table('branches',
    sa.Column('story_id', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('name', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('parent', sqlmodel.sql.sqltypes.AutoString(), nullable=True),
    sa.Column('fork_position', sa.Integer(), nullable=False),
    sa.Column('head_position', sa.Integer(), nullable=False),
    sa.Column('head_hash', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('created_at', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.ForeignKeyConstraint(['story_id'], ['stories.id'], name=op.f('fk_branches_story_id_stories')),
    sa.PrimaryKeyConstraint('story_id', 'name', name=op.f('pk_branches'))
    )
    op.create_table('events',
    sa.Column('seq', sa.Integer(), nullable=False),
    sa.Column('story_id', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('branch', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('position', sa.Integer(), nullable=False),
    sa.Column('type', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('shot', sa.Integer(), nullable=True),
    sa.Column('record', sa.Text(), nullable=False),
    sa.Column('hash', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.ForeignKeyConstraint(['story_id', 'branch'], ['branches.story_id', 'branches.name'], name=op.f('fk_events_story_id_branch_branches')),
    sa.PrimaryKeyConstraint('seq', name=op.f('pk_events')),
    sa.UniqueConstraint('story_id', 'branch', 'position', name=op.f('uq_events_story_id_branch_position'))
    )
    with op.batch_alter_table('events', schema=None) as batch_op:
        batch_op.create_index('ix_events_story_id_branch_type_position', ['story_id', 'branch', 'type', 'position'], unique=False)

    op.create_table('snapshots',
    sa.Column('story_id', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('branch', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('kind', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('position', sa.Integer(), nullable=False),
    sa.Column('schema_version', sa.Integer(), nullable=False),
    sa.Column('state', sa.Text(), nullable=False),
    sa.Column('created_at', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.ForeignKeyConstraint(['story_id', 'branch'], ['branches.story_id', 'branches.name'], name=op.f('fk_snapshots_story_id_branch_branches')),
    sa.PrimaryKeyConstraint('story_id', 'branch', 'kind', 'position', name=op.f('pk_snapshots'))
    )
    _create_append_only_triggers()


def downgrade() -> None:
    _drop_append_only_triggers()
    op.drop_table('snapshots')
    with op.batch_alter_table('events', schema=None) as batch_op:
        batch_op.drop_index('ix_events_story_id_branch_type_position')

    op.drop_table('events')
    op.drop_table('branches')
    op.drop_table('stories')


def _create_append_only_triggers() -> None:
    dialect = op.get_bind().dialect.name
    if dialect == "sqlite":
        for action in ("UPDATE", "DELETE"):
            op.execute(
                f"CREATE TRIGGER events_no_{action.lower()} BEFORE {action} ON events "
                "BEGIN SELECT RAISE(ABORT, 'events are append-only: write a correcting event instead'); END"
            )
    elif dialect == "postgresql":
        op.execute(
            "CREATE FUNCTION events_append_only() RETURNS trigger LANGUAGE plpgsql AS $$ "
            "BEGIN RAISE EXCEPTION 'events are append-only: write a correcting event instead'; END $$"
        )
        for action in ("UPDATE", "DELETE"):
            op.execute(
                f"CREATE TRIGGER events_no_{action.lower()} BEFORE {action} ON events "
                "FOR EACH ROW EXECUTE FUNCTION events_append_only()"
            )


def _drop_append_only_triggers() -> None:
    dialect = op.get_bind().dialect.name
    if dialect in ("sqlite", "postgresql"):
        suffix = " ON events" if dialect == "postgresql" else ""
        for action in ("update", "delete"):
            op.execute(f"DROP TRIGGER IF EXISTS events_no_{action}{suffix}")
    if dialect == "postgresql":
        op.execute("DROP FUNCTION IF EXISTS events_append_only()")
