"""Clips from a diffusers image-to-video pipeline: Wan (2.1/2.2 I2V), LTX-Video, CogVideoX I2V.

Invariants:
- The clip has exactly the requested frames, size and rate, or the call fails before any weights
  are loaded: each family's rules (Wan: width and height divisible by 16 and frames = 4k+1; LTX:
  divisible by 32 and frames = 8k+1; CogVideoX: divisible by 16 and frames = 4k+1) are checked up
  front, and the error names the value, the rule and the nearest valid value.
- The same request gives the same clip: a fresh CPU ``torch.Generator`` seeded with the request's
  seed per call, frames taken as floats (``output_type="np"``), turned into uint8 here, and
  encoded by ``video_io.encode_mp4`` (deterministic H.264), never by diffusers' exporter.
- Without CUDA the backend is unusable (``check`` says "no CUDA", so the profile falls back to the
  animatic) unless ``allow_cpu = true``; the tests use that with tiny pipelines.
- torch and diffusers are imported inside methods, never at import time.
"""

from __future__ import annotations

import io
import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from codirector.errors import BackendError
from codirector.generators.base import VideoRequest, VideoResult
from codirector.generators.diffusers_common import (
    PipelineHolder,
    availability,
    call_failed,
    cpu_generator,
    default_device,
    nearest_multiple,
)
from codirector.generators.imaging import check_frame_size, cover
from codirector.generators.registry import Readiness
from codirector.generators.video_io import encode_mp4

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class VideoFamily:
    """A family's rules: sizes divisible by ``multiple``, frame counts of the form ``frame_step * k + 1``."""

    name: str
    multiple: int
    frame_step: int
    fps_kw: str | None = None  # the call argument that takes the frame rate, if the model is conditioned on it


FAMILIES: dict[str, VideoFamily] = {
    "WanImageToVideoPipeline": VideoFamily("Wan", 16, 4),
    "LTXImageToVideoPipeline": VideoFamily("LTX", 32, 8, fps_kw="frame_rate"),
    "CogVideoXImageToVideoPipeline": VideoFamily("CogVideoX", 16, 4),
}


# ---------------------------------------------------------------------------- pure helpers


def nearest_frames(n: int, step: int) -> int:
    """The frame count of the form ``step * k + 1`` nearest to ``n`` (at least ``step + 1``)."""
    k = max(1, round((n - 1) / step))
    return step * k + 1


def check_rules(request: VideoRequest, family: VideoFamily, multiple: int | None = None) -> None:
    """The family's size and frame-count rules, with errors that name the value and the nearest valid one."""
    m = multiple or family.multiple
    w, h, n = request.width, request.height, request.num_frames
    if w <= 0 or h <= 0 or w % m or h % m:
        raise BackendError(
            f"{family.name} image-to-video needs width and height divisible by {m}; got {w}x{h}",
            hint=f"set [run] width = {nearest_multiple(w, m)} and height = {nearest_multiple(h, m)}",
        )
    if n < 2 or (n - 1) % family.frame_step:
        raise BackendError(
            f"{family.name} image-to-video needs num_frames = {family.frame_step}k + 1 "
            f"(e.g. {family.frame_step + 1}, {2 * family.frame_step + 1}, ...); got {n}",
            hint=f"set [run] num_frames = {nearest_frames(n, family.frame_step)}",
        )


