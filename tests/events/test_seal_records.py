"""``seal`` writes exactly the record the reference definition gives, for every event type.

The reference is the hash chain's definition (``events.base`` docstring): the record is
``canonical_json`` of the envelope with ``payload = event.payload()`` (pydantic's JSON mode), and
``hash = sha256(prev_hash + record)``. ``seal`` takes a faster road to the same bytes; these tests
build instances of every registered event type (and awkward values in its free-form fields) and
compare byte for byte, so an existing log keeps verifying.
"""

from __future__ import annotations

import datetime as dt
import enum
import hashlib
import types
import typing
import uuid
from typing import Any, Literal

import pytest
from pydantic import BaseModel

import codirector.events  # noqa: F401  (registers every event type)
from codirector.events.base import GENESIS, Draft, Event, canonical_json, event_types, from_record, seal


class Colour(enum.Enum):
    RED = "red"


class Level(int, enum.Enum):
    HIGH = 3


AWKWARD: list[Any] = [
    {"b": 1, "a": [1, 2.5, None, True], "é": "ünïcødé \u2028 \"quoted\" \\ /", "z": {"y": {"x": 0}}},
    (1, "two", 3.0),
    0.1, 1e300, -0.0, 5e-324, 2**62, -(2**63), 2**64 - 1,
    float("inf"),
    dt.datetime(2026, 11, 30, 12, 0, tzinfo=dt.UTC), dt.datetime(2026, 1, 1), dt.date(2026, 2, 3),
    dt.time(4, 5, 6), dt.timedelta(seconds=90),
    uuid.UUID(int=7), Colour.RED, Level.HIGH,
    {"set": {3, 1, 2}}, {"bytes": b"raw"}, {1: "int key"}, {"nested": [{"b": 2, "a": 1}]},
    "", "x" * 3000,
]


def sample(annotation: Any, i: int) -> Any:
    """A value of ``annotation``, varied by ``i`` (the ``Any`` parts get ``AWKWARD`` values)."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if annotation is Any:
        return AWKWARD[i % len(AWKWARD)]
    if origin is Literal:
        return args[i % len(args)]
    if origin in (typing.Union, types.UnionType):
        options = [a for a in args if a is not type(None)]
        return None if i % 3 == 2 and len(options) < len(args) else sample(options[i % len(options)], i)
    if origin is list:
        return [sample(args[0], i + j) for j in range(i % 3 + 1)]
    if origin is dict:
        return {f"k{j}_{'zyx'[j % 3]}": sample(args[1], i + j) for j in range(i % 3 + 1)}
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return build(annotation, i)
    if annotation is bool:
        return i % 2 == 0
    if annotation is int:
        return [0, 1, 7, 2**40][i % 4]
    if annotation is float:
        return [0.0, 0.1, 812.5, 1 / 3][i % 4]
    if annotation is str:
        return ["", "Mia", "a — b \"c\"", "lighthouse " * 10][i % 4]
    raise AssertionError(f"no sample for {annotation!r}: extend this test")


def build(cls: type[BaseModel], i: int) -> Any:
    """An instance of ``cls`` with every field set (validated, so it is a value the type accepts)."""
    for attempt in range(len(AWKWARD) + 4):
        values = {name: sample(f.annotation, i + attempt) for name, f in cls.model_fields.items()}
        try:
            return cls.model_validate(values)
        except ValueError:
            continue  # e.g. a number the field refuses (inf): try the next sample
    raise AssertionError(f"could not build a {cls.__name__}")


def reference(draft: Draft, position: int, prev: str) -> tuple[str, str]:
    """The record and hash by the chain's definition."""
    event = draft.event
    record = canonical_json({
        "id": draft.id, "story_id": "s", "branch": "b", "position": position, "type": event.type,
        "schema_version": event.schema_version, "payload": event.payload(), "shot": draft.shot,
        "recorded_at": "2026-11-30T00:00:00.000000Z", "prev_hash": prev, "causation_id": draft.causation_id,
    })
    return record, hashlib.sha256(prev.encode() + record.encode()).hexdigest()


