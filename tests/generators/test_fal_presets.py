"""fal presets as fal's model pages describe them, keyframes through fal's multi-reference edit against a loopback
server speaking fal's queue API, and the pre-flight of a fal config (a missing key, an app without a preset, a
duration the model does not make) naming the problem before anything is written.

The field names and values asserted here are the ones read from ``fal.ai/models/<app id>/llms.txt`` and fal's
published endpoint types on 2026-12-07 (see ``generators.hosted.fal_presets``).
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image
from typer.testing import CliRunner

from codirector.cli import app as cli
from codirector.engine.studio import Studio
from codirector.errors import ConfigError
from codirector.generators import registry
from codirector.generators.base import ImageInput, VideoRequest
from codirector.generators.hosted.fal import FalImageGenerator, FalVideoGenerator
from codirector.generators.hosted.fal_presets import DEFAULT_APPS, PRESETS, from_arguments, preset_for
from codirector.generators.imaging import cover
from codirector.generators.prices import BUILTIN, PriceTable

from hosted_loopback import FAL_TEST_KEY, FalServer, decode_data_uri
from support import FAST_RUN, write_story

QWEN = "fal-ai/qwen-image-edit-plus"
KLING = "fal-ai/kling-video/v2.1/standard/image-to-video"
runner = CliRunner()


def invoke(*args: str) -> tuple[int, str]:
    result = runner.invoke(cli, list(args))
    return result.exit_code, result.output


def png(color: tuple[int, int, int], size: tuple[int, int] = (64, 36)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, color).save(buf, format="PNG")
    return buf.getvalue()


# ---------------------------------------------------------------------------- presets (pure)


@pytest.mark.parametrize("app, name", [
    (KLING, "kling"), ("fal-ai/kling-video/v2.5-turbo/pro/image-to-video", "kling"),
    ("fal-ai/kling-video/v2.6/pro/image-to-video", "kling-2.6"),
    ("fal-ai/wan/v2.2-a14b/image-to-video", "wan"),
    ("fal-ai/bytedance/seedance/v1/pro/fast/image-to-video", "seedance"),
    ("fal-ai/minimax/hailuo-02/standard/image-to-video", "hailuo"),
    ("fal-ai/veo3.1/image-to-video", "veo"), ("fal-ai/veo3/image-to-video", "veo"),
    ("fal-ai/vidu/q1/reference-to-video", "vidu-reference"),
])
def test_video_apps_find_their_family(app: str, name: str) -> None:
    assert preset_for("video", app).name == name


@pytest.mark.parametrize("app, name", [
    (QWEN, "qwen-image-edit"), ("fal-ai/qwen-image-edit-2509", "qwen-image-edit"),
    ("fal-ai/qwen-image-edit", "qwen-image-edit-single"), ("fal-ai/flux-pro/kontext/multi", "flux-kontext"),
    ("fal-ai/nano-banana/edit", "gemini-image"), ("fal-ai/gemini-25-flash-image/edit", "gemini-image"),
])
def test_image_apps_find_their_family(app: str, name: str) -> None:
    assert preset_for("image", app).name == name


@pytest.mark.parametrize("app", [
    "fal-ai/kling-video/v2.1/master/text-to-video",  # a sibling with other fields (no image)
    "fal-ai/veo3.1/reference-to-video",  # image_urls only: no image_url
    "fal-ai/wan/v2.2-a14b/image-to-video/turbo",  # no num_frames
    "fal-ai/nano-banana",  # text-to-image, not the edit app
])
def test_a_sibling_app_with_other_fields_has_no_preset(app: str) -> None:
    kind = "image" if "banana" in app else "video"
    with pytest.raises(ConfigError, match="no built-in fal preset"):
        preset_for(kind, app)


def test_an_unknown_app_without_arguments_is_refused_naming_the_fix() -> None:
    with pytest.raises(ConfigError) as e:
        preset_for("video", "someone/their-i2v-app")
    assert "someone/their-i2v-app" in e.value.message
    assert "[video.arguments]" in (e.value.hint or "") and "image_field" in (e.value.hint or "")
    with pytest.raises(ConfigError) as e3:
        preset_for("image", "someone/their-edit-app")
    assert "[image.arguments]" in (e3.value.hint or "") and "references_field" in (e3.value.hint or "")
    with pytest.raises(ConfigError) as e2:
        preset_for("video", "fal-ai/kling-video/v2.1/standard/image-to-vide")  # a typo: the close id is offered
    assert KLING in (e2.value.hint or "")


def test_an_arguments_table_builds_a_preset() -> None:
    p = preset_for("video", "someone/their-i2v-app", {
        "image_field": "start_image", "references_field": "refs", "max_references": 2, "duration_field": "secs",
        "duration_style": "number", "durations": [4, 8], "seed_field": "seed", "fixed": {"resolution": "720p"}})
    assert (p.image_field, p.references_field, p.capabilities.references) == ("start_image", "refs", 2)
    assert p.capabilities.durations == (4.0, 8.0) and p.format_duration(8.0, 24.0) == 8.0
    assert p.fixed == {"resolution": "720p"} and p.output_field == "video"
    on_kling = from_arguments("video", KLING, {"fixed": {"cfg_scale": 0.7}}, preset_for("video", KLING))
    assert on_kling.name == "kling + arguments" and on_kling.image_field == "image_url"
    assert on_kling.fixed == {"negative_prompt": "blur, distort, and low quality", "cfg_scale": 0.7}


@pytest.mark.parametrize("arguments, words", [
    ({"duration_style": "minutes"}, "duration_style = 'minutes' is not one of string, seconds_s, number, frames"),
    ({"image_feild": "x"}, "unknown key 'image_feild'"),
    ({"image_field": 3}, "image_field must be a field name"),
    ({"durations": ["five"]}, "durations must be numbers"),
    ({"fixed": ["resolution"]}, "fixed must be a table"),
    ({"frame_rate": 0}, "frame_rate must be frames per second"),
])
def test_a_bad_arguments_table_is_refused_naming_the_key(arguments: dict[str, object], words: str) -> None:
    with pytest.raises(ConfigError) as e:
        preset_for("video", "someone/their-i2v-app", arguments)
    assert words in e.value.message
    if "unknown key" in words:
        assert "image_field" in (e.value.hint or "")


def request(seconds: float, fps: float = 24.0, width: int = 1280, height: int = 720,
            refs: tuple[ImageInput, ...] = ()) -> VideoRequest:
    key = ImageInput("keyframe", "k" * 64, png((200, 10, 10)))
    return VideoRequest(prompt="waves", keyframe=key, num_frames=round(seconds * fps), fps=fps, width=width,
                        height=height, seed=7, references=refs)


def test_each_family_writes_fals_fields() -> None:
    kling = FalVideoGenerator(model=KLING).input_for(request(5))
    assert kling["duration"] == "5" and kling["image_url"].startswith("data:image/png;base64,")
    assert "seed" not in kling and "aspect_ratio" not in kling
    k26 = FalVideoGenerator(model="fal-ai/kling-video/v2.6/pro/image-to-video").input_for(request(9))
    assert "start_image_url" in k26 and "image_url" not in k26 and k26["duration"] == "10"
    assert k26["generate_audio"] is False
    wan = FalVideoGenerator(model="fal-ai/wan/v2.2-a14b/image-to-video").input_for(request(4.4))
    assert wan["num_frames"] == 5 * 16 and wan["frames_per_second"] == 16  # whole seconds at fal's 16 fps
    assert wan["aspect_ratio"] == "16:9" and wan["seed"] == 7
    seedance = FalVideoGenerator(model="fal-ai/bytedance/seedance/v1/pro/fast/image-to-video")
    assert seedance.input_for(request(3))["duration"] == "3"
    hailuo = FalVideoGenerator(model="fal-ai/minimax/hailuo-02/standard/image-to-video").input_for(request(5))
    assert hailuo["duration"] == "6" and hailuo["prompt_optimizer"] is False
    veo = FalVideoGenerator(model="fal-ai/veo3.1/fast/image-to-video").input_for(request(5, height=1280,
                                                                                         width=720))
    assert veo["duration"] == "6s" and veo["aspect_ratio"] == "9:16" and veo["generate_audio"] is False
    views = tuple(ImageInput(f"v{i}", str(i) * 64, png((i, i, i))) for i in range(8))
    vidu = FalVideoGenerator(model="fal-ai/vidu/q1/reference-to-video").input_for(request(5, refs=views))
    assert "duration" not in vidu and "image_url" not in vidu
    assert len(vidu["reference_image_urls"]) == 7  # the keyframe, then 6 of memory's views: fal's 7 at most


def test_a_duration_the_model_does_not_make_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"duration = 7 is not one .*5, 10 seconds"):
        FalVideoGenerator(model=KLING, duration=7)
    assert FalVideoGenerator(model="fal-ai/veo3.1/image-to-video", duration=8).seconds(request(3)) == 8.0


def test_default_apps_are_priced_where_fal_states_a_price_and_unpriced_elsewhere() -> None:
    prices = PriceTable.builtin()
    expected = {"kling": 0.056, "wan": 0.08, "seedance": 0.0486, "hailuo": 0.045}
    for name, usd in expected.items():
        price = prices.price("fal", DEFAULT_APPS[name])
        assert price is not None and price.per_second == pytest.approx(usd)
        assert "fal.ai/models/" in price.source and "2026-12-07" in price.source
    assert BUILTIN["fal-ai/veo3.1/fast/image-to-video"].per_second == pytest.approx(0.10)
    # 5 s of Kling 2.1 standard: fal's "$0.28 for 5 s"
    assert prices.cost("fal", KLING, {"video_seconds": 5.0}) == pytest.approx(0.28)
    for app in (QWEN, "fal-ai/nano-banana/edit", "fal-ai/vidu/q1/reference-to-video"):
        assert prices.price("fal", app) is None and prices.cost("fal", app, {"images": 1}) is None  # never 0
    assert {p.name for p in PRESETS} >= set(expected)


def test_backends_shows_the_configured_models_capabilities(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    caps = registry.capabilities("video", "fal", {"model": "fal-ai/vidu/q1/reference-to-video"})
    assert caps is not None and caps.references == 6 and caps.durations == (5.0,)
    assert registry.capabilities("video", "fal", {}) is None  # no model: nothing to say
    assert registry.capabilities("video", "animatic", {}) is None  # declares none
    config = tmp_path / "fal.toml"
    config.write_text('profile = "preview"\n[video]\nbackend = "fal"\nmodel = "fal-ai/vidu/q1/reference-to-video"\n'
                      '[image]\nbackend = "fal"\nmodel = "fal-ai/qwen-image-edit-plus"\n')
    code, out = invoke("backends", "--config", str(config), "--json")
    assert code == 0, out
    rows = {(b["kind"], b["name"]): b for b in json.loads(out)}
    video = rows[("video", "fal")]["capabilities"]
    assert video["references"] == 6 and video["durations"] == [5.0] and "up to 6 reference images" in video["summary"]
    assert rows[("image", "fal")]["capabilities"]["references"] == 3
    assert rows[("video", "animatic")]["capabilities"] is None
    code, out = invoke("backends", "--config", str(config))
    assert code == 0 and "up to 6 reference images" in out
    monkeypatch.setenv("FAL_KEY", FAL_TEST_KEY)
    code, out = invoke("backends", "--check", "--config", str(config), "--json")
    assert code == 0, out
    checks = {c["kind"]: c for c in json.loads(out)["backends"]}
    assert checks["video"]["capabilities"]["references"] == 6
    assert checks["image"]["capabilities"]["summary"] == "first frame; up to 3 reference images; priced per image"


# ---------------------------------------------------------------------------- keyframes on fal (loopback)


@pytest.fixture
def fal(monkeypatch: pytest.MonkeyPatch) -> Iterator[FalServer]:
    server = FalServer(job_seconds=0.1)
    monkeypatch.setenv("FAL_KEY", FAL_TEST_KEY)
    monkeypatch.setenv("CODIRECTOR_PLUGINS", "codirector_test_plugins")
    yield server
    server.close()


def image_config(path: Path, server: FalServer, **run: object) -> Path:
    table = {**FAST_RUN, **run}
    lines = ['profile = "preview"', "[vlm]", 'backend = "counting"', "[video]", 'backend = "counting"',
             "[embedder]", 'backend = "counting"',
             "[image]", 'backend = "fal"', f'model = "{QWEN}"', f'base_url = "{server.url}"', "poll_seconds = 0.02",
             "[run]", *(f"{k} = {json.dumps(v)}" for k, v in table.items())]
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.mark.parametrize("size", [(64, 36), (64, 48)])  # the server's own size, and one that must be cropped to
def test_keyframes_come_from_fals_multi_reference_edit(tmp_path: Path, fal: FalServer, _isolated_home: Path,
                                                       size: tuple[int, int]) -> None:
    width, height = size
    story = write_story(tmp_path / "pier.yaml", shots=2)
    code, out = invoke("run", str(story), "--config", str(image_config(tmp_path / "fal.toml", fal, width=width,
                                                                              height=height)))
    assert code == 0, out
    studio = Studio(_isolated_home)
    log = studio.log("pier")
    keyframes = [e for e in log if e.type == "KeyframeGenerated"]
    with_refs = [e for e in keyframes if e.payload["reference_blobs"]]
    assert keyframes and with_refs
    image_jobs = [j for j in fal.jobs.values() if j.kind == "image"]
    for event in with_refs:
        sent = [studio.blobs.get(b) for b in event.payload["reference_blobs"][:3]]
        job = next(j for j in image_jobs if [decode_data_uri(u) for u in j.body.get("image_urls", [])] == sent)
        assert job.model == QWEN and job.body["image_size"] == {"width": width, "height": height}
        assert job.body["seed"] is not None and "image_url" not in job.body
        server_image = Image.open(io.BytesIO(fal.output_of(job))).convert("RGB")
        recorded = Image.open(io.BytesIO(studio.blobs.get(event.payload["blob"]))).convert("RGB")
        assert recorded.size == (width, height)
        if server_image.size == (width, height):
            assert recorded.tobytes() == server_image.tobytes()  # the server's pixels, untouched
        else:
            assert recorded.tobytes() == cover(server_image, width, height).tobytes()  # only resized to the run
    for path in _isolated_home.rglob("*"):
        if path.is_file():
            assert FAL_TEST_KEY.encode() not in path.read_bytes()


def test_the_image_backend_sends_up_to_its_limit_as_data_uris(fal: FalServer) -> None:
    from codirector.generators.base import ImageRequest

    gen = FalImageGenerator(model="fal-ai/nano-banana/edit", base_url=fal.url, poll_seconds=0.02)
    refs = tuple(ImageInput(f"r{i}", str(i) * 64, png((40 * i, 0, 0))) for i in range(5))
    body = gen.input_for(ImageRequest("a pier", "keyframe", 3, 1280, 720, refs))
    assert [decode_data_uri(u) for u in body["image_urls"]] == [r.data for r in refs[:3]]
    assert body["aspect_ratio"] == "16:9" and body["seed"] == 3


# ---------------------------------------------------------------------------- pre-flight (CLI)


@pytest.mark.parametrize("video, key, words", [
    (f'model = "{KLING}"', False, "FAL_KEY is not set"),
    ('model = "someone/their-i2v-app"', True, "has no built-in fal preset"),
    (f'model = "{KLING}"\nduration = 7', True, "duration = 7 is not one"),
])
def test_the_preflight_names_a_fal_problem_before_anything_is_written(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, _isolated_home: Path, video: str, key: bool,
        words: str) -> None:
    monkeypatch.setenv("CODIRECTOR_PLUGINS", "codirector_test_plugins")
    if key:
        monkeypatch.setenv("FAL_KEY", FAL_TEST_KEY)
    else:
        monkeypatch.delenv("FAL_KEY", raising=False)
    config = tmp_path / "fal.toml"
    config.write_text("\n".join(['profile = "preview"', "[vlm]", 'backend = "counting"', "[image]",
                                 'backend = "counting"', "[embedder]", 'backend = "counting"', "[video]",
                                 'backend = "fal"', video, "[run]",
                                 *(f"{k} = {json.dumps(v)}" for k, v in FAST_RUN.items())]) + "\n")
    story = write_story(tmp_path / "pier.yaml", shots=1)
    code, out = invoke("run", str(story), "--config", str(config))
    assert code == 13, out
    assert words in out and "[video] fal" in out and "nothing was written" in out
    if _isolated_home.exists():  # the pre-flight comes before the first event: no story, no log
        assert len(Studio(_isolated_home).stories()) == 0
