"""`codirector verify` finds every kind of damage, names the first bad position, and passes intact stores."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from typer.testing import CliRunner

from codirector.cli import app
from codirector.engine.studio import Studio

runner = CliRunner()


@pytest.fixture
def home(lineage_home: Path) -> Path:
    """The lighthouse story (``support.build_lineage_story``), a copy of its own for each test to damage."""
    return lineage_home


def raw(home: Path) -> sqlite3.Connection:
    """A raw connection with the append-only triggers dropped: what an attacker or a bad disk can do."""
    conn = sqlite3.connect(home / "codirector.db")
    conn.execute("DROP TRIGGER events_no_update")
    conn.execute("DROP TRIGGER events_no_delete")
    return conn


def run_verify(home: Path) -> tuple[int, str]:
    result = runner.invoke(app, ["--home", str(home), "verify"])
    return result.exit_code, result.output


def test_intact_store_exits_zero(home: Path) -> None:
    code, out = run_verify(home)
    assert code == 0, out
    assert "ok:" in out and "13 events" in out


def test_changed_payload_byte(home: Path) -> None:
    with raw(home) as conn:
        (record,) = conn.execute("SELECT record FROM events WHERE position = 4").fetchone()
        assert "old lighthouse keeper" in record
        conn.execute("UPDATE events SET record = ? WHERE position = 4", (record.replace("old", "odd", 1),))
    code, out = run_verify(home)
    assert code == 5
    assert "lighthouse/main position 4" in out and "altered" in out


def test_deleted_row(home: Path) -> None:
    with raw(home) as conn:
        conn.execute("DELETE FROM events WHERE position = 7")
    code, out = run_verify(home)
    assert code == 5
    assert "position 7: event missing" in out


def test_deleted_last_row(home: Path) -> None:
    with raw(home) as conn:
        conn.execute("DELETE FROM events WHERE position = 13")
    code, out = run_verify(home)
    assert code == 5 and "position 13" in out


def test_swapped_rows(home: Path) -> None:
    with raw(home) as conn:
        conn.execute("UPDATE events SET position = -1 WHERE position = 8")
        conn.execute("UPDATE events SET position = 8 WHERE position = 9")
        conn.execute("UPDATE events SET position = 9 WHERE position = -1")
    code, out = run_verify(home)
    assert code == 5
    assert "position 8" in out


@pytest.mark.parametrize("damage", ["missing", "altered"])
def test_referenced_blob_missing_or_altered(home: Path, damage: str) -> None:
    studio = Studio(home)
    ev = [e for e in studio.log("lighthouse") if e.type == "ViewAdded"][1]  # Tom's reference view
    path = studio.blobs.path(ev.payload["blob"])
    if damage == "missing":
        path.unlink()
    else:
        path.write_bytes(path.read_bytes() + b"x")
    code, out = run_verify(home)
    assert code == 5
    assert f"position {ev.position}" in out and damage in out


def test_stale_or_tampered_index_is_reported_and_reindex_repairs_it(home: Path, tiny_embedder) -> None:  # type: ignore[no-untyped-def]
    import numpy as np

    from codirector.store.vector_index import VectorIndex, index_path

    path = index_path(home / "vectors", "lighthouse")
    idx = VectorIndex(path)
    idx.add([12345], np.ones((1, idx.dim), dtype=np.float32))  # a vector no event names
    idx.save()
    code, out = run_verify(home)
    assert code == 5 and "no event names it" in out
    result = runner.invoke(app, ["--home", str(home), "reindex"])
    assert result.exit_code == 0 and "lighthouse: 8 vectors" in result.output
    assert run_verify(home)[0] == 0
    path.unlink()  # the index is a cache (architecture §10): verify rebuilds a missing one from the log, no damage
    assert run_verify(home)[0] == 0 and path.exists()


def test_verify_json(home: Path) -> None:
    import json

    result = runner.invoke(app, ["--home", str(home), "verify", "--json"])
    data = json.loads(result.output)
    assert data["ok"] is True and data["events"] == 13 and data["vectors"] == 8


def test_tampered_memory_snapshot_is_reported_and_reindex_drops_it(home: Path) -> None:
    studio = Studio(home)
    from codirector.engine.views.memory import MemoryReader

    reader = MemoryReader(studio.store)
    reader.snapshot("lighthouse", "main", reader.at("lighthouse", "main", 9))
    assert run_verify(home)[0] == 0
    conn = sqlite3.connect(home / "codirector.db")
    with conn:
        (state,) = conn.execute("SELECT state FROM snapshots").fetchone()
        conn.execute("UPDATE snapshots SET state = ?", (state.replace("Mia_red_scarf", "Mia_blue_scarf"),))
    code, out = run_verify(home)
    assert code == 5 and "lighthouse/main position 9: cached memory snapshot differs" in out
    # the tampered cache would mislead a read; reindex drops it and memory is the fold again
    assert runner.invoke(app, ["--home", str(home), "reindex"]).exit_code == 0
    assert run_verify(home)[0] == 0
    assert "Mia_red_scarf" in Studio(home).memory("lighthouse", at_position=9).names()
