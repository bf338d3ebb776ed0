"""Audio-visual speech recognition with a tiny converted Llama-AVSR checkpoint: the video
encoder, batches of clips of different lengths, talking-face clips (made from a photograph and
real speech, tests/face_media.py; fixed center crops standing in for landmark lip crops), and
the `lrs3` suite on an LRS3-layout tree of those clips (and, in the devset group, of the
development set's real GRID and TED clips)."""

from __future__ import annotations

import numpy as np
import pytest

from speechkit.errors import SpeechkitError
from speechkit.evaluation.bench import run_bench
from speechkit.models.base import DecodeOptions
from speechkit.models.speechllm import load_speechllm
from speechkit.models.speechllm.checkpoint import EncoderSpec
from speechkit.models.speechllm.encoders import load_encoder
from tests.llama_avsr_parts import center_lip_crops, tiny_llama_avsr
from tests.test_speechllm_tiny import noise

TINY_VIDEO = dict(dim=32, layers=2, heads=2, ffn_dim=64, conv_pos=4, conv_pos_groups=2,
                  resnet_width=8)
DEV_CLIPS = {"laalm_sample1.mp4": "And so one of the major challenges of our project really is to "
                              "find photographs that were taken before something.",
         "lipnet_grid_bbaf2n.mpg": "bin blue at f two now"}


@pytest.fixture(scope="module")
def avsr(tmp_path_factory):
    return load_speechllm(str(tiny_llama_avsr(tmp_path_factory.mktemp("avsr"))))


