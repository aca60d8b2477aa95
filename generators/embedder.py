"""open_clip embedder: entity descriptions (text) and reference views (images) in one space.

Invariants:
- Outputs are float32, shape (n, dim), L2-normalised, so cosine similarity is a dot product.
- ``pretrained`` is a tag (``laion2b_s34b_b79k``), a local checkpoint path, or ``"none"``
  (random weights, seeded, so the same code gives the same vectors: tests and offline preview).
- A tag's weights already in the Hugging Face cache are loaded from there, with the tag's own settings
  (QuickGELU, preprocessing), and no network is touched. Otherwise they are downloaded only when
  downloads are on (not ``offline``, no ``HF_HUB_OFFLINE``) and the hub answers (``hub.hub_reachable``,
  seconds); else ``allow_random`` decides between a seeded random model of the same shape
  (``meaningful`` is then False and says so) and a ``BackendError`` that names the model, the places
  looked in, and how to point at a local file.
- ``check`` (the registry's, used by the pre-flight) imports neither torch nor open_clip for a known
  tag: it reads open_clip's tag table from its source (``tag_table``). torch and open_clip are imported
  here only when the model is first used.
"""

from __future__ import annotations

import ast
import functools
import importlib.util
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from codirector.errors import BackendError
from codirector.generators.hub import (
    hub_cache,
    hub_reachable,
    install_hint,
    missing_packages,
    offline_mode,
    repo_folder,
)
from codirector.generators.registry import Readiness

log = logging.getLogger(__name__)

_HF_FILES = ("open_clip_model.safetensors", "open_clip_pytorch_model.bin")
_PREPROCESS = {"mean": "image_mean", "std": "image_std", "interpolation": "image_interpolation",
               "resize_mode": "image_resize_mode"}


def _is_path(pretrained: str) -> bool:
    return pretrained.endswith((".pt", ".pth", ".bin", ".safetensors")) or os.sep in pretrained


def _clean_tag(tag: str) -> str:
    return tag.lower().replace("-", "_")  # how open_clip normalises tags


def _literal_kwargs(call: ast.Call) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for kw in call.keywords:
        if kw.arg:
            try:
                out[kw.arg] = ast.literal_eval(kw.value)
            except ValueError:
                continue  # a name (e.g. a mean constant): not needed to find the weights
    return out


def _tags_of(node: ast.expr, groups: dict[str, dict[str, dict[str, Any]]]) -> dict[str, dict[str, Any]]:
    if isinstance(node, ast.Name):
        return groups.get(node.id, {})
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "dict":
        return {kw.arg: _literal_kwargs(kw.value) for kw in node.keywords
                if kw.arg and isinstance(kw.value, ast.Call)}
    return {}


@functools.cache
def tag_table() -> dict[str, dict[str, dict[str, Any]]]:
    """open_clip's pretrained tags, ``{model: {tag: {"hf_hub": ..., ...}}}``, read from its ``pretrained.py``
    without importing it (which imports torch: seconds). Empty when the source cannot be read; models
    the table derives at import time (``-quickgelu`` names) are missing: callers then ask open_clip."""
    spec = importlib.util.find_spec("open_clip")
    if spec is None or not spec.submodule_search_locations:
        return {}
    try:
        source = (Path(list(spec.submodule_search_locations)[0]) / "pretrained.py").read_text(encoding="utf-8")
        tree = ast.parse(source)
    except (OSError, SyntaxError):
        return {}
    groups: dict[str, dict[str, dict[str, Any]]] = {}
    table: dict[str, dict[str, dict[str, Any]]] = {}
    for node in tree.body:
        if not (isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name)):
            continue
        name = node.targets[0].id
        if name == "_PRETRAINED" and isinstance(node.value, ast.Dict):
            for key, value in zip(node.value.keys, node.value.values, strict=True):
                if isinstance(key, ast.Constant) and isinstance(key.value, str):
                    table[key.value] = _tags_of(value, groups)
        else:
            groups[name] = _tags_of(node.value, groups)
    return table


