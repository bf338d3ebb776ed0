"""`speechkit convert llama-avsr`: a state dict with the official names and shapes (small sizes)
converts completely, and the converted model's logits equal a forward pass written here from
the official layout (Whisper + AV-HuBERT -> stacked frames -> ReLU MLPs -> Llama with its own
LoRA on q/v and resized embeddings, `BOS <audio>A</audio><video>V</video> prompt`)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from speechkit.errors import SpeechkitError
from speechkit.models.speechllm import load_speechllm
from speechkit.models.speechllm.importers.llama_avsr import convert_llama_avsr
from speechkit.models.speechllm.prompts import render, task_prompt
from tests.llama_avsr_parts import (
    ADDED,
    AUDIO_RATE,
    AVH,
    VIDEO_RATE,
    WHISPER,
    llama_avsr_state,
    tiny_llama3,
)
from tests.test_speechllm_tiny import noise

LORA_SCALING = 8 / 64  # Llama-AVSR LLM LoRA
AVH_LORA_SCALING = 2.0  # Llama-AVSR LoRA on AV-HuBERT layers


@pytest.fixture(scope="module")
def official(tmp_path_factory):
    root = tmp_path_factory.mktemp("llama-avsr")
    llm_dir = tiny_llama3(root / "llama")
    state = llama_avsr_state(llm_dir)
    torch.save(state, root / "model.pth")
    out = root / "converted"
    report = convert_llama_avsr(root / "model.pth", out, llm=str(llm_dir), video_norm_first=True)
    return {"root": root, "llm": llm_dir, "state": state, "out": out, "report": report}


@pytest.fixture(scope="module")
def converted(official):
    return load_speechllm(str(official["out"]))


def _lin(sd, x, prefix):
    return F.linear(x, sd[prefix + "weight"], sd[prefix + "bias"])


def _ln(sd, x, prefix):
    return F.layer_norm(x, (x.shape[-1],), sd[prefix + "weight"], sd[prefix + "bias"])


def _bn(sd, x, prefix):
    return F.batch_norm(x, sd[prefix + "running_mean"], sd[prefix + "running_var"],
                        sd[prefix + "weight"], sd[prefix + "bias"], False, 0.0, 1e-5)


def _ref_resnet(sd, crops, r):
    x = F.conv3d(crops[:, None], sd[r + "frontend3D.0.weight"], stride=(1, 2, 2), padding=(2, 3, 3))
    x = F.prelu(_bn(sd, x, r + "frontend3D.1."), sd[r + "frontend3D.2.weight"])
    x = F.max_pool3d(x, (1, 3, 3), (1, 2, 2), (0, 1, 1))
    b, c, t, h, w = x.shape
    x = x.transpose(1, 2).reshape(b * t, c, h, w)
    for s in range(4):
        for blk in range(2):
            q = f"{r}trunk.layer{s + 1}.{blk}."
            stride = 2 if s > 0 and blk == 0 else 1
            y = F.conv2d(x, sd[q + "conv1.weight"], stride=stride, padding=1)
            y = F.prelu(_bn(sd, y, q + "bn1."), sd[q + "relu1.weight"])
            y = _bn(sd, F.conv2d(y, sd[q + "conv2.weight"], padding=1), q + "bn2.")
            if q + "downsample.0.weight" in sd:
                x = _bn(sd, F.conv2d(x, sd[q + "downsample.0.weight"], stride=stride),
                        q + "downsample.1.")
            x = F.prelu(y + x, sd[q + "relu2.weight"])
    return x.mean((2, 3)).reshape(b, t, -1)


def _ref_attention(sd, x, q, heads):
    def lora(which):
        down, up = sd[f"{q}self_attn.lora_down_{which}.weight"], sd[f"{q}self_attn.lora_up_{which}.weight"]
        return AVH_LORA_SCALING * x @ down.T @ up.T

    b, t, d = x.shape
    qs = (_lin(sd, x, q + "self_attn.q_proj.") + lora("Q")) * (d // heads) ** -0.5
    ks = _lin(sd, x, q + "self_attn.k_proj.")
    vs = _lin(sd, x, q + "self_attn.v_proj.") + lora("V")
    split = [y.reshape(b, t, heads, -1).transpose(1, 2) for y in (qs, ks, vs)]
    att = torch.softmax(split[0] @ split[1].transpose(-1, -2), -1) @ split[2]
    return _lin(sd, att.transpose(1, 2).reshape(b, t, d), q + "self_attn.out_proj.")


def ref_avhubert_video(sd, crops):
    """AV-HuBERT `extract_finetune` on video only (audio None), pre-norm layers (Large)."""
    p = "video_encoder."
    x = _lin(sd, _ref_resnet(sd, crops, p + "feature_extractor_video.resnet."),
             p + "feature_extractor_video.proj.")
    x = torch.cat([torch.zeros_like(x), x], -1)  # concat fusion: [audio (absent), video]
    x = _lin(sd, _ln(sd, x, p + "layer_norm."), p + "post_extract_proj.")
    v, g = sd[p + "encoder.pos_conv.0.weight_v"], sd[p + "encoder.pos_conv.0.weight_g"]
    weight = g * v / v.norm(dim=(0, 1), keepdim=True)
    k = weight.shape[-1]
    pos = F.conv1d(x.transpose(1, 2), weight, sd[p + "encoder.pos_conv.0.bias"], padding=k // 2,
                   groups=AVH["groups"])[..., :-1]  # SamePad: an even kernel drops one frame
    x = x + F.gelu(pos).transpose(1, 2)
    for i in range(AVH["layers"]):
        q = f"{p}encoder.layers.{i}."
        x = x + _ref_attention(sd, _ln(sd, x, q + "self_attn_layer_norm."), q, AVH["dim"] // 64)
        x = x + _lin(sd, F.gelu(_lin(sd, _ln(sd, x, q + "final_layer_norm."), q + "fc1.")), q + "fc2.")
    return _ln(sd, x, p + "encoder.layer_norm.")


def _stack(x, k):
    """Llama-AVSR's compression: k consecutive frames concatenated, an incomplete tail dropped."""
    t = x.shape[1] // k * k
    return x[:, :t].reshape(x.shape[0], t // k, -1)


def ref_audio(sd, audio):
    return _stack(ref_whisper(sd, audio), AUDIO_RATE)


def ref_whisper(sd, audio):
    """Whisper frames as Llama-AVSR's test path makes them."""
    from transformers import WhisperConfig, WhisperFeatureExtractor
    from transformers.models.whisper.modeling_whisper import WhisperEncoder

    enc = WhisperEncoder(WhisperConfig(**WHISPER)).eval()
    enc.load_state_dict({k[len("audio_encoder."):]: v for k, v in sd.items()
                         if k.startswith("audio_encoder.")})
    x = torch.from_numpy(audio)  # the test transform: layer_norm(x, x.shape, eps=1e-8)
    audio = F.layer_norm(x, x.shape, eps=1e-8).numpy()
    mel = WhisperFeatureExtractor(feature_size=WHISPER["num_mel_bins"])(
        audio, sampling_rate=16000, return_tensors="pt").input_features
    return enc(mel).last_hidden_state[:, :max(int(len(audio) / 16000 * 50), 25)]


def ref_logits(official, audio, crops, prompt):
    """Logits of the official model for one clip: its token order, projectors and LoRA."""
    from transformers import AutoConfig, AutoTokenizer, LlamaForCausalLM

    sd, llm_dir = official["state"], official["llm"]
    tok = AutoTokenizer.from_pretrained(llm_dir)
    tok.add_special_tokens({"pad_token": "<pad>", "additional_special_tokens": ADDED[1:]})
    config = AutoConfig.from_pretrained(llm_dir)
    config.vocab_size = len(tok)
    llm = LlamaForCausalLM(config).eval()
    llm.load_state_dict({k[4:]: v for k, v in sd.items() if k.startswith("llm.") and "lora_" not in k})
    for i, layer in enumerate(llm.model.layers):
        for name, which in (("q_proj", "Q"), ("v_proj", "V")):
            down = sd[f"llm.model.layers.{i}.self_attn.lora_down_{which}.weight"]
            up = sd[f"llm.model.layers.{i}.self_attn.lora_up_{which}.weight"]
            getattr(layer.self_attn, name).register_forward_hook(
                lambda m, inp, out, d=down, u=up: out + LORA_SCALING * inp[0] @ d.T @ u.T)
    emb = llm.model.embed_tokens

    def ids(*tokens):
        return emb(torch.tensor([tok.convert_tokens_to_ids(list(tokens))]))

    a = _lin(sd, F.relu(_lin(sd, ref_audio(sd, audio), "audio_proj.0.")), "audio_proj.2.")
    v = _stack(ref_avhubert_video(sd, torch.from_numpy(crops)[None]), VIDEO_RATE)
    v = _lin(sd, F.relu(_lin(sd, v, "video_proj.0.")), "video_proj.2.")
    text = emb(torch.tensor([tok(prompt, add_special_tokens=False).input_ids]))
    seq = torch.cat([ids(tok.bos_token), ids("<audio>"), a, ids("</audio>"), ids("<video>"), v,
                     ids("</video>"), text], dim=1)
    with torch.no_grad():
        return llm(inputs_embeds=seq).logits[0]


def crops_for(seconds: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.standard_normal((round(seconds * 25), 88, 88)).astype(np.float32)


def test_converted_logits_equal_the_official_forward(official, converted):
    audio, crops = noise(1.6, 4), crops_for(1.6, 5)  # 80 Whisper frames, 40 video frames
    prompt = task_prompt(converted.spec.prompt, "avsr")
    assert prompt == "Transcribe speech and video to text."
    text = render(converted.spec.prompt, prompt, converted.tokenizer)
    with torch.no_grad():
        embeds = converted.prompt_embeds([{"audio": audio, "video": crops}], [text])[0]
        ours = converted.llm(inputs_embeds=embeds[None]).logits[0]
    want = ref_logits(official, audio, crops, prompt)
    assert ours.shape == want.shape
    torch.testing.assert_close(ours, want, atol=1e-5, rtol=1e-5)


def test_conversion_keeps_added_tokens_prompts_and_decoding(official, converted):
    spec = converted.spec
    assert spec.added_tokens == ADDED
    assert spec.prompt.template == "llama-avsr"
    assert spec.prompt.wrap == {"audio": ["<audio>", "</audio>"], "video": ["<video>", "</video>"]}
    assert (spec.decode.beam_size, spec.decode.max_new_tokens) == (15, 32)
    assert [(e.modality, e.stream, spec.bridge.inputs[e.modality].rate) for e in spec.encoders] == [
        ("audio", "audio", AUDIO_RATE), ("video", "video", VIDEO_RATE)]
    assert spec.llm.lora.scaling == pytest.approx(LORA_SCALING)
    rows = official["state"]["llm.model.embed_tokens.weight"]
    assert torch.equal(converted.llm.get_input_embeddings().weight, rows)
    assert converted.tokenizer.convert_tokens_to_ids("</video>") == rows.shape[0] - 1
    assert set(converted.part_sha256) == {"checkpoint"}  # its parts live inside: hashed once
    report = official["report"]
    assert report.mapped + sum(report.dropped.values()) == len(official["state"])
    assert report.dropped["AV-HuBERT pretraining head"] == 2
    assert report.dropped["AV-HuBERT audio branch (the video encoder reads lips only)"] == 2


def test_a_key_without_mapping_stops_the_conversion(official, tmp_path):
    state = dict(official["state"])
    state["video_encoder.encoder.layers.0.adapter.weight"] = torch.zeros(2)
    torch.save(state, tmp_path / "odd.pth")
    with pytest.raises(SpeechkitError, match="adapter.weight.*refuses a partial conversion"):
        convert_llama_avsr(tmp_path / "odd.pth", tmp_path / "out", llm=str(official["llm"]))
    assert not (tmp_path / "out").exists()


def test_a_missing_key_stops_the_conversion(official, tmp_path):
    state = {k: v for k, v in official["state"].items() if k != "llm.model.layers.1.mlp.up_proj.weight"}
    torch.save(state, tmp_path / "short.pth")
    with pytest.raises(SpeechkitError, match="missing model.layers.1.mlp.up_proj.weight"):
        convert_llama_avsr(tmp_path / "short.pth", tmp_path / "out", llm=str(official["llm"]))


def test_a_checkpoint_for_another_llm_is_refused(official, tmp_path):
    from tests.test_speechllm_tiny import tiny_llm

    other = tiny_llm(tmp_path / "other")
    with pytest.raises(SpeechkitError, match="pass the --llm the checkpoint was trained from"):
        convert_llama_avsr(official["root"] / "model.pth", tmp_path / "out", llm=str(other))


def test_convert_command_writes_a_checkpoint_that_loads(official, tmp_path):
    from typer.testing import CliRunner

    from speechkit.cli import _register_subcommands, app

    _register_subcommands()
    out = tmp_path / "vsr"
    state = {k: v for k, v in official["state"].items() if not k.startswith("audio_")}
    torch.save(state, tmp_path / "vsr.pth")
    res = CliRunner().invoke(app, ["convert", "llama-avsr", "--ckpt", str(tmp_path / "vsr.pth"),
                                   "--llm", str(official["llm"]), "--out", str(out)])
    assert res.exit_code == 0, res.output
    said = " ".join(res.output.split())
    assert "video avhubert (64) x2" in said and "dropped 2 keys: AV-HuBERT pretraining head" in said
    spec = json.loads((out / "speechkit.json").read_text())
    assert [e["modality"] for e in spec["encoders"]] == ["video"]
    from speechkit.evaluation.bench import model_modalities
    from speechkit.models.identity import model_card

    assert model_modalities(model_card(str(out))) == ("video",)  # before any weights load
    model = load_speechllm(str(out))
    assert model.streams("vsr") == {"video"} and model_modalities(model) == ("video",)
    shown = " ".join(CliRunner().invoke(app, ["models", "show", str(out)]).output.split())
    assert "prompt (vsr) Transcribe video to text." in shown and "beam 15, max 32" in shown


def test_a_lightning_checkpoint_converts_like_the_plain_state_dict(official, tmp_path):
    from safetensors.torch import load_file

    wrapped = {"state_dict": {f"model.{k}": v for k, v in official["state"].items()}}
    torch.save(wrapped, tmp_path / "last.ckpt")
    convert_llama_avsr(tmp_path / "last.ckpt", tmp_path / "out", llm=str(official["llm"]),
                       video_norm_first=True)
    for part in ("bridge.safetensors", "video_encoder/model.safetensors", "lora/adapter_model.safetensors"):
        got, want = load_file(str(tmp_path / "out" / part)), load_file(str(official["out"] / part))
        assert got.keys() == want.keys() and all(torch.equal(got[k], want[k]) for k in want)


@pytest.mark.parametrize(("seconds", "frames"), [(0.3, 25), (1.01, 50), (1.6, 80)])
def test_whisper_keeps_the_official_frame_count(converted, seconds, frames):
    """encode_audio keeps max(int(n / 16000 * 50), 25) frames: 25 for 0.3 s (not 15), 50 for
    1.01 s (not 51)."""
    _, lengths = converted.encoders[0]([noise(seconds, 2)])
    assert int(lengths[0]) == frames


def test_waveform_is_layer_normalized_before_whisper(converted):
    """The test transform's layer_norm makes the features blind to gain and offset."""
    x = noise(1.0, 3)
    a, _ = converted.encoders[0]([x])
    b, _ = converted.encoders[0]([(3.0 * x + 0.05).astype(np.float32)])
    torch.testing.assert_close(a, b, atol=2e-4, rtol=0)
    assert converted.spec.encoders[0].wave_norm


def _audio_only(official, tmp_path, edit):
    from tests.llama_avsr_parts import llama_avsr_state

    state = llama_avsr_state(official["llm"], video=False)
    edit(state)
    torch.save(state, tmp_path / "variant.pth")
    return state, tmp_path / "variant.pth"


@torch.no_grad()
def test_avg_pooling_checkpoint_converts_with_its_ratio_and_is_refused_without(official, tmp_path):
    """--compression-mode avg-pooling: AvgPool1d(k) over Whisper frames, a projector one frame
    wide. The weights do not say k: without it the conversion stops and names the options."""
    d, g = WHISPER["d_model"], torch.Generator().manual_seed(7)

    def avg(state):
        state["audio_proj.0.weight"] = torch.randn(state["audio_proj.0.weight"].shape[0], d,
                                                   generator=g) * d ** -0.5

    state, file = _audio_only(official, tmp_path, avg)
    with pytest.raises(SpeechkitError, match=r"--compression-mode avg-pooling "
                                             r"--downsample-ratio-audio K"):
        convert_llama_avsr(file, tmp_path / "refused", llm=str(official["llm"]))
    convert_llama_avsr(file, tmp_path / "out", llm=str(official["llm"]),
                       compression="avg-pooling", ratios={"audio": AUDIO_RATE})
    model = load_speechllm(str(tmp_path / "out"))
    assert model.spec.bridge.inputs["audio"].pooling == "mean"
    audio = noise(2.2, 6)  # 110 frames: 36 tokens at k = 3 (AvgPool1d drops the last 2)
    x, n = model.encode([{"audio": audio}])["audio"]
    pooled = F.avg_pool1d(ref_whisper(state, audio).transpose(1, 2), AUDIO_RATE).transpose(1, 2)
    want = _lin(state, F.relu(_lin(state, pooled, "audio_proj.0.")), "audio_proj.2.")
    assert int(n[0]) == want.shape[1] == 110 // AUDIO_RATE
    torch.testing.assert_close(x[:, :int(n[0])], want, atol=1e-5, rtol=1e-5)


@torch.no_grad()
def test_layernorm_projector_checkpoint_converts(official, tmp_path):
    """--layernorm-projector: nn.LayerNorm after the projector MLP (audio_proj.3.*)."""
    def norm(state):
        hidden = state["audio_proj.2.weight"].shape[0]
        state["audio_proj.3.weight"] = torch.linspace(0.5, 1.5, hidden)
        state["audio_proj.3.bias"] = torch.linspace(-0.1, 0.1, hidden)

    state, file = _audio_only(official, tmp_path, norm)
    convert_llama_avsr(file, tmp_path / "out", llm=str(official["llm"]))
    model = load_speechllm(str(tmp_path / "out"))
    audio = noise(1.6, 8)
    x, n = model.encode([{"audio": audio}])["audio"]
    mlp = _lin(state, F.relu(_lin(state, ref_audio(state, audio), "audio_proj.0.")), "audio_proj.2.")
    want = _ln(state, mlp, "audio_proj.3.")
    torch.testing.assert_close(x[:, :int(n[0])], want, atol=1e-5, rtol=1e-5)


def test_a_refusal_names_the_key_family_and_the_training_option(official, tmp_path):
    state = dict(official["state"])
    state["audiovisual_proj.0.weight"] = torch.zeros(2, 2)
    torch.save(state, tmp_path / "single.pth")
    with pytest.raises(SpeechkitError, match=r"key families audiovisual_proj\.\*\.weight.*"
                                             r"--single-projector-avhubert"):
        convert_llama_avsr(tmp_path / "single.pth", tmp_path / "out", llm=str(official["llm"]))
