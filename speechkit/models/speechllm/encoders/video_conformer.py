"""auto_avsr's Conformer back-end (ESPnet shape): relative-position self-attention, macaron
half-step feed-forwards and a depthwise convolution module per layer.

Layer: x += 1/2 FF(LN x); x += RelMHA(LN x); x += Conv(LN x); x += 1/2 FF(LN x); LN. Inputs are
scaled by sqrt(dim) and attention adds Transformer-XL relative-position terms (sinusoids of
i - j, learned biases u and v). Padded frames are masked out of attention keys and zeroed
before the depthwise convolution, so a padded batch gives every item its own features.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

LN_EPS = 1e-12  # ESPnet's LayerNorm


def relative_positions(length: int, dim: int) -> torch.Tensor:
    """Sinusoids for relative distances length-1 ... -(length-1): [2 * length - 1, dim]."""
    rel = torch.arange(length - 1, -length, -1, dtype=torch.float32)[:, None]
    div = torch.exp(torch.arange(0, dim, 2, dtype=torch.float32) * -(math.log(10000.0) / dim))
    pe = torch.zeros(2 * length - 1, dim)
    pe[:, 0::2], pe[:, 1::2] = torch.sin(rel * div), torch.cos(rel * div)
    return pe


class RelPositionAttention(nn.Module):
    """Multi-head attention with relative-position scores (Transformer-XL, ESPnet names)."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.h, self.d_k = heads, dim // heads
        self.linear_q, self.linear_k = nn.Linear(dim, dim), nn.Linear(dim, dim)
        self.linear_v, self.linear_out = nn.Linear(dim, dim), nn.Linear(dim, dim)
        self.linear_pos = nn.Linear(dim, dim, bias=False)
        self.pos_bias_u = nn.Parameter(torch.zeros(heads, self.d_k))
        self.pos_bias_v = nn.Parameter(torch.zeros(heads, self.d_k))

    def forward(self, x: torch.Tensor, pos: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        b, t, d = x.shape

        def heads(y: torch.Tensor) -> torch.Tensor:
            return y.reshape(y.shape[0], -1, self.h, self.d_k)

        q, k, v = heads(self.linear_q(x)), heads(self.linear_k(x)), heads(self.linear_v(x))
        p = heads(self.linear_pos(pos[None]))[0]  # [2t - 1, h, d_k]
        ac = torch.einsum("bihd,bjhd->bhij", q + self.pos_bias_u, k)
        bd = torch.einsum("bihd,rhd->bhir", q + self.pos_bias_v, p)
        i = torch.arange(t, device=x.device)
        index = (t - 1 - i[:, None] + i[None, :]).expand(b, self.h, t, t)  # distance i - j
        scores = (ac + torch.gather(bd, 3, index)) / math.sqrt(self.d_k)
        scores = scores.masked_fill(~keep[:, None, None, :], torch.finfo(scores.dtype).min)
        out = torch.einsum("bhij,bjhd->bihd", torch.softmax(scores, -1), v)
        return self.linear_out(out.reshape(b, t, d))


class FeedForward(nn.Module):
    def __init__(self, dim: int, units: int) -> None:
        super().__init__()
        self.w_1, self.w_2 = nn.Linear(dim, units), nn.Linear(units, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.w_2(F.relu(self.w_1(x)))


class ConvolutionModule(nn.Module):
    """Pointwise conv + GLU, depthwise conv, batch norm, Swish, pointwise conv."""

    def __init__(self, dim: int, kernel: int) -> None:
        super().__init__()
        self.pointwise_conv1 = nn.Conv1d(dim, 2 * dim, 1)
        self.depthwise_conv = nn.Conv1d(dim, dim, kernel, padding=(kernel - 1) // 2, groups=dim)
        self.norm = nn.BatchNorm1d(dim)
        self.pointwise_conv2 = nn.Conv1d(dim, dim, 1)

    def forward(self, x: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        y = F.glu(self.pointwise_conv1(x.transpose(1, 2)), dim=1)
        y = y * keep[:, None, :].to(y.dtype)  # padding reads as the conv's own zero padding
        y = self.pointwise_conv2(F.silu(self.norm(self.depthwise_conv(y))))
        return y.transpose(1, 2)


class ConformerLayer(nn.Module):
    def __init__(self, dim: int, heads: int, units: int, kernel: int) -> None:
        super().__init__()
        self.self_attn = RelPositionAttention(dim, heads)
        self.feed_forward, self.feed_forward_macaron = FeedForward(dim, units), FeedForward(dim, units)
        self.conv_module = ConvolutionModule(dim, kernel)
        for name in ("norm_ff", "norm_mha", "norm_ff_macaron", "norm_conv", "norm_final"):
            setattr(self, name, nn.LayerNorm(dim, eps=LN_EPS))

    def forward(self, x: torch.Tensor, pos: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        x = x + 0.5 * self.feed_forward_macaron(self.norm_ff_macaron(x))
        x = x + self.self_attn(self.norm_mha(x), pos, keep)
        x = x + self.conv_module(self.norm_conv(x), keep)
        x = x + 0.5 * self.feed_forward(self.norm_ff(x))
        return self.norm_final(x)


class ConformerBackEnd(nn.Module):
    """[B, T, D] frames + valid mask -> [B, T, D] (auto_avsr: 12 layers, 768 wide, kernel 31)."""

    def __init__(self, dim: int, layers: int, heads: int, units: int, kernel: int) -> None:
        super().__init__()
        self.dim = dim
        self.layers = nn.ModuleList(ConformerLayer(dim, heads, units, kernel) for _ in range(layers))
        self.after_norm = nn.LayerNorm(dim, eps=LN_EPS)

    def forward(self, x: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        pos = relative_positions(x.shape[1], self.dim).to(x.device, x.dtype)
        x = x * math.sqrt(self.dim)
        for layer in self.layers:
            x = layer(x, pos, keep)
        return self.after_norm(x)
