"""AV-HuBERT's transformer back-end: a convolutional position embedding, then post- or pre-norm
self-attention layers (wav2vec 2.0 / HuBERT shape), with a key padding mask so a padded batch
gives every item the features it gets alone."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class SelfAttention(nn.Module):
    """Multi-head self-attention with biased q/k/v/out projections."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.q_proj, self.k_proj = nn.Linear(dim, dim), nn.Linear(dim, dim)
        self.v_proj, self.out_proj = nn.Linear(dim, dim), nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        b, t, d = x.shape

        def heads(y: torch.Tensor) -> torch.Tensor:
            return y.reshape(b, t, self.heads, d // self.heads).transpose(1, 2)

        out = F.scaled_dot_product_attention(heads(self.q_proj(x)), heads(self.k_proj(x)),
                                             heads(self.v_proj(x)), attn_mask=keep[:, None, None, :])
        return self.out_proj(out.transpose(1, 2).reshape(b, t, d))


class TransformerLayer(nn.Module):
    """Attention and a GELU feed-forward, each residual; layer norm before or after."""

    def __init__(self, dim: int, heads: int, ffn_dim: int, norm_first: bool) -> None:
        super().__init__()
        self.norm_first = norm_first
        self.self_attn = SelfAttention(dim, heads)
        self.self_attn_layer_norm = nn.LayerNorm(dim)
        self.fc1, self.fc2 = nn.Linear(dim, ffn_dim), nn.Linear(ffn_dim, dim)
        self.final_layer_norm = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        if self.norm_first:
            x = x + self.self_attn(self.self_attn_layer_norm(x), keep)
            return x + self.fc2(F.gelu(self.fc1(self.final_layer_norm(x))))
        x = self.self_attn_layer_norm(x + self.self_attn(x, keep))
        return self.final_layer_norm(x + self.fc2(F.gelu(self.fc1(x))))


class TransformerBackEnd(nn.Module):
    """[B, T, D] frames + valid mask -> [B, T, D]; padded frames are zeroed before the
    position convolution so they never reach a real frame."""

    def __init__(self, dim: int, layers: int, heads: int, ffn_dim: int, norm_first: bool,
                 conv_pos: int, conv_pos_groups: int) -> None:
        super().__init__()
        self.norm_first = norm_first
        self.pos_conv = nn.Conv1d(dim, dim, conv_pos, padding=conv_pos // 2, groups=conv_pos_groups)
        self.trim = 1 if conv_pos % 2 == 0 else 0  # an even kernel yields one frame too many
        self.layers = nn.ModuleList(TransformerLayer(dim, heads, ffn_dim, norm_first)
                                    for _ in range(layers))
        self.layer_norm = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        x = x * keep[..., None].to(x.dtype)
        pos = self.pos_conv(x.transpose(1, 2))
        if self.trim:
            pos = pos[..., :-self.trim]
        x = x + F.gelu(pos).transpose(1, 2)
        if not self.norm_first:
            x = self.layer_norm(x)
        for layer in self.layers:
            x = layer(x, keep)
        return self.layer_norm(x) if self.norm_first else x
