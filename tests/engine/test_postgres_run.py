"""The whole loop on PostgreSQL: run, resume, branch, replay and verify behave as on SQLite."""

from __future__ import annotations

from pathlib import Path

from codirector.engine.studio import Studio

from support import fast_config, scripted_backends, write_story


def test_run_branch_replay_verify_on_postgres(tmp_path: Path, pg_url: str) -> None:
    studio = Studio(tmp_path / "home", db=pg_url)
    studio.init()
    story = write_story(tmp_path / "pier.yaml", shots=3)
    result = studio.run(story, config=fast_config(tmp_path / "f.toml"), backends=scripted_backends())
    assert result.completed and studio.store.dialect == "postgresql"
    studio.branch("pier", from_shot=2, name="alt", overrides={"shots.2.keyframe": "Ada alone on the pier"})
    assert studio.run_branch("pier", "alt", backends=scripted_backends()).completed
    assert studio.replay("pier").identical and studio.replay("pier", "alt").identical
    assert "Ada_hat" in studio.memory("pier", at_shot=2).names()
    assert studio.verify().ok
    again = studio.resume("pier", backends=scripted_backends())
    assert again.completed and again.written == 0
