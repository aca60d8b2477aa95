"""Where model weights come from, whether the model hub can be reached, whether a GPU is there: fast answers.

The pre-flight (``generators.preflight``) and the loaders of the open_clip and diffusers backends ask
these questions; they share one set of answers so that a check and the load after it agree.

Invariants:
- Nothing here downloads, loads a model or imports torch, diffusers or open_clip. The only network use is
  ``hub_reachable``: one TCP connection to the hub (or to the proxy in front of it) that gives up after
  ``CONNECT_TIMEOUT`` seconds, name lookup included; its answer is kept for ``REMEMBER_S`` seconds. So a
  model that is not on disk fails in seconds when the hub is out of reach, never after a library's retries.
- Downloads are off when a backend's ``offline`` option says so, else when ``HF_HUB_OFFLINE`` is set.
- ``hub_cache`` is the folder huggingface_hub uses (``HF_HUB_CACHE``, else ``HF_HOME``/hub, else its
  default), read from the environment when asked; loaders pass it on as ``cache_dir``, so the place a
  lookup searched is the place a download writes to.
"""

from __future__ import annotations

import ast
import importlib.util
import os
import socket
import sys
import threading
import time
import urllib.request
from pathlib import Path
from urllib.parse import urlsplit

DEFAULT_ENDPOINT = "https://huggingface.co"
CONNECT_TIMEOUT = 2.0
REMEMBER_S = 60.0

# import name -> what to `pip install` for it (all are dependencies of codirector; a broken install lacks them)
PIP_NAMES = {"open_clip": "open_clip_torch", "torch": "torch", "diffusers": "diffusers",
             "transformers": "transformers", "openai": "openai", "huggingface_hub": "huggingface_hub"}

_seen: dict[str, tuple[float, bool, str]] = {}
_TRUE = ("1", "true", "yes", "on")


def offline_mode(offline: bool | None = None) -> bool:
    """The backend's ``offline`` option if given, else ``HF_HUB_OFFLINE`` from the environment."""
    if offline is not None:
        return bool(offline)
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in _TRUE


def hub_cache() -> str:
    """The Hugging Face cache folder, as huggingface_hub resolves it (read from the environment now)."""
    if os.environ.get("HF_HUB_CACHE"):
        return os.environ["HF_HUB_CACHE"]
    if os.environ.get("HF_HOME"):
        return os.path.join(os.environ["HF_HOME"], "hub")
    from huggingface_hub import constants

    return str(constants.HF_HUB_CACHE)


def repo_folder(repo: str) -> str:
    """Where the cache keeps a model repository (``models--org--name``)."""
    return os.path.join(hub_cache(), "models--" + repo.replace("/", "--"))


def hub_endpoint() -> str:
    """The hub's URL: ``HF_ENDPOINT``, else huggingface.co."""
    return (os.environ.get("HF_ENDPOINT") or DEFAULT_ENDPOINT).rstrip("/")


def _shown(url: str) -> str:
    parts = urlsplit(url)
    host = parts.hostname or url
    return f"{parts.scheme}://{host}:{parts.port}" if parts.port else f"{parts.scheme}://{host}"


def _proxy_for(url: str) -> str | None:
    parts = urlsplit(url)
    proxies = urllib.request.getproxies()
    proxy = proxies.get(parts.scheme) or proxies.get("all")
    if proxy and not urllib.request.proxy_bypass(parts.hostname or ""):
        return proxy if "://" in proxy else f"http://{proxy}"
    return None


def _connect(host: str, port: int, timeout: float) -> str | None:
    """None if a TCP connection opens within ``timeout`` seconds (name lookup included), else why not."""
    outcome: list[str | None] = []

    def attempt() -> None:
        try:
            with socket.create_connection((host, port), timeout=timeout):
                outcome.append(None)
        except OSError as e:
            outcome.append(e.strerror or str(e) or type(e).__name__)

    worker = threading.Thread(target=attempt, daemon=True)  # getaddrinfo has no timeout of its own
    worker.start()
    worker.join(timeout)
    return outcome[0] if outcome else f"no answer within {timeout:g} s"


