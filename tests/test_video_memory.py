"""Long videos: lip crops stay uint8 until the video encoder reads them, and its front-end runs
a few frames at a time, with the same features as one pass over the whole clip in float32."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from speechkit.media.lips import geometry as geo
from speechkit.models.speechllm.checkpoint import EncoderSpec
from speechkit.models.speechllm.encoders import load_encoder
from speechkit.models.speechllm.encoders import video as video_encoder
from tests.test_hostile_inputs import face_clip  # noqa: F401  (the fixture)

TINY = dict(dim=32, layers=2, heads=2, ffn_dim=64, conv_pos=4, conv_pos_groups=4, resnet_width=4)


@pytest.fixture(scope="module")
def real_crops(face_clip):  # noqa: F811
    """A real clip's 96x96 mouth crops (uint8), repeated and jittered to 300 frames."""
    from speechkit.media.lips import cached_crops

    crops = cached_crops(face_clip, cache=False).crops
    rng = np.random.default_rng(0)
    long = np.concatenate([crops] * 6)
    return np.clip(long.astype(np.int16) + rng.integers(-20, 21, long.shape), 0, 255).astype(np.uint8)


def test_lip_stream_keeps_crops_as_uint8_and_makes_floats_on_request(face_clip):  # noqa: F811
    from speechkit.media.lips import lip_stream

    stream = lip_stream(face_clip, cache=False)
    assert stream.model_crops.dtype == np.uint8 and stream.model_crops.shape[1:] == (88, 88)
    assert stream.frames.dtype == np.float32
    np.testing.assert_allclose(stream.frames, geo.model_input(stream.crops))


def test_avsr_inputs_carry_uint8_crops(face_clip):  # noqa: F811
    from speechkit.data import Item
    from speechkit.prepare import VIDEO, add_lips

    inputs: dict = {}
    extras = add_lips(Item(id="x", path=str(face_clip)), "vsr", inputs, None)
    assert inputs[VIDEO].dtype == np.uint8 and extras["lips"]["frames"] == len(inputs[VIDEO]) == 50


@pytest.mark.parametrize("lengths", [[300], [300, 131, 1, 64, 65]])
def test_chunked_uint8_features_equal_one_float_pass(real_crops, monkeypatch, lengths):
    enc = load_encoder(EncoderSpec(modality="video", stream="video", type="avhubert",
                                   source="random", config=TINY))
    raw = [geo.center_crops(real_crops[:n]) for n in lengths]
    chunked = enc.encode_windows(raw)
    monkeypatch.setattr(video_encoder, "FRONTEND_FRAMES", 10_000)  # the whole clip at once
    whole = enc.encode_windows([geo.model_input(real_crops[:n]) for n in lengths])
    for a, b, n in zip(chunked, whole, lengths, strict=True):
        assert a.shape == (n, 32)
        torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)


def test_the_front_end_never_sees_more_than_a_chunk(real_crops, monkeypatch):
    enc = load_encoder(EncoderSpec(modality="video", stream="video", type="avhubert",
                                   source="random", config=TINY))
    seen: list[int] = []
    front = enc.model.frontend
    monkeypatch.setattr(front, "forward", lambda x, f=front.forward: seen.append(x.shape[1]) or f(x))
    enc.encode_windows([geo.center_crops(real_crops)])
    assert max(seen) <= video_encoder.FRONTEND_FRAMES + 2 * video_encoder.FRONTEND_CONTEXT
    assert sum(seen) < len(real_crops) + 2 * video_encoder.FRONTEND_CONTEXT * len(seen)
