"""Files and paths a new user trips over: ``export -o FOLDER``, failed writes that leave nothing behind and
name the path, a home this user may only read, and file modes that follow the umask (issue #25)."""

from __future__ import annotations

import hashlib
import os
import shutil
import stat
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import text
from typer.testing import CliRunner

from codirector.cli import app
from codirector.engine.studio import Studio
from codirector.errors import StoreError
from codirector.generators.video_io import concat_mp4, frame_count
from codirector.store.blobs import write_atomically
from codirector.store.db import is_read_only

from support import tiny_preview_config, write_story

runner = CliRunner()
SETPRIV = shutil.which("setpriv")
NOBODY = 65534


@pytest.fixture(scope="module")
def folder() -> Iterator[Path]:
    """A folder every user may read (pytest's own tmp folders are private to root), with a home holding one
    finished two-shot story, ``pier``."""
    root = Path(tempfile.mkdtemp(prefix="codirector-paths-"))
    root.chmod(0o755)
    story = write_story(root / "pier.yaml", shots=2)
    result = runner.invoke(app, ["--home", str(root / "home"), "run", str(story), "--config",
                                 str(tiny_preview_config(root))])
    assert result.exit_code == 0, result.output
    yield root
    shutil.rmtree(root, ignore_errors=True)


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_export_into_a_folder_writes_story_branch_mp4_inside_it(folder: Path, tmp_path: Path) -> None:
    videos = tmp_path / "videos"
    videos.mkdir()
    result = runner.invoke(app, ["--home", str(folder / "home"), "export", "pier", "-o", str(videos)])
    assert result.exit_code == 0, result.output
    assert f"wrote {videos / 'pier-main.mp4'}: 2 shots" in result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["videos"]  # no videos.partial.mp4 beside it
    assert [p.name for p in videos.iterdir()] == ["pier-main.mp4"]
    assert frame_count(videos / "pier-main.mp4") == 10
    # a path ending in a slash is a folder too (made if missing); a slash in a name never makes a subfolder
    result = runner.invoke(app, ["--home", str(folder / "home"), "export", "pier", "-o", f"{tmp_path / 'new'}/"])
    assert result.exit_code == 0, result.output
    assert [p.name for p in (tmp_path / "new").iterdir()] == ["pier-main.mp4"]


def test_a_failed_export_leaves_no_file_and_names_the_path(folder: Path, tmp_path: Path) -> None:
    studio = Studio(folder / "home")
    state_clips = [e.payload for e in studio.log("pier", types=["ShotCompleted"])]
    clips = [studio.blobs.get(p["video_blob"]) for p in state_clips]
    # the final rename fails (the name is taken by a folder that is not empty): the partial file goes too
    taken = tmp_path / "taken.mp4"
    (taken / "inside").mkdir(parents=True)
    with pytest.raises(OSError):
        concat_mp4(clips, taken, 4.0)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["taken.mp4"]
    assert [p.name for p in taken.iterdir()] == ["inside"]
    studio.close()

    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    result = runner.invoke(app, ["--home", str(folder / "home"), "export", "pier", "-o", str(blocker / "x.mp4")])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert f"error: {blocker / 'x.mp4'}:" in result.output and "fix: check that the path exists" in result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a-file", "taken.mp4"]


def test_an_audit_that_cannot_be_written_names_the_file_and_prints_no_audit(folder: Path, tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    result = runner.invoke(app, ["--home", str(folder / "home"), "audit", "pier", "--html",
                                 str(blocker / "audit.html")])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert f"error: {blocker / 'audit.html'}: {blocker} is a file, not a folder" in result.output
    assert "shot 1:" not in result.output  # the text audit is not printed before the error
    assert ".tmp-" not in result.output  # never the temporary file's name
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a-file"]


def test_files_written_through_a_temporary_file_follow_the_umask(folder: Path, tmp_path: Path) -> None:
    old = os.umask(0o027)
    try:
        write_atomically(tmp_path / "plain.bin", b"x")
        result = runner.invoke(app, ["--home", str(folder / "home"), "audit", "pier", "--html",
                                     str(tmp_path / "audit.html")])
    finally:
        os.umask(old)
    assert result.exit_code == 0, result.output
    assert stat.S_IMODE((tmp_path / "plain.bin").stat().st_mode) == 0o640
    assert stat.S_IMODE((tmp_path / "audit.html").stat().st_mode) == 0o640  # was 0600 from mkstemp
    old = os.umask(0o022)
    try:
        write_atomically(tmp_path / "shared.svg", b"<svg/>")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "shared.svg").stat().st_mode) == 0o644
    # the home's blobs and vector index, written by the run under the default umask, are readable by others
    home = folder / "home"
    written = [*home.glob("blobs/*/*"), *home.glob("vectors/*.faiss")]
    assert written and all(p.stat().st_mode & 0o044 == 0o044 for p in written), written


