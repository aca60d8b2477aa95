"""The diffusers backends on tiny random pipelines built offline (tests/generators/conftest.py).

Real diffusers components at toy size, loaded back from disk by path through the generators:
sizes and frame counts, seeds (same seed, same pixels), references reaching the pipeline
(a real IP-Adapter on SD; the image list and the stitched sheet), the family rules, the
offline-weights error and the "no CUDA" fallback of the profiles.
"""

from __future__ import annotations

import io
from importlib.util import find_spec
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from codirector.errors import BackendError, ConfigError
from codirector.generators import diffusers_video
from codirector.generators.base import ImageInput, ImageRequest, VideoRequest
from codirector.generators.build import build_backends
from codirector.generators.diffusers_image import DiffusersImageGenerator
from codirector.generators.diffusers_video import DiffusersVideoGenerator
from codirector.generators.profiles import resolve
from codirector.generators.video_io import read_frames

from support import png_bytes

# found, not imported: collecting this file (on every xdist worker) does not load torch and diffusers
if find_spec("torch") is None or find_spec("diffusers") is None:
    pytest.skip("torch and diffusers are not installed", allow_module_level=True)

RED, BLUE = (250, 10, 10), (10, 10, 250)


def cuda() -> bool:
    import torch

    return bool(torch.cuda.is_available())


