"""Pictures of a run: a contact sheet of a branch's keyframes, and the entity lineage as SVG.

Both are renderings of projections of the log (the run state and the memory fold): they add no
facts. The lineage is SVG so that names, states and links stay text a browser (or a test) can
read; its view thumbnails are inlined, so the file stands alone. The layout (where each node, link and view
goes) is worked out here; the ``lineage.svg`` template of ``engine.views.templating`` draws it. Every picture
is made by ``generators.imaging`` (``thumbnail_image``, ``thumbnail``, ``data_uri``).
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

from codirector.engine.views.memory import MemoryBank
from codirector.engine.views.state import RunState
from codirector.generators.imaging import data_uri, thumbnail, thumbnail_image
from codirector.store.blobs import BlobStore, write_atomically


def contact_sheet(state: RunState, blobs: BlobStore, out: str | Path, *, title: str, columns: int = 4,
                  thumb: int = 256) -> Path:
    """A grid of the selected keyframes, in shot order, each labelled with its shot and prompt (a keyframe
    that is not 16:9 is fitted into its 16:9 cell, centred, never stretched)."""
    from PIL import Image, ImageDraw, ImageFont

    shots = sorted(state.completed)
    rows = max(1, (len(shots) + columns - 1) // columns)
    th = thumb * 9 // 16
    label = 34
    pad = 10
    width = columns * (thumb + pad) + pad
    height = 44 + rows * (th + label + pad) + pad
    sheet = Image.new("RGB", (width, height), (245, 244, 240))
    draw = ImageDraw.Draw(sheet)
    font = ImageFont.load_default(size=13)
    big = ImageFont.load_default(size=18)
    draw.text((pad, 12), title, fill=(20, 20, 20), font=big)
    for i, shot in enumerate(shots):
        x = pad + (i % columns) * (thumb + pad)
        y = 44 + (i // columns) * (th + label + pad)
        im = thumbnail_image(blobs.get(state.completed[shot]["keyframe_blob"]), thumb, th)
        sheet.paste(im, (x + (thumb - im.width) // 2, y + (th - im.height) // 2))
        prompt = state.started_prompt.get(shot) or (state.plan[shot].keyframe_prompt if shot in state.plan else "")
        draw.text((x, y + th + 3), f"shot {shot}", fill=(20, 20, 20), font=font)
        draw.text((x, y + th + 18), prompt[:38] + ("…" if len(prompt) > 38 else ""), fill=(90, 90, 90), font=font)
    out = Path(out)  # (write_atomically makes the folder, and names this path if it cannot)
    buf = io.BytesIO()
    sheet.save(buf, format="PNG")
    write_atomically(out, buf.getvalue())
    return out


def _thumb_uri(blobs: BlobStore, digest: str, width: int = 96) -> str:
    return data_uri(thumbnail(blobs.get(digest), width, width), "image/jpeg")


@dataclass(frozen=True)
class _View:
    x: int
    href: str  # a JPEG data: URI
    where: str  # "keyframe", "clip frame f12", ...


@dataclass(frozen=True)
class _Node:
    name: str
    x: int
    y: int
    colour: str
    origin: str
    views: tuple[_View, ...]


@dataclass(frozen=True)
class _Link:
    source: str
    target: str
    d: str  # the SVG path: a curve from the base's right edge to the evolved state's left edge


def lineage_layout(memory: MemoryBank) -> tuple[list[str], dict[str, int]]:
    """The lineage's drawing order (each root, then its derived states depth-first) and each entity's depth
    (0 for a base entity); the SVG here and the studio's memory page both draw from it."""
    depth: dict[str, int] = {}
    for e in memory:
        depth[e.name] = len(memory.base_chain(e.name)) - 1
    roots = [e.name for e in memory if e.base_entity is None or e.base_entity not in memory]
    order: list[str] = []

    def visit(name: str) -> None:
        order.append(name)
        for child in memory.derived(name):
            if child not in order:
                visit(child)

    for r in roots:
        visit(r)
    return order, depth


def lineage_svg(memory: MemoryBank, blobs: BlobStore, out: str | Path, *, title: str) -> Path:
    """Base entities on the left, evolved states and new views to their right, linked by arrows."""
    from codirector.engine.views.templating import render

    order, depth = lineage_layout(memory)
    node_w, node_h, gap_x, gap_y, top = 300, 118, 80, 18, 60
    rows: dict[str, int] = {name: i for i, name in enumerate(order)}
    max_depth = max(depth.values(), default=0)
    width = 40 + (max_depth + 1) * (node_w + gap_x)
    height = top + len(order) * (node_h + gap_y) + 20

    def pos(name: str) -> tuple[int, int]:
        return 20 + depth[name] * (node_w + gap_x), top + rows[name] * (node_h + gap_y)

    links: list[_Link] = []
    for name in order:
        e = memory.get(name)
        if e.base_entity and e.base_entity in rows:
            x1, y1 = pos(e.base_entity)
            x2, y2 = pos(name)
            links.append(_Link(e.base_entity, name,
                               f"M{x1 + node_w},{y1 + node_h // 2} C{x1 + node_w + gap_x // 2},{y1 + node_h // 2} "
                               f"{x2 - gap_x // 2},{y2 + node_h // 2} {x2},{y2 + node_h // 2}"))
    nodes: list[_Node] = []
    for name in order:
        e = memory.get(name)
        x, y = pos(name)
        origin = f"{e.kind}, {e.origin.replace('_', ' ')}" + (f", shot {e.shot}" if e.shot is not None else "")
        views = tuple(_View(x + 10 + i * 96, _thumb_uri(blobs, view.blob),
                            view.kind.replace("_", " ") + (f" f{view.frame_index}" if view.frame_index is not None
                                                           else ""))
                      for i, view in enumerate(e.views[-3:]))
        nodes.append(_Node(name, x, y, "#e8f1ff" if e.base_entity is None else "#fff1e0", origin, views))
    svg = render("lineage.svg", width=width, height=height, title=title, node_w=node_w, node_h=node_h,
                 links=links, nodes=nodes)
    out = Path(out)  # (write_atomically makes the folder, and names this path if it cannot)
    write_atomically(out, svg.encode("utf-8"))
    return out


def lineage_lines(memory: MemoryBank) -> list[str]:
    """The lineage as text: ``Mia -> Mia_red_scarf (shot 3) -> Mia_red_scarf_back (shot 5)``."""
    lines: list[str] = []
    for e in memory:
        if memory.derived(e.name) and (e.base_entity is None or e.base_entity not in memory):
            stack: list[tuple[str, list[str]]] = [(e.name, [e.name])]
            while stack:
                name, path = stack.pop()
                children = memory.derived(name)
                if not children:
                    lines.append(" -> ".join(
                        p if memory.get(p).shot is None or p == path[0] else f"{p} (shot {memory.get(p).shot})"
                        for p in path))
                for c in reversed(children):
                    stack.append((c, [*path, c]))
    return lines