def tag_settings(model: str, tag: str) -> dict[str, Any]:
    """The settings of a pretrained tag (``hf_hub``, ``quick_gelu``, ...); ``BackendError`` for an unknown tag."""
    table = tag_table()
    if model in table:
        known = table[model]
    else:  # not in what the source shows: ask open_clip itself (imports torch)
        import open_clip

        known = {t: open_clip.pretrained.get_pretrained_cfg(model, t)
                 for t in open_clip.list_pretrained_tags_by_model(model)}
    found = known.get(_clean_tag(tag))
    if found is None:
        raise BackendError(
            f"open_clip has no pretrained tag {tag!r} for model {model!r}",
            hint=f"known tags for {model}: {', '.join(known) or 'none'}; or give a local checkpoint path",
        )
    return dict(found)


def hub_files(model: str, tag: str) -> tuple[str, list[str]]:
    """The hub repository of a tag and the file names open_clip would fetch from it."""
    hub = str(tag_settings(model, tag).get("hf_hub", ""))
    if not hub:
        raise BackendError(f"open_clip tag {tag!r} of {model!r} is not on the Hugging Face hub (only a URL)",
                           hint="download the checkpoint once and set [embedder] pretrained to its path")
    repo, filename = os.path.split(hub.rstrip("/")) if not hub.endswith("/") else (hub.rstrip("/"), "")
    return repo, [filename] if filename else list(_HF_FILES)


def cached_weights(model: str, tag: str) -> tuple[str | None, list[str]]:
    """The local file of a pretrained tag if the Hugging Face cache holds it, and where it looked."""
    from huggingface_hub import try_to_load_from_cache

    repo, names = hub_files(model, tag)
    looked = [f"{repo_folder(repo)} ({' or '.join(names)})"]
    for name in names:
        found = try_to_load_from_cache(repo, name, cache_dir=hub_cache())
        if isinstance(found, str):
            return found, looked
    return None, looked


def weights_fix(model: str, tag: str) -> str:
    """How to make a tag's weights available, or to run without them."""
    try:
        download = f" (`hf download {hub_files(model, tag)[0]}`)"
    except BackendError:
        download = ""
    return (f"set [embedder] pretrained = \"/path/to/open_clip_model.safetensors\" in a --config TOML (a local "
            f"checkpoint of {model}), or download the weights once where there is network{download}; "
            "for tests only: pretrained = \"none\" (random weights)")


def cached_tag_options(model: str, tag: str) -> dict[str, Any]:
    """What open_clip applies for a tag, to load the tag's cached file as the tag would load (imports open_clip)."""
    import open_clip

    settings = open_clip.pretrained.get_pretrained_cfg(model, tag)
    extra: dict[str, Any] = {arg: settings[key] for key, arg in _PREPROCESS.items() if settings.get(key) is not None}
    return {**extra, "force_quick_gelu": bool(settings.get("quick_gelu", False))}


def _register_config(path: str, model: str) -> None:
    """Make an open_clip model config file (``<name>.json``) known, so ``model`` can name it."""
    import open_clip

    cfg = Path(path)
    if not cfg.is_file():
        raise BackendError(f"open_clip model config {path} does not exist",
                           hint="[embedder] model_config must point at an open_clip JSON config file")
    if cfg.stem != model:
        raise BackendError(f"[embedder] model is {model!r} but model_config is {cfg.name}",
                           hint=f"name the model after its config file: model = {cfg.stem!r}")
    if model not in open_clip.list_models():
        open_clip.add_model_config(cfg)


