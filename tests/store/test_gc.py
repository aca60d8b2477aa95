"""Unreferenced blobs (#26): `verify` lists them apart from damage and still passes; `gc` lists them (a dry run by
default) and `gc --delete` removes only them, on a local folder and on S3 (moto). Referenced blobs of every kind
(cast reference files, keyframes, clips, vectors, recorded answers) are never offered; damage stays damage."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from codirector.cli import app
from codirector.engine.studio import Studio
from codirector.store.blobs import FsspecBlobStore, LocalBlobStore
from codirector.store.verify import referenced_digests

from support import counting_config, png_bytes, write_story

runner = CliRunner()


@pytest.fixture(params=["local", "s3"])
def studio(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Studio:
    """A home holding one completed 2-shot story (with a cast reference image), its blobs local or in S3."""
    monkeypatch.setenv("CODIRECTOR_PLUGINS", "codirector_test_plugins")
    blobs = None if request.param == "local" else request.getfixturevalue("s3_bucket")
    (tmp_path / "ada.png").write_bytes(png_bytes((200, 40, 40)))
    cast = [{"name": "Ada", "kind": "character", "description": "a tall woman with grey hair and a blue raincoat",
             "reference": "ada.png"},
            {"name": "Ben", "kind": "character", "description": "a small boy with red hair and a yellow jumper"}]
    story = write_story(tmp_path / "pier.yaml", shots=2, cast=cast)
    s = Studio(tmp_path / "home", blobs=blobs)
    s.init()
    s.run(story, config=counting_config(tmp_path / "c.toml"))
    return s


def cli(studio: Studio, *args: str) -> tuple[int, str]:
    result = runner.invoke(app, ["--home", str(studio.home.root), "--blobs", studio.blobs.describe().split(" ")[0],
                                 *args])
    return result.exit_code, result.output


def overwrite(studio: Studio, digest: str, data: bytes) -> None:
    """What a bad disk or a stray tool does: other bytes under a blob's name."""
    blobs = studio.blobs
    if isinstance(blobs, LocalBlobStore):
        blobs.path(digest).write_bytes(data)
    else:
        assert isinstance(blobs, FsspecBlobStore)
        blobs.fs.pipe_file(blobs.key(digest), data)


def test_a_completed_run_leaves_no_unreferenced_blob(studio: Studio) -> None:
    report = studio.verify()
    assert report.ok and report.unreferenced == [], [p.line() for p in report.problems]
    stored = set(studio.blobs.digests())
    assert stored == set(referenced_digests(studio.store).digests)  # every kind a run writes is named by an event
    created = studio.log("pier", types=["StoryCreated"])[0]
    assert created.payload["spec"]["cast"][0]["reference_blob"] in stored


def test_an_orphan_is_reported_apart_and_collected(studio: Studio) -> None:
    before = set(studio.blobs.digests())
    orphan = studio.blobs.put(b"a blob whose event was never appended")  # a run stopped between the two
    code, out = cli(studio, "verify")
    assert code == 0, out
    assert "unreferenced: 1 blobs, 37 bytes" in out and "`codirector gc` removes them" in out and "ok:" in out
    assert "DAMAGED" not in out
    report = json.loads(cli(studio, "verify", "--json")[1])
    assert report["ok"] and report["unreferenced"] == {"blobs": 1, "bytes": 37, "digests": [orphan]}

    code, out = cli(studio, "gc")  # the default --min-age (an hour) keeps a blob written just now
    assert code == 0 and "0 unreferenced blobs" in out and "1 more younger than 3600 s kept" in out, out
    code, out = cli(studio, "gc", "--min-age", "0")  # a dry run: listed, not removed
    assert code == 0 and f"unreferenced {orphan}" in out and "dry run" in out and "gc --delete" in out, out
    assert studio.blobs.exists(orphan)
    dry = json.loads(cli(studio, "gc", "--min-age", "0", "--json")[1])
    assert dry["dry_run"] and [b["digest"] for b in dry["unreferenced"]] == [orphan] and dry["bytes"] == 37

    code, out = cli(studio, "gc", "--min-age", "0", "--delete")
    assert code == 0 and f"removed {orphan}" in out and "removed 1 unreferenced blobs, 37 bytes" in out, out
    assert not studio.blobs.exists(orphan)
    assert set(studio.blobs.digests()) == before  # every referenced blob is still there
    report = studio.verify()
    assert report.ok and report.unreferenced == []
    assert "0 unreferenced blobs" in cli(studio, "gc", "--min-age", "0", "--delete")[1]


def test_old_orphans_go_by_default_and_young_ones_stay(studio: Studio) -> None:
    if not isinstance(studio.blobs, LocalBlobStore):
        pytest.skip("an object's write time cannot be set back in S3")
    old, young = studio.blobs.put(b"old orphan"), studio.blobs.put(b"young orphan")
    two_hours_ago = studio.blobs.path(old).stat().st_mtime - 7200
    os.utime(studio.blobs.path(old), (two_hours_ago, two_hours_ago))
    code, out = cli(studio, "gc", "--yes")
    assert code == 0 and f"removed {old}" in out and young not in out, out
    assert not studio.blobs.exists(old) and studio.blobs.exists(young)


def test_damage_stays_damage_and_gc_never_touches_it(studio: Studio) -> None:
    clip = studio.log("pier", types=["ShotCompleted"])[0].payload["video_blob"]
    keyframe = studio.log("pier", types=["ShotCompleted"])[1].payload["keyframe_blob"]
    overwrite(studio, clip, b"not the clip")
    studio.blobs.delete(keyframe)
    orphan = studio.blobs.put(b"unreferenced")
    code, out = cli(studio, "verify")
    assert code == 5, out
    assert f"names blob {clip[:12]}…, which is altered" in out
    assert f"names blob {keyframe[:12]}…, which is missing" in out
    assert "unreferenced: 1 blobs" in out  # told apart from the damage
    code, out = cli(studio, "gc", "--min-age", "0", "--delete")
    assert code == 0 and f"removed {orphan}" in out and clip not in out, out
    assert studio.blobs.exists(clip)  # a damaged blob is still referenced: evidence, never collected
    code, out = cli(studio, "verify")
    assert code == 5 and "altered" in out and "missing" in out and "unreferenced" not in out


def test_gc_waits_for_runs_in_flight_unless_min_age_protects_them(studio: Studio) -> None:
    orphan = studio.blobs.put(b"maybe a run's blob whose event is about to be appended")
    with studio.workspace.lease("pier", "main"):
        code, out = cli(studio, "gc", "--delete")
        assert code == 11 and "pier/main" in out and "--min-age" in out, out
        code, out = cli(studio, "gc", "--delete", "--min-age", "600")
        assert code == 0 and "1 more younger than 600 s kept" in out, out
    assert studio.blobs.exists(orphan)
