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
import json
import types
import typing
import uuid
from pathlib import Path
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
    if origin is typing.Annotated:  # a tagged member of a discriminated union (``events.specs.SpecRecord``)
        return sample(args[0], i)
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


def corpus_digests() -> dict[str, str]:
    """Per event type: sha256 over every record and hash ``seal_all`` writes for a fixed corpus of that type
    (fixed ids, one hash chain per type, batches of 7), in order; refused drafts are skipped."""
    from codirector.store.appending import seal_all

    out = {}
    for cls in sorted(event_types().values(), key=lambda c: c.type):
        drafts = []
        for i, d in enumerate(drafts_of(cls)):
            draft = Draft(event=d.event, shot=d.shot, causation_id=d.causation_id, id=f"{cls.type}-{i}-ü")
            try:
                reference(draft, 1, GENESIS)
            except TypeError:
                continue
            drafts.append(draft)
        total, prev = hashlib.sha256(), GENESIS
        for start in range(0, len(drafts), 7):
            sealed, rows = seal_all("s", "b", drafts[start : start + 7], start, prev)
            for ev, row in zip(sealed, rows, strict=True):
                total.update(row[5].encode() + b"\n" + ev.hash.encode() + b"\n")
            prev = rows[-1][6]
        out[cls.type] = total.hexdigest()
    return out


def test_the_records_and_hashes_of_a_fixed_corpus_are_pinned(monkeypatch: pytest.MonkeyPatch) -> None:
    """Per event type, byte-identical to what the code that pinned it wrote: any change to the canonical form or
    the chain would break every existing log's verification. A new event type adds its line; a type whose schema
    gains a field gets a new line (its samples change) and its old records must still re-seal byte for byte
    (``test_records_written_before_a_schema_change_seal_the_same``)."""
    monkeypatch.setattr("codirector.store.appending.utc_now", lambda: "2026-11-30T00:00:00.000000Z")
    assert corpus_digests() == PINNED


def resealed(old: str) -> str:
    """A stored record read into its typed event (upcast as any reader does) and sealed again."""
    data = json.loads(old)
    event = from_record(old, "").event
    assert event.payload() == data["payload"]
    draft = Draft(event=event, shot=data["shot"], causation_id=data["causation_id"], id=data["id"])
    _, record = seal(draft, story_id=data["story_id"], branch=data["branch"], position=data["position"],
                     prev_hash=data["prev_hash"], recorded_at=data["recorded_at"])
    return record


def test_records_written_before_a_schema_change_seal_the_same() -> None:
    """Records the code of 2026-11-30 wrote for the types whose schemas gained fields since (``VideoGenerated``:
    ``references``; ``ShotPlanRevised``: list values, ``keeps_continuity``) read and re-seal byte for byte."""
    records = json.loads((Path(__file__).parent / "records_2026_11_30.json").read_text(encoding="utf-8"))
    assert {json.loads(r)["type"] for r in records} == {"VideoGenerated", "ShotPlanRevised"}
    for old in records:
        assert resealed(old) == old


def test_records_written_before_the_payloads_were_typed_seal_the_same() -> None:
    """Records the code of 2026-12-07 (2256650) wrote before ``StoryCreated.spec``/``settings``,
    ``ShotPlanned.evolves`` and ``BranchCreated.plan`` were typed (#24) read into ``events.specs`` and re-seal
    byte for byte: a story with reference images, extra views, a style and cuts; a story the planner writes; a
    derived plan; an ST-Bench story; a brief with a product image and a parallel director (``c`` a float, ``[run]
    fps`` an int); a director pull's plan; a user's branch overriding uses and evolves."""
    records = json.loads((Path(__file__).parent / "records_2026_12_07.json").read_text(encoding="utf-8"))
    specs = [json.loads(r)["payload"]["spec"] for r in records if json.loads(r)["type"] == "StoryCreated"]
    assert {s.get("kind", "story") for s in specs} == {"story", "brief"}
    assert any("plan_notes" in s for s in specs) and any("source_format" in s for s in specs)
    assert any(json.loads(r)["payload"].get("plan", {}).get("storyline") for r in records)
    for old in records:
        assert resealed(old) == old


def test_every_event_of_the_committed_home_of_2026_12_07_seals_the_same() -> None:
    """Every event of ``tests/fixtures/home-2026-12-07`` (read only) re-seals byte for byte after validation into
    the current typed events, and its hash is the one stored."""
    import sqlite3

    db = Path(__file__).parents[1] / "fixtures" / "home-2026-12-07" / "codirector.db"
    with sqlite3.connect(f"file:{db}?mode=ro&immutable=1", uri=True) as conn:
        rows = conn.execute("SELECT record, hash FROM events ORDER BY seq").fetchall()
    assert len(rows) > 200
    for old, stored_hash in rows:
        record = resealed(old)
        assert record == old
        assert hashlib.sha256(json.loads(old)["prev_hash"].encode() + record.encode()).hexdigest() == stored_hash


