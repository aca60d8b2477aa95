"""The event envelope, canonical JSON and the hash chain.

Invariants kept here (no I/O in this package):
- An event type is a frozen pydantic model with a stable, past-tense ``type`` string and a
  ``schema_version``. A type string is never reused for another meaning.
- ``canonical_json`` is a pure function of the value: sorted keys, no whitespace, UTF-8, no NaN.
- ``hash = sha256(prev_hash + canonical_json(envelope without hash))``; the first event of a
  story has ``prev_hash == GENESIS``. Changing any byte of any earlier event changes every later hash.
- Payloads are stored as written; old ``schema_version`` payloads are upgraded on read by the pure
  upcasters in ``events.upcasting``, never rewritten in place.
"""

from __future__ import annotations

import hashlib
import json
import math
import uuid
from datetime import UTC, datetime
from functools import cached_property
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field

GENESIS = "0" * 64

_REGISTRY: dict[str, type[Event]] = {}


class Event(BaseModel):
    """Base class of every domain event: a frozen statement of something that happened."""

    model_config = ConfigDict(frozen=True, extra="forbid")

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
        return self.model_dump(mode="json")

    def lookup_key(self) -> str | None:
        """A key the store indexes for direct lookup (the request key of a recorded call)."""
        return None

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


def _check_finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"non-finite number {value!r} cannot be stored in an event")
    return value


def canonical_json(value: Any) -> str:
    """Deterministic JSON text: sorted keys, compact separators, UTF-8 kept, NaN refused."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def chain_hash(prev_hash: str, envelope_without_hash: dict[str, Any]) -> str:
    """The hash of one event given the previous event's hash."""
    text = prev_hash + canonical_json(envelope_without_hash)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def utc_now() -> str:
    """The recording timestamp format: ISO 8601, UTC, microseconds, trailing Z."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class RecordedEvent(BaseModel):
    """An event as it stands in the log: envelope plus the stored payload."""

    model_config = ConfigDict(frozen=True)

    id: str
    story_id: str
    branch: str
    position: int
    type: str
    schema_version: int
    payload: dict[str, Any]
    shot: int | None = None
    recorded_at: str
    prev_hash: str
    hash: str
    causation_id: str | None = None

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
) -> RecordedEvent:
    """Turn a draft into a recorded event by filling the envelope and computing its hash."""
    event = draft.event
    payload = event.payload()
    canonical_json(payload)  # refuses NaN/inf early, with the event type in the traceback
    fields: dict[str, Any] = {
        "id": draft.id,
        "story_id": story_id,
        "branch": branch,
        "position": position,
        "type": event.type,
        "schema_version": event.schema_version,
        "payload": payload,
        "shot": draft.shot,
        "recorded_at": recorded_at,
        "prev_hash": prev_hash,
        "causation_id": draft.causation_id,
    }
    return RecordedEvent.model_construct(**fields, hash=chain_hash(prev_hash, fields))


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
