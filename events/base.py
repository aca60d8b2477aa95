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
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cached_property
from typing import TYPE_CHECKING, Any, ClassVar

import orjson
from pydantic import BaseModel, ConfigDict, Field

from codirector.events.upcasting import upcast

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
        # model_dump, minus its wrapper
        payload: dict[str, Any] = self.__pydantic_serializer__.to_python(self, mode="json")
        return payload

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
        """Build from a field dict without per-field checks (rows we wrote, events we sealed).

        ``seal`` leaves ``payload`` out and puts its record under ``_record``: the payload is then
        decoded from the record on first use (``__getattr__``), since most sealed events are
        written and never read back in the process that wrote them.
        """
        obj = object.__new__(cls)
        obj.__dict__.update(fields)
        return obj

    if not TYPE_CHECKING:  # hidden from mypy, which would otherwise accept any attribute name

        def __getattr__(self, name: str) -> Any:
            """The lazily decoded ``payload`` of a sealed event (called only while it is not set)."""
            record = self.__dict__.get("_record") if name == "payload" else None
            if record is None:
                raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")
            payload = self.__dict__["payload"] = orjson.loads(record)["payload"]
            return payload

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
        cls = event_class(self.type)
        return cls.model_validate(upcast(self.type, self.schema_version, self.payload, cls.schema_version))

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
    """Fill a draft's envelope and hash it; returns the event and its record (the exact text hashed).

    One event of ``seal_batch``: see there.
    """
    sealed, rows = seal_batch(drafts=(draft,), story_id=story_id, branch=branch, after=position - 1,
                              prev_hash=prev_hash, recorded_at=recorded_at)
    return sealed[0], rows[0][5]


SealedRow = tuple[str, str, int, str, int | None, str, str]  # story_id, branch, position, type, shot, record, hash


def seal_batch(
    drafts: Iterable[Draft], *, story_id: str, branch: str, after: int, prev_hash: str, recorded_at: str
) -> tuple[list[RecordedEvent], list[SealedRow]]:
    """Seal ``drafts`` as positions ``after + 1``.. chained from ``prev_hash``: the events and their rows.

    Each record is ``canonical_json`` of the envelope with ``payload = event.payload()``, written in
    one orjson pass over the model itself (``_FAST_OPTIONS``, below; this loop is the append's
    whole CPU cost); ``hash = sha256(prev_hash + record)``. The returned events are
    built without validation (``RecordedEvent.trusted``'s contract), their payload decoded from the
    record only when someone asks for it (``RecordedEvent.payload``). A row is
    ``(story_id, branch, position, type, shot, record, hash)``.
    """
    dumps, sha256, new, set_attr = orjson.dumps, hashlib.sha256, object.__new__, object.__setattr__
    as_json, kinds, recorded = _as_json, _KINDS, RecordedEvent
    sealed: list[RecordedEvent] = []
    rows: list[SealedRow] = []
    prev, position = prev_hash, after
    for draft in drafts:
        position += 1
        event = draft.event
        kind = type(event)
        meta = kinds.get(kind) or _kind_meta(kind)
        values = event.__dict__
        fields: dict[str, Any] = {
            "id": draft.id,
            "story_id": story_id,
            "branch": branch,
            "position": position,
            "type": meta[0],
            "schema_version": meta[1],
            "payload": values if len(values) == meta[2] else as_json(event),
            "shot": draft.shot,
            "recorded_at": recorded_at,
            "prev_hash": prev,
            "causation_id": draft.causation_id,
        }
        try:
            record = dumps(fields, default=as_json, option=_FAST_OPTIONS)
        except TypeError:  # a value orjson refuses: the reference path, which raises if it refuses it too
            record = dumps(fields | {"payload": event.payload()}, option=orjson.OPT_SORT_KEYS)
        del fields["payload"]
        prev = fields["hash"] = sha256(prev.encode() + record).hexdigest()
        fields["_record"] = record
        ev = new(recorded)
        set_attr(ev, "__dict__", fields)  # RecordedEvent.trusted without the copy
        sealed.append(ev)
        rows.append((story_id, branch, position, meta[0], draft.shot, record.decode(), prev))
    return sealed, rows


# The fast path of ``seal_batch``: orjson walks the model's own field values. It handles natively
# only what it writes exactly as pydantic's JSON mode then orjson would (str, int, float, bool, None,
# list, tuple, dict with str keys, UUID, Enum); every other value (datetime, str/int subclasses,
# dataclasses, unknown types) goes to ``_as_json`` and so through pydantic's own JSON-mode
# conversion. A model class with anything that makes its JSON form differ from its field values
# (serializers, aliases, excluded or computed fields, JSON-only settings) is dumped by pydantic. A
# value orjson refuses (a set, bytes, a non-str key) falls back to the reference path whole.
_FAST_OPTIONS = (
    orjson.OPT_SORT_KEYS | orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_SUBCLASS
    | orjson.OPT_PASSTHROUGH_DATACLASS
)


def _as_json(value: Any) -> Any:
    """What pydantic's JSON mode makes of one value orjson does not write natively (see above)."""
    if isinstance(value, BaseModel):
        fields = value.__dict__
        if len(fields) == _plain_size(type(value)):  # a plain model, no cached values beside its fields
            return fields
        return value.__pydantic_serializer__.to_python(value, mode="json")
    from pydantic_core import to_jsonable_python

    return to_jsonable_python(value)


_PLAIN: dict[type[BaseModel], int] = {}
_KINDS: dict[type[Event], tuple[str, int, int]] = {}  # event class -> type, schema_version, _plain_size


def _kind_meta(kind: type[Event]) -> tuple[str, int, int]:
    """What ``seal_batch`` needs of an event class, looked up once per class."""
    meta = _KINDS[kind] = (kind.type, kind.schema_version, _plain_size(kind))
    return meta


def _plain_size(cls: type[BaseModel]) -> int:
    """How many fields a model has if its JSON-mode dump is its ``__dict__`` field by field, else -1."""
    size = _PLAIN.get(cls)
    if size is None:
        decorators, config, fields = cls.__pydantic_decorators__, cls.model_config, cls.model_fields
        plain = not (
            decorators.field_serializers or decorators.model_serializers or decorators.computed_fields
            or cls.__pydantic_root_model__
            or config.get("extra") == "allow"
            or any(k.startswith("ser_json") or k == "serialize_by_alias" for k in config)
            or any(f.alias or f.serialization_alias or f.exclude or f.exclude_if for f in fields.values())
        )
        size = _PLAIN[cls] = len(fields) if plain else -1
    return size


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
