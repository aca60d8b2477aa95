"""Fixtures for the real-model backends: a loopback OpenAI-compatible server, tiny diffusers pipelines.

The server (``tests/openai_loopback.py``) is a real HTTP server on 127.0.0.1 speaking the OpenAI
wire format; each test scripts its replies and reads back every request it saw. The pipelines
are real diffusers components at toy size, built offline under ``torch.manual_seed(0)`` with a
CLIP tokenizer rebuilt from open_clip's bundled BPE file, saved with ``save_pretrained`` and
loaded back by path, once per session.
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from openai_loopback import FAKE_KEY, OpenAIServer


@dataclass
class CallLog:
    """A real event store and blob store holding one story, and call recorders writing to its main branch."""

    store: Any
    blobs: Any
    story: str = "calls"

    def events(self) -> list[Any]:
        return list(self.store.read(self.story, "main"))

    def recorder(self, backends: Any, *, known: dict[str, Any] | None = None,
                 recording: list[Any] | None = None) -> Any:
        from codirector.engine.recording.recorder import CallRecorder
        from codirector.engine.recording.writer import RunWriter

        writer = RunWriter(self.store, self.story, "main", head=self.store.head(self.story))
        return CallRecorder(writer, self.blobs, backends, known=known, recording=recording)


@pytest.fixture
def call_log(tmp_path: Path) -> Iterator[CallLog]:
    from codirector.events import StoryCreated
    from codirector.store.blobs import open_blobs
    from codirector.store.event_store import EventStore

    store = EventStore.open(f"sqlite:///{tmp_path / 'calls.db'}", create=True)
    log = CallLog(store, open_blobs(tmp_path / "blobs"))
    store.create_story(log.story, title="calls", events=[StoryCreated(title="calls", seed=1).at()])
    yield log
    store.close()


@pytest.fixture
def openai_server() -> Iterator[OpenAIServer]:
    server = OpenAIServer().start()
    yield server
    server.stop()


@pytest.fixture
def api_key(monkeypatch: pytest.MonkeyPatch) -> str:
    """A distinctive fake key in OPENAI_API_KEY (to be sent to the loopback server, and found nowhere else)."""
    monkeypatch.setenv("OPENAI_API_KEY", FAKE_KEY)
    return FAKE_KEY


# ---------------------------------------------------------------------------- tiny pipelines


@dataclass(frozen=True)
class TinyPipelines:
    root: Path
    sd: Path  # StableDiffusionPipeline with a CLIP image encoder (for IP-Adapter)
    ip_adapter: Path  # a folder with ip_adapter.safetensors matching the tiny UNet
    wan: Path  # WanImageToVideoPipeline


def clip_tokenizer(folder: Path) -> Any:
    """The full CLIP BPE tokenizer, rebuilt offline from open_clip's bundled vocabulary file."""
    import open_clip
    from open_clip.tokenizer import bytes_to_unicode
    from transformers import CLIPTokenizer

    lines = gzip.open(open_clip.tokenizer.default_bpe()).read().decode("utf-8").split("\n")
    merges = lines[1 : 49152 - 256 - 2 + 1]
    base = list(bytes_to_unicode().values())
    vocab = [*base, *(b + "</w>" for b in base), *("".join(m.split()) for m in merges),
             "<|startoftext|>", "<|endoftext|>"]
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.json").write_text(json.dumps({tok: i for i, tok in enumerate(vocab)}))
    (folder / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n")
    # from_pretrained, not CLIPTokenizer(vocab_file=...): the latter builds a 2-token vocab in transformers 5
    return CLIPTokenizer.from_pretrained(str(folder), pad_token="<|endoftext|>", model_max_length=77)


def _tiny_sd(tokenizer: Any, out: Path) -> Any:
    import torch
    from diffusers import AutoencoderKL, DDIMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import (
        CLIPImageProcessor,
        CLIPTextConfig,
        CLIPTextModel,
        CLIPVisionConfig,
        CLIPVisionModelWithProjection,
    )

    torch.manual_seed(0)
    unet = UNet2DConditionModel(block_out_channels=(4, 8), layers_per_block=1, sample_size=32, in_channels=4,
                                out_channels=4, down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
                                up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"), cross_attention_dim=8,
                                norm_num_groups=2)
    torch.manual_seed(0)
    vae = AutoencoderKL(block_out_channels=[4, 8], in_channels=3, out_channels=3, latent_channels=4,
                        down_block_types=["DownEncoderBlock2D"] * 2, up_block_types=["UpDecoderBlock2D"] * 2,
                        norm_num_groups=2)
    torch.manual_seed(0)
    text = CLIPTextModel(CLIPTextConfig(hidden_size=8, intermediate_size=16, num_attention_heads=2,
                                        num_hidden_layers=2, vocab_size=49408, bos_token_id=49406,
                                        eos_token_id=49407, pad_token_id=49407, projection_dim=8))
    torch.manual_seed(0)
    image_encoder = CLIPVisionModelWithProjection(CLIPVisionConfig(
        hidden_size=8, projection_dim=8, num_hidden_layers=1, num_attention_heads=2, image_size=32,
        intermediate_size=16, patch_size=8))
    scheduler = DDIMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", clip_sample=False,
                              set_alpha_to_one=False, steps_offset=1)
    pipe = StableDiffusionPipeline(vae=vae, text_encoder=text, tokenizer=tokenizer, unet=unet, scheduler=scheduler,
                                   safety_checker=None, feature_extractor=CLIPImageProcessor(crop_size=32, size=32),
                                   image_encoder=image_encoder, requires_safety_checker=False)
    pipe.save_pretrained(str(out))
    return pipe


