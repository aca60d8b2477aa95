"""Which OpenAI image model the `openai` profile uses, what it costs, and what happens with a retired one.

OpenAI shut gpt-image-1 down on 2026-10-23 and names gpt-image-2.6-sunburst as the replacement; the
profile's default goes over the wire to a real loopback server that speaks the OpenAI format, its usage
is priced at the model page's rates, and a shut-down model is refused by the pre-flight (for OpenAI's
own API) or named, with the setting to change, when a server refuses it.
"""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import pytest
from openai_loopback import OpenAIServer, Reply, image_reply, png

from codirector.engine.recording.budget import Budget
from codirector.engine.recording.recorder import CallRecorder
from codirector.engine.recording.writer import RunWriter
from codirector.errors import BackendError, NotReady
from codirector.generators import registry
from codirector.generators.base import Backends, ImageInput, ImageRequest
from codirector.generators.build import build_backends
from codirector.generators.openai_images import OpenAIImageGenerator
from codirector.generators.openai_vlm import OpenAIVLM
from codirector.generators.preflight import check_backend, preflight, require_ready
from codirector.generators.preview import AnimaticVideoGenerator
from codirector.generators.prices import BUILTIN, PriceTable, image_output_tokens_bound
from codirector.generators.profiles import (
    OPENAI_IMAGE_MODEL,
    OPENAI_SHUTDOWNS,
    PROFILES,
    model_notice,
    model_notices,
    resolve,
)

from support import TINY_CLIP, TINY_CLIP_CONFIG, HashEmbedder, png_bytes

EDITS = "/v1/images/edits"
SUNBURST = "gpt-image-2.6-sunburst"
TODAY = date(2026, 11, 30)


def keyframe(*refs: ImageInput) -> ImageRequest:
    return ImageRequest(prompt="Ada on the pier", purpose="keyframe", seed=3, width=64, height=36, references=refs)


def config_with(tmp_path: Path, **tables: dict[str, str]) -> Path:
    """The preview profile with a tiny random open_clip embedder and the given tables (``vlm={...}``)."""
    clip = tmp_path / f"{TINY_CLIP}.json"
    clip.write_text(json.dumps(TINY_CLIP_CONFIG))
    lines = ['profile = "preview"', "[embedder]", 'backend = "open_clip"', f'model = "{TINY_CLIP}"',
             'pretrained = "none"', f'model_config = "{clip}"']
    for name, table in tables.items():
        lines += [f"[{name}]", *(f"{k} = {json.dumps(v)}" for k, v in table.items())]
    path = tmp_path / "c.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


# ---------------------------------------------------------------------------- the default, on the wire


def test_the_openai_profile_sends_gpt_image_2_6_sunburst(openai_server: OpenAIServer, api_key: str) -> None:
    assert OPENAI_IMAGE_MODEL == SUNBURST == PROFILES["openai"]["image"]["model"]
    assert OpenAIImageGenerator().model == SUNBURST  # the backend's own default is the profile's
    options = {**resolve("openai").table("image"), "base_url": openai_server.base_url}
    image = registry.create("image", options.pop("backend"), options)
    openai_server.enqueue(EDITS, image_reply(png((30, 20))))
    result = image.generate(keyframe(ImageInput("Ada", "a", png_bytes((200, 0, 0)))))
    [seen] = openai_server.requests(EDITS)
    assert seen.text("model") == SUNBURST and result.model == SUNBURST
    assert seen.text("size") == "1536x1024" and seen.text("n") == "1"  # a size every GPT image model takes
    assert not seen.fields("quality") and not seen.fields("input_fidelity")  # nothing else unless configured
    assert sorted(p.name for p in seen.parts) == ["image[]", "model", "n", "prompt", "size"]


