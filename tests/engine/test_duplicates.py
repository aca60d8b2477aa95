"""A proposed new entity that is a near-duplicate of an existing one resolves to it, with its score."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from codirector.engine.studio import Studio

from support import HashEmbedder, ScriptedVLM, fast_config, scripted_backends, write_story

ADA = "a tall woman with grey hair and a blue raincoat"
BEN = "a small boy with red hair and a yellow jumper"
ADA_AGAIN = "tall grey-haired woman in a blue rain coat"
ADA_HAT = "a tall woman with grey hair and a blue raincoat, now in a green hat"
BOAT = "a small wooden rowing boat painted white"
NOTHING_NEW = {"entity_updates": [], "refined_next_shot": {"keyframe_prompt": "Ada in a green hat beside Ben"}}


def unit(i: int, noise: float = 0.0, dim: int = 16) -> list[float]:
    v = np.zeros(dim)
    v[i] = 1.0
    v[(i + 1) % dim] = noise
    return list(v)


def test_near_duplicate_resolves_to_existing_entity_with_its_score(tmp_path: Path) -> None:
    embedder = HashEmbedder(controlled={ADA: unit(0), BEN: unit(1), ADA_AGAIN: unit(0, 0.1),
                                        ADA_HAT: unit(0, 0.05), BOAT: unit(2)})
    shot2 = {"retrieved_existing": [{"name": "Ben"}], "new_entities": [
        {"name": "Grey_woman", "description": ADA_AGAIN, "base_entity": None},  # a synonym of Ada
        {"name": "Ada_hat", "description": ADA_HAT, "base_entity": "Ada"},     # an evolved state: kept
        {"name": "boat", "description": BOAT, "base_entity": None},            # genuinely new
    ]}
    vlm = ScriptedVLM().enqueue("memory_controller", lambda req: _plan_answer(req), shot2)
    vlm.enqueue("video_analyzer", NOTHING_NEW)
    studio = Studio(tmp_path / "home")
    story = write_story(tmp_path / "pier.yaml", shots=2)
    studio.run(story, config=fast_config(tmp_path / "f.toml"), backends=scripted_backends(vlm, embedder))
    assert studio.log("pier", types=["AgentOutputRejected"]) == []

    retrieved = [e for e in studio.log("pier", types=["MemoryRetrieved"]) if e.shot == 2][0].payload
    assert retrieved["scores_meaningful"] is True
    (dup,) = retrieved["duplicates_resolved"]
    assert (dup["proposed"], dup["resolved_to"]) == ("Grey_woman", "Ada")
    assert dup["score"] == round(float(np.dot(unit(0), unit(0, 0.1)) / np.linalg.norm(unit(0, 0.1))), 6)
    assert dup["score"] >= 0.93
    names = studio.memory("pier", at_shot=2).names()
    assert "Grey_woman" not in names  # never registered
    assert {"Ada", "Ben", "Ada_hat", "boat"} <= set(names)
    # an evolved state has no view until a shot shows it (#25): this keyframe is drawn from its base's view
    assert {r["entity"] for r in retrieved["references"]} == {"Ben", "Ada", "boat"}
    hat = studio.memory("pier").get("Ada_hat")
    assert hat.base_entity == "Ada" and [(v.kind, v.shot) for v in hat.views] == [("keyframe", 2)]


def test_untrained_embedder_never_resolves_duplicates(tmp_path: Path) -> None:
    embedder = HashEmbedder(meaningful=False, controlled={ADA: unit(0), ADA_AGAIN: unit(0, 0.01)})
    shot2 = {"retrieved_existing": [], "new_entities": [
        {"name": "Grey_woman", "description": ADA_AGAIN, "base_entity": None}]}
    vlm = ScriptedVLM().enqueue("memory_controller", lambda req: _plan_answer(req), shot2)
    vlm.enqueue("video_analyzer", NOTHING_NEW)
    studio = Studio(tmp_path / "home")
    story = write_story(tmp_path / "pier.yaml", shots=2)
    studio.run(story, config=fast_config(tmp_path / "f.toml"), backends=scripted_backends(vlm, embedder))
    retrieved = [e for e in studio.log("pier", types=["MemoryRetrieved"]) if e.shot == 2][0].payload
    assert retrieved["scores_meaningful"] is False and retrieved["duplicates_resolved"] == []
    assert "Grey_woman" in studio.memory("pier").names()


def _plan_answer(request):  # type: ignore[no-untyped-def]
    from codirector.generators.preview import PreviewVLM

    return PreviewVLM().complete(request).text
