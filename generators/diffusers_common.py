"""What the diffusers backends share: finding weights, choosing the pipeline class, loading it.

Invariants:
- Nothing is downloaded when downloads are off (``offline=True`` or ``HF_HUB_OFFLINE=1``): a model
  is a local directory holding ``model_index.json`` or a Hugging Face repo already in the cache;
  otherwise the ``BackendError`` names the model, the cache folder it looked in, and how to point
  ``model`` at a local directory. The same error comes within seconds when downloads are on but the
  hub cannot be reached (``hub.hub_reachable``), instead of after the hub client's retries.
- ``availability`` (the registry's check of both diffusers backends) answers without importing torch
  or diffusers, so the pre-flight is quick; it and the loader look in the same places.
- The pipeline class is the one the weights declare (``model_index.json`` ``_class_name``) unless
  ``pipeline`` names another (a diffusers class name, or ``module:Class``).
- Loading works without ``accelerate``: the components diffusers can only load through it (those
  that keep some modules in float32) are built from their config and given their weights here.
- torch and diffusers are imported inside the functions that need them, never at module import.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from codirector.errors import BackendError, ConfigError
from codirector.generators.hub import (
    cuda_available,
    hub_cache,
    hub_reachable,
    install_hint,
    missing_packages,
    offline_mode,
    repo_folder,
)
from codirector.generators.registry import Readiness

__all__ = ["hub_cache", "offline_mode"]  # re-exported: the diffusers backends import them from here

log = logging.getLogger(__name__)
F = TypeVar("F")  # a backend's pipeline family
Other = TypeVar("Other")  # what stands for no family

DTYPES = {
    "float32": "float32", "fp32": "float32",
    "float16": "float16", "fp16": "float16", "half": "float16",
    "bfloat16": "bfloat16", "bf16": "bfloat16",
}


def check_dtype(dtype: str, section: str) -> str:
    """``auto`` or one of the names in ``DTYPES`` (as a torch dtype name)."""
    if dtype == "auto":
        return dtype
    if dtype not in DTYPES:
        raise ConfigError(f"[{section}] dtype must be auto, float32, float16 or bfloat16, got {dtype!r}",
                          hint="auto picks bfloat16 on a CUDA GPU that supports it, float16 on other GPUs, "
                          "float32 on the CPU")
    return DTYPES[dtype]


def _looks_like_path(model: str) -> bool:
    """A repo id is ``org/name``; anything else (absolute, relative, nested) is meant as a folder."""
    return model.startswith(("/", "./", "../", "~")) or model.count("/") != 1


@dataclass(frozen=True)
class Weights:
    """Where a model's files are: a local directory (``root``), or a repo id still to download."""

    model: str
    root: Path | None
    looked: tuple[str, ...]

    def class_name(self) -> str | None:
        """The pipeline class the weights declare, if they are on disk."""
        if self.root is None:
            return None
        return read_class_name(self.root)


