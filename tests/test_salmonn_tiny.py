"""SALMONN-shaped parts for tests: a BEATs `.pt` and a SALMONN state dict with the official key
names and structure at small sizes, and a reference forward written from that layout."""

from __future__ import annotations

import math
from pathlib import Path

import torch
import torch.nn.functional as F

SEED = 0
TINY_BEATS = dict(input_patch_size=16, embed_dim=20, conv_bias=False, encoder_layers=2,
                  encoder_embed_dim=24, encoder_ffn_embed_dim=48, encoder_attention_heads=4,
                  activation_fn="gelu", layer_norm_first=False, deep_norm=True, conv_pos=16,
                  conv_pos_groups=4, relative_position_embedding=True, num_buckets=32,
                  max_distance=128, gru_rel_pos=True, finetuned_model=True, predictor_class=5,
                  dropout=0.1, attention_dropout=0.1, encoder_layerdrop=0.05)
QF_HIDDEN, QF_FFN, QF_LAYERS = 24, 48, 2  # 12 heads (BERT-base's) of 2
LORA_R = 4
LLAMA_PREFIX = "llama_model.base_model.model.model.layers"


def _rand(*shape: int, scale: float = 0.2) -> torch.Tensor:
    return torch.randn(*shape) * scale


def _norm(prefix: str, dim: int) -> dict[str, torch.Tensor]:
    return {f"{prefix}.weight": 1 + _rand(dim, scale=0.1), f"{prefix}.bias": _rand(dim, scale=0.1)}


def _linear(prefix: str, out_dim: int, in_dim: int) -> dict[str, torch.Tensor]:
    return {f"{prefix}.weight": _rand(out_dim, in_dim, scale=1 / math.sqrt(in_dim)),
            f"{prefix}.bias": _rand(out_dim, scale=0.05)}


def beats_official(file: Path, cfg: dict | None = None) -> tuple[dict, dict[str, torch.Tensor]]:
    """A random BEATs saved as the official `.pt` ({"cfg", "model"}): weight-normed position
    conv (weight_g/weight_v), the relative bias repeated under every layer, a predictor."""
    from speechkit.models.speechllm.encoders.beats_model import Beats, BeatsConfig

    cfg = dict(cfg or TINY_BEATS)
    torch.manual_seed(SEED)
    model = Beats(BeatsConfig.from_dict(cfg))
    state = {}
    for k, v in model.state_dict().items():
        if k.endswith("pos_conv.0.weight"):
            g = v.norm(dim=(0, 1), keepdim=True) * 1.5  # folds to 1.5 x v
            state[k + "_g"], state[k + "_v"] = g, v.clone()
        else:
            state[k] = v.clone() + _rand(*v.shape, scale=0.02)
    bias = "self_attn.relative_attention_bias.weight"
    for i in range(1, cfg["encoder_layers"]):
        state[f"encoder.layers.{i}.{bias}"] = state[f"encoder.layers.0.{bias}"]
    state.update(_linear("predictor", cfg["predictor_class"], cfg["encoder_embed_dim"]))
    torch.save({"cfg": cfg, "model": state}, file)
    return cfg, state