def test_its_usage_is_priced_at_the_model_pages_rates(openai_server: OpenAIServer, api_key: str) -> None:
    price = BUILTIN[SUNBURST]  # developers.openai.com/api/docs/models/gpt-image-2.6-sunburst, 2026-11-30
    assert (price.text_input_per_million, price.input_per_million, price.output_per_million) == (5.0, 8.0, 30.0)
    usage = {"input_tokens": 1300, "output_tokens": 5000, "total_tokens": 6300,
             "input_tokens_details": {"text_tokens": 100, "image_tokens": 1200}}
    openai_server.enqueue(EDITS, Reply(200, {"created": 0, "data": image_reply(png()).body["data"], "usage": usage}))
    result = OpenAIImageGenerator(base_url=openai_server.base_url).generate(
        keyframe(ImageInput("Ada", "a", png_bytes((0, 200, 0)))))
    assert result.usage["input_tokens_details"] == {"text_tokens": 100, "image_tokens": 1200}
    cost = PriceTable.builtin().cost("openai", result.model, result.usage)
    assert cost == pytest.approx((100 * 5.00 + 1200 * 8.00 + 5000 * 30.00) / 1e6)
    assert PriceTable.builtin().cost("openai", "gpt-image-1", result.usage) == pytest.approx(
        (100 * 5.00 + 1200 * 10.00 + 5000 * 40.00) / 1e6)  # old logs keep their price


def test_its_worst_case_is_not_guessed_from_gpt_image_1(openai_server: OpenAIServer, api_key: str,
                                                        call_log: object) -> None:
    """No per-image output counts are documented for it: no bound is invented, the budget says so."""
    request = keyframe(ImageInput("Ada", "a", png_bytes((0, 0, 200))))
    assert image_output_tokens_bound("1536x1024", None, SUNBURST) is None
    assert OpenAIImageGenerator(base_url=openai_server.base_url).usage_bound(request) is None
    old = OpenAIImageGenerator(model="gpt-image-1", base_url=openai_server.base_url).usage_bound(request)
    assert old is not None and old["output_tokens"] == image_output_tokens_bound("1536x1024", "high") == 6208

    openai_server.answer_agents()
    budget = Budget(1.0, PriceTable.with_overrides({"hash-16": {"per_second": 0}}))
    backends = Backends(vlm=OpenAIVLM(model="gpt-4.1", base_url=openai_server.base_url),
                        image=OpenAIImageGenerator(base_url=openai_server.base_url),
                        video=AnimaticVideoGenerator(), embedder=HashEmbedder())
    store, blobs, story = call_log.store, call_log.blobs, call_log.story  # type: ignore[attr-defined]
    recorder = CallRecorder(RunWriter(store, story, "main", head=store.head(story)), blobs, backends, budget=budget)
    recorder.image(request, shot=1)
    assert budget.notes == [f"the first call to {SUNBURST!r} was not bounded by the budget (its backend states no "
                            "worst case)"]
    assert recorder.stats.spent_usd > 0  # priced, and counted against --budget


# ---------------------------------------------------------------------------- retired models


def test_no_profile_default_is_a_model_openai_has_shut_down() -> None:
    """Judged on the day the shutdown table was last checked (``TODAY``), not the wall clock: CI must not
    start failing on a date. Users see the note below on every run before then, and a refusal after."""
    for name in PROFILES:
        for notice in model_notices(resolve(name), TODAY):
            assert not notice.gone, f"profile {name!r}: {notice.message}; {notice.fix}"
    [vlm] = model_notices(resolve("openai"), TODAY)  # gpt-4.1 is deprecated: a note, not a refusal (yet)
    assert vlm.message == "OpenAI shuts down [vlm] model 'gpt-4.1' on 2027-01-14 (in 45 days)"
    assert 'set [vlm] model = "gpt-6-luna"' in vlm.fix


def test_the_shutdown_dates_openai_announced() -> None:
    gone = {m: s.day.isoformat() for m, s in OPENAI_SHUTDOWNS.items()}
    assert gone["gpt-image-1"] == "2026-10-23"
    assert gone["gpt-image-1-mini"] == gone["gpt-image-1.5"] == gone["chatgpt-image-latest"] == "2026-12-01"
    assert gone["gpt-4.1"] == "2027-01-14"
    assert SUNBURST not in OPENAI_SHUTDOWNS and OPENAI_SHUTDOWNS["gpt-image-1"].replacement == SUNBURST
    tomorrow = model_notice("image", {"model": "gpt-image-1.5"}, TODAY)
    assert tomorrow is not None and not tomorrow.gone and "(in 1 day)" in tomorrow.message
    assert model_notice("image", {"model": "gpt-image-1.5"}, date(2026, 12, 1)).gone  # type: ignore[union-attr]
    # another server may serve any name: only OpenAI's own API is judged
    assert model_notice("image", {"model": "gpt-image-1", "base_url": "http://localhost:8000/v1"}, TODAY) is None
    assert model_notice("image", {"backend": "diffusers", "model": "gpt-image-1"}, TODAY) is None


