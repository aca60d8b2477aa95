"""open_clip embedder: entity descriptions (text) and reference views (images) in one space.

Invariants:
- Outputs are float32, shape (n, dim), L2-normalised, so cosine similarity is a dot product.
- ``pretrained`` is a tag (``laion2b_s34b_b79k``), a local checkpoint path, or ``"none"``
  (random weights, seeded, so the same code gives the same vectors: tests and offline preview).
- With ``offline=True`` nothing is downloaded: a tag is used only if its weights are already in
  the Hugging Face cache; otherwise ``allow_random`` decides between a seeded random model of
  the same shape (``meaningful`` is then False and says so) and a ``BackendError`` that names
  the model, where it looked, and how to point at a local file.
- torch and open_clip are imported here only, when the model is first used.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from codirector.errors import BackendError

log = logging.getLogger(__name__)

_HF_FILES = ("open_clip_model.safetensors", "open_clip_pytorch_model.bin")


def _is_path(pretrained: str) -> bool:
    return pretrained.endswith((".pt", ".pth", ".bin", ".safetensors")) or os.sep in pretrained


def cached_weights(model: str, tag: str) -> tuple[str | None, list[str]]:
    """The local file of a pretrained tag if the Hugging Face cache holds it, and where it looked."""
    import open_clip
    from huggingface_hub import constants, try_to_load_from_cache

    cfg = open_clip.pretrained.get_pretrained_cfg(model, tag)
    if not cfg:
        known = open_clip.list_pretrained_tags_by_model(model)
        raise BackendError(
            f"open_clip has no pretrained tag {tag!r} for model {model!r}",
            hint=f"known tags for {model}: {', '.join(known) or 'none'}; or give a local checkpoint path",
        )
    looked: list[str] = []
    hub = cfg.get("hf_hub", "")
    if hub:
        repo, filename = os.path.split(hub.rstrip("/")) if not hub.endswith("/") else (hub.rstrip("/"), "")
        names = [filename] if filename else list(_HF_FILES)
        for name in names:
            looked.append(f"{constants.HF_HUB_CACHE}/models--{repo.replace('/', '--')} ({name})")
            found = try_to_load_from_cache(repo, name)
            if isinstance(found, str):
                return found, looked
    return None, looked


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
          allow_random: bool = False, **_: Any) -> tuple[bool, str]:
    """Whether the embedder can load here, without loading it."""
    pretrained = pretrained or "none"
    if pretrained == "none":
        return True, "random weights (tests only: retrieval scores carry no meaning)"
    if _is_path(pretrained):
        return (True, "local checkpoint") if Path(pretrained).is_file() else (False, f"{pretrained} does not exist")
    try:
        local, looked = cached_weights(model, pretrained)
    except BackendError as e:
        return False, e.message
    if local:
        return True, f"weights cached at {local}"
    if allow_random:
        return True, "weights not on disk: an untrained model of the same shape (scores carry no meaning)"
    if offline:
        return False, "weights not on disk and downloads are off"
    return True, "weights will be downloaded on first use"


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

    def _resolve_weights(self) -> str | None:
        """What to pass to open_clip as ``pretrained`` (None = random init)."""
        if self.pretrained == "none":
            return None
        if _is_path(self.pretrained):
            if not Path(self.pretrained).is_file():
                raise BackendError(
                    f"open_clip checkpoint {self.pretrained!r} does not exist",
                    hint="set [embedder] pretrained to an existing .safetensors/.pt file, or a pretrained tag",
                )
            return self.pretrained
        if not self.offline:
            return self.pretrained
        local, looked = cached_weights(self.model_name, self.pretrained)
        if local is not None:
            return local
        if self.allow_random:
            log.info("open_clip weights %s/%s are not on disk; using an untrained model of the same shape",
                     self.model_name, self.pretrained)
            self.meaningful = False
            self.weights = "random"
            return None
        raise BackendError(
            f"open_clip weights for {self.model_name}/{self.pretrained} are not on disk and downloads are off",
            hint="looked in: " + "; ".join(looked)
            + ". Download them once with network access, or set [embedder] pretrained to a local checkpoint path",
        )

    def _load(self) -> None:
        if self._model is not None:
            return
        import open_clip
        import torch

        if self.model_config is not None:
            _register_config(self.model_config, self.model_name)
        weights = self._resolve_weights()
        device = self.device or ("cuda" if torch.cuda.is_available() else "cpu")
        root = logging.getLogger()
        level = root.level
        if weights is None:
            root.setLevel(logging.ERROR)  # open_clip warns on the root logger about random init; we say it once
        try:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(self.seed)
                model, _, preprocess = open_clip.create_model_and_transforms(
                    self.model_name, pretrained=weights, device=device
                )
        except RuntimeError as e:
            if "Unknown model" in str(e) or "not found" in str(e):
                raise BackendError(
                    f"open_clip does not know the model {self.model_name!r}",
                    hint="see open_clip.list_models(); e.g. ViT-B-32, ViT-B-16, ViT-L-14",
                ) from e
            raise BackendError(f"cannot load open_clip {self.model_name} with {weights}: {e}") from e
        except Exception as e:  # download failures surface as many types
            raise BackendError(
                f"cannot load open_clip weights {self.model_name}/{self.pretrained}: {e}",
                hint="check the network, or set [embedder] pretrained to a local checkpoint path",
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
        import torch

        self._load()
        out = []
        for start in range(0, len(texts), self.batch_size):
            tokens = self._tokenizer(list(texts[start : start + self.batch_size])).to(self._device)
            with torch.no_grad():
                out.append(self._model.encode_text(tokens, normalize=True).float().cpu().numpy())
        return _stack(out, self.dim)

    def embed_images(self, images: Sequence[Any]) -> np.ndarray:
        """One unit vector per PIL image."""
        import torch

        self._load()
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