def salmonn_official(speech_dim: int, audio_dim: int, llm_hidden: int, llm_layers: int,
                     v_dim: int) -> dict[str, torch.Tensor]:
    """A SALMONN trainable-only state dict (salmonn_v1.pth's `model`) at small sizes."""
    torch.manual_seed(SEED + 1)
    s = {**_norm("ln_speech", speech_dim), **_norm("ln_audio", audio_dim)}
    s["speech_query_tokens"] = _rand(1, 1, QF_HIDDEN, scale=1.0)
    s.update(_norm("speech_Qformer.bert.embeddings.LayerNorm", QF_HIDDEN))
    s["speech_Qformer.bert.embeddings.position_ids"] = torch.arange(512)[None]
    width = speech_dim + audio_dim
    for i in range(QF_LAYERS):
        p = f"speech_Qformer.bert.encoder.layer.{i}"
        for block, kv in (("attention", QF_HIDDEN), ("crossattention", width)):
            s.update(_linear(f"{p}.{block}.self.query", QF_HIDDEN, QF_HIDDEN))
            s.update(_linear(f"{p}.{block}.self.key", QF_HIDDEN, kv))
            s.update(_linear(f"{p}.{block}.self.value", QF_HIDDEN, kv))
            s.update(_linear(f"{p}.{block}.output.dense", QF_HIDDEN, QF_HIDDEN))
            s.update(_norm(f"{p}.{block}.output.LayerNorm", QF_HIDDEN))
        s.update(_linear(f"{p}.intermediate_query.dense", QF_FFN, QF_HIDDEN))
        s.update(_linear(f"{p}.output_query.dense", QF_HIDDEN, QF_FFN))
        s.update(_norm(f"{p}.output_query.LayerNorm", QF_HIDDEN))
    s.update(_linear("speech_llama_proj", llm_hidden, QF_HIDDEN))
    for i in range(llm_layers):
        for name, out_dim in (("q_proj", llm_hidden), ("v_proj", v_dim)):
            p = f"{LLAMA_PREFIX}.{i}.self_attn.{name}"
            s[f"{p}.lora_A.default.weight"] = _rand(LORA_R, llm_hidden, scale=0.1)
            s[f"{p}.lora_B.default.weight"] = _rand(out_dim, LORA_R, scale=0.1)
        s[f"{LLAMA_PREFIX}.{i}.self_attn.rotary_emb.inv_freq"] = torch.rand(8)
    return s


def _bert_attention(s: dict, p: str, x: torch.Tensor, mem: torch.Tensor, heads: int) -> torch.Tensor:
    """BertAttention of the Q-Former (Qformer.py): self part, then dense + residual LayerNorm."""
    b, n, h = x.shape
    d = h // heads
    q = F.linear(x, s[f"{p}.self.query.weight"], s[f"{p}.self.query.bias"])
    k = F.linear(mem, s[f"{p}.self.key.weight"], s[f"{p}.self.key.bias"])
    v = F.linear(mem, s[f"{p}.self.value.weight"], s[f"{p}.self.value.bias"])
    q, k, v = (t.view(b, -1, heads, d).permute(0, 2, 1, 3) for t in (q, k, v))
    probs = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(d), dim=-1)
    ctx = (probs @ v).permute(0, 2, 1, 3).reshape(b, n, h)
    out = F.linear(ctx, s[f"{p}.output.dense.weight"], s[f"{p}.output.dense.bias"])
    return F.layer_norm(out + x, (h,), s[f"{p}.output.LayerNorm.weight"],
                        s[f"{p}.output.LayerNorm.bias"], eps=1e-12)


