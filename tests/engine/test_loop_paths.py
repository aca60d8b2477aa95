"""Algorithm 1's decision paths, driven by a scripted VLM at the backend interface; exact event sequences."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from codirector.engine.studio import Studio
from codirector.generators.video_io import read_frames

from support import ScriptedVLM, fast_config, scripted_backends, shape, write_story

ACCEPT = {"decision": "accept", "reasons": ["fine"], "refined_keyframe_prompt": "",
          "alignment_report": {"main_character_count": "ok", "main_character_appearance": "ok", "environment": "ok"}}


def judge(decision: str, count: str = "ok", appearance: str = "ok", environment: str = "ok",
          refined: str = "") -> dict:
    return {"decision": decision, "reasons": [f"{decision} because"], "refined_keyframe_prompt": refined,
            "alignment_report": {"main_character_count": count, "main_character_appearance": appearance,
                                 "environment": environment}}


@pytest.fixture
def studio(tmp_path: Path) -> Studio:
    s = Studio(tmp_path / "home")
    s.init()
    return s


def run(studio: Studio, tmp_path: Path, vlm: ScriptedVLM, shots: int = 2, **run_settings: object):  # type: ignore[no-untyped-def]
    story = write_story(tmp_path / "pier.yaml", shots=shots)
    cfg = fast_config(tmp_path / "fast.toml", **run_settings)
    result = studio.run(story, config=cfg, backends=scripted_backends(vlm))
    return result, studio.log("pier")


def shot_events(events, shot):  # type: ignore[no-untyped-def]
    return [e for e in events if e.shot == shot]


REGISTER = ["call:embed", "call:image", "EntityRegistered", "call:embed", "ViewAdded"]  # reference generated
RETRIEVE_SHOT1 = ["call:embed", "call:vlm:memory_controller", *REGISTER, *REGISTER, "MemoryRetrieved"]
TAIL = ["call:vlm:motion_refiner", "MotionPromptRefined", "call:video", "VideoGenerated"]


def test_accept_in_round_one(studio: Studio, tmp_path: Path) -> None:
    result, events = run(studio, tmp_path, ScriptedVLM().enqueue("keyframe_analyzer", ACCEPT))
    assert result.completed
    assert shape(shot_events(events, 1)) == [
        "ShotPlanned", "ShotStarted", *RETRIEVE_SHOT1,
        "call:image", "KeyframeGenerated", "call:vlm:keyframe_analyzer", "KeyframeJudged", "KeyframeSelected",
        *TAIL, "call:vlm:video_analyzer", "VideoAnalyzed", "ShotCompleted",  # shot 2's new state is not in clip 1
    ]
    selected = next(e for e in events if e.type == "KeyframeSelected" and e.shot == 1)
    assert selected.payload["how"] == "accepted" and selected.payload["round"] == 1
    assert [e.type for e in events][-1] == "StoryCompleted"


def test_regen_same_desc_then_accept(studio: Studio, tmp_path: Path) -> None:
    vlm = ScriptedVLM().enqueue("keyframe_analyzer", judge("regen_same_desc", count="missing"), ACCEPT)
    _, events = run(studio, tmp_path, vlm)
    s1 = shot_events(events, 1)
    assert shape(s1)[2 + len(RETRIEVE_SHOT1):] == [
        "call:image", "KeyframeGenerated", "call:vlm:keyframe_analyzer", "KeyframeJudged",
        "call:image", "KeyframeGenerated", "call:vlm:keyframe_analyzer", "KeyframeJudged", "KeyframeSelected",
        *TAIL, "call:vlm:video_analyzer", "VideoAnalyzed", "ShotCompleted",
    ]
    gens = [e.payload for e in s1 if e.type == "KeyframeGenerated"]
    assert gens[0]["prompt"] == gens[1]["prompt"]  # same description ...
    assert gens[0]["seed"] != gens[1]["seed"] and gens[0]["blob"] != gens[1]["blob"]  # ... new generation
    assert [e.payload["decision"] for e in s1 if e.type == "KeyframeJudged"] == ["regen_same_desc", "accept"]
    assert next(e for e in s1 if e.type == "KeyframeSelected").payload["round"] == 2


def test_regen_refined_desc_rewrites_the_prompt_and_reruns_retrieval(studio: Studio, tmp_path: Path) -> None:
    refined = "Ada and Ben on the pier at dawn, both facing the camera, Ada on the left"
    vlm = ScriptedVLM().enqueue("keyframe_analyzer", judge("regen_refined_desc", appearance="mismatch",
                                                          refined=refined), ACCEPT)
    _, events = run(studio, tmp_path, vlm)
    s1 = shot_events(events, 1)
    assert shape(s1)[2 + len(RETRIEVE_SHOT1):2 + len(RETRIEVE_SHOT1) + 11] == [
        "call:image", "KeyframeGenerated", "call:vlm:keyframe_analyzer", "KeyframeJudged",
        "call:embed", "call:vlm:memory_controller", "MemoryRetrieved",
        "call:image", "KeyframeGenerated", "call:vlm:keyframe_analyzer", "KeyframeJudged",
    ]
    retrievals = [e.payload for e in s1 if e.type == "MemoryRetrieved"]
    assert [(r["round"], r["query"]) for r in retrievals] == [(1, "Ada and Ben on a pier at dawn"), (2, refined)]
    assert retrievals[1]["retrieved_existing"] == ["Ada", "Ben"]  # memory now holds them: reused, not re-created
    gens = [e.payload for e in s1 if e.type == "KeyframeGenerated"]
    assert gens[1]["prompt"] == refined
    judged = [e.payload for e in s1 if e.type == "KeyframeJudged"]
    assert judged[0]["refined_keyframe_prompt"] == refined


def test_rounds_exhausted_select_best_says_why(studio: Studio, tmp_path: Path) -> None:
    vlm = ScriptedVLM().enqueue(
        "keyframe_analyzer",
        judge("regen_same_desc", count="duplicate"),
        judge("regen_refined_desc", appearance="partial", refined="Ada, with grey hair, and Ben on the pier"),
    )
    _, events = run(studio, tmp_path, vlm, max_rounds=2)
    s1 = shot_events(events, 1)
    kinds = shape(s1)
    i = kinds.index("KeyframeSelected")
    assert kinds[i - 8:i] == ["call:image", "KeyframeGenerated", "call:vlm:keyframe_analyzer", "KeyframeJudged",
                              "call:image", "KeyframeGenerated", "call:vlm:keyframe_analyzer", "KeyframeJudged"]
    assert kinds.count("MemoryRetrieved") == 1  # no retrieval after the last round: nothing would use it
    sel = s1[i].payload
    assert (sel["how"], sel["round"]) == ("best_of", 2)
    assert "round 2 ranks best" in sel["why"] and "(3, 2, 3)" in sel["why"] and "round 1 (0, 3, 3)" in sel["why"]


def test_video_analyzer_new_angle_gets_that_frames_pixels(studio: Studio, tmp_path: Path) -> None:
    refined_next = "Ada in a green hat beside Ben, Ben seen from behind, the pier at dawn"
    update = {"entity_updates": [{"name": "Ben_back", "description": "a small boy with red hair and a yellow "
                                  "jumper, seen from behind", "frame_index": 2, "base_entity": "Ben"}],
              "refined_next_shot": {"keyframe_prompt": refined_next}}
    _, events = run(studio, tmp_path, ScriptedVLM().enqueue("video_analyzer", update))
    s1 = shot_events(events, 1)
    kinds = shape(s1)
    i = kinds.index("VideoAnalyzed")
    assert kinds[i:] == ["VideoAnalyzed", "call:embed", "EntityRegistered", "call:embed", "ViewAdded", "ShotCompleted"]
    analyzed, registered, view = s1[i], s1[i + 2], s1[i + 4]
    assert registered.payload["name"] == "Ben_back" and registered.payload["base_entity"] == "Ben"
    assert registered.payload["origin"] == "video_analyzer" and registered.causation_id == analyzed.id
    frame = analyzed.payload["sampled_frames"][2]
    assert view.payload["source"] == {"kind": "video_frame", "shot": 1, "round": None, "frame_index": frame}
    video = next(e for e in s1 if e.type == "VideoGenerated").payload["blob"]
    clip = read_frames(studio.blobs.get(video))
    pixels = np.asarray(Image.open(io.BytesIO(studio.blobs.get(view.payload["blob"]))))
    np.testing.assert_array_equal(pixels, clip[frame])
    # the next shot's prompt was refined, and shot 2 starts from the refinement
    assert analyzed.payload["next_prompt_before"] == "Ada in a green hat beside Ben"
    assert analyzed.payload["next_prompt_after"] == refined_next
    started2 = next(e for e in events if e.type == "ShotStarted" and e.shot == 2)
    assert started2.payload["keyframe_prompt"] == refined_next
    assert "Ben_back" in studio.memory("pier", at_shot=2).names()
    assert "Ben_back" not in studio.memory("pier", at_shot=1).names()


def test_ablations_change_the_loop_as_the_paper_says(studio: Studio, tmp_path: Path) -> None:
    story = write_story(tmp_path / "pier.yaml", shots=2)
    cfg = fast_config(tmp_path / "fast.toml")
    refine = ScriptedVLM().enqueue("keyframe_analyzer", judge("regen_refined_desc", appearance="mismatch",
                                                              refined="a changed prompt"), ACCEPT)
    studio.run(story, config=cfg, story_id="nomem", no_memory=True, backends=scripted_backends())
    studio.run(story, config=cfg, story_id="nosyn", no_synergy=True, backends=scripted_backends())
    studio.run(story, config=cfg, story_id="noref", no_refine=True, backends=scripted_backends(refine))
    nomem = studio.log("nomem")
    assert not [e for e in nomem if e.type in ("EntityRegistered", "ViewAdded", "VideoAnalyzed")]
    assert all(e.payload["memory_disabled"] for e in nomem if e.type == "MemoryRetrieved")
    assert all(e.payload["reference_blobs"] == [] for e in nomem if e.type == "KeyframeGenerated")
    nosyn = studio.log("nosyn")
    assert not [e for e in nosyn if e.type in ("KeyframeJudged", "MotionPromptRefined", "VideoAnalyzed")]
    assert [e.payload["how"] for e in nosyn if e.type == "KeyframeSelected"] == ["only_round", "only_round"]
    assert [e for e in nosyn if e.type == "EntityRegistered"]  # pre-keyframe updates remain
    noref = studio.log("noref")
    gens = [e.payload["prompt"] for e in noref if e.type == "KeyframeGenerated" and e.shot == 1]
    assert gens == ["Ada and Ben on a pier at dawn"] * 2  # regenerated, but never rewritten
    assert not [e for e in noref if e.type == "MotionPromptRefined"]
    analyzed = [e.payload for e in noref if e.type == "VideoAnalyzed"]
    assert analyzed[0]["next_prompt_after"] == analyzed[0]["next_prompt_before"]


def test_an_evolved_state_enters_memory_at_its_shot_with_that_shots_keyframe(studio: Studio, tmp_path: Path) -> None:
    """Ada_hat is declared on shot 2: shot 2's memory controller proposes it (base Ada), shot 2's keyframe is
    drawn from Ada's view, and the keyframe it selects becomes Ada_hat's first view."""
    _, events = run(studio, tmp_path, ScriptedVLM(), shots=3)
    assert not [e for e in events if e.type == "EntityRegistered" and e.shot == 1 and e.payload["name"] == "Ada_hat"]
    s2 = shot_events(events, 2)
    kinds = shape(s2)
    assert kinds[:kinds.index("KeyframeGenerated") + 1] == [
        "ShotPlanned", "ShotStarted", "call:embed", "call:vlm:memory_controller",
        "call:embed", "EntityRegistered", "MemoryRetrieved",  # registered before the keyframe, no image made
        "call:image", "KeyframeGenerated",
    ]
    i = kinds.index("KeyframeSelected")
    assert kinds[i:i + 3] == ["KeyframeSelected", "call:embed", "ViewAdded"]
    registered = next(e for e in s2 if e.type == "EntityRegistered")
    assert (registered.payload["name"], registered.payload["base_entity"], registered.payload["origin"]) == \
        ("Ada_hat", "Ada", "memory_controller")
    retrieved = next(e for e in s2 if e.type == "MemoryRetrieved").payload
    assert [(p["name"], p["base_entity"]) for p in retrieved["new_entities"]] == [("Ada_hat", "Ada")]
    ada_view = studio.memory("pier", at_shot=1).get("Ada").views[0]
    refs = {r["entity"]: r["blob"] for r in retrieved["references"]}
    assert set(refs) == {"Ben", "Ada"} and refs["Ada"] == ada_view.blob  # Ada_hat is drawn from its base's view
    selected, view = s2[i], s2[i + 2]
    assert view.causation_id == selected.id
    assert view.payload["entity"] == "Ada_hat" and view.payload["blob"] == selected.payload["blob"]
    assert view.payload["source"] == {"kind": "keyframe", "shot": 2, "round": 1, "frame_index": None}
    hat = studio.memory("pier").get("Ada_hat")
    assert (hat.shot, [(v.kind, v.shot) for v in hat.views]) == (2, [("keyframe", 2)])
    # shot 3 ... and on: Ada_hat's own view is what memory sends
    assert not studio.memory("pier", at_shot=2).get("Ada_hat").views  # as shot 2's keyframe saw it: no view yet
    assert not [e for e in events if e.type == "VideoAnalyzed" and e.payload["entity_updates"]]


def test_an_evolved_state_from_shot_1_on_the_last_shot_and_without_synergy(studio: Studio, tmp_path: Path) -> None:
    """No video analysis (--no-synergy; or the last shot, which has none): the state still enters at its shot."""
    story = write_story(tmp_path / "pier.yaml", shots=2)
    studio.run(story, config=fast_config(tmp_path / "fast.toml"), story_id="nosyn", no_synergy=True,
               backends=scripted_backends())
    hat = studio.memory("nosyn").get("Ada_hat")
    assert (hat.shot, hat.origin, [(v.kind, v.shot, v.round) for v in hat.views]) == \
        (2, "memory_controller", [("keyframe", 2, 1)])
    last = next(e for e in studio.log("nosyn") if e.type == "KeyframeSelected" and e.shot == 2)
    assert hat.views[0].blob == last.payload["blob"]


def test_evolved_view_reference_generates_the_image_before_the_keyframe(studio: Studio, tmp_path: Path) -> None:
    """[run] evolved_view = "reference" (how stories recorded before the key ran): a generated reference image."""
    _, events = run(studio, tmp_path, ScriptedVLM(), evolved_view="reference")
    s2 = shot_events(events, 2)
    kinds = shape(s2)
    assert kinds[2:kinds.index("MemoryRetrieved") + 1] == [
        "call:embed", "call:vlm:memory_controller", "call:embed", *REGISTER[1:], "MemoryRetrieved"]
    view = next(e for e in s2 if e.type == "ViewAdded")
    assert view.payload["source"] == {"kind": "reference", "shot": 2, "round": 1, "frame_index": None}
    retrieved = next(e for e in s2 if e.type == "MemoryRetrieved").payload
    assert {r["entity"] for r in retrieved["references"]} == {"Ben", "Ada_hat"}
    assert studio.memory("pier").get("Ada_hat").views[0].kind == "reference"


def test_a_bad_evolved_view_is_refused_before_the_story_is_recorded(studio: Studio, tmp_path: Path) -> None:
    from codirector.errors import ConfigError

    story = write_story(tmp_path / "pier.yaml", shots=2)
    with pytest.raises(ConfigError, match="evolved_view must be one of 'keyframe', 'reference', got 'clip'"):
        studio.run(story, config=fast_config(tmp_path / "fast.toml", evolved_view="clip"),
                   backends=scripted_backends())
    assert "pier" not in studio.workspace.story_ids()
