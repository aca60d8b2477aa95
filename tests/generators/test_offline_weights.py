"""Weights that cannot be had fail in seconds, naming the model, where it looked and the fix; weights
in the Hugging Face cache are found without the network.

No test here waits on a network timeout: downloads are off (``HF_HUB_OFFLINE=1``, the suite's default)
or the hub is a closed port on 127.0.0.1 (refused at once). The cache is a folder of this test, laid
out the way huggingface_hub lays it out (``models--org--name/refs/main`` + ``snapshots/REV/...``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from codirector.errors import BackendError
from codirector.generators import diffusers_video, embedder, hub
from codirector.generators.diffusers_image import DiffusersImageGenerator
from codirector.generators.diffusers_video import DiffusersVideoGenerator
from codirector.generators.embedder import OpenClipEmbedder

CLOSED = "http://127.0.0.1:9"  # the discard port: nothing listens, a connection is refused at once
LAION = "laion/CLIP-ViT-B-32-laion2B-s34B-b79K"


@pytest.fixture(autouse=True)
def hf_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """An empty Hugging Face cache of this test's own, and no remembered hub answer."""
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    hub.forget_reachability()
    yield tmp_path / "hf" / "hub"
    hub.forget_reachability()


def unreachable_hub(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setenv("HF_ENDPOINT", CLOSED)
    for proxy in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(proxy, raising=False)


def cached(cache: Path, repo: str, files: dict[str, bytes]) -> Path:
    """Put ``files`` into the cache as revision main of ``repo``; the snapshot folder."""
    folder = cache / ("models--" + repo.replace("/", "--"))
    revision = "0123456789abcdef0123456789abcdef01234567"
    (folder / "refs").mkdir(parents=True)
    (folder / "refs" / "main").write_text(revision)
    snapshot = folder / "snapshots" / revision
    for name, data in files.items():
        (snapshot / name).parent.mkdir(parents=True, exist_ok=True)
        (snapshot / name).write_bytes(data)
    return snapshot


def third_party(records: list[logging.LogRecord]) -> list[str]:
    return [f"{r.name}: {r.getMessage()}" for r in records
            if r.levelno >= logging.WARNING and not r.name.startswith("codirector")]


@pytest.mark.parametrize("hub_state", ["offline", "unreachable"])
def test_missing_open_clip_weights_fail_fast_with_the_model_the_places_and_the_fix(
        hub_state: str, hf_cache: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    if hub_state == "unreachable":
        unreachable_hub(monkeypatch)
    caplog.set_level(logging.DEBUG)
    started = time.perf_counter()
    with pytest.raises(BackendError) as info:
        OpenClipEmbedder("ViT-B-32", "laion2b_s34b_b79k", device="cpu").embed_texts(["a lighthouse"])
    assert time.perf_counter() - started < 5
    err = info.value
    assert "ViT-B-32/laion2b_s34b_b79k" in err.message
    assert ("downloads are off" if hub_state == "offline" else "127.0.0.1:9 cannot be reached") in err.message
    hint = err.hint or ""
    assert str(hf_cache / "models--laion--CLIP-ViT-B-32-laion2B-s34B-b79K") in hint  # where it looked
    assert 'pretrained = "/path/to/open_clip_model.safetensors"' in hint and 'pretrained = "none"' in hint
    assert f"hf download {LAION}" in hint
    assert third_party(caplog.records) == []  # no library was asked, so none logged


@pytest.mark.parametrize("hub_state", ["offline", "unreachable"])
@pytest.mark.parametrize("kind", ["image", "video"])
def test_missing_diffusers_weights_fail_fast_with_the_model_the_places_and_the_fix(
        kind: str, hub_state: str, hf_cache: Path, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    if hub_state == "unreachable":
        unreachable_hub(monkeypatch)
    caplog.set_level(logging.DEBUG)
    model = "Wan-AI/Wan2.2-I2V-A14B-Diffusers" if kind == "video" else "Qwen/Qwen-Image-Edit-2509"
    gen = (DiffusersVideoGenerator(model=model, allow_cpu=True, device="cpu") if kind == "video"
           else DiffusersImageGenerator(model=model, device="cpu"))
    started = time.perf_counter()
    with pytest.raises(BackendError) as info:
        gen.load()
    assert time.perf_counter() - started < 5
    err = info.value
    assert model in err.message
    assert ("downloads are off" if hub_state == "offline" else "cannot be reached") in err.message
    assert str(hf_cache / ("models--" + model.replace("/", "--"))) in (err.hint or "")
    assert f'[{kind}] model = "/path/to/folder"' in (err.hint or "") and "model_index.json" in (err.hint or "")
    assert not gen.loaded and third_party(caplog.records) == []


def test_a_tag_in_the_cache_is_found_without_the_network_with_its_own_settings(
        hf_cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    unreachable_hub(monkeypatch)  # were the network asked, the check would say so
    snapshot = cached(hf_cache, "timm/vit_base_patch32_clip_224.openai", {"open_clip_model.safetensors": b"w"})
    found = embedder.check(model="ViT-B-32", pretrained="openai")
    assert found.ready and str(snapshot / "open_clip_model.safetensors") in found.detail
    weights, source = OpenClipEmbedder("ViT-B-32", "openai")._resolve_weights()
    assert (weights, source) == (str(snapshot / "open_clip_model.safetensors"), "cached")
    # loaded from the file, the model keeps what the tag says: OpenAI's CLIP was trained with QuickGELU
    extra = embedder.cached_tag_options("ViT-B-32", "openai")
    assert extra["force_quick_gelu"] is True and extra["image_interpolation"] == "bicubic"
    assert len(extra["image_mean"]) == 3
    assert embedder.cached_tag_options("ViT-B-32", "laion2b_s34b_b79k")["force_quick_gelu"] is False


def test_tag_table_read_from_source_agrees_with_open_clip() -> None:
    import open_clip

    table = embedder.tag_table()
    assert table["ViT-B-32"]["laion2b_s34b_b79k"]["hf_hub"] == f"{LAION}/"
    compared = 0
    for model, tags in table.items():
        for tag, settings in tags.items():
            want = open_clip.pretrained.get_pretrained_cfg(model, tag)
            assert settings.get("hf_hub", "") == want.get("hf_hub", ""), (model, tag)
            assert bool(settings.get("quick_gelu")) == bool(want.get("quick_gelu")), (model, tag)
            compared += 1
    assert compared > 100


def test_checks_say_what_is_missing_and_how_to_fix_it_without_importing_torch(
        hf_cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    found = embedder.check(model="ViT-B-32", pretrained="laion2b_s34b_b79k", offline=True)
    assert not found.ready and "downloads are off" in found.detail and 'pretrained = "none"' in (found.fix or "")
    assert embedder.check(model="ViT-B-32", pretrained="laion2b_s34b_b79k", allow_random=True).ready
    assert not embedder.check(model="ViT-B-32", pretrained="no_such_tag").ready
    folder = cached(hf_cache, "org/tiny-i2v", {"model_index.json": b'{"_class_name": "WanImageToVideoPipeline"}'})
    found = diffusers_video.check(model="org/tiny-i2v", allow_cpu=True)
    assert found.ready and str(folder) in found.detail  # a repo in the cache is found by its id
    found = diffusers_video.check(model="org/absent", allow_cpu=True)
    assert not found.ready and "[video] model" in (found.fix or "")


def test_the_hub_check_is_quick_remembered_and_goes_through_a_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    unreachable_hub(monkeypatch)
    started = time.perf_counter()
    ok, why = hub.hub_reachable()
    assert not ok and "http://127.0.0.1:9 cannot be reached" in why and time.perf_counter() - started < 2.5
    assert hub.hub_reachable() == (ok, why)  # remembered
    hub.forget_reachability()
    monkeypatch.setenv("HF_ENDPOINT", "https://hub.example.invalid")
    monkeypatch.setenv("HTTPS_PROXY", "http://127.0.0.1:9")
    ok, why = hub.hub_reachable()
    assert not ok and "through the proxy http://127.0.0.1:9" in why
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert hub.hub_reachable() == (False, "downloads are off (HF_HUB_OFFLINE is set)")


def test_the_cuda_guess_agrees_with_torch_and_sees_cuda_visible_devices(monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    assert hub.cuda_guess()[0] == torch.cuda.is_available()  # what the pre-flight guesses is what torch finds
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    assert hub.cuda_guess() == (False, "no CUDA device (CUDA_VISIBLE_DEVICES='' hides them all)")
