"""The audit: every field per shot in --json, and an HTML report that a real browser renders."""

from __future__ import annotations

import json
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from codirector.cli import app
from codirector.engine.studio import Studio

from support import ScriptedVLM, fast_config, headless, scripted_backends

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "stories"
runner = CliRunner()
REGEN = {"decision": "regen_refined_desc", "reasons": ["scarf missing"], "refined_keyframe_prompt":
         "Close-up of Mia at the railing with the long red scarf clearly wound twice round her neck",
         "alignment_report": {"main_character_count": "ok", "main_character_appearance": "mismatch",
                              "environment": "ok"}}
BAD = {"retrieved_existing": [{"name": "Nobody"}], "new_entities": []}


def run_story(tmp_path: Path) -> Path:
    home = tmp_path / "home"
    vlm = ScriptedVLM()
    # shot 4's first keyframe is judged wrong and refined; shot 1's first controller answer is rejected
    vlm.enqueue("memory_controller", BAD)
    vlm.enqueue("keyframe_analyzer", *[_accept()] * 3, REGEN)
    Studio(home).run(EXAMPLES / "lighthouse.yaml", config=fast_config(tmp_path / "f.toml", width=128, height=96),
                     backends=scripted_backends(vlm))
    return home


def _accept() -> dict:
    return {**REGEN, "decision": "accept", "reasons": ["matches"], "refined_keyframe_prompt": "",
            "alignment_report": {"main_character_count": "ok", "main_character_appearance": "ok", "environment": "ok"}}


class Shots(HTMLParser):
    """Collects, per section.shot, the keyframe images and decision labels of the rendered page."""

    def __init__(self) -> None:
        super().__init__()
        self.shots: dict[int, dict[str, list[str]]] = {}
        self._shot: int | None = None
        self._in_decision = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        cls = (a.get("class") or "").split()
        if tag == "section" and "shot" in cls:
            self._shot = int(a["data-shot"] or 0)
            self.shots[self._shot] = {"keyframes": [], "decisions": []}
        elif tag == "img" and "keyframe" in cls and self._shot is not None:
            self.shots[self._shot]["keyframes"].append(a.get("src") or "")
        elif tag == "span" and "decision" in cls:
            self._in_decision = True

    def handle_data(self, data: str) -> None:
        if self._in_decision and self._shot is not None:
            self.shots[self._shot]["decisions"].append(data.strip())
            self._in_decision = False


def test_audit_json_has_every_field_for_every_shot(tmp_path: Path) -> None:
    home = run_story(tmp_path)
    result = runner.invoke(app, ["--home", str(home), "audit", "lighthouse", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert len(data["shots"]) == 8 and "untrained" not in " ".join(data["notes"])
    for s in data["shots"]:
        assert s["retrievals"], s["shot"]
        for r in s["retrievals"]:
            assert {"query", "candidates", "retrieved_existing", "new_entities", "duplicates_resolved",
                    "references", "scores_meaningful"} <= set(r)
            assert all({"entity", "score", "via"} <= set(c) for c in r["candidates"])
            assert all({"entity", "blob", "score", "view_position"} <= set(x) for x in r["references"])
        for rnd in s["rounds"]:
            assert {"round", "blob", "prompt", "decision", "reasons", "alignment_report",
                    "refined_keyframe_prompt"} <= set(rnd)
            assert rnd["decision"] in ("accept", "regen_same_desc", "regen_refined_desc")
        assert s["selected"]["why"] and s["motion"]["before"] and s["motion"]["after"]
        assert s["video"]["frames"] == 5  # the fast config's num_frames
        if s["shot"] < 8:
            assert s["next_prompt"]["before"] and s["next_prompt"]["after"]
        assert isinstance(s["rejected"], list)
    shot4 = data["shots"][3]
    assert [r["decision"] for r in shot4["rounds"]] == ["regen_refined_desc", "accept"]
    assert shot4["rounds"][0]["refined_keyframe_prompt"] == REGEN["refined_keyframe_prompt"]
    assert [r["round"] for r in shot4["retrievals"]] == [1, 2]
    assert data["shots"][0]["rejected"][0]["agent"] == "memory_controller"
    # the scarf enters memory at shot 4, the shot that first shows it, with shot 4's selected keyframe as its view
    scarf = [(s["shot"], v) for s in data["shots"] for v in s.get("new_views", []) if v["entity"] == "Mia_red_scarf"]
    assert [(shot, v["kind"], v["base_entity"], v["blob"]) for shot, v in scarf] == \
        [(4, "keyframe", "Mia", shot4["selected"]["blob"])]
    assert not [u for s in data["shots"] for u in s["memory_updates"] if u["entity"] == "Mia_red_scarf"]


@pytest.mark.slow  # two Chromium processes (the screenshot, the DOM): a browser is not the fast lane
@pytest.mark.browser
def test_html_report_renders_in_headless_chromium(tmp_path: Path, browser: str) -> None:
    home = run_story(tmp_path)
    page = tmp_path / "report" / "audit.html"
    result = runner.invoke(app, ["--home", str(home), "audit", "lighthouse", "--html", str(page)])
    assert result.exit_code == 0, result.output
    assert "file://" not in page.read_text() and "http" not in page.read_text().split("<style>")[0]
    shot = tmp_path / "report" / "audit.png"
    dom = headless(page.as_uri(), screenshot=shot)
    parsed = Shots()
    parsed.feed(dom)
    audit = Studio(home).audit("lighthouse")
    assert sorted(parsed.shots) == list(range(1, 9))
    for s in audit.shots:
        seen = parsed.shots[s.shot]
        assert len(seen["keyframes"]) == len(s.rounds) and all(k.startswith("data:image/jpeg;base64,")
                                                                for k in seen["keyframes"])
        assert seen["decisions"] == [r.decision for r in s.rounds]
    pixels = np.asarray(Image.open(shot).convert("RGB"))
    assert pixels.shape[0] >= 2000 and pixels.std() > 20  # a real page, not a blank one