def test_a_database_file_without_write_permission_is_opened_read_only(folder: Path, tmp_path: Path) -> None:
    home = tmp_path / "home"
    shutil.copytree(folder / "home", home)
    db = home / "codirector.db"
    db.chmod(0o444)
    before = {p.name: digest(p) for p in home.glob("codirector.db*") if not p.name.endswith("-shm")}
    studio = Studio(home)
    assert [s.id for s in studio.stories()] == ["pier"]
    assert {e.name for e in studio.memory("pier", at_shot=2)} == {"Ada", "Ben", "Ada_hat"}
    assert studio.verify().ok
    engine = studio.store.engine
    assert is_read_only(engine)
    with engine.connect() as conn:  # opened read-only, not merely never written to
        assert conn.execute(text("PRAGMA query_only")).scalar() == 1
    with pytest.raises(StoreError) as info:
        studio.branch("pier", from_shot=2, name="alt")
    assert f"cannot write {db}" in info.value.message and "no permission to write" in info.value.message
    assert "--home" in (info.value.hint or "")
    studio.close()
    after = {p.name: digest(p) for p in home.glob("codirector.db*") if not p.name.endswith("-shm")}
    assert {name: after[name] for name in before} == before  # the database (and a WAL it had) unchanged
    new = set(after) - set(before)  # at most SQLite's WAL file (the -shm index aside), with no data in it
    assert new <= {"codirector.db-wal"}
    assert all((home / name).stat().st_size == 0 for name in new if name.endswith("-wal"))


def as_nobody(*args: str) -> subprocess.CompletedProcess[str]:
    """The CLI run by an unprivileged user (root ignores file permissions, so dropping it is the real test)."""
    assert SETPRIV is not None
    env = {**os.environ, "HOME": "/tmp", "PYTHONDONTWRITEBYTECODE": "1", "COLUMNS": "200"}
    return subprocess.run([SETPRIV, f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups", sys.executable,
                           "-m", "codirector.cli", *args], capture_output=True, text=True, env=env, timeout=120)


@pytest.mark.skipif(os.geteuid() != 0 or SETPRIV is None,
                    reason="needs root and setpriv to run the CLI as an unprivileged user")
@pytest.mark.slow  # several `codirector` processes, each paying the interpreter start-up: not the fast lane
def test_queries_work_on_a_home_this_user_may_not_write(folder: Path) -> None:
    home = folder / "home"
    db = home / "codirector.db"
    before = (digest(db), sorted(str(p.relative_to(home)) for p in home.rglob("*")))
    h = ["--home", str(home)]
    for args, expected in [(["stories"], "completed"), (["memory", "pier", "--at-shot", "2"], "Ada_hat"),
                           (["history", "pier", "Ada"], "lineage: Ada"), (["log", "pier", "--limit", "2"],
                                                                           "StoryCreated"),
                           (["audit", "pier"], "shot 2:"), (["cost", "pier"], "spent"),
                           (["verify"], "ok: the log, blobs and vector index are intact")]:
        done = as_nobody(*h, *args)
        assert done.returncode == 0, (args, done.stdout, done.stderr)
        assert expected in done.stdout, (args, done.stdout)
    refused = as_nobody(*h, "branch", "pier", "--from-shot", "2", "--name", "alt")
    assert refused.returncode == 6, refused.stderr
    assert f"cannot write {db}: this user (nobody) has no permission to write it" in refused.stderr
    assert "Traceback" not in refused.stderr
    out = folder / "no-entry"
    out.mkdir(mode=0o755, exist_ok=True)
    denied = as_nobody(*h, "audit", "pier", "--html", str(out / "audit.html"))
    assert denied.returncode == 1 and f"error: {out / 'audit.html'}: Permission denied" in denied.stderr
    assert "shot 1:" not in denied.stdout
    denied = as_nobody(*h, "export", "pier", "-o", str(out / "pier.mp4"))
    assert denied.returncode == 1 and f"error: {out / 'pier.mp4'}: Permission denied" in denied.stderr
    assert list(out.iterdir()) == []
    assert (digest(db), sorted(str(p.relative_to(home)) for p in home.rglob("*"))) == before


def test_a_missing_config_file_is_named_as_the_config(folder: Path, tmp_path: Path) -> None:
    home = tmp_path / "home"
    result = runner.invoke(app, ["--home", str(home), "run", str(folder / "pier.yaml"), "--config",
                                 str(tmp_path / "nope.toml"), "--budget", "1"])
    assert result.exit_code == 2, result.output
    assert f"error: config file {tmp_path / 'nope.toml'} does not exist" in result.output
    assert "fix: check the path given to --config" in result.output and "price file" not in result.output
    assert not (home / "codirector.db").exists() or not Studio(home).stories()  # no story was started
