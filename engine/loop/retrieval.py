"""Retrieve&Update (Algorithm 1, eq. 1) as hybrid retrieval, and registering entities.

For a keyframe prompt q_t (docs/architecture.md §5):
1. vector shortlist of the entities visible on this branch now (text<->text and text<->image),
   widened with the base chains and derived states of what it found;
2. the MemoryController chooses ``retrieved_existing`` and proposes ``new_entities``;
3. each proposal is checked against the index: a near-duplicate of an existing entity (cosine of
   descriptions >= the threshold, ancestors excluded) is resolved to that entity, with its score;
4. each genuinely new entity is registered BEFORE the keyframe (§3.2.1): a new identity with a
   reference image from the image generator; an evolved state (a proposal with a ``base_entity``)
   with none, when ``[run] evolved_view`` is "keyframe": it enters memory from what its shot shows,
   the shot's selected keyframe, which the loop adds as its first view (``Loop.run_shot``). Until
   then it is drawn from the nearest entity of its base chain that has a view. ("reference", the
   way stories recorded before the key ran: a generated image conditioned on the base's view.)
5. per retrieved entity, the view that best matches q_t becomes the reference, named by the entity
   that owns it (an evolved state without a view yet sends its base's view, under the base's name).
All of it lands in one ``MemoryRetrieved`` event (after the registrations it caused).
With an untrained embedder, scores carry no meaning: duplicate resolution is off, the newest
view is used, and the event says so.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, cast

import numpy as np

from codirector.engine import agents
from codirector.engine.loop.context import RunContext
from codirector.engine.loop.vectors import best_view, embedding_ref, shortlist
from codirector.engine.views.memory import Entity, View
from codirector.events import (
    Candidate,
    DuplicateResolved,
    EntityRegistered,
    MemoryRetrieved,
    ProposedEntity,
    Reference,
    ViewAdded,
    ViewSource,
)
from codirector.events.memory import EntityKind, EntityOrigin
from codirector.generators.base import ImageInput, ImageRequest


@dataclass(frozen=True)
class Retrieved:
    """The references for one keyframe round."""

    references: list[ImageInput]
    entities: list[str]


def _kind_for(ctx: RunContext, name: str, base: str | None) -> EntityKind:
    for member in ctx.state.spec.cast:
        if member.name == name:
            return cast(EntityKind, member.kind)  # the story file's kinds are checked when it is read
    if base is not None and base in ctx.memory:
        return cast(EntityKind, ctx.memory.get(base).kind)  # as its EntityRegistered recorded it
    return "background" if name.startswith("bg_") else "other"


def register_entity(
    ctx: RunContext, *, name: str, description: str, base_entity: str | None, origin: EntityOrigin, shot: int | None,
    view: ImageInput | None, source: ViewSource | None, text_vector: tuple[np.ndarray, str, str] | None = None,
    cause: str | None = None,
) -> None:
    """Write an entity (with its description vector) and, if given, its first view (with its vector)."""
    if text_vector is None:
        emb = ctx.recorder.embed_texts([description], shot=shot)
        text_vector = (emb.vectors[0], emb.blobs[0], emb.model)
    vec, blob, model = text_vector
    ref = embedding_ref(ctx.story_id, name, blob, model)
    ctx.writer.one(EntityRegistered(name=name, kind=_kind_for(ctx, name, base_entity), description=description,
                                    base_entity=base_entity, origin=origin, text_embedding=ref).at(shot, cause=cause))
    ctx.index.add([ref.id], vec[None, :])
    if view is not None and source is not None:
        add_view(ctx, entity=name, view=view, source=source, shot=shot, cause=cause)


def add_view(ctx: RunContext, *, entity: str, view: ImageInput, source: ViewSource, shot: int | None,
             cause: str | None = None) -> None:
    emb = ctx.recorder.embed_images([view], shot=shot)
    ref = embedding_ref(ctx.story_id, entity, emb.blobs[0], emb.model)
    ctx.writer.one(ViewAdded(entity=entity, blob=view.digest, source=source, embedding=ref).at(shot, cause=cause))
    ctx.index.add([ref.id], emb.vectors[:1])


def _widen(ctx: RunContext, names: list[str]) -> list[Entity]:
    """The shortlist plus the base chains and derived states of what it holds (capped)."""
    out: list[str] = []
    for name in names:
        for related in [*ctx.memory.base_chain(name), name, *ctx.memory.descendants(name)]:
            if related not in out:
                out.append(related)
    cap = max(len(names), ctx.settings.shortlist * 2)
    return [ctx.memory.get(n) for n in out[:cap]]


def _duplicate_of(ctx: RunContext, proposal: ProposedEntity, vector: np.ndarray) -> tuple[str, float] | None:
    """The existing entity a proposal duplicates, if its description is that close to one."""
    ancestors = (set(ctx.memory.base_chain(proposal.base_entity))
                 if proposal.base_entity is not None and proposal.base_entity in ctx.memory else set())
    allowed = {e.text_embedding_id: e.name for e in ctx.memory
               if e.text_embedding_id is not None and e.name not in ancestors}
    if not allowed:
        return None
    hits = ctx.index.search(vector[None, :], 1, allowed)
    if hits and hits[0][1] >= ctx.settings.duplicate_threshold:
        return allowed[hits[0][0]], round(float(hits[0][1]), 6)
    return None


def _viewed(ctx: RunContext, entity: str) -> str:
    """``entity`` if it has a view, else the nearest entity up its base chain that has one (an evolved
    state waiting for its shot's keyframe is drawn from its base), else ``entity``."""
    for name in reversed(ctx.memory.base_chain(entity)):
        if ctx.memory.get(name).views:
            return name
    return entity


def _reference_view(
    ctx: RunContext, entity: str, query: np.ndarray, meaningful: bool
) -> tuple[View | None, float | None]:
    e = ctx.memory.get(entity)
    if not e.views:
        return None, None
    if not meaningful:
        return e.views[-1], None  # scores mean nothing: the newest view is the best guess
    return best_view(ctx.index, ctx.memory, entity, query)


def retrieve_and_update(ctx: RunContext, *, query: str, shot: int, round_: int, plan: dict[str, Any]) -> Retrieved:
    """One Retrieve&Update: returns the references for the keyframe and logs ``MemoryRetrieved``."""
    if ctx.settings.no_memory:
        ctx.writer.one(MemoryRetrieved(round=round_, query=query, memory_disabled=True).at(shot))
        return Retrieved([], [])
    ctx.progress.step(f"retrieve (round {round_})")
    q = ctx.recorder.embed_texts([query], shot=shot)
    qvec, meaningful = q.vectors[0], q.meaningful
    hits = shortlist(ctx.index, ctx.memory, qvec, ctx.settings.shortlist)
    seen = _widen(ctx, [h.entity for h in hits])
    known = set(ctx.memory.names())
    answer, call = agents.memory_controller(
        ctx.agents, keyframe_prompt=query, shortlist=seen, known=known, shot=shot,
        plan={**plan, "known": sorted(known)},
    )
    chosen = [item.name for item in answer.retrieved_existing]
    proposed = [ProposedEntity(name=e.name, description=e.description, base_entity=e.base_entity)
                for e in answer.new_entities]
    duplicates: list[DuplicateResolved] = []
    for p in proposed:
        emb = ctx.recorder.embed_texts([p.description], shot=shot)
        dup = _duplicate_of(ctx, p, emb.vectors[0]) if meaningful else None
        if dup is not None:
            duplicates.append(DuplicateResolved(proposed=p.name, resolved_to=dup[0], score=dup[1]))
            if dup[0] not in chosen:
                chosen.append(dup[0])
            continue
        from_keyframe = p.base_entity is not None and ctx.settings.evolved_view == "keyframe"
        view = None if from_keyframe else _generate_reference(ctx, p, shot, round_, qvec, meaningful)
        register_entity(ctx, name=p.name, description=p.description, base_entity=p.base_entity,
                        origin="memory_controller", shot=shot, view=view,
                        source=None if view is None else ViewSource(kind="reference", shot=shot, round=round_),
                        text_vector=(emb.vectors[0], emb.blobs[0], emb.model), cause=call.id)
        chosen.append(p.name)
    references: list[Reference] = []
    inputs: list[ImageInput] = []
    lent: set[str] = set()  # entities whose view is sent for an evolved state that has none yet
    for name in chosen:
        owner = _viewed(ctx, name)
        if owner in lent or (owner != name and any(r.entity == owner for r in references)):
            continue  # that view is already sent
        shown, score = _reference_view(ctx, owner, qvec, meaningful)
        if shown is None:
            continue
        if owner != name:
            lent.add(owner)
        references.append(Reference(entity=owner, blob=shown.blob, view_position=shown.position, score=score))
        inputs.append(ctx.image_input(owner, shown.blob))
    ctx.writer.one(MemoryRetrieved(
        round=round_, query=query,
        candidates=[Candidate(entity=h.entity, score=h.score, via=h.via) for h in hits],
        retrieved_existing=[item.name for item in answer.retrieved_existing],
        new_entities=proposed, duplicates_resolved=duplicates, references=references,
        scores_meaningful=meaningful,
    ).at(shot, cause=call.id))
    return Retrieved(inputs, chosen)


def _generate_reference(ctx: RunContext, p: ProposedEntity, shot: int, round_: int, qvec: np.ndarray,
                        meaningful: bool) -> ImageInput:
    """The new entity's reference image, from the image generator (§3.2.1)."""
    conditioning: tuple[ImageInput, ...] = ()
    if p.base_entity is not None and p.base_entity in ctx.memory:
        base_view, _ = _reference_view(ctx, p.base_entity, qvec, meaningful)
        if base_view is not None:
            conditioning = (ctx.image_input(p.base_entity, base_view.blob),)
    request = ImageRequest(
        prompt=f"Reference image of {p.name}: {p.description}", purpose="reference",
        seed=ctx.seed(shot, round_, f"reference:{p.name}"), width=ctx.settings.width, height=ctx.settings.height,
        references=conditioning, style=ctx.state.spec.style,
    )
    ctx.progress.step(f"reference image for {p.name}")
    digest, _ = ctx.recorder.image(request, shot=shot)
    return ctx.image_input(p.name, digest)