def salmonn_speech_embeds(s: dict, speech: torch.Tensor, audio: torch.Tensor,
                          heads: int = 12) -> torch.Tensor:
    """SALMONN._encode_auditory_feature from the official keys: ln_speech / ln_audio, BEATs
    padded to Whisper's frames, joined, F.unfold windows of 17, Q-Former, projection."""
    speech = F.layer_norm(speech, speech.shape[-1:], s["ln_speech.weight"], s["ln_speech.bias"])
    audio = F.layer_norm(audio, audio.shape[-1:], s["ln_audio.weight"], s["ln_audio.bias"])
    audio = F.pad(audio, (0, 0, 0, speech.size(1) - audio.size(1)))
    x = torch.cat((speech, audio), dim=-1)
    b, t, c = x.shape
    kernel = round(1500 * 0.333333 / 30.0)
    windows = F.unfold(x.transpose(1, 2).unsqueeze(2), kernel_size=(1, kernel), stride=(1, kernel))
    windows = windows.view(b, -1, kernel, windows.shape[-1]).permute(0, 3, 2, 1).reshape(-1, kernel, c)
    h = s["speech_query_tokens"].expand(windows.shape[0], -1, -1)
    h = F.layer_norm(h, h.shape[-1:], s["speech_Qformer.bert.embeddings.LayerNorm.weight"],
                     s["speech_Qformer.bert.embeddings.LayerNorm.bias"], eps=1e-12)
    for i in range(QF_LAYERS):
        p = f"speech_Qformer.bert.encoder.layer.{i}"
        h = _bert_attention(s, f"{p}.attention", h, h, heads)
        h = _bert_attention(s, f"{p}.crossattention", h, windows, heads)
        up = F.gelu(F.linear(h, s[f"{p}.intermediate_query.dense.weight"],
                             s[f"{p}.intermediate_query.dense.bias"]))
        out = F.linear(up, s[f"{p}.output_query.dense.weight"], s[f"{p}.output_query.dense.bias"])
        h = F.layer_norm(out + h, h.shape[-1:], s[f"{p}.output_query.LayerNorm.weight"],
                         s[f"{p}.output_query.LayerNorm.bias"], eps=1e-12)
    y = F.linear(h, s["speech_llama_proj.weight"], s["speech_llama_proj.bias"])
    return y.reshape(b, -1, y.shape[-1])


def lora_merged_llm(llm_dir: Path, s: dict, scaling: float):
    """The LLM with SALMONN's peft LoRA added into q_proj/v_proj by hand: W + scaling B A."""
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(llm_dir, dtype=torch.float32).eval()
    with torch.no_grad():
        for i, layer in enumerate(model.model.layers):
            for name in ("q_proj", "v_proj"):
                p = f"{LLAMA_PREFIX}.{i}.self_attn.{name}"
                delta = s[f"{p}.lora_B.default.weight"] @ s[f"{p}.lora_A.default.weight"]
                getattr(layer.self_attn, name).weight += scaling * delta
    return model


def _beats_attention(s: dict, p: str, x: torch.Tensor, bias: torch.Tensor, heads: int) -> torch.Tensor:
    """fairseq MultiheadAttention as BEATs' backbone.py runs it (T x B x C, the alpha = 32
    rescaling of the scores, the gated relative bias), for one item."""
    t, b, c = x.shape
    d = c // heads
    scaling, alpha = d ** -0.5, 32
    q = F.linear(x, s[f"{p}.q_proj.weight"], s[f"{p}.q_proj.bias"]) * scaling / alpha
    k = F.linear(x, s[f"{p}.k_proj.weight"], s[f"{p}.k_proj.bias"])
    v = F.linear(x, s[f"{p}.v_proj.weight"], s[f"{p}.v_proj.bias"])
    q, k, v = (y.contiguous().view(t, b * heads, d).transpose(0, 1) for y in (q, k, v))
    w = torch.bmm(q, k.transpose(1, 2))
    w = (w - w.max(dim=-1, keepdim=True)[0]) * alpha
    query = q.view(b, heads, t, d) * alpha / scaling
    gate = torch.sigmoid(F.linear(query, s[f"{p}.grep_linear.weight"], s[f"{p}.grep_linear.bias"])
                         .view(b, heads, t, 2, 4).sum(-1))
    gate_a, gate_b = gate.chunk(2, dim=-1)
    gate_a_1 = gate_a * (gate_b * s[f"{p}.grep_a"] - 1.0) + 2.0
    w = w + (gate_a_1.view(b * heads, t, 1) * bias).view(w.size())
    out = torch.bmm(torch.softmax(w, dim=-1), v).transpose(0, 1).contiguous().view(t, b, c)
    return F.linear(out, s[f"{p}.out_proj.weight"], s[f"{p}.out_proj.bias"])


def _buckets(rel: torch.Tensor, num_buckets: int, max_distance: int) -> torch.Tensor:
    num_buckets //= 2
    buckets = (rel > 0).to(torch.long) * num_buckets
    rel = torch.abs(rel)
    max_exact = num_buckets // 2
    large = max_exact + (torch.log(rel.float() / max_exact) / math.log(max_distance / max_exact)
                         * (num_buckets - max_exact)).to(torch.long)
    large = torch.min(large, torch.full_like(large, num_buckets - 1))
    return buckets + torch.where(rel < max_exact, rel, large)


