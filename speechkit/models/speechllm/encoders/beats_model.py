"""The BEATs audio Transformer (Chen et al. 2022, microsoft/unilm `beats/`) as plain modules.

Parameter names follow the official checkpoints' `model` dict: `patch_embedding`,
`layer_norm`, `post_extract_proj`, `encoder.pos_conv.0` (weight-normed there; folded into one
weight by `official_state`), `encoder.layers.{i}.self_attn.*` (relative position bias shared
from layer 0, gated by `grep_linear`/`grep_a`), post-norm layers with deep-norm scaling.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn


@dataclass
class BeatsConfig:
    """The `cfg` dict of a BEATs checkpoint (defaults: BEATsConfig in microsoft/unilm)."""

    input_patch_size: int = 16  # 16x16 patches over the 128-bin fbank
    embed_dim: int = 512  # patch embedding size
    conv_bias: bool = False
    encoder_layers: int = 12
    encoder_embed_dim: int = 768
    encoder_ffn_embed_dim: int = 3072
    encoder_attention_heads: int = 12
    activation_fn: str = "gelu"
    layer_norm_first: bool = False
    deep_norm: bool = False
    conv_pos: int = 128  # convolutional positional embedding: kernel size
    conv_pos_groups: int = 16
    relative_position_embedding: bool = False
    num_buckets: int = 320
    max_distance: int = 1280
    gru_rel_pos: bool = False
    finetuned_model: bool = False  # has an AudioSet `predictor` head (not used here)
    predictor_class: int = 527

    @classmethod
    def from_dict(cls, cfg: dict[str, Any]) -> BeatsConfig:
        """Known keys only; training-time keys (dropouts, layer drop) are ignored."""
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in cfg.items() if k in known})


class BeatsAttention(nn.Module):
    """Multi-head self-attention with T5-style bucketed relative position bias and the
    gated variant (gru_rel_pos) of WavLM/BEATs."""

    def __init__(self, cfg: BeatsConfig, has_bias: bool) -> None:
        super().__init__()
        d, self.heads = cfg.encoder_embed_dim, cfg.encoder_attention_heads
        self.head_dim = d // self.heads
        self.k_proj, self.v_proj = nn.Linear(d, d), nn.Linear(d, d)
        self.q_proj, self.out_proj = nn.Linear(d, d), nn.Linear(d, d)
        self.num_buckets, self.max_distance = cfg.num_buckets, cfg.max_distance
        if has_bias:
            self.relative_attention_bias = nn.Embedding(cfg.num_buckets, self.heads)
        self.gru_rel_pos = cfg.gru_rel_pos
        if self.gru_rel_pos:
            self.grep_linear = nn.Linear(self.head_dim, 8)
            self.grep_a = nn.Parameter(torch.ones(1, self.heads, 1, 1))

    def _buckets(self, relative: torch.Tensor) -> torch.Tensor:
        half = self.num_buckets // 2  # bidirectional: one half per direction
        buckets = (relative > 0).long() * half
        relative = relative.abs()
        max_exact = half // 2
        large = max_exact + (torch.log(relative.float() / max_exact)
                             / math.log(self.max_distance / max_exact)
                             * (half - max_exact)).long()
        large = large.clamp(max=half - 1)
        return buckets + torch.where(relative < max_exact, relative, large)

    def position_bias(self, n: int, device: torch.device) -> torch.Tensor:
        """[heads, n, n] bias from the relative distances."""
        pos = torch.arange(n, device=device)
        return self.relative_attention_bias(self._buckets(pos[None, :] - pos[:, None])).permute(2, 0, 1)

    def forward(self, x: torch.Tensor, pad: torch.Tensor | None,
                bias: torch.Tensor | None) -> torch.Tensor:
        b, t, d = x.shape
        q = self.q_proj(x).view(b, t, self.heads, self.head_dim).transpose(1, 2)
        k = self.k_proj(x).view(b, t, self.heads, self.head_dim).transpose(1, 2)
        v = self.v_proj(x).view(b, t, self.heads, self.head_dim).transpose(1, 2)
        scores = (q * self.head_dim ** -0.5) @ k.transpose(-1, -2)
        if bias is not None:
            if self.gru_rel_pos:
                gate_a, gate_b = torch.sigmoid(
                    self.grep_linear(q).view(b, self.heads, t, 2, 4).sum(-1)).chunk(2, dim=-1)
                bias = (gate_a * (gate_b * self.grep_a - 1.0) + 2.0) * bias[None]
            scores = scores + bias
        if pad is not None:
            scores = scores.masked_fill(pad[:, None, None, :], float("-inf"))
        out = torch.softmax(scores.float(), dim=-1).to(v.dtype) @ v
        return self.out_proj(out.transpose(1, 2).reshape(b, t, d))


class BeatsLayer(nn.Module):
    """A Transformer layer: post-norm with deep-norm residual scaling, or pre-norm."""

    def __init__(self, cfg: BeatsConfig, has_bias: bool) -> None:
        super().__init__()
        d = cfg.encoder_embed_dim
        self.self_attn = BeatsAttention(cfg, has_bias)
        self.self_attn_layer_norm = nn.LayerNorm(d)
        self.fc1, self.fc2 = nn.Linear(d, cfg.encoder_ffn_embed_dim), nn.Linear(cfg.encoder_ffn_embed_dim, d)
        self.final_layer_norm = nn.LayerNorm(d)
        self.pre_norm = cfg.layer_norm_first
        # DeepNet: residual * (2N)^(1/4) in post-norm layers
        self.alpha = math.pow(2 * cfg.encoder_layers, 0.25) if cfg.deep_norm else 1.0

    def forward(self, x: torch.Tensor, pad: torch.Tensor | None,
                bias: torch.Tensor | None) -> torch.Tensor:
        if self.pre_norm:
            x = x + self.self_attn(self.self_attn_layer_norm(x), pad, bias)
            return x + self.fc2(F.gelu(self.fc1(self.final_layer_norm(x))))
        x = self.self_attn_layer_norm(x * self.alpha + self.self_attn(x, pad, bias))
        return self.final_layer_norm(x * self.alpha + self.fc2(F.gelu(self.fc1(x))))


class BeatsTransformer(nn.Module):
    """Convolutional position embedding, then the layers (`encoder.*` in a checkpoint)."""

    def __init__(self, cfg: BeatsConfig) -> None:
        super().__init__()
        d = cfg.encoder_embed_dim
        conv = nn.Conv1d(d, d, kernel_size=cfg.conv_pos, padding=cfg.conv_pos // 2,
                         groups=cfg.conv_pos_groups)
        self.pos_conv = nn.Sequential(conv)  # weight-normed in training; folded at load
        self.trim = 1 if cfg.conv_pos % 2 == 0 else 0  # fairseq SamePad
        self.layers = nn.ModuleList(
            BeatsLayer(cfg, has_bias=cfg.relative_position_embedding and i == 0)
            for i in range(cfg.encoder_layers))
        self.layer_norm = nn.LayerNorm(d)
        self.pre_norm, self.relative = cfg.layer_norm_first, cfg.relative_position_embedding

    def forward(self, x: torch.Tensor, pad: torch.Tensor | None) -> torch.Tensor:
        if pad is not None:
            x = x.masked_fill(pad[..., None], 0.0)  # padding must not reach the conv
        conv = self.pos_conv(x.transpose(1, 2))
        if self.trim:
            conv = conv[..., :-self.trim]
        x = x + F.gelu(conv).transpose(1, 2)
        if not self.pre_norm:
            x = self.layer_norm(x)
        # The bias is computed once by layer 0 and shared (each layer gates it itself).
        bias = self.layers[0].self_attn.position_bias(x.shape[1], x.device) if self.relative else None
        for layer in self.layers:
            x = layer(x, pad, bias)
        return self.layer_norm(x) if self.pre_norm else x


class Beats(nn.Module):
    """Patch embedding over the normalized fbank, then the Transformer; fbank in, tokens out
    (8 frequency patches per 16 fbank frames: 50 tokens a second, time-major)."""

    def __init__(self, cfg: BeatsConfig) -> None:
        super().__init__()
        self.cfg = cfg
        p = cfg.input_patch_size
        self.patch_embedding = nn.Conv2d(1, cfg.embed_dim, kernel_size=p, stride=p, bias=cfg.conv_bias)
        self.layer_norm = nn.LayerNorm(cfg.embed_dim)
        self.post_extract_proj = (nn.Linear(cfg.embed_dim, cfg.encoder_embed_dim)
                                  if cfg.embed_dim != cfg.encoder_embed_dim else None)
        self.encoder = BeatsTransformer(cfg)

    def forward(self, fbank: torch.Tensor, frames: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """fbank [B, T, 128] (zero past each item's `frames`) -> tokens [B, N, D], lengths [B]."""
        p = self.cfg.input_patch_size
        x = self.patch_embedding(fbank[:, None])  # [B, C, T/p, 128/p]
        per_step = x.shape[-1]
        x = self.layer_norm(x.flatten(2).transpose(1, 2))
        if self.post_extract_proj is not None:
            x = self.post_extract_proj(x)
        lengths = (frames // p) * per_step
        pad = torch.arange(x.shape[1], device=x.device)[None, :] >= lengths.to(x.device)[:, None]
        return self.encoder(x, pad if bool(pad.any()) else None), lengths


WEIGHT_NORM_DIM = 2  # BEATs: nn.utils.weight_norm(pos_conv, dim=2)
SHARED_BIAS = "self_attn.relative_attention_bias.weight"


def official_state(state: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], list[str]]:
    """An official BEATs `model` dict in this module's names: the position conv's weight norm
    folded (w = g * v / |v|), the copies of the shared relative bias and the AudioSet
    predictor head dropped. Returns the state and the keys dropped."""
    out, dropped = {}, []
    for key, value in state.items():
        if key.startswith("predictor.") or (key.endswith(SHARED_BIAS)
                                            and not key.startswith("encoder.layers.0.")):
            dropped.append(key)
        elif key.endswith("pos_conv.0.weight_g"):
            v = state[key[:-1] + "v"]
            dims = [d for d in range(v.dim()) if d != WEIGHT_NORM_DIM]
            out[key[:-2]] = v * (value / v.norm(dim=dims, keepdim=True))
        elif not key.endswith("pos_conv.0.weight_v"):
            out[key] = value
    return out, dropped
