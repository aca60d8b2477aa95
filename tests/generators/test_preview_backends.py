"""The offline preview backends: deterministic bytes, references visibly composited, exact frames."""

from __future__ import annotations

import io
import json
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from codirector.errors import BackendError
from codirector.generators.base import ImageInput, ImageRequest, VideoRequest, VLMRequest
from codirector.generators.preview import AnimaticVideoGenerator, PreviewVLM, StoryboardImageGenerator
from codirector.generators.video_io import encode_mp4, read_frames, sample_indices

from support import png_bytes


def ref(color: tuple[int, int, int], label: str) -> ImageInput:
    data = png_bytes(color, size=96)
    return ImageInput(label=label, digest=label, data=data)


def test_storyboard_is_deterministic_and_shows_its_references() -> None:
    gen = StoryboardImageGenerator()
    req = ImageRequest(prompt="Ada on the pier", purpose="keyframe", seed=3, width=256, height=144,
                       references=(ref((250, 0, 0), "Ada"), ref((0, 0, 250), "Ben")))
    a, b = gen.generate(req), gen.generate(req)
    assert a.png == b.png and (a.width, a.height) == (256, 144)
    im = np.asarray(Image.open(io.BytesIO(a.png)).convert("RGB")).reshape(-1, 3)
    # both reference colours appear in the panel (composited thumbnails), not only the backdrop
    assert (np.abs(im - [250, 0, 0]).sum(axis=1) < 30).sum() > 200
    assert (np.abs(im - [0, 0, 250]).sum(axis=1) < 30).sum() > 200
    other_seed = gen.generate(ImageRequest(**{**req.__dict__, "seed": 4}))
    assert other_seed.png != a.png  # another round is another image


def test_animatic_has_the_requested_frames_and_moves() -> None:
    key = StoryboardImageGenerator().generate(ImageRequest(prompt="a harbour", purpose="keyframe", seed=1,
                                                           width=128, height=96))
    req = VideoRequest(keyframe=ImageInput("k", "k", key.png), prompt="the boat sails away", seed=9,
                       num_frames=9, fps=8.0, width=128, height=96)
    out = AnimaticVideoGenerator().generate(req)
    frames = read_frames(out.mp4)
    assert out.frames == len(frames) == 9 and frames[0].shape == (96, 128, 3)
    assert np.abs(frames[0].astype(int) - frames[-1].astype(int)).mean() > 1  # it pans or zooms
    assert AnimaticVideoGenerator().generate(req).mp4 == out.mp4


ENCODE = """
import hashlib, sys
import numpy as np
from PIL import Image
from codirector.generators.video_io import encode_mp4
rng = np.random.default_rng(0)
base = Image.fromarray((rng.random((12, 16, 3)) * 255).astype("uint8")).resize((64, 48))
frames = [np.asarray(base.resize((64, 48), box=(i * 0.5, 0, 56 + i * 0.5, 42))) for i in range(9)]
print(len({hashlib.sha256(encode_mp4(frames, 8.0)).hexdigest() for _ in range(40)}),
      hashlib.sha256(encode_mp4(frames, 8.0)).hexdigest())
"""


def test_encoding_is_byte_identical_across_processes_under_load() -> None:
    procs = [subprocess.Popen([sys.executable, "-c", ENCODE], stdout=subprocess.PIPE, text=True) for _ in range(3)]
    outs = [p.communicate(timeout=300)[0].split() for p in procs]
    assert all(o[0] == "1" for o in outs)  # one result per process ...
    assert len({o[1] for o in outs}) == 1  # ... and the same one in every process


def test_video_io_round_trip_and_odd_sizes() -> None:
    frames = [np.full((32, 48, 3), i * 20, dtype=np.uint8) for i in range(6)]
    assert len(read_frames(encode_mp4(frames, 6.0))) == 6
    with pytest.raises(BackendError, match="even width and height"):
        encode_mp4([np.zeros((31, 48, 3), dtype=np.uint8)], 6.0)
    assert sample_indices(17, 8) == [0, 2, 5, 7, 9, 11, 14, 16]
    assert sample_indices(3, 8) == [0, 1, 2]


def test_plan_driven_vlm_answers_from_the_plan() -> None:
    vlm = PreviewVLM()
    plan = {"uses": ["Ada", "Ada_hat"], "known": ["Ada"], "cast": {"Ada": {"description": "a woman"}},
            "evolves": [{"name": "Ada_hat", "base_entity": "Ada", "description": "a woman in a hat"}]}
    out = json.loads(vlm.complete(VLMRequest(agent="memory_controller", system="", user="", hints=plan)).text)
    assert out == {"retrieved_existing": [{"name": "Ada"}],
                   "new_entities": [{"name": "Ada_hat", "description": "a woman in a hat", "base_entity": "Ada"}]}
    judged = json.loads(vlm.complete(VLMRequest(agent="keyframe_analyzer", system="", user="")).text)
    assert judged["decision"] == "accept" and judged["reasons"] == ["no judge in preview"]


def test_storyboard_fits_many_references_into_a_tiny_panel() -> None:
    refs = tuple(ref((i * 40 % 256, 90, 200), f"entity {i}") for i in range(9))
    out = StoryboardImageGenerator().generate(ImageRequest(prompt="a crowd", purpose="keyframe", seed=1,
                                                           width=64, height=48, references=refs))
    assert Image.open(io.BytesIO(out.png)).size == (64, 48)
