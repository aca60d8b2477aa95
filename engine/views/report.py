"""The audit as one self-contained HTML file: images inlined, readable without codirector.

Invariant: the page shows only what the ``Audit`` from ``audit_events`` holds (it is a rendering
of the log's projection, never a second source of truth); every shot has a ``section.shot`` with its keyframe
rounds (``img.keyframe``) and each round's ``.decision``.
"""

from __future__ import annotations

import base64
import html
import io
from pathlib import Path
from typing import Any

from PIL import Image

from codirector.engine.views.audit import Audit
from codirector.engine.views.cost import CostReport
from codirector.engine.views.describe import brief_entity
from codirector.engine.views.evidence import Retrieval, ShotAudit
from codirector.engine.views.memory import Entity
from codirector.engine.views.projection import logged
from codirector.store.blobs import BlobStore, write_atomically

CARD_DESCRIPTION = 180  # characters of an entity card's description (the whole of it in its tooltip)

CSS = """
body{font:14px/1.45 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:0;background:#f6f5f2;color:#1e1e1e}
header{background:#1f2933;color:#f5f5f5;padding:18px 28px}
header h1{margin:0 0 4px;font-size:22px} header p{margin:2px 0;color:#cbd2d9}
main{padding:10px 28px 40px;max-width:1280px}
.note{background:#fff4ce;border-left:4px solid #d9a400;padding:6px 10px;margin:8px 0}
section.shot{background:#fff;border:1px solid #ddd;border-radius:8px;margin:18px 0;padding:12px 18px}
h2{margin:4px 0 8px;font-size:18px} h3{margin:12px 0 6px;font-size:14px;color:#52606d;text-transform:uppercase;
letter-spacing:.04em}
.rounds{display:flex;flex-wrap:wrap;gap:14px} .round{width:330px}
.round img{width:320px;border:3px solid #ccc;border-radius:4px} .round.chosen img{border-color:#2f855a}
.decision{display:inline-block;padding:1px 8px;border-radius:10px;font-weight:600;font-size:12px;color:#fff}
.decision.accept{background:#2f855a} .decision.regen_same_desc{background:#c05621}
.decision.regen_refined_desc{background:#b7791f} .decision.none{background:#718096}
table{border-collapse:collapse;margin:4px 0} td,th{border:1px solid #e2e2e2;padding:3px 8px;text-align:left;
vertical-align:top} th{background:#f0f0f0}
.refs{display:flex;gap:10px;flex-wrap:wrap} .ref{font-size:12px;text-align:center}
.ref img{width:140px;border:1px solid #bbb}
.before{color:#8a1c1c} .after{color:#1c5d2c} .mono{font-family:ui-monospace,Menlo,monospace;font-size:12px}
.entities{display:flex;flex-wrap:wrap;gap:12px} .entity{width:240px;background:#fff;border:1px solid #ddd;padding:8px;
border-radius:6px;font-size:12px} .entity img{width:100px;margin:2px;border:1px solid #ccc}
.rejected{background:#fde8e8;border-left:4px solid #c53030;padding:6px 10px;margin:6px 0}
"""


class _Images:
    """Blob -> inline thumbnail (JPEG data URI), each blob encoded once."""

    def __init__(self, blobs: BlobStore, width: int = 320) -> None:
        self.blobs = blobs
        self.width = width
        self._cache: dict[tuple[str, int], str] = {}

    def uri(self, digest: str | None, width: int | None = None) -> str:
        if not digest:
            return ""
        w = width or self.width
        key = (digest, w)
        if key not in self._cache:
            try:
                im = Image.open(io.BytesIO(self.blobs.get(digest))).convert("RGB")
            except Exception:  # a missing or non-image blob: show nothing rather than fail the report
                self._cache[key] = ""
                return ""
            im.thumbnail((w, w * 4))
            buf = io.BytesIO()
            im.save(buf, format="JPEG", quality=82)
            self._cache[key] = "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode()
        return self._cache[key]


def _e(value: Any) -> str:
    return html.escape("" if value is None else str(value))


