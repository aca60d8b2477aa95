"""The event envelope, canonical JSON and the hash chain.

Invariants kept here (no I/O in this package):
- An event type is a frozen pydantic model with a stable, past-tense ``type`` string and a
  ``schema_version``. A type string is never reused for another meaning.
- ``canonical_json`` is a pure function of the value: sorted keys, no whitespace, UTF-8, no NaN
  (orjson's compact form, fixed here for good: every stored hash depends on it).
- ``hash = sha256(prev_hash + canonical_json(envelope without hash))``; the first event of a
  story has ``prev_hash == GENESIS``. Changing any byte of any earlier event changes every later hash.
- Payloads are stored as written; old ``schema_version`` payloads are upgraded on read by the pure
  upcasters in ``events.upcasting``, never rewritten in place.
"""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cached_property
from typing import Any, ClassVar

import orjson
from pydantic import BaseModel, ConfigDict, Field

GENESIS = "0" * 64

_REGISTRY: dict[str, type[Event]] = {}


class Event(BaseModel):
    """Base class of every domain event: a frozen statement of something that happened."""

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)

    type: ClassVar[str]
    schema_version: ClassVar[int] = 1

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        name = cls.__dict__.get("type") or cls.__name__
        cls.type = name
        if name in _REGISTRY and _REGISTRY[name] is not cls:
            raise TypeError(f"event type {name!r} is already registered by {_REGISTRY[name].__qualname__}")
        _REGISTRY[name] = cls

    def payload(self) -> dict[str, Any]:
        """The JSON payload exactly as it is stored."""
        return self.__pydantic_serializer__.to_python(self, mode="json")  # model_dump, minus its wrapper

    def at(self, shot: int | None = None, *, cause: str | None = None) -> Draft:
        """Wrap this event for appending, with the envelope fields the writer chooses."""
        return Draft(event=self, shot=shot, causation_id=cause)


class Draft(BaseModel):
    """An event about to be appended: the writer's part of the envelope."""

    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True)

    event: Event
    shot: int | None = None
    causation_id: str | None = None
    id: str = Field(default_factory=lambda: str(uuid.uuid4()))


def event_types() -> dict[str, type[Event]]:
    """Every registered event type by its stable name."""
    return dict(_REGISTRY)


def event_class(type_name: str) -> type[Event]:
    """The class registered for ``type_name``."""
    try:
        return _REGISTRY[type_name]
    except KeyError:
        from codirector.errors import IntegrityViolation, did_you_mean

        raise IntegrityViolation(
            f"unknown event type {type_name!r} in the log",
            hint="upgrade codirector; " + did_you_mean(type_name, _REGISTRY, "event type"),
        ) from None


def canonical_json(value: Any) -> str:
    """Deterministic JSON text: keys sorted, no whitespace, UTF-8 kept (orjson's compact form).

    Non-finite floats never reach here: events refuse them on validation.
    """
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode()


def chain_hash(prev_hash: str, envelope_without_hash: dict[str, Any]) -> str:
    """The hash of one event given the previous event's hash."""
    data = orjson.dumps(envelope_without_hash, option=orjson.OPT_SORT_KEYS)
    return hashlib.sha256(prev_hash.encode() + data).hexdigest()


def utc_now() -> str:
    """The recording timestamp format: ISO 8601, UTC, microseconds, trailing Z."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass(frozen=True)
class RecordedEvent:
    """An event as it stands in the log: envelope plus the stored payload."""

    id: str
    story_id: str
    branch: str
    position: int
    type: str
    schema_version: int
    payload: dict[str, Any]
    shot: int | None
    recorded_at: str
    prev_hash: str
    hash: str
    causation_id: str | None = None

    @classmethod
    def trusted(cls, fields: dict[str, Any]) -> RecordedEvent:
        """Build from a complete field dict without per-field checks (rows we wrote, events we sealed)."""
        obj = object.__new__(cls)
        obj.__dict__.update(fields)
        return obj

    def hashed_fields(self) -> dict[str, Any]:
        """The envelope without ``hash``: exactly what the hash covers."""
        return {
            "id": self.id,
            "story_id": self.story_id,
            "branch": self.branch,
            "position": self.position,
            "type": self.type,
            "schema_version": self.schema_version,
            "payload": self.payload,
            "shot": self.shot,
            "recorded_at": self.recorded_at,
            "prev_hash": self.prev_hash,
            "causation_id": self.causation_id,
        }

    def expected_hash(self) -> str:
        """The hash this event should carry given its own content and ``prev_hash``."""
        return chain_hash(self.prev_hash, self.hashed_fields())

    @cached_property
    def event(self) -> Event:
        """The typed domain event, upcast to the current schema version."""
        from codirector.events.upcasting import upcast

        cls = event_class(self.type)
        return cls.model_validate(upcast(self.type, self.schema_version, self.payload))

    def summary(self) -> dict[str, Any]:
        """The stable JSON form used by ``codirector log --json``."""
        return {
            "position": self.position,
            "branch": self.branch,
            "type": self.type,
            "shot": self.shot,
            "schema_version": self.schema_version,
            "payload": self.payload,
            "id": self.id,
            "causation_id": self.causation_id,
            "recorded_at": self.recorded_at,
            "hash": self.hash,
        }


def seal(
    draft: Draft, *, story_id: str, branch: str, position: int, prev_hash: str, recorded_at: str
) -> tuple[RecordedEvent, str]:
    """Fill a draft's envelope and hash it; returns the event and its record (the exact text hashed)."""
    event = draft.event
    fields: dict[str, Any] = {
        "id": draft.id,
        "story_id": story_id,
        "branch": branch,
        "position": position,
        "type": event.type,
        "schema_version": event.schema_version,
        "payload": event.payload(),
        "shot": draft.shot,
        "recorded_at": recorded_at,
        "prev_hash": prev_hash,
        "causation_id": draft.causation_id,
    }
    record = orjson.dumps(fields, option=orjson.OPT_SORT_KEYS)  # == canonical_json(fields), as bytes
    fields["hash"] = hashlib.sha256(prev_hash.encode() + record).hexdigest()
    return RecordedEvent.trusted(fields), record.decode()


def from_record(record: str, hash_: str) -> RecordedEvent:
    """The event stored as ``record`` (its canonical envelope text) with hash ``hash_``."""
    fields = orjson.loads(record)
    fields["hash"] = hash_
    return RecordedEvent.trusted(fields)


def record_hash(prev_hash: str, record: str) -> str:
    """What the hash of an event stored as ``record`` must be, given the previous event's hash."""
    return hashlib.sha256(prev_hash.encode() + record.encode()).hexdigest()


def referenced_blobs(payload: Any) -> set[str]:
    """Blob digests a payload names: values under keys ``blob``/``*_blob`` and lists under ``*_blobs``."""
    found: set[str] = set()

    def walk(value: Any) -> None:
        if isinstance(value, dict):
            for key, item in value.items():
                if isinstance(item, str) and (key == "blob" or key.endswith("_blob")):
                    found.add(item)
                elif isinstance(item, list) and (key == "blobs" or key.endswith("_blobs")):
                    found.update(x for x in item if isinstance(x, str))
                else:
                    walk(item)
        elif isinstance(value, list):
            for item in value:
                walk(item)

    walk(payload)
    return found
