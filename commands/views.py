"""The log's projections: ``history`` (an entity's lineage), ``diff`` (two branches), ``audit`` (decisions),
``cost`` (what a branch spent and what the recording saved)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from codirector.engine.views.cost import CostRow
    from codirector.engine.views.evidence import ShotAudit

from codirector.commands.common import BranchOpt, JsonOpt, PricesOpt, console, emit_json, short, studio_of


def history(
    ctx: typer.Context,
    story: Annotated[str, typer.Argument(help="Story id.")],
    entity: Annotated[str, typer.Argument(help="Entity name, e.g. Mia_red_scarf.")],
    branch: BranchOpt = "main",
    as_json: JsonOpt = False,
) -> None:
    """An entity's lineage (base_entity chain, derived states, views) and every event touching it.

    Example: codirector history lighthouse Mia_red_scarf
    """
    hist = studio_of(ctx).history(story, entity, branch)
    if as_json:
        emit_json(hist.to_json())
        return
    con = console()
    ent = hist.entity
    con.print(f"[bold]{ent.name}[/bold] ({ent.kind}, origin {ent.origin}, registered at shot "
              f"{ent.shot}, position {ent.position})")
    con.print(f"  {ent.description}")
    con.print("lineage: " + " → ".join(hist.chain)
              + (f"   derived: {', '.join(hist.descendants)}" if hist.descendants else ""))
    for member in hist.family:
        for v in member.views:
            frame = "" if v.frame_index is None else f" frame {v.frame_index}"
            con.print(f"  view of {member.name}: {v.kind} from shot {v.shot}{frame} "
                      f"(blob {v.blob[:10]}…, position {v.position})")
    from rich.table import Table

    table = Table("pos", "shot", "event", "role", "detail")
    for m in hist.events:
        table.add_row(str(m.position), "" if m.shot is None else str(m.shot), m.type, m.role, short(m.detail, 70))
    con.print(table)
    if hist.used_as_reference_in_shots:
        con.print("used as a reference in shots: " + ", ".join(map(str, hist.used_as_reference_in_shots)))



def diff(
    ctx: typer.Context,
    story: Annotated[str, typer.Argument(help="Story id.")],
    a: Annotated[str, typer.Argument(help="First branch.")],
    b: Annotated[str, typer.Argument(help="Second branch.")],
    as_json: JsonOpt = False,
) -> None:
    """Where two branches part, and how their shots and memory differ.

    Example: codirector diff lighthouse main storm
    """
    d = studio_of(ctx).diff(story, a, b)
    if as_json:
        emit_json(d.to_json())
        return
    typer.echo(f"{a} and {b} share positions 1..{d.parted_at_position}; first differing shot: "
               f"{d.first_differing_shot or 'none'}")
    from rich.table import Table

    table = Table("shot", "same", f"{a}: keyframe prompt", f"{b}: keyframe prompt")
    for s in d.shots:
        pa = (s.in_a.keyframe_prompt if s.in_a else None) or ""
        pb = (s.in_b.keyframe_prompt if s.in_b else None) or ""
        table.add_row(str(s.shot), "yes" if s.same else "NO", pa[:60], pb[:60])
    console().print(table)
    only_a, only_b = ", ".join(d.only_in_a) or "-", ", ".join(d.only_in_b) or "-"
    changed = ", ".join(c.name for c in d.changed) or "-"
    typer.echo(f"memory only in {a}: {only_a}; only in {b}: {only_b}; changed: {changed}")



def audit(
    ctx: typer.Context,
    story: Annotated[str, typer.Argument(help="Story id.")],
    branch: BranchOpt = "main",
    html_out: Annotated[str | None, typer.Option("--html", help="Also write a self-contained HTML report "
                                                 "here.")] = None,
    verbose: Annotated[bool, typer.Option("--verbose", help="Under each shot's line, its evidence: the vector "
                                          "shortlist with scores, every keyframe round's decision and reasons, "
                                          "the motion and next-shot prompt rewrites, memory updates with their "
                                          "frames, rejected answers.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Every continuity decision, per shot: one line each, or with --verbose the evidence under it.

    Examples: codirector audit lighthouse --verbose
              codirector audit lighthouse --html lighthouse-audit.html
    """
    report = studio_of(ctx).audit(story, branch, html=html_out)
    if as_json:
        emit_json(report.to_json())
        return
    from rich.markup import escape

    con = console()
    con.print(f"[bold]{report.title}[/bold] ({story}/{branch}): {len(report.shots)} of {report.planned_shots} shots")
    for note in report.notes:
        con.print(f"[yellow]note:[/yellow] {note}")
    for s in report.shots:
        sel = s.selected
        decisions = " ".join(f"r{r.round}:{r.decision or '-'}" for r in s.rounds)
        refs = ", ".join(x.entity for r in s.retrievals[-1:] for x in r.references)
        con.print(f"shot {s.shot}: rounds ({decisions}) -> round {sel.round if sel else None} "
                  f"({sel.how if sel else None}); references: {refs or '-'}; "
                  f"updates: {', '.join(u.label() for u in s.memory_updates) or '-'}"
                  + (f"; [red]{len(s.rejected)} rejected answers[/red]" if s.rejected else "")
                  + _shot_cost(report.cost.row(s.shot) if report.cost else None))
        if verbose:
            for line in evidence_lines(s):
                con.print(f"    {escape(line)}")
    if report.cost is not None and report.cost.unpriced:
        typer.echo("unpriced: " + "; ".join(_usage_line(m, report.cost.unpriced_usage.get(m, {}))
                                            for m in report.cost.unpriced))
    if report.html:
        con.print(f"wrote {report.html}")