def _config(root: Path | None, sub: str) -> dict[str, Any]:
    if root is None:
        return {}
    try:
        data = json.loads((root / sub / "config.json").read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return {}
    return data if isinstance(data, dict) else {}


def spatial_multiple(root: Path | None, family: VideoFamily) -> int:
    """The size multiple read from the weights' configs where they say more than the family default.

    Wan: the VAE's spatial factor times the transformer's patch size (16 for Wan 2.1 and the 14B
    Wan 2.2 models, 32 for Wan2.2-TI2V-5B, whose VAE compresses 16x).
    """
    if family.name != "Wan":
        return family.multiple
    vae = _config(root, "vae").get("scale_factor_spatial", 8)
    patch = _config(root, "transformer").get("patch_size", [1, 2, 2])
    try:
        return max(family.multiple, int(vae) * int(patch[1]))
    except (TypeError, ValueError, IndexError):
        return family.multiple


def to_uint8_frames(frames: Any) -> list[np.ndarray]:
    """A pipeline's first video as RGB uint8 frames (H, W, 3), from floats in [0, 1], tensors or PIL images."""
    if frames is None:
        raise BackendError("the pipeline returned no frames")
    video = frames[0] if isinstance(frames, list | tuple) or getattr(frames, "ndim", 0) == 5 else frames
    if isinstance(video, list | tuple) and video and hasattr(video[0], "convert"):
        return [np.asarray(im.convert("RGB"), dtype=np.uint8) for im in video]
    if hasattr(video, "detach"):  # a torch tensor
        video = video.detach().float().cpu().numpy()
    arr = np.asarray(video)
    if arr.ndim != 4:
        raise BackendError(f"the pipeline returned frames of shape {arr.shape}; expected (frames, H, W, 3)")
    if arr.shape[-1] not in (3, 4) and arr.shape[1] in (3, 4):
        arr = arr.transpose(0, 2, 3, 1)  # (F, C, H, W) -> (F, H, W, C)
    if arr.dtype != np.uint8:
        arr = (np.clip(arr.astype(np.float32), 0.0, 1.0) * 255.0).round().astype(np.uint8)
    return [np.ascontiguousarray(f[..., :3]) for f in arr]


# ---------------------------------------------------------------------------- the generator


class DiffusersVideoGenerator(PipelineHolder):
    """Animate a keyframe with a diffusers image-to-video pipeline, seeded per call."""

    backend = "diffusers"
    section = "video"

    def __init__(
        self,
        model: str,
        pipeline: str | type | None = None,
        dtype: str = "auto",
        device: str | None = None,
        cpu_offload: bool = False,
        steps: int = 30,
        guidance: float | None = None,
        negative_prompt: str | None = None,
        allow_cpu: bool = False,
        offline: bool | None = None,
        vae_tiling: bool = False,
        call_options: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(model, pipeline, dtype, device, cpu_offload, steps, guidance, negative_prompt, offline,
                         call_options)
        self.allow_cpu = allow_cpu
        self.vae_tiling = vae_tiling

    def family(self) -> VideoFamily | None:
        return self.family_in(FAMILIES, None)[1]

    def check_inputs(self, request: VideoRequest) -> None:
        check_frame_size(request.width, request.height, "image-to-video clip")
        family = self.family()
        if family is not None:
            check_rules(request, family, spatial_multiple(self.weights().root, family))
        if self._pipe is not None and family is not None and family.name == "CogVideoX":
            cfg = getattr(getattr(self._pipe, "transformer", None), "config", None)
            if cfg is not None and getattr(cfg, "use_learned_positional_embeddings", False):
                need = (int(cfg.sample_width) * 8, int(cfg.sample_height) * 8)
                if (request.width, request.height) != need:
                    raise BackendError(
                        f"{self.model} generates only {need[0]}x{need[1]} (learned positional embeddings); "
                        f"got {request.width}x{request.height}",
                        hint=f"set [run] width = {need[0]} and height = {need[1]}, or use CogVideoX1.5",
                    )

    def load_device(self) -> str:
        """The device, refused when it is the CPU and ``allow_cpu`` is not set (after the weights are found)."""
        device = default_device(self.device)
        if device == "cpu" and not self.allow_cpu:
            raise BackendError("image-to-video on the CPU: no CUDA device here",
                               hint="run where a GPU is available, set [video] allow_cpu = true to wait for hours, "
                               "or use [video] backend = \"animatic\"")
        return device

    def prepare(self, pipe: Any, offline: bool) -> None:
        """VAE tiling, where asked for and the pipeline's VAE has it."""
        if self.vae_tiling and hasattr(getattr(pipe, "vae", None), "enable_tiling"):
            pipe.vae.enable_tiling()

    def call_kwargs(self, request: VideoRequest) -> dict[str, Any]:
        """What the pipeline is called with: the keyframe at the clip's size, the motion prompt, a fresh generator."""
        from PIL import Image

        key = cover(Image.open(io.BytesIO(request.keyframe.data)), request.width, request.height)
        kwargs: dict[str, Any] = {
            "image": key,
            "prompt": request.prompt,
            "height": request.height,
            "width": request.width,
            "num_frames": request.num_frames,
            "num_inference_steps": self.steps,
            "generator": cpu_generator(request.seed),
            "output_type": "np",
        }
        if self.negative_prompt is not None:
            kwargs["negative_prompt"] = self.negative_prompt
        if self.guidance is not None:
            kwargs["guidance_scale"] = self.guidance
        family = self.family()
        if family is not None and family.fps_kw:
            kwargs[family.fps_kw] = max(1, int(round(request.fps)))
        kwargs.update(self.call_options)
        return kwargs

    def generate(self, request: VideoRequest) -> VideoResult:
        self.check_inputs(request)  # before any weights are loaded
        pipe = self.load()
        self.check_inputs(request)
        from PIL import Image

        started = time.perf_counter()
        try:
            out = pipe(**self.call_kwargs(request))
        except (ValueError, TypeError, RuntimeError) as e:
            raise call_failed(pipe, "the clip", e, "video") from e
        seconds = round(time.perf_counter() - started, 3)  # wall clock of the generation: GPU seconds on a GPU
        frames = to_uint8_frames(getattr(out, "frames", None))
        if len(frames) < request.num_frames:
            raise BackendError(f"{type(pipe).__name__} returned {len(frames)} frames, {request.num_frames} were asked",
                               hint="use a frame count the model supports (see the rule in the docs of this backend)")
        frames = frames[: request.num_frames]  # CogVideoX 1.5 pads to whole latent frames
        frames = [f if f.shape[:2] == (request.height, request.width)
                  else np.asarray(cover(Image.fromarray(f), request.width, request.height)) for f in frames]
        data = encode_mp4(frames, request.fps)
        usage = {"video_seconds": round(len(frames) / request.fps, 6), "frames": len(frames),
                 "device": default_device(self.device), "compute_seconds": seconds}
        return VideoResult(mp4=data, frames=len(frames), fps=request.fps, width=request.width, height=request.height,
                           model=self.model, usage=usage)


def check(model: str = "", allow_cpu: bool = False, offline: bool | None = None, **_: Any) -> Readiness:
    """Cheap: packages, CUDA (without it, unless ``allow_cpu``, the run falls back to the animatic), the weights on
    disk or downloadable now. Nothing is imported or loaded."""
    return availability(model, offline, section="video", need_cuda=True, allow_cpu=allow_cpu)
