"""``Studio``: the Python API. Every CLI command is a thin call into one method here.

    from codirector import Studio
    studio = Studio(home="./.codirector")          # or Studio() for CODIRECTOR_HOME / ./.codirector
    studio.memory("lighthouse", at_shot=5)         # MemoryBank
    studio.history("lighthouse", "Mia_red_scarf")  # dict, same as `codirector history --json`

A Studio is a thin facade: it resolves the home (database URL, blobs, vector-index cache), builds
one ``Workspace`` from it and hands that to the engine services, which never see the Studio. It holds
no state of its own beyond the workspace's open handles: everything it returns is computed from the log.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from codirector.engine.loop.replay import ReplayReport, is_scratch, replay
from codirector.engine.loop.runs import RunResult, create_branch, execute, start_run
from codirector.engine.views.audit import audit_events, diff_branches
from codirector.engine.views.export import export_branch
from codirector.engine.views.history import entity_history
from codirector.engine.views.memory import MemoryBank, MemoryReader, position_at_shot, stale_snapshots
from codirector.engine.views.report import write_html
from codirector.engine.workspace import Workspace
from codirector.errors import RunStateError, StoreError, did_you_mean
from codirector.events import RecordedEvent, event_types
from codirector.store.blobs import BlobStore
from codirector.store.db import current_revision, head_revision, make_engine, upgrade
from codirector.store.event_store import MAIN, EventStore
from codirector.store.home import Home
from codirector.store.snapshots import SnapshotCache
from codirector.store.vector_index import (
    VectorIndex,
)
from codirector.store.verify import Problem, VerifyReport, verify


class Studio:
    """One codirector home: run, query, branch, replay, audit and verify stories."""

    def __init__(self, home: str | os.PathLike[str] | None = None, db: str | None = None) -> None:
        self.home = Home.resolve(home, db)
        self._workspace: Workspace | None = None
        self.blobs = BlobStore(self.home.blobs_dir)

    # -- lifecycle ----------------------------------------------------------------------

    def init(self) -> dict[str, Any]:
        """Create or upgrade the database and the home folders (what `codirector init` does)."""
        self.home.ensure()
        engine = make_engine(self.home.db_url)
        before = current_revision(engine)
        upgrade(engine)
        engine.dispose()
        return {"home": str(self.home.root), "database": self.home.describe_db(),
                "revision_before": before, "revision": head_revision()}

    @property
    def workspace(self) -> Workspace:
        """The storage every engine service works on (opened on first use)."""
        if self._workspace is None:
            if self.home.is_sqlite and not Path(self.home.db_url.split("///", 1)[-1]).exists():
                raise StoreError(
                    f"no codirector database at {self.home.root}",
                    hint="run `codirector init` first, or pass --home DIR / set CODIRECTOR_HOME to an existing home",
                )
            self._workspace = Workspace(store=EventStore.open(self.home.db_url), blobs=self.blobs,
                                        cache_dir=self.home.root)
        return self._workspace

    @property
    def store(self) -> EventStore:
        return self.workspace.store

    def close(self) -> None:
        if self._workspace is not None:
            self._workspace.close()
            self._workspace = None

    def __enter__(self) -> Studio:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # -- queries ------------------------------------------------------------------------

    def stories(self, *, include_replays: bool = False) -> list[dict[str, Any]]:
        """Every story with its branches and each branch's status (replay scratch branches hidden)."""
        out = []
        for story in self.store.stories():
            branches = []
            for b in story.branches:
                if is_scratch(b.name) and not include_replays:
                    continue
                own = self.store.read(story.id, b.name, after=b.fork_position,
                                      types=["StoryCompleted", "ShotCompleted", "BranchCreated", "BranchRanked"])
                done = any(e.type == "StoryCompleted" for e in own)
                ranked = any(e.type == "BranchRanked" for e in own)
                shots = sorted({e.shot for e in self.store.read(story.id, b.name, types=["ShotCompleted"])
                                if e.shot is not None})
                branches.append({
                    "name": b.name, "parent": b.parent, "fork_position": b.fork_position,
                    "events": b.head_position, "shots_completed": len(shots),
                    "status": "completed" if done else "ranked" if ranked else (
                        "empty" if b.head_position == 0 else "in progress"),
                    "created_at": b.created_at,
                })
            out.append({"id": story.id, "title": story.title, "created_at": story.created_at, "branches": branches})
        return out

    def log(
        self, story_id: str, branch: str = MAIN, *, types: list[str] | None = None, shot: int | None = None,
        after: int = 0, upto: int | None = None, limit: int | None = None,
    ) -> list[RecordedEvent]:
        """The events of a branch (its lineage included), optionally filtered."""
        if types:
            known = event_types()
            for t in types:
                if t not in known:
                    raise RunStateError(f"unknown event type {t!r}", hint=did_you_mean(t, known, "event type"))
        return self.store.read(story_id, branch, types=types, shot=shot, after=after, upto=upto, limit=limit)

    def memory(
        self, story_id: str, branch: str = MAIN, *, at_shot: int | None = None, at_position: int | None = None
    ) -> MemoryBank:
        """Entity memory as it stood: at a shot's keyframe, at a position, or now."""
        position = at_position
        if at_shot is not None:
            if at_shot < 1:
                raise RunStateError(f"--at-shot must be 1 or more (shots are numbered from 1), got {at_shot}")
            position = position_at_shot(self.store.read(story_id, branch, types=["KeyframeSelected"]), at_shot)
        return MemoryReader(self.store).at(story_id, branch, position)

    def history(self, story_id: str, entity: str, branch: str = MAIN) -> dict[str, Any]:
        """An entity's lineage and every event that touched it."""
        return entity_history(self.store.read(story_id, branch), entity, story_id=story_id, branch=branch)

    # -- runs -----------------------------------------------------------------------------

    def run(
        self, story_file: str | os.PathLike[str], *, profile: str | None = None,
        config: str | os.PathLike[str] | None = None, seed: int | None = None, max_rounds: int | None = None,
        story_id: str | None = None, no_memory: bool = False, no_synergy: bool = False, no_refine: bool = False,
        backends: Any = None, progress: Any = None,
    ) -> RunResult:
        """Start a story from a file and run it to the end (``codirector run``)."""
        self._ensure_initialised()
        return start_run(self.workspace, story_file, profile=profile, config=config, seed=seed, max_rounds=max_rounds,
                         story_id=story_id, backends=backends, progress=progress,
                         ablations={"no_memory": no_memory, "no_synergy": no_synergy, "no_refine": no_refine})

    def resume(self, story_id: str, branch: str = MAIN, *, backends: Any = None, progress: Any = None) -> Any:
        """Continue an interrupted run (or director); recorded calls come from the log (``codirector resume``)."""
        from codirector.engine.director.direction import is_brief, resume_direction

        if branch == MAIN and is_brief(self.workspace, story_id):
            return resume_direction(self.workspace, story_id, backends=backends, progress=progress)
        return execute(self.workspace, story_id, branch, backends=backends, progress=progress)

    def run_branch(self, story_id: str, branch: str, *, backends: Any = None, progress: Any = None) -> RunResult:
        """Run a branch from its fork (``codirector run --story S --branch B``)."""
        if branch == MAIN:
            raise RunStateError("`run --story` continues a branch; the main branch is continued by `resume`")
        return execute(self.workspace, story_id, branch, backends=backends, progress=progress)

    def branch(self, story_id: str, *, from_shot: int, name: str, parent: str = MAIN,
               overrides: dict[str, str] | None = None) -> dict[str, Any]:
        """Fork a branch just before ``from_shot`` with optional prompt overrides (``codirector branch``)."""
        return create_branch(self.workspace, story_id, from_shot=from_shot, name=name, parent=parent,
                             overrides=overrides)

    def export(self, story_id: str, out: str | os.PathLike[str], branch: str = MAIN) -> dict[str, Any]:
        """Assemble the branch's clips into one MP4 (``codirector export``)."""
        return export_branch(self.workspace, story_id, branch, out)

    def replay(self, story_id: str, branch: str = MAIN, *, backends: Any = None) -> ReplayReport:
        """Re-run a branch against its recording, no model called; identical or the first divergence.

        ``backends``, if given, are handed to the recorder and still never called (tests count on it).
        """
        from codirector.engine.director.direction import is_brief

        if branch == MAIN and is_brief(self.workspace, story_id):
            pulls = [b.name for b in self.store.story(story_id).branches if b.name != MAIN and not is_scratch(b.name)]
            raise RunStateError(
                f"{story_id!r} is an advertising brief: its main branch holds the director's decisions, not a run",
                hint="replay one of its branches: " + ", ".join(f"--branch {p}" for p in pulls[:4]),
            )
        return replay(self.workspace, story_id, branch, backends=backends)

    # -- the Co-Director, evaluation and benchmarks ----------------------------------------

    def direct(self, brief_file: str | os.PathLike[str], *, iterations: int = 4, profile: str | None = None,
               config: str | os.PathLike[str] | None = None, c: float = 50.0, seed: int | None = None,
               story_id: str | None = None, policy: str = "ucb", epsilon: float = 0.1, backends: Any = None,
               progress: Any = None) -> Any:
        """Explore creative directions for an ad brief, one branch per pull (``codirector direct``)."""
        from codirector.engine.director.direction import direct

        self._ensure_initialised()
        return direct(self.workspace, brief_file, iterations=iterations, profile=profile, config=config, c=c, seed=seed,
                      story_id=story_id, policy=policy, epsilon=epsilon, backends=backends, progress=progress)

    def evaluate(self, story_id: str, branch: str = MAIN, *, profile: str | None = None,
                 config: str | os.PathLike[str] | None = None, backends: Any = None, progress: Any = None
                 ) -> dict[str, Any]:
        """Judge a finished branch (shot and story judges) and measure consistency (``codirector eval``)."""
        from codirector.engine.evaluation.evaluate import evaluate

        return evaluate(self.workspace, story_id, branch, profile=profile, config=config, backends=backends,
                        progress=progress)

    def bench(self, stories_dir: str | os.PathLike[str], *, methods: Any = ("full", "no-memory", "no-synergy",
              "no-refine"), profile: str | None = None, config: str | os.PathLike[str] | None = None,
              backends: Any = None, out_dir: str | os.PathLike[str] | None = None, progress: Any = None) -> Any:
        """Every story under every method, evaluated: the paper's Table 1/2 layout (``codirector bench``)."""
        from codirector.engine.evaluation.bench import bench

        self._ensure_initialised()
        return bench(self.workspace, stories_dir, methods=methods, profile=profile, config=config, backends=backends,
                     out_dir=out_dir, progress=progress)

    def diff(self, story_id: str, a: str, b: str) -> dict[str, Any]:
        """Where two branches part and how their shots and memory differ (``codirector diff``)."""
        return diff_branches(self.workspace, story_id, a, b)

    def audit(self, story_id: str, branch: str = MAIN, *, html: str | os.PathLike[str] | None = None) -> dict[str, Any]:
        """Every continuity decision with its evidence (``codirector audit``); optionally an HTML report."""
        data = audit_events(self.store.read(story_id, branch), story_id=story_id, branch=branch)
        if html is not None:
            data["html"] = str(write_html(data, self.blobs, html))
        return data

    def demo(self, out_dir: str | os.PathLike[str] = "codirector-demo", *, config: Any = None, backends: Any = None,
             progress: Any = None) -> dict[str, Any]:
        """The offline showcase: run, branch, replay, and the pictures (``codirector demo``)."""
        from codirector.engine.demo import run_demo

        self._ensure_initialised()
        return run_demo(self.workspace, out_dir, home=str(self.home.root), config=config, backends=backends,
                        progress=progress)

    def backends(self, *, profile: str | None = None, config: str | os.PathLike[str] | None = None
                 ) -> list[dict[str, Any]]:
        """Registered backends, what each needs, and whether it can run here (``codirector backends``)."""
        from codirector.generators import registry
        from codirector.generators.profiles import resolve

        cfg = resolve(profile, config) if (profile or config) else None
        rows = []
        for b in registry.backends():
            options: dict[str, Any] = {}
            selected = False
            if cfg is not None:
                table = cfg.table(b.kind)
                if table.get("backend") == b.name:
                    selected = True
                    options = {k: v for k, v in table.items() if k != "backend"}
            ok, why = registry.usable(b.kind, b.name, options)
            rows.append({"kind": b.kind, "name": b.name, "summary": b.summary, "needs": b.needs,
                         "usable": ok, "status": why, "selected": selected})
        return rows

    def _ensure_initialised(self) -> None:
        """``run`` creates the home on first use (every other command needs an existing one)."""
        if self.home.is_sqlite and not Path(self.home.db_url.split("///", 1)[-1]).exists():
            self.init()

    # -- the vector index ---------------------------------------------------------------

    def index(self, story_id: str) -> VectorIndex:
        """The story's vector index, caught up with the log (and saved if it was behind)."""
        return self.workspace.index(story_id)

    def reindex(self, story_id: str | None = None) -> list[dict[str, Any]]:
        """Rebuild vector indexes from the log (every story, or one)."""
        ids = [story_id] if story_id is not None else [s.id for s in self.store.stories()]
        out = []
        for sid in ids:
            index, path = self.workspace.rebuild_index(sid)
            dropped = SnapshotCache(self.store).drop(sid)  # a cache too: rebuilt on the next reads
            out.append({"story": sid, "vectors": len(index), "dim": index.dim, "path": str(path),
                        "snapshots_dropped": dropped})
        return out

    def verify(self, story_id: str | None = None) -> VerifyReport:
        """Hash chain, blobs and vector index; ``report.ok`` is False on any damage."""
        if story_id is not None:
            self.store.story(story_id)
        report = verify(self.store, self.blobs, self.home.vectors_dir, story_id)
        for sid in [story_id] if story_id is not None else [s.id for s in self.store.stories()]:
            for branch, position in stale_snapshots(self.store, sid):
                report.problems.append(Problem(sid, branch, position, "snapshot",
                                               "cached memory snapshot differs from the log; run `codirector reindex`"))
        return report