def render_html(audit: Audit, blobs: BlobStore) -> str:
    """The audit as HTML."""
    images = _Images(blobs)
    out = [f"<!doctype html><html lang=en><head><meta charset=utf-8><title>Audit: {_e(audit.title)}</title>"
           f"<style>{CSS}</style></head><body>"]
    out.append(f"<header><h1>{_e(audit.title)}</h1><p>story <b>{_e(audit.story)}</b>, branch "
               f"<b>{_e(audit.branch)}</b>: {len(audit.shots)} of {audit.planned_shots} shots, "
               f"{'complete' if audit.completed else 'incomplete'}</p></header><main>")
    for note in audit.notes:
        out.append(f"<div class=note>{_e(note)}</div>")
    out.append(_memory(audit.memory, images))
    if audit.cost is not None:
        out.append(_cost(audit.cost))
    for shot in audit.shots:
        out.append(_shot(shot, images))
    out.append("</main></body></html>")
    return "".join(out)


def _memory(entities: tuple[Entity, ...], images: _Images) -> str:
    cards = []
    for ent in entities:
        base = f" &larr; <b>{_e(ent.base_entity)}</b>" if ent.base_entity else ""
        views = "".join(f"<img src='{images.uri(v.blob, 160)}' title='{_e(v.kind)}, shot {_e(v.shot)}'>"
                        for v in ent.views[:4])
        cards.append(f"<div class=entity data-entity='{_e(ent.name)}'><b>{_e(ent.name)}</b>{base}<br>"
                     f"<i>{_e(ent.kind)}, {_e(ent.origin)}, shot {_e(ent.shot)}</i><br>{views}<br>"
                     f"<span class=description title='{_e(ent.description)}'>"
                     f"{_e(brief_entity(ent, entities, CARD_DESCRIPTION))}</span></div>")
    return f"<section id=memory><h2>Entity memory at the end</h2><div class=entities>{''.join(cards)}</div></section>"


def _cost(c: CostReport) -> str:
    """Spend per shot; unpriced models are named with their usage, never shown as free."""
    rows = "".join(f"<tr data-cost-shot='{_e(r.key)}'><td>{_e(r.key if r.key is not None else 'story')}</td>"
                   f"<td>{r.calls}</td><td>${r.usd:.6f}</td><td>{r.unpriced_calls or ''}</td>"
                   f"<td>{r.reused_calls or ''}</td></tr>" for r in c.rows)
    unpriced = "".join(f"<div class=note data-unpriced='{_e(m)}'>unpriced: {_e(m)} (usage: "
                       f"{_e(', '.join(f'{k} {v:g}' for k, v in c.unpriced_usage.get(m, {}).items()))})</div>"
                       for m in c.unpriced)
    return (f"<section id=cost><h2>Cost</h2><p>spent <b>${c.total_usd:.6f}</b> on {c.calls} calls; "
            f"{c.reused_calls} answered by the recording (would have cost ${c.saved_usd:.6f})</p>{unpriced}"
            "<table><tr><th>shot</th><th>calls</th><th>USD</th><th>unpriced calls</th><th>from the recording</th>"
            f"</tr>{rows}</table></section>")


