"""A run whose appends lose their COMMIT acknowledgement (the proxy in front of PostgreSQL passes the COMMIT to the
server and drops the connection before the answer comes back): each such append is resolved by reading the branch,
so the run completes with the log of an uninterrupted run, every call asked as often as there, and verify passes."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from scale.helpers import counting_config, story_log

from codirector.engine.studio import Studio
from codirector.store.event_store import EventStore

from support import write_story
from tcp_proxy import TcpProxy

pytestmark = [pytest.mark.slow, pytest.mark.postgres]
EVERY = 3  # every third append of the run loses its acknowledgement


@pytest.fixture
def proxied(pg_url: str) -> Iterator[tuple[TcpProxy, str]]:
    port = urlsplit(pg_url).port
    assert port is not None
    proxy = TcpProxy("127.0.0.1", port)
    yield proxy, pg_url.replace(f":{port}/", f":{proxy.port}/")
    proxy.close()


def test_a_run_whose_commit_acknowledgements_are_lost_logs_what_an_uninterrupted_run_logs(
        tmp_path: Path, counting_env: Path, proxied: tuple[TcpProxy, str], monkeypatch: pytest.MonkeyPatch) -> None:
    proxy, url = proxied
    monkeypatch.setenv("CODIRECTOR_LEASE_TTL", "60")  # no heartbeat COMMIT during the run to take the cut
    monkeypatch.setenv("CODIRECTOR_DB_RETRY_SECONDS", "10")
    story = write_story(tmp_path / "pier.yaml", shots=3)
    cfg = counting_config(tmp_path / "c.toml")

    with monkeypatch.context() as m:  # the reference: the same run, uninterrupted, with its own call log
        m.setenv("CODIRECTOR_TEST_CALL_LOG", str(tmp_path / "solo-calls.log"))
        solo = Studio(tmp_path / "solo")
        solo.run(story, config=cfg)
        reference = story_log(solo, "pier")
        solo.close()
    asked_once = Counter((tmp_path / "solo-calls.log").read_text().splitlines())

    real_append = EventStore.append
    appends: list[int] = []

    def lossy(self: EventStore, *args: Any, **kwargs: Any) -> Any:
        appends.append(1)
        if len(appends) % EVERY or self.engine.url.port != proxy.port:
            return real_append(self, *args, **kwargs)
        before = proxy.cuts
        proxy.cut_after(b"COMMIT")
        written = real_append(self, *args, **kwargs)
        assert proxy.cuts == before + 1, "the cut did not land on this append's COMMIT"
        return written

    monkeypatch.setattr(EventStore, "append", lossy)
    studio = Studio(tmp_path / "home", db=url)
    studio.init()
    result = studio.run(story, config=cfg)
    assert result is not None
    assert proxy.cuts >= 5 and proxy.cuts == len(appends) // EVERY  # every third append lost its acknowledgement
    assert story_log(studio, "pier") == reference  # neither lost nor doubled: the uninterrupted run's log
    events = studio.log("pier")
    assert [e.position for e in events] == list(range(1, len(events) + 1))
    assert Counter(counting_env.read_text().splitlines()) == asked_once  # no call asked again
    report = studio.verify()
    assert report.ok, [p.line() for p in report.problems]
    studio.close()
    print(f"\n{proxy.cuts} of {len(appends)} appends lost their COMMIT acknowledgement; the log equals the "
          f"uninterrupted run's ({len(events)} events)")


def test_past_the_bound_the_run_exits_6_and_resume_continues(
        tmp_path: Path, counting_env: Path, proxied: tuple[TcpProxy, str], monkeypatch: pytest.MonkeyPatch) -> None:
    """The database goes away for good in the middle of `codirector run`: past CODIRECTOR_DB_RETRY_SECONDS the run
    stops with exit 6 and a message saying what happened; once it is back, `codirector resume` completes the story
    with the uninterrupted run's log, asking again at most the one call whose answer could not be recorded."""
    from typer.testing import CliRunner

    from codirector.cli import app

    from support import free_port

    proxy, url = proxied
    monkeypatch.setenv("CODIRECTOR_DB_RETRY_SECONDS", "1")
    story = write_story(tmp_path / "pier.yaml", shots=3)
    cfg = counting_config(tmp_path / "c.toml")
    with monkeypatch.context() as m:
        m.setenv("CODIRECTOR_TEST_CALL_LOG", str(tmp_path / "solo-calls.log"))
        solo = Studio(tmp_path / "solo")
        solo.run(story, config=cfg)
        reference = story_log(solo, "pier")
        solo.close()
    asked_once = Counter((tmp_path / "solo-calls.log").read_text().splitlines())

    real_append, upstream = EventStore.append, proxy.upstream
    appends: list[int] = []

    def server_gone_at_the_20th(self: EventStore, *args: Any, **kwargs: Any) -> Any:
        appends.append(1)
        if len(appends) == 20:
            proxy.upstream = ("127.0.0.1", free_port())  # from now on nothing answers through the proxy
            proxy.drop_all()
        return real_append(self, *args, **kwargs)

    runner = CliRunner()
    h = ["--db", url, "--home", str(tmp_path / "home")]
    assert runner.invoke(app, [*h, "init"]).exit_code == 0
    with monkeypatch.context() as m:
        m.setattr(EventStore, "append", server_gone_at_the_20th)
        stopped = runner.invoke(app, [*h, "run", str(story), "--config", str(cfg)])
    assert stopped.exit_code == 6, stopped.output
    assert "still unreachable after" in stopped.output and "codirector resume" in stopped.output
    assert "Traceback" not in stopped.output

    proxy.upstream = upstream  # the database is back
    resumed = runner.invoke(app, [*h, "resume", "pier"])
    assert resumed.exit_code == 0, resumed.output
    studio = Studio(tmp_path / "home", db=url)
    assert story_log(studio, "pier") == reference
    asked = Counter(counting_env.read_text().splitlines())
    assert set(asked) == set(asked_once) and sum(asked.values()) - sum(asked_once.values()) <= 1
    assert studio.verify().ok
    studio.close()
