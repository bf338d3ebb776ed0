"""SALMONN's window-level Q-Former: the encoder streams layer-normed and joined frame by frame,
then query tokens per window of frames through BERT layers (self-attention among the queries,
cross-attention to the window's frames), projected into the LLM.

Windows follow SALMONN's `F.unfold` (window 17, stride 17, no padding: 88 windows in 1,500
frames, the last frames that fill no window dropped), applied per 30 s encoder window so
that long audio keeps the same timing in every window. A stretch shorter than one window
(a clip under 0.34 s) gets one window whose missing frames are masked out.
"""

from __future__ import annotations

import torch
from torch import nn

from speechkit.models.speechllm.bridges.base import Bridge, Features, mask_padding
from speechkit.models.speechllm.checkpoint import BridgeSpec, QFormerSpec


class BertAttention(nn.Module):
    """BERT attention block: q/k/v, softmax(q k^T / sqrt(d)) v, dense, residual LayerNorm."""

    def __init__(self, q: QFormerSpec, kv_dim: int) -> None:
        super().__init__()
        h = q.hidden_size
        self.heads = q.heads
        self.query, self.key, self.value = nn.Linear(h, h), nn.Linear(kv_dim, h), nn.Linear(kv_dim, h)
        self.dense = nn.Linear(h, h)
        self.norm = nn.LayerNorm(h, eps=q.layer_norm_eps)

    def forward(self, x: torch.Tensor, memory: torch.Tensor,
                mask: torch.Tensor | None = None) -> torch.Tensor:
        b, n, h = x.shape
        d = h // self.heads

        def split(t: torch.Tensor) -> torch.Tensor:
            return t.view(b, -1, self.heads, d).transpose(1, 2)

        scores = split(self.query(x)) @ split(self.key(memory)).transpose(-1, -2) / d ** 0.5
        if mask is not None:  # BERT's extended mask: -10000 on masked keys
            scores = scores + (1.0 - mask[:, None, None, :].to(scores.dtype)) * -10000.0
        ctx = (torch.softmax(scores, dim=-1) @ split(self.value(memory))).transpose(1, 2)
        return self.norm(self.dense(ctx.reshape(b, n, h)) + x)


class QFormerLayer(nn.Module):
    """Self-attention among the queries, cross-attention to the frames, feed-forward."""

    def __init__(self, q: QFormerSpec, frame_dim: int) -> None:
        super().__init__()
        self.self_attn = BertAttention(q, q.hidden_size)
        self.cross_attn = BertAttention(q, frame_dim)
        self.up = nn.Linear(q.hidden_size, q.intermediate_size)
        self.down = nn.Linear(q.intermediate_size, q.hidden_size)
        self.norm = nn.LayerNorm(q.hidden_size, eps=q.layer_norm_eps)

    def forward(self, x: torch.Tensor, frames: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        x = self.self_attn(x, x)
        x = self.cross_attn(x, frames, mask)
        return self.norm(self.down(nn.functional.gelu(self.up(x))) + x)


class WindowQFormer(Bridge):
    """Fuses every encoder stream into one output (named after the first input)."""

    description = "window-level Q-Former over layer-normed, joined encoder streams (SALMONN)"

    def __init__(self, spec: BridgeSpec) -> None:
        super().__init__(spec)
        self.q = q = spec.qformer or QFormerSpec()
        frame_dim = sum(inp.in_dim for inp in spec.inputs.values())
        self.norms = nn.ModuleDict({m: nn.LayerNorm(inp.in_dim) for m, inp in spec.inputs.items()})
        self.query_tokens = nn.Parameter(torch.zeros(1, q.queries, q.hidden_size))
        nn.init.normal_(self.query_tokens, std=0.02)  # BERT initializer_range
        self.embed_norm = nn.LayerNorm(q.hidden_size, eps=q.layer_norm_eps)
        self.layers = nn.ModuleList(QFormerLayer(q, frame_dim) for _ in range(q.layers))
        self.proj = nn.Linear(q.hidden_size, spec.out_dim)

    def fuse(self, features: Features) -> tuple[torch.Tensor, torch.Tensor]:
        """[B, T, sum of dims]: each stream layer-normed (an all-zero frame, past an encoder's
        own output, stays zero as SALMONN pads after the norm), zero-padded to the longest."""
        present = [m for m in self.spec.inputs if m in features]
        longest = max(features[m][0].shape[1] for m in present)
        lengths = torch.stack([features[m][1].cpu() for m in present]).amax(0)
        dtype, device = self.proj.weight.dtype, self.proj.weight.device
        parts = []
        for m, inp in self.spec.inputs.items():
            if m not in features:  # a stream no item of the batch has: zero frames
                parts.append(torch.zeros(len(lengths), longest, inp.in_dim, dtype=dtype, device=device))
                continue
            x, ln = features[m]
            x = x.to(dtype)
            y = mask_padding(self.norms[m](x) * (x != 0).any(-1, keepdim=True).to(dtype), ln)
            parts.append(nn.functional.pad(y, (0, 0, 0, longest - y.shape[1])))
        return torch.cat(parts, dim=-1), lengths

    def windows(self, lengths: torch.Tensor) -> list[list[tuple[int, int]]]:
        """Per item, (first frame, end of valid frames) of each window."""
        q, out = self.q, []
        for n in lengths.tolist():
            spans = []  # an item without the streams (length 0) gets no window
            for seg in range(0, int(n), q.segment):
                size = min(q.segment, int(n) - seg)
                count = (size - q.window) // q.stride + 1 if size >= q.window else 1
                spans += [(seg + k * q.stride, min(seg + k * q.stride + q.window, seg + size))
                          for k in range(count)]
            out.append(spans)
        return out

    def forward(self, features: Features) -> Features:
        fused, lengths = self.fuse(features)
        spans = self.windows(lengths)
        if not any(spans):
            return {next(iter(self.spec.inputs)): (fused.new_zeros(len(spans), 0, self.spec.out_dim),
                                                   torch.zeros_like(lengths))}
        w = self.q.window
        padded = nn.functional.pad(fused, (0, 0, 0, w))
        starts = torch.tensor([s for item in spans for s, _ in item], device=fused.device)
        ends = torch.tensor([e for item in spans for _, e in item], device=fused.device)
        owner = torch.tensor([i for i, item in enumerate(spans) for _ in item], device=fused.device)
        idx = starts[:, None] + torch.arange(w, device=fused.device)[None, :]
        frames = padded[owner[:, None], idx]  # [windows, w, C]
        mask = (idx < ends[:, None]).long()
        x = self.embed_norm(self.query_tokens.expand(len(starts), -1, -1))
        for layer in self.layers:
            x = layer(x, frames, mask)
        y = self.proj(x).reshape(len(starts) * self.q.queries, -1)
        counts = torch.tensor([len(item) * self.q.queries for item in spans])
        out = y.new_zeros(len(spans), int(counts.max()), y.shape[-1])
        for i, piece in enumerate(torch.split(y, counts.tolist())):
            out[i, :len(piece)] = piece
        return {next(iter(self.spec.inputs)): (out, counts.to(lengths.device))}


def summary(spec: BridgeSpec) -> str:
    """One line for `speechkit models show`."""
    q = spec.qformer or QFormerSpec()
    joined = " + ".join(f"{m} {inp.in_dim}" for m, inp in spec.inputs.items())
    return (f"qformer: {joined} -> {q.layers} BERT layers ({q.hidden_size}-d), {q.queries} "
            f"query per {q.window} frames (stride {q.stride}) -> {spec.out_dim}")