def crops(seconds: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.standard_normal((round(seconds * 25), 88, 88)).astype(np.float32)


def _one_by_one(model, batch, options):
    tokens = []
    for x in batch:
        model.generate([x], options)
        tokens.extend(model.last_tokens)
    return tokens


def test_video_encoder_gives_each_clip_of_a_batch_its_own_features():
    spec = EncoderSpec(modality="video", stream="video", type="avhubert", source="random",
                       config=TINY_VIDEO)
    enc = load_encoder(spec)
    assert (enc.stream, enc.frame_rate, enc.dim) == ("video", 25.0, 32)
    clips = [crops(0.04, 1), crops(1.48, 2), crops(3.2, 3)]  # one frame, 37 and 80 frames
    feats, lengths = enc(clips)
    assert lengths.tolist() == [1, 37, 80] and feats.shape == (3, 80, 32)
    for i, clip in enumerate(clips):
        alone, _ = enc([clip])
        np.testing.assert_allclose(feats[i, :len(clip)].numpy(), alone[0].numpy(), atol=1e-5)
        assert not feats[i, len(clip):].any()
    with pytest.raises(SpeechkitError, match=r"lip crops must be \[T, H, W\]"):
        enc([np.zeros((5, 88), np.float32)])


def test_video_encoder_sizes_are_checked(tmp_path):
    spec = EncoderSpec(modality="video", stream="video", type="avhubert", source="random",
                       config={**TINY_VIDEO, "heads": 3})
    with pytest.raises(SpeechkitError, match="divisible by heads"):
        load_encoder(spec)
    spec = EncoderSpec(modality="video", stream="audio", type="avhubert", source="random",
                       config=TINY_VIDEO)
    with pytest.raises(SpeechkitError, match="reads the video stream"):
        load_encoder(spec)
    spec = EncoderSpec(modality="video", stream="video", type="avhubert", source=str(tmp_path))
    with pytest.raises(SpeechkitError, match="no config.json"):
        load_encoder(spec)


@pytest.mark.parametrize("beam", [1, 3])
def test_batched_audio_visual_output_equals_one_at_a_time(avsr, beam):
    batch = [{"audio": noise(1.0, 1), "video": crops(1.0, 1)},
             {"audio": noise(4.3, 2), "video": crops(4.3, 2)},
             {"audio": noise(0.5, 3), "video": crops(0.04, 3)},  # a one-frame video
             {"audio": noise(2.2, 4)}]  # no lips: this item reads its audio only
    options = DecodeOptions(task="avsr", beam_size=beam, max_new_tokens=6)
    avsr.generate(batch, options)
    batched = avsr.last_tokens
    assert batched == _one_by_one(avsr, batch, options)
    assert all(len(t) > 0 for t in batched)


def test_the_prompt_wraps_each_stream_in_its_added_tokens(avsr):
    from speechkit.models.speechllm.prompts import render, task_prompt

    spec = avsr.spec.prompt
    assert task_prompt(spec, "vsr") == "Transcribe video to text."
    text = render(spec, task_prompt(spec, "avsr"), avsr.tokenizer)
    x = {"audio": noise(1.2, 5), "video": crops(1.2, 5)}
    both = avsr.prompt_embeds([x], [text])[0]
    audio_only = avsr.prompt_embeds([{"audio": x["audio"]}], [text])[0]
    video_only = avsr.prompt_embeds([{"video": x["video"]}], [text])[0]
    prompt = len(avsr.tokenizer("Transcribe speech and video to text.",
                                add_special_tokens=False)["input_ids"])
    audio_tokens, video_tokens = 60 // 3, 30 // 2  # 50 Hz / 3 and 25 Hz / 2 over 1.2 s
    assert both.shape[0] == 1 + (audio_tokens + 2) + (video_tokens + 2) + prompt
    assert audio_only.shape[0] == 1 + audio_tokens + 2 + prompt
    assert video_only.shape[0] == 1 + video_tokens + 2 + prompt
    table = avsr.llm.get_input_embeddings().weight
    ids = avsr.tokenizer.convert_tokens_to_ids(["<audio>", "</audio>", "<video>", "</video>"])
    opened = [1, audio_tokens + 2, audio_tokens + 3, audio_tokens + video_tokens + 4]
    for at, token in zip(opened, ids, strict=True):
        assert both[at].tolist() == table[token].tolist()


@pytest.mark.parametrize("task", ["avsr", "vsr"])
def test_talking_face_clips_decode_in_a_batch_as_alone(avsr, face_clips, ffmpeg, task):
    from speechkit.media.ffmpeg import decode_audio

    batch = []
    for clip in face_clips.values():  # 3 s and 5.3 s: a batch of two lengths
        path = clip.path
        audio = decode_audio(str(path), 16000)
        lips = center_lip_crops(path, ffmpeg)
        assert abs(len(lips) - len(audio) / 16000 * 25) <= 1  # one clock for both streams
        batch.append({"video": lips} if task == "vsr" else {"audio": audio, "video": lips})
    options = DecodeOptions(task=task, beam_size=2, max_new_tokens=8)
    hyps = avsr.generate(batch, options)
    assert avsr.last_tokens == _one_by_one(avsr, batch, options)
    assert all(h.extras["n_tokens"] > 0 for h in hyps)


def _lrs3_tree(root, clips):
    """LRS3's test layout (test/SPEAKER/00001.mp4 beside 00001.txt) over {video: its words}."""
    for i, (path, text) in enumerate(clips.items()):
        spk = root / "test" / f"spk{i}"
        spk.mkdir(parents=True)
        (spk / "00001.mp4").symlink_to(path)  # ffmpeg reads the content, .mpg included
        (spk / "00001.txt").write_text(f"Text:  {text.upper()}\nConf:  4\n")
    return root


@pytest.fixture()
def lrs3_root(face_clips, tmp_path):
    return _lrs3_tree(tmp_path / "lrs3", {c.path: c.text for c in face_clips.values()})


def test_lrs3_audio_track_scores_a_converted_checkpoint(avsr, lrs3_root, tmp_path):
    root = lrs3_root
    run = run_bench("lrs3", avsr, data_root=root, modality="audio", out_dir=tmp_path / "o",
                    decode=DecodeOptions(max_new_tokens=6), progress=False)
    summary = run.summary
    assert summary["run"]["modality"] == "audio" and summary["run"]["task"] == "asr"
    assert summary["counts"]["scored"] == 2 and summary["normalizer"] == "lrs3"
    assert summary["metrics"]["wer"] > 0  # random weights: the point is the path, not the score
    assert "Llama-AVSR" in (tmp_path / "o" / "results.md").read_text()


def test_lrs3_tracks_follow_the_checkpoint_encoders(avsr):
    from speechkit.evaluation.bench import model_modalities
    from speechkit.models.identity import model_card

    every = ("audio", "video", "audiovisual")
    assert model_modalities(avsr) == every
    assert model_modalities(model_card(avsr.name)) == every  # a directory, weights not loaded


def assert_video_track_scores_both_clips(avsr, root, out_dir, modality, task):
    summary = run_bench("lrs3", avsr, data_root=root, modality=modality, out_dir=out_dir,
                        decode=DecodeOptions(max_new_tokens=6), progress=False).summary
    assert summary["run"]["modality"] == modality and summary["run"]["task"] == task
    assert summary["counts"]["scored"] == 2 and summary["normalizer"] == "lrs3"


@pytest.mark.parametrize("modality,task", [("video", "vsr"), ("audiovisual", "avsr")])
def test_lrs3_video_tracks_read_lip_crops(avsr, lrs3_root, tmp_path, modality, task):
    pytest.importorskip("dlib")
    assert_video_track_scores_both_clips(avsr, lrs3_root, tmp_path / "o", modality, task)


@pytest.mark.parametrize("modality,task", [("video", "vsr"), ("audiovisual", "avsr")])
def test_lrs3_video_tracks_read_lip_crops_of_real_clips(avsr, dev_dir, tmp_path, modality, task):
    pytest.importorskip("dlib")
    root = _lrs3_tree(tmp_path / "lrs3", {dev_dir / "avsr" / n: t for n, t in DEV_CLIPS.items()})
    assert_video_track_scores_both_clips(avsr, root, tmp_path / "o", modality, task)


def test_auto_avsr_conformer_gives_each_clip_of_a_batch_its_own_features():
    config = dict(model_type="auto_avsr", dim=32, layers=2, heads=4, ffn_dim=64, conv_kernel=7,
                  resnet_width=8)
    enc = load_encoder(EncoderSpec(modality="video", stream="video", type="auto_avsr",
                                   source="random", config=config))
    assert enc.config.backend == "conformer" and enc.config.activation == "swish"
    clips = [crops(0.2, 7), crops(2.0, 8), crops(0.04, 9)]
    feats, lengths = enc(clips)
    assert lengths.tolist() == [5, 50, 1]
    for i, clip in enumerate(clips):
        alone, _ = enc([clip])
        np.testing.assert_allclose(feats[i, :len(clip)].numpy(), alone[0].numpy(), atol=1e-5)


def test_relative_position_scores_follow_espnet_rel_shift():
    """The gathered i - j scores equal ESPnet's pad-and-reshape `rel_shift` on its [pe(+), pe(-)]
    table (RelPositionalEncoding, new implementation)."""
    import math

    import torch

    from speechkit.models.speechllm.encoders.video_conformer import (
        RelPositionAttention,
        relative_positions,
    )

    torch.manual_seed(0)
    b, t, d, h = 2, 7, 16, 2
    att = RelPositionAttention(d, h)
    for p in att.parameters():
        torch.nn.init.normal_(p, std=0.3)
    x = torch.randn(b, t, d)
    keep = torch.ones(b, t, dtype=torch.bool)
    pos = torch.arange(t, dtype=torch.float32)[:, None]
    div = torch.exp(torch.arange(0, d, 2, dtype=torch.float32) * -(math.log(10000.0) / d))
    plus, minus = torch.zeros(t, d), torch.zeros(t, d)
    plus[:, 0::2], plus[:, 1::2] = torch.sin(pos * div), torch.cos(pos * div)
    minus[:, 0::2], minus[:, 1::2] = torch.sin(-pos * div), torch.cos(-pos * div)
    pe = torch.cat([torch.flip(plus, [0]), minus[1:]])
    assert torch.allclose(pe, relative_positions(t, d), atol=1e-6)
    q = att.linear_q(x).view(b, t, h, -1)
    k = att.linear_k(x).view(b, t, h, -1).transpose(1, 2)
    v = att.linear_v(x).view(b, t, h, -1).transpose(1, 2)
    p = att.linear_pos(pe[None]).view(1, -1, h, d // h).transpose(1, 2)
    ac = (q + att.pos_bias_u).transpose(1, 2) @ k.transpose(-2, -1)
    bd = (q + att.pos_bias_v).transpose(1, 2) @ p.transpose(-2, -1)
    padded = torch.cat([bd.new_zeros(*bd.shape[:3], 1), bd], -1).view(b, h, 2 * t, t)
    bd = padded[:, :, 1:].reshape(b, h, t, 2 * t - 1)[..., :t]
    want = torch.softmax((ac + bd) / math.sqrt(d // h), -1) @ v
    want = att.linear_out(want.transpose(1, 2).reshape(b, t, d))
    torch.testing.assert_close(att(x, pe, keep), want, atol=1e-5, rtol=1e-5)