def beats_reference(s: dict, cfg: dict, fbank: torch.Tensor) -> torch.Tensor:
    """BEATs.extract_features from the official keys (weight_g/weight_v, deep norm), one item."""
    heads, layers = cfg["encoder_attention_heads"], cfg["encoder_layers"]
    x = F.conv2d(fbank[None, None], s["patch_embedding.weight"], stride=cfg["input_patch_size"])
    x = x.reshape(1, x.shape[1], -1).transpose(1, 2)
    x = F.layer_norm(x, x.shape[-1:], s["layer_norm.weight"], s["layer_norm.bias"])
    x = F.linear(x, s["post_extract_proj.weight"], s["post_extract_proj.bias"])
    g, v = s["encoder.pos_conv.0.weight_g"], s["encoder.pos_conv.0.weight_v"]
    weight = v * (g / v.norm(dim=(0, 1), keepdim=True))
    conv = F.conv1d(x.transpose(1, 2), weight, s["encoder.pos_conv.0.bias"],
                    padding=cfg["conv_pos"] // 2, groups=cfg["conv_pos_groups"])[..., :-1]
    x = x + F.gelu(conv).transpose(1, 2)
    x = F.layer_norm(x, x.shape[-1:], s["encoder.layer_norm.weight"], s["encoder.layer_norm.bias"])
    x = x.transpose(0, 1)
    pos = torch.arange(x.shape[0])
    buckets = _buckets(pos[None, :] - pos[:, None], cfg["num_buckets"], cfg["max_distance"])
    bias = F.embedding(buckets, s["encoder.layers.0.self_attn.relative_attention_bias.weight"])
    bias = bias.permute(2, 0, 1)
    deep = math.pow(2 * layers, 1 / 4)
    for i in range(layers):
        p = f"encoder.layers.{i}"
        y = _beats_attention(s, f"{p}.self_attn", x, bias, heads)
        x = F.layer_norm(x * deep + y, x.shape[-1:], s[f"{p}.self_attn_layer_norm.weight"],
                         s[f"{p}.self_attn_layer_norm.bias"])
        y = F.linear(F.gelu(F.linear(x, s[f"{p}.fc1.weight"], s[f"{p}.fc1.bias"])),
                     s[f"{p}.fc2.weight"], s[f"{p}.fc2.bias"])
        x = F.layer_norm(x * deep + y, x.shape[-1:], s[f"{p}.final_layer_norm.weight"],
                         s[f"{p}.final_layer_norm.bias"])
    return x.transpose(0, 1)[0]


LLM_HIDDEN, LLM_LAYERS, LLM_KV = 64, 2, 32  # tiny_llm: 4 heads of 16, 2 key/value heads


def salmonn_parts(root: Path) -> dict:
    """Every part `convert salmonn` reads, at small sizes, in `root`: a tiny Whisper, BEATs
    `.pt`, LLM and the SALMONN checkpoint as its runner saves it (with training state)."""
    from tests.test_speechllm_tiny import TINY_WHISPER, tiny_llm, tiny_whisper

    cfg, beats = beats_official(root / "beats.pt")
    state = salmonn_official(TINY_WHISPER["d_model"], cfg["encoder_embed_dim"], LLM_HIDDEN,
                             LLM_LAYERS, LLM_KV)
    torch.save({"model": state, "optimizer": {"state": {}}, "epoch": 3}, root / "salmonn.pth")
    return {"root": root, "whisper": tiny_whisper(root / "whisper"), "llm": tiny_llm(root / "llm"),
            "beats": root / "beats.pt", "ckpt": root / "salmonn.pth", "state": state,
            "beats_cfg": cfg, "beats_state": beats}
