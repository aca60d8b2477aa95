"""What each agent must answer: pydantic models with the paper's JSON field names, and the
semantic checks that validation alone cannot do (names against memory, limits, frame ranges).

A check returns a list of problems, each phrased as an instruction the model can act on; an
empty list means the answer is usable. Nothing here touches memory: checks only read it.
"""

from __future__ import annotations

import functools
from collections.abc import Collection
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from codirector.events.keyframe import AlignmentReport
from codirector.store.event_store import unsafe_character

MAX_NEW_ENTITIES = 4
MAX_ENTITY_UPDATES = 4


class _Out(BaseModel):
    model_config = ConfigDict(extra="forbid")


# ---------------------------------------------------------------------------- planner


class PlannedShot(_Out):
    keyframe_prompt: str
    motion_prompt: str


class PlannerOutput(_Out):
    shots: list[PlannedShot]


def check_planner(out: PlannerOutput, *, num_shots: int) -> list[str]:
    problems = []
    if len(out.shots) != num_shots:
        problems.append(f"give exactly {num_shots} shots, not {len(out.shots)}")
    for i, s in enumerate(out.shots, 1):
        if not s.keyframe_prompt.strip() or not s.motion_prompt.strip():
            problems.append(f"shot {i} needs a non-empty keyframe_prompt and motion_prompt")
    return problems


# ---------------------------------------------------------------------------- memory controller


class EntityName(_Out):
    name: str


class NewEntity(_Out):
    name: str
    description: str
    base_entity: str | None


class MemoryControllerOutput(_Out):
    retrieved_existing: list[EntityName]
    new_entities: list[NewEntity]


def check_memory_controller(out: MemoryControllerOutput, *, known: Collection[str]) -> list[str]:
    problems = []
    for item in out.retrieved_existing:
        if not item.name.strip():
            problems.append("retrieved_existing has an empty name")
        elif item.name not in known:
            problems.append(f"retrieved_existing names {item.name!r}, which is not in memory; "
                            "only reuse listed entities, or propose it under new_entities")
    if len(out.new_entities) > MAX_NEW_ENTITIES:
        problems.append(f"propose at most {MAX_NEW_ENTITIES} new_entities, not {len(out.new_entities)}")
    seen: set[str] = set()
    for e in out.new_entities:
        if not e.name.strip():
            problems.append("a new entity has an empty name")
            continue
        if unsafe_character(e.name):
            problems.append(f"new entity name {e.name!r} contains a {unsafe_character(e.name)}; use plain text")
            continue
        if e.name in known:
            problems.append(f"{e.name!r} already exists in memory: list it in retrieved_existing instead")
        if e.name in seen:
            problems.append(f"{e.name!r} is proposed twice")
        if not e.description.strip():
            problems.append(f"new entity {e.name!r} needs a description")
        if e.base_entity is not None and e.base_entity not in known and e.base_entity not in seen:
            problems.append(f"new entity {e.name!r} has base_entity {e.base_entity!r}, which is not a known "
                            "entity; use an exact name from memory or null")
        if e.base_entity == e.name:
            problems.append(f"{e.name!r} cannot be its own base_entity")
        seen.add(e.name)
    return problems


# ---------------------------------------------------------------------------- keyframe analyzer


class KeyframeAnalyzerOutput(_Out):
    decision: Literal["accept", "regen_same_desc", "regen_refined_desc"]
    reasons: list[str]
    alignment_report: AlignmentReport
    refined_keyframe_prompt: str


def check_keyframe_analyzer(out: KeyframeAnalyzerOutput) -> list[str]:
    problems = []
    if not out.reasons or not any(r.strip() for r in out.reasons):
        problems.append("give at least one reason for the decision")
    if out.decision == "regen_refined_desc" and not out.refined_keyframe_prompt.strip():
        problems.append("regen_refined_desc needs a non-empty refined_keyframe_prompt")
    return problems


# ---------------------------------------------------------------------------- motion refiner


class MotionRefinerOutput(_Out):
    refined_video_motion_prompt: str


def check_motion_refiner(out: MotionRefinerOutput) -> list[str]:
    return [] if out.refined_video_motion_prompt.strip() else ["refined_video_motion_prompt is empty"]


# ---------------------------------------------------------------------------- video analyzer


class EntityUpdateOut(_Out):
    name: str
    description: str
    frame_index: int
    base_entity: str | None


class NextShot(_Out):
    keyframe_prompt: str


class VideoAnalyzerOutput(_Out):
    entity_updates: list[EntityUpdateOut]
    refined_next_shot: NextShot


def check_video_analyzer(out: VideoAnalyzerOutput, *, known: Collection[str], frames: int) -> list[str]:
    problems = []
    if len(out.entity_updates) > MAX_ENTITY_UPDATES:
        problems.append(f"give at most {MAX_ENTITY_UPDATES} entity_updates, not {len(out.entity_updates)}")
    seen: set[str] = set()
    for u in out.entity_updates:
        if not u.name.strip():
            problems.append("an entity update has an empty name")
            continue
        if unsafe_character(u.name):
            problems.append(f"entity update name {u.name!r} contains a {unsafe_character(u.name)}; use plain text")
            continue
        if u.name in known:
            problems.append(f"{u.name!r} is already in memory; do not repeat it (only new entities, new angles "
                            "or evolved states, under a new name)")
        if u.name in seen:
            problems.append(f"{u.name!r} appears twice in entity_updates")
        if not u.description.strip():
            problems.append(f"entity update {u.name!r} needs a description")
        if not 0 <= u.frame_index < frames:
            problems.append(f"frame_index {u.frame_index} for {u.name!r} is outside the {frames} frames shown "
                            f"(valid: 0..{frames - 1})")
        if u.base_entity is not None and u.base_entity not in known and u.base_entity not in seen:
            problems.append(f"{u.name!r} has base_entity {u.base_entity!r}, which is not in memory; use an exact "
                            "name from memory or null")
        seen.add(u.name)
    if not out.refined_next_shot.keyframe_prompt.strip():
        problems.append("refined_next_shot.keyframe_prompt is empty")
    return problems


# ---------------------------------------------------------------------------- strict JSON schema


@functools.cache
def strict_schema(model: type[BaseModel]) -> dict[str, Any]:
    """The model's JSON schema in the strict form structured-output APIs accept.

    Every object lists all its properties as required and forbids others; optional fields stay
    required but nullable, which is how the paper's ``base_entity: string | null`` reads.
    """
    schema = model.model_json_schema()

    def walk(node: Any) -> None:
        """Visit a schema node (never a ``properties`` mapping itself, whose keys are field names)."""
        if isinstance(node, list):
            for value in node:
                walk(value)
            return
        if not isinstance(node, dict):
            return
        node.pop("default", None)
        node.pop("title", None)
        if node.get("type") == "object" and "properties" in node:
            node["additionalProperties"] = False
            node["required"] = list(node["properties"])
        for key, value in node.items():
            if key in ("properties", "$defs"):
                for sub in value.values():
                    walk(sub)
            else:
                walk(value)

    walk(schema)
    return schema