def test_the_preflight_refuses_a_shut_down_image_model_with_its_replacement(
    tmp_path: Path, api_key: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    cfg = resolve(config_path=config_with(tmp_path, image={"backend": "openai", "model": "gpt-image-1"}))
    [problem] = preflight(cfg).problems
    assert problem.backends == ("[image] openai",)
    assert problem.what == "OpenAI shut down [image] model 'gpt-image-1' on 2026-10-23; every request to it fails"
    assert problem.fix.startswith(f'set [image] model = "{SUNBURST}" in your --config file')
    with pytest.raises(NotReady) as info:
        require_ready(cfg)
    assert "cannot run here: 1 problem; nothing was written" in info.value.message
    assert info.value.exit_code == 13

    table = {"backend": "openai", "model": "gpt-image-1"}
    found = check_backend("image", table)  # and an unset key is listed with it, not hidden by it
    monkeypatch.delenv("OPENAI_API_KEY")
    both = check_backend("image", table)
    assert not found.ready and not both.ready and "OPENAI_API_KEY is not set" in both.detail
    assert SUNBURST in (both.fix or "") and "export OPENAI_API_KEY" in (both.fix or "")


def test_a_shut_down_vlm_is_refused_before_any_backend_is_built(tmp_path: Path, api_key: str,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    cfg = resolve(config_path=config_with(tmp_path, vlm={"backend": "openai", "model": "gpt-4.1"}))
    with pytest.raises(NotReady) as info:
        build_backends(cfg, today=date(2027, 1, 14))
    assert "[vlm] openai: OpenAI shut down [vlm] model 'gpt-4.1' on 2027-01-14" in info.value.message
    assert 'fix: set [vlm] model = "gpt-6-luna"' in info.value.message
    backends = build_backends(cfg, today=TODAY)  # before the date: it runs, and says so
    assert backends.vlm.model == "gpt-4.1"
    assert any(n.startswith("OpenAI shuts down [vlm] model 'gpt-4.1' on 2027-01-14 (in 45 days)")
               for n in backends.notes)


def test_a_server_refusing_a_retired_model_names_the_setting_and_the_replacement(
    openai_server: OpenAIServer, api_key: str
) -> None:
    said = "The model `gpt-image-1` does not exist or you do not have access to it."
    openai_server.enqueue(EDITS, Reply(404, {"error": {"message": said, "type": "invalid_request_error",
                                                       "param": None, "code": "model_not_found"}}))
    gen = OpenAIImageGenerator(model="gpt-image-1", base_url=openai_server.base_url, max_retries=0)
    with pytest.raises(BackendError) as info:
        gen.generate(keyframe(ImageInput("Ada", "a", png_bytes((9, 9, 9)))))
    assert info.value.message == (
        f"{openai_server.base_url} refused [image] model 'gpt-image-1' for the keyframe image request (HTTP 404): "
        f"OpenAI shut that model down on 2026-10-23 ({said})")
    assert (info.value.hint or "").startswith(f'set [image] model = "{SUNBURST}" in your --config file')
    assert len(openai_server.requests(EDITS)) == 1

    # a model the table does not know keeps the general message
    openai_server.enqueue(EDITS, Reply(404, {"error": {"message": "no such model", "code": "model_not_found"}}))
    with pytest.raises(BackendError, match="has no model 'my-image'") as other:
        OpenAIImageGenerator(model="my-image", base_url=openai_server.base_url, max_retries=0).generate(
            keyframe(ImageInput("Ada", "a", png_bytes((9, 9, 9)))))
    assert "shut" not in other.value.message
