"""Story ids, branch names and entity names with quotes, slashes, `..` or SQL are stored and read safely."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from codirector.engine.views.memory import fold
from codirector.errors import InvalidArgument
from codirector.events import EntityRegistered, StoryCreated
from codirector.store.event_store import BIDI_CONTROLS, HIDDEN_BRANCH_PREFIXES, EventStore
from codirector.store.vector_index import index_path

NASTY = ["'; DROP TABLE events; --", 'Robert"); DELETE FROM branches;--', "../../etc/passwd", "a/b\\c", "..",
         "%_%", "名前 with spaces", "O'Brien", "x" * 200]
names = st.one_of(
    st.sampled_from(NASTY),
    st.text(st.characters(blacklist_categories=("Cc", "Cs"), blacklist_characters="".join(BIDI_CONTROLS)), min_size=1,
            max_size=60).filter(lambda s: s.strip()),
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
    with pytest.raises(InvalidArgument, match="control character"):
        store.create_story("bad\x00id")
    for bidi in sorted(BIDI_CONTROLS):  # a label that displays as another name
        with pytest.raises(InvalidArgument, match=f"bidirectional-text control U\\+{ord(bidi):04X}") as info:
            store.create_story(f"main{bidi}gnp.exe")
        assert info.value.exit_code == 2
    store.create_story("bidi-parent")
    with pytest.raises(InvalidArgument, match="U\\+202E"):
        store.create_branch("bidi-parent", "alt\u202eenil", at_position=0)
    assert [b.name for b in store.story("bidi-parent").branches] == ["main"]
    with pytest.raises(InvalidArgument, match="non-empty"):
        store.create_story("   ")


def test_a_missing_branch_is_never_answered_with_hidden_branches(store: EventStore) -> None:
    from codirector.engine.loop.rerun import FORGOTTEN_PREFIX
    from codirector.engine.loop.runs import SCRATCH_PREFIX
    from codirector.errors import BranchNotFound

    assert {SCRATCH_PREFIX, FORGOTTEN_PREFIX} == set(HIDDEN_BRANCH_PREFIXES)  # the store hides what the engine does
    store.create_story("hidden", events=[StoryCreated(title="h", seed=0).at()])
    for name in ("storm", "replay~main~1", "replay~storm~1"):
        store.create_branch("hidden", name, at_position=1)
    with pytest.raises(BranchNotFound) as info:
        store.read("hidden", "stormy")
    assert info.value.hint == "did you mean 'storm'?"
    with pytest.raises(BranchNotFound) as info:
        store.read("hidden", "zzz")
    assert "replay~" not in (info.value.hint or "") and "'main'" in (info.value.hint or "")
    with pytest.raises(BranchNotFound) as info:  # asked for a hidden one by name: the hidden ones are offered
        store.read("hidden", "replay~main~2")
    assert "replay~main~1" in (info.value.hint or "")
