"""The memory scrubber and entity history pages: memory exactly as a shot (or any position) saw it.

Invariants:
- The gallery at shot N is ``Studio.memory(at_shot=N)``, exactly what ``codirector memory --at-shot N``
  prints; at a position P it is ``Studio.memory(at_position=P)``. Nothing is folded here.
- The lineage is drawn from ``base_entity`` links with the same layout as the demo's ``lineage.svg``
  (``views.pictures.lineage_layout``): base entities on the left, derived states to their right.
- An entity's history is ``Studio.history`` on the same branch.
"""

from __future__ import annotations

from dataclasses import dataclass

from codirector.engine.studio import Studio
from codirector.engine.views.history import EntityHistory
from codirector.engine.views.memory import Entity, MemoryBank
from codirector.engine.views.pictures import lineage_layout
from codirector.errors import InvalidArgument
from codirector.serve.pages import BranchRow, StoryRow, find_branch, find_story

NODE_W, NODE_H, GAP_X, GAP_Y, PAD = 250, 92, 56, 14, 12


@dataclass(frozen=True)
class Node:
    """An entity box of the lineage drawing (top-left corner)."""

    entity: Entity
    x: int
    y: int


@dataclass(frozen=True)
class Link:
    """A ``base_entity`` arrow from the right edge of one box to the left edge of another."""

    base: str
    derived: str
    x1: int
    y1: int
    x2: int
    y2: int


@dataclass(frozen=True)
class Lineage:
    nodes: tuple[Node, ...]
    links: tuple[Link, ...]
    width: int
    height: int


def lineage(bank: MemoryBank) -> Lineage:
    """Boxes and arrows for ``bank``'s entities."""
    order, depth = lineage_layout(bank)
    at = {name: (PAD + depth[name] * (NODE_W + GAP_X), PAD + i * (NODE_H + GAP_Y)) for i, name in enumerate(order)}
    nodes = tuple(Node(bank.get(name), *at[name]) for name in order)
    links = []
    for n in nodes:
        base = n.entity.base_entity
        if base is not None and base in at:
            bx, by = at[base]
            links.append(Link(base, n.entity.name, bx + NODE_W, by + NODE_H // 2, n.x, n.y + NODE_H // 2))
    width = PAD * 2 + (max(depth.values(), default=0) + 1) * (NODE_W + GAP_X)
    height = PAD * 2 + max(1, len(order)) * (NODE_H + GAP_Y)
    return Lineage(nodes, tuple(links), width, height)


@dataclass(frozen=True)
class MemoryPage:
    """Memory of a branch at one shot's keyframe (or at a position), with the scrubber's range."""

    story: StoryRow
    branch: BranchRow
    shots: tuple[tuple[int, int], ...]  # (shot, position of its KeyframeSelected), in shot order
    head: int
    shot: int | None  # the shot whose keyframe this memory made (None: an arbitrary position)
    position: int
    bank: MemoryBank
    lineage: Lineage

    def shot_at(self, position: int) -> int | None:
        """The last shot whose keyframe was selected at or before ``position``."""
        seen = [s for s, p in self.shots if p <= position]
        return seen[-1] if seen else None


def memory_page(studio: Studio, story_id: str, branch: str, *, shot: int | None = None,
                position: int | None = None) -> MemoryPage:
    """Memory as shot ``shot``'s keyframe saw it, or at ``position``; by default at the last selected keyframe."""
    story = find_story(studio, story_id)
    row = find_branch(story, branch)
    selected = tuple(sorted((e.shot, e.position) for e in studio.log(story_id, branch, types=["KeyframeSelected"])
                            if e.shot is not None))
    if shot is not None and position is not None:
        raise InvalidArgument("give a shot or a position, not both")
    if shot is None and position is None and selected:
        shot = selected[-1][0]
    if shot is not None:
        bank = studio.memory(story_id, branch, at_shot=shot)
    else:
        bank = studio.memory(story_id, branch, at_position=position)
    return MemoryPage(story, row, selected, row.events, shot, bank.position, bank, lineage(bank))


@dataclass(frozen=True)
class EntityPage:
    story: StoryRow
    branch: BranchRow
    history: EntityHistory


def entity_page(studio: Studio, story_id: str, branch: str, name: str) -> EntityPage:
    story = find_story(studio, story_id)
    row = find_branch(story, branch)
    return EntityPage(story, row, studio.history(story_id, name, branch))


__all__ = ["EntityPage", "Lineage", "Link", "MemoryPage", "Node", "entity_page", "lineage", "memory_page"]