def pixels(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB")).astype(int)


def flat(colour: tuple[int, int, int], size: tuple[int, int] = (32, 32)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, colour).save(buf, format="PNG")
    return buf.getvalue()


def keyframe(seed: int = 3, refs: tuple[ImageInput, ...] = (), w: int = 32, h: int = 32) -> ImageRequest:
    return ImageRequest(prompt="two friends on a pier at dawn", purpose="keyframe", seed=seed, width=w, height=h,
                        references=refs)


REFS = (ImageInput("Ada", "a", flat(RED)), ImageInput("Ben", "b", flat(BLUE, (16, 32))))


@pytest.fixture(scope="module")
def sd(tiny_pipelines: Any) -> DiffusersImageGenerator:
    return DiffusersImageGenerator(model=str(tiny_pipelines.sd), steps=2, device="cpu")


@pytest.fixture(scope="module")
def sd_ip(tiny_pipelines: Any) -> DiffusersImageGenerator:
    adapter = {"repo": str(tiny_pipelines.ip_adapter), "weight_name": "ip_adapter.safetensors", "scale": 0.8}
    return DiffusersImageGenerator(model=str(tiny_pipelines.sd), steps=2, device="cpu", ip_adapter=adapter)


@pytest.fixture(scope="module")
def wan(tiny_pipelines: Any) -> DiffusersVideoGenerator:
    return DiffusersVideoGenerator(model=str(tiny_pipelines.wan), steps=2, device="cpu", allow_cpu=True)


# ---------------------------------------------------------------------------- images


def test_sd_text_to_image_size_and_seeds(sd: DiffusersImageGenerator) -> None:
    a, again, other = sd.generate(keyframe(3)), sd.generate(keyframe(3)), sd.generate(keyframe(4))
    assert type(sd.load()).__name__ == "StableDiffusionPipeline"  # auto from model_index.json
    assert (a.width, a.height, a.model) == (32, 32, sd.model)
    assert Image.open(io.BytesIO(a.png)).size == (32, 32)
    assert a.png == again.png  # same seed, same pixels
    assert np.abs(pixels(a.png) - pixels(other.png)).max() > 0
    wide = sd.generate(keyframe(3, w=48, h=32))
    assert Image.open(io.BytesIO(wide.png)).size == (48, 32)


def test_sd_without_adapter_follows_the_text_and_says_so_once(sd: DiffusersImageGenerator) -> None:
    plain = sd.generate(keyframe(3))
    with_refs = sd.generate(keyframe(3, REFS))
    sd.generate(keyframe(5, REFS))
    assert with_refs.png == plain.png  # references are not passed ...
    assert len(sd.notes) == 1 and "ip_adapter" in sd.notes[0]  # ... and that is said once


def test_ip_adapter_references_steer_the_image(sd_ip: DiffusersImageGenerator, sd: DiffusersImageGenerator) -> None:
    red = sd_ip.generate(keyframe(3, REFS[:1]))
    both = sd_ip.generate(keyframe(3, REFS))
    assert red.png == sd_ip.generate(keyframe(3, REFS[:1])).png
    assert np.abs(pixels(red.png) - pixels(both.png)).max() > 10  # Ben's reference changes the picture
    # no references: the adapter gets a blank image at scale 0, so the picture is the text-only one
    assert np.abs(pixels(sd_ip.generate(keyframe(3)).png) - pixels(sd.generate(keyframe(3)).png)).max() <= 1
    assert sd_ip.reference_mode() == "ip_adapter" and sd_ip.notes == []


def test_size_rule_is_checked_before_loading(tiny_pipelines: Any) -> None:
    gen = DiffusersImageGenerator(model=str(tiny_pipelines.sd), steps=2, device="cpu")
    with pytest.raises(BackendError) as info:
        gen.generate(keyframe(1, w=36, h=32))
    assert "divisible by 8" in info.value.message and "width 36" in info.value.message
    assert "width = 32" in (info.value.hint or "") or "width = 40" in (info.value.hint or "")
    assert not gen.loaded


def recording_pipeline(seen: list[Any]) -> type:
    """A stand-in multi-reference pipeline: a real tiny SD that also takes ``image=`` and keeps what it got."""
    from diffusers import StableDiffusionPipeline

    class RecordingPipeline(StableDiffusionPipeline):  # type: ignore[misc]
        def __call__(self, *args: Any, image: Any = None, **kwargs: Any) -> Any:
            seen.append(image)
            return super().__call__(*args, **kwargs)

    return RecordingPipeline


def test_a_list_pipeline_gets_every_reference(tiny_pipelines: Any) -> None:
    seen: list[Any] = []
    gen = DiffusersImageGenerator(model=str(tiny_pipelines.sd), pipeline=recording_pipeline(seen), references="list",
                                  steps=2, device="cpu")
    result = gen.generate(keyframe(3, REFS))
    [images] = seen
    assert [im.getpixel((4, 4)) for im in images] == [RED, BLUE] and images[1].size == (16, 32)
    assert Image.open(io.BytesIO(result.png)).size == (32, 32)


def test_reference_conditioning_by_family() -> None:
    """What each family's pipeline is called with (classes from diffusers itself; no weights needed)."""
    plus = DiffusersImageGenerator(model="/nowhere/qwen-edit-plus", pipeline="QwenImageEditPlusPipeline", guidance=4.0)
    kwargs = plus.call_kwargs(keyframe(1, REFS))
    assert plus.reference_mode() == "list"
    assert [im.getpixel((4, 4)) for im in kwargs["image"]] == [RED, BLUE]
    assert "Picture 1 shows Ada. Picture 2 shows Ben." in kwargs["prompt"]
    assert kwargs["true_cfg_scale"] == 4.0 and kwargs["negative_prompt"] == " "
    assert kwargs["generator"].initial_seed() == 1
    blank = plus.call_kwargs(keyframe(1))["image"]  # an edit pipeline needs an image even without references
    assert len(blank) == 1 and blank[0].size == (32, 32)

    kontext = DiffusersImageGenerator(model="/nowhere/kontext", pipeline="FluxKontextPipeline")
    sheet = kontext.call_kwargs(keyframe(1, REFS))["image"]
    assert kontext.reference_mode() == "stitch"
    assert sheet.size == (32 + 16, 32)  # side by side at the frame's height, in order
    assert sheet.getpixel((8, 16)) == RED and sheet.getpixel((40, 16)) == BLUE
    assert "from left to right: Ada, Ben" in kontext.call_kwargs(keyframe(1, REFS))["prompt"]
    assert "image" not in kontext.call_kwargs(keyframe(1))  # Kontext also draws from text alone

    assert DiffusersImageGenerator(model="/x", pipeline="Flux2Pipeline").reference_mode() == "list"
    assert DiffusersImageGenerator(model="/x", pipeline="QwenImageEditPipeline").reference_mode() == "stitch"
    assert DiffusersImageGenerator(model="/x", pipeline="StableDiffusionXLPipeline").reference_mode() == "text"
    with pytest.raises(BackendError, match="divisible by 16"):
        kontext.check_inputs(keyframe(1, w=40, h=32))
    with pytest.raises(ConfigError, match="references"):
        DiffusersImageGenerator(model="/x", references="collage")
    with pytest.raises(ConfigError, match="weight_name"):
        DiffusersImageGenerator(model="/x", ip_adapter={"repo": "h94/IP-Adapter"})


def test_missing_weights_offline_name_the_model_the_cache_and_the_fix(monkeypatch: pytest.MonkeyPatch,
                                                                     tmp_path: Path) -> None:
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(tmp_path / "hf" / "hub"))
    gen = DiffusersImageGenerator(model="Qwen/Qwen-Image-Edit-2509", steps=2)
    with pytest.raises(BackendError) as info:
        gen.generate(keyframe(1))
    err = info.value
    assert "Qwen/Qwen-Image-Edit-2509" in err.message and "downloads are off" in err.message
    assert str(tmp_path / "hf" / "hub" / "models--Qwen--Qwen-Image-Edit-2509") in (err.hint or "")
    assert "local folder" in (err.hint or "")
    with pytest.raises(BackendError, match="not a folder"):
        DiffusersImageGenerator(model=str(tmp_path / "no-such-dir")).generate(keyframe(1))