def _tiny_ip_adapter(unet: Any, image_embed_dim: int, out: Path) -> None:
    """A random IP-Adapter (image projection + key/value projections per cross-attention) for ``unet``."""
    import torch
    from safetensors.torch import save_file

    cross = unet.config.cross_attention_dim
    g = torch.Generator().manual_seed(0)
    tensors = {
        "image_proj.proj.weight": torch.randn(4 * cross, image_embed_dim, generator=g),
        "image_proj.proj.bias": torch.zeros(4 * cross),
        "image_proj.norm.weight": torch.ones(cross),
        "image_proj.norm.bias": torch.zeros(cross),
    }
    channels = list(unet.config.block_out_channels)
    key = 1  # diffusers numbers the cross-attention layers 1, 3, 5, ... in attn_processors order
    for name in unet.attn_processors:
        if not name.endswith("attn2.processor"):
            continue
        block = name.split(".")
        if block[0] == "mid_block":
            hidden = channels[-1]
        elif block[0] == "up_blocks":
            hidden = channels[::-1][int(block[1])]
        else:
            hidden = channels[int(block[1])]
        tensors[f"ip_adapter.{key}.to_k_ip.weight"] = torch.randn(hidden, cross, generator=g)
        tensors[f"ip_adapter.{key}.to_v_ip.weight"] = torch.randn(hidden, cross, generator=g)
        key += 2
    out.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(out / "ip_adapter.safetensors"))


def _tiny_wan(tokenizer: Any, out: Path) -> None:
    import torch
    from diffusers import (
        AutoencoderKLWan,
        FlowMatchEulerDiscreteScheduler,
        WanImageToVideoPipeline,
        WanTransformer3DModel,
    )
    from transformers import CLIPImageProcessor, CLIPVisionConfig, CLIPVisionModel, UMT5Config, UMT5EncoderModel

    torch.manual_seed(0)
    vae = AutoencoderKLWan(base_dim=3, z_dim=16, dim_mult=[1, 1, 1, 1], num_res_blocks=1,
                           temperal_downsample=[False, True, True])
    torch.manual_seed(0)
    text = UMT5EncoderModel(UMT5Config(vocab_size=49408, d_model=32, d_kv=8, d_ff=37, num_layers=2, num_heads=4,
                                       relative_attention_num_buckets=8))
    torch.manual_seed(0)
    transformer = WanTransformer3DModel(patch_size=(1, 2, 2), num_attention_heads=2, attention_head_dim=12,
                                        in_channels=36, out_channels=16, text_dim=32, freq_dim=256, ffn_dim=32,
                                        num_layers=2, cross_attn_norm=True, qk_norm="rms_norm_across_heads",
                                        rope_max_seq_len=32, image_dim=4)
    torch.manual_seed(0)
    image_encoder = CLIPVisionModel(CLIPVisionConfig(hidden_size=4, projection_dim=4, num_hidden_layers=2,
                                                     num_attention_heads=2, image_size=32, intermediate_size=16,
                                                     patch_size=1))
    pipe = WanImageToVideoPipeline(tokenizer=tokenizer, text_encoder=text, vae=vae,
                                   scheduler=FlowMatchEulerDiscreteScheduler(shift=7.0),
                                   image_processor=CLIPImageProcessor(crop_size=32, size=32),
                                   image_encoder=image_encoder, transformer=transformer)
    pipe.save_pretrained(str(out))


@pytest.fixture(scope="session")
def tiny_pipelines(tmp_path_factory: pytest.TempPathFactory) -> TinyPipelines:
    """Tiny random SD (+ IP-Adapter) and Wan I2V pipelines on disk, built once per session."""
    pytest.importorskip("diffusers")
    import torch

    root = tmp_path_factory.mktemp("tiny-diffusers")
    with torch.random.fork_rng(devices=[]):
        tokenizer = clip_tokenizer(root / "tokenizer")
        sd = _tiny_sd(tokenizer, root / "sd")
        _tiny_ip_adapter(sd.unet, sd.image_encoder.config.projection_dim, root / "ip-adapter")
        _tiny_wan(tokenizer, root / "wan")
    return TinyPipelines(root, root / "sd", root / "ip-adapter", root / "wan")