def _shot(s: ShotAudit, images: _Images) -> str:
    n = s.shot
    parts = [f"<section class=shot id='shot-{n}' data-shot='{n}'><h2>Shot {n}</h2>"]
    planned = s.planned.keyframe_prompt if s.planned else None
    parts.append(f"<p><b>Planned keyframe:</b> {_e(planned)}<br>"
                 f"<b>Started from:</b> {_e(s.keyframe_prompt)}</p>")
    for r in s.retrievals:
        parts.append(_retrieval(r, images))
    parts.append("<h3>Keyframe rounds</h3><div class=rounds>")
    chosen = s.selected.round if s.selected else None
    for r in s.rounds:
        decision = r.decision or "none"
        report = logged(r.alignment_report) if r.alignment_report else {}
        checks = ", ".join(f"{k.replace('main_character_', '')}: {v}" for k, v in report.items())
        refined = (f"<br><b>refined prompt:</b> {_e(r.refined_keyframe_prompt)}"
                   if r.refined_keyframe_prompt else "")
        parts.append(
            f"<div class='round{' chosen' if r.round == chosen else ''}' data-round='{r.round}'>"
            f"<img class=keyframe alt='shot {n} round {r.round} keyframe' src='{images.uri(r.blob)}'><br>"
            f"round {r.round} <span class='decision {decision}'>{_e(decision)}</span> seed {r.seed}<br>"
            f"<span class=mono>{_e(checks)}</span><br>{_e('; '.join(r.reasons))}{refined}</div>")
    parts.append("</div>")
    if s.selected:
        sel = s.selected
        parts.append(f"<p class=selected><b>Selected: round {sel.round} ({_e(sel.how)})</b> &mdash; "
                     f"{_e(sel.why)}</p>")
    for v in (v for v in s.new_views if v.kind == "keyframe"):  # a state this shot first shows
        reg = v.registration
        base = f" (evolves from {_e(reg.base_entity)})" if reg and reg.base_entity else ""
        parts.append(f"<div class='refs from-keyframe' data-entity='{_e(v.entity)}'><p><b>{_e(v.entity)}</b>{base} "
                     f"enters memory with this keyframe (round {_e(v.round)}) as its view</p>"
                     f"<p>{_e(reg.description if reg else None)}</p></div>")
    if s.motion:
        parts.append(f"<h3>Motion prompt</h3><p class=before>before: {_e(s.motion.before)}</p>"
                     f"<p class=after>after: {_e(s.motion.after)}</p>")
    if s.video is not None and (s.video.references or s.video.server):
        clip = s.video
        where = f" from server {_e(clip.server)} (job {_e(clip.job_id)})" if clip.server else ""
        refs = "".join(f"<div class=ref><img src='{images.uri(blob, 140)}'><br>{_e(name)}</div>"
                       for name, blob in clip.references)
        parts.append(f"<h3>Clip</h3><p>{_e(clip.backend)} {_e(clip.model)}{where}</p>"
                     + (f"<p>memory's views sent with the keyframe:</p><div class='refs clip-refs'>{refs}</div>"
                        if refs else ""))
    if s.memory_updates or s.next_prompt:
        parts.append("<h3>After the clip</h3>")
    for u in s.memory_updates:
        reg = u.registration
        base = f" (evolves from {_e(reg.base_entity)})" if reg and reg.base_entity else ""
        parts.append(f"<div class=refs><div class=ref><img src='{images.uri(u.blob, 200)}'><br>"
                     f"<b>{_e(u.entity)}</b>{base}, clip frame {_e(u.frame_index)}</div>"
                     f"<p>{_e(reg.description if reg else None)}</p></div>")
    if s.next_prompt:
        np_ = s.next_prompt
        parts.append(f"<p><b>Shot {np_.shot} prompt</b><br><span class=before>before: {_e(np_.before)}</span>"
                     f"<br><span class=after>after: {_e(np_.after)}</span></p>")
    for rej in s.rejected:
        parts.append(f"<div class=rejected><b>{_e(rej.agent)}</b> answer {rej.attempt} rejected: "
                     f"{_e('; '.join(rej.errors))}<br><span class=mono>{_e(rej.raw_output[:400])}</span></div>")
    parts.append(f"<p class=mono>{s.calls} model calls, {s.model_seconds:.2f} s in models</p></section>")
    return "".join(parts)


def _retrieval(r: Retrieval, images: _Images) -> str:
    if r.memory_disabled:
        return f"<h3>Retrieval, round {r.round}</h3><p>memory is off for this run (--no-memory)</p>"
    rows = "".join(f"<tr><td>{_e(c.entity)}</td><td>{c.score:.3f}</td><td>{_e(c.via)}</td></tr>"
                   for c in r.candidates)
    dups = "".join(f"<li>{_e(d.proposed)} &rarr; {_e(d.resolved_to)} (cosine {d.score:.3f})</li>"
                   for d in r.duplicates_resolved)
    new = ", ".join(_e(p.name) + (f" (from {_e(p.base_entity)})" if p.base_entity else "")
                    for p in r.new_entities)
    refs = "".join(f"<div class=ref><img src='{images.uri(x.blob, 140)}'><br>{_e(x.entity)}"
                   + (f"<br>score {x.score:.3f}" if x.score is not None else "") + "</div>"
                   for x in r.references)
    meaning = "" if r.scores_meaningful else " <i>(untrained embedder: scores carry no meaning)</i>"
    return (f"<h3>Retrieval, round {r.round}</h3><p>query: {_e(r.query)}</p>"
            f"<table><tr><th>vector shortlist</th><th>score</th><th>via</th></tr>{rows}</table>{meaning}"
            f"<p>reused: {_e(', '.join(r.retrieved_existing) or 'none')}; new: {new or 'none'}</p>"
            + (f"<ul>{dups}</ul>" if dups else "") + f"<div class=refs>{refs}</div>")


def write_html(audit: Audit, blobs: BlobStore, path: str | Path) -> Path:
    path = Path(path)  # (write_atomically makes the folder, and names this path if it cannot)
    write_atomically(path, render_html(audit, blobs).encode("utf-8"))
    return path
