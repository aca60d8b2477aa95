"""``Studio``: the Python API. Every CLI command is a thin call into one method here.

    from codirector import Studio
    studio = Studio(home="./.codirector")          # or Studio() for CODIRECTOR_HOME / ./.codirector
    studio.memory("lighthouse", at_shot=5)         # MemoryBank
    studio.history("lighthouse", "Mia_red_scarf")  # EntityHistory; .to_json() is `codirector history --json`

Every method returns a typed value (``engine.results`` lists them), and each result's ``to_json()``
is exactly what the matching command prints with ``--json``.

A Studio is a thin facade: it resolves the home (database URL, blobs, vector-index cache), builds
one ``Workspace`` from it and hands that to the engine services, which never see the Studio. It holds
no state of its own beyond the workspace's open handles: everything it returns is computed from the log.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from codirector.engine.continuation import continue_branch
from codirector.engine.jobs import JobResult, WorkspaceSpec
from codirector.engine.loop.context import Progress
from codirector.engine.loop.replay import ReplayReport, replay
from codirector.engine.loop.rerun import Forgotten, forget_story
from codirector.engine.loop.runs import (
    NewBranch,
    RunResult,
    create_branch,
    is_scratch,
    refuse_brief_main,
    start_run,
)
from codirector.engine.maintenance import (
    GcReport,
    backends_report,
    collect_garbage,
    list_stories,
    reindex,
    verify_workspace,
)
from codirector.engine.recording.budget import spending
from codirector.engine.results import (
    BackendsReport,
    InitResult,
    ReindexResult,
    StoryListing,
)
from codirector.engine.views.audit import Audit, audit_events
from codirector.engine.views.cost import BY, CostReport, Spend, branch_cost
from codirector.engine.views.diff import BranchDiff, diff_branches
from codirector.engine.views.export import ExportResult, export_branch
from codirector.engine.views.history import EntityHistory, entity_history, history_event_types
from codirector.engine.views.memory import MemoryBank, MemoryReader, position_at_shot
from codirector.engine.views.report import write_html
from codirector.engine.workspace import Workspace
from codirector.errors import InvalidArgument, StoreError, did_you_mean
from codirector.events import RecordedEvent, event_types
from codirector.generators.base import Backends
from codirector.generators.preflight import Preflight, preflight, require_ready
from codirector.generators.prices import PriceTable
from codirector.generators.profiles import resolve
from codirector.store.blobs import open_blobs
from codirector.store.db import current_revision, head_revision, make_engine, upgrade
from codirector.store.event_store import MAIN, EventStore
from codirector.store.home import Home
from codirector.store.vector_index import (
    VectorIndex,
)
from codirector.store.verify import VerifyReport

if TYPE_CHECKING:
    from codirector.engine.demo import DemoSummary
    from codirector.engine.director.direction import DirectorResult
    from codirector.engine.evaluation.bench import BenchResult
    from codirector.engine.evaluation.evaluate import Evaluation
    from codirector.engine.jobs import Pool
    from codirector.engine.scale.batch import BatchResult, JobProgress


class Studio:
    """One codirector home: run, query, branch, replay, audit and verify stories."""

    def __init__(self, home: str | os.PathLike[str] | None = None, db: str | None = None,
                 blobs: str | os.PathLike[str] | None = None, cache: str | os.PathLike[str] | None = None) -> None:
        self.home = Home.resolve(home, db, blobs, cache)
        self._workspace: Workspace | None = None
        self.blobs = open_blobs(self.home.blobs)  # builds no client: remote stores connect on first use

    # -- lifecycle ----------------------------------------------------------------------

    def init(self) -> InitResult:
        """Create or upgrade the database and the home folders (what `codirector init` does)."""
        self.home.ensure()
        self.blobs.ensure()
        engine = make_engine(self.home.db_url)
        before = current_revision(engine)
        upgrade(engine)
        engine.dispose()
        return InitResult(home=str(self.home.root), database=self.home.describe_db(), blobs=self.blobs.describe(),
                          cache=str(self.home.cache), revision_before=before, revision=head_revision())

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
                                        cache_dir=self.home.cache)
        return self._workspace

    @property
    def store(self) -> EventStore:
        return self.workspace.store

    @property
    def spec(self) -> WorkspaceSpec:
        """The three storage values a worker on another process or machine opens this home with."""
        return WorkspaceSpec(self.home.db_url, self.home.blobs, str(self.home.cache))

    def close(self) -> None:
        if self._workspace is not None:
            self._workspace.close()
            self._workspace = None

    def __enter__(self) -> Studio:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- queries ------------------------------------------------------------------------

    def stories(self, *, include_replays: bool = False, include_forgotten: bool = False,
                story_id: str | None = None) -> StoryListing:
        """Every story with its branches, status and lease (``codirector stories``); ``story_id``: only that one."""
        return list_stories(self.workspace, include_replays=include_replays, include_forgotten=include_forgotten,
                            story_id=story_id)

    def log(
        self, story_id: str, branch: str = MAIN, *, types: list[str] | None = None, shot: int | None = None,
        after: int = 0, upto: int | None = None, limit: int | None = None,
    ) -> list[RecordedEvent]:
        """The events of a branch (its lineage included), optionally filtered."""
        if types:
            known = event_types()
            for t in types:
                if t not in known:
                    raise InvalidArgument(f"unknown event type {t!r}", hint=did_you_mean(t, known, "event type"))
        return self.store.read(story_id, branch, types=types, shot=shot, after=after, upto=upto, limit=limit)

    def memory(
        self, story_id: str, branch: str = MAIN, *, at_shot: int | None = None, at_position: int | None = None
    ) -> MemoryBank:
        """Entity memory as it stood: at a shot's keyframe, at a position, or now."""
        position = at_position
        if at_shot is not None:
            if at_shot < 1:
                raise InvalidArgument(f"--at-shot must be 1 or more (shots are numbered from 1), got {at_shot}")
            position = position_at_shot(self.store.read(story_id, branch, types=["KeyframeSelected"]), at_shot)
        return MemoryReader(self.store).at(story_id, branch, position)

    def history(self, story_id: str, entity: str, branch: str = MAIN) -> EntityHistory:
        """An entity's lineage and every event that touched it."""
        events = self.store.read(story_id, branch, types=history_event_types())
        return entity_history(events, entity, story_id=story_id, branch=branch)

    # -- runs -----------------------------------------------------------------------------

    def run(
        self, story_file: str | os.PathLike[str], *, profile: str | None = None,
        config: str | os.PathLike[str] | None = None, seed: int | None = None, max_rounds: int | None = None,
        story_id: str | None = None, no_memory: bool = False, no_synergy: bool = False, no_refine: bool = False,
        backends: Backends | None = None, progress: Progress | None = None, story_format: str | None = None,
        wait: float | None = None, budget: float | None = None,
    ) -> RunResult:
        """Start a story from a file (any known format; ``story_format`` names one) and run it (``codirector run``).

        ``budget``: USD the run may spend (``--budget``), at the prices of ``config``'s ``[prices]`` and the built-ins.
        """
        self._ensure_initialised()
        return start_run(self.workspace, story_file, profile=profile, config=config, seed=seed, max_rounds=max_rounds,
                         story_id=story_id, backends=backends, progress=progress, story_format=story_format,
                         ablations={"no_memory": no_memory, "no_synergy": no_synergy, "no_refine": no_refine},
                         wait=wait, budget=spending(budget, config))

    def resume(self, story_id: str, branch: str = MAIN, *, backends: Backends | None = None,
               progress: Progress | None = None, wait: float | None = None, budget: float | None = None,
               prices: str | os.PathLike[str] | None = None) -> RunResult | DirectorResult:
        """Continue an interrupted run (or director); recorded calls come from the log (``codirector resume``).

        The branch's lease is held while it runs: another runner gets ``BranchBusy`` (``wait``: seconds to wait).
        ``budget`` caps the branch's spending (a brief's: all of it), at ``prices`` (a TOML file's ``[prices]``).
        """
        meter = spending(budget, prices)
        done = continue_branch(self.workspace, story_id, branch, backends=backends, progress=progress, wait=wait,
                               budget=meter)
        if isinstance(done.result, RunResult):
            return done.result
        return replace(done.result, spend=self._spend(story_id, meter.prices))

    def run_branch(self, story_id: str, branch: str, *, backends: Backends | None = None,
                   progress: Progress | None = None, wait: float | None = None, budget: float | None = None,
                   prices: str | os.PathLike[str] | None = None) -> RunResult:
        """Run a branch from its fork (``codirector run --story S --branch B``)."""
        if branch == MAIN:
            raise InvalidArgument("`run --story` continues a branch; the main branch is continued by `resume`",
                                  hint=f"codirector resume {story_id}")
        done = continue_branch(self.workspace, story_id, branch, backends=backends, progress=progress, wait=wait,
                               budget=spending(budget, prices))
        assert isinstance(done.result, RunResult)  # only a brief's main is directed, and that is refused above
        return done.result

    def forget(self, story_id: str) -> Forgotten:
        """Hide a story that completed no shot from listings; its log stays (``codirector forget``)."""
        return forget_story(self.workspace, story_id)

    def branch(self, story_id: str, *, from_shot: int, name: str, parent: str = MAIN,
               overrides: dict[str, str] | None = None) -> NewBranch:
        """Fork a branch just before ``from_shot`` with optional prompt overrides (``codirector branch``)."""
        return create_branch(self.workspace, story_id, from_shot=from_shot, name=name, parent=parent,
                             overrides=overrides)

    def export(self, story_id: str, out: str | os.PathLike[str], branch: str = MAIN) -> ExportResult:
        """Assemble the branch's clips into one MP4 (``codirector export``)."""
        return export_branch(self.workspace, story_id, branch, out)

    def replay(self, story_id: str, branch: str = MAIN, *, backends: Backends | None = None) -> ReplayReport:
        """Re-run a branch against its recording, no model called; identical or the first divergence.

        ``backends``, if given, are handed to the recorder and still never called (tests count on it).
        """
        refuse_brief_main(self.workspace, story_id, branch, action="replay")
        return replay(self.workspace, story_id, branch, backends=backends)

    # -- the Co-Director, evaluation and benchmarks ----------------------------------------

    def direct(self, brief_file: str | os.PathLike[str], *, iterations: int = 4, profile: str | None = None,
               config: str | os.PathLike[str] | None = None, c: float = 50.0, seed: int | None = None,
               story_id: str | None = None, policy: str = "ucb", epsilon: float = 0.1,
               backends: Backends | None = None, progress: Progress | None = None,
               budget: float | None = None, parallel: int = 1, workers: int | None = None,
               ray: str | None = None, gpus_per_worker: float = 0.0,
               concurrency: int | None = None) -> DirectorResult:
        """Explore creative directions for an ad brief, one branch per pull (``codirector direct``);
        ``parallel`` pulls per round, run on Ray workers with ``workers``/``ray`` (docs/architecture.md §10), or on
        ``concurrency`` threads of this process (hosted models). ``budget``
        caps the whole brief, on workers too (one account for the pool: ``engine.scale.ray_pool``)."""
        from codirector.engine.director.direction import direct
        from codirector.engine.scale import ray_pool_or_none

        if backends is None:  # pre-flight before the brief's story is created
            require_ready(resolve(profile, config))
        self._ensure_initialised()
        meter = spending(budget, config)
        with ray_pool_or_none(self.spec, workers=workers, address=ray, gpus_per_worker=gpus_per_worker,
                              budget=meter, concurrency=concurrency) as pool:
            result = direct(self.workspace, brief_file, iterations=iterations, profile=profile, config=config, c=c,
                            seed=seed, story_id=story_id, policy=policy, epsilon=epsilon, backends=backends,
                            progress=progress, budget=meter, parallel=parallel, pool=pool)
        return replace(result, spend=self._spend(result.story_id, meter.prices))

    def evaluate(self, story_id: str, branch: str = MAIN, *, profile: str | None = None,
                 config: str | os.PathLike[str] | None = None, backends: Backends | None = None,
                 progress: Progress | None = None) -> Evaluation:
        """Judge a finished branch (shot and story judges) and measure consistency (``codirector eval``)."""
        from codirector.engine.evaluation.evaluate import evaluate

        return evaluate(self.workspace, story_id, branch, profile=profile, config=config, backends=backends,
                        progress=progress)

    def bench(self, stories_dir: str | os.PathLike[str], *,
              methods: Sequence[str] = ("full", "no-memory", "no-synergy", "no-refine"), profile: str | None = None,
              config: str | os.PathLike[str] | None = None, backends: Backends | None = None,
              out_dir: str | os.PathLike[str] | None = None, progress: Progress | None = None,
              story_format: str | None = None, budget: float | None = None, workers: int | None = None,
              ray: str | None = None, gpus_per_worker: float = 0.0, concurrency: int | None = None) -> BenchResult:
        """Every story under every method, evaluated: the paper's Table 1/2 layout (``codirector bench``);
        with ``workers``/``ray`` the runs and judgements are jobs on Ray workers (the same table); ``budget``
        caps the whole bench either way."""
        from codirector.engine.evaluation.bench import bench
        from codirector.engine.scale import ray_pool_or_none

        self._ensure_initialised()
        meter = spending(budget, config)
        with ray_pool_or_none(self.spec, workers=workers, address=ray, gpus_per_worker=gpus_per_worker,
                              budget=meter, concurrency=concurrency) as pool:
            return bench(self.workspace, stories_dir, methods=methods, profile=profile, config=config,
                         backends=backends, out_dir=out_dir, progress=progress, story_format=story_format,
                         budget=meter, pool=pool)

    def batch(self, paths: Sequence[str | os.PathLike[str]], *, profile: str | None = None,
              config: str | os.PathLike[str] | None = None, seed: int | None = None, max_rounds: int | None = None,
              prefix: str | None = None, story_format: str | None = None, budget: float | None = None,
              workers: int | None = None, ray: str | None = None, gpus_per_worker: float = 0.0,
              backends: Backends | None = None, on_result: Callable[[JobResult], None] | None = None,
              on_progress: Callable[[JobProgress], None] | None = None,
              concurrency: int | None = None) -> BatchResult:
        """Every story and brief under ``paths``, one job each (``codirector batch``): in this process one
        after another, ``concurrency`` at once on threads of this process (hosted models), or on Ray workers
        with ``workers``/``ray`` (started only if some story is unfinished); ``budget`` caps each story;
        ``on_progress``: each running job's shot and stage."""
        from codirector.engine.scale import check_concurrency, check_pool, open_pool
        from codirector.engine.scale.batch import collect, run_batch

        items = collect(paths, prefix=prefix, story_format=story_format)  # every file checked before any write
        check_concurrency(concurrency, workers, ray, backends=backends)
        check_pool(self.spec, workers=workers, address=ray, gpus_per_worker=gpus_per_worker)
        self._ensure_initialised()

        def pool() -> Pool:
            return open_pool(self.spec, ws=self.workspace, workers=workers, address=ray,
                             gpus_per_worker=gpus_per_worker, backends=backends, concurrency=concurrency)

        result = run_batch(self.workspace, items, pool, profile=profile, config=config, seed=seed,
                           max_rounds=max_rounds, story_format=story_format, budget_usd=budget,
                           on_result=on_result, on_progress=on_progress)
        table = PriceTable.from_file(config)  # the run config's [prices] over the built-ins
        known = {s.id for s in self.store.stories()}
        for sid in dict.fromkeys(row.story_id for row in result.rows if row.story_id in known):
            spend = self._spend(sid, table)  # every branch of the story: a brief's pulls included
            result.cost.usd[sid] = spend.total_usd
            if spend.unpriced:
                result.cost.unpriced[sid] = sorted({m for models in spend.unpriced.values() for m in models})
        return result

    def cost(self, story_id: str, branch: str = MAIN, *, by: str = "shot",
             prices: str | os.PathLike[str] | PriceTable | None = None,
             events: Sequence[RecordedEvent] | None = None) -> CostReport:
        """What the branch spent, what its shared prefix cost the parent, what the recording saved (``codirector
        cost``); at the built-in prices and a TOML file's ``[prices]`` (the table in force now, never recorded).

        ``events``: the branch's events (its lineage included) when the caller has read them already (an audit,
        a comparison); only their ``ModelCalled`` are priced, so any wider read gives the same report."""
        if by not in BY:
            raise InvalidArgument(f"--by must be one of {', '.join(BY)}, got {by!r}", hint=did_you_mean(by, BY, "key"))
        table = prices if isinstance(prices, PriceTable) else PriceTable.from_file(prices)
        if events is None:
            events = self.store.read(story_id, branch, types=["ModelCalled"])  # all that the cost projection reads
        return branch_cost(events, story_id=story_id, branch=branch, prices=table, by=by,
                           served_from_recording=is_scratch(branch))

    def _spend(self, story_id: str, prices: PriceTable) -> Spend:
        """USD per branch of a story (replays aside): a brief's main and its pulls."""
        spend = Spend()
        for b in self.store.story(story_id).branches:
            if not is_scratch(b.name):
                spend.add(b.name, self.cost(story_id, b.name, prices=prices))
        return spend

    def diff(self, story_id: str, a: str, b: str) -> BranchDiff:
        """Where two branches part and how their shots and memory differ (``codirector diff``)."""
        return diff_branches(self.workspace, story_id, a, b)

    def audit(self, story_id: str, branch: str = MAIN, *, html: str | os.PathLike[str] | None = None,
              prices: str | os.PathLike[str] | None = None) -> Audit:
        """Every continuity decision with its evidence (``codirector audit``); optionally an HTML report.
        One read of the branch: its cost is priced from the same events the audit folds."""
        events = self.store.read(story_id, branch)
        audit = audit_events(events, story_id=story_id, branch=branch)
        audit = replace(audit, cost=self.cost(story_id, branch, prices=prices, events=events))
        if html is not None:
            audit = replace(audit, html=str(write_html(audit, self.blobs, html)))
        return audit

    def demo(self, out_dir: str | os.PathLike[str] = "codirector-demo", *,
             config: str | os.PathLike[str] | None = None, backends: Backends | None = None,
             progress: Progress | None = None) -> DemoSummary:
        """The offline showcase: run, branch, replay, and the pictures (``codirector demo``)."""
        from codirector.engine.demo import run_demo

        self._ensure_initialised()
        return run_demo(self.workspace, out_dir, home=str(self.home.root), config=config, backends=backends,
                        progress=progress)

    def backends(self, *, profile: str | None = None, config: str | os.PathLike[str] | None = None
                 ) -> BackendsReport:
        """Registered backends, what each needs, and whether it can run here (``codirector backends``)."""
        return backends_report(profile, config)

    def preflight(self, *, profile: str | None = None, config: str | os.PathLike[str] | None = None) -> Preflight:
        """Whether every backend of a profile/config can run here, with each fix (``codirector backends --check``)."""
        return preflight(resolve(profile, config))

    def _ensure_initialised(self) -> None:
        """``run`` creates the home on first use (every other command needs an existing one)."""
        if self.home.is_sqlite and not Path(self.home.db_url.split("///", 1)[-1]).exists():
            self.init()

    # -- the vector index ---------------------------------------------------------------

    def index(self, story_id: str) -> VectorIndex:
        """The story's vector index, caught up with the log (and saved if it was behind)."""
        return self.workspace.index(story_id)

    def reindex(self, story_id: str | None = None) -> ReindexResult:
        """Rebuild vector indexes from the log (every story, or one)."""
        return reindex(self.workspace, story_id)

    def verify(self, story_id: str | None = None) -> VerifyReport:
        """Hash chain, blobs and vector index; ``report.ok`` is False on any damage."""
        return verify_workspace(self.workspace, story_id)

    def gc(self, *, delete: bool = False, min_age: float | None = None) -> GcReport:
        """Blobs no event names, older than ``min_age`` s (default an hour): listed, or removed with ``delete``."""
        return collect_garbage(self.workspace, delete=delete, min_age=min_age)
