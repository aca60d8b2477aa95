"""Two OS processes appending to one branch at once never lose or duplicate an event."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from codirector.events import StoryCreated
from codirector.store.blobs import LocalBlobStore
from codirector.store.event_store import EventStore
from codirector.store.verify import verify

WRITER = textwrap.dedent(
    """
    import sys
    from codirector.errors import VersionConflict
    from codirector.events import ShotStarted
    from codirector.store.event_store import EventStore

    url, tag, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
    store = EventStore.open(url)
    conflicts = 0
    for i in range(n):
        while True:
            head = store.head("race")
            try:
                store.append("race", "main", [ShotStarted(keyframe_prompt=f"{tag}-{i}", motion_prompt=tag).at()],
                             expected_position=head)
                break
            except VersionConflict:
                conflicts += 1
    print(conflicts)
    """
)


def race(url: str, tmp_path, n: int = 1000) -> None:  # type: ignore[no-untyped-def]
    store = EventStore.open(url, create=True)
    store.create_story("race", events=[StoryCreated(title="race", seed=0).at()])
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, url, tag, str(n)], stdout=subprocess.PIPE, text=True)
             for tag in ("a", "b")]
    outs = [p.communicate(timeout=600)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0]
    conflicts = [int(o.strip()) for o in outs]

    events = store.read("race")
    assert len(events) == 1 + 2 * n
    assert [e.position for e in events] == list(range(1, 2 * n + 2))
    prompts = [e.payload["keyframe_prompt"] for e in events[1:]]
    assert sorted(prompts) == sorted([f"a-{i}" for i in range(n)] + [f"b-{i}" for i in range(n)])
    for tag in "ab":  # each writer's own events stay in its order
        mine = [p for p in prompts if p.startswith(tag + "-")]
        assert mine == [f"{tag}-{i}" for i in range(n)]
    report = verify(store, LocalBlobStore(tmp_path / "blobs"), tmp_path / "vectors", "race")
    assert report.ok, [p.line() for p in report.problems]
    assert report.events == 1 + 2 * n
    print(f"conflicts retried: {conflicts}")
    store.close()


@pytest.mark.slow  # two writer processes, each paying the interpreter start-up: not the fast lane
def test_two_processes_on_sqlite(sqlite_url: str, tmp_path) -> None:  # type: ignore[no-untyped-def]
    race(sqlite_url, tmp_path)


@pytest.mark.slow
def test_two_processes_on_postgres(pg_url: str, tmp_path) -> None:  # type: ignore[no-untyped-def]
    race(pg_url, tmp_path)
