"""Keyframes and reference views from a diffusers pipeline, conditioned on the entity references.

How references reach the model depends on the pipeline family (the class the weights declare,
or ``pipeline``; ``references`` overrides it):
- ``list``: multi-image edit pipelines (QwenImageEditPlusPipeline, Flux2Pipeline) get
  ``image=[ref, ...]`` and a prompt naming what each picture shows;
- ``stitch``: single-image edit pipelines (QwenImageEditPipeline, FluxKontextPipeline) get the
  references side by side on one canvas, and a prompt listing them from left to right;
- ``ip_adapter``: pipelines with ``load_ip_adapter`` (SD, SDXL) get ``ip_adapter_image`` when an
  ``ip_adapter`` is configured;
- ``text``: everything else: references are not passed, and that is said once (``notes``).

Invariants:
- The same request gives the same pixels: a fresh CPU ``torch.Generator`` seeded with the
  request's seed per call.
- Sizes are checked before any weights are loaded: width and height must be multiples of what
  the family needs (8 for SD/SDXL, 16 for Flux, FLUX.2 and Qwen-Image); the error names the value,
  the rule and the nearest valid size. The image handed back always has the requested size (a
  pipeline that picks its own size is scaled to cover and cropped centred).
- Weights are loaded on first use only; nothing is downloaded when downloads are off (see
  ``diffusers_common``). torch and diffusers are imported inside methods, never at import time.
"""

from __future__ import annotations

import io
import logging
import time
from dataclasses import dataclass
from typing import Any

from codirector.errors import BackendError, ConfigError
from codirector.generators.base import ImageRequest, ImageResult
from codirector.generators.diffusers_common import (
    PipelineHolder,
    availability,
    call_failed,
    cpu_generator,
    default_device,
    nearest_multiple,
)
from codirector.generators.imaging import check_frame_size, cover, png
from codirector.generators.registry import Readiness

log = logging.getLogger(__name__)

REFERENCE_MODES = ("list", "stitch", "ip_adapter", "text")
IP_ADAPTER_KEYS = ("repo", "subfolder", "weight_name", "scale", "image_encoder_folder")


@dataclass(frozen=True)
class ImageFamily:
    """What a pipeline family needs: how references are passed, the size rule, the guidance argument."""

    references: str
    multiple: int
    needs_image: bool = False  # the pipeline cannot run without an input image
    guidance_kw: str = "guidance_scale"
    picture: str = "Image"  # how the prompt refers to the n-th reference


FAMILIES: dict[str, ImageFamily] = {
    "QwenImageEditPlusPipeline": ImageFamily("list", 16, needs_image=True, guidance_kw="true_cfg_scale",
                                             picture="Picture"),
    "Flux2Pipeline": ImageFamily("list", 16),
    "QwenImageEditPipeline": ImageFamily("stitch", 16, needs_image=True, guidance_kw="true_cfg_scale"),
    "FluxKontextPipeline": ImageFamily("stitch", 16),
    "StableDiffusionXLPipeline": ImageFamily("ip_adapter", 8),
    "StableDiffusionPipeline": ImageFamily("ip_adapter", 8),
    "QwenImagePipeline": ImageFamily("text", 16, guidance_kw="true_cfg_scale"),
    "FluxPipeline": ImageFamily("text", 16),
}
OTHER = ImageFamily("text", 8)


# ---------------------------------------------------------------------------- pure helpers


def reference_prompt(styled: str, labels: list[str], mode: str, picture: str = "Image") -> str:
    """The prompt the pipeline gets: the request's prompt and style (``styled``), and what the references show."""
    parts = [styled]
    if labels and mode == "list":
        shown = " ".join(f"{picture} {i} shows {label}." for i, label in enumerate(labels, start=1))
        parts.append(f"{shown} Keep each one's identity, face, hair, clothing and colours as in its picture.")
    elif labels and mode == "stitch":
        parts.append("The input image is a reference sheet showing, from left to right: " + ", ".join(labels)
                     + ". Draw the new scene described above, not the sheet, and keep each one's look.")
    return " ".join(p for p in parts if p)