def evidence_lines(s: ShotAudit) -> list[str]:
    """What ``audit --verbose`` prints under a shot's line: the evidence behind each decision, in log order."""
    lines: list[str] = []
    for r in s.retrievals:
        shortlist = ", ".join(f"{c.entity} {c.score:.2f} ({c.via})" for c in r.candidates) or "-"
        meaning = "" if r.scores_meaningful else " (untrained embedder: scores carry no meaning)"
        lines.append(f"retrieval r{r.round}: query {r.query!r}; shortlist {shortlist}{meaning}")
        lines.append(f"  reused: {', '.join(r.retrieved_existing) or '-'}; new: "
                     f"{', '.join(e.name for e in r.new_entities) or '-'}; references sent: "
                     f"{', '.join(x.entity for x in r.references) or '-'}")
    for k in s.rounds:
        reasons = "; ".join(k.reasons) or "-"
        lines.append(f"round {k.round}: {k.decision or '-'} ({reasons}); prompt {k.prompt!r}")
        if k.refined_keyframe_prompt:
            lines.append(f"  refined to {k.refined_keyframe_prompt!r}")
    if s.selected is not None:
        lines.append(f"selected: round {s.selected.round} ({s.selected.how}): {s.selected.why}")
    if s.motion is not None:
        lines.append(f"motion: {s.motion.before!r} -> {s.motion.after!r}")
    if s.video is not None and s.video.server:
        lines.append(f"clip: {s.video.backend} {s.video.model} from server {s.video.server} (job {s.video.job_id})")
    for j in s.video.lost_jobs if s.video is not None else ():
        lines.append(f"  lost job {j.job_id} on {j.server or '?'}, queued again: {j.reason}")
    if s.video is not None and s.video.references:
        lines.append("clip references (memory's views sent with the keyframe): "
                     + ", ".join(f"{name} ({blob[:12]})" for name, blob in s.video.references))
    for u in s.memory_updates:
        frame = "" if u.frame_index is None else f" from frame {u.frame_index}"
        lines.append(f"memory: {u.label()} {u.kind}{frame} (position {u.position})")
    if s.next_prompt is not None and s.next_prompt.after:
        lines.append(f"next shot {s.next_prompt.shot}: {s.next_prompt.before!r} -> {s.next_prompt.after!r}")
    for rejection in s.rejected:
        lines.append(f"rejected: {rejection.agent} attempt {rejection.attempt}: {'; '.join(rejection.errors)}")
    return lines


def _shot_cost(row: CostRow | None) -> str:
    if row is None:
        return ""
    unpriced = f" + {row.unpriced_calls} unpriced" if row.unpriced_calls else ""
    return (f"; cost ${row.usd:.4f}{unpriced}" if row.calls
            else f"; cost $0 ({row.reused_calls} calls served by the recording)")


def _usage_line(model: str, usage: dict[str, float]) -> str:
    return f"{model} (" + ", ".join(f"{k} {v:g}" for k, v in usage.items()) + ")"


def cost(
    ctx: typer.Context,
    story: Annotated[str, typer.Argument(help="Story id.")],
    branch: BranchOpt = "main",
    by: Annotated[str, typer.Option("--by", help="Break the spend down by shot, agent or model.")] = "shot",
    prices: PricesOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """What the branch spent (usage x prices), what its shared prefix cost the parent, what the recording saved.

    Unpriced models are listed with their usage, never counted as free. Example: codirector cost lighthouse --by agent
    """
    report = studio_of(ctx).cost(story, branch, by=by, prices=prices)
    if as_json:
        emit_json(report.to_json())
        return
    from rich.table import Table

    table = Table(by, "calls", "USD", "unpriced calls", "served by the recording", "would have cost")
    for r in report.rows:
        table.add_row("story" if r.key is None else str(r.key), str(r.calls), f"{r.usd:.6f}",
                      str(r.unpriced_calls or ""), str(r.reused_calls or ""), f"{r.saved_usd:.6f}" if r.reused_calls
                      else "")
    con = console()
    con.print(table)
    con.print(f"{story}/{branch}: spent [bold]${report.total_usd:.6f}[/bold] on {report.calls} calls"
              + (f" ({report.failed_calls} failed, free)" if report.failed_calls else ""))
    if report.shared_calls:
        con.print(f"shared with the parent: {report.shared_calls} calls that cost it ${report.shared_usd:.6f} "
                  "(not spent again)")
    shared = f" ({report.shared_calls} of them shared with the parent)" if report.shared_calls else ""
    con.print(f"served by the recording: {report.reused_calls} calls{shared}, which would have cost "
              f"${report.saved_usd:.6f}")
    for m in report.unpriced:
        typer.echo(f"unpriced: {_usage_line(m, report.unpriced_usage.get(m, {}))}; give it a price in "
                   f'[prices."{m}"] (--prices FILE)')
