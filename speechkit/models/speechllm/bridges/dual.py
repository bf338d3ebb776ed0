"""WavLLM's dual-encoder fusion: Whisper (content) and WavLM (speaker), each through its own
subsampler + adapter + projector, cut to a common length and fused by one linear layer."""

from __future__ import annotations

import math

import torch
from torch import nn

from speechkit.errors import SpeechkitError
from speechkit.models.speechllm.bridges.base import Bridge, Features, mask_padding
from speechkit.models.speechllm.checkpoint import BridgeInput, BridgeSpec

KERNEL = 3  # WavLLM Conv1dSubsampler: kernel 3, stride 2, padding 1, GLU after each conv
STRIDE = 2
ADAPTER_SHRINK = 2  # WavLLM adapters: 1024 -> 512 -> 1024 (bottleneck = width / 2)
FUSED = "audio"  # the one output, spliced into the prompt where the speech goes


class Subsampler(nn.Module):
    """Strided Conv1d + GLU layers (WavLLM `Conv1dSubsampler`); padding is zeroed before
    each conv so a batch sees what each item alone sees."""

    def __init__(self, in_dim: int, mid_dim: int, out_dim: int, n_layers: int) -> None:
        super().__init__()
        self.conv_layers = nn.ModuleList(
            nn.Conv1d(in_dim if i == 0 else mid_dim // 2,
                      mid_dim if i < n_layers - 1 else out_dim * 2,
                      KERNEL, stride=STRIDE, padding=KERNEL // 2)
            for i in range(n_layers))

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        for conv in self.conv_layers:
            x = mask_padding(x, lengths)
            x = nn.functional.glu(conv(x.transpose(1, 2)), dim=1).transpose(1, 2)
            lengths = (lengths - 1) // STRIDE + 1  # fairseq: floor((L - 1) / 2 + 1)
        return x, lengths


class Adapter(nn.Module):
    """Residual bottleneck: x + LayerNorm(up(GELU(down(x)))) (WavLLM Whisper/WavLM adapters)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.down_layer = nn.Linear(dim, dim // ADAPTER_SHRINK)
        self.up_layer = nn.Linear(dim // ADAPTER_SHRINK, dim)
        self.layer_norm = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layer_norm(self.up_layer(nn.functional.gelu(self.down_layer(x)))) + x


class Stream(nn.Module):
    """One encoder's path: subsampler (over each window alone when `window_frames` is set) ->
    adapter -> projector."""

    def __init__(self, inp: BridgeInput) -> None:
        super().__init__()
        n_layers = round(math.log2(inp.rate))
        width = inp.adapter_dim or inp.in_dim
        self.subsample = Subsampler(inp.in_dim, inp.hidden_dim or inp.in_dim, width, n_layers)
        self.adapter = Adapter(width)
        self.projector = nn.Linear(width, inp.proj_dim or width)
        self.window = inp.window_frames

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = x.to(self.projector.weight.dtype)
        if self.window and x.shape[1] > self.window:
            x, lengths = self._by_window(x, lengths)
        else:
            x, lengths = self.subsample(x, lengths)
        return self.projector(self.adapter(x)), lengths

    def _by_window(self, x: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Each window subsampled alone (zero padding at its edges, as WavLLM subsamples each
        30 s chunk), then each item's windows joined in time."""
        parts, sizes = [], []
        for start in range(0, x.shape[1], self.window):
            n = (lengths - start).clamp(0, self.window)
            y, m = self.subsample(x[:, start:start + self.window], n)
            parts.append(y)
            sizes.append(m)
        rows = [torch.cat([y[i, :int(m[i])] for y, m in zip(parts, sizes, strict=True)])
                for i in range(x.shape[0])]
        out_len = torch.tensor([len(r) for r in rows], device=lengths.device)
        out = x.new_zeros(x.shape[0], int(out_len.max()), parts[0].shape[-1])
        for i, r in enumerate(rows):
            out[i, :len(r)] = r
        return out, out_len


class DualBridge(Bridge):
    """Every encoder stream (in `bridge.inputs` order) through its own path, cut to the
    shortest stream per item, concatenated feature-wise and mapped by one linear layer."""

    description = "Whisper + WavLM adapters concatenated and fused (WavLLM)"

    def __init__(self, spec: BridgeSpec) -> None:
        super().__init__(spec)
        for m, inp in spec.inputs.items():
            if inp.rate < 2 or inp.rate & (inp.rate - 1):
                raise SpeechkitError(f"bridge.inputs.{m}.rate is {inp.rate}; the dual bridge "
                                     "halves the frame rate per conv: use 2, 4 or 8")
            if min(inp.adapter_dim, inp.proj_dim) < 0 or (inp.adapter_dim or inp.in_dim) < 2:
                raise SpeechkitError(f"bridge.inputs.{m}: adapter_dim and proj_dim must be >= 0 "
                                     "(0 = the input size) and the adapter at least 2 wide")
        self.streams = nn.ModuleDict({m: Stream(inp) for m, inp in spec.inputs.items()})
        fused = sum(inp.proj_dim or inp.adapter_dim or inp.in_dim for inp in spec.inputs.values())
        self.fuse = nn.Linear(fused, spec.out_dim)

    def forward(self, features: Features) -> Features:
        missing = [m for m in self.streams if m not in features]
        if missing:
            raise SpeechkitError(f"the dual bridge needs every stream; {missing} had no input "
                                 "(give the item its audio)")
        outs, lens = [], []
        for m, stream in self.streams.items():
            y, n = stream(*features[m])
            outs.append(y)
            lens.append(n.to(y.device))
        length = torch.stack(lens).min(0).values  # WavLLM cuts both to the shorter stream
        t = int(length.max()) if len(length) else 0
        fused = self.fuse(torch.cat([y[:, :t] for y in outs], dim=-1))
        return {FUSED: (mask_padding(fused, length), length)}