def hub_reachable() -> tuple[bool, str]:
    """Whether a download could start now: downloads are on and the hub (or the proxy) accepts a connection."""
    if offline_mode():
        return False, "downloads are off (HF_HUB_OFFLINE is set)"
    endpoint = hub_endpoint()
    target = _proxy_for(endpoint) or endpoint
    now = time.monotonic()
    hit = _seen.get(target)
    if hit is not None and now - hit[0] < REMEMBER_S:
        return hit[1], hit[2]
    parts = urlsplit(target)
    via = f" through the proxy {_shown(target)}" if target != endpoint else ""
    if not parts.hostname:
        ok, why = False, f"the hub address {endpoint!r} is not a URL (HF_ENDPOINT)"
    else:
        failed = _connect(parts.hostname, parts.port or (443 if parts.scheme == "https" else 80), CONNECT_TIMEOUT)
        ok = failed is None
        why = f"{_shown(endpoint)} answers{via}" if ok else f"{_shown(endpoint)} cannot be reached{via} ({failed})"
    _seen[target] = (now, ok, why)
    return ok, why


def forget_reachability() -> None:
    """Drop the remembered answers of ``hub_reachable`` (tests, or after the network changed)."""
    _seen.clear()


def missing_packages(*names: str) -> list[str]:
    """The import names among ``names`` that are not installed (found without importing them)."""
    return [n for n in names if importlib.util.find_spec(n) is None]


def install_hint(missing: list[str]) -> str:
    """``pip install ...`` for missing import names."""
    return "pip install " + " ".join(PIP_NAMES.get(n, n) for n in missing)


def _torch_build() -> tuple[str | None, str | None]:
    """The CUDA and ROCm versions torch was built for, read from its version file (torch is not imported)."""
    spec = importlib.util.find_spec("torch")
    if spec is None or not spec.origin:
        return None, None
    found: dict[str, str | None] = {}
    try:
        tree = ast.parse(Path(spec.origin).with_name("version.py").read_text(encoding="utf-8"))
    except (OSError, SyntaxError):
        return None, None
    for node in tree.body:
        target = node.targets[0] if isinstance(node, ast.Assign) else getattr(node, "target", None)
        value = getattr(node, "value", None)
        if isinstance(target, ast.Name) and isinstance(value, ast.Constant):
            found[target.id] = value.value if isinstance(value.value, str) else None
    return found.get("cuda"), found.get("hip")


def cuda_available() -> tuple[bool, str]:
    """Whether torch will see a CUDA (or ROCm) GPU, and what was found.

    A loaded torch is asked. Otherwise, on Linux, without importing torch (seconds): torch is built for
    CUDA or ROCm, a GPU device node is present (``/dev/nvidia0``..., ``/dev/kfd``) and
    ``CUDA_VISIBLE_DEVICES`` does not hide every device. A broken driver can fool this guess; the
    loader, which asks torch itself, then reports it. Elsewhere torch is imported and asked.
    """
    if "torch" in sys.modules or not sys.platform.startswith("linux"):
        if importlib.util.find_spec("torch") is None:
            return False, "torch is not installed"
        import torch

        return (True, "CUDA present") if torch.cuda.is_available() else (False, "no CUDA device")
    return cuda_guess()


def cuda_guess() -> tuple[bool, str]:
    """``cuda_available``'s answer on Linux without importing torch (see there)."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None and visible.strip() in ("", "-1"):
        return False, f"no CUDA device (CUDA_VISIBLE_DEVICES={visible!r} hides them all)"
    cuda, hip = _torch_build()
    if cuda and any(Path("/dev").glob("nvidia[0-9]*")):
        return True, f"CUDA present (torch built for CUDA {cuda})"
    if hip and Path("/dev/kfd").exists():
        return True, f"ROCm GPU present (torch built for ROCm {hip})"
    if not cuda and not hip:
        return False, "no CUDA: this torch is built for the CPU only"
    return False, "no CUDA device (no GPU driver device found)"