# ---------------------------------------------------------------------------- video


def test_wan_clip_frames_size_and_seeds(wan: DiffusersVideoGenerator, sd: DiffusersImageGenerator) -> None:
    key = ImageInput("shot 1 keyframe", "k", sd.generate(keyframe(3)).png)
    req = VideoRequest(keyframe=key, prompt="they walk to the end of the pier", seed=11, num_frames=5, fps=4.0,
                       width=32, height=32)
    clip = wan.generate(req)
    frames = read_frames(clip.mp4)
    assert type(wan.load()).__name__ == "WanImageToVideoPipeline"
    assert (clip.frames, clip.fps, clip.width, clip.height) == (5, 4.0, 32, 32)
    assert len(frames) == 5 and frames[0].shape == (32, 32, 3) and frames[0].dtype == np.uint8
    assert wan.generate(req).mp4 == clip.mp4  # same seed, same bytes
    other = read_frames(wan.generate(VideoRequest(**{**req.__dict__, "seed": 12})).mp4)
    assert np.abs(np.stack(frames).astype(int) - np.stack(other).astype(int)).max() > 0


def test_family_rules_name_the_value_the_rule_and_the_nearest(tiny_pipelines: Any) -> None:
    gen = DiffusersVideoGenerator(model=str(tiny_pipelines.wan), allow_cpu=True, device="cpu")
    key = ImageInput("k", "k", png_bytes((1, 2, 3), size=32))

    def req(w: int, h: int, n: int) -> VideoRequest:
        return VideoRequest(keyframe=key, prompt="p", seed=1, num_frames=n, fps=8.0, width=w, height=h)

    with pytest.raises(BackendError) as info:
        gen.generate(req(40, 32, 5))
    assert "Wan" in info.value.message and "divisible by 16" in info.value.message and "40x32" in info.value.message
    assert "width = 48" in (info.value.hint or "") or "width = 32" in (info.value.hint or "")
    with pytest.raises(BackendError) as info:
        gen.generate(req(32, 32, 6))
    assert "4k + 1" in info.value.message and "got 6" in info.value.message
    assert "num_frames = 5" in (info.value.hint or "")
    assert not gen.loaded  # checked before any weights were read
    ltx = diffusers_video.FAMILIES["LTXImageToVideoPipeline"]
    with pytest.raises(BackendError, match="divisible by 32"):
        diffusers_video.check_rules(req(48, 32, 9), ltx)
    with pytest.raises(BackendError, match="8k \\+ 1") as info:
        diffusers_video.check_rules(req(64, 32, 24), ltx)
    assert "num_frames = 25" in (info.value.hint or "")


def test_without_cuda_the_profile_falls_back_to_the_animatic(tiny_pipelines: Any, tmp_path: Path) -> None:
    if cuda():
        pytest.skip("checks the fallback taken when there is no CUDA")
    found = diffusers_video.check(model=str(tiny_pipelines.wan))
    assert not found.ready and "no CUDA" in found.detail and found.fallback == "animatic"
    found = diffusers_video.check(model=str(tiny_pipelines.wan), allow_cpu=True)
    assert found.ready and str(tiny_pipelines.wan) in found.detail
    cfg = tmp_path / "c.toml"
    cfg.write_text(f'profile = "preview"\n[video]\nbackend = "diffusers"\nmodel = "{tiny_pipelines.wan}"\n')
    backends = build_backends(resolve(config_path=cfg))
    assert backends.video.backend == "animatic"
    assert any("no CUDA" in n and "animatic" in n for n in backends.notes)
    with pytest.raises(BackendError, match="no CUDA"):
        DiffusersVideoGenerator(model=str(tiny_pipelines.wan)).load()


@pytest.mark.gpu
def test_on_cuda_the_cpu_generator_keeps_runs_identical(tiny_pipelines: Any) -> None:
    if not cuda():
        pytest.skip("needs a CUDA GPU (torch.cuda.is_available() is False)")
    gen = DiffusersImageGenerator(model=str(tiny_pipelines.sd), steps=2, device="cuda", dtype="float32")
    assert gen.generate(keyframe(7)).png == gen.generate(keyframe(7)).png
    video = DiffusersVideoGenerator(model=str(tiny_pipelines.wan), steps=2, device="cuda", dtype="float32")
    key = ImageInput("k", "k", gen.generate(keyframe(7)).png)
    req = VideoRequest(keyframe=key, prompt="p", seed=2, num_frames=5, fps=8.0, width=32, height=32)
    clip = video.generate(req)
    assert clip.frames == len(read_frames(clip.mp4)) == 5
