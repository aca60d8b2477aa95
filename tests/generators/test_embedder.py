"""open_clip embedder on a tiny local config: one space for text and images, deterministic, offline."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from codirector.errors import BackendError
from codirector.generators.embedder import OpenClipEmbedder

from support import png_bytes


def test_text_and_image_vectors_share_one_normalised_space(tiny_embedder: OpenClipEmbedder) -> None:
    t = tiny_embedder.embed_texts(["a red scarf", "a lighthouse at dusk", "a red scarf"])
    ims = [Image.open(io.BytesIO(png_bytes(c))) for c in [(255, 0, 0), (0, 0, 255)]]
    i = tiny_embedder.embed_images(ims)
    assert t.shape == (3, 32) and i.shape == (2, 32) and t.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(t, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(i, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(t[0], t[2], atol=1e-6)
    assert not np.allclose(t[0], t[1])
    assert tiny_embedder.meaningful is False and tiny_embedder.name.endswith(":none")


def test_batches_give_the_same_vectors(tiny_clip: str) -> None:
    texts = [f"entity number {i}" for i in range(7)]
    a = OpenClipEmbedder(tiny_clip, "none", device="cpu", batch_size=2).embed_texts(texts)
    b = OpenClipEmbedder(tiny_clip, "none", device="cpu", batch_size=16).embed_texts(texts)
    np.testing.assert_allclose(a, b, atol=1e-5)  # also: two loads give the same seeded weights


def test_local_checkpoint_round_trip(tiny_clip: str, tmp_path: Path) -> None:
    import open_clip
    import torch

    torch.manual_seed(123)
    model = open_clip.create_model(tiny_clip, pretrained=None)
    ckpt = tmp_path / "tiny.pt"
    torch.save(model.state_dict(), ckpt)
    emb = OpenClipEmbedder(tiny_clip, str(ckpt), device="cpu")
    with torch.no_grad():
        want = model.encode_text(open_clip.get_tokenizer(tiny_clip)(["hello"]), normalize=True).numpy()
    np.testing.assert_allclose(emb.embed_texts(["hello"]), want, atol=1e-5)
    assert emb.meaningful and emb.name == f"open_clip:{tiny_clip}:tiny.pt"


def test_missing_weights_offline_name_the_model_and_the_fix() -> None:
    emb = OpenClipEmbedder("ViT-B-32", "laion2b_s34b_b79k", device="cpu", offline=True)
    with pytest.raises(BackendError) as info:
        emb.embed_texts(["x"])
    assert "ViT-B-32/laion2b_s34b_b79k" in str(info.value)
    assert "looked in" in str(info.value.hint) and "local checkpoint" in str(info.value.hint)


def test_missing_checkpoint_file_and_unknown_tag(tiny_clip: str, tmp_path: Path) -> None:
    with pytest.raises(BackendError, match="does not exist"):
        OpenClipEmbedder(tiny_clip, str(tmp_path / "nope.pt")).embed_texts(["x"])
    with pytest.raises(BackendError, match="no pretrained tag"):
        OpenClipEmbedder("ViT-B-32", "no_such_tag", offline=True).embed_texts(["x"])


def test_offline_preview_falls_back_to_random_weights_and_says_so(tiny_clip: str) -> None:
    emb = OpenClipEmbedder("ViT-B-32", "laion2b_s34b_b79k", device="cpu", offline=True, allow_random=True)
    v = emb.embed_texts(["x"])
    assert v.shape == (1, 512) and emb.meaningful is False and emb.name.endswith(":random")