def read_class_name(root: Path) -> str:
    index = root / "model_index.json"
    try:
        data = json.loads(index.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise BackendError(f"{root} has no model_index.json, so it is not a diffusers pipeline folder",
                           hint="point model at a folder written by save_pretrained (it holds model_index.json) "
                           "or at a Hugging Face repo id") from None
    except json.JSONDecodeError as e:
        raise BackendError(f"{index} is not valid JSON ({e})") from e
    name = data.get("_class_name")
    if not isinstance(name, str) or not name:
        raise BackendError(f"{index} does not name its pipeline class (_class_name)",
                           hint="set pipeline = \"...Pipeline\" in the config")
    return name


def locate(model: str) -> Weights:
    """Find ``model`` on disk: a directory, or a Hugging Face repo in the local cache (no network)."""
    if not model:
        raise ConfigError("a diffusers backend needs model = a Hugging Face repo id or a local folder",
                          hint="e.g. model = \"Wan-AI/Wan2.2-I2V-A14B-Diffusers\" or model = \"/models/wan\"")
    path = Path(model).expanduser()
    if path.is_dir():
        return Weights(model, path, (str(path),))
    if _looks_like_path(model):
        return Weights(model, None, (str(path),))
    cached = repo_folder(model)
    try:
        from huggingface_hub import snapshot_download

        found = Path(snapshot_download(model, local_files_only=True, cache_dir=hub_cache()))
    except Exception:  # not in the cache (the hub raises several types for that)
        return Weights(model, None, (cached,))
    if (found / "model_index.json").is_file():
        return Weights(model, found, (cached,))
    return Weights(model, None, (cached,))


def weights_fix(model: str, section: str) -> str:
    """How to make a diffusers model's weights available."""
    return (f"set [{section}] model = \"/path/to/folder\" in a --config TOML (a local folder written by "
            "save_pretrained, holding model_index.json), or download the weights once where there is network "
            f"(`hf download {model}`)")


def missing_weights(weights: Weights, section: str, why: str) -> BackendError:
    """The error for weights that cannot be had: the model, where it looked, how to point at a folder."""
    return BackendError(
        f"diffusers weights for {weights.model!r} are not available: {why}",
        hint=f"{weights_fix(weights.model, section)} (looked in {', '.join(weights.looked)})",
    )


def require_weights(weights: Weights, offline: bool, section: str) -> str:
    """What to pass to ``from_pretrained``: the local folder, or the repo id when downloads are allowed."""
    if weights.root is not None:
        return str(weights.root)
    if _looks_like_path(weights.model):
        raise BackendError(f"[{section}] model {weights.model!r} is not a folder",
                           hint="give an existing folder holding model_index.json, or a repo id like org/name")
    if offline:
        raise missing_weights(weights, section, "they are not on disk and downloads are off (HF_HUB_OFFLINE)")
    reachable, why = hub_reachable()
    if not reachable:
        raise missing_weights(weights, section, f"they are not on disk and {why}")
    return weights.model


def pipeline_class(spec: str | type | None, class_name: str | None) -> type:
    """The pipeline class: ``spec`` (a class, a diffusers name or ``module:Class``), else the declared one."""
    import diffusers

    if isinstance(spec, type):
        return spec
    name = spec or class_name
    if not name:
        return diffusers.DiffusionPipeline
    if ":" in name:
        module, _, attr = name.partition(":")
        try:
            return getattr(importlib.import_module(module), attr)  # type: ignore[no-any-return]
        except (ImportError, AttributeError) as e:
            raise ConfigError(f"pipeline {name!r} cannot be imported ({e})",
                              hint="use a diffusers class name or module:Class of an installed package") from e
    cls = getattr(diffusers, name, None)
    if not isinstance(cls, type):
        raise BackendError(
            f"diffusers {diffusers.__version__} has no pipeline class {name!r}",
            hint="upgrade diffusers (QwenImageEditPlusPipeline and Flux2Pipeline need 0.36, Wan 0.33), "
            "or set pipeline = \"...\" to a class it has",
        )
    return cls


def family_of(cls: type, table: dict[str, Any]) -> tuple[str, Any] | None:
    """The entry of ``table`` for ``cls`` or its nearest base class (by class name)."""
    for klass in cls.__mro__:
        if klass.__name__ in table:
            return klass.__name__, table[klass.__name__]
    return None


def torch_dtype(name: str, device: str) -> Any:
    import torch

    if name == "auto":
        if device.startswith("cuda"):
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.float32
    return getattr(torch, name)


def default_device(device: str | None) -> str:
    if device:
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def _accelerate_available() -> bool:
    return importlib.util.find_spec("accelerate") is not None


def _weight_files(folder: Path) -> list[Path]:
    files = sorted(folder.glob("*.safetensors")) or sorted(folder.glob("*.bin"))
    plain = [f for f in files if f.name.count(".") == 1]  # skip variants such as model.fp16.safetensors
    return plain or files


def _load_keep_fp32_component(cls: type, folder: Path, dtype: Any) -> Any:
    """A diffusers model that normally needs ``accelerate`` to load, built from config + weights."""
    import torch

    model = cls.from_config(cls.load_config(folder))  # type: ignore[attr-defined]
    state: dict[str, Any] = {}
    files = _weight_files(folder)
    if not files:
        raise BackendError(f"{folder} holds no weight files (*.safetensors or *.bin)",
                           hint="the download is incomplete; download the model again")
    for f in files:
        if f.suffix == ".safetensors":
            from safetensors.torch import load_file

            state.update(load_file(str(f)))
        else:
            state.update(torch.load(str(f), map_location="cpu", weights_only=True))
    model.load_state_dict(state, strict=True)
    keep = set(getattr(cls, "_keep_in_fp32_modules", None) or [])
    if dtype is not None and dtype != torch.float32:
        model.to(dtype)
        for name, module in model.named_modules():
            if keep & set(name.split(".")):
                module.to(torch.float32)
    return model.eval()


def preload_without_accelerate(root: Path, dtype: Any) -> dict[str, Any]:
    """Components that diffusers cannot load without ``accelerate``, loaded by hand (else nothing)."""
    if _accelerate_available():
        return {}
    import diffusers

    index = json.loads((root / "model_index.json").read_text(encoding="utf-8"))
    out: dict[str, Any] = {}
    for name, spec in index.items():
        if not (isinstance(spec, list) and len(spec) == 2 and spec[0] == "diffusers" and spec[1]):
            continue
        cls = getattr(diffusers, spec[1], None)
        if isinstance(cls, type) and getattr(cls, "_keep_in_fp32_modules", None) and (root / name).is_dir():
            out[name] = _load_keep_fp32_component(cls, root / name, dtype)
    if out:
        log.info("accelerate is not installed: loaded %s without low-memory initialisation", ", ".join(out))
    return out


def dtype_kwargs(dtype: Any) -> dict[str, Any]:
    """``dtype=`` for diffusers >= 0.40, ``torch_dtype=`` before."""
    if dtype is None:
        return {}
    import diffusers

    try:
        major, minor = (int(x) for x in diffusers.__version__.split(".")[:2])
    except ValueError:
        major, minor = 0, 40
    return {"dtype": dtype} if (major, minor) >= (0, 40) else {"torch_dtype": dtype}


def load_pipeline(cls: type, source: str, *, dtype: Any, weights: Weights, section: str,
                  offline: bool, extra: dict[str, Any] | None = None) -> Any:
    """``cls.from_pretrained(source)`` with errors that say where the weights were looked for."""
    kwargs: dict[str, Any] = {**dtype_kwargs(dtype), **(extra or {})}
    if offline:
        kwargs["local_files_only"] = True
    if weights.root is not None:
        kwargs.update(preload_without_accelerate(weights.root, dtype))
    else:
        kwargs["cache_dir"] = hub_cache()  # where ``locate`` looked: a later lookup finds this download
    try:
        return cls.from_pretrained(source, **kwargs)  # type: ignore[attr-defined]
    except Exception as e:
        text = str(e)
        if weights.root is None:  # a download failed: the hub raises many types for that
            raise missing_weights(weights, section, f"{type(e).__name__}: {text[:300]}") from e
        if not isinstance(e, OSError | ValueError):
            raise
        if "local_files_only" in text or "does not appear to have" in text:
            raise missing_weights(weights, section, f"{type(e).__name__}: {text[:300]}") from e
        raise BackendError(f"cannot load the {cls.__name__} at {source}: {text[:400]}",
                           hint="the folder may be incomplete or for another pipeline class; set pipeline = "
                           "\"...\" or download the model again") from e


def place(pipe: Any, *, device: str, cpu_offload: bool, section: str) -> Any:
    """Move the pipeline to its device (or spread it with model CPU offload), progress bars off."""
    if cpu_offload:
        if not _accelerate_available():
            raise BackendError(f"[{section}] cpu_offload = true needs the accelerate package",
                               hint="pip install accelerate, or set cpu_offload = false")
        pipe.enable_model_cpu_offload()
    else:
        pipe.to(device)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def call_failed(pipe: Any, what: str, e: Exception, section: str) -> BackendError:
    """A pipeline call's failure, with the fix for running out of GPU memory when that is the cause."""
    text = str(e)
    if "out of memory" in text.lower():
        hint = (f"set [{section}] cpu_offload = true (needs accelerate), a smaller dtype, or smaller [run] width, "
                "height and num_frames")
    else:
        hint = f"check [{section}] options (steps, guidance, call_options) against this pipeline"
    return BackendError(f"{type(pipe).__name__} failed for {what}: {text[:400]}", hint=hint)


def cpu_generator(seed: int) -> Any:
    """A fresh CPU generator per call (a generator's state is used up by each call)."""
    import torch

    return torch.Generator("cpu").manual_seed(int(seed))


def nearest_multiple(value: int, multiple: int) -> int:
    return max(multiple, int(round(value / multiple)) * multiple)


def availability(model: str, offline: bool | None, *, section: str, need_cuda: bool, allow_cpu: bool) -> Readiness:
    """Cheap: packages, CUDA, and the weights on disk or the hub in reach (no model load, no torch import).

    Without CUDA, a backend that needs it reports ``fallback = "animatic"`` (docs/architecture.md §9).
    """
    missing = missing_packages("torch", "diffusers", "transformers")
    if missing:
        return Readiness(False, f"missing package{'s' if len(missing) > 1 else ''}: {', '.join(missing)}",
                         fix=install_hint(missing))
    cuda, gpu = cuda_available()
    if need_cuda and not cuda and not allow_cpu:
        return Readiness(False, f"{gpu}: image-to-video needs a GPU",
                         fix=f"run where a GPU is available, or set [{section}] allow_cpu = true (hours per clip), "
                         f"or [{section}] backend = \"animatic\"", fallback="animatic")
    where = gpu if cuda else f"{gpu}: runs on the CPU, slowly"
    try:
        weights = locate(model)
    except (BackendError, ConfigError) as e:
        return Readiness(False, e.message, fix=e.hint)
    if weights.root is not None:
        return Readiness(True, f"weights at {weights.root}; {where}")
    if _looks_like_path(model):
        return Readiness(False, f"[{section}] model {model!r} is not a folder holding model_index.json",
                         fix=f"set [{section}] model to an existing folder written by save_pretrained, or to a "
                         "Hugging Face repo id like org/name")
    looked = ", ".join(weights.looked)
    if offline_mode(offline):
        return Readiness(False, f"weights for {model} are not on disk (looked in {looked}) and downloads are off "
                         "(HF_HUB_OFFLINE)", fix=weights_fix(model, section))
    reachable, why = hub_reachable()
    if not reachable:
        return Readiness(False, f"weights for {model} are not on disk (looked in {looked}) and {why}",
                         fix=weights_fix(model, section))
    return Readiness(True, f"weights for {model} will be downloaded on first use ({why}); {where}")


class PipelineHolder:
    """What both diffusers generators keep and do: their common options, where the weights are, the pipeline
    class, and loading the pipeline onto its device.

    Each is resolved on first need, so constructing a generator touches neither disk nor torch.
    """

    section = "image"  # the config table named in messages

    def __init__(self, model: str, pipeline: str | type | None, dtype: str, device: str | None, cpu_offload: bool,
                 steps: int, guidance: float | None, negative_prompt: str | None, offline: bool | None,
                 call_options: dict[str, Any] | None) -> None:
        if steps < 1:
            raise ConfigError(f"[{self.section}] steps must be at least 1, got {steps!r}")
        self.model = model
        self.pipeline = pipeline
        self.dtype = check_dtype(dtype, self.section)
        self.device = device
        self.cpu_offload = cpu_offload
        self.steps = int(steps)
        self.guidance = guidance
        self.negative_prompt = negative_prompt
        self.offline = offline
        self.call_options = dict(call_options or {})
        self._weights: Weights | None = None
        self._cls: type | None = None
        self._pipe: Any = None

    @property
    def loaded(self) -> bool:
        """Whether the weights are loaded (on the first ``generate`` whose request passes the checks)."""
        return self._pipe is not None

    def weights(self) -> Weights:
        """Where the weights are; ``BackendError`` at once (before diffusers is imported) when they cannot be had."""
        if self._weights is None:
            found = locate(self.model)
            require_weights(found, offline_mode(self.offline), self.section)
            self._weights = found
        return self._weights

    def pipeline_class(self) -> type:
        """The class the pipeline will have (from the weights' model_index.json, or ``pipeline``)."""
        if self._cls is None:  # a class named in the config needs no weights to be known
            self._cls = pipeline_class(self.pipeline, None if self.pipeline else self.weights().class_name())
        return self._cls

    def family_in(self, table: dict[str, F], other: Other) -> tuple[str, F | Other]:
        """The name and family (``family_of``) of the loaded pipeline's class, or before loading of the class it
        will have; ``other`` for a class of no family in ``table``."""
        cls = type(self._pipe) if self._pipe is not None else self.pipeline_class()
        found = family_of(cls, table)
        return found if found is not None else (cls.__name__, other)

    def load_device(self) -> str:
        """The device the pipeline is loaded for (a generator may refuse one here, before torch loads weights)."""
        return default_device(self.device)

    def prepare(self, pipe: Any, offline: bool) -> None:
        """What a generator does to its loaded pipeline before it is placed on its device."""

    def load(self) -> Any:
        """The pipeline, loaded on first use (the weights found first, in seconds), prepared, on its device."""
        if self._pipe is not None:
            return self._pipe
        offline = offline_mode(self.offline)
        weights = self.weights()
        source = require_weights(weights, offline, self.section)
        device = self.load_device()
        dtype = torch_dtype(self.dtype, device)
        pipe = load_pipeline(self.pipeline_class(), source, dtype=dtype, weights=weights, section=self.section,
                             offline=offline)
        self.prepare(pipe, offline)
        self._pipe = place(pipe, device=device, cpu_offload=self.cpu_offload, section=self.section)
        return self._pipe