def drafts_of(cls: type[Event]) -> list[Draft]:
    return [build(cls, i).at(shot=i % 2 or None, cause=None if i % 2 else "cause") for i in range(2 * len(AWKWARD))]


@pytest.mark.parametrize("cls", sorted(event_types().values(), key=lambda c: c.type), ids=lambda c: c.type)
def test_seal_gives_the_reference_record_and_hash_for_every_event_type(cls: type[Event]) -> None:
    prev = GENESIS
    for position, draft in enumerate(drafts_of(cls), 1):
        try:
            want_record, want_hash = reference(draft, position, prev)
        except TypeError:  # the reference cannot write it either (a value orjson refuses): seal must refuse too
            with pytest.raises(TypeError):
                seal(draft, story_id="s", branch="b", position=position, prev_hash=prev,
                     recorded_at="2026-11-30T00:00:00.000000Z")
            continue
        ev, record = seal(draft, story_id="s", branch="b", position=position, prev_hash=prev,
                          recorded_at="2026-11-30T00:00:00.000000Z")
        assert record == want_record
        assert ev.hash == want_hash and ev.expected_hash() == want_hash
        assert ev.payload == draft.event.payload()  # decoded lazily from the record
        assert ev == from_record(record, ev.hash)  # what a reader of the row gets
        assert ev.event == type(draft.event).model_validate(draft.event.payload())
        prev = ev.hash


def test_the_awkward_values_reach_the_free_form_fields() -> None:
    """The samples above really exercise ``Any`` fields (else the test would prove little)."""
    with_any = [c for c in event_types().values()
                if any("Any" in repr(f.annotation) for f in c.model_fields.values())]
    assert with_any, "no event type has a free-form field any more: drop AWKWARD"


def test_a_sealed_event_survives_pickling_before_its_payload_is_read() -> None:
    import pickle

    draft = drafts_of(event_types()["ModelCalled"])[0]
    ev, _ = seal(draft, story_id="s", branch="b", position=1, prev_hash=GENESIS, recorded_at="t")
    again = pickle.loads(pickle.dumps(ev))
    assert again == ev and again.payload == draft.event.payload()
    with pytest.raises(AttributeError):
        _ = again.no_such_field  # type: ignore[attr-defined]


def corpus_digest() -> str:
    """sha256 over every record and hash ``seal_all`` writes for a fixed corpus of every event type
    (fixed ids, one hash chain, batches of 7), in order; refused drafts are skipped."""
    from codirector.store.appending import seal_all

    drafts = []
    for cls in sorted(event_types().values(), key=lambda c: c.type):
        for i, d in enumerate(drafts_of(cls)):
            draft = Draft(event=d.event, shot=d.shot, causation_id=d.causation_id, id=f"{cls.type}-{i}-ü")
            try:
                reference(draft, 1, GENESIS)
            except TypeError:
                continue
            drafts.append(draft)
    total, prev = hashlib.sha256(), GENESIS
    for start in range(0, len(drafts), 7):
        batch = drafts[start : start + 7]
        sealed, rows = seal_all("s", "b", batch, start, prev)
        for ev, row in zip(sealed, rows, strict=True):
            total.update(row[5].encode() + b"\n" + ev.hash.encode() + b"\n")
        prev = rows[-1][6]
    return total.hexdigest()


def test_the_records_and_hashes_of_a_fixed_corpus_are_pinned(monkeypatch: pytest.MonkeyPatch) -> None:
    """Byte-identical to what the code of 2026-11-30 wrote (computed then, before sealing was sped up):
    any change to the canonical form or the chain would break every existing log's verification."""
    monkeypatch.setattr("codirector.store.appending.utc_now", lambda: "2026-11-30T00:00:00.000000Z")
    assert corpus_digest() == PINNED


PINNED = "7ab9b192e7a9dde3ba28792ebc330676cd71ebdcf1af792678b6a97ed5f7b906"
