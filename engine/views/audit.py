"""The audit: every continuity decision of a branch, per shot, with its evidence; and branch diffs.

A projection of the log (nothing here writes). For each shot: the retrieval evidence of each
Retrieve&Update (vector candidates and scores, the controller's choice, duplicates resolved, the
view chosen per entity), every keyframe round (image, decision, reasons, alignment report, refined
prompt), why the selected keyframe won, the motion prompt before and after, memory updates with
the frame they came from, the next shot's prompt before and after, and rejected agent answers.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from codirector.engine.views.memory import fold
from codirector.engine.views.state import fold_run_state
from codirector.engine.workspace import Workspace
from codirector.events import MEMORY_EVENT_TYPES, RecordedEvent


def _shot_record(shot: int) -> dict[str, Any]:
    return {"shot": shot, "keyframe_prompt": None, "motion_prompt": None, "planned": None, "retrievals": [],
            "rounds": [], "selected": None, "motion": None, "video": None, "memory_updates": [],
            "next_prompt": None, "rejected": [], "registrations": [], "calls": 0, "model_seconds": 0.0,
            "completed": False}


def audit_events(events: Iterable[RecordedEvent], *, story_id: str, branch: str) -> dict[str, Any]:
    """The stable ``codirector audit --json`` document for a branch's events."""
    events = list(events)
    state = fold_run_state(events)
    shots: dict[int, dict[str, Any]] = {}
    notes: list[str] = []
    meaningless = False
    by_id = {e.id: e for e in events}

    def rec(shot: int | None) -> dict[str, Any] | None:
        if shot is None:
            return None
        return shots.setdefault(shot, _shot_record(shot))

    for e in events:
        p, s = e.payload, rec(e.shot)
        if s is None:
            continue
        if e.type == "ShotPlanned":
            s["planned"] = {"keyframe_prompt": p["keyframe_prompt"], "motion_prompt": p["motion_prompt"],
                            "uses": p.get("uses", []), "group": p.get("group")}
        elif e.type == "ShotStarted":
            s["keyframe_prompt"], s["motion_prompt"] = p["keyframe_prompt"], p["motion_prompt"]
        elif e.type == "MemoryRetrieved":
            meaningless |= not p.get("scores_meaningful", True)
            s["retrievals"].append({
                "round": p["round"], "query": p["query"], "position": e.position,
                "memory_disabled": p.get("memory_disabled", False),
                "candidates": p.get("candidates", []), "retrieved_existing": p.get("retrieved_existing", []),
                "new_entities": p.get("new_entities", []), "duplicates_resolved": p.get("duplicates_resolved", []),
                "references": p.get("references", []), "scores_meaningful": p.get("scores_meaningful", True),
            })
        elif e.type == "KeyframeGenerated":
            s["rounds"].append({"round": p["round"], "prompt": p["prompt"], "blob": p["blob"], "seed": p["seed"],
                                "reference_blobs": p.get("reference_blobs", []), "backend": p["backend"],
                                "model": p["model"], "decision": None, "reasons": [], "alignment_report": None,
                                "refined_keyframe_prompt": ""})
        elif e.type == "KeyframeJudged":
            for r in s["rounds"]:
                if r["round"] == p["round"]:
                    r.update(decision=p["decision"], reasons=p["reasons"], alignment_report=p["alignment_report"],
                             refined_keyframe_prompt=p.get("refined_keyframe_prompt", ""))
        elif e.type == "KeyframeSelected":
            s["selected"] = {"round": p["round"], "blob": p["blob"], "how": p["how"], "why": p["why"]}
        elif e.type == "MotionPromptRefined":
            s["motion"] = {"before": p["original"], "after": p["refined"]}
        elif e.type == "VideoGenerated":
            s["video"] = {"blob": p["blob"], "frames": p["frames"], "fps": p["fps"], "backend": p["backend"],
                          "model": p["model"], "motion_prompt": p["motion_prompt"]}
        elif e.type == "VideoAnalyzed":
            s["next_prompt"] = {"shot": p.get("next_shot"), "before": p.get("next_prompt_before"),
                                "after": p.get("next_prompt_after")}
            s["sampled_frames"] = p.get("sampled_frames", [])
        elif e.type == "EntityRegistered":
            cause = by_id.get(e.causation_id or "")
            s["registrations"].append({"name": p["name"], "base_entity": p.get("base_entity"), "origin": p["origin"],
                                       "description": p["description"], "position": e.position,
                                       "caused_by": cause.type if cause else None})
        elif e.type == "ViewAdded":
            src = p.get("source", {})
            update = {"entity": p["entity"], "blob": p["blob"], "kind": src.get("kind"),
                      "frame_index": src.get("frame_index"), "round": src.get("round"), "position": e.position}
            if src.get("kind") == "video_frame":
                s["memory_updates"].append(update)
            else:
                s.setdefault("new_views", []).append(update)
        elif e.type == "AgentOutputRejected":
            s["rejected"].append({"agent": p["agent"], "attempt": p["attempt"], "errors": p["errors"],
                                  "raw_output": p.get("raw_output", "")[:2000], "position": e.position})
        elif e.type == "ModelCalled":
            s["calls"] += 1
            s["model_seconds"] = round(s["model_seconds"] + float(p.get("duration_ms", 0)) / 1000, 3)
        elif e.type == "ShotCompleted":
            s["completed"] = True
    for s in shots.values():
        for reg in s["registrations"]:
            for u in s["memory_updates"]:
                if u["entity"] == reg["name"]:
                    u.update(base_entity=reg["base_entity"], description=reg["description"])
    if meaningless:
        notes.append("retrieval scores in this run come from an untrained embedder and carry no meaning")
    memory = fold(e for e in events if e.type in MEMORY_EVENT_TYPES)
    return {
        "story": story_id, "branch": branch, "title": state.title, "notes": notes,
        "planned_shots": state.num_shots, "completed": state.story_completed,
        "shots": [shots[k] for k in sorted(shots)],
        "memory": [e.to_dict() for e in memory],
    }