def check(model: str = "ViT-B-32", pretrained: str | None = "laion2b_s34b_b79k", offline: bool = False,
          allow_random: bool = False, model_config: str | None = None, **_: Any) -> Readiness:
    """Whether the embedder can load here, without loading it (nor importing torch for a known tag)."""
    missing = missing_packages("torch", "open_clip")
    if missing:
        return Readiness(False, f"missing package{'s' if len(missing) > 1 else ''}: {', '.join(missing)}",
                         fix=install_hint(missing))
    if model_config is not None and not Path(model_config).is_file():
        return Readiness(False, f"open_clip model config {model_config} does not exist",
                         fix="set [embedder] model_config to an open_clip JSON config file")
    pretrained = pretrained or "none"
    if pretrained == "none":
        return Readiness(True, "random weights (tests only: retrieval scores carry no meaning)")
    if _is_path(pretrained):
        if Path(pretrained).is_file():
            return Readiness(True, f"local checkpoint {pretrained}")
        return Readiness(False, f"open_clip checkpoint {pretrained} does not exist",
                         fix="set [embedder] pretrained to an existing .safetensors/.pt file, or a pretrained tag")
    what = f"open_clip {model} weights {pretrained!r}"
    try:
        local, looked = cached_weights(model, pretrained)
    except BackendError as e:
        return Readiness(False, e.message, fix=e.hint)
    if local:
        return Readiness(True, f"weights cached at {local}")
    if allow_random:
        return Readiness(True, "weights not on disk: an untrained model of the same shape (scores carry no meaning)")
    where = f"not on disk (looked in {'; '.join(looked)})"
    if offline_mode(offline or None):
        return Readiness(False, f"{what} are {where} and downloads are off", fix=weights_fix(model, pretrained))
    reachable, why = hub_reachable()
    if not reachable:
        return Readiness(False, f"{what} are {where} and {why}", fix=weights_fix(model, pretrained))
    return Readiness(True, f"weights will be downloaded on first use ({why})")


