"""Story ids, branch names and entity names with quotes, slashes, `..` or SQL are stored and read safely."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from codirector.engine.views.memory import fold
from codirector.errors import RunStateError
from codirector.events import EntityRegistered, StoryCreated
from codirector.store.event_store import EventStore
from codirector.store.vector_index import index_path

NASTY = ["'; DROP TABLE events; --", 'Robert"); DELETE FROM branches;--', "../../etc/passwd", "a/b\\c", "..",
         "%_%", "名前 with spaces", "O'Brien", "x" * 200]
names = st.one_of(
    st.sampled_from(NASTY),
    st.text(st.characters(blacklist_categories=("Cc", "Cs")), min_size=1, max_size=60).filter(lambda s: s.strip()),
)
counter = itertools.count()


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> EventStore:
    return EventStore.open(f"sqlite:///{tmp_path_factory.mktemp('names')}/n.db", create=True)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(story=names, branch=names, entity=names)
def test_any_printable_name_round_trips(store: EventStore, story: str, branch: str, entity: str) -> None:
    story = f"{story}#{next(counter)}"[-200:]  # unique per example
    store.create_story(story, events=[StoryCreated(title=story, seed=0).at()])
    store.append(story, "main", [EntityRegistered(name=entity, kind="other", description=entity, origin="user").at()],
                 expected_position=1)
    if branch != "main":
        store.create_branch(story, branch, at_position=2)
        assert [e.position for e in store.read(story, branch)] == [1, 2]
    assert store.story(story).id == story
    assert fold(store.read(story)).get(entity).description == entity
    assert store.read(story)[0].payload["title"] == story
    path = index_path(Path("/vectors"), story)
    assert path.parent == Path("/vectors") and ".." not in path.name and "/" not in path.name
    assert store.count() >= 2  # nothing was dropped


def test_control_characters_are_refused_with_the_reason(store: EventStore) -> None:
    with pytest.raises(RunStateError, match="control character"):
        store.create_story("bad\x00id")
    with pytest.raises(RunStateError, match="non-empty"):
        store.create_story("   ")