# Pinned 2026-11-30 (the whole corpus, then one digest); per type since 2026-12-07, when ProviderJobSubmitted and
# ProviderJobLost were added and VideoGenerated / ShotPlanRevised gained optional fields. Every other type's digest
# was checked equal under the code of 2026-11-30 (58e601b) and of 2026-12-07.
# Re-pinned 2026-12-07 (#24): StoryCreated, ShotPlanned and BranchCreated, whose spec/settings, evolves and plan
# became typed (events.specs), so this corpus samples them differently; records written before re-seal byte for
# byte (test_records_written_before_the_payloads_were_typed_seal_the_same, and every event of the committed
# home in test_every_event_of_the_committed_home_of_2026_12_07_seals_the_same). RunSegmentStarted added.
# Re-pinned 2026-12-07 (#24): StoryCreated and BranchCreated gained the optional ``codirector`` / ``loop_patches``
# (the release that created a branch), left out of the record when unset, so the records above still re-seal.
PINNED = {
    "AgentOutputRejected": "fed7fecfed3dbefe6b7010405ebbab43baa93fb83385dfd5ecf99f956637fc21",
    "BranchCreated": "0055b9151ae02460a4b43ba64acb107823599901cf981d026c6c88962e450b4c",
    "BranchRanked": "8a8a00b882ac352261d7781b794ff68042cfe799c156c795745d43ab484d3285",
    "BudgetReached": "bd67ff26ac1e19c397b33e3b1fe8fce4449f3a97a85ab8866fa8a6c61363947d",
    "DirectionChosen": "22ae56343a389b9b4f031f6d4723eb8b635cda86216d42a0f4ff28b6696a9319",
    "EntityRegistered": "a7821345fb00fac69a6e974acaa5ec1dfd12a8d30b203826afa6677c436e9b6a",
    "KeyframeGenerated": "e9ad98f117d7e92a3edec16eda288bafd604ed038854955fd1a3a4236f286d19",
    "KeyframeJudged": "c4ded44c25f413eee0adc560fd300b8f236ee47cc36fae73b6103293a01f86a1",
    "KeyframeSelected": "ba43a90c06209dc9031d337ad32aa307b4343dfab77b507df560bc8d4ad297b5",
    "MemoryRetrieved": "78771d26abfb80fe048f2116e33b7c71f4f2173928b3e4476c506f456d8fbdd1",
    "ModelCalled": "3ab318874aae2cc48fd69f300f32a8579e1647abbaf2644acd312dfa3dfd352f",
    "MotionPromptRefined": "91bf4c186a1ba56132ffbad85a25e0be7e75d5546e928e5d2809000acc103608",
    "ProviderJobLost": "80005418c25bae410270b3fcc35341ecbe1d55549b26dcb3f2ed8da5b96053e2",
    "ProviderJobSubmitted": "9c4b33818dbe006bd399456f8452057823afc760b20b15754d6c7532923a0ded",
    "RewardObserved": "feb4c653c7184666b5f4bcc85a22c554fd746b75bd8787d76bf742dd58c37cd8",
    "RunSegmentStarted": "447e69a60f0103545bc55e1375a798f22c86f13d5b15a0f28c605a5a66384c2a",
    "ShotCompleted": "803448da2e4c90c137e93010a93dfc8b3461059847547d649b1b8314184d25bf",
    "ShotJudged": "ee49d8afbc830ad3f8ac868fedb56d9378bff69c14c21fb89c67681acfd16281",
    "ShotPlanRevised": "cc05af2627ae250efddd7bce41cb3d42605d88799c8c9e5e4646042eb57e3d08",
    "ShotPlanned": "f11d05b41c490a1d408e1da5428c8ce888fd2192347a86c6fe0eee557fd93c88",
    "ShotStarted": "5adb8c930cad953ea6d93741e095273e9d9ff0fdb9872845ae90b5d867ae7939",
    "StoryCompleted": "b3ed6394eae3ed70133dfda881adb1b259f7965a3601aa54c06ddddfd84968f4",
    "StoryCreated": "e511442d24b98def4b05b860ef0175a582f92052e4c894c879cd92dbf0ab8c97",
    "StoryForgotten": "8ed29c9908ccca7346e06addd9c838314f5a5491ab5362b2a5930f889511b655",
    "StoryJudged": "d0c6c88e058c4de850a2ace0fa350cbc64ec42989e65b48e9bd4a82d9591f966",
    "VideoAnalyzed": "19c620b39bc612a67d6033b1d8dd87695401742308a12366663ed0f7a20cc9d5",
    "VideoGenerated": "e4b099b117e907f1002680c60ac99270054b3a6efaeb7c22c77db6d700a35d8f",
    "ViewAdded": "e9680c004ed12c2dee839cd8a8ae0157fc281bf3c84603158ec9cc4d7837a9f4",
}
