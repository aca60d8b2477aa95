"""Pictures of a run: a contact sheet of a branch's keyframes, and the entity lineage as SVG.

Both are renderings of projections of the log (the run state and the memory fold): they add no
facts. The lineage is SVG so that names, states and links stay text a browser (or a test) can
read; its view thumbnails are inlined, so the file stands alone.
"""

from __future__ import annotations

import base64
import html
import io
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

from codirector.engine.views.memory import MemoryBank
from codirector.engine.views.state import RunState
from codirector.store.blobs import BlobStore, write_atomically


def contact_sheet(state: RunState, blobs: BlobStore, out: str | Path, *, title: str, columns: int = 4,
                  thumb: int = 256) -> Path:
    """A grid of the selected keyframes, in shot order, each labelled with its shot and prompt."""
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
        im = Image.open(io.BytesIO(blobs.get(state.completed[shot]["keyframe_blob"]))).convert("RGB")
        im = im.resize((thumb, th), Image.Resampling.LANCZOS)
        sheet.paste(im, (x, y))
        prompt = state.started_prompt.get(shot) or (state.plan[shot].keyframe_prompt if shot in state.plan else "")
        draw.text((x, y + th + 3), f"shot {shot}", fill=(20, 20, 20), font=font)
        draw.text((x, y + th + 18), prompt[:38] + ("…" if len(prompt) > 38 else ""), fill=(90, 90, 90), font=font)
    out = Path(out)  # (write_atomically makes the folder, and names this path if it cannot)
    buf = io.BytesIO()
    sheet.save(buf, format="PNG")
    write_atomically(out, buf.getvalue())
    return out


def _thumb_uri(blobs: BlobStore, digest: str, width: int = 96) -> str:
    im = Image.open(io.BytesIO(blobs.get(digest))).convert("RGB")
    im.thumbnail((width, width))
    buf = io.BytesIO()
    im.save(buf, format="JPEG", quality=80)
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode()


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
    order, depth = lineage_layout(memory)
    node_w, node_h, gap_x, gap_y, top = 300, 118, 80, 18, 60
    rows: dict[str, int] = {name: i for i, name in enumerate(order)}
    max_depth = max(depth.values(), default=0)
    width = 40 + (max_depth + 1) * (node_w + gap_x)
    height = top + len(order) * (node_h + gap_y) + 20
    parts = [
        f"<svg xmlns='http://www.w3.org/2000/svg' width='{width}' height='{height}' viewBox='0 0 {width} {height}' "
        "font-family='system-ui, sans-serif'>",
        "<defs><marker id='arrow' markerWidth='10' markerHeight='8' refX='9' refY='4' orient='auto'>"
        "<path d='M0,0 L10,4 L0,8 z' fill='#555'/></marker></defs>",
        "<rect width='100%' height='100%' fill='#f6f5f2'/>",
        f"<text x='20' y='34' font-size='20' font-weight='600'>{html.escape(title)}</text>",
    ]

    def pos(name: str) -> tuple[int, int]:
        return 20 + depth[name] * (node_w + gap_x), top + rows[name] * (node_h + gap_y)

    for name in order:
        e = memory.get(name)
        if e.base_entity and e.base_entity in rows:
            x1, y1 = pos(e.base_entity)
            x2, y2 = pos(name)
            parts.append(f"<path class='link' data-from='{html.escape(e.base_entity)}' data-to='{html.escape(name)}' "
                         f"d='M{x1 + node_w},{y1 + node_h // 2} C{x1 + node_w + gap_x // 2},{y1 + node_h // 2} "
                         f"{x2 - gap_x // 2},{y2 + node_h // 2} {x2},{y2 + node_h // 2}' stroke='#555' "
                         "stroke-width='2' fill='none' marker-end='url(#arrow)'/>")
    for name in order:
        e = memory.get(name)
        x, y = pos(name)
        colour = "#e8f1ff" if e.base_entity is None else "#fff1e0"
        parts.append(f"<g class='entity' data-entity='{html.escape(name)}'>")
        parts.append(f"<rect x='{x}' y='{y}' width='{node_w}' height='{node_h}' rx='8' fill='{colour}' "
                     "stroke='#888'/>")
        parts.append(f"<text x='{x + 10}' y='{y + 20}' font-size='14' font-weight='600'>{html.escape(name)}</text>")
        origin = f"{e.kind}, {e.origin.replace('_', ' ')}" + (f", shot {e.shot}" if e.shot is not None else "")
        parts.append(f"<text x='{x + 10}' y='{y + 37}' font-size='11' fill='#555'>{html.escape(origin)}</text>")
        for i, view in enumerate(e.views[-3:]):
            where = view.kind.replace("_", " ") + (f" f{view.frame_index}" if view.frame_index is not None else "")
            parts.append(f"<image x='{x + 10 + i * 96}' y='{y + 44}' width='90' height='52' "
                         f"href='{_thumb_uri(blobs, view.blob)}' preserveAspectRatio='xMidYMid meet'/>")
            parts.append(f"<text x='{x + 10 + i * 96}' y='{y + 110}' font-size='9' fill='#555'>"
                         f"{html.escape(where)}</text>")
        parts.append("</g>")
    parts.append("</svg>")
    out = Path(out)  # (write_atomically makes the folder, and names this path if it cannot)
    write_atomically(out, "".join(parts).encode("utf-8"))
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

