"""Migrations bring an empty database to head, and the models match the migrated schema."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect
from sqlmodel import SQLModel

import codirector.store.tables  # noqa: F401
from codirector.store.db import current_revision, head_revision, make_engine, upgrade


def test_empty_database_upgrades_to_head_with_no_model_diff(db_url: str) -> None:
    engine = make_engine(db_url)
    assert current_revision(engine) is None
    upgrade(engine)
    assert current_revision(engine) == head_revision()
    assert {"stories", "branches", "events", "snapshots"} <= set(inspect(engine).get_table_names())
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), SQLModel.metadata)
    assert diff == []
    upgrade(engine)  # running it again is harmless
    assert current_revision(engine) == head_revision()
    engine.dispose()


def test_opening_an_unmigrated_database_names_the_fix(sqlite_url: str) -> None:
    import pytest

    from codirector.errors import StoreError
    from codirector.store.event_store import EventStore

    with pytest.raises(StoreError, match="empty") as info:
        EventStore.open(sqlite_url)
    assert "codirector init" in str(info.value.hint)