def diff_branches(ws: Workspace, story_id: str, a: str, b: str) -> dict[str, Any]:
    """Where two branches part, and how their shots and memory differ."""
    ea, eb = ws.store.read(story_id, a), ws.store.read(story_id, b)
    parted = 0
    for x, y in zip(ea, eb, strict=False):
        if x.id != y.id:
            break
        parted = x.position
    sa = {s["shot"]: s for s in audit_events(ea, story_id=story_id, branch=a)["shots"]}
    sb = {s["shot"]: s for s in audit_events(eb, story_id=story_id, branch=b)["shots"]}

    def view(s: dict[str, Any] | None) -> dict[str, Any] | None:
        if s is None:
            return None
        sel = s.get("selected") or {}
        rounds = {r["round"]: r for r in s["rounds"]}
        used = rounds.get(sel.get("round"), {}).get("prompt") if sel else None
        return {"keyframe_prompt": used or s.get("keyframe_prompt"), "keyframe_blob": sel.get("blob"),
                "video_blob": (s.get("video") or {}).get("blob"), "completed": s["completed"]}

    shots = []
    first_diff = None
    for shot in sorted(set(sa) | set(sb)):
        va, vb = view(sa.get(shot)), view(sb.get(shot))
        same = va == vb
        if not same and first_diff is None:
            first_diff = shot
        shots.append({"shot": shot, "same": same, a: va, b: vb})
    ma = fold(e for e in ea if e.type in MEMORY_EVENT_TYPES)
    mb = fold(e for e in eb if e.type in MEMORY_EVENT_TYPES)
    changed = []
    for name in sorted(set(ma.names()) & set(mb.names())):
        x, y = ma.get(name), mb.get(name)
        if (x.description, x.base_entity, [v.blob for v in x.views]) != (y.description, y.base_entity,
                                                                            [v.blob for v in y.views]):
            changed.append({"name": name, "views": {a: len(x.views), b: len(y.views)},
                            "description_changed": x.description != y.description})
    return {
        "story": story_id, "a": a, "b": b, "parted_at_position": parted, "first_differing_shot": first_diff,
        "shots": shots,
        "memory": {"only_in_a": [n for n in ma.names() if n not in mb],
                   "only_in_b": [n for n in mb.names() if n not in ma], "changed": changed},
    }
