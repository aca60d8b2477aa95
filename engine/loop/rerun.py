"""Running a story file again, and forgetting a story that never got a shot done.

``run FILE`` on a story id that already exists continues the stored story when the file would record
the same ``StoryCreated`` now, and refuses, naming each difference, when it would not. ``forget``
hides a story that completed no shot from listings.

Invariants:
- "The same story" means the same ``StoryCreated`` payload: title, seed, the normalised spec and the
  recorded settings (profile, every backend table, ``[run]`` with the ablations and ``--max-rounds``).
  Like is compared with like: the plan the preview derives for a cast-less story is derived again
  (it is deterministic), and reference images are compared by digest, so nothing is written to compare.
- A refusal writes nothing and names each differing field, e.g.
  ``spec.shots[2].keyframe (shot 3): 'old' -> 'new'``.
- ``forget_story`` writes one ``StoryForgotten`` on a branch of its own (``forgotten~N``, forked at
  main's head), under main's lease; nothing is deleted and main's log is not touched, so a run,
  resume or replay of the story is the same as if it had never been forgotten. It refuses a story
  with a completed shot. A story is hidden while such a branch forks at main's head: continuing the
  story (``run FILE`` again, ``resume``) lists it again.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from codirector.engine.loop.derived_plan import PLAN_DERIVED
from codirector.engine.loop.formats import NATIVE
from codirector.engine.loop.patches import VERSION_FIELDS, creation_fields
from codirector.engine.loop.story import LoadedStory, StorySpec
from codirector.engine.views.state import fold_run_state
from codirector.engine.workspace import Workspace
from codirector.errors import AlreadyExists, RunStateError
from codirector.events import StoryCreated, StoryForgotten
from codirector.events.specs import RecordedSettings, StoryRecord
from codirector.store.blobs import digest_of
from codirector.store.event_store import MAIN
from codirector.store.lineage import StoryInfo

MAX_DIFF_LINES = 12
FORGOTTEN_PREFIX = "forgotten~"  # the branches that hold a StoryForgotten (hidden like replay scratch branches)
_SHOT_PATH = re.compile(r"^spec\.shots\[(\d+)\]")
_PROMPT_PATH = re.compile(r"^spec\.shots\[(\d+)\]\.(keyframe|motion)$")


@dataclass(frozen=True)
class NewStory:
    """What ``run FILE`` would record: ``StoryCreated``, and the reference images to store before it."""

    event: StoryCreated
    images: list[bytes] = field(default_factory=list)


def story_to_create(story: LoadedStory, spec: StorySpec, *, plan_notes: list[str], seed: int | None,
                    settings: RecordedSettings) -> NewStory:
    """The ``StoryCreated`` a run of ``story`` would record (``spec`` may carry a derived plan); images by digest."""
    spec_data = spec.model_dump(mode="json", exclude_none=True)
    if story.format != NATIVE:
        spec_data["source_format"] = story.format
    if plan_notes:
        spec_data.update(plan_source=PLAN_DERIVED, plan_notes=plan_notes)
    images: list[bytes] = []
    for member in spec_data.get("cast", []):
        data = story.images.get(member["name"], [])
        images.extend(data)
        digests = [digest_of(b) for b in data]
        if digests:
            member["reference_blob"] = digests[0]
        if digests[1:]:
            member["extra_view_blobs"] = digests[1:]
    created = StoryCreated(title=spec.title, seed=spec.seed if seed is None else seed,
                           spec=StoryRecord.model_validate(spec_data), settings=settings, **creation_fields())
    return NewStory(created, images)


# -- what differs ------------------------------------------------------------------------------------


def _flatten(value: Any, path: str, out: dict[str, Any]) -> None:
    if isinstance(value, dict) and value:
        for k, v in value.items():
            _flatten(v, f"{path}.{k}" if path else str(k), out)
    elif isinstance(value, list) and value:
        for i, v in enumerate(value):
            _flatten(v, f"{path}[{i}]", out)
    else:
        out[path] = value


def _shown(value: Any, absent: bool) -> str:
    if absent:
        return "(absent)"
    text = repr(value) if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    return text if len(text) <= 80 else text[:77] + "..."


def differences(recorded: dict[str, Any], now: dict[str, Any]) -> list[str]:
    """Each field that differs between two ``StoryCreated`` payloads, one line each, in the recorded order."""
    a: dict[str, Any] = {}
    b: dict[str, Any] = {}
    _flatten(recorded, "", a)
    _flatten(now, "", b)
    lines = []
    for path in [*a, *(p for p in b if p not in a)]:
        if path in a and path in b and a[path] == b[path]:
            continue
        shot = _SHOT_PATH.match(path)
        label = f"{path} (shot {int(shot.group(1)) + 1})" if shot else path
        lines.append(f"{label}: {_shown(a.get(path), path not in a)} -> {_shown(b.get(path), path not in b)}")
    return lines


def _as_asked(created: dict[str, Any]) -> dict[str, Any]:
    """A ``StoryCreated`` payload without what records the release that made it: the same file run on another
    release is the same story (its run keeps the loop it began with, ``engine.loop.patches``)."""
    return {k: v for k, v in created.items() if k not in VERSION_FIELDS}


def _refusal(story_id: str, lines: list[str]) -> AlreadyExists:
    shown = lines[:MAX_DIFF_LINES]
    more = [f"... and {len(lines) - MAX_DIFF_LINES} more"] if len(lines) > MAX_DIFF_LINES else []
    prompts = [_PROMPT_PATH.match(line.split(" ", 1)[0]) for line in lines]
    if all(prompts):  # only shot prompts changed: a branch from the first changed shot keeps the rest
        first = min(int(m.group(1)) for m in prompts if m) + 1
        branch = (f"branch the stored story at the first changed shot: `codirector branch {story_id} --from-shot "
                  f"{first} --name NEW --set \"shots.{first}.keyframe=...\"`, then `codirector run --story {story_id} "
                  "--branch NEW`")
    else:
        branch = (f"branch the stored story (`codirector branch {story_id} --from-shot N --name NEW --set "
                  "shots.N.keyframe=TEXT`)")
    return AlreadyExists(
        f"a story with id {story_id!r} already exists, and this file (with these options) differs from it:\n  "
        + "\n  ".join(shown + more),
        hint=f"run the file as a new story with --story-id NEW_ID, or {branch}; `codirector resume {story_id}` "
        "continues the stored story as it was",
    )


# -- running again -------------------------------------------------------------------------------------


def continuation(ws: Workspace, story_id: str, new: NewStory) -> str | None:
    """None when ``story_id`` is new. When it exists and ``new`` records the same story: the note for the
    user ("continuing S from shot 3"; empty when it is complete). Else ``AlreadyExists`` naming the differences."""
    if story_id not in ws.story_ids():
        return None
    events = ws.store.read(story_id, MAIN)
    recorded = events[0].payload if events and events[0].type == "StoryCreated" else {}
    lines = differences(_as_asked(recorded), _as_asked(new.event.payload()))
    if lines:
        raise _refusal(story_id, lines)
    state = fold_run_state(events)
    if state.story_completed:
        return ""
    hidden = " (it had been forgotten; it is listed again)" if is_forgotten(ws.store.story(story_id)) else ""
    todo = [t for t in range(1, state.num_shots + 1) if t not in state.completed]
    where = f"from shot {todo[0]}" if state.num_shots and todo else "from its start"
    return f"continuing {story_id} {where}{hidden}: the same story file; recorded model answers are reused"


# -- forgetting ------------------------------------------------------------------------------------------


@dataclass
class Forgotten:
    """A story hidden from listings (``codirector forget``); its events stay in the log."""

    story_id: str
    events: int
    shots_started: int
    already: bool = False

    def to_json(self) -> dict[str, Any]:
        return {"story": self.story_id, "events": self.events, "shots_started": self.shots_started,
                "already_forgotten": self.already}


def is_forgotten(story: StoryInfo) -> bool:
    """Whether the story is hidden: a ``forgotten~N`` branch forks at main's head (main has not grown since)."""
    main = next((b for b in story.branches if b.name == MAIN), None)
    return main is not None and any(b.name.startswith(FORGOTTEN_PREFIX) and b.fork_position == main.head_position
                                    for b in story.branches)


