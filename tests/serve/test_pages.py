"""Every page of the studio over real HTTP: it shows what the Studio API returns for the same query."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from html import unescape

import pytest
from typer.testing import CliRunner

from codirector.cli import app
from codirector.serve.pages import SHOTS_PER_PAGE

runner = CliRunner()


def get(url: str, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=30) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


def attrs(html: str, name: str) -> list[str]:
    return [unescape(v) for v in re.findall(rf'{name}="([^"]*)"', html)]


def page(served, path: str) -> str:  # type: ignore[no-untyped-def]
    status, headers, body = get(served.url + path)
    assert status == 200, body[:2000]
    assert "script-src 'self'" in headers["content-security-policy"]
    return body.decode()


def test_stories_page_lists_every_story_with_its_branch_tree(served) -> None:  # type: ignore[no-untyped-def]
    html = page(served, "/")
    assert attrs(html, "data-story")[:2] == ["dewline", "lighthouse"]  # newest first
    listing = served.studio.stories()
    for story in listing:
        for b in story.branches:
            assert f'data-branch="{b.name}"' in html
    assert 'data-kind="brief"' in html and 'data-kind="story"' in html
    storm = re.search(r'<tr data-branch="storm"[^>]*>(.*?)</tr>', html, re.S)
    assert storm and "from main at shot 5" in storm.group(1) and 'data-status="complete"' in storm.group(0)
    assert 'class="fork"' in storm.group(1)  # drawn under its parent


def test_timeline_shows_every_shot_with_its_evidence(served) -> None:  # type: ignore[no-untyped-def]
    html = page(served, "/timeline?story=lighthouse&branch=main")
    audit = served.studio.audit("lighthouse")
    assert attrs(html, "data-shot") == [str(s.shot) for s in audit.shots]
    assert attrs(html, "data-state") == ["complete"] * 8
    for s in audit.shots:
        assert s.selected is not None and s.video is not None
        assert f"/thumb/{s.selected.blob}?w=320" in html
        assert f'src="/blob/{s.video.blob}"' in html
        for r in s.rounds:
            assert f"/thumb/{r.blob}?w=160" in html
    assert attrs(html, "data-decision").count("accept") == sum(len(s.rounds) for s in audit.shots)
    scarf = re.search(r'data-entity="Mia_red_scarf">.*?</figure>', html, re.S)
    # the scarf enters memory at shot 4 with that shot's selected keyframe as its view
    assert scarf and "Mia_red_scarf (from Mia)" in scarf.group(0) and "selected keyframe" in scarf.group(0)
    shot4 = html[html.index('data-shot="4"'):html.index('data-shot="5"')]
    assert 'data-entity="Mia_red_scarf"' in shot4


def test_timeline_weight_is_bounded(served) -> None:  # type: ignore[no-untyped-def]
    """Thumbnails only, every image lazy, no clip fetched before it is played, shots paged."""
    html = page(served, "/timeline?story=lighthouse&branch=main")
    imgs = re.findall(r"<img [^>]*>", html)
    assert imgs and all('loading="lazy"' in i and "/thumb/" in i for i in imgs)
    videos = re.findall(r"<video [^>]*>", html)
    assert len(videos) == 8 and all('preload="none"' in v for v in videos)
    assert "/blob/" not in html.replace('src="/blob/', "")  # full blobs only as clip sources
    assert SHOTS_PER_PAGE <= 25
    status, _, body = get(served.url + "/timeline?story=lighthouse&branch=main&page=2")
    assert status == 400 and b"page must be between 1 and 1" in body


def test_shot_page_shows_the_retrieval(served) -> None:  # type: ignore[no-untyped-def]
    html = page(served, "/shot?story=lighthouse&branch=main&shot=4")
    shot = served.studio.audit("lighthouse").shot(4)
    r = shot.retrievals[0]
    assert attrs(html, "data-candidate") == [c.entity for c in r.candidates]
    assert attrs(html, "data-reference") == [x.entity for x in r.references]
    assert "the VLM reused:</b> " + ", ".join(r.retrieved_existing) in html
    assert 'name="keyframe.4"' in html and 'name="motion.8"' in html and 'name="keyframe.3"' not in html


def test_a_shot_page_is_that_shot_of_the_audit(served) -> None:  # type: ignore[no-untyped-def]
    """The shot page folds only the shot's own events; it must equal the whole branch's audit of it."""
    from codirector.serve.pages import shot_page

    for branch in ("main", "storm"):
        audit = served.studio.audit("lighthouse", branch)
        for s in audit.shots:
            assert shot_page(served.studio, "lighthouse", branch, s.shot).shot == s, (branch, s.shot)


def test_memory_page_is_memory_at_shot(served) -> None:  # type: ignore[no-untyped-def]
    for shot in (2, 5, 8):
        html = page(served, f"/memory?story=lighthouse&branch=main&shot={shot}")
        bank = served.studio.memory("lighthouse", at_shot=shot)
        gallery = html.split('class="gallery"', 1)[1]
        assert attrs(gallery, "data-entity") == bank.names()
        assert f'data-memory-position="{bank.position}"' in html
    html = page(served, "/memory?story=lighthouse&branch=main&shot=8")
    assert re.search(r'class="link" data-from="Mia" data-to="Mia_red_scarf"', html)
    assert re.search(r'class="link" data-from="Mia_red_scarf" data-to="Mia_red_scarf_back"', html)
    scarf = served.studio.memory("lighthouse", at_shot=8).get("Mia_red_scarf")
    card = re.search(r'<article class="entity" data-entity="Mia_red_scarf">.*?</article>', html, re.S)
    shown = card.group(0).split('title="', 1)[1].split('">', 1)[1] if card else ""
    assert len(scarf.description) > 220 and "…" in shown  # shortened, and says so
    assert "red scarf wound twice around her neck" in shown  # the end, where it differs from Mia, is kept (#25)
    html = page(served, "/memory?story=lighthouse&branch=main&position=30")
    assert attrs(html.split('class="gallery"', 1)[1], "data-entity") == served.studio.memory(
        "lighthouse", at_position=30).names()


def test_entity_compare_and_director_pages(served) -> None:  # type: ignore[no-untyped-def]
    html = page(served, "/entity?story=lighthouse&branch=main&name=Mia_red_scarf_back")
    assert 'data-chain="Mia &gt; Mia_red_scarf &gt; Mia_red_scarf_back"' in html
    html = page(served, "/compare?story=lighthouse&a=main&b=storm")
    diff = served.studio.diff("lighthouse", "main", "storm")
    assert f'data-first-differing="{diff.first_differing_shot}"' in html
    assert f'data-parted="{diff.parted_at_position}"' in html
    assert attrs(html, "data-shot") == [str(s.shot) for s in diff.shots if s.shot >= diff.first_differing_shot]
    html = page(served, "/director?story=dewline")
    ranked = served.studio.log("dewline", types=["BranchRanked"])[-1].payload
    assert f'data-best="{ranked["best_branch"]}"' in html
    assert attrs(html, "data-iteration") == ["1", "2"]
    assert attrs(html, "data-dimension") == ["strategy", "narrative_mode", "aesthetic"]
    status, _, _ = get(served.url + "/story?id=dewline")
    assert status == 200  # redirected to the director view


def test_errors_name_the_thing_and_the_fix(served) -> None:  # type: ignore[no-untyped-def]
    status, _, body = get(served.url + "/timeline?story=lighthouse-x&branch=main")
    assert status == 404 and b"no story &#39;lighthouse-x&#39;" in body and b"lighthouse" in body
    status, _, body = get(served.url + "/timeline?story=lighthouse&branch=strom")
    assert status == 404 and b"storm" in body
    status, _, body = get(served.url + "/shot?story=lighthouse&branch=main&shot=nine")
    assert status == 400
    status, _, body = get(served.url + "/director?story=lighthouse")
    assert status == 400 and b"not an advertising brief" in body


def test_media_by_digest_with_ranges_and_thumbnails(served) -> None:  # type: ignore[no-untyped-def]
    shot = served.studio.audit("lighthouse").shot(1)
    status, headers, body = get(f"{served.url}/blob/{shot.selected.blob}")
    assert status == 200 and headers["content-type"] == "image/png" and "immutable" in headers["cache-control"]
    status, headers, clip = get(f"{served.url}/blob/{shot.video.blob}", {"Range": "bytes=0-99"})
    assert status == 206 and len(clip) == 100 and clip[4:8] == b"ftyp" and headers["content-type"] == "video/mp4"
    status, headers, thumb = get(f"{served.url}/thumb/{shot.selected.blob}?w=96")
    assert status == 200 and thumb[:3] == b"\xff\xd8\xff" and len(thumb) < len(body)
    view = served.studio.memory("lighthouse").get("Mia").views[0]
    assert get(f"{served.url}/thumb/{shot.video.blob}")[0] == 404  # a clip has no thumbnail
    ref = served.studio.log("lighthouse", types=["EntityRegistered"])[0].payload["text_embedding"]["blob"]
    assert get(f"{served.url}/blob/{ref}")[0] == 404  # not media: not served
    assert get(f"{served.url}/blob/{view.blob}")[0] == 200


def test_serve_is_listed_in_the_help() -> None:
    assert "serve" in runner.invoke(app, ["--help"]).output


def test_query_commands_never_import_the_web_stack() -> None:
    code = ("import sys, codirector.cli; bad = [m for m in ('fastapi', 'uvicorn', 'jinja2', 'starlette') "
            "if m in sys.modules]; print(bad)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_codirector_serve_runs_and_stops_on_ctrl_c(studio_home, codirector_serve) -> None:  # type: ignore[no-untyped-def]
    with codirector_serve(str(studio_home.root)) as serving:
        port, proc = serving.port, serving.proc
        status, _, body = get(f"http://127.0.0.1:{port}/")
        assert status == 200 and b'data-story="lighthouse"' in body
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=30)
        assert proc.returncode == 0, out
        assert "studio stopped" in out


def test_codirector_serve_on_an_open_address_needs_the_token(studio_home, codirector_serve) -> None:  # type: ignore[no-untyped-def]
    """``--host 0.0.0.0 --token T``: reached here over loopback only, a request without the token is 401."""
    token = "t0ken-for-the-test"
    with codirector_serve(str(studio_home.root), "--host", "0.0.0.0", "--token", token) as serving:
        assert serving.line.rstrip().endswith(f"http://0.0.0.0:{serving.port}/?token={token}"), serving.line
        base = f"http://127.0.0.1:{serving.port}"
        for path in ("/", "/timeline?story=lighthouse", "/blob/" + "0" * 64):
            status, _, body = get(base + path)
            assert status == 401 and b"token" in body, path
        status, _, body = get(base + "/", {"Authorization": f"Bearer {token}"})
        assert status == 200 and b'data-story="lighthouse"' in body
        serving.proc.send_signal(signal.SIGINT)
        serving.proc.communicate(timeout=30)


@pytest.mark.slow  # two `codirector serve` processes, one after the other: not the fast lane
def test_an_open_address_without_a_token_gets_one_generated(studio_home, codirector_serve) -> None:  # type: ignore[no-untyped-def]
    """``--host 0.0.0.0`` alone: a fresh token, printed once in the address (as Jupyter does), is required."""
    tokens = []
    for _ in range(2):
        with codirector_serve(str(studio_home.root), "--host", "0.0.0.0") as serving:
            found = re.search(rf"http://0\.0\.0\.0:{serving.port}/\?token=([A-Za-z0-9_-]+)\s*$", serving.line)
            assert found and len(found.group(1)) >= 32, serving.line
            token = found.group(1)
            base = f"http://127.0.0.1:{serving.port}"
            assert get(base + "/")[0] == 401
            assert get(base + "/", {"Authorization": "Bearer t0ken-for-the-test"})[0] == 401
            status, _, body = get(base + "/", {"Authorization": f"Bearer {token}"})
            assert status == 200 and b'data-story="lighthouse"' in body
            serving.proc.send_signal(signal.SIGINT)
            out, _ = serving.proc.communicate(timeout=30)
            assert token not in out  # printed once, in the address only
            tokens.append(token)
    assert tokens[0] != tokens[1]


@pytest.mark.slow  # two `codirector serve` processes, one after the other: not the fast lane
def test_an_ipv6_address_is_printed_with_one_pair_of_brackets(studio_home, codirector_serve) -> None:  # type: ignore[no-untyped-def]
    for host in ("[::1]", "::1"):
        with codirector_serve(str(studio_home.root), "--host", host) as serving:
            assert f"http://[::1]:{serving.port}/" in serving.line and "[[" not in serving.line, serving.line
            status, _, body = get(f"http://[::1]:{serving.port}/")
            assert status == 200 and b'data-story="lighthouse"' in body


def test_live_stream_reports_the_log(served) -> None:  # type: ignore[no-untyped-def]
    """The branch stream sends the head and completion read from the log, then ``done``."""
    with urllib.request.urlopen(f"{served.url}/live/branch?story=lighthouse&branch=storm", timeout=30) as r:
        assert r.headers["content-type"].startswith("text/event-stream")
        text = r.read().decode()  # a complete branch: one progress event, then done, then the stream ends
    events = re.findall(r"event: (\w+)\ndata: (.*)\n", text)
    assert [e for e, _ in events] == ["progress", "done"]
    data = json.loads(events[0][1])
    assert data["head"] == served.studio.store.branch("lighthouse", "storm").head_position
    assert data["completed"] is True and data["shots_completed"] == 8 and data["running"] is False


def test_the_demo_ends_by_pointing_at_the_studio(capsys) -> None:  # type: ignore[no-untyped-def]
    from codirector.commands.director import print_demo
    from codirector.engine.demo import DemoBranch, DemoSummary
    from codirector.engine.loop.replay import ReplayReport

    summary = DemoSummary("lighthouse-demo", "h", "codirector-demo", 8, 159, 68, 29, ["Mia"], [],
                          DemoBranch("storm", 5, 92, 5),
                          ReplayReport("lighthouse-demo", "main", "replay~1", True, 158, 0, True, 0.2),
                          seconds={"total": 12.0})
    print_demo(summary, "h")
    lines = capsys.readouterr().out.rstrip().splitlines()
    assert lines[-2].strip() == "codirector --home h serve"
    assert 'pip install "codirector[serve]"' in lines[-1]


def test_run_from_the_page_waits_for_a_lease_held_elsewhere(served) -> None:  # type: ignore[no-untyped-def]
    """``Run`` is the CLI's ``run --story S --branch B`` in the server's worker; a live lease (here: ours,
    as a CLI process would hold it) refuses it with the holder named, and nothing is queued."""
    studio = served.studio
    studio.branch("lighthouse", from_shot=7, name="run-button", overrides={"shots.7.keyframe": "Tom sleeps"})
    form = "story=lighthouse&branch=run-button"
    post = urllib.request.Request(served.url + "/action/run", data=form.encode(), method="POST",
                                  headers={"Origin": served.url})
    with studio.workspace.lease("lighthouse", "run-button"):
        try:
            urllib.request.urlopen(post, timeout=30)
            raise AssertionError("expected 409")
        except urllib.error.HTTPError as e:
            assert e.code == 409 and "is being run by" in e.read().decode()
    info = studio.store.branch("lighthouse", "run-button")
    assert info.head_position == info.fork_position + 2  # BranchCreated + the override, nothing more
    with urllib.request.urlopen(post, timeout=30) as r:
        assert r.status == 200 and "branch=run-button" in r.url
    deadline = time.monotonic() + 180
    while not any(e.type == "StoryCompleted" for e in studio.log("lighthouse", "run-button", types=["StoryCompleted"])):
        assert time.monotonic() < deadline
        time.sleep(0.3)
    status, _, body = get(served.url + "/timeline?story=lighthouse&branch=run-button")
    assert status == 200 and b'data-status="complete"' in body and b'data-action="run"' not in body


def whole_branch_diff(studio, story: str, a: str, b: str) -> dict:  # type: ignore[no-untyped-def,type-arg]
    """What a diff must say, from each whole branch audited on its own (no shared prefix folded once)."""
    from codirector.engine.views.diff import ShotOutcome

    ea, eb = studio.log(story, a), studio.log(story, b)
    parted = 0
    for x, y in zip(ea, eb, strict=False):
        if x.id != y.id:
            break
        parted = x.position
    audit_a, audit_b = studio.audit(story, a), studio.audit(story, b)
    shots = sorted({s.shot for s in audit_a.shots} | {s.shot for s in audit_b.shots})
    outcomes = [(n, ShotOutcome.of(audit_a.shot(n)), ShotOutcome.of(audit_b.shot(n))) for n in shots]
    names_a, names_b = [e.name for e in audit_a.memory], [e.name for e in audit_b.memory]
    return {"parted": parted, "shots": [(n, x == y, x, y) for n, x, y in outcomes],
            "only_in_a": [n for n in names_a if n not in names_b],
            "only_in_b": [n for n in names_b if n not in names_a]}


def test_a_diff_reads_the_shared_prefix_once_and_says_what_whole_branches_say(served) -> None:  # type: ignore[no-untyped-def]
    from codirector.engine.views.diff import Fork

    studio = served.studio
    pulls = [b.name for b in studio.store.story("dewline").branches if b.name != "main"]
    pairs = [("lighthouse", "main", "storm"), ("lighthouse", "storm", "main"), ("lighthouse", "storm", "storm"),
             ("dewline", "main", pulls[0]), ("dewline", pulls[0], pulls[-1])]
    for story, a, b in pairs:
        fork = Fork.read(studio.store, story, a, b)
        log_a, log_b = studio.log(story, a), studio.log(story, b)
        assert [*fork.shared, *fork.tail_a] == log_a and [*fork.shared, *fork.tail_b] == log_b  # each row once
        d = studio.diff(story, a, b)
        want = whole_branch_diff(studio, story, a, b)
        assert d.parted_at_position == want["parted"], (story, a, b)
        assert [(s.shot, s.same, s.in_a, s.in_b) for s in d.shots] == want["shots"], (story, a, b)
        assert (list(d.only_in_a), list(d.only_in_b)) == (want["only_in_a"], want["only_in_b"])
    storm = Fork.read(studio.store, "lighthouse", "main", "storm")
    assert storm.shared[-1].position == studio.store.branch("lighthouse", "storm").fork_position
    assert studio.diff("lighthouse", "storm", "storm").first_differing_shot is None


def test_an_audit_prices_the_events_it_folds(served) -> None:  # type: ignore[no-untyped-def]
    studio = served.studio
    for story, branch in (("lighthouse", "main"), ("lighthouse", "storm"), ("dewline", "main")):
        audit = studio.audit(story, branch)
        assert audit.cost is not None and audit.cost.to_json() == studio.cost(story, branch).to_json()


def test_the_stories_page_prices_a_branch_once_per_head(served, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from codirector.serve.pages import SpendByHead

    studio, spend = served.studio, SpendByHead()
    heads = [(s.id, b) for s in studio.store.stories() for b in s.branches]
    for story, head in heads:
        cost = studio.cost(story, head.name)
        assert spend.get(studio, story, head) == (cost.total_usd, bool(cost.unpriced))

    def no_read(*args, **kwargs):  # type: ignore[no-untyped-def]
        raise AssertionError("a head already priced was read again")

    monkeypatch.setattr(studio, "log", no_read)
    for story, head in heads:  # the same heads: nothing read
        spend.get(studio, story, head)
    small = SpendByHead(size=1)
    monkeypatch.undo()
    story, head = heads[0]
    small.get(studio, story, head)
    small.get(studio, *heads[1])
    monkeypatch.setattr(studio, "log", no_read)
    with pytest.raises(AssertionError, match="read again"):
        small.get(studio, story, head)  # dropped: the oldest entry went when the second came


def test_a_timeline_page_folds_only_its_shots_and_shows_what_the_audit_says(served, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from codirector.serve import pages

    monkeypatch.setattr(pages, "SHOTS_PER_PAGE", 3)
    for branch in ("main", "storm"):
        whole = served.studio.audit("lighthouse", branch)
        for n in (1, 2, 3):
            t = pages.timeline_page(served.studio, "lighthouse", branch, n)
            assert t.pages == 3 and t.shot_count == len(whole.shots) == 8
            assert t.shots == whole.shots[(n - 1) * 3: n * 3], (branch, n)
            assert t.audit.notes == whole.notes and t.planned == max(whole.planned_shots, 8)
            assert t.audit.cost is not None and whole.cost is not None
            assert t.audit.cost.to_json() == whole.cost.to_json()
            assert t.current_shot == max(s.shot for s in whole.shots if s.keyframe_prompt is not None)