def stitch(images: list[Any], height: int) -> Any:
    """The references side by side, scaled to one height, left to right in order, as one RGB image."""
    from PIL import Image

    scaled = [im.convert("RGB").resize((max(1, round(im.width * height / im.height)), height),
                                       Image.Resampling.LANCZOS) for im in images]
    canvas = Image.new("RGB", (sum(im.width for im in scaled), height), (255, 255, 255))
    x = 0
    for im in scaled:
        canvas.paste(im, (x, 0))
        x += im.width
    return canvas


def check_size(width: int, height: int, multiple: int, pipeline: str, section: str = "run") -> None:
    """Width and height must be multiples of ``multiple``; the error says the nearest valid size."""
    check_frame_size(width, height)
    bad = [(name, v) for name, v in (("width", width), ("height", height)) if v <= 0 or v % multiple]
    if bad:
        got = " and ".join(f"{name} {v}" for name, v in bad)
        raise BackendError(
            f"{pipeline} needs width and height divisible by {multiple}; got {got} ({width}x{height})",
            hint=f"set [{section}] width = {nearest_multiple(width, multiple)} and height = "
            f"{nearest_multiple(height, multiple)} (the nearest multiples of {multiple})",
        )


# ---------------------------------------------------------------------------- the generator


class DiffusersImageGenerator(PipelineHolder):
    """Images from a diffusers pipeline with the request's references, seeded per call."""

    backend = "diffusers"

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
        ip_adapter: dict[str, Any] | None = None,
        references: str | None = None,
        offline: bool | None = None,
        call_options: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(model, pipeline, dtype, device, cpu_offload, steps, guidance, negative_prompt, offline,
                         call_options)
        if references is not None and references not in REFERENCE_MODES:
            raise ConfigError(f"[image] references must be one of {', '.join(REFERENCE_MODES)}, got {references!r}",
                              hint="leave it out to follow the pipeline family")
        if ip_adapter is not None:
            unknown = [k for k in ip_adapter if k not in IP_ADAPTER_KEYS]
            if unknown or not ip_adapter.get("repo") or not ip_adapter.get("weight_name"):
                raise ConfigError(
                    f"[image] ip_adapter must give repo and weight_name (and optionally subfolder, scale, "
                    f"image_encoder_folder); got {sorted(ip_adapter)}",
                    hint="e.g. ip_adapter = {repo = \"h94/IP-Adapter\", subfolder = \"sdxl_models\", "
                    "weight_name = \"ip-adapter_sdxl.bin\", scale = 0.6}",
                )
        self.ip_adapter = dict(ip_adapter) if ip_adapter else None
        self.references = references
        self.notes: list[str] = []

    # -- phases ---------------------------------------------------------------------------

    def family(self) -> tuple[str, ImageFamily]:
        return self.family_in(FAMILIES, OTHER)

    def reference_mode(self) -> str:
        if self.references is not None:
            return self.references
        if self.ip_adapter is not None:
            return "ip_adapter"
        mode = self.family()[1].references
        return "text" if mode == "ip_adapter" else mode

    def check_inputs(self, request: ImageRequest) -> None:
        name, fam = self.family()
        check_size(request.width, request.height, fam.multiple, name)

    def prepare(self, pipe: Any, offline: bool) -> None:
        """The IP-Adapter, if configured, is loaded into the pipeline."""
        if self.ip_adapter is None:
            return
        ipa = self.ip_adapter
        if not hasattr(pipe, "load_ip_adapter"):
            raise BackendError(f"{type(pipe).__name__} cannot load an IP-Adapter",
                               hint="remove [image] ip_adapter, or use an SD/SDXL/Flux pipeline")
        try:
            pipe.load_ip_adapter(ipa["repo"], subfolder=ipa.get("subfolder", ""), weight_name=ipa["weight_name"],
                                 image_encoder_folder=ipa.get("image_encoder_folder", "image_encoder"),
                                 local_files_only=offline or None)
        except (OSError, ValueError) as e:
            raise BackendError(
                f"cannot load the IP-Adapter {ipa['weight_name']} from {ipa['repo']}: {str(e)[:300]}",
                hint="download it once where there is network, or set ip_adapter.repo to a local folder that holds "
                "the weight file (and an image_encoder folder when the pipeline has none)",
            ) from e
        pipe.set_ip_adapter_scale(float(ipa.get("scale", 0.6)))

    def call_kwargs(self, request: ImageRequest) -> dict[str, Any]:
        """What the pipeline is called with, references included (the family comes from the declared class
        until the pipeline is loaded, so this also works before loading)."""
        from PIL import Image

        _, fam = self.family()
        mode = self.reference_mode()
        refs = [Image.open(io.BytesIO(r.data)).convert("RGB") for r in request.references]
        labels = [r.label for r in request.references]
        if refs and mode == "text":
            self._note_once(f"{type(self._pipe).__name__ if self._pipe is not None else self.model} takes no "
                            "reference images here; keyframes follow the text only (configure [image] ip_adapter, "
                            "or use a multi-reference editing pipeline such as Qwen-Image-Edit-2509)")
        kwargs: dict[str, Any] = {
            "prompt": reference_prompt(request.styled_prompt(), labels, mode, fam.picture),
            "height": request.height,
            "width": request.width,
            "num_inference_steps": self.steps,
            "generator": cpu_generator(request.seed),
            "output_type": "pil",
        }
        blank = Image.new("RGB", (request.width, request.height), (128, 128, 128))
        if mode == "list":
            if refs or fam.needs_image:
                kwargs["image"] = refs or [blank]
        elif mode == "stitch":
            if refs or fam.needs_image:
                kwargs["image"] = stitch(refs, request.height) if refs else blank
        elif mode == "ip_adapter":
            # one adapter, several images: a list (per adapter) holding the list of references
            kwargs["ip_adapter_image"] = [refs or [blank]]
        negative = self.negative_prompt
        if fam.guidance_kw == "true_cfg_scale" and negative is None:
            negative = " "  # Qwen-Image applies its (true) CFG only when a negative prompt is given
        if self.guidance is not None:
            kwargs[fam.guidance_kw] = self.guidance
        if negative is not None:
            kwargs["negative_prompt"] = negative
        kwargs.update(self.call_options)
        return kwargs

    def _note_once(self, note: str) -> None:
        if note not in self.notes:
            self.notes.append(note)
            log.warning("%s", note)

    # -- the interface --------------------------------------------------------------------

    def generate(self, request: ImageRequest) -> ImageResult:
        self.check_inputs(request)  # before any weights are loaded
        pipe = self.load()
        self.check_inputs(request)  # the loaded class may be more specific than the declared one
        kwargs = self.call_kwargs(request)
        started = time.perf_counter()
        no_refs_with_adapter = self.reference_mode() == "ip_adapter" and not request.references
        if no_refs_with_adapter:
            pipe.set_ip_adapter_scale(0.0)  # the blank image only satisfies the adapter; it must not steer
        try:
            out = pipe(**kwargs)
        except (ValueError, TypeError, RuntimeError) as e:
            raise call_failed(pipe, f"the {request.purpose} image", e, "image") from e
        finally:
            if no_refs_with_adapter:
                pipe.set_ip_adapter_scale(float((self.ip_adapter or {}).get("scale", 0.6)))
        images = getattr(out, "images", None)
        if not images:
            raise BackendError(f"{type(pipe).__name__} returned no image for the {request.purpose} image")
        im = cover(images[0], request.width, request.height)
        usage = {"images": 1, "size": f"{request.width}x{request.height}", "device": default_device(self.device),
                 "compute_seconds": round(time.perf_counter() - started, 3)}  # wall clock: GPU seconds on a GPU
        return ImageResult(png=png(im), width=request.width, height=request.height, model=self.model, usage=usage)


def check(model: str = "", offline: bool | None = None, **_: Any) -> Readiness:
    """Cheap: the packages are installed, the weights are on disk (or can be downloaded now); says whether CUDA is
    present. Nothing is imported or loaded."""
    return availability(model, offline, section="image", need_cuda=False, allow_cpu=True)