def forget_story(ws: Workspace, story_id: str) -> Forgotten:
    """Hide a story that completed no shot (one ``StoryForgotten`` on a branch of its own; nothing is deleted)."""
    ws.store.story(story_id)  # StoryNotFound, with close ids
    with ws.lease(story_id, MAIN):  # not while it runs
        events = ws.store.read(story_id, MAIN)
        state = fold_run_state(events)
        head = events[-1].position if events else 0
        story = ws.store.story(story_id)
        if is_forgotten(story):
            return Forgotten(story_id, head, len(state.started), already=True)
        done = {e.shot for e in ws.store.read_story(story_id, types=["ShotCompleted"])}  # on any branch
        if done:
            raise RunStateError(
                f"{story_id!r} has {len(done)} completed shot{'s' if len(done) != 1 else ''}; `forget` only hides a "
                "story that never got a shot done",
                hint=f"its log stays either way: continue it (`codirector resume {story_id}`), branch it, or start "
                "the file again under another id with --story-id NEW_ID",
            )
        taken = {b.name for b in story.branches}
        n = 1
        while f"{FORGOTTEN_PREFIX}{n}" in taken:
            n += 1
        mark = StoryForgotten(shots_started=len(state.started), events=head).at()
        ws.store.create_branch(story_id, f"{FORGOTTEN_PREFIX}{n}", parent=MAIN, at_position=head, events=[mark])
        return Forgotten(story_id, head, len(state.started))