class OpenClipEmbedder:
    """Text and image embeddings from an open_clip model, loaded on first use."""

    backend = "open_clip"

    def __init__(
        self,
        model: str = "ViT-B-32",
        pretrained: str | None = "laion2b_s34b_b79k",
        *,
        device: str | None = None,
        batch_size: int = 16,
        offline: bool = False,
        allow_random: bool = False,
        seed: int = 0,
        model_config: str | None = None,
    ) -> None:
        self.model_name = model
        self.pretrained = pretrained or "none"
        self.device = device
        self.batch_size = batch_size
        self.offline = offline
        self.allow_random = allow_random
        self.seed = seed
        self.model_config = model_config
        self._model: Any = None
        self._preprocess: Any = None
        self._tokenizer: Any = None
        self.meaningful = self.pretrained != "none"
        self.weights: str = self.pretrained

    # -- identity -----------------------------------------------------------------------

    @property
    def name(self) -> str:
        """What made the vectors (recorded with every embedding)."""
        self._load()
        return f"open_clip:{self.model_name}:{self.weights}"

    @property
    def dim(self) -> int:
        self._load()
        return int(self._embed_dim)

    # -- loading ------------------------------------------------------------------------

    def _resolve_weights(self) -> tuple[str | None, str]:
        """What to pass to open_clip as ``pretrained`` (None = random init), and where it comes from:
        ``none``, ``path``, ``cached`` (a tag's file in the cache) or ``download`` (the tag itself)."""
        if self.pretrained == "none":
            return None, "none"
        if _is_path(self.pretrained):
            if not Path(self.pretrained).is_file():
                raise BackendError(
                    f"open_clip checkpoint {self.pretrained!r} does not exist",
                    hint="set [embedder] pretrained to an existing .safetensors/.pt file, or a pretrained tag",
                )
            return self.pretrained, "path"
        local, looked = cached_weights(self.model_name, self.pretrained)
        if local is not None:
            return local, "cached"
        if offline_mode(self.offline or None):
            why = "downloads are off"
        else:
            reachable, why = hub_reachable()
            if reachable:
                return self.pretrained, "download"
        if self.allow_random:
            log.info("open_clip weights %s/%s are not on disk; using an untrained model of the same shape",
                     self.model_name, self.pretrained)
            self.meaningful = False
            self.weights = "random"
            return None, "none"
        raise BackendError(
            f"open_clip weights for {self.model_name}/{self.pretrained} are not on disk and {why}",
            hint=f"{weights_fix(self.model_name, self.pretrained)} (looked in {'; '.join(looked)})",
        )

    def _load(self) -> None:
        if self._model is not None:
            return
        if self.model_config is None:  # weights that cannot be had fail here in seconds, before torch is imported
            weights, source = self._resolve_weights()
        import open_clip
        import torch

        if self.model_config is not None:
            _register_config(self.model_config, self.model_name)
            weights, source = self._resolve_weights()
        extra: dict[str, Any] = {}
        if source == "cached":
            extra = cached_tag_options(self.model_name, self.pretrained)
        elif source == "download":
            extra = {"cache_dir": hub_cache()}  # downloads to where cached_weights looks
        device = self.device or ("cuda" if torch.cuda.is_available() else "cpu")
        root = logging.getLogger()
        level = root.level
        if weights is None:
            root.setLevel(logging.ERROR)  # open_clip warns on the root logger about random init; we say it once
        try:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(self.seed)
                model, _, preprocess = open_clip.create_model_and_transforms(
                    self.model_name, pretrained=weights, device=device, **extra
                )
        except RuntimeError as e:
            if "Unknown model" in str(e) or "not found" in str(e):
                raise BackendError(
                    f"open_clip does not know the model {self.model_name!r}",
                    hint="see open_clip.list_models(); e.g. ViT-B-32, ViT-B-16, ViT-L-14",
                ) from e
            raise BackendError(f"cannot load open_clip {self.model_name} with {weights}: {str(e)[:300]}",
                               hint=weights_fix(self.model_name, self.pretrained)) from e
        except Exception as e:  # download failures surface as many types
            raise BackendError(
                f"cannot load open_clip weights {self.model_name}/{self.pretrained}: {str(e)[:300]}",
                hint=weights_fix(self.model_name, self.pretrained),
            ) from e
        finally:
            root.setLevel(level)
        model.eval()
        self._model = model
        self._preprocess = preprocess
        self._tokenizer = open_clip.get_tokenizer(self.model_name)
        self._device = device
        self._embed_dim = getattr(model, "embed_dim", None) or model.visual.output_dim
        if weights is None:
            self.meaningful = False
            self.weights = "random" if self.pretrained != "none" else "none"
        elif weights != self.pretrained:
            self.weights = self.pretrained  # a cached copy of the tag: record the tag, not the path
        else:
            self.weights = Path(weights).name if _is_path(weights) else weights

    # -- encoding -----------------------------------------------------------------------

    def embed_texts(self, texts: Sequence[str]) -> np.ndarray:
        """One unit vector per text."""
        self._load()  # first: weights that cannot be had fail before torch is imported
        import torch

        out = []
        for start in range(0, len(texts), self.batch_size):
            tokens = self._tokenizer(list(texts[start : start + self.batch_size])).to(self._device)
            with torch.no_grad():
                out.append(self._model.encode_text(tokens, normalize=True).float().cpu().numpy())
        return _stack(out, self.dim)

    def embed_images(self, images: Sequence[Any]) -> np.ndarray:
        """One unit vector per PIL image."""
        self._load()
        import torch

        out = []
        for start in range(0, len(images), self.batch_size):
            batch = torch.stack([self._preprocess(im.convert("RGB")) for im in images[start : start + self.batch_size]])
            with torch.no_grad():
                out.append(self._model.encode_image(batch.to(self._device), normalize=True).float().cpu().numpy())
        return _stack(out, self.dim)


def _stack(parts: list[np.ndarray], dim: int) -> np.ndarray:
    if not parts:
        return np.zeros((0, dim), dtype=np.float32)
    return np.ascontiguousarray(np.concatenate(parts, axis=0), dtype=np.float32)
