"""Events: frozen, stable type names, canonical JSON, the hash formula, blob references."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from codirector.events import (
    GENESIS,
    EntityRegistered,
    Event,
    ModelCalled,
    ViewAdded,
    ViewSource,
    canonical_json,
    chain_hash,
    event_types,
    referenced_blobs,
    seal,
)
from codirector.events.base import Draft, from_record, record_hash

texts = st.text(st.characters(blacklist_categories=("Cs",)), max_size=30)


def test_events_are_frozen_and_strict() -> None:
    e = EntityRegistered(name="Mia", kind="character", description="d", origin="cast")
    with pytest.raises(ValidationError):
        e.name = "Tom"  # type: ignore[misc]
    with pytest.raises(ValidationError):
        EntityRegistered(name="Mia", kind="character", description="d", origin="cast", colour="red")  # type: ignore[call-arg]
    with pytest.raises(ValidationError):
        EntityRegistered(name="Mia", kind="dragon", description="d", origin="cast")  # type: ignore[arg-type]


def test_type_names_are_stable_past_tense_and_unique() -> None:
    types = event_types()
    assert {"StoryCreated", "EntityRegistered", "ViewAdded", "MemoryRetrieved", "KeyframeJudged", "ModelCalled",
            "AgentOutputRejected", "DirectionChosen", "RewardObserved", "BranchRanked"} <= set(types)
    for name, cls in types.items():
        assert cls.type == name
        assert name.endswith(("ed", "Chosen", "Forgotten", "Lost")), name  # past tense
    with pytest.raises(TypeError, match="already registered"):
        type("EntityRegistered", (Event,), {"__annotations__": {}})


def test_canonical_json_is_sorted_compact_utf8() -> None:
    assert canonical_json({"b": 1, "a": [1.5, "é"], "c": None}) == '{"a":[1.5,"é"],"b":1,"c":null}'


def test_events_refuse_non_finite_numbers() -> None:
    from codirector.events import Candidate

    with pytest.raises(ValidationError):
        ModelCalled(kind="vlm", backend="b", model="m", request_key="k", duration_ms=math.nan)
    with pytest.raises(ValidationError):
        Candidate(entity="Mia", score=math.inf, via="text")


@given(story=texts, branch=texts, cause=st.one_of(st.none(), texts), shot=st.one_of(st.none(), st.integers(0, 10**6)),
       position=st.integers(1, 10**9), name=texts)
def test_sealed_hash_is_sha256_of_prev_plus_canonical_envelope(story: str, branch: str, cause: str | None,
                                                              shot: int | None, position: int, name: str) -> None:
    draft = Draft(event=EntityRegistered(name=name, kind="prop", description=name, origin="user"), shot=shot,
                  causation_id=cause)
    ev, record = seal(draft, story_id=story, branch=branch, position=position, prev_hash=GENESIS,
                      recorded_at="2026-01-01T00:00:00.000000Z")
    assert record == canonical_json(ev.hashed_fields())  # the stored record is exactly what is hashed
    assert ev.hash == chain_hash(GENESIS, ev.hashed_fields()) == ev.expected_hash() == record_hash(GENESIS, record)
    assert from_record(record, ev.hash) == ev


def test_changing_any_field_changes_the_hash() -> None:
    draft = EntityRegistered(name="Mia", kind="character", description="d", origin="cast").at(1)
    ev, _ = seal(draft, story_id="s", branch="main", position=1, prev_hash=GENESIS, recorded_at="t")
    base = ev.hashed_fields()
    for key, value in [("position", 2), ("branch", "alt"), ("shot", 2), ("prev_hash", "1" * 64),
                       ("payload", {**ev.payload, "description": "e"})]:
        assert chain_hash(base["prev_hash"] if key != "prev_hash" else value, {**base, key: value}) != ev.hash


def test_referenced_blobs_finds_nested_blob_fields() -> None:
    view = ViewAdded(entity="Mia", blob="a" * 64, source=ViewSource(kind="reference"),
                     embedding={"id": 1, "blob": "b" * 64, "model": "m"})  # type: ignore[arg-type]
    assert referenced_blobs(view.payload()) == {"a" * 64, "b" * 64}
    call = ModelCalled(kind="image", backend="x", model="m", request_key="k", response_blob="c" * 64,
                       request={"reference_blobs": ["d" * 64]})
    assert referenced_blobs(call.payload()) == {"c" * 64, "d" * 64}
